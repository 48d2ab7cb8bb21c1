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

from stockmon.redaction import Secret
from stockmon.reference.errors import RemoteProtocolError
from stockmon.reference.kis.rest import RestErrorRules, error_from_body
from stockmon.reference.rest import BrokerHttp
from stockmon.reference.seams import Issued
from stockmon.spec import Spec, broker_clause

_APPROVAL_CLAUSE = "WS-APPROVAL-KEY"
# Real seconds one approval request may take. Not normative.
DEFAULT_TIMEOUT_S = 10.0
# HTTP statuses that mean "your credentials are wrong" rather than "try again later".


class KisAuthClient:
    """Issues KIS credentials over HTTP; raises the typed errors of :mod:`rest_errors`."""

    def __init__(self, conn: BrokerHttp, spec: Spec, *, scale: float = 1.0) -> None:
        self._conn = conn
        self._app_key = conn.app_key
        self._app_secret = conn.app_secret
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

    def __repr__(self) -> str:
        return f"KisAuthClient({self._conn.base_url!r})"

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
        status, body = await self._conn.call("POST", path, budget, json=payload)
        err = error_from_body(status, body, self._rules)
        if err is not None:
            raise err
        if not isinstance(body, Mapping):
            raise RemoteProtocolError(f"POST {path}: HTTP {status} without a JSON object")
        return body


class DirectApprovalKeyProvider:
    """The single-process approval-key source: :class:`KisAuthClient`'s call, cached in memory."""

    def __init__(self, auth: KisAuthClient, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._auth = auth
        self._timeout = timeout_s
        self._key: Secret | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"DirectApprovalKeyProvider({self._auth!r})"

    @property
    def requests(self) -> int:
        """Approval requests sent so far."""
        return self._auth.approval_requests

    async def credential(self, *, force_new: bool = False) -> str:
        """The cached key, or a new one (always new with ``force_new``)."""
        stale = self._key
        if stale is not None and not force_new:
            return stale.reveal()
        async with self._lock:
            # another task may have fetched a new key while we waited for the lock
            if self._key is not None and self._key is not stale:
                return self._key.reveal()
            key, _ = await self._auth.issue_approval_key(self._timeout)
            self._key = Secret(key)
            return key


__all__ = ["DirectApprovalKeyProvider", "KisAuthClient"]
