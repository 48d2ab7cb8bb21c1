"""Token manager: one credential for a whole fleet of processes (TOKEN-KIS-REFRESH, -LOCK, -THROTTLE).

:class:`SharedCredential` keeps one kind of credential (the REST access token, or the WebSocket
approval key of WS-APPROVAL-KEY) valid for every task of every process that shares a store:

- **FRESH**: returned from process memory, no I/O at all.
- **STALE** (inside the refresh window): returned at once; one background attempt per process
  tries the refresh lease, and the one process that gets it refreshes. Callers never wait.
- **INVALID** (expired, missing, or rejected by the broker): callers wait, bounded by
  ``max_wait``, for one in-process refresh task, which in turn either refreshes under the lease or,
  while another process does, waits to be told (the store's change feed: Redis pub/sub published
  by the fenced write, carrying what it stored) and adopts that; the cache is re-read on the old jittered,
  capped backoff too, so a lost notification costs one poll delay, never the new token.

A refresh is: claim (one Lua script: read the cache and the shared throttle window, and take the
lease — ``SET NX PX``, lease.py — unless a window is open or somebody stored a newer credential
than ours, which is adopted instead) -> issue, the HTTP call bounded by the lease's remaining
validity -> fenced write (one Lua script: still our lease? bump version, store, start the throttle
window, publish) -> release (compare-and-delete, shielded from cancellation). Reading the cache
in the acquiring step is the lock pattern's double-check without a round trip of its own: the
refresh's critical path is two round trips and the HTTP call (token_storm.py measures it).

The issuance throttle (TOKEN-KIS-THROTTLE) is shared too: a successful issuance starts a window
of ``min_interval_s`` in the store, and an EGW00133 answer starts one; nobody issues inside it,
callers with a still-valid credential keep it, the others wait it out. A forced refresh after an
auth failure (POL-AUTH-FAILED) goes the same way, and another process's newer credential
satisfies it without a second issuance.

Redis outages: a still-valid credential keeps being used; the store is retried with jittered
backoff; the outage is logged once when it starts and once when it ends. Without a valid
credential and without the store, callers get :class:`CredentialUnavailableError` after
``outage_wait`` — the lock is mandatory (TOKEN-KIS-LOCK), so no process issues unguarded.

Limits (lease.py says more): the guarantee "one issuance per refresh" holds for one Redis node
whose clock does not jump. A failover to a replica that missed the lease, a restart without
persistence in the middle of a refresh, or a server clock jump can let a second process refresh;
the broker's issuance throttle then answers EGW00133, which is waited out, and the fenced write
keeps the cache consistent (versions only grow). A process frozen past its lease gets its HTTP
answer too late to publish it: it keeps that token for itself only.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import logging
import os
import random
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from stockmon.clock import Clock, SystemClock
from stockmon.reference.errors import (
    AuthError,
    BrokerError,
    ClientError,
    CredentialUnavailableError,
    NetworkError,
    RemoteProtocolError,
    TokenThrottledError,
)
from stockmon.reference.fleet.lease import Lease, backoff_delays
from stockmon.reference.fleet.token_state import (
    CachedCredential,
    TokenPolicy,
    TokenState,
    credential_from_response,
)
from stockmon.reference.fleet.token_store import STORE_ERRORS, CredentialStore, StoreWrite
from stockmon.reference.seams import Issuer

log = logging.getLogger(__name__)

T = TypeVar("T")


def default_holder() -> str:
    """A replica name unique on this host: ``hostname:pid`` (no secret in it)."""
    host = socket.gethostname().replace("/", "_").replace("@", "_")
    return f"{host}:{os.getpid()}"


@dataclass(frozen=True, slots=True)
class Tuning:
    """Non-normative knobs (real seconds); the spec's numbers live in :class:`TokenPolicy`."""

    lease_ttl: float = 10.0  # refresh lease: longer than one issuance call, short enough to heal
    write_margin: float = 0.5  # lease validity kept back after the HTTP call for the fenced write
    poll_base: float = 0.01  # waiters' first poll of the shared cache
    poll_cap: float = 0.1  # waiters' longest poll: a refresh takes one HTTP call, so keep it short
    # waiters' shortest poll while the store's notices arrive: then a re-read only covers a lost
    # notice, and a fleet polling at poll_base slowed the refresh it waited for (token_storm.py)
    told_poll: float = 0.25
    background_retry: float = 0.25  # STALE: pause between two background attempts of a process
    retry_base: float = 0.25  # failed issuance (network, 5xx): first pause before trying again
    retry_cap: float = 5.0  # failed issuance: longest pause
    store_backoff_base: float = 0.25  # store outage: first retry
    store_backoff_cap: float = 5.0  # store outage: longest retry interval
    max_wait: float | None = None  # INVALID callers; None = throttle window + 3 leases + 5 s
    outage_wait: float = 10.0  # INVALID callers while the store is unreachable (lock mandatory)

    def wait_bound(self, policy: TokenPolicy) -> float:
        """How long an INVALID caller may wait before CredentialUnavailableError."""
        if self.max_wait is not None:
            return self.max_wait
        return (policy.throttle_interval or 0.0) + 3 * self.lease_ttl + 5.0


class _Outcome(enum.Enum):
    DONE = "done"
    BUSY = "busy"  # another process holds the refresh lease
    THROTTLED = "throttled"
    STORE_DOWN = "store_down"
    FAILED = "failed"  # issuance failed in a way a later attempt may fix


class _StoreDown(Exception):
    """The store is unreachable (or in its backoff pause)."""


@dataclass
class _Outage:
    """Once-per-outage logging and the retry schedule of an unreachable store."""

    delays: Iterator[float]
    started: float | None = None
    retry_at: float = 0.0


class SharedCredential:
    """One credential kind, shared through a :class:`CredentialStore`; see the module docstring."""

    def __init__(
        self,
        kind: str,
        store: CredentialStore,
        issuer: Issuer,
        policy: TokenPolicy,
        *,
        clock: Clock | None = None,
        holder: str | None = None,
        tuning: Tuning | None = None,
        rng: random.Random | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kind = kind
        self.store = store
        self.policy = policy
        self.holder = holder or default_holder()
        self.tuning = tuning or Tuning()
        self._issuer = issuer
        self._clock: Clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self._monotonic = monotonic
        self._local: CachedCredential | None = None
        self._rejected: CachedCredential | None = None
        self._task: asyncio.Task[None] | None = None
        self._reading: asyncio.Task[None] | None = None  # the cache read in flight (_sync)
        # one future per waiting caller: resolved when a credential is adopted, when the refresh
        # task ends, or by its own timer (so a cancelled caller cancels only its own)
        self._waiters: list[asyncio.Future[None]] = []
        self._next_background = 0.0
        self._outage = _Outage(self._store_delays())
        self._skew_warned = False
        self._throttle_warned = False
        self.issued = 0  # issuances made by this process (for tests and benchmarks)
        # told of every credential this process starts using (issued here or adopted from the
        # fleet's cache): the status API's token expiry and its refresh count read it
        self.on_change: Callable[[CachedCredential], None] | None = None

    # ------------------------------------------------------------------ public

    @property
    def current(self) -> CachedCredential | None:
        """The credential this process holds now (may be stale or invalid)."""
        return self._local

    def state(self, cred: CachedCredential | None = None) -> TokenState:
        """State of ``cred`` (default: ours) now; a credential the broker rejected is INVALID."""
        cred = self._local if cred is None else cred
        if cred is None or self._is_rejected(cred):
            return TokenState.INVALID
        return cred.state(self._clock.wall(), self.policy.refresh_window)

    async def get(self) -> CachedCredential:
        """A credential that is not INVALID; waits (bounded) only when there is none."""
        if self.state() is TokenState.FRESH:
            assert self._local is not None
            return self._local
        if self.state() is TokenState.INVALID:
            # The refresh begins with a cache snapshot, so a token another process stored is
            # adopted there, one round trip sooner than a read here and a snapshot after it.
            return await self._wait_valid()
        with contextlib.suppress(_StoreDown):
            await self._sync()
        st = self.state()
        if st is TokenState.STALE:
            self._kick_background()
        if st is not TokenState.INVALID:
            assert self._local is not None
            return self._local
        return await self._wait_valid()

    async def invalidate(self, rejected: CachedCredential) -> CachedCredential:
        """The broker rejected ``rejected`` (POL-AUTH-FAILED): get a different one, bounded.

        A newer credential written by another process satisfies this without an issuance.
        """
        if self._rejected is None or _newer(rejected, self._rejected):
            self._rejected = rejected
        with contextlib.suppress(_StoreDown):
            await self._sync()
        if self.state() is not TokenState.INVALID:
            assert self._local is not None
            return self._local
        return await self._wait_valid()

    async def keep_fresh(self, *, idle_poll: float = 1.0) -> None:
        """Refresh inside the window even when nobody asks (a stream's REST use is rare).

        Runs until cancelled. It wakes at the start of the refresh window (plus a jitter of up to
        2 % of the window, so a fleet does not wake as one) and lets :meth:`get` do the work, so a
        fleet still issues once: the process that wins the lease refreshes, the others adopt the
        result. Nothing is issued before somebody needed a credential once.
        """
        failures = backoff_delays(self.tuning.retry_base, self.tuning.retry_cap, self._rng)
        while True:
            with contextlib.suppress(_StoreDown):
                await self._sync()
            cred = self._local
            if cred is None:
                await asyncio.sleep(idle_poll)
                continue
            jitter = self._rng.random() * 0.02 * self.policy.refresh_window
            due = max(cred.expires_at - self.policy.refresh_window, cred.refresh_after) + jitter
            wait = due - self._clock.wall()
            if wait > 0 and self.state() is not TokenState.INVALID:
                await asyncio.sleep(min(wait, idle_poll * 60))
                continue
            try:
                await self.get()
            except ClientError as exc:
                log.warning("keeping the %s fresh failed: %s", self.kind, _describe(exc))
                await asyncio.sleep(next(failures))
                continue
            await asyncio.sleep(self.tuning.background_retry * (0.5 + self._rng.random()))

    async def aclose(self) -> None:
        """Stop a refresh in flight (its lease is released on the way out)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # ---------------------------------------------------------------- internals

    def _is_rejected(self, cred: CachedCredential) -> bool:
        rej = self._rejected
        return rej is not None and cred.value == rej.value and cred.version <= rej.version

    def _adopt(self, cred: CachedCredential | None) -> None:
        if cred is None:
            return
        local = self._local
        if (
            local is None
            or _newer(cred, local)
            or (cred.version == local.version and cred.expires_at > local.expires_at)
        ):
            self._use(cred)

    def _use(self, cred: CachedCredential) -> None:
        changed = self._local is None or self._local.value.reveal() != cred.value.reveal()
        self._local = cred
        self._wake()
        if changed and self.on_change is not None:
            self.on_change(cred)

    def _wake(self) -> None:
        """Resolve every waiting caller's future (each resumes on the next loop turn)."""
        for waiter in self._waiters:
            if not waiter.done() and not waiter.get_loop().is_closed():
                waiter.set_result(None)

    def _store_delays(self) -> Iterator[float]:
        return backoff_delays(
            self.tuning.store_backoff_base, self.tuning.store_backoff_cap, self._rng
        )

    async def _store(self, call: Callable[[], Awaitable[T]]) -> T:
        """Run a store call, with outage detection, once-per-outage logs and backoff."""
        now = self._monotonic()
        if self._outage.started is not None and now < self._outage.retry_at:
            raise _StoreDown
        try:
            result = await call()
        except STORE_ERRORS as exc:
            _reraise_cancel(exc)
            if self._outage.started is None:
                self._outage.started = now
                log.warning(
                    "%s store (%s) unreachable (%s): keeping the current %s while it is valid, "
                    "retrying with backoff",
                    self.store.backend,
                    self.kind,
                    type(exc).__name__,
                    self.kind,
                )
            self._outage.retry_at = self._monotonic() + next(self._outage.delays)
            raise _StoreDown from None
        if self._outage.started is not None:
            log.warning(
                "%s store reachable again after %.1f s (%s)",
                self.store.backend,
                now - self._outage.started,
                self.kind,
            )
            self._outage = _Outage(self._store_delays())
        return result

    async def _sync(self) -> None:
        """Adopt the shared credential if it is newer than ours.

        One read in flight per process: callers arriving while it runs share it (a storm of
        callers costs the store one read, not one per caller); each path that must see a write
        made after this read re-reads the cache in its own snapshot.
        """
        flight, loop = self._reading, asyncio.get_running_loop()
        if flight is None or flight.done() or flight.get_loop() is not loop:
            flight = loop.create_task(self._read_and_adopt())
            flight.add_done_callback(_retrieve)
            self._reading = flight
        await asyncio.shield(flight)

    async def _read_and_adopt(self) -> None:
        self._adopt(await self._store(lambda: self.store.read(self.kind)))

    def _kick_background(self) -> None:
        now = self._monotonic()
        if self._task is not None or now < self._next_background or not self._refresh_due():
            return
        self._next_background = now + self.tuning.background_retry * (0.5 + self._rng.random())
        self._start_task(blocking=False)

    def _start_task(self, *, blocking: bool) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(
            self._refresh(blocking), name=f"refresh-{self.kind}"
        )
        self._task = task
        task.add_done_callback(lambda t: self._task_done(t, blocking))
        return task

    def _task_done(self, task: asyncio.Task[None], blocking: bool) -> None:
        if self._task is task:
            self._task = None
        self._wake()  # its waiters look again: a failure is theirs, a success already woke them
        if task.cancelled():
            return
        exc = task.exception()  # retrieved here even when every waiter has given up
        if exc is not None and not blocking:
            # A background refresh has nobody awaiting it; its failure is only worth a log line.
            log.warning("background %s refresh failed: %s", self.kind, _describe(exc))

    async def _wait_valid(self) -> CachedCredential:
        deadline = self._monotonic() + self.tuning.wait_bound(self.policy)
        while True:
            if self.state() is not TokenState.INVALID:
                assert self._local is not None
                return self._local
            limit = deadline
            if self._outage.started is not None:
                limit = min(limit, self._outage.started + self.tuning.outage_wait)
            left = limit - self._monotonic()
            if left <= 0:
                raise CredentialUnavailableError(self._unavailable_reason())
            task = self._task if self._task is not None else self._start_task(blocking=True)
            # Woken by the refresh's end or by a usable credential, whichever is first (the
            # holder's waiters need not wait for its lease release), or by the timer: at most
            # outage_wait at a time, so a store outage that begins meanwhile shortens the limit.
            # A future of its own, resolved directly: one loop turn from the adoption to this
            # caller, where asyncio.wait took two (token_storm.py's waiters resume in turn).
            loop = asyncio.get_running_loop()
            waiter: asyncio.Future[None] = loop.create_future()
            timer = loop.call_later(min(left, self.tuning.outage_wait), _resolve, waiter)
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiters.remove(waiter)
            failure = task.exception() if task.done() and not task.cancelled() else None
            if failure is not None and self.state() is TokenState.INVALID:
                raise failure  # e.g. a bad app key: no retry can help, every waiter hears it

    def _unavailable_reason(self) -> str:
        if self._outage.started is not None:
            return (
                f"no valid {self.kind}: the {self.store.backend} store has been unreachable for "
                f"{self._monotonic() - self._outage.started:.1f} s and the refresh lock is "
                "mandatory (TOKEN-KIS-LOCK); check REDIS_URL"
            )
        bound = self.tuning.wait_bound(self.policy)
        return f"no valid {self.kind} after {bound:.1f} s (issuance failing or throttled)"

    def _satisfied(self, blocking: bool) -> bool:
        st = self.state()
        if st is TokenState.FRESH:
            return True
        if st is TokenState.STALE:
            return blocking or not self._refresh_due()
        return False

    def _refresh_due(self) -> bool:
        """Whether a STALE credential is worth a background refresh now."""
        local = self._local
        return local is None or self._clock.wall() >= local.refresh_after

    async def _refresh(self, blocking: bool) -> None:
        """One background attempt (STALE), or attempts until a usable credential (INVALID)."""
        deadline = self._monotonic() + self.tuning.wait_bound(self.policy)
        polls = backoff_delays(self.tuning.poll_base, self.tuning.poll_cap, self._rng)
        retries = backoff_delays(self.tuning.retry_base, self.tuning.retry_cap, self._rng)
        # Made before the first cache read, so a write after that read is noticed.
        feed = self.store.changes(self.kind) if blocking else None
        while True:
            outcome, wait = await self._attempt(blocking)
            if outcome is _Outcome.DONE or not blocking:
                return
            if self._satisfied(blocking):
                return
            left = deadline - self._monotonic()
            if left <= 0:
                return
            if outcome is _Outcome.THROTTLED:
                # Wait the window out (plus jitter so the fleet does not stampede at its end).
                delay = wait + self._rng.random() * self.tuning.poll_base * 4
            elif outcome is _Outcome.STORE_DOWN:
                delay = max(self._outage.retry_at - self._monotonic(), self.tuning.poll_base)
            elif outcome is _Outcome.FAILED:
                delay = next(retries)  # the broker is failing: do not hammer it
            else:
                # BUSY: another process is refreshing. Be told when it has stored the new
                # credential (the notice carries it: adopted without a cache read); the cache is
                # re-read after one poll delay at the latest.
                assert feed is not None
                delay = next(polls)
                if feed.live():
                    delay = max(delay, self.tuning.told_poll)
                self._adopt(await feed.wait(min(delay, left)))
                if self._satisfied(blocking):
                    return
                continue
            await asyncio.sleep(min(delay, left))

    async def _attempt(self, blocking: bool) -> tuple[_Outcome, float]:
        """One claim (cache, throttle and lease in one step), then the refresh if it got the lease."""
        local = self._local
        seen = local.version if local is not None else 0
        try:
            # Twice at most: a newer credential than ours that still does not do (e.g. STALE and
            # due) is claimed against once more; a third writer meanwhile means BUSY (poll).
            for _ in range(2):
                claim = await self._store(
                    functools.partial(
                        self.store.claim, self.kind, self.tuning.lease_ttl, self.holder, seen
                    )
                )
                self._adopt(claim.cred)
                lease = claim.lease
                if lease is not None:
                    break  # the cache holds no version past ours: it cannot satisfy us either
                if self._satisfied(blocking):
                    return _Outcome.DONE, 0.0
                if claim.throttle > 0:
                    # One step: a write starts the throttle window in the same step as it stores,
                    # so a throttle seen with an unsatisfying cache is a real one.
                    return _Outcome.THROTTLED, claim.throttle
                if claim.version <= seen:
                    return _Outcome.BUSY, 0.0  # nothing newer stored: somebody holds the lease
                seen = claim.version
            else:
                return _Outcome.BUSY, 0.0
        except _StoreDown:
            return _Outcome.STORE_DOWN, 0.0
        try:
            return await self._refresh_under(lease, blocking)
        except _StoreDown:
            return _Outcome.STORE_DOWN, 0.0
        finally:
            await lease.release()

    async def _refresh_under(self, lease: Lease, blocking: bool) -> tuple[_Outcome, float]:
        # No double-check here: the claim read the cache in the step that took the lease.
        budget = lease.remaining() - self.tuning.write_margin
        if budget <= 0:
            return _Outcome.FAILED, 0.0
        try:
            # a timeout scope, not wait_for: on 3.11 wait_for runs the issuer in a task of its
            # own, loop turns between the broker's answer and the fenced write (token_storm.py)
            async with asyncio.timeout(budget):
                value, body = await self._issuer(budget)
        except TokenThrottledError as exc:
            return await self._throttled(exc)
        except AuthError as exc:
            if exc.retryable:
                log.warning("%s issuance rejected (%s); will retry", self.kind, exc.code)
                return _Outcome.FAILED, 0.0
            raise  # bad app key or secret: no retry can help, waiters get the error
        except (TimeoutError, NetworkError, RemoteProtocolError, BrokerError) as exc:
            log.warning("%s issuance failed: %s", self.kind, _describe(exc))
            return _Outcome.FAILED, 0.0
        now = self._clock.wall()
        cred, expiry = credential_from_response(value, body, now, self.policy)
        if cred.state(now, self.policy.refresh_window) is not TokenState.FRESH:
            # The broker handed out a credential that is already stale (its reuse window):
            # asking again before that window ends would only get the same one again.
            reuse = self.policy.reuse_window
            after = cred.expires_at if reuse is None else min(cred.expires_at, now + reuse)
            cred = cred.with_version(0, refresh_after=after)
        if expiry.skewed and not self._skew_warned:
            self._skew_warned = True
            log.warning(
                "%s expiry from the broker's wall time is already inside the refresh window: "
                "clocks disagree, using expires_in",
                self.kind,
            )
        self.issued += 1
        version = await self._store(
            lambda: self.store.write(
                lease,
                self.kind,
                StoreWrite(cred, cred.expires_at - now, self.policy.throttle_interval),
            )
        )
        if version is None:
            # The lease lapsed during the call: someone else may be refreshing. This credential
            # is valid all the same; keep it for this process, do not publish it.
            log.warning(
                "refresh lease lapsed before the %s was stored; using it locally", self.kind
            )
            if self.state() is TokenState.INVALID:
                self._use(cred)
            return _Outcome.DONE, 0.0
        self._adopt(cred.with_version(version))
        return _Outcome.DONE, 0.0

    async def _throttled(self, exc: TokenThrottledError) -> tuple[_Outcome, float]:
        if not self._throttle_warned:
            self._throttle_warned = True
            log.warning(
                "%s issuance throttled by the broker (%s); waiting %.1f s, not retrying sooner "
                "(the %s is kept in %s for the next run; REDIS_URL shares it across processes "
                "and machines)",
                self.kind,
                exc.code,
                exc.retry_after,
                self.kind,
                self.store.location,
            )
        with contextlib.suppress(_StoreDown):
            await self._store(lambda: self.store.set_throttle(self.kind, exc.retry_after))
        return _Outcome.THROTTLED, exc.retry_after


def _resolve(waiter: asyncio.Future[None]) -> None:
    """A waiting caller's timer: wake it to look again."""
    if not waiter.done():
        waiter.set_result(None)


def _retrieve(task: asyncio.Task[None]) -> None:
    """Mark a shared read's outcome as seen (its callers may all have been cancelled)."""
    if not task.cancelled():
        task.exception()


def _reraise_cancel(exc: BaseException) -> None:
    """Raise CancelledError if the current task is being cancelled.

    On 3.11 a cancellation that lands as a client-side timeout expires arrives as TimeoutError;
    taking it for an outage would make the task uncancellable.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from exc


def _newer(a: CachedCredential, b: CachedCredential) -> bool:
    return a.version > b.version


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out within the refresh lease"
    if isinstance(exc, ClientError):
        return str(exc)
    return type(exc).__name__


def token_manager(
    store: CredentialStore, issue: Issuer, policy: TokenPolicy, **kwargs: Any
) -> SharedCredential:
    """The REST access token, shared through ``store``."""
    return SharedCredential("token", store, issue, policy, **kwargs)


def approval_key_manager(
    store: CredentialStore, issue: Issuer, policy: TokenPolicy, **kwargs: Any
) -> SharedCredential:
    """The WebSocket approval key (WS-APPROVAL-KEY), shared through ``store``."""
    return SharedCredential("approval", store, issue, policy, **kwargs)


__all__ = [
    "STORE_ERRORS",
    "Issuer",
    "SharedCredential",
    "Tuning",
    "approval_key_manager",
    "default_holder",
    "token_manager",
]
