"""Token manager against a real redis-server (TOKEN-KIS-REFRESH, -LOCK, -THROTTLE, POL-AUTH-FAILED).

Several ``SharedCredential`` instances with their own Redis connections stand for several
processes; token time is a FakeClock, leases and throttle windows run on Redis' real clock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from token_support import (
    FAST,
    SCALE,
    THROTTLE,
    VALIDITY,
    WINDOW,
    FakeIssuer,
    make_manager,
)

from stockmon.clock import FakeClock
from stockmon.conformance.redis_server import PrivateRedis as RedisServer
from stockmon.redaction import Secret
from stockmon.reference.errors import (
    AuthError,
    CredentialUnavailableError,
    NetworkError,
    TokenThrottledError,
)
from stockmon.reference.fleet import token_store
from stockmon.reference.fleet.redis_conn import connect_redis
from stockmon.reference.fleet.token_manager import SharedCredential, Tuning
from stockmon.reference.fleet.token_state import TokenState
from stockmon.reference.fleet.token_store import (
    ChangeFeed,
    LocalCredentialStore,
    RedisCredentialStore,
    key_prefix,
)

PREFIX = key_prefix("mock", Secret("PS-test-app-key-000000000000000000000"))


class Clients:
    """A factory of Redis clients (one per simulated process) and of stores on them."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.made: list[Redis] = []
        self.stores: list[RedisCredentialStore] = []

    def __call__(self) -> Redis:
        """A new client."""
        client = connect_redis(Secret(self.url))
        self.made.append(client)
        return client

    def store(self, cls: type[RedisCredentialStore] | None = None) -> RedisCredentialStore:
        """A store on a new client, closed (its change listener stopped) at the end."""
        store = (cls or RedisCredentialStore)(self(), PREFIX)
        self.stores.append(store)
        return store


@pytest.fixture
async def clients(redis_url: str) -> AsyncIterator[Clients]:
    """Clients and stores for one test, all closed at the end."""
    made = Clients(redis_url)
    try:
        yield made
    finally:
        for s in made.stores:
            await s.aclose()
        for c in made.made:
            await c.aclose()


def fleet(
    clients: Clients, issuer: FakeIssuer, clock: FakeClock, n: int, **kw: object
) -> list[SharedCredential]:
    """``n`` managers, one per simulated process, sharing Redis and the issuer."""
    return [
        make_manager(clients.store(), issuer, clock, f"p{i}", **kw)  # type: ignore[arg-type]
        for i in range(n)
    ]


async def gather_tokens(managers: list[SharedCredential], tasks: int) -> list[str]:
    """Every manager's ``tasks`` tasks call get() at once; the values they got."""
    creds = await asyncio.gather(*(m.get() for m in managers for _ in range(tasks)))
    return [c.value.reveal() for c in creds]


# --- TOKEN-KIS-LOCK: a fleet at expiry issues exactly once ------------------------------------


async def test_cold_start_fleet_issues_exactly_once(clients: Clients) -> None:
    """Five processes x ten tasks with an empty cache: one issuance, everybody gets that token."""
    issuer = FakeIssuer(delay=0.05)
    managers = fleet(clients, issuer, FakeClock(), 5)
    values = await gather_tokens(managers, 10)
    assert issuer.issued == 1
    assert len(set(values)) == 1


async def test_fresh_token_costs_no_issuance_and_no_redis(clients: Clients) -> None:
    """A FRESH token is served from memory: the store is not even asked."""
    issuer = FakeIssuer()
    (m,) = fleet(clients, issuer, FakeClock(), 1)
    first = await m.get()
    reads = 0
    real_read = m.store.read

    async def counting_read(kind: str):  # type: ignore[no-untyped-def]
        nonlocal reads
        reads += 1
        return await real_read(kind)

    m.store.read = counting_read  # type: ignore[method-assign]
    for _ in range(20):
        assert await m.get() is first
    assert reads == 0 and issuer.issued == 1


async def test_expired_fleet_refreshes_once(clients: Clients) -> None:
    """After expiry (INVALID) the whole fleet waits for one new issuance."""
    clock = FakeClock()
    issuer = FakeIssuer(delay=0.02)
    managers = fleet(clients, issuer, clock, 4)
    await gather_tokens(managers, 5)
    clock.advance(VALIDITY / SCALE + 1)
    assert all(m.state() is TokenState.INVALID for m in managers)
    await asyncio.sleep(THROTTLE / SCALE)  # the issuance throttle window of the first token
    values = await gather_tokens(managers, 5)
    assert issuer.issued == 2
    assert set(values) == {"tok-0002-0123456789abcdef"}


class CountingStore(RedisCredentialStore):
    """Counts cache reads (plain reads, snapshots and claims) and can slow down lease releases."""

    reads = 0
    release_delay = 0.0

    async def read(self, kind: str):  # type: ignore[no-untyped-def]
        """A counted HGETALL."""
        CountingStore.reads += 1
        return await super().read(kind)

    async def snapshot(self, kind: str):  # type: ignore[no-untyped-def]
        """A counted snapshot."""
        CountingStore.reads += 1
        return await super().snapshot(kind)

    async def claim(self, kind: str, ttl: float, holder: str, seen: int):  # type: ignore[no-untyped-def]
        """A counted claim, whose lease's release first waits ``release_delay`` (a slow trip)."""
        CountingStore.reads += 1
        claim = await super().claim(kind, ttl, holder, seen)
        lease = claim.lease
        if lease is not None and self.release_delay:
            real_release = lease.release

            async def slow_release() -> None:
                await asyncio.sleep(self.release_delay)
                await real_release()

            lease.release = slow_release  # type: ignore[method-assign]
        return claim


async def test_a_storm_in_one_process_costs_one_cache_read_per_step(clients: Clients) -> None:
    """Twenty callers of one expired process share one cache read, not one each."""
    clock, issuer = FakeClock(), FakeIssuer(delay=0.05)
    m = make_manager(clients.store(CountingStore), issuer, clock, "solo")
    await m.get()
    clock.advance(VALIDITY / SCALE + 1)
    await asyncio.sleep(THROTTLE / SCALE)
    CountingStore.reads = 0
    values = await asyncio.gather(*(m.get() for _ in range(20)))
    assert issuer.issued == 2 and len({v.value.reveal() for v in values}) == 1
    # the refresh's one claim: the cache read and the lease in one step (it was 3 reads before)
    assert CountingStore.reads == 1, CountingStore.reads


async def test_waiters_get_the_token_before_the_holder_releases_its_lease(
    clients: Clients,
) -> None:
    """Callers in the refreshing process resume once the token is stored, not after the release."""
    store = clients.store(CountingStore)
    store.release_delay = 1.0
    m = make_manager(store, FakeIssuer(delay=0.05), FakeClock(), "solo")
    t0 = time.monotonic()
    await asyncio.gather(*(m.get() for _ in range(5)))
    assert time.monotonic() - t0 < 0.8  # the release alone takes 1 s


async def test_a_cancelled_waiter_leaves_the_other_waiters_waiting(clients: Clients) -> None:
    """Cancelling one waiting caller ends that caller only: the rest get the token, none is left."""
    m = make_manager(clients.store(), FakeIssuer(delay=0.1), FakeClock(), "solo")
    callers = [asyncio.create_task(m.get()) for _ in range(4)]
    await asyncio.sleep(0.02)  # all four wait for the issuance
    callers[0].cancel()
    done = await asyncio.gather(*callers, return_exceptions=True)
    assert isinstance(done[0], asyncio.CancelledError)
    assert {c.value.reveal() for c in done[1:]} == {"tok-0001-0123456789abcdef"}  # type: ignore[union-attr]
    assert m._waiters == []  # no future of a gone caller is kept


# --- TOKEN-KIS-REFRESH: STALE is refreshed by one process, nobody waits ----------------------


async def test_stale_token_is_served_without_waiting(clients: Clients) -> None:
    """Inside the window callers get the old token at once while one process refreshes."""
    clock = FakeClock()
    issuer = FakeIssuer()
    managers = fleet(clients, issuer, clock, 4)
    old = (await gather_tokens(managers, 1))[0]
    await asyncio.sleep(THROTTLE / SCALE)
    clock.advance((VALIDITY - WINDOW) / SCALE + 1)
    issuer.delay = 0.3  # a slow issuance must not delay anybody
    loop = asyncio.get_running_loop()
    started = loop.time()
    values = await gather_tokens(managers, 8)
    assert loop.time() - started < 0.2
    assert set(values) == {old}
    for _ in range(100):
        if all(m.state() is TokenState.FRESH for m in managers):
            break
        await asyncio.sleep(0.02)
        await gather_tokens(managers, 1)
    assert issuer.issued == 2
    assert {m.current.value.reveal() for m in managers if m.current} == {
        "tok-0002-0123456789abcdef"
    }
    assert {m.current.version for m in managers if m.current} == {2}


async def test_broker_reusing_a_stale_token_does_not_start_a_refresh_loop(
    clients: Clients,
) -> None:
    """If the refresh returns the same stale token (reuse window), nobody asks again before expiry."""
    clock = FakeClock()
    expires = clock.wall() + (WINDOW + SCALE) / SCALE  # FRESH for one (fake) second only
    issuer = FakeIssuer(
        same_value="tok-same-0123456789abcdef",
        expires_in=lambda: (expires - clock.wall()) * SCALE,
    )
    managers = fleet(clients, issuer, clock, 3)
    await gather_tokens(managers, 1)
    clock.advance(2)
    await asyncio.sleep(THROTTLE / SCALE)
    for _ in range(30):
        await gather_tokens(managers, 2)
        await asyncio.sleep(THROTTLE / SCALE / 5)
    assert issuer.issued == 2


# --- TOKEN-KIS-THROTTLE: waited out, never hammered --------------------------------------------


async def test_throttle_answer_is_waited_out_not_hammered(clients: Clients) -> None:
    """EGW00133 once: the fleet waits the whole interval, then exactly one more request."""
    retry_after = THROTTLE / SCALE
    issuer = FakeIssuer()
    issuer.script.append(
        TokenThrottledError("EGW00133", "once a minute", 403, retry_after=retry_after)
    )
    managers = fleet(clients, issuer, FakeClock(), 3)
    values = await gather_tokens(managers, 4)
    assert len(issuer.calls) == 2
    assert issuer.calls[1] - issuer.calls[0] >= retry_after * 0.95
    assert len(set(values)) == 1


async def test_forced_refresh_inside_the_throttle_window_waits(
    clients: Clients,
) -> None:
    """A rejection right after issuance waits for the shared 1/min window before issuing again."""
    issuer = FakeIssuer()
    (m,) = fleet(clients, issuer, FakeClock(), 1)
    first = await m.get()
    new = await m.invalidate(first)
    assert new.value != first.value
    assert issuer.calls[1] - issuer.calls[0] >= THROTTLE / SCALE * 0.95


# --- POL-AUTH-FAILED: a forced refresh is deduplicated across the fleet -----------------------


async def test_rejection_seen_by_every_process_issues_once(clients: Clients) -> None:
    """All processes report the same rejected token: one issuance, all move to the new one."""
    issuer = FakeIssuer()
    managers = fleet(clients, issuer, FakeClock(), 4)
    creds = [await m.get() for m in managers]
    await asyncio.sleep(THROTTLE / SCALE)
    news = await asyncio.gather(*(m.invalidate(c) for m, c in zip(managers, creds, strict=True)))
    assert issuer.issued == 2
    assert {n.value.reveal() for n in news} == {"tok-0002-0123456789abcdef"}


async def test_same_value_reissued_counts_as_new(clients: Clients) -> None:
    """A rejected value that the broker hands out again (newer version) is tried, not refused."""
    issuer = FakeIssuer(same_value="tok-same-0123456789abcdef")
    (m,) = fleet(clients, issuer, FakeClock(), 1)
    first = await m.get()
    await asyncio.sleep(THROTTLE / SCALE)
    again = await m.invalidate(first)
    assert again.value == first.value and again.version == first.version + 1


async def test_bad_credentials_fail_fast_without_a_loop(clients: Clients) -> None:
    """A non-retryable auth error of the issuer reaches every waiter once; no retry storm."""
    issuer = FakeIssuer()
    issuer.script.append(AuthError("EGW00103", "invalid appkey", 403, retryable=False))
    managers = fleet(clients, issuer, FakeClock(), 2)
    results = await asyncio.gather(
        *(m.get() for m in managers for _ in range(3)), return_exceptions=True
    )
    assert any(isinstance(r, AuthError) for r in results)
    assert len(issuer.calls) <= 2


async def test_issuance_slower_than_the_lease_is_cut_off(clients: Clients) -> None:
    """The HTTP call is bounded by the lease's remaining validity, then retried by a holder."""
    issuer = FakeIssuer()
    issuer.script.append(5.0)  # far longer than the 1 s lease
    (m,) = fleet(clients, issuer, FakeClock(), 1)
    cred = await m.get()
    assert cred.value.reveal() == "tok-0001-0123456789abcdef"
    assert issuer.calls[1] - issuer.calls[0] < m.tuning.lease_ttl + m.tuning.retry_cap


async def test_failing_issuance_backs_off(clients: Clients) -> None:
    """A broker that keeps failing is retried with growing, jittered pauses, not hammered."""
    issuer = FakeIssuer()
    issuer.script.extend(NetworkError("connection refused") for _ in range(4))
    (m,) = fleet(clients, issuer, FakeClock(), 1)
    await m.get()
    gaps = [b - a for a, b in zip(issuer.calls, issuer.calls[1:], strict=False)]
    assert len(gaps) == 4
    assert gaps[0] >= m.tuning.retry_base / 2 * 0.9
    assert gaps[3] >= m.tuning.retry_cap / 2 * 0.9


# --- Redis outage: keep the valid token, back off, log once, recover ---------------------------


async def test_redis_outage_keeps_valid_token_and_recovers(
    redis_server: RedisServer, clients: Clients, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis down: the still-valid token keeps serving, one log line each way, refresh afterwards."""
    clock = FakeClock()
    issuer = FakeIssuer()
    (m,) = fleet(clients, issuer, clock, 1)
    old = await m.get()
    clock.advance((VALIDITY - WINDOW) / SCALE + 1)  # STALE: wants a refresh
    redis_server.kill()
    caplog.set_level(logging.WARNING, logger="stockmon.reference.fleet.token_manager")
    for _ in range(30):
        assert (await m.get()).value == old.value
        await asyncio.sleep(0.01)
    down = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(down) == 1
    redis_server.start()
    for _ in range(200):
        if m.state() is TokenState.FRESH:
            break
        await m.get()
        await asyncio.sleep(0.02)
    assert m.state() is TokenState.FRESH
    assert issuer.issued == 2
    up = [r for r in caplog.records if "reachable again" in r.getMessage()]
    assert len(up) == 1


async def test_no_token_and_no_redis_is_a_clear_bounded_error(
    redis_server: RedisServer, clients: Clients
) -> None:
    """Without a valid token and without the mandatory lock, callers get a clear error in time."""
    issuer = FakeIssuer()
    tuning = Tuning(lease_ttl=1.0, store_backoff_base=0.05, store_backoff_cap=0.1, outage_wait=0.5)
    (m,) = fleet(clients, issuer, FakeClock(), 1, tuning=tuning)
    redis_server.kill()
    with pytest.raises(CredentialUnavailableError, match="TOKEN-KIS-LOCK"):
        await asyncio.wait_for(m.get(), 3.0)
    assert issuer.issued == 0


# --- waiters are told when the new credential is stored, the cache read is the fallback -------

# Polls 2-4 s apart: a waiter that gets the token sooner than that was told, not polling.
SLOW_POLLS = dataclasses.replace(FAST, poll_base=4.0, poll_cap=4.0, max_wait=10.0)


async def timed_second_caller(a: SharedCredential, b: SharedCredential) -> tuple[float, str, str]:
    """``a`` starts a refresh; once it holds the lease ``b`` asks: b's wait (s) and both values."""
    first = asyncio.create_task(a.get())
    await asyncio.sleep(0.1)  # a holds the lease; its issuance is in flight
    t0 = time.monotonic()
    got = await b.get()
    waited = time.monotonic() - t0
    return waited, (await first).value.reveal(), got.value.reveal()


async def test_waiting_process_is_told_when_the_token_is_stored(
    clients: Clients,
) -> None:
    """A process waiting on another's refresh gets the token on the pub/sub notice, not a poll later."""
    issuer = FakeIssuer(delay=0.3)
    a, b = fleet(clients, issuer, FakeClock(), 2, tuning=SLOW_POLLS)
    waited, va, vb = await timed_second_caller(a, b)
    assert issuer.issued == 1 and va == vb
    assert waited < 1.0  # the issuance has 0.2 s left; the first poll would come after >= 2 s


async def test_the_notice_carries_the_token_so_the_waiter_reads_no_cache(
    clients: Clients,
) -> None:
    """A waiting process adopts the credential the pub/sub notice carries: no cache read after it."""
    issuer = FakeIssuer(delay=0.3)
    a = make_manager(clients.store(), issuer, FakeClock(), "a", tuning=SLOW_POLLS)
    b = make_manager(clients.store(CountingStore), issuer, FakeClock(), "b", tuning=SLOW_POLLS)
    b.store.changes("token")  # b's listener is live before the refresh (as in a running fleet)
    first = asyncio.create_task(a.get())
    await asyncio.sleep(0.1)  # a holds the lease; its issuance is in flight
    CountingStore.reads = 0
    got = await b.get()
    stored = await first
    assert (got.value.reveal(), got.version) == (stored.value.reveal(), stored.version)
    assert issuer.issued == 1
    # b's claim (the lease was held), none after the notice
    assert CountingStore.reads == 1, CountingStore.reads


async def test_while_notices_arrive_a_waiter_rereads_the_cache_only_every_told_poll(
    clients: Clients,
) -> None:
    """During a 0.7 s refresh elsewhere a told waiter re-reads at most every told_poll, not poll_base."""
    issuer = FakeIssuer(delay=0.7)
    tuning = dataclasses.replace(FAST, told_poll=0.25, max_wait=10.0)
    a = make_manager(clients.store(), issuer, FakeClock(), "a", tuning=tuning)
    b = make_manager(clients.store(CountingStore), issuer, FakeClock(), "b", tuning=tuning)
    b.store.changes("token")
    CountingStore.reads = 0
    _waited, va, vb = await timed_second_caller(a, b)
    assert issuer.issued == 1 and va == vb
    # ~0.6 s of waiting: the first claim, then one re-read per >= 0.25 s (at poll_base: ~12)
    assert CountingStore.reads <= 4, CountingStore.reads


async def test_a_bare_version_notice_makes_the_waiter_read_the_cache(
    clients: Clients, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A notice without the credential (an older writer's) still wakes the waiter, who reads it."""
    bare = (
        token_store._WRITE.split("redis.call('publish'")[0]
        + "redis.call('publish', ARGV[8], v)\nreturn v"
    )
    monkeypatch.setattr(token_store, "_WRITE", bare)
    issuer = FakeIssuer(delay=0.3)
    a = make_manager(clients.store(), issuer, FakeClock(), "a", tuning=SLOW_POLLS)
    b = make_manager(clients.store(CountingStore), issuer, FakeClock(), "b", tuning=SLOW_POLLS)
    b.store.changes("token")
    CountingStore.reads = 0
    waited, va, vb = await timed_second_caller(a, b)
    assert issuer.issued == 1 and va == vb and waited < 1.0  # told, not polled (polls are 4 s)
    assert CountingStore.reads == 2, CountingStore.reads  # the claim, then the re-read


class DeafStore(RedisCredentialStore):
    """A store whose change feed listens where nobody publishes: every notification is lost."""

    def changes(self, kind: str) -> ChangeFeed:
        """The feed of a kind nobody writes."""
        return super().changes(kind + ":nobody-writes-this")


async def test_lost_notification_costs_one_poll_delay(clients: Clients) -> None:
    """With every notice lost the waiter still gets the one new token, from its next cache read."""
    issuer = FakeIssuer(delay=0.3)
    polls = dataclasses.replace(FAST, poll_base=0.4, poll_cap=0.4)
    a = make_manager(clients.store(), issuer, FakeClock(), "a", tuning=polls)
    b = make_manager(clients.store(DeafStore), issuer, FakeClock(), "b", tuning=polls)
    waited, va, vb = await timed_second_caller(a, b)
    assert issuer.issued == 1 and va == vb
    assert 0.2 <= waited < 0.2 + 0.4 + 0.3  # issuance left + one poll (0.2-0.4 s) + slack


async def test_local_store_tells_managers_sharing_it() -> None:
    """Two managers on one process-local store: the waiting one is told by the other's write."""
    issuer = FakeIssuer(delay=0.3)
    store = LocalCredentialStore()
    a, b = (make_manager(store, issuer, FakeClock(), n, tuning=SLOW_POLLS) for n in "ab")
    waited, va, vb = await timed_second_caller(a, b)
    assert issuer.issued == 1 and va == vb and waited < 1.0


# --- process-local fallback -------------------------------------------------------------------


async def test_local_store_deduplicates_within_one_process() -> None:
    """Without Redis (mock only) the process-local lock still yields one issuance per process."""
    issuer = FakeIssuer(delay=0.02)
    m = make_manager(LocalCredentialStore(), issuer, FakeClock(), "solo")
    values = await asyncio.gather(*(m.get() for _ in range(20)))
    assert issuer.issued == 1 and len({v.value.reveal() for v in values}) == 1


# --- secrets ---------------------------------------------------------------------------------


async def test_redis_holds_the_token_only_in_the_cache_fields(
    clients: Clients,
) -> None:
    """Keys carry a digest of the app key; the token value is only in the cache hash's value field."""
    app_key = "PS-canary-app-key-9f8e7d6c5b4a39281"
    prefix = key_prefix("mock", Secret(app_key))
    issuer = FakeIssuer()
    client = clients()
    m = make_manager(RedisCredentialStore(client, prefix), issuer, FakeClock(), "p0")
    token = (await m.get()).value.reveal()
    keys = [k.decode() for k in await client.keys("*")]
    assert keys and all(app_key not in k for k in keys)
    for key in keys:
        kind = await client.type(key)
        if kind == b"hash":
            fields = {f.decode(): v.decode() for f, v in (await client.hgetall(key)).items()}
            assert fields["value"] == token
            assert all(token not in v for f, v in fields.items() if f != "value")
        elif kind == b"string":
            # the refresh lease may be released between KEYS and GET (get() returns first)
            value = await client.get(key)
            assert value is None or token not in value.decode()


# --- keep_fresh: the refresh happens inside the window even without callers -----------------


async def test_keeper_refreshes_inside_the_window_once_per_fleet(
    clients: Clients,
) -> None:
    """Three idle processes run the keeper: at the window one refresh, adopted by all, none before."""
    clock = FakeClock()
    issuer = FakeIssuer()
    managers = fleet(clients, issuer, clock, 3)
    await gather_tokens(managers, 1)
    keepers = [asyncio.create_task(m.keep_fresh(idle_poll=0.02)) for m in managers]
    try:
        await asyncio.sleep(0.3)
        assert issuer.issued == 1, "nothing is refreshed before the window"
        clock.advance((VALIDITY - WINDOW) / SCALE + 0.5)
        for _ in range(200):
            if all(m.current is not None and m.current.version == 2 for m in managers):
                break
            await asyncio.sleep(0.02)
        assert issuer.issued == 2
        assert all(m.state() is TokenState.FRESH for m in managers)
    finally:
        for k in keepers:
            k.cancel()
        await asyncio.gather(*keepers, return_exceptions=True)


async def test_keeper_issues_nothing_before_anybody_needed_a_token(
    clients: Clients,
) -> None:
    """A keeper with no credential yet waits; it never issues on its own."""
    issuer = FakeIssuer()
    (m,) = fleet(clients, issuer, FakeClock(), 1)
    keeper = asyncio.create_task(m.keep_fresh(idle_poll=0.01))
    await asyncio.sleep(0.2)
    keeper.cancel()
    await asyncio.gather(keeper, return_exceptions=True)
    assert issuer.issued == 0


class SwallowingRedis:
    """A Redis client whose pub/sub reads swallow a cancel, as a read whose own timeout fires at
    the same moment does on Python 3.11 (the cancel turns into a timeout, the read returns None)."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    def pubsub(self) -> object:
        """The real pub/sub, its get_message wrapped."""
        pubsub = self._redis.pubsub()
        real = pubsub.get_message

        async def get_message(**kw: float) -> object:
            try:
                return await real(**kw)
            except asyncio.CancelledError:
                return None

        pubsub.get_message = get_message  # type: ignore[method-assign]
        return pubsub


async def test_a_store_whose_listener_read_swallows_a_cancel_still_closes(
    clients: Clients,
) -> None:
    """aclose() ends in bounded time even when the listener's read swallowed the cancel."""
    store = RedisCredentialStore(SwallowingRedis(clients()), PREFIX)  # type: ignore[arg-type]
    store.changes("token")  # starts the listener
    await asyncio.sleep(0.1)  # subscribed, reading
    await asyncio.wait_for(store.aclose(), 3.0)
