"""A direct WebSocket approval-key fetcher: one POST per key, cached in memory (WS-APPROVAL-KEY).

Small on purpose: it is the single-process :class:`~stockmon.reference.seams.ApprovalKeyProvider`.
A fleet shares keys through the Redis-backed provider instead. The path, the name of the secret field
and the response field come from clause WS-APPROVAL-KEY; a spec version without that clause (1.0)
borrows it from the newest version that has it, since it is a fact of the broker, not a policy.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from stockmon.errors import SettingsError
from stockmon.redaction import Secret
from stockmon.reference.errors import AuthError, BrokerError, NetworkError
from stockmon.reference.spec_facts import clause_or_newest
from stockmon.spec import Spec

_CLAUSE = "WS-APPROVAL-KEY"
# Real seconds one approval request may take. Not normative.
DEFAULT_TIMEOUT_S = 10.0
# HTTP statuses that mean "your credentials are wrong" rather than "try again later".
_AUTH_STATUSES = frozenset({httpx.codes.UNAUTHORIZED, httpx.codes.FORBIDDEN})


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
        clause = clause_or_newest(spec, _CLAUSE)
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

    async def approval_key(self, *, force_new: bool = False) -> str:
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
            data = resp.json()
        except (ValueError, json.JSONDecodeError):
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
