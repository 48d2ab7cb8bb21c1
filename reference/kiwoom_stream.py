"""``stockmon stream`` with STOCKMON_BROKER=kiwoom (the backup alone) or auto (KIS, Kiwoom failover).

Credentials (CRED-KIWOOM-SECRET, TOKEN-KIWOOM-SESSION): a Kiwoom token needs KIWOOM_APP_KEY *and*
KIWOOM_APP_SECRET. In prod both are required (LOGIN needs a token); in the mock environment both may
be absent (LOGIN then goes without a token, which the mock profile allows), but one without the
other is a mistake and refused. The Kiwoom token goes through the same token manager and lock as
KIS's (Redis with REDIS_URL, mandatory in prod; process-local in mock), under its own key.

Single socket across brokers and replicas: with auto both clients share one connect gate, the
fleet's socket lease when REDIS_URL is set (see :mod:`stockmon.reference.kiwoom_failover`).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
from redis.asyncio import Redis

from stockmon.clock import ScaledClock
from stockmon.reference.events import StatusChanged
from stockmon.reference.kiwoom_auth import (
    KiwoomAuthClient,
    KiwoomTokenSource,
    kiwoom_key_prefix,
    kiwoom_token_policy,
)
from stockmon.reference.kiwoom_failover import Client, FailoverStream
from stockmon.reference.kiwoom_output import BrokerJsonLines, BrokerTable
from stockmon.reference.kiwoom_shell import KiwoomSink, KiwoomStreamClient
from stockmon.reference.lease_gate import RedisConnectGate
from stockmon.reference.output import EventSink
from stockmon.reference.redis_conn import connect_redis, require_lock_backend
from stockmon.reference.redis_seams import (
    SOCKET_CLOSE_BUDGET_S,
    SOCKET_LEASE_TTL_S,
    SOCKET_POLL_S,
    SOCKET_RENEW_S,
    status_reporter,
    stream_seams,
)
from stockmon.reference.seams import ConnectGate, OpenGate
from stockmon.reference.shell import StreamClient
from stockmon.reference.token_manager import default_holder, token_manager
from stockmon.reference.token_store import (
    SOCKET,
    CredentialStore,
    LocalCredentialStore,
    RedisCredentialStore,
)
from stockmon.settings import Settings

NO_TOKEN_NOTICE = (
    "KIWOOM_APP_KEY and KIWOOM_APP_SECRET are not set: Kiwoom LOGIN goes without a session token "  # noqa: S105
    "(STOCKMON_ENV=mock allows it, TOKEN-KIWOOM-SESSION)"
)


def check_backup(settings: Settings) -> None:
    """Refuse a configuration the backup cannot run with, before anything is contacted."""
    if settings.broker == "auto":
        settings.require_kis()
    have_key = settings.kiwoom_app_key is not None
    have_secret = settings.kiwoom_app_secret is not None
    if settings.env == "prod" or have_key or have_secret:
        settings.require_kiwoom()  # names the missing variable (CRED-KIWOOM-SECRET)


def uses_kiwoom_token(settings: Settings) -> bool:
    """Whether this run issues Kiwoom tokens (credentials given) or LOGINs without one."""
    return settings.kiwoom_app_key is not None and settings.kiwoom_app_secret is not None


def _lease_gate(redis: Redis, key: str, sink: EventSink) -> RedisConnectGate:
    report = status_reporter(sink)
    return RedisConnectGate(
        redis,
        key,
        default_holder(),
        ttl=SOCKET_LEASE_TTL_S,
        close_budget=SOCKET_CLOSE_BUDGET_S,
        renew_every=SOCKET_RENEW_S,
        poll=SOCKET_POLL_S,
        on_status=lambda state, reason, detail: report(StatusChanged(state, reason, detail=detail)),
    )


@asynccontextmanager
async def kiwoom_seams(
    settings: Settings,
    http: httpx.AsyncClient,
    clock: ScaledClock,
    sink: EventSink,
    *,
    own_gate: bool = True,
) -> AsyncIterator[tuple[KiwoomTokenSource, ConnectGate, Redis | None]]:
    """The Kiwoom token source, a connect gate of its own (``own_gate``: Kiwoom alone; under
    auto the KIS gate serves both, and the KIS seams have checked the lock backend already), and
    the Redis client (if any)."""
    use_redis = require_lock_backend(settings) if own_gate else settings.redis_url is not None
    redis = connect_redis(settings.redis_url) if use_redis and settings.redis_url else None
    tokens = KiwoomTokenSource(None)
    keeper: asyncio.Task[None] | None = None
    gate: ConnectGate = OpenGate()
    try:
        if uses_kiwoom_token(settings):
            app_key, app_secret = settings.require_kiwoom()
            prefix = kiwoom_key_prefix(settings.env, app_key)
            store: CredentialStore = (
                RedisCredentialStore(redis, prefix) if redis is not None else LocalCredentialStore()
            )
            auth = KiwoomAuthClient(
                http,
                settings.kiwoom_rest_url,
                app_key,
                app_secret,
                settings.spec,
                wall=clock.wall,
                scale=settings.time_scale,
            )
            manager = token_manager(
                store, auth.issue_token, kiwoom_token_policy(settings.spec, settings.time_scale)
            )
            tokens = KiwoomTokenSource(manager)
            keeper = asyncio.get_running_loop().create_task(
                manager.keep_fresh(), name="kiwoom-token"
            )
            if own_gate and redis is not None and isinstance(store, RedisCredentialStore):
                gate = _lease_gate(redis, store.key(SOCKET, "lease"), sink)
        else:
            print(NO_TOKEN_NOTICE, file=sys.stderr)
        yield tokens, gate, redis
    finally:
        if keeper is not None:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
        if isinstance(gate, RedisConnectGate):
            await gate.release()
        await tokens.aclose()
        if redis is not None:
            await redis.aclose()


def _kiwoom_factory(
    settings: Settings, tokens: KiwoomTokenSource, clock: ScaledClock, gate: ConnectGate
) -> Callable[[KiwoomSink], Client]:
    def make(sink: KiwoomSink) -> Client:
        return KiwoomStreamClient(
            spec=settings.spec,
            ws_url=settings.kiwoom_ws_url,
            subscriptions=settings.subscriptions,
            tokens=tokens,
            env=settings.env,
            clock=clock,
            sink=sink,
            gate=gate,
        )

    return make


async def backup_main(settings: Settings, fmt: str) -> int:
    """Stream with STOCKMON_BROKER=kiwoom or auto until SIGINT/SIGTERM; returns the exit code."""
    clock = ScaledClock(settings.time_scale)
    sink = BrokerTable(sys.stdout) if fmt == "table" else BrokerJsonLines(sys.stdout)
    async with httpx.AsyncClient() as http, contextlib.AsyncExitStack() as stack:
        runner: Client
        if settings.broker == "kiwoom":
            tokens, gate, _ = await stack.enter_async_context(
                kiwoom_seams(settings, http, clock, sink)
            )
            runner = _kiwoom_factory(settings, tokens, clock, gate)(sink)
        else:
            from stockmon.reference.stream_cli import build_seams

            approval, kis_gate = await stack.enter_async_context(
                stream_seams(settings, http, sink, build_seams)
            )
            tokens, _, _ = await stack.enter_async_context(
                kiwoom_seams(settings, http, clock, sink, own_gate=False)
            )

            def make_kis(kis_sink: EventSink) -> Client:
                return StreamClient(
                    spec=settings.spec,
                    ws_url=settings.kis_ws_url,
                    subscriptions=settings.subscriptions,
                    approval=approval,
                    clock=clock,
                    sink=kis_sink,
                    gate=kis_gate,
                )

            # One gate for both brokers: the KIS socket lease (or the single-process gate).
            runner = FailoverStream(
                spec=settings.spec,
                clock=clock,
                sink=sink,
                make_kis=make_kis,
                make_kiwoom=_kiwoom_factory(settings, tokens, clock, kis_gate),
            )
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM)
        for sig in signals:
            loop.add_signal_handler(sig, runner.stop)
        try:
            await runner.run()
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
    return 0


__all__ = ["NO_TOKEN_NOTICE", "backup_main", "check_backup", "kiwoom_seams"]
