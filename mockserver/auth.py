"""Credentials, access tokens and WebSocket approval keys, shared by the REST and WS sides.

Pure state: every method takes ``now`` (spec seconds since mock start) and ``wall`` (spec wall
time) where time matters, so token lifetime, the reuse window and the issuance throttle all run
on the mock's scaled clock.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import string
from dataclasses import dataclass
from enum import Enum

from stockmon.mockserver.profile import Profile

_ALNUM = string.ascii_letters + string.digits
_B64 = _ALNUM + "+/"
# Real app keys start with "PS" (personal) — shape only, never checked by clients.
_APPKEY_PREFIX = "PS"


class TokenState(Enum):
    """What the gateway thinks of a bearer token."""

    VALID = "valid"
    INVALID = "invalid"  # unknown, malformed or revoked
    EXPIRED = "expired"


@dataclass
class Token:
    """One issued access token."""

    value: str
    token_id: str
    appkey: str
    issued_at: float
    expires_at: float
    expires_wall: float
    revoked: bool = False


@dataclass(frozen=True, slots=True)
class Issue:
    """Outcome of a token request: a token (maybe reused) or a throttle refusal."""

    token: Token | None
    reused: bool = False
    throttled: bool = False


def short_hash(value: str) -> str:
    """A short stable fingerprint for traces (never the value itself)."""
    return hashlib.sha256(value.encode()).hexdigest()[:12]


class AuthState:
    """Gateway state: which credentials exist, which tokens and approval keys are live."""

    def __init__(
        self,
        profile: Profile,
        seed: int,
        validity_s: float,
        reuse_window_s: float,
        throttle: bool,
    ) -> None:
        self.profile = profile
        self.validity_s = validity_s
        self.reuse_window_s = reuse_window_s
        self.throttle = throttle
        self._rng = random.Random(f"auth:{seed}")
        self.credentials: dict[str, str] = {}
        self.tokens: dict[str, Token] = {}
        self._latest: dict[str, Token] = {}
        self._last_issue: dict[str, float] = {}
        self.approvals: dict[str, tuple[str, float]] = {}
        self.issued_count = 0

    # --- credentials --------------------------------------------------------------------
    def new_credentials(
        self, app_key: str | None = None, app_secret: str | None = None
    ) -> tuple[str, str]:
        """Register a credential pair (generated with the real lengths unless given)."""
        lengths = self.profile.credential_lengths
        key = app_key or _APPKEY_PREFIX + "".join(
            self._rng.choice(_ALNUM) for _ in range(int(lengths["appkey"]) - len(_APPKEY_PREFIX))
        )
        secret = app_secret or "".join(
            self._rng.choice(_B64) for _ in range(int(lengths["appsecret"]))
        )
        self.credentials[key] = secret
        return key, secret

    def credentials_ok(self, appkey: object, appsecret: object) -> str | None:
        """None if the pair is known, else the name of the bad part ("appkey" or "appsecret")."""
        if not isinstance(appkey, str) or appkey not in self.credentials:
            return "appkey"
        if appsecret != self.credentials[appkey]:
            return "appsecret"
        return None

    # --- tokens -------------------------------------------------------------------------
    def issue_token(
        self, appkey: str, now: float, wall: float, force_throttle: bool | None = None
    ) -> Issue:
        """Answer a token request: same token within the reuse window, else a new one; throttle."""
        throttle = self.throttle if force_throttle is None else force_throttle
        last = self._last_issue.get(appkey)
        if throttle and last is not None and now - last < self.profile.throttle_interval_s:
            return Issue(None, throttled=True)
        self._last_issue[appkey] = now
        latest = self._latest.get(appkey)
        if (
            latest is not None
            and not latest.revoked
            and now < latest.expires_at
            and now - latest.issued_at < self.reuse_window_s
        ):
            return Issue(latest, reused=True)
        value = self._new_token_value(appkey, wall)
        token = Token(
            value=value,
            token_id=short_hash(value),
            appkey=appkey,
            issued_at=now,
            expires_at=now + self.validity_s,
            expires_wall=wall + self.validity_s,
        )
        self.tokens[value] = token
        self._latest[appkey] = token
        self.issued_count += 1
        return Issue(token)

    def _new_token_value(self, appkey: str, wall: float) -> str:
        def b64(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        header = b64(json.dumps({"typ": "JWT", "alg": "HS512"}).encode())
        jti = "".join(self._rng.choice(_ALNUM) for _ in range(36))
        payload = b64(
            json.dumps(
                {
                    "sub": "token",
                    "aud": short_hash(appkey),
                    "iss": "stockmon-mock",
                    "prdt_cd": "",
                    "iat": int(wall),
                    "exp": int(wall + self.validity_s),
                    "jti": jti,
                },
                separators=(",", ":"),
            ).encode()
        )
        sig = b64(self._rng.randbytes(64))
        return f"{header}.{payload}.{sig}"

    def check_token(self, value: str | None, now: float) -> tuple[TokenState, Token | None]:
        """Validate a bearer token value."""
        token = self.tokens.get(value or "")
        if token is None or token.revoked:
            return TokenState.INVALID, token
        if now >= token.expires_at:
            return TokenState.EXPIRED, token
        return TokenState.VALID, token

    def revoke(self, value: str) -> bool:
        """Revoke one token; False if unknown."""
        token = self.tokens.get(value)
        if token is None:
            return False
        token.revoked = True
        return True

    def expire_all(self, now: float) -> int:
        """Make every live token expired now (fault); returns how many."""
        n = 0
        for token in self.tokens.values():
            if not token.revoked and token.expires_at > now:
                token.expires_at = now
                n += 1
        return n

    def revoke_all(self) -> int:
        """Revoke every token (fault); returns how many."""
        n = 0
        for token in self.tokens.values():
            if not token.revoked:
                token.revoked = True
                n += 1
        return n

    # --- approval keys --------------------------------------------------------------------
    def issue_approval(self, appkey: str, now: float) -> str:
        """A new WebSocket approval key (uuid-shaped, 36 chars) for an appkey."""
        h = "".join(self._rng.choice("0123456789abcdef") for _ in range(32))
        key = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
        self.approvals[key] = (appkey, now + self.validity_s)
        return key

    def approval_appkey(self, approval_key: object, now: float) -> str | None:
        """The appkey an approval key belongs to, or None if unknown or expired."""
        if not isinstance(approval_key, str):
            return None
        entry = self.approvals.get(approval_key)
        if entry is None or now >= entry[1]:
            return None
        return entry[0]

    def revoke_approvals(self) -> int:
        """Forget every approval key (fault: the next subscribe gets the invalid-approval code)."""
        n = len(self.approvals)
        self.approvals.clear()
        return n
