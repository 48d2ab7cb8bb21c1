"""The fleet's side of the streaming seams: shared approval key and socket lease when REDIS_URL is set.

``stream_seams`` is what ``stockmon stream`` opens around its client:

- REDIS_URL set: a :class:`SharedApprovalKeyProvider` (approval key cached and refreshed through
  Redis, one issuance per fleet) and a :class:`RedisConnectGate` (the socket lease: one socket
  across every replica sharing the app key, WS-SINGLE-SOCKET). Lease changes are reported on the
  sink as status events naming the replica that holds the socket (``detail``).
- REDIS_URL unset: the single-process seams the caller passes in, after the checks of
  redis_conn.py (one warning line with STOCKMON_ENV=mock, refused in prod: TOKEN-KIS-LOCK).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx

from stockmon.reference.events import StatusChanged
from stockmon.reference.lease_gate import RedisConnectGate
from stockmon.reference.output import EventSink, safe_event
from stockmon.reference.redis_conn import connect_redis, require_lock_backend
from stockmon.reference.seams import ApprovalKeyProvider, ConnectGate
from stockmon.reference.shell import CLOSE_TIMEOUT_S
from stockmon.reference.token_approval import SharedApprovalKeyProvider
from stockmon.reference.token_issuer import KisAuthClient
from stockmon.reference.token_manager import approval_key_manager, default_holder
from stockmon.reference.token_state import TokenPolicy
from stockmon.reference.token_store import SOCKET, RedisCredentialStore, key_prefix
from stockmon.settings import Settings

Seams = tuple[ApprovalKeyProvider, ConnectGate]

# The holder must have its socket closed before its lease can lapse: closing may take the shell's
# whole close timeout, plus time to react on a loaded machine. The TTL leaves room for renewals.
SOCKET_CLOSE_BUDGET_S = CLOSE_TIMEOUT_S + 0.5
SOCKET_LEASE_TTL_S = 2 * SOCKET_CLOSE_BUDGET_S
SOCKET_RENEW_S = SOCKET_LEASE_TTL_S / 10
SOCKET_POLL_S = SOCKET_LEASE_TTL_S / 10


def status_reporter(sink: EventSink) -> Callable[[str, str, str], None]:
    """A gate callback that prints lease changes as status events."""

    def report(state: str, reason: str, detail: str) -> None:
        safe_event(sink, StatusChanged(state, reason, detail=detail))
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
    """The approval-key provider and connect gate for ``stockmon stream``; closes what it opened."""
    if not require_lock_backend(settings):
        yield single_process(settings, http)
        return
    assert settings.redis_url is not None
    app_key, app_secret = settings.require_kis()
    spec, scale = settings.spec, settings.time_scale
    name = holder or default_holder()
    redis = connect_redis(settings.redis_url)
    store = RedisCredentialStore(redis, key_prefix(settings.env, app_key))
    auth = KisAuthClient(http, settings.kis_rest_url, app_key, app_secret, spec, scale=scale)
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
        on_status=status_reporter(sink),
    )
    try:
        yield SharedApprovalKeyProvider(approval), gate
    finally:
        await gate.release()
        await approval.aclose()
        await redis.aclose()


__all__ = ["SOCKET_LEASE_TTL_S", "Seams", "status_reporter", "stream_seams"]
