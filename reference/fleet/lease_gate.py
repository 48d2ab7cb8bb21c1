"""One market-data socket across replicas (WS-SINGLE-SOCKET, WS-SESSION-LIMITS): a socket lease.

Only the holder of the socket lease opens the socket; the other replicas stand by and poll, and
take over once the lease lapses (holder killed) or is released (holder stopped). The holder
renews the lease every ``ttl / 4`` and signals *lost* as soon as its remaining validity (measured
from the send time of its last successful renew, minus drift, lease.py) drops to
``close_budget``: the shell must then close its socket at once. So a holder cut off from Redis
closes its socket while its lease is still valid in Redis, and no other replica can have opened
one yet — never two sockets, as long as the limits in lease.py hold (single Redis node, no server
clock jumps, a holder that is not frozen).

Redis outage (FLEET-REDIS-OUTAGE, spec 1.2; ``keep`` > 0): a holder cut off from Redis keeps its
socket ``keep`` seconds longer. The lease key then lives ``ttl + keep`` after each renew, so no
standby can acquire during the keep even when only the holder is cut off (a partition); the holder
reasserts at every renew interval (fenced, lease.py) and closes as soon as the key is another's or
its own validity runs down to ``close_budget``; after a Redis restart without its state, standbys
are quarantined until the server has been up ``ttl + keep`` (plus drift), so the keeping holder
reasserts first. The price is the takeover after a holder's death: ``ttl + keep`` instead of
``ttl``. Without the clause ``keep`` is 0 and all of this is off (spec 1.0/1.1 behaviour).

Lease and timings are in real seconds (they are about processes and Redis, not the spec).
``close_budget`` must cover the shell's worst-case close (its close timeout) plus reaction time;
``stockmon stream`` uses a 5 s lease, renewed every 0.5 s, closed 2.5 s before it could lapse, so a
standby takes over within about 5.5 s of a holder's death (redis_seams.py).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable

from redis.asyncio import Redis

from stockmon.reference.events import StatusChanged
from stockmon.reference.fleet.lease import (
    LeaseInfo,
    RedisLease,
    backoff_delays,
    current_holder,
    drift_allowance,
    quarantine_left,
    try_acquire,
)
from stockmon.reference.fleet.token_manager import STORE_ERRORS
from stockmon.reference.shell import CLOSE_TIMEOUT_S

log = logging.getLogger(__name__)

DEFAULT_TTL_S = 3.0
# Redis outage: first and longest pause between two acquire attempts of a standby.
_OUTAGE_BASE_S = 0.25
_OUTAGE_CAP_S = 2.0

StatusCallback = Callable[[str, str, str], None]  # (state, reason, detail)

# The holder must have its socket closed before its lease can lapse: closing may take the shell's
# whole close timeout, plus time to react on a loaded machine. The TTL leaves room for renewals.
SOCKET_CLOSE_BUDGET_S = CLOSE_TIMEOUT_S + 0.5
SOCKET_LEASE_TTL_S = 2 * SOCKET_CLOSE_BUDGET_S
SOCKET_RENEW_S = SOCKET_LEASE_TTL_S / 10
SOCKET_POLL_S = SOCKET_LEASE_TTL_S / 10


class RedisConnectGate:
    """Permission to hold the fleet's one socket, as a renewed Redis lease."""

    def __init__(
        self,
        redis: Redis,
        key: str,
        holder: str,
        *,
        ttl: float = DEFAULT_TTL_S,
        close_budget: float | None = None,
        renew_every: float | None = None,
        poll: float | None = None,
        on_status: StatusCallback | None = None,
        rng: random.Random | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        keep: float = 0.0,
    ) -> None:
        if not ttl > 0:
            raise ValueError(f"socket lease TTL must be > 0, got {ttl!r}")
        if not keep >= 0:
            raise ValueError(f"outage keep must be >= 0, got {keep!r}")
        self.redis = redis
        self.key = key
        self.holder = holder
        self.ttl = ttl
        self.close_budget = ttl / 3 if close_budget is None else close_budget
        self.renew_every = ttl / 4 if renew_every is None else renew_every
        self.poll = ttl / 4 if poll is None else poll
        if not 0 < self.renew_every < ttl - self.close_budget:
            raise ValueError("renew_every must be shorter than ttl - close_budget")
        self.on_status = on_status
        self._rng = rng or random.Random()
        self._monotonic = monotonic
        self._lease: RedisLease | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()
        self._outage_logged = False
        self.acquisitions = 0
        # FLEET-REDIS-OUTAGE: the stored lease outlives a renew by ttl + keep; 0 quarantine = off.
        self.keep = keep
        self.lease_ttl = ttl + keep
        self.quarantine = self.lease_ttl + drift_allowance(self.lease_ttl) if keep > 0 else 0.0

    # ----------------------------------------------------------------- protocol

    @property
    def lease(self) -> RedisLease | None:
        """The lease while held."""
        return self._lease

    @property
    def held(self) -> bool:
        """Whether we hold a lease that is still valid by our own (conservative) clock."""
        lease = self._lease
        return (
            lease is not None and not self._lost.is_set() and lease.remaining() > self.close_budget
        )

    def lost(self) -> asyncio.Event:
        """Set when permission is gone: close the socket now (cleared by :meth:`acquire`)."""
        return self._lost

    async def acquire(self) -> None:
        """Wait (standby) until this replica holds the socket lease; then keep it renewed.

        Implements :class:`~stockmon.reference.seams.ConnectGate` with :meth:`lost` and
        :meth:`release`.
        """
        if self._lease is not None:
            await self.release()
        waited_for: LeaseInfo | None = None
        quarantined = False
        outage = backoff_delays(_OUTAGE_BASE_S, _OUTAGE_CAP_S, self._rng)
        while True:
            try:
                lease = await try_acquire(
                    self.redis, self.key, self.lease_ttl, self.holder, quarantine=self.quarantine
                )
                info = None if lease is not None else await current_holder(self.redis, self.key)
                barred = 0.0
                if lease is None and info is None and self.quarantine > 0:
                    barred = await quarantine_left(self.redis, self.key)
            except STORE_ERRORS as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError from exc  # see TokenManager._store
                if not self._outage_logged:
                    self._outage_logged = True
                    log.warning(
                        "Redis unreachable (%s): standing by without a socket until it is back",
                        type(exc).__name__,
                    )
                    self._emit("standby", "redis_unreachable", "no socket lease without Redis")
                await asyncio.sleep(next(outage))
                continue
            if self._outage_logged:
                self._outage_logged = False
                log.warning("Redis reachable again; competing for the socket lease")
            if lease is not None:
                break
            if barred > 0 and not quarantined:
                quarantined = True
                self._emit(
                    "standby",
                    "redis_quarantine",
                    f"Redis lost its state: no new socket lease for {barred:.1f} s, "
                    "so a holder that kept its socket can reassert first (FLEET-REDIS-OUTAGE)",
                )
            if info is not None and info != waited_for:
                waited_for = info
                self._emit(
                    "standby",
                    "socket_lease_held",
                    f"socket lease held by {info.holder} (epoch {info.epoch})",
                )
            await asyncio.sleep(self.poll * (0.5 + self._rng.random() / 2))
        self._lease = lease
        self._lost.clear()
        self.acquisitions += 1
        self._keeper = asyncio.get_running_loop().create_task(
            self._keep(lease), name="socket-lease-keeper"
        )
        self._emit(
            "lease_acquired",
            "socket_lease",
            f"socket lease held by {self.holder} (epoch {lease.epoch})",
        )

    async def release(self) -> None:
        """Stop renewing and give the lease up (call after the socket is closed)."""
        keeper, self._keeper = self._keeper, None
        if keeper is not None and not keeper.done():
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
        lease, self._lease = self._lease, None
        if lease is not None:
            await lease.release()
            self._emit("lease_released", "socket_lease", f"released by {self.holder}")

    async def aclose(self) -> None:
        """Alias of :meth:`release` for ``async with``-style owners."""
        await self.release()

    async def who(self) -> LeaseInfo | None:
        """Who holds the socket lease right now (None if nobody, or Redis unreachable)."""
        try:
            return await current_holder(self.redis, self.key)
        except STORE_ERRORS:
            return None

    # ---------------------------------------------------------------- internals

    def _emit(self, state: str, reason: str, detail: str) -> None:
        log.info("%s: %s", state, detail)
        if self.on_status is not None:
            self.on_status(state, reason, detail)

    async def _keep(self, lease: RedisLease) -> None:
        """Renew until the lease is lost or about to be; then set ``lost``."""
        failing = False
        while True:
            slack = lease.remaining() - self.close_budget
            if slack <= 0:
                self._signal_lost("socket_lease_expiring", "could not renew the socket lease")
                return
            await asyncio.sleep(min(self.renew_every, slack))
            slack = lease.remaining() - self.close_budget
            if slack <= 0:
                self._signal_lost("socket_lease_expiring", "could not renew the socket lease")
                return
            try:
                ok = await asyncio.wait_for(lease.renew(), slack)
            except STORE_ERRORS as exc:
                if not failing:
                    failing = True
                    left = max(0.0, lease.remaining() - self.close_budget)
                    log.warning(
                        "socket lease renew failed (%s); closing the socket in %.2f s "
                        "unless Redis answers",
                        type(exc).__name__,
                        left,
                    )
                    if self.keep > 0:
                        self._emit(
                            "lease_kept",
                            "redis_unreachable",
                            f"Redis unreachable: keeping the socket for at most {left:.1f} s "
                            "while reasserting the lease (FLEET-REDIS-OUTAGE)",
                        )
                continue
            if not ok:
                self._signal_lost("socket_lease_lost", "the socket lease is no longer ours")
                return
            if failing:
                failing = False
                log.warning("socket lease renewed again")
                if self.keep > 0:
                    self._emit(
                        "lease_acquired",
                        "socket_lease_reasserted",
                        f"socket lease reasserted by {self.holder} (epoch {lease.epoch})",
                    )

    def _signal_lost(self, reason: str, detail: str) -> None:
        if not self._lost.is_set():
            self._lost.set()
            log.warning("%s: close the socket now", detail)
            self._emit("lease_lost", reason, detail)


__all__ = [
    "DEFAULT_TTL_S",
    "SOCKET_LEASE_TTL_S",
    "SOCKET_POLL_S",
    "SOCKET_RENEW_S",
    "RedisConnectGate",
    "StatusCallback",
    "socket_lease",
]


def socket_lease(
    redis: Redis,
    key: str,
    holder: str,
    report: Callable[[StatusChanged], None],
    source: str,
    *,
    keep: float = 0.0,
) -> RedisConnectGate:
    """The fleet's market-data socket lease; its changes are reported as ``source``'s statuses.

    ``keep``: real seconds a holder keeps its socket through a Redis outage (FLEET-REDIS-OUTAGE,
    :func:`~stockmon.reference.fleet.redis_conn.outage_keep_s`); 0 closes before the lease lapses.
    """
    return RedisConnectGate(
        redis,
        key,
        holder,
        ttl=SOCKET_LEASE_TTL_S,
        close_budget=SOCKET_CLOSE_BUDGET_S,
        renew_every=SOCKET_RENEW_S,
        poll=SOCKET_POLL_S,
        keep=keep,
        on_status=lambda state, reason, detail: report(
            StatusChanged(state, reason, detail=detail, source=source)
        ),
    )
