"""KIS credentials: REST access token (``/oauth2/tokenP``) and WS approval key (``/oauth2/Approval``).

:class:`KisAuthClient` makes the two issuance calls, each one HTTP request bounded by the caller's
timeout (the token manager passes the remaining validity of its refresh lease).
:class:`DirectApprovalKeyProvider` is the single-process credential source of the shell: one POST
per key, cached in memory (a fleet shares keys through the token manager instead). The paths, the
grant type and the body field names come from the spec (TOKEN-KIS-BEARER, WS-APPROVAL-KEY,
``spec.rest["kis"]``; 1.0 lacks WS-APPROVAL-KEY, a broker fact borrowed from the newest version);
the app secret is revealed only into the request body.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import httpx

from stockmon.boundedjson import loads as bounded_json
from stockmon.errors import SettingsError
from stockmon.redaction import Secret
from stockmon.reference.errors import AuthError, BrokerError, NetworkError, RemoteProtocolError
from stockmon.reference.kis.rest import RestErrorRules, error_from_body
from stockmon.reference.rest import call_json
from stockmon.reference.seams import Issued
from stockmon.spec import Spec, broker_clause

_APPROVAL_CLAUSE = "WS-APPROVAL-KEY"
# Real seconds one approval request may take. Not normative.
DEFAULT_TIMEOUT_S = 10.0
# HTTP statuses that mean "your credentials are wrong" rather than "try again later".
_AUTH_STATUSES = frozenset({httpx.codes.UNAUTHORIZED, httpx.codes.FORBIDDEN})


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
        approval = broker_clause(spec, _APPROVAL_CLAUSE)
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
        url = self._base + path
        resp, body = await call_json(self._http, "POST", url, f"POST {path}", budget, json=payload)
        err = error_from_body(resp.status_code, body, self._rules)
        if err is not None:
            raise err
        if not isinstance(body, Mapping):
            raise RemoteProtocolError(f"POST {path}: HTTP {resp.status_code} without a JSON object")
        return body


class DirectApprovalKeyProvider:
    """Fetches approval keys from ``POST {rest_url}{path}`` with the app key and secret."""

    def __init__(
        self,
        *,
        client: httpx.AsyncClient,
        rest_url: str,
        app_key: Secret,
        app_secret: Secret,
        spec: Spec,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        clause = broker_clause(spec, _APPROVAL_CLAUSE)
        self._client = client
        self._url = rest_url.rstrip("/") + clause.string("path")
        self._secret_field = clause.string("secret_field")
        self._grant_type = clause.string("grant_type")
        self._response_field = clause.string("response_field")
        self._app_key = app_key
        self._app_secret = app_secret
        self._timeout = timeout_s
        self._key: Secret | None = None
        self._lock = asyncio.Lock()
        self.requests = 0

    def __repr__(self) -> str:
        return f"DirectApprovalKeyProvider({self._url!r})"

    async def credential(self, *, force_new: bool = False) -> str:
        """The cached key, or a new one (always new with ``force_new``)."""
        stale = self._key
        if stale is not None and not force_new:
            return stale.reveal()
        async with self._lock:
            # another task may have fetched a new key while we waited for the lock
            if self._key is not None and self._key is not stale:
                return self._key.reveal()
            self._key = Secret(await self._fetch())
            return self._key.reveal()

    async def _fetch(self) -> str:
        self.requests += 1
        body = {
            "grant_type": self._grant_type,
            "appkey": self._app_key.reveal(),
            self._secret_field: self._app_secret.reveal(),
        }
        try:
            resp = await self._client.post(self._url, json=body, timeout=self._timeout)
        except httpx.InvalidURL:
            raise SettingsError(f"KIS_REST_URL does not make a valid URL: {self._url}") from None
        except httpx.HTTPError as exc:
            raise NetworkError(
                f"approval request to {self._url} failed: {type(exc).__name__}"
            ) from None
        data: Any
        try:
            data = bounded_json(resp.content, what="approval answer")
        except ValueError:
            data = None
        if resp.status_code == httpx.codes.OK and isinstance(data, dict):
            key = data.get(self._response_field)
            if isinstance(key, str) and key:
                return key
            raise BrokerError(
                "", f"approval answer has no {self._response_field}", resp.status_code
            )
        code, message = "", resp.reason_phrase
        if isinstance(data, dict):
            code = str(data.get("msg_cd") or data.get("error_code") or "")
            message = str(data.get("msg1") or data.get("error_description") or message)
        if resp.status_code in _AUTH_STATUSES:
            raise AuthError(code, message, resp.status_code, retryable=False)
        raise BrokerError(code, message, resp.status_code)


__all__ = ["DirectApprovalKeyProvider", "KisAuthClient"]
