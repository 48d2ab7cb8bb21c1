"""The KIS mock's world, without I/O: credentials, tokens, approval keys, appkey slots, settings.

Pure state on the shared base (:mod:`~stockmon.mockserver.world`): every method takes ``now``
(spec seconds since mock start) and ``wall`` (spec wall time) where time matters, so token
lifetime, the reuse window and the issuance throttle all run on the mock's scaled clock.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from enum import Enum

from stockmon.mockserver.config import MockConfig, chosen
from stockmon.mockserver.kis.market import KisMarket, ReplaySource
from stockmon.mockserver.kis.profile import Profile
from stockmon.mockserver.simulator import MarketSimulator
from stockmon.mockserver.trace import Trace
from stockmon.mockserver.world import ALNUM, Token, TokenBook, WorldBase, short_hash

_B64 = ALNUM + "+/"
# Real app keys start with "PS" (personal) — shape only, never checked by clients.
_APPKEY_PREFIX = "PS"


@dataclass(frozen=True, slots=True)
class SessionSettings:
    """Per-run WebSocket behaviour after config overrides (0 or None = off)."""

    server_pingpong_period_s: float | None
    unanswered_pingpong_grace_s: float | None
    reflect_client_ping: bool
    accept_pong_frame_answer: bool
    tick_rate_hz: float
    max_records_per_frame: int
    multi_record_probability: float
    appkey_slot_hold_s: float


class TokenState(Enum):
    """What the gateway thinks of a bearer token."""

    VALID = "valid"
    INVALID = "invalid"  # unknown, malformed or revoked
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class Issue:
    """Outcome of a token request: a token (maybe reused) or a throttle refusal."""

    token: Token | None
    reused: bool = False
    throttled: bool = False


class AuthState(TokenBook):
    """Gateway state: which credentials exist, which tokens and approval keys are live."""

    def __init__(
        self,
        profile: Profile,
        seed: int,
        validity_s: float,
        reuse_window_s: float,
        throttle: bool,
    ) -> None:
        super().__init__(f"auth:{seed}", validity_s)
        self.profile = profile
        self.reuse_window_s = reuse_window_s
        self.throttle = throttle
        self._latest: dict[str, Token] = {}
        self._last_issue: dict[str, float] = {}
        self.approvals: dict[str, tuple[str, float]] = {}

    def _new_app_key(self) -> str:
        n = int(self.profile.credential_lengths["appkey"]) - len(_APPKEY_PREFIX)
        return _APPKEY_PREFIX + self._chars(ALNUM, n)

    def _new_app_secret(self) -> str:
        return self._chars(_B64, int(self.profile.credential_lengths["appsecret"]))

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
        token = self._add(Token(value, short_hash(value), appkey, now, now + self.validity_s))
        self._latest[appkey] = token
        return Issue(token)

    def _new_token_value(self, appkey: str, wall: float) -> str:
        def b64(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        header = b64(json.dumps({"typ": "JWT", "alg": "HS512"}).encode())
        jti = self._chars(ALNUM, 36)
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

    # --- approval keys --------------------------------------------------------------------
    def issue_approval(self, appkey: str, now: float) -> str:
        """A new WebSocket approval key (uuid-shaped, 36 chars) for an appkey."""
        h = self._chars("0123456789abcdef", 32)
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


class World(WorldBase):
    """Everything the KIS REST app and WebSocket cores share."""

    def __init__(
        self,
        config: MockConfig,
        profile: Profile,
        trace: Trace,
        sim: MarketSimulator | None = None,
        wall0: float = 0.0,
    ) -> None:
        sim = sim or MarketSimulator(
            profile.spec, config.seed, config.symbols, market_hours=config.market == "hours"
        )
        super().__init__(config, trace, sim, wall0)
        self.config: MockConfig = config
        self.profile = profile
        self.auth: AuthState = AuthState(
            profile,
            config.seed,
            chosen(config.token_validity_s, profile.token_validity_s),
            chosen(config.token_reuse_window_s, profile.token_reuse_window_s),
            chosen(config.token_throttle, profile.token_throttle),
        )
        self.app_key, self.app_secret = self.auth.new_credentials(config.app_key, config.app_secret)
        self.market = KisMarket(profile, sim)
        self.replay = (
            ReplaySource.from_jsonl(config.replay_path, profile, config.replay_loop)
            if config.replay_path
            else None
        )
        period = chosen(config.server_pingpong_period_s, profile.server_pingpong_period_s)
        grace = chosen(config.unanswered_pingpong_grace_s, profile.unanswered_pingpong_grace_s)
        self.session_settings = SessionSettings(
            server_pingpong_period_s=period or None,
            unanswered_pingpong_grace_s=grace or None,
            reflect_client_ping=chosen(config.reflect_client_ping, profile.reflect_client_ping),
            accept_pong_frame_answer=config.accept_pong_frame_answer,
            tick_rate_hz=config.tick_rate_hz,
            max_records_per_frame=config.max_records_per_frame,
            multi_record_probability=config.multi_record_probability,
            appkey_slot_hold_s=config.appkey_slot_hold_s,
        )
        self._slots: dict[str, str] = {}
        self._slot_hold: dict[str, float] = {}

    # --- one session per appkey -------------------------------------------------------------
    def claim_appkey(self, appkey: str, conn: str, now: float) -> bool:
        """Bind an appkey to a session; False if another session (or a held slot) has it."""
        holder = self._slots.get(appkey)
        if holder is not None and holder != conn:
            return False
        if holder is None and self._slot_hold.get(appkey, 0.0) > now:
            return False
        self._slots[appkey] = conn
        return True

    def release_appkey(self, appkey: str, conn: str, now: float, abrupt: bool) -> None:
        """Free an appkey's slot when its session ends (held a while after an abrupt end)."""
        if self._slots.get(appkey) == conn:
            del self._slots[appkey]
            hold = self.session_settings.appkey_slot_hold_s
            if abrupt and hold > 0:
                self._slot_hold[appkey] = now + hold
