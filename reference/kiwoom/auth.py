"""Kiwoom session tokens: issuance (``/oauth2/token``) and Kiwoom's error envelope.

The fleet's token manager (:class:`~stockmon.reference.fleet.token_manager.SharedCredential`) shares
the token as it shares KIS's: one issuance per fleet under the Redis lock, refreshed inside the
window, replaced after the broker rejected it. Only the token's *shape* differs
(TOKEN-KIWOOM-SESSION, CRED-KIWOOM-SECRET):

* the request carries ``appkey`` and ``secretkey`` (never ``appsecret``);
* the response says ``token`` and ``expires_dt`` (``YYYYMMDDHHMMSS``, **KST**, no ``expires_in``);
* errors come in Kiwoom's envelope: ``return_code`` (a small category) and the documented 4-digit
  code inside ``return_msg`` (``[8005:...]``), on HTTP **200** for a bad token and 429 for a throttle.

Time: ``expires_dt`` is a wall time of the broker. It is read against this process's spec wall clock
(:class:`~stockmon.clock.ScaledClock`), so under STOCKMON_TIME_SCALE the remaining validity is in
spec seconds; it reaches the token manager as a relative field (``REMAINING_FIELD``), which the
manager scales like KIS's ``expires_in``. At scale 1 this is exactly the official client's rule.
The refresh window is the official client's buffer (``rest.kiwoom.refresh_before_expiry_s``,
:meth:`~stockmon.reference.fleet.token_state.TokenPolicy.for_kiwoom_token`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from stockmon.redaction import scrub
from stockmon.reference.errors import (
    AuthError,
    BrokerError,
    RemoteProtocolError,
    TokenThrottledError,
)
from stockmon.reference.rest import BrokerHttp
from stockmon.reference.seams import Issued, expiry_at
from stockmon.spec import Spec, broker_clause, broker_data

# The relative validity (spec seconds) handed to the token manager (its policy names the same
# field: fleet.token_state.KIWOOM_REMAINING_FIELD); not a field Kiwoom sends.
REMAINING_FIELD = "stockmon_remaining_s"
# Kiwoom publishes no issuance window (protocol/kiwoom.md §2.7 measured about one call per second
# per API): after a 429 wait this many spec seconds. Not normative.
THROTTLE_WAIT_S = 1.0
_HTTP_TOO_MANY = 429
_CODE_RE = re.compile(r"\[(?:CODE=)?(\d{4}):")
# Documented auth codes start with 8 (protocol/kiwoom.md §1.3): bad key/secret, IP, terminal.
_AUTH_PREFIX = "8"
_MAX_MESSAGE = 200


def kiwoom_code(message: str) -> str | None:
    """The documented 4-digit code inside a Kiwoom ``return_msg`` (``[8005:...]``), if any."""
    m = _CODE_RE.search(message)
    return m.group(1) if m else None


class KiwoomAuthClient:
    """Issues Kiwoom session tokens over HTTP; raises the typed errors of the reference."""

    def __init__(
        self, conn: BrokerHttp, spec: Spec, *, wall: Callable[[], float], scale: float = 1.0
    ) -> None:
        rest = broker_data(spec, "rest", "kiwoom")
        self._conn = conn
        self._app_key = conn.app_key
        self._app_secret = conn.app_secret
        self._wall = wall
        self._scale = scale
        self._path = str(rest["token"]["path"])
        self._grant = str(rest["grant_type"])
        self._token_field = str(rest["token_field"])
        self._expires_field = str(rest["expires_field"])
        self._expires_format = str(rest["expires_format"])
        self._utc_offset = int(rest["utc_offset_s"])
        self._ok = int(rest["success_return_code"])
        self._secret_field = broker_clause(spec, "CRED-KIWOOM-SECRET").string("request_field")
        self._retry_codes = frozenset(
            broker_clause(spec, "KIWOOM-PROTOCOL").strings("auth_failure_codes")
        )
        self.token_requests = 0

    def __repr__(self) -> str:
        return f"KiwoomAuthClient({self._conn.base_url!r})"

    async def issue_token(self, budget: float) -> Issued:
        """POST the token request; returns the token and the body with the remaining validity."""
        self.token_requests += 1
        payload = {
            "grant_type": self._grant,
            "appkey": self._app_key.reveal(),
            self._secret_field: self._app_secret.reveal(),
        }
        status, body = await self._conn.call("POST", self._path, budget, json=payload)
        err = self.error_of(status, body)
        if err is not None:
            raise err
        assert isinstance(body, Mapping)
        token = body.get(self._token_field)
        if not isinstance(token, str) or not token:
            raise RemoteProtocolError(f"token response has no {self._token_field} string")
        expires = body.get(self._expires_field)
        if not isinstance(expires, str):
            # TOKEN-KIS-EXPIRY's rule holds for Kiwoom too: the expiry is read, never assumed.
            raise RemoteProtocolError(f"token response has no {self._expires_field}")
        at = expiry_at(expires, self._expires_format, self._utc_offset, self._expires_field)
        return token, {**body, REMAINING_FIELD: at - self._wall()}

    def error_of(self, status: int, body: Any) -> BrokerError | RemoteProtocolError | None:
        """The error a response stands for (Kiwoom's envelope), or None on success."""
        if status == _HTTP_TOO_MANY:
            message = _message(body)
            return TokenThrottledError(
                kiwoom_code(message) or str(status),
                message,
                status,
                retry_after=THROTTLE_WAIT_S / self._scale,
            )
        if not isinstance(body, Mapping):
            return RemoteProtocolError(f"Kiwoom answered HTTP {status} without a JSON object")
        rc = body.get("return_code")
        if rc == self._ok and status < 400:
            return None
        message = _message(body)
        code = kiwoom_code(message) or f"return_code {rc}"
        if code in self._retry_codes:
            return AuthError(code, message, status if status >= 400 else None, retryable=True)
        if code.startswith(_AUTH_PREFIX):
            return AuthError(code, message, status if status >= 400 else None, retryable=False)
        return BrokerError(code, message, status if status >= 400 else None)


def _message(body: Any) -> str:
    raw = body.get("return_msg", "") if isinstance(body, Mapping) else ""
    flat = " ".join(str(raw).split())
    return scrub(flat[:_MAX_MESSAGE])


__all__ = ["REMAINING_FIELD", "KiwoomAuthClient", "kiwoom_code"]
