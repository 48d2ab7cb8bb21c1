"""FLEET-REDIS-OUTAGE (spec 1.2): the fleet keeps streaming while Redis is down, never two sockets.

Three real ``stockmon stream`` processes, one mock, one private redis-server that is SIGKILLed and
restarted empty (no persistence: Redis loses its state). The mock's trace is the evidence: the
holder's one socket stays open and keeps carrying ticks through a short outage, the holder
reasserts its lease when Redis returns, and through a long outage it closes within its bound and
nobody opens another socket before the quarantine ends. Spec seconds are compressed
(``TIME_SCALE``), so keep_s of the spec is a few real seconds here.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fleet_support import client_env
from stream_fleet import (
    Replica,
    holder_of,
    max_concurrent,
    open_intervals,
    start_replica,
    stop_all,
    until,
)

from stockmon.mockserver import KisMock, MockConfig
from stockmon.redaction import Secret
from stockmon.reference.fleet.lease import drift_allowance
from stockmon.reference.fleet.lease_gate import (
    SOCKET_CLOSE_BUDGET_S,
    SOCKET_LEASE_TTL_S,
    RedisConnectGate,
)
from stockmon.reference.fleet.redis_conn import connect_redis, outage_keep_s
from stockmon.spec import load_spec

pytestmark = pytest.mark.slow
REPLICAS = 3
TIME_SCALE = 5.0
TR_ID = "H0STCNT0"
KEEP_S = outage_keep_s(load_spec("1.2"), TIME_SCALE)
LEASE_S = SOCKET_LEASE_TTL_S + KEEP_S  # the stored lease outlives a renew by this much
QUARANTINE_S = LEASE_S + drift_allowance(LEASE_S)


def ticks(replica: Replica) -> int:
    """Tick events this replica has printed so far."""
    return sum(1 for e in replica.events if e.get("type") == "tick")


def frames_to(mock: KisMock, conn: str, start: float, end: float) -> int:
    """Data frames of ``TR_ID`` the mock sent on ``conn`` between real times ``start`` and ``end``."""
    return sum(
        1
        for r in mock.trace.records()
        if r["channel"] == "ws"
        and r["conn"] == conn
        and r.get("tr_id") == TR_ID
        and r["dir"] == "out"
        and start < r["t"] < end
    )


def live_conn(mock: KisMock) -> str:
    """The one socket open now."""
    live = [conn for _, closed, conn in open_intervals(mock) if closed is None]
    assert len(live) == 1, open_intervals(mock)
    return live[0]


async def test_fleet_streams_through_a_redis_outage_and_never_opens_two_sockets(
    redis_server: Any,
) -> None:
    """Short outage: same socket, ticks flow, lease reasserted; long outage: closed in bound, quarantine."""
    assert 0 < KEEP_S < 10, "the test's time scale keeps the outage short"
    config = MockConfig(spec_version="1.2", time_scale=TIME_SCALE, symbols=("005930",))
    async with KisMock(config) as mock:
        env = client_env(mock, redis_server.url, STOCKMON_SUBSCRIPTIONS=f"{TR_ID}:005930")
        replicas = [await start_replica(env) for _ in range(REPLICAS)]
        try:
            # A fresh Redis has no epoch counter: the first socket waits out the quarantine.
            await until(lambda: mock.open_sockets() == 1, QUARANTINE_S + 20, "the first socket")
            await until(lambda: any(ticks(r) for r in replicas), 15, "the first tick")
            holder = holder_of(replicas)
            conn = live_conn(mock)

            # 1. A short outage (shorter than keep_s): the holder keeps its socket and streams.
            kill_t = mock.trace.now()
            before = ticks(holder)
            redis_server.kill()
            await until(lambda: "lease_kept" in holder.states(), 5, "the holder's keep status")
            await asyncio.sleep(KEEP_S * 0.8)
            back_t = mock.trace.now()
            assert mock.open_sockets() == 1 and live_conn(mock) == conn, "the same socket stays"
            assert ticks(holder) > before, "the holder printed ticks while Redis was down"
            assert frames_to(mock, conn, kill_t, back_t) > 0, "the mock kept sending data"
            # 2. Redis returns empty: the holder reasserts (fenced) before the quarantine ends.
            redis_server.start()
            await until(
                lambda: any(e.get("reason") == "socket_lease_reasserted" for e in holder.events),
                SOCKET_LEASE_TTL_S,
                "the holder's reassert",
            )
            assert live_conn(mock) == conn and holder_of(replicas) is holder
            assert not [c for c in open_intervals(mock) if c[0] > kill_t], "nobody else opened"

            # 3. A long outage: the holder closes before its stored lease could lapse ...
            kill_t = mock.trace.now()
            redis_server.kill()
            await until(lambda: mock.open_sockets() == 0, LEASE_S + 5, "the holder's close")
            closed = next(c for _, c, k in open_intervals(mock) if k == conn)
            assert closed is not None and closed - kill_t < LEASE_S
            assert closed - kill_t > LEASE_S - SOCKET_CLOSE_BUDGET_S - 1.0, "it kept first"
            await asyncio.sleep(1.0)
            assert mock.open_sockets() == 0, "nobody opens a socket without Redis"
            # ... and once Redis is back (empty), nobody opens one before the quarantine ends.
            back_t = mock.trace.now()
            redis_server.start()
            await until(lambda: mock.open_sockets() == 1, QUARANTINE_S + 15, "the recovery")
            reopened = min(t for t, _, _ in open_intervals(mock) if t > back_t)
            assert reopened - back_t >= QUARANTINE_S - 1.0, "quarantine (uptime is whole seconds)"
            assert any("redis_quarantine" in [e.get("reason") for e in r.events] for r in replicas)
        finally:
            await stop_all(replicas)
        assert max_concurrent(mock) == 1, open_intervals(mock)
    for r in replicas:
        assert r.proc.returncode == 0, r.stderr.decode()[-3000:]


class CuttableLink:
    """A loopback TCP relay to Redis that can be cut: one replica's view of a network partition."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.cut = False
        self.url = ""

    async def start(self) -> None:
        """Listen on a free loopback port."""
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.url = f"redis://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/0"

    def sever(self) -> None:
        """Cut: close every relayed connection and refuse new ones from now on."""
        self.cut = True
        for w in list(self._writers):
            w.close()

    async def aclose(self) -> None:
        """Stop listening."""
        self.sever()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut:
            writer.close()
            return
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self._port)
        self._writers.update((writer, up_w))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))
        self._writers.difference_update((writer, up_w))


async def test_partitioned_holder_closes_before_a_standby_can_acquire(redis_server: Any) -> None:
    """Partition (holder cut off, standby not): the holder keeps, then closes before anyone acquires."""
    link = CuttableLink(redis_server.port)
    await link.start()
    near, far = connect_redis(Secret(link.url)), connect_redis(Secret(redis_server.url))
    timing = {"ttl": 1.5, "close_budget": 0.5, "renew_every": 0.15, "poll": 0.1, "keep": 1.0}
    holder = RedisConnectGate(near, "stockmon:{t}:socket:lease", "holder", **timing)
    standby = RedisConnectGate(far, "stockmon:{t}:socket:lease", "standby", **timing)
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(holder.acquire(), holder.quarantine + 5)
        waiting = loop.create_task(standby.acquire())
        await asyncio.sleep(1.0)
        assert holder.held and not waiting.done()
        cut_t = loop.time()
        link.sever()
        await asyncio.wait_for(holder.lost().wait(), holder.lease_ttl + 2)
        lost_t = loop.time()
        await asyncio.wait_for(waiting, holder.lease_ttl + 5)
        acquired_t = loop.time()
        # Without the clause it would close at ttl - close_budget; with it, keep_s later.
        assert lost_t - cut_t > timing["ttl"] - timing["close_budget"] + 0.5 * timing["keep"]
        # The holder gave up its socket with close_budget to spare before anyone could acquire.
        assert acquired_t - lost_t >= timing["close_budget"] - 0.1
        assert standby.held
    finally:
        await standby.release()
        await holder.release()
        await link.aclose()
        await near.aclose()
        await far.aclose()
