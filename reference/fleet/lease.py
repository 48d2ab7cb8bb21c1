"""Leases: time-bounded exclusive rights, in Redis for a fleet or in memory for one process.

A lease guards the token refresh (TOKEN-KIS-LOCK) and the right to hold the one market-data socket
(WS-SINGLE-SOCKET). It follows redis-doc's single-instance lock pattern, not redis-py's ``Lock``:

- acquire is ``SET key value NX PX ttl`` (inside a script that also bumps a per-key *epoch*); the
  value is the holder's name, a ``secrets.token_hex(20)`` and the epoch, so no two acquisitions
  ever share a value and anybody can read who holds it; a TTL is always set, so a dead holder's
  lease lapses by itself;
- the holder's *remaining validity* is measured on its own monotonic clock from the moment it
  *sent* the acquire (or the last renew), minus a drift allowance, so it errs on the safe side: when
  the holder believes it holds the lease, Redis has not expired the key yet;
- every write the lease guards is fenced: a script compares the stored value with ours before
  writing (the token cache write lives in :mod:`stockmon.reference.fleet.token_store`);
- renew and release are compare-and-``PEXPIRE`` / compare-and-``DEL`` scripts; release is shielded
  from cancellation (a cancelled caller must not leave the lease to rot until its TTL) and never
  raises;
- the acquire returns a lease object; waiters poll with jittered, capped backoff.
- outage mode (FLEET-REDIS-OUTAGE, ``try_acquire(..., quarantine=...)`` and ``reassert=True``):
  renew becomes a fenced *reassert* that also rewrites a key lost with a restarted Redis, as long
  as nobody acquired it since (the epoch counter is ours, or gone with Redis's state); and an
  acquire on a Redis that lost its state (no epoch counter) first sets a *quarantine* key that
  lasts until the server has been up for ``quarantine`` seconds, so a holder that kept its socket
  through the outage can reassert before anybody else may acquire.

Limits (the price of a single-node lock, see redis-doc distributed-locks.md):

- one Redis node: if it fails over to a replica that had not received the ``SET``, two holders can
  coexist; Redis Sentinel/Cluster failover and restarts without persistence break mutual exclusion
  (a restarted empty Redis grants the lease again at once);
- the key expires on the *server's* clock: a jump of that clock (a manual change, a VM resume) can
  expire a lease early; the client side only assumes monotonic clocks that run at about the same
  rate (the drift allowance covers rate differences, not jumps);
- a holder paused longer than its validity (GC, SIGSTOP, swap) wakes up without the lease. Fenced
  writes make it harmless for the shared cache; for side effects outside Redis (an HTTP issuance,
  an open socket) the holder bounds them by its remaining validity, and a process that is frozen
  while it holds a socket cannot close it in time — the broker's one-session-per-appkey rule
  (WS-SESSION-LIMITS) is then the last line of defence.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

# Allowance for clock-rate differences between us and Redis (Redlock's 1 % + 2 ms).
_DRIFT_FACTOR = 0.01
_DRIFT_CONSTANT_S = 0.002

# The acquisition itself, as a Lua function: the scripts below and those that acquire as one
# step with something else (the token store's claim) call it. 0 when held, else the new epoch.
ACQUIRE_LUA = """
local function acquire(key, epoch_key, value, ttl_ms)
  if redis.call('exists', key) == 1 then return 0 end
  local epoch = redis.call('incr', epoch_key)
  redis.call('set', key, value .. '@' .. epoch, 'PX', ttl_ms)
  return epoch
end
"""
_ACQUIRE = ACQUIRE_LUA + "return acquire(KEYS[1], KEYS[2], ARGV[1], ARGV[2])\n"
# Outage mode (FLEET-REDIS-OUTAGE). KEYS: key, epoch counter, quarantine. ARGV: value, TTL ms,
# quarantine ms (-1: not known yet -> answer -1 when Redis lost its state). 0: held, -2: quarantined.
_ACQUIRE_QUARANTINED = (
    ACQUIRE_LUA
    + """
if redis.call('exists', KEYS[1]) == 1 then return 0 end
if redis.call('exists', KEYS[3]) == 1 then return -2 end
if redis.call('exists', KEYS[2]) == 0 then
  local q = tonumber(ARGV[3])
  if q < 0 then return -1 end
  if q > 0 then
    redis.call('set', KEYS[3], '1', 'NX', 'PX', q)
    return -2
  end
end
return acquire(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
"""
)
# Fenced reassert. KEYS: key, epoch counter. ARGV: value, TTL ms, our epoch. Extends our key, or
# rewrites it when it is gone and nobody acquired since; 0 when another holds it or did.
_REASSERT = """
local v = redis.call('get', KEYS[1])
if v == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
if v then return 0 end
local e = redis.call('get', KEYS[2])
if e and tonumber(e) ~= tonumber(ARGV[3]) then return 0 end
if not e then redis.call('set', KEYS[2], ARGV[3]) end
redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""

Monotonic = Callable[[], float]

# Releases run as tasks so a cancelled caller cannot interrupt them; keep them referenced.
_background: set[asyncio.Task[None]] = set()


def drift_allowance(ttl: float) -> float:
    """Seconds of validity given up to cover clock-rate differences."""
    return ttl * _DRIFT_FACTOR + _DRIFT_CONSTANT_S


def backoff_delays(base: float, cap: float, rng: random.Random | None = None) -> Iterator[float]:
    """Endless jittered exponential delays ("full jitter" above half the step), capped."""
    r = rng or random.Random()
    step = base
    while True:
        yield step / 2 + r.random() * step / 2
        step = min(cap, step * 2)


class Lease(Protocol):
    """An exclusive right that lapses by itself; what the holder of a lease can ask of it."""

    @property
    def key(self) -> str:
        """Name of the thing leased."""
        ...

    @property
    def epoch(self) -> int:
        """Fencing number: grows with every acquisition of this key."""
        ...

    @property
    def holder(self) -> str:
        """Name of the holder (a replica id; never a secret)."""
        ...

    def remaining(self) -> float:
        """Seconds this holder may still act, on its own monotonic clock (<= 0: lapsed)."""
        ...

    async def renew(self) -> bool:
        """Extend the lease to a full TTL if still ours; False if lost. May raise RedisError."""
        ...

    async def release(self) -> None:
        """Give the lease up if still ours; shielded from cancellation, never raises."""
        ...


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    """Who holds a key right now, as stored (for status events)."""

    holder: str
    epoch: int


def parse_lease_value(value: str) -> LeaseInfo | None:
    """Split ``holder/token@epoch``; None when the value is not ours."""
    head, sep, epoch = value.rpartition("@")
    holder, sep2, _token = head.rpartition("/")
    if not sep or not sep2 or not epoch.isdigit():
        return None
    return LeaseInfo(holder, int(epoch))


@dataclass(frozen=True, slots=True)
class Grant:
    """What an acquisition granted: key, stored value, TTL, when it was asked, epoch and holder."""

    key: str
    value: str
    ttl: float
    start: float
    epoch: int
    holder: str


class _Held:
    """What every lease knows of itself: its key, fencing epoch and holder (never its value)."""

    def __init__(self, grant: Grant) -> None:
        self._key = grant.key
        self.value = grant.value
        self.ttl = grant.ttl
        self._start = grant.start
        self._epoch = grant.epoch
        self._holder = grant.holder
        self._released = False

    def __repr__(self) -> str:
        # The value is unguessable on purpose; keep it out of logs anyway.
        return f"{type(self).__name__}(key={self._key!r}, holder={self._holder!r}, epoch={self._epoch})"

    @property
    def key(self) -> str:
        """The leased key."""
        return self._key

    @property
    def epoch(self) -> int:
        """Fencing number of this acquisition."""
        return self._epoch

    @property
    def holder(self) -> str:
        """Our replica name."""
        return self._holder


class TimedLease(_Held):
    """A lease held elsewhere (Redis, a file): validity measured on our own monotonic clock."""

    def __init__(self, grant: Grant, monotonic: Monotonic) -> None:
        super().__init__(grant)
        self._monotonic = monotonic

    def remaining(self) -> float:
        """Validity left, measured from the send time of the last acquire/renew, minus drift."""
        if self._released:
            return 0.0
        return self.ttl - (self._monotonic() - self._start) - drift_allowance(self.ttl)

    async def renew(self) -> bool:
        """Compare-and-extend; on success the validity restarts from the send time."""
        if self._released:
            return False
        sent = self._monotonic()
        if await self._extend():
            self._start = sent
            return True
        self._start = -float("inf")  # lost: never trust this lease again
        return False

    async def _extend(self) -> bool:
        """Extend the stored lease to a full TTL if its value is still ours."""
        raise NotImplementedError


class RedisLease(TimedLease):
    """A lease held in Redis; see the module docstring for the guarantees and their limits."""

    def __init__(
        self, redis: Redis, grant: Grant, monotonic: Monotonic, *, reassert: bool = False
    ) -> None:
        super().__init__(grant, monotonic)
        self._redis = redis
        self._reassert = reassert

    async def _extend(self) -> bool:
        """Compare-and-PEXPIRE; in outage mode the fenced reassert (module docstring)."""
        if self._reassert:
            keys = (self._key, epoch_key(self._key))
            answer = await self._redis.eval(
                _REASSERT, 2, *keys, self.value, lease_ms(self.ttl), self._epoch
            )
            return bool(answer)
        return bool(await self._redis.eval(_RENEW, 1, self._key, self.value, lease_ms(self.ttl)))

    async def release(self) -> None:
        """Compare-and-DEL in a task of its own, so cancelling the caller cannot interrupt it."""
        if self._released:
            return
        self._released = True
        task = asyncio.ensure_future(self._release_now())
        _background.add(task)
        task.add_done_callback(_background.discard)
        await asyncio.shield(task)

    async def _release_now(self) -> None:
        try:
            await self._redis.eval(_RELEASE, 1, self._key, self.value)
        except (RedisError, OSError) as exc:
            # The TTL frees it anyway; the next holder only waits a little longer.
            log.debug("lease %s: release failed (%s); it lapses by its TTL", self._key, exc)


async def try_acquire(
    redis: Redis,
    key: str,
    ttl: float,
    holder: str,
    *,
    monotonic: Monotonic = time.monotonic,
    quarantine: float = 0.0,
) -> RedisLease | None:
    """One attempt at ``key``; returns the lease or None if somebody holds it. May raise RedisError.

    ``quarantine`` > 0 is outage mode (FLEET-REDIS-OUTAGE): on a Redis that lost its state nobody
    acquires until the server has been up that long, and the lease renews by fenced reassert.
    """
    base = new_lease_value(holder, ttl)
    sent = monotonic()
    if quarantine > 0:
        keys = (key, epoch_key(key), quarantine_key(key))
        epoch = await redis.eval(_ACQUIRE_QUARANTINED, 3, *keys, base, lease_ms(ttl), -1)
        if epoch == -1:  # Redis lost its state: quarantine what is left of its first moments
            sent = monotonic()
            left = lease_ms(quarantine) - 1000 * await server_uptime_s(redis)
            epoch = await redis.eval(
                _ACQUIRE_QUARANTINED, 3, *keys, base, lease_ms(ttl), max(0, left)
            )
        if int(epoch) <= 0:
            return None
    else:
        epoch = await redis.eval(_ACQUIRE, 2, key, epoch_key(key), base, lease_ms(ttl))
        if not epoch:
            return None
    return granted(redis, key, base, ttl, sent, int(epoch), holder, monotonic, quarantine > 0)


def new_lease_value(holder: str, ttl: float) -> str:
    """What an acquisition stores before its epoch (``holder/token``); checks the TTL and name.

    Every acquisition has a fresh random token, so no two ever share a value.
    """
    if not ttl > 0:
        raise ValueError(f"lease TTL must be > 0, got {ttl!r}")
    if "/" in holder or "@" in holder:
        raise ValueError(f"holder name may not contain '/' or '@': {holder!r}")
    return f"{holder}/{secrets.token_hex(20)}"


def granted(
    redis: Redis,
    key: str,
    base: str,
    ttl: float,
    sent: float,
    epoch: int,
    holder: str,
    monotonic: Monotonic = time.monotonic,
    reassert: bool = False,
) -> RedisLease:
    """The lease a script's acquisition (``ACQUIRE_LUA``) granted: ``base`` stored with ``epoch``,
    its validity counted from ``sent``, when the acquire was sent."""
    grant = Grant(key, f"{base}@{epoch}", ttl, sent, epoch, holder)
    return RedisLease(redis, grant, monotonic, reassert=reassert)


def epoch_key(key: str) -> str:
    """The key of ``key``'s acquisition counter (never expires; gone only with Redis's state)."""
    return key + ":epoch"


def quarantine_key(key: str) -> str:
    """The key that bars acquiring ``key`` after Redis lost its state (outage mode)."""
    return key + ":quarantine"


async def server_uptime_s(redis: Redis) -> int:
    """Whole seconds the Redis server has been up (rounded down: errs on the long side)."""
    info = await redis.info("server")
    return int(info["uptime_in_seconds"])


async def quarantine_left(redis: Redis, key: str) -> float:
    """Seconds until ``key`` may be acquired after a Redis restart (0: not quarantined)."""
    ms = await redis.pttl(quarantine_key(key))
    return max(0, int(ms)) / 1000


async def current_holder(redis: Redis, key: str) -> LeaseInfo | None:
    """Who holds ``key`` now (None if nobody). May raise RedisError."""
    raw = await redis.get(key)
    if raw is None:
        return None
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return parse_lease_value(text)


class LocalLeases:
    """Process-local leases with the same semantics, for running without Redis (one process only)."""

    def __init__(self, monotonic: Monotonic = time.monotonic) -> None:
        self._monotonic = monotonic
        self._held: dict[str, tuple[str, float]] = {}  # key -> (value, expires at, monotonic)
        self._epochs: dict[str, int] = {}

    def try_acquire(self, key: str, ttl: float, holder: str) -> LocalLease | None:
        """Grant ``key`` unless a live lease holds it (TTL and name checked as for Redis)."""
        base = new_lease_value(holder, ttl)
        now = self._monotonic()
        held = self._held.get(key)
        if held is not None and held[1] > now:
            return None
        epoch = self._epochs.get(key, 0) + 1
        self._epochs[key] = epoch
        value = f"{base}@{epoch}"
        self._held[key] = (value, now + ttl)
        return LocalLease(self, Grant(key, value, ttl, now, epoch, holder))

    def holds(self, key: str, value: str) -> bool:
        """Whether ``value`` is the live holder of ``key``."""
        held = self._held.get(key)
        return held is not None and held[0] == value and held[1] > self._monotonic()

    def renew(self, key: str, value: str, ttl: float) -> bool:
        """Extend if still held by ``value``."""
        if not self.holds(key, value):
            return False
        self._held[key] = (value, self._monotonic() + ttl)
        return True

    def release(self, key: str, value: str) -> None:
        """Compare-and-delete."""
        held = self._held.get(key)
        if held is not None and held[0] == value:
            del self._held[key]

    def holder(self, key: str) -> LeaseInfo | None:
        """Who holds ``key`` now."""
        held = self._held.get(key)
        if held is None or held[1] <= self._monotonic():
            return None
        return parse_lease_value(held[0])

    @property
    def monotonic(self) -> Monotonic:
        """The clock the table measures with."""
        return self._monotonic


class LocalLease(_Held):
    """A lease in a :class:`LocalLeases` table."""

    def __init__(self, table: LocalLeases, grant: Grant) -> None:
        super().__init__(grant)
        self._table = table

    def remaining(self) -> float:
        """Validity left (no drift in one process)."""
        if self._released or not self._table.holds(self._key, self.value):
            return 0.0
        return self.ttl - (self._table.monotonic() - self._start)

    async def renew(self) -> bool:
        """Extend to a full TTL if still ours."""
        now = self._table.monotonic()
        if self._released or not self._table.renew(self._key, self.value, self.ttl):
            return False
        self._start = now
        return True

    async def release(self) -> None:
        """Give it up."""
        if not self._released:
            self._released = True
            self._table.release(self._key, self.value)


def lease_ms(seconds: float) -> int:
    """A lease TTL in the milliseconds Redis takes (at least 1)."""
    return max(1, round(seconds * 1000))


__all__ = [
    "ACQUIRE_LUA",
    "Lease",
    "LeaseInfo",
    "LocalLease",
    "LocalLeases",
    "RedisLease",
    "TimedLease",
    "backoff_delays",
    "current_holder",
    "drift_allowance",
    "epoch_key",
    "granted",
    "lease_ms",
    "new_lease_value",
    "parse_lease_value",
    "quarantine_key",
    "quarantine_left",
    "server_uptime_s",
    "try_acquire",
]
