"""KIS REST answers turned into typed errors (ERR-REST-BODY, POL-AUTH-FAILED, TOKEN-KIS-THROTTLE).

Two body shapes exist: the normal one ``{"rt_cd","msg_cd","msg1"}`` and the token endpoint's
``{"error_code","error_description"}`` (HTTP 403 EGW00133 for the issuance throttle). Every code is
read from the spec of the version in use: the auth-failure codes from POL-AUTH-FAILED (1.0 has
IGW00221 only, 1.1 adds EGW00121/EGW00123), the throttle from TOKEN-KIS-THROTTLE.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stockmon.redaction import scrub
from stockmon.reference.errors import (
    AuthError,
    BrokerError,
    RemoteProtocolError,
    TokenThrottledError,
)
from stockmon.spec import Spec

# Longest broker message kept in an error (they are one short sentence; anything longer is noise).
_MAX_MESSAGE = 200


@dataclass(frozen=True, slots=True)
class RestErrorRules:
    """The spec's codes for classifying REST errors, read once per client."""

    success_rt_cd: str
    fields: tuple[str, ...]
    auth_codes: frozenset[str]
    max_retries: int
    throttle_code: str | None
    throttle_status: int | None
    throttle_retry_after: float | None

    @classmethod
    def from_spec(cls, spec: Spec, scale: float = 1.0) -> RestErrorRules:
        """Codes of ERR-REST-BODY, POL-AUTH-FAILED and (when present) TOKEN-KIS-THROTTLE."""
        body = spec.clause("ERR-REST-BODY")
        auth = spec.clause("POL-AUTH-FAILED")
        code = status = after = None
        if spec.has("TOKEN-KIS-THROTTLE"):
            thr = spec.clause("TOKEN-KIS-THROTTLE")
            code = thr.string("error_code")
            status = thr.integer("http_status")
            after = thr.number("min_interval_s") / scale
        return cls(
            success_rt_cd=body.string("success_rt_cd"),
            fields=body.strings("fields"),
            auth_codes=frozenset(auth.strings("rest_codes")),
            max_retries=auth.integer("max_retries"),
            throttle_code=code,
            throttle_status=status,
            throttle_retry_after=after,
        )


def _one_line(text: object) -> str:
    flat = " ".join(str(text).split())
    if len(flat) > _MAX_MESSAGE:
        flat = flat[: _MAX_MESSAGE - 3] + "..."
    return scrub(flat)


def error_from_body(
    status: int, body: Any, rules: RestErrorRules
) -> BrokerError | RemoteProtocolError | None:
    """The error a response stands for, or None when it is a success.

    ``body`` is the parsed JSON (or None when the body was not JSON). Auth codes of the spec become
    a retryable :class:`AuthError`; the throttle becomes :class:`TokenThrottledError`; any other
    HTTP 401/403 is an :class:`AuthError` a refresh cannot fix.
    """
    code_field, message_field = _code_fields(rules)
    if isinstance(body, Mapping):
        if "error_code" in body:  # the token endpoint's own shape
            return _classify(
                status, str(body.get("error_code")), body.get("error_description", ""), rules
            )
        rt_cd = body.get("rt_cd")
        if rt_cd is not None:
            if str(rt_cd) == rules.success_rt_cd and status < 400:
                return None
            return _classify(
                status, str(body.get(code_field, "")), body.get(message_field, ""), rules
            )
    if status >= 400:
        detail = "" if body is None else f": {_one_line(body)}"
        return BrokerError(f"HTTP{status}", f"error without a KIS error body{detail}", status)
    if not isinstance(body, Mapping):
        return RemoteProtocolError("KIS answered with a body that is not a JSON object")
    return None


def _code_fields(rules: RestErrorRules) -> tuple[str, str]:
    # ERR-REST-BODY lists rt_cd, msg_cd, msg1; the last two are the code and the message.
    rest = [f for f in rules.fields if f != "rt_cd"]
    return (rest[0], rest[1]) if len(rest) >= 2 else ("msg_cd", "msg1")


def _classify(status: int, code: str, message: object, rules: RestErrorRules) -> BrokerError:
    text = _one_line(message) or "(no message)"
    code = _one_line(code) or "(no code)"
    code_status = status if status >= 400 else None
    if rules.throttle_code is not None and code == rules.throttle_code:
        assert rules.throttle_retry_after is not None
        return TokenThrottledError(code, text, code_status, retry_after=rules.throttle_retry_after)
    if code in rules.auth_codes:
        return AuthError(code, text, code_status, retryable=True)
    if status in (401, 403):
        return AuthError(code, text, code_status, retryable=False)
    return BrokerError(code, text, code_status)


__all__ = ["RestErrorRules", "error_from_body"]
