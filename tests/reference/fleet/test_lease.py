"""Leases against a real redis-server (TOKEN-KIS-LOCK): TTL always, fencing, compare-and-delete."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from stockmon.conformance.redis_server import PrivateRedis as RedisServer
from stockmon.redaction import Secret
from stockmon.reference.fleet.lease import (
    LocalLeases,
    backoff_delays,
    current_holder,
    drift_allowance,
    parse_lease_value,
    try_acquire,
)
from stockmon.reference.fleet.redis_conn import connect_redis
from stockmon.reference.fleet.token_state import CachedCredential
from stockmon.reference.fleet.token_store import RedisCredentialStore, StoreWrite

KEY = "stockmon:{test}:token:lease"


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    """An asyncio client of the private test server."""
    client = connect_redis(Secret(redis_url))
    try:
        yield client
    finally:
        await client.aclose()


async def test_acquire_always_sets_a_ttl(redis: Redis) -> None:
    """SET NX PX: the lease key always carries a TTL, so a dead holder's lease lapses."""
    lease = await try_acquire(redis, KEY, 5.0, "w1")
    assert lease is not None
    pttl = await redis.pttl(KEY)
    assert 0 < pttl <= 5000


async def test_second_acquire_fails_while_held_and_succeeds_after_lapse(redis: Redis) -> None:
    """Mutual exclusion while the TTL runs; the next holder gets it once it lapses."""
    first = await try_acquire(redis, KEY, 0.2, "w1")
    assert first is not None
    assert await try_acquire(redis, KEY, 0.2, "w2") is None
    await asyncio.sleep(0.25)
    second = await try_acquire(redis, KEY, 0.2, "w2")
    assert second is not None
    assert second.epoch == first.epoch + 1


async def test_remaining_validity_is_conservative(redis: Redis) -> None:
    """The holder's own estimate never exceeds what Redis still grants (start = send time, minus drift)."""
    lease = await try_acquire(redis, KEY, 2.0, "w1")
    assert lease is not None
    pttl = await redis.pttl(KEY)
    assert lease.remaining() <= pttl / 1000
    assert lease.remaining() <= 2.0 - drift_allowance(2.0)


async def test_value_is_random_and_names_the_holder(redis: Redis) -> None:
    """The stored value is holder/token_hex@epoch: readable holder, unguessable token."""
    lease = await try_acquire(redis, KEY, 5.0, "host:123")
    assert lease is not None
    raw = (await redis.get(KEY)).decode()
    info = parse_lease_value(raw)
    assert info is not None and info.holder == "host:123" and info.epoch == lease.epoch
    token = raw.split("/", 1)[1].split("@", 1)[0]
    assert len(token) == 40 and int(token, 16) >= 0
    assert await current_holder(redis, KEY) == info
    assert raw not in repr(lease)


async def test_renew_extends_only_while_ours(redis: Redis) -> None:
    """Compare-and-PEXPIRE: renew works while held, fails after somebody else took over."""
    lease = await try_acquire(redis, KEY, 0.3, "w1")
    assert lease is not None
    await asyncio.sleep(0.15)
    assert await lease.renew()
    assert await redis.pttl(KEY) > 200
    await redis.delete(KEY)
    other = await try_acquire(redis, KEY, 5.0, "w2")
    assert other is not None
    assert not await lease.renew()
    assert lease.remaining() <= 0
    assert await redis.pttl(KEY) > 4000


async def test_release_is_compare_and_delete(redis: Redis) -> None:
    """A holder whose lease lapsed cannot delete the next holder's lease."""
    stale = await try_acquire(redis, KEY, 0.1, "w1")
    assert stale is not None
    await asyncio.sleep(0.15)
    fresh = await try_acquire(redis, KEY, 5.0, "w2")
    assert fresh is not None
    await stale.release()
    assert (await current_holder(redis, KEY)).holder == "w2"  # type: ignore[union-attr]
    await fresh.release()
    assert await redis.get(KEY) is None


async def test_release_survives_cancellation_of_its_caller(redis: Redis) -> None:
    """Release is shielded: cancelling the task that releases still frees the lease."""
    lease = await try_acquire(redis, KEY, 30.0, "w1")
    assert lease is not None

    async def give_up() -> None:
        await lease.release()

    task = asyncio.create_task(give_up())
    await asyncio.sleep(0)  # the release has started
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(100):
        if await redis.get(KEY) is None:
            break
        await asyncio.sleep(0.01)
    assert await redis.get(KEY) is None


async def test_release_never_raises_when_redis_is_gone(
    redis_server: RedisServer, redis: Redis
) -> None:
    """With Redis down, release logs and returns; the TTL frees the lease later."""
    lease = await try_acquire(redis, KEY, 5.0, "w1")
    assert lease is not None
    redis_server.kill()
    await lease.release()


async def test_fenced_write_refused_after_the_lease_changed_hands(redis: Redis) -> None:
    """A holder paused past its TTL cannot overwrite the cache: the Lua script checks the lease."""
    store = RedisCredentialStore(redis, "stockmon:{test}")
    paused = await store.try_acquire("token", 0.1, "w1")
    assert paused is not None
    await asyncio.sleep(0.15)
    winner = await store.try_acquire("token", 5.0, "w2")
    assert winner is not None
    new = CachedCredential(Secret("tok-new-aaaaaa"), time.time() + 100, time.time())
    old = CachedCredential(Secret("tok-old-bbbbbb"), time.time() + 100, time.time())
    assert await store.write(winner, "token", StoreWrite(new, 100, None)) == 1
    assert await store.write(paused, "token", StoreWrite(old, 100, None)) is None
    cached = await store.read("token")
    assert cached is not None and cached.value.reveal() == "tok-new-aaaaaa" and cached.version == 1


async def test_fenced_write_starts_the_throttle_window(redis: Redis) -> None:
    """The write and the issuance throttle window are one atomic step."""
    store = RedisCredentialStore(redis, "stockmon:{test}")
    lease = await store.try_acquire("token", 5.0, "w1")
    assert lease is not None
    cred = CachedCredential(Secret("tok-new-aaaaaa"), time.time() + 100, time.time())
    await store.write(lease, "token", StoreWrite(cred, 100, 2.0))
    assert 1.5 < await store.throttle_remaining("token") <= 2.0
    assert 0 < await redis.pttl("stockmon:{test}:token") <= 100_000


async def test_epoch_counts_every_acquisition(redis: Redis) -> None:
    """The fencing number grows by one per acquisition, even across releases."""
    epochs = []
    for _ in range(3):
        lease = await try_acquire(redis, KEY, 5.0, "w1")
        assert lease is not None
        epochs.append(lease.epoch)
        await lease.release()
    assert epochs == [epochs[0], epochs[0] + 1, epochs[0] + 2]


def test_holder_names_cannot_break_the_value_format() -> None:
    """'/' and '@' are separators of the stored value; names with them are refused."""
    with pytest.raises(ValueError, match="holder"):
        asyncio.run(try_acquire(None, KEY, 1.0, "a/b"))  # type: ignore[arg-type]


def test_backoff_is_jittered_exponential_and_capped() -> None:
    """Waiters back off with jitter between half and all of a doubling step, up to the cap."""
    import random

    delays = backoff_delays(0.1, 1.0, random.Random(7))
    seen = [next(delays) for _ in range(8)]
    steps = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 1.0]
    for d, step in zip(seen, steps, strict=True):
        assert step / 2 <= d <= step
    assert len(set(seen)) == len(seen)


# --- process-local fallback --------------------------------------------------------------


async def test_local_leases_exclude_and_lapse() -> None:
    """The no-Redis table has the same semantics: exclusive, TTL, compare-and-delete."""
    now = [0.0]
    table = LocalLeases(monotonic=lambda: now[0])
    a = table.try_acquire("k", 1.0, "w1")
    assert a is not None and table.try_acquire("k", 1.0, "w2") is None
    now[0] = 0.5
    assert await a.renew()
    now[0] = 1.4
    assert a.remaining() == pytest.approx(0.1)
    now[0] = 1.6
    b = table.try_acquire("k", 1.0, "w2")
    assert b is not None and b.epoch == a.epoch + 1
    await a.release()
    assert table.holder("k") is not None and table.holder("k").holder == "w2"  # type: ignore[union-attr]
    assert not await a.renew()
