"""The two issuance calls: REST access token (``/oauth2/tokenP``) and WS approval key (``/oauth2/Approval``).

Each call is one HTTP request bounded by the caller's timeout (the token manager passes the
remaining validity of its refresh lease). The paths, the grant type and the body field names
come from the spec (TOKEN-KIS-BEARER, WS-APPROVAL-KEY, ``spec.rest["kis"]``); the app secret is
revealed only into the request body.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx

from stockmon.redaction import Secret
from stockmon.reference.errors import NetworkError, RemoteProtocolError
from stockmon.reference.rest_errors import RestErrorRules, error_from_body
from stockmon.spec import Spec, latest_version, load_spec

Issued = tuple[str, Mapping[str, Any]]


class KisAuthClient:
    """Issues KIS credentials over HTTP; raises the typed errors of :mod:`rest_errors`."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        app_key: Secret,
        app_secret: Secret,
        spec: Spec,
        *,
        scale: float = 1.0,
    ) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._app_key = app_key
        self._app_secret = app_secret
        self._rules = RestErrorRules.from_spec(spec, scale)
        rest = spec.rest["kis"]
        self._token_path = str(rest["token"]["path"])
        self._grant_type = spec.clause("TOKEN-KIS-BEARER").string("grant_type")
        # 1.0 does not say how the approval key is obtained; it is a fact of the broker, so the
        # newest spec's WS-APPROVAL-KEY supplies it.
        approval = (
            spec.clause("WS-APPROVAL-KEY")
            if spec.has("WS-APPROVAL-KEY")
            else load_spec(latest_version()).clause("WS-APPROVAL-KEY")
        )
        self._approval_path = approval.string("path")
        self._approval_secret_field = approval.string("secret_field")
        self._approval_grant = approval.string("grant_type")
        self._approval_field = approval.string("response_field")
        self.token_requests = 0
        self.approval_requests = 0

    async def issue_token(self, budget: float) -> Issued:
        """POST the token request; returns the access token and the whole response body."""
        self.token_requests += 1
        body = await self._post(
            self._token_path,
            {
                "grant_type": self._grant_type,
                "appkey": self._app_key.reveal(),
                "appsecret": self._app_secret.reveal(),
            },
            budget,
        )
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise RemoteProtocolError("token response has no access_token string")
        return token, body

    async def issue_approval_key(self, budget: float) -> Issued:
        """POST the approval request (body field ``secretkey``); returns the approval key."""
        self.approval_requests += 1
        body = await self._post(
            self._approval_path,
            {
                "grant_type": self._approval_grant,
                "appkey": self._app_key.reveal(),
                self._approval_secret_field: self._app_secret.reveal(),
            },
            budget,
        )
        key = body.get(self._approval_field)
        if not isinstance(key, str) or not key:
            raise RemoteProtocolError(f"approval response has no {self._approval_field} string")
        return key, body

    async def _post(self, path: str, payload: dict[str, str], budget: float) -> Mapping[str, Any]:
        if budget <= 0:
            raise NetworkError(f"no time left to call {path}")
        try:
            resp = await self._http.post(self._base + path, json=payload, timeout=budget)
        except httpx.TimeoutException:
            raise NetworkError(f"POST {path} timed out after {budget:.2f} s") from None
        except httpx.HTTPError as exc:
            raise NetworkError(f"POST {path} failed: {type(exc).__name__}") from None
        try:
            body: Any = resp.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        err = error_from_body(resp.status_code, body, self._rules)
        if err is not None:
            raise err
        if not isinstance(body, Mapping):
            raise RemoteProtocolError(f"POST {path}: HTTP {resp.status_code} without a JSON object")
        return body


__all__ = ["Issued", "KisAuthClient"]
