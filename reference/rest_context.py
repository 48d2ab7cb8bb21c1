"""Everything a command needs to act as one member of a fleet towards KIS, built from the settings.

``open_kis(settings)`` wires the coordination backend (redis_conn.py), the shared token and
approval-key managers and the REST client, and closes them all on exit. ``stockmon quote`` uses
it, and so do the tests and benchmarks (``stockmon stream`` opens its seams in redis_seams.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from redis.asyncio import Redis

from stockmon.clock import Clock
from stockmon.reference.redis_conn import connect_redis, require_lock_backend
from stockmon.reference.rest import KisRestClient
from stockmon.reference.token_approval import SharedApprovalKeyProvider
from stockmon.reference.token_issuer import KisAuthClient
from stockmon.reference.token_manager import (
    SharedCredential,
    Tuning,
    approval_key_manager,
    default_holder,
    token_manager,
)
from stockmon.reference.token_state import TokenPolicy
from stockmon.reference.token_store import (
    CredentialStore,
    LocalCredentialStore,
    RedisCredentialStore,
    key_prefix,
)
from stockmon.settings import Settings
from stockmon.spec import Spec


@dataclass
class KisContext:
    """The wired parts; attributes are public on purpose (tests and benchmarks use them)."""

    settings: Settings
    spec: Spec
    holder: str
    redis: Redis | None
    store: CredentialStore
    http: httpx.AsyncClient
    auth: KisAuthClient
    tokens: SharedCredential
    approval: SharedCredential
    rest: KisRestClient

    def approval_provider(self) -> SharedApprovalKeyProvider:
        """The fleet's approval key for the streaming shell (WS-APPROVAL-KEY)."""
        return SharedApprovalKeyProvider(self.approval)


@asynccontextmanager
async def open_kis(
    settings: Settings,
    *,
    clock: Clock | None = None,
    holder: str | None = None,
    tuning: Tuning | None = None,
    http: httpx.AsyncClient | None = None,
) -> AsyncIterator[KisContext]:
    """Build a :class:`KisContext` from the settings; SettingsError for a bad configuration."""
    app_key, app_secret = settings.require_kis()
    spec = settings.spec
    scale = settings.time_scale
    name = holder or default_holder()
    redis: Redis | None = None
    store: CredentialStore
    if require_lock_backend(settings):
        assert settings.redis_url is not None
        redis = connect_redis(settings.redis_url)
        store = RedisCredentialStore(redis, key_prefix(settings.env, app_key))
    else:
        store = LocalCredentialStore()
    own_http = http is None
    client = http or httpx.AsyncClient()
    auth = KisAuthClient(client, settings.kis_rest_url, app_key, app_secret, spec, scale=scale)
    common = {"clock": clock, "holder": name, "tuning": tuning}
    tokens = token_manager(store, auth.issue_token, TokenPolicy.for_token(spec, scale), **common)
    approval = approval_key_manager(
        store, auth.issue_approval_key, TokenPolicy.for_approval_key(spec, scale), **common
    )
    rest = KisRestClient(
        client, settings.kis_rest_url, app_key, app_secret, tokens, spec, scale=scale
    )
    ctx = KisContext(settings, spec, name, redis, store, client, auth, tokens, approval, rest)
    try:
        yield ctx
    finally:
        await tokens.aclose()
        await approval.aclose()
        if own_http:
            await client.aclose()
        if redis is not None:
            await redis.aclose()


__all__ = ["KisContext", "open_kis"]
