"""One market-data socket across replicas (WS-SINGLE-SOCKET, WS-SESSION-LIMITS) with a Redis socket lease.

Three real ``stockmon stream`` processes share one app key, one mock and one redis-server. The
mock's trace is the evidence: from its ws_open/ws_close records, never two sockets at once.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from fleet_support import (
    PYTHON,
    client_env,
    max_concurrent,
    open_intervals,
    stop_processes,
    subprocess_env,
)
from redis.asyncio import Redis

from stockmon.mockserver import KisMock, MockConfig
from stockmon.reference.fleet.lease_gate import SOCKET_LEASE_TTL_S, SOCKET_POLL_S, SOCKET_RENEW_S

pytestmark = pytest.mark.slow
REPLICAS = 3
CANARY_KEY = "PS" + "FLEETCANARY" * 3 + "x"
CANARY_SECRET = "FLEETSECRETCANARY" * 10 + "abcdefghij"
LEASE_STATES = ("lease_acquired", "lease_lost", "lease_released", "standby")


@dataclass
class Replica:
    """One ``stockmon stream`` process and the events it printed."""

    proc: asyncio.subprocess.Process
    events: list[dict[str, Any]] = field(default_factory=list)
    stderr: bytearray = field(default_factory=bytearray)
    readers: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def name_suffix(self) -> str:
        """How this replica names itself in lease events (host:pid)."""
        return f":{self.proc.pid}"

    def states(self) -> list[str]:
        """The status states printed so far."""
        return [e["state"] for e in self.events if e.get("type") == "status"]

    def lease_state(self) -> str | None:
        """The newest socket-lease state this replica printed."""
        lease = [s for s in self.states() if s in LEASE_STATES]
        return lease[-1] if lease else None


async def start_replica(env: dict[str, str]) -> Replica:
    """Start one replica and collect its stdout events and stderr in the background."""
    proc = await asyncio.create_subprocess_exec(
        PYTHON,
        "-m",
        "stockmon.cli",
        "stream",
        "--format",
        "json",
        env=subprocess_env(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    rep = Replica(proc)

    async def read_out() -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            try:
                rep.events.append(json.loads(line))
            except json.JSONDecodeError:
                rep.events.append({"type": "garbage", "line": line.decode(errors="replace")})

    async def read_err() -> None:
        assert proc.stderr is not None
        async for line in proc.stderr:
            rep.stderr.extend(line)

    rep.readers = [asyncio.create_task(read_out()), asyncio.create_task(read_err())]
    return rep


async def until(predicate: Any, limit_s: float, what: str) -> None:
    """Poll ``predicate`` every 20 ms; fail naming ``what`` after ``limit_s`` seconds."""
    deadline = time.monotonic() + limit_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {limit_s} s waiting for {what}")
        await asyncio.sleep(0.02)


def holder_of(replicas: list[Replica]) -> Replica:
    """The one live replica whose newest lease event says it holds the socket lease."""
    holders = [
        r for r in replicas if r.proc.returncode is None and r.lease_state() == "lease_acquired"
    ]
    assert len(holders) == 1, [r.states()[-3:] for r in replicas]
    return holders[0]


async def test_three_replicas_hold_one_socket_through_kill_and_redis_outage(
    redis_server: Any,
) -> None:
    """One socket at every moment; SIGKILL -> takeover within TTL; Redis down -> holder closes in time."""
    config = MockConfig(
        symbols=("005930",), tick_rate_hz=4.0, app_key=CANARY_KEY, app_secret=CANARY_SECRET
    )
    async with KisMock(config) as mock:
        env = client_env(mock, redis_server.url, STOCKMON_SUBSCRIPTIONS="H0STCNT0:005930")
        replicas = [await start_replica(env) for _ in range(REPLICAS)]
        try:
            # 1. exactly one replica streams, the others stand by naming it
            await until(lambda: mock.open_sockets() == 1, 30, "the first socket")
            await until(
                lambda: any(e.get("type") == "tick" for r in replicas for e in r.events),
                15,
                "the first tick",
            )
            first = holder_of(replicas)
            others = [r for r in replicas if r is not first]
            await until(lambda: all("standby" in r.states() for r in others), 10, "standby events")
            for r in others:
                detail = next(e["detail"] for e in r.events if e.get("state") == "standby")
                assert first.name_suffix in detail
                assert not any(e.get("type") == "tick" for e in r.events)
            await asyncio.sleep(1.0)
            assert mock.open_sockets() == 1

            # 2. SIGKILL the holder: another replica holds the socket within the lease TTL
            kill_t = mock.trace.now()
            first.proc.send_signal(signal.SIGKILL)
            await first.proc.wait()
            await until(
                lambda: any(t > kill_t for t, _, _ in open_intervals(mock)),
                SOCKET_LEASE_TTL_S + 10,
                "a takeover",
            )
            takeover = min(t for t, _, _ in open_intervals(mock) if t > kill_t)
            assert takeover - kill_t <= SOCKET_LEASE_TTL_S + SOCKET_POLL_S + 1.5
            second = holder_of(others)
            await until(lambda: mock.open_sockets() == 1, 5, "the new holder's socket")

            # 3. Redis dies: the holder closes before its lease could have lapsed in Redis
            outage_t = mock.trace.now()
            redis_server.kill()
            await until(lambda: mock.open_sockets() == 0, SOCKET_LEASE_TTL_S + 5, "the close")
            closed = [c for _, c, _ in open_intervals(mock) if c is not None and c > outage_t]
            assert closed, "the holder's socket was closed"
            # The last renew was sent at most one renew interval before the outage.
            assert closed[0] - outage_t < SOCKET_LEASE_TTL_S - SOCKET_RENEW_S
            await asyncio.sleep(1.0)
            assert mock.open_sockets() == 0, "nobody opens a socket without the lease"
            assert second.proc.returncode is None, "the holder stands by, it does not exit"

            # 4. Redis is back: one replica (any) holds the socket again
            redis_server.start()
            await until(lambda: mock.open_sockets() == 1, 20, "recovery after the outage")
            await asyncio.sleep(1.0)
            assert mock.open_sockets() == 1
            await assert_no_canary_in_redis(redis_server.url)
        finally:
            await stop_processes([r.proc for r in replicas])
            for r in replicas:
                for task in r.readers:
                    await asyncio.gather(task, return_exceptions=True)
        assert max_concurrent(mock) == 1, open_intervals(mock)

    survivors = [r for r in replicas if r is not first]
    for r in survivors:
        assert r.proc.returncode == 0, r.stderr.decode()[-3000:]
        assert not [e for e in r.events if e.get("type") == "garbage"]
    for r in replicas:
        text = json.dumps(r.events) + r.stderr.decode(errors="replace")
        assert CANARY_KEY not in text and CANARY_SECRET not in text


async def assert_no_canary_in_redis(url: str) -> None:
    """Neither the app key nor the secret is in any Redis key or value."""
    redis = Redis.from_url(url)
    try:
        keys = await redis.keys("*")
        assert keys
        for key in keys:
            values = [key]
            kind = await redis.type(key)
            if kind == b"hash":
                values.extend((await redis.hgetall(key)).values())
            elif kind == b"string":
                values.append(await redis.get(key))
            for v in values:
                assert CANARY_KEY.encode() not in v and CANARY_SECRET.encode() not in v
    finally:
        await redis.aclose()
