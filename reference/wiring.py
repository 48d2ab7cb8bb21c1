"""Each broker's dialect wired to the fleet machinery, from the settings (the composition root).

The dialects (``kis/``, ``kiwoom/``) speak to a broker and the fleet (``fleet/``) shares credentials
and the socket between processes; neither imports the other. This module, above both, builds what a
command needs and closes it all on exit:

- :func:`open_kis`: the lock backend, the shared token and approval-key managers, the KIS REST client
  (``stockmon quote``, tests and benchmarks);
- :func:`kis_seams`: around a KIS stream, the approval key (shared through Redis with REDIS_URL,
  else fetched directly), the socket lease (WS-SINGLE-SOCKET across replicas), the REST snapshot at
  start and the token keeper (TOKEN-KIS-REFRESH);
- :func:`kiwoom_seams`: the Kiwoom session token through the same token manager and lock, under its
  own key; without credentials (mock environment only) LOGIN goes without one.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from redis.asyncio import Redis

from stockmon.clock import Clock, ScaledClock
from stockmon.reference.events import StatusChanged
from stockmon.reference.fleet.file_store import FileCredentialStore, cache_file
from stockmon.reference.fleet.lease_gate import RedisConnectGate, socket_lease
from stockmon.reference.fleet.redis_conn import (
    connect_redis,
    outage_keep_s,
    require_lock_backend,
)
from stockmon.reference.fleet.token_manager import (
    SharedCredential,
    Tuning,
    approval_key_manager,
    default_holder,
    token_manager,
)
from stockmon.reference.fleet.token_state import CachedCredential, TokenPolicy
from stockmon.reference.fleet.token_store import (
    SOCKET,
    CredentialStore,
    RedisCredentialStore,
    key_prefix,
)
from stockmon.reference.httpclient import HttpClient
from stockmon.reference.kis.auth import DirectApprovalKeyProvider, KisAuthClient
from stockmon.reference.kis.quote import snapshot_quotes
from stockmon.reference.kis.rest import KisRestClient
from stockmon.reference.kiwoom.auth import KiwoomAuthClient
from stockmon.reference.output import EventSink, status_reporter
from stockmon.reference.rest import BrokerHttp, new_http, request_timeout_s
from stockmon.reference.seams import (
    ConnectGate,
    CredentialSource,
    OpenGate,
    SharedCredentialSource,
)
from stockmon.settings import Settings
from stockmon.spec import Spec

Seams = tuple[CredentialSource, ConnectGate]

NO_TOKEN_NOTICE = (
    "KIWOOM_APP_KEY and KIWOOM_APP_SECRET are not set: Kiwoom LOGIN goes without a session token "  # noqa: S105
    "(STOCKMON_ENV=mock allows it, TOKEN-KIWOOM-SESSION)"
)


@dataclass
class KisContext:
    """The wired parts; attributes are public on purpose (tests and benchmarks use them)."""

    settings: Settings
    spec: Spec
    holder: str
    redis: Redis | None
    store: CredentialStore
    http: HttpClient
    auth: KisAuthClient
    tokens: SharedCredential
    approval: SharedCredential
    rest: KisRestClient

    def approval_provider(self) -> SharedCredentialSource:
        """The fleet's approval key for the streaming shell (WS-APPROVAL-KEY)."""
        return SharedCredentialSource(self.approval)


@asynccontextmanager
async def open_kis(
    settings: Settings,
    *,
    clock: Clock | None = None,
    holder: str | None = None,
    tuning: Tuning | None = None,
    http: HttpClient | None = None,
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
        store = FileCredentialStore(cache_file(settings.cache_dir, settings.env, app_key))
    own_http = http is None
    client = http or new_http()
    conn = BrokerHttp(
        client,
        settings.kis_rest_url,
        app_key,
        app_secret,
        "KIS_REST_URL",
        request_timeout_s(spec),
    )
    auth = KisAuthClient(conn, spec, scale=scale)
    common = {"clock": clock, "holder": name, "tuning": tuning}
    tokens = token_manager(store, auth.issue_token, TokenPolicy.for_token(spec, scale), **common)
    approval = approval_key_manager(
        store, auth.issue_approval_key, TokenPolicy.for_approval_key(spec, scale), **common
    )
    rest = KisRestClient(conn, tokens, spec, scale=scale)
    ctx = KisContext(settings, spec, name, redis, store, client, auth, tokens, approval, rest)
    try:
        yield ctx
    finally:
        await tokens.aclose()
        await approval.aclose()
        await store.aclose()
        if own_http:
            await client.close()
        if redis is not None:
            await redis.aclose()


def single_process_seams(settings: Settings, http: HttpClient) -> Seams:
    """Approval keys fetched directly and a gate that always grants (no REDIS_URL)."""
    app_key, app_secret = settings.require_kis()
    conn = BrokerHttp(
        http,
        settings.kis_rest_url,
        app_key,
        app_secret,
        "KIS_REST_URL",
        request_timeout_s(settings.spec),
    )
    auth = KisAuthClient(conn, settings.spec, scale=settings.time_scale)
    return DirectApprovalKeyProvider(auth), OpenGate()


@asynccontextmanager
async def kis_seams(
    settings: Settings,
    http: HttpClient,
    clock: ScaledClock,
    sink: EventSink,
    own_gate: bool = True,
    *,
    single_process: Callable[[Settings, HttpClient], Seams] = single_process_seams,
    holder: str | None = None,
) -> AsyncIterator[Seams]:
    """The approval-key source and connect gate of a KIS stream, plus its REST side (see above);
    KIS, the primary, always holds its own gate (``own_gate`` is for the registry's signature)."""
    report = status_reporter(sink)
    async with open_kis(settings, holder=holder, http=http) as kis:
        kis.tokens.on_change = lambda cred: report(token_renewed(cred, "kis"))
        gate: RedisConnectGate | None = None
        seams: Seams
        if kis.redis is not None and isinstance(kis.store, RedisCredentialStore):
            gate = socket_lease(
                kis.redis,
                kis.store.key(SOCKET, "lease"),
                kis.holder,
                report,
                "kis",
                keep=outage_keep_s(settings.spec, settings.time_scale),
            )
            seams = (kis.approval_provider(), gate)
        else:
            seams = single_process(settings, http)
        loop = asyncio.get_running_loop()
        background = [
            loop.create_task(
                snapshot_quotes(kis.rest, settings.subscriptions, report), name="snapshot"
            ),
            loop.create_task(kis.tokens.keep_fresh(), name="token-keeper"),
        ]
        try:
            yield seams
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            if gate is not None:
                await gate.release()


TOKEN_RENEWED = "token_renewed"  # noqa: S105  (a status word, not a secret)


def token_renewed(cred: CachedCredential, source: str) -> StatusChanged:
    """The status a new access token is announced with (its expiry feeds GET /v1/status)."""
    expires = datetime.fromtimestamp(cred.expires_at, UTC).isoformat(timespec="seconds")
    return StatusChanged(
        TOKEN_RENEWED,
        "token_issued",
        detail=f"valid until {expires}",
        expires_at=expires,
        source=source,
    )


def check_kiwoom(settings: Settings) -> None:
    """Refuse Kiwoom credentials the backup cannot run with, before anything is contacted."""
    have_key = settings.kiwoom_app_key is not None
    have_secret = settings.kiwoom_app_secret is not None
    if settings.env == "prod" or have_key or have_secret:
        settings.require_kiwoom()  # names the missing variable (CRED-KIWOOM-SECRET)


def uses_kiwoom_token(settings: Settings) -> bool:
    """Whether this run issues Kiwoom tokens (credentials given) or LOGINs without one."""
    return settings.kiwoom_app_key is not None and settings.kiwoom_app_secret is not None


@asynccontextmanager
async def kiwoom_seams(
    settings: Settings,
    http: HttpClient,
    clock: ScaledClock,
    sink: EventSink,
    own_gate: bool = True,
) -> AsyncIterator[tuple[SharedCredentialSource, ConnectGate]]:
    """The Kiwoom token source and a connect gate of its own (``own_gate``: Kiwoom alone; under
    auto the KIS gate serves both, and the KIS seams have checked the lock backend already)."""
    use_redis = require_lock_backend(settings) if own_gate else settings.redis_url is not None
    redis = connect_redis(settings.redis_url) if use_redis and settings.redis_url else None
    tokens = SharedCredentialSource(None)
    keeper: asyncio.Task[None] | None = None
    gate: ConnectGate = OpenGate()
    store: CredentialStore | None = None
    try:
        if uses_kiwoom_token(settings):
            app_key, app_secret = settings.require_kiwoom()
            prefix = key_prefix(settings.env, app_key, "kiwoom")
            store = (
                RedisCredentialStore(redis, prefix)
                if redis is not None
                else FileCredentialStore(
                    cache_file(settings.cache_dir, settings.env, app_key, "kiwoom")
                )
            )
            conn = BrokerHttp(
                http,
                settings.kiwoom_rest_url,
                app_key,
                app_secret,
                "KIWOOM_REST_URL",
                request_timeout_s(settings.spec),
            )
            auth = KiwoomAuthClient(conn, settings.spec, wall=clock.wall, scale=settings.time_scale)
            policy = TokenPolicy.for_kiwoom_token(settings.spec, settings.time_scale)
            manager = token_manager(store, auth.issue_token, policy)
            tokens = SharedCredentialSource(manager)
            keeper = asyncio.get_running_loop().create_task(
                manager.keep_fresh(), name="kiwoom-token"
            )
            if own_gate and redis is not None and isinstance(store, RedisCredentialStore):
                lease_key = store.key(SOCKET, "lease")
                gate = socket_lease(
                    redis,
                    lease_key,
                    default_holder(),
                    status_reporter(sink),
                    "kiwoom",
                    keep=outage_keep_s(settings.spec, settings.time_scale),
                )
        else:
            print(NO_TOKEN_NOTICE, file=sys.stderr)
        yield tokens, gate
    finally:
        if keeper is not None:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
        if isinstance(gate, RedisConnectGate):
            await gate.release()
        await tokens.aclose()
        if store is not None:
            await store.aclose()
        if redis is not None:
            await redis.aclose()


__all__ = [
    "NO_TOKEN_NOTICE",
    "KisContext",
    "Seams",
    "check_kiwoom",
    "kis_seams",
    "kiwoom_seams",
    "open_kis",
    "single_process_seams",
    "uses_kiwoom_token",
]
