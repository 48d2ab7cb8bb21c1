"""Hypothesis state machine: simulated workers, leases and pauses longer than the TTL (TOKEN-KIS-LOCK).

Each worker has its own Redis connection, a raw handle on the refresh lease (acquire / fenced
write / release, driven step by step so a worker can be "paused" while holding it) and a full
token manager on the same keys. Properties, checked after every step against a real
redis-server: at most one live lease at any instant (and Redis agrees with whoever believes it
holds it), the stored token version never goes backwards, a paused holder's late write is
refused, and at the end every worker gets a non-INVALID token.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from token_support import SPEC, VALIDITY, WINDOW, FakeIssuer, make_manager

from stockmon.clock import FakeClock
from stockmon.redaction import Secret
from stockmon.reference.fleet.lease import RedisLease
from stockmon.reference.fleet.redis_conn import connect_redis
from stockmon.reference.fleet.token_manager import Tuning
from stockmon.reference.fleet.token_state import CachedCredential, TokenState
from stockmon.reference.fleet.token_store import RedisCredentialStore, StoreWrite, key_prefix

T = TypeVar("T")
WORKERS = 3
TTL = 0.12  # real seconds; the pauses below are longer
SCALE = 2000.0  # keeps the 60 s issuance throttle at 30 ms of real time
PREFIX = key_prefix("mock", Secret("PS-machine-app-key-0000000000000000"))
TUNING = Tuning(
    lease_ttl=TTL,
    write_margin=0.02,
    poll_base=0.005,
    poll_cap=0.03,
    background_retry=0.01,
    retry_base=0.02,
    retry_cap=0.08,
    store_backoff_base=0.05,
    store_backoff_cap=0.1,
    max_wait=3.0,
)


class _Worker:
    def __init__(self, name: str, url: str, clock: FakeClock, issuer: FakeIssuer) -> None:
        self.name = name
        self.redis = connect_redis(Secret(url))
        self.store = RedisCredentialStore(self.redis, PREFIX)
        self.manager = make_manager(self.store, issuer, clock, name, tuning=TUNING, scale=SCALE)
        self.lease: RedisLease | None = None


def run_machine(url: str) -> None:
    """Run the state machine against the server at ``url``."""

    class LeaseMachine(RuleBasedStateMachine):
        """Workers racing for the refresh lease, with pauses longer than its TTL."""

        def __init__(self) -> None:
            super().__init__()
            self.loop = asyncio.new_event_loop()
            self.clock = FakeClock()
            self.issuer = FakeIssuer()
            self.workers = [_Worker(f"w{i}", url, self.clock, self.issuer) for i in range(WORKERS)]
            self.max_version = 0
            self.written = 0

        def run(self, coro: Coroutine[Any, Any, T]) -> T:
            return self.loop.run_until_complete(coro)

        @initialize()
        def clean(self) -> None:
            self.run(self.workers[0].redis.flushdb())

        # ------------------------------------------------------------------ rules

        @rule(w=st.integers(0, WORKERS - 1))
        def acquire(self, w: int) -> None:
            worker = self.workers[w]
            if worker.lease is not None and worker.lease.remaining() > 0:
                return
            lease = self.run(worker.store.try_acquire("token", TTL, worker.name))
            if lease is not None:
                others = [o for o in self.workers if o is not worker and o.lease is not None]
                assert all(o.lease.remaining() <= 0 for o in others), "two live leases"  # type: ignore[union-attr]
                worker.lease = lease

        @rule(w=st.integers(0, WORKERS - 1), life=st.sampled_from([0.5, 1.0, 2.0]))
        def write(self, w: int, life: float) -> None:
            worker = self.workers[w]
            if worker.lease is None:
                return
            # Margin: the script runs a moment after this estimate.
            believed = worker.lease.remaining() > 0.05
            stored = self.run(worker.redis.get(worker.lease.key))
            owned = stored is not None and stored.decode() == worker.lease.value
            self.written += 1
            now = self.clock.wall()
            cred = CachedCredential(
                Secret(f"tok-raw-{self.written:05d}-abcdef"), now + life * VALIDITY / SCALE, now
            )
            version = self.run(
                worker.store.write(worker.lease, "token", StoreWrite(cred, VALIDITY / SCALE, None))
            )
            if believed:
                # A holder that believes it holds the lease really does (conservative estimate).
                assert version is not None
            if not owned:
                # Lapsed or taken over before the write: the fence must refuse it.
                assert version is None, "a lapsed holder's write was accepted"
            if version is not None:
                assert version > self.max_version
                self.max_version = version

        @rule(w=st.integers(0, WORKERS - 1), other=st.integers(1, WORKERS - 1))
        def paused_holder_writes_late(self, w: int, other: int) -> None:
            """Holder pauses past its TTL, another worker takes over, the holder writes anyway."""
            worker, rival = self.workers[w], self.workers[(w + other) % WORKERS]
            if worker.lease is None:
                self.acquire(w)
            if worker.lease is None:
                return
            self.pause(TTL * 1.6)
            self.acquire((w + other) % WORKERS)
            self.write(w, 1.0)
            if rival.lease is not None:
                self.write((w + other) % WORKERS, 1.0)

        @rule(w=st.integers(0, WORKERS - 1))
        def release(self, w: int) -> None:
            worker = self.workers[w]
            if worker.lease is not None:
                self.run(worker.lease.release())
                worker.lease = None

        @rule(seconds=st.sampled_from([0.0, TTL * 0.4, TTL * 1.6]))
        def pause(self, seconds: float) -> None:
            """Everybody stalls (GC, SIGSTOP): leases may lapse under their holders."""
            self.run(asyncio.sleep(seconds))

        @rule(fraction=st.sampled_from([0.1, 0.5, 0.9, 1.1]))
        def token_time_passes(self, fraction: float) -> None:
            """Token time moves: tokens go STALE or INVALID."""
            self.clock.advance(fraction * (VALIDITY - WINDOW) / SCALE)

        @rule(w=st.integers(0, WORKERS - 1))
        def get_token(self, w: int) -> None:
            cred = self.run(asyncio.wait_for(self.workers[w].manager.get(), 5.0))
            assert self.workers[w].manager.state(cred) is not TokenState.INVALID

        # ------------------------------------------------------------- invariants

        @invariant()
        def at_most_one_live_lease(self) -> None:
            live = [w for w in self.workers if w.lease is not None and w.lease.remaining() > 0]
            assert len(live) <= 1
            if live:
                stored = self.run(live[0].redis.get(live[0].lease.key))  # type: ignore[union-attr]
                if live[0].lease is not None and live[0].lease.remaining() > 0:
                    assert stored is not None and stored.decode() == live[0].lease.value

        @invariant()
        def version_never_goes_backwards(self) -> None:
            cached = self.run(self.workers[0].store.read("token"))
            if cached is not None:
                assert cached.version >= self.max_version
                self.max_version = cached.version

        def teardown(self) -> None:
            try:
                for worker in self.workers:
                    if worker.lease is not None:
                        self.run(worker.lease.release())
                        worker.lease = None
                for worker in self.workers:
                    cred = self.run(asyncio.wait_for(worker.manager.get(), 5.0))
                    assert worker.manager.state(cred) is not TokenState.INVALID
            finally:
                for worker in self.workers:
                    self.run(worker.manager.aclose())
                    self.run(worker.store.aclose())
                    self.run(worker.redis.aclose())
                self.loop.close()

    run_state_machine_as_test(
        LeaseMachine,
        settings=settings(
            max_examples=20,
            stateful_step_count=12,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            database=None,
        ),
    )


def test_lease_machine(redis_server: Any) -> None:
    """At most one live lease, versions only grow, paused writers are fenced, all end with a token."""
    assert SPEC.clause("TOKEN-KIS-LOCK").flag("mandatory")
    run_machine(redis_server.url)
