"""The fleet's side of ``stockmon stream``: shared approval key, socket lease, REST snapshot, token keeper.

``stream_seams`` is what ``stockmon stream`` opens around its client:

- REDIS_URL set: a :class:`SharedApprovalKeyProvider` (approval key cached and refreshed through
  Redis, one issuance per fleet) and a :class:`RedisConnectGate` (the socket lease: one socket
  across every replica sharing the app key, WS-SINGLE-SOCKET). Lease changes are reported on the
  sink as status events naming the replica that holds the socket (``detail``).
- REDIS_URL unset: the single-process seams the caller passes in, after the checks of
  redis_conn.py (one warning line with STOCKMON_ENV=mock, refused in prod: TOKEN-KIS-LOCK).

Either way the REST side runs next to the stream: a price snapshot of every subscribed key at
start (the IUT contract of the conformance suite) and a keeper that refreshes the token inside the
window even though the stream makes no further REST call (TOKEN-KIS-REFRESH), on the token shared
through the same store.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx

from stockmon.reference.events import StatusChanged
from stockmon.reference.lease_gate import RedisConnectGate
from stockmon.reference.output import EventSink, safe_event
from stockmon.reference.redis_conn import connect_redis, require_lock_backend
from stockmon.reference.rest import KisRestClient
from stockmon.reference.rest_snapshot import snapshot_quotes
from stockmon.reference.seams import ApprovalKeyProvider, ConnectGate
from stockmon.reference.shell import CLOSE_TIMEOUT_S
from stockmon.reference.token_approval import SharedApprovalKeyProvider
from stockmon.reference.token_issuer import KisAuthClient
from stockmon.reference.token_manager import (
    SharedCredential,
    approval_key_manager,
    default_holder,
    token_manager,
)
from stockmon.reference.token_state import TokenPolicy
from stockmon.reference.token_store import (
    SOCKET,
    CredentialStore,
    LocalCredentialStore,
    RedisCredentialStore,
    key_prefix,
)
from stockmon.settings import Settings

Seams = tuple[ApprovalKeyProvider, ConnectGate]

# The holder must have its socket closed before its lease can lapse: closing may take the shell's
# whole close timeout, plus time to react on a loaded machine. The TTL leaves room for renewals.
SOCKET_CLOSE_BUDGET_S = CLOSE_TIMEOUT_S + 0.5
SOCKET_LEASE_TTL_S = 2 * SOCKET_CLOSE_BUDGET_S
SOCKET_RENEW_S = SOCKET_LEASE_TTL_S / 10
SOCKET_POLL_S = SOCKET_LEASE_TTL_S / 10


def status_reporter(sink: EventSink) -> Callable[[StatusChanged], None]:
    """Print a status event now (lease changes, REST snapshot results)."""

    def report(event: StatusChanged) -> None:
        safe_event(sink, event)
        sink.flush()

    return report


@asynccontextmanager
async def stream_seams(
    settings: Settings,
    http: httpx.AsyncClient,
    sink: EventSink,
    single_process: Callable[[Settings, httpx.AsyncClient], Seams],
    *,
    holder: str | None = None,
) -> AsyncIterator[Seams]:
    """The approval-key provider and connect gate for ``stockmon stream``, plus its REST side.

    While the context is open, two background tasks run: the REST price snapshot of every
    subscribed key (rest_snapshot.py) and the token keeper (``SharedCredential.keep_fresh``),
    both on the fleet's shared token. Everything opened here is closed on exit.
    """
    use_redis = require_lock_backend(settings)
    app_key, app_secret = settings.require_kis()
    spec, scale = settings.spec, settings.time_scale
    name = holder or default_holder()
    redis = connect_redis(settings.redis_url) if use_redis and settings.redis_url else None
    store: CredentialStore = (
        RedisCredentialStore(redis, key_prefix(settings.env, app_key))
        if redis is not None
        else LocalCredentialStore()
    )
    auth = KisAuthClient(http, settings.kis_rest_url, app_key, app_secret, spec, scale=scale)
    tokens = token_manager(store, auth.issue_token, TokenPolicy.for_token(spec, scale), holder=name)
    rest = KisRestClient(
        http, settings.kis_rest_url, app_key, app_secret, tokens, spec, scale=scale
    )
    report = status_reporter(sink)
    approval: SharedCredential | None = None
    gate: RedisConnectGate | None = None
    seams: Seams
    if redis is not None and isinstance(store, RedisCredentialStore):
        approval = approval_key_manager(
            store, auth.issue_approval_key, TokenPolicy.for_approval_key(spec, scale), holder=name
        )
        gate = RedisConnectGate(
            redis,
            store.key(SOCKET, "lease"),
            name,
            ttl=SOCKET_LEASE_TTL_S,
            close_budget=SOCKET_CLOSE_BUDGET_S,
            renew_every=SOCKET_RENEW_S,
            poll=SOCKET_POLL_S,
            on_status=lambda state, reason, detail: report(
                StatusChanged(state, reason, detail=detail)
            ),
        )
        seams = (SharedApprovalKeyProvider(approval), gate)
    else:
        seams = single_process(settings, http)
    loop = asyncio.get_running_loop()
    background = [
        loop.create_task(snapshot_quotes(rest, settings.subscriptions, report), name="snapshot"),
        loop.create_task(tokens.keep_fresh(), name="token-keeper"),
    ]
    try:
        yield seams
    finally:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        if gate is not None:
            await gate.release()
        await tokens.aclose()
        if approval is not None:
            await approval.aclose()
        if redis is not None:
            await redis.aclose()


__all__ = ["SOCKET_LEASE_TTL_S", "Seams", "status_reporter", "stream_seams"]
