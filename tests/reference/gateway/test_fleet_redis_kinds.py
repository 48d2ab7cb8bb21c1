"""The fleet's bus and socket lease over every REDIS_URL kind redis-py serves (API-FLEET).

A single node, a Sentinel-monitored master (``redis+sentinel://``) and a three-node Cluster
(``redis+cluster://``), each real redis-server processes on loopback. Over each: the socket lease
is exclusive, and an event offered by the holder comes back through the stream to a subscriber
with its stream id (scripts, pipeline and the two-stream XREAD stay in the fleet's hash slot).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import Iterator

import pytest
from redis.asyncio import Redis

from stockmon.conformance.redis_server import SENTINEL_SERVICE, PrivateRedis
from stockmon.redaction import Secret
from stockmon.reference.fleet.lease import try_acquire
from stockmon.reference.fleet.redis_conn import connect_redis
from stockmon.reference.fleet.token_store import SOCKET, key_prefix
from stockmon.reference.gateway.fleet import FleetBus
from stockmon.reference.gateway.hub import Hub
from stockmon.spec import load_spec

pytestmark = pytest.mark.slow
SPEC = load_spec("1.2")
PREFIX = key_prefix("mock", Secret("PS" + "kinds" * 7))


async def round_trip(redis: Redis) -> None:
    """Lease exclusive; an offered event read back with its stream id as event_id."""
    lease_key = f"{PREFIX}:{SOCKET}:lease"
    first = await try_acquire(redis, lease_key, 5.0, "replica-a")
    assert first is not None
    assert await try_acquire(redis, lease_key, 5.0, "replica-b") is None
    hub = Hub(SPEC, time.monotonic)
    bus = FleetBus(SPEC, hub, redis, PREFIX, "replica-a", lambda: first, "kis")
    hub.bus = bus
    tasks = [asyncio.create_task(bus.read_forever()), asyncio.create_task(bus.publish_forever())]
    try:
        deadline = time.monotonic() + 10
        while not bus.ok:
            assert time.monotonic() < deadline, "the reader never came up"
            await asyncio.sleep(0.02)
        sub = hub.attach()
        sub.keys.add("005930")
        tick = {"type": "tick", "source": "kis", "key": "005930", "price": 1}
        hub.publish(tick, None)
        assert not sub.queue, "the holder's event waits for the stream"
        while not sub.queue:
            assert time.monotonic() < deadline, "the event never came back"
            await asyncio.sleep(0.02)
        body = sub.queue[0].body
        assert body["event"] == tick
        assert body["event_id"] == bus.last_id
        assert (await bus.latest("tick", "005930")) is not None

        # the lease lapses and another replica takes it: a late publish of ours is refused
        await redis.delete(lease_key)
        second = await try_acquire(redis, lease_key, 5.0, "replica-b")
        assert second is not None
        events_key = f"{PREFIX}:{SPEC.clause('API-FLEET').string('events_key')}"
        length = await redis.xlen(events_key)
        hub.publish({**tick, "price": 2}, None)
        while bus.publish_refused == 0:
            assert time.monotonic() < deadline, "the stale publish was not refused"
            await asyncio.sleep(0.02)
        assert await redis.xlen(events_key) == length, "nothing written beside the new holder"
        await second.release()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await first.release()
        await redis.aclose()


async def test_single_node_url(redis_server: PrivateRedis) -> None:
    """redis://: the lease and the bus round trip."""
    await round_trip(connect_redis(Secret(redis_server.url)))


@pytest.fixture
def sentinel() -> Iterator[tuple[PrivateRedis, PrivateRedis]]:
    """A master and a Sentinel monitoring it."""
    with PrivateRedis(password=False, prefix="stockmon-master-") as master:
        watcher = PrivateRedis(password=False, prefix="stockmon-sentinel-", sentinel_of=master.port)
        with watcher:
            yield master, watcher


async def test_sentinel_url(sentinel: tuple[PrivateRedis, PrivateRedis]) -> None:
    """redis+sentinel://: the master is found through the Sentinel; writes land on it."""
    master, watcher = sentinel
    url = f"redis+sentinel://127.0.0.1:{watcher.port}/{SENTINEL_SERVICE}/0"
    await round_trip(connect_redis(Secret(url)))
    direct = Redis(port=master.port)
    try:
        events = f"{PREFIX}:{SPEC.clause('API-FLEET').string('events_key')}"
        assert await direct.xlen(events) == 1, "the stream lives on the master"
    finally:
        await direct.aclose()


@pytest.fixture
def cluster(redis_cli: str) -> Iterator[list[PrivateRedis]]:
    """Three Cluster nodes joined into one cluster (redis-cli --cluster create)."""
    cli = redis_cli
    with contextlib.ExitStack() as stack:
        nodes = [
            stack.enter_context(PrivateRedis(password=False, prefix="stockmon-node-", cluster=True))
            for _ in range(3)
        ]
        addresses = [f"127.0.0.1:{n.port}" for n in nodes]
        subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=30,
        )
        deadline = time.monotonic() + 15
        while True:  # every node agrees, not only the first (else "the cluster is down")
            infos = [
                subprocess.run(
                    [cli, "-p", str(n.port), "cluster", "info"],
                    capture_output=True,
                    text=True,
                    timeout=5,
                ).stdout
                for n in nodes
            ]
            if all("cluster_state:ok" in i and "cluster_known_nodes:3" in i for i in infos):
                break
            assert time.monotonic() < deadline, infos
            time.sleep(0.1)
        yield nodes


async def test_cluster_url(cluster: list[PrivateRedis]) -> None:
    """redis+cluster://: every fleet key in one slot, so scripts, pipelines and XREAD work."""
    await round_trip(connect_redis(Secret(f"redis+cluster://127.0.0.1:{cluster[0].port}")))
