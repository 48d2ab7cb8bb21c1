"""KIS REST client on httpx with the auth-failure policy (POL-AUTH-FAILED).

Every request carries the KIS headers (names from ``spec.rest["kis"]["headers"]``: authorization
``Bearer <token>``, appkey, appsecret, tr_id, custtype). An answer is turned into data or into a
typed error (:mod:`rest_errors`). When the broker says the token is bad (the version's
``rest_codes``), the client forces a refresh through the token manager — which a newer token of
another process satisfies without an issuance — and retries the request ``max_retries`` times
(1). A second failure is raised as a non-retryable :class:`AuthError` naming what was tried:
never a loop.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx

from stockmon.redaction import Secret
from stockmon.reference.errors import AuthError, NetworkError, RemoteProtocolError
from stockmon.reference.rest_errors import RestErrorRules, error_from_body
from stockmon.reference.token_manager import SharedCredential
from stockmon.reference.token_state import CachedCredential
from stockmon.spec import Spec

# KIS expects a JSON content type even on GET (protocol/kis.md §1.5); not a spec value.
_CONTENT_TYPE = "application/json; charset=utf-8"


class KisRestClient:
    """Authenticated KIS REST calls for one app key; safe to share between tasks."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        app_key: Secret,
        app_secret: Secret,
        tokens: SharedCredential,
        spec: Spec,
        *,
        scale: float = 1.0,
        timeout: float = 10.0,
    ) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._app_key = app_key
        self._app_secret = app_secret
        self.tokens = tokens
        self.spec = spec
        self._rules = RestErrorRules.from_spec(spec, scale)
        rest = spec.rest["kis"]
        self._h: Mapping[str, str] = rest["headers"]
        self._custtype = str(rest["custtype"])
        self._token_type = spec.clause("TOKEN-KIS-BEARER").string("token_type")
        self._timeout = timeout
        self.auth_retries = 0  # requests retried after a forced refresh (tests, benchmarks)

    def _headers(self, tr_id: str, cred: CachedCredential) -> dict[str, str]:
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
        cred: CachedCredential,
    ) -> Mapping[str, Any]:
        try:
            resp = await self._http.request(
                method,
                self._base + path,
                params=dict(params or {}),
                json=dict(body) if body is not None else None,
                headers=self._headers(tr_id, cred),
                timeout=self._timeout,
            )
        except httpx.TimeoutException:
            raise NetworkError(f"{method} {path} timed out after {self._timeout:.1f} s") from None
        except httpx.HTTPError as exc:
            raise NetworkError(f"{method} {path} failed: {type(exc).__name__}") from None
        try:
            data: Any = resp.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            data = None
        err = error_from_body(resp.status_code, data, self._rules)
        if err is not None:
            raise err
        if not isinstance(data, Mapping):
            raise RemoteProtocolError(f"{method} {path}: the answer is not a JSON object")
        return data


__all__ = ["KisRestClient"]
