"""KIS REST client: error bodies as typed errors and the auth-failure policy (POL-AUTH-FAILED).

Every request carries the KIS headers (names from ``spec.rest["kis"]["headers"]``: authorization
``Bearer <token>``, appkey, appsecret, tr_id, custtype). An answer is turned into data or into a
typed error (:mod:`rest_errors`). When the broker says the token is bad (the version's
``rest_codes``), the client forces a refresh through the token manager — which a newer token of
another process satisfies without an issuance — and retries the request ``max_retries`` times
(1). A second failure is raised as a non-retryable :class:`AuthError` naming what was tried:
never a loop.

Error bodies come in two shapes: the normal one ``{"rt_cd","msg_cd","msg1"}`` and the token
endpoint's ``{"error_code","error_description"}`` (HTTP 403 EGW00133 for the issuance throttle).
Every code is read from the spec of the version in use (ERR-REST-BODY, POL-AUTH-FAILED: 1.0 has
IGW00221 only, 1.1 adds EGW00121/EGW00123; TOKEN-KIS-THROTTLE).
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
from stockmon.reference.rest import BrokerHttp
from stockmon.reference.seams import Credential, CredentialCache
from stockmon.spec import Spec

# KIS expects a JSON content type even on GET (protocol/kis.md §1.5); not a spec value.
_CONTENT_TYPE = "application/json; charset=utf-8"


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


class KisRestClient:
    """Authenticated KIS REST calls for one app key; safe to share between tasks."""

    def __init__(
        self,
        conn: BrokerHttp,
        tokens: CredentialCache[Any],
        spec: Spec,
        *,
        scale: float = 1.0,
        timeout: float = 10.0,
    ) -> None:
        self._conn = conn
        self._app_key = conn.app_key
        self._app_secret = conn.app_secret
        self.tokens = tokens
        self.spec = spec
        self._rules = RestErrorRules.from_spec(spec, scale)
        rest = spec.rest["kis"]
        self._h: Mapping[str, str] = rest["headers"]
        self._custtype = str(rest["custtype"])
        self._token_type = spec.clause("TOKEN-KIS-BEARER").string("token_type")
        self._timeout = timeout
        self.auth_retries = 0  # requests retried after a forced refresh (tests, benchmarks)

    def _headers(self, tr_id: str, cred: Credential) -> dict[str, str]:
        h = self._h
        return {
            "content-type": _CONTENT_TYPE,
            h["authorization"]: f"{self._token_type} {cred.value.reveal()}",
            h["appkey"]: self._app_key.reveal(),
            h["appsecret"]: self._app_secret.reveal(),
            h["tr_id"]: tr_id,
            h["custtype"]: self._custtype,
        }

    async def get(self, path: str, tr_id: str, params: Mapping[str, str]) -> Mapping[str, Any]:
        """GET ``path`` with the KIS headers; the body on success, a typed error otherwise."""
        return await self.request("GET", path, tr_id, params=params)

    async def request(
        self,
        method: str,
        path: str,
        tr_id: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> Mapping[str, Any]:
        """One logical request: send, and on an auth failure refresh and retry (bounded)."""
        cred = await self.tokens.get()
        for attempt in range(self._rules.max_retries + 1):
            try:
                return await self._send(method, path, tr_id, params, body, cred)
            except AuthError as exc:
                if not exc.retryable:
                    raise
                if attempt == self._rules.max_retries:
                    raise AuthError(
                        exc.code,
                        f"{exc.message} — still rejected after a forced token refresh and "
                        f"{self._rules.max_retries} retry (POL-AUTH-FAILED); check the app key "
                        "and the broker's status",
                        exc.status,
                        retryable=False,
                    ) from None
                cred = await self.tokens.invalidate(cred)
                self.auth_retries += 1
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send(
        self,
        method: str,
        path: str,
        tr_id: str,
        params: Mapping[str, str] | None,
        body: Mapping[str, Any] | None,
        cred: Credential,
    ) -> Mapping[str, Any]:
        status, data = await self._conn.call(
            method,
            path,
            self._timeout,
            params=dict(params or {}),
            json=dict(body) if body is not None else None,
            headers=self._headers(tr_id, cred),
        )
        err = error_from_body(status, data, self._rules)
        if err is not None:
            raise err
        if not isinstance(data, Mapping):
            raise RemoteProtocolError(f"{method} {path}: the answer is not a JSON object")
        return data


__all__ = ["KisRestClient", "RestErrorRules", "error_from_body"]
