"""Where the fleet keeps its credentials: Redis (shared, TOKEN-KIS-LOCK) or process memory.

Keys are named by environment (STOCKMON_ENV) and a SHA-256 digest of the app key, never the key or
the secret themselves; the digest sits in a Redis Cluster hash tag so every key of one app key
lives in one slot (the scripts touch several)::

    stockmon:{<env>:kis:<digest>}:<kind>               hash: value, expires_at, issued_at,
                                                       refresh_after, version
    stockmon:{<env>:kis:<digest>}:<kind>:version       counter behind ``version`` (never expires)
    stockmon:{<env>:kis:<digest>}:<kind>:lease         refresh lease (see lease.py), TTL always
    stockmon:{<env>:kis:<digest>}:<kind>:lease:epoch   fencing counter of that lease (never expires)
    stockmon:{<env>:kis:<digest>}:<kind>:throttle      present while issuance must wait (TTL)
    stockmon:{<env>:kis:<digest>}:socket:lease         the market-data socket lease (+ :epoch)
    stockmon:{<env>:kis:<digest>}:<kind>:changed       pub/sub channel: the stored hash as JSON,
                                                       published by the write script after it
                                                       stored it

``<kind>`` is ``token`` (REST access token) or ``approval`` (WebSocket approval key). The cache
hash is the only place a credential value is stored; it expires with the credential.

The write is fenced: one Lua script checks that the caller still holds the refresh lease, bumps
the version, stores the credential and starts the issuance throttle window, all or nothing; then it
publishes what it stored on ``<kind>:changed``, so processes waiting for the refresh are told the
new credential itself instead of polling and re-reading (:meth:`CredentialStore.changes`). Anyone
who may subscribe may also read the hash, so the notice shows the value to nobody new. A lost or
unreadable message (an older writer published only the version) costs one cache read or one poll
delay: waiters keep re-reading the cache on their old backoff schedule.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from stockmon.boundedjson import loads as bounded_json
from stockmon.redaction import Secret
from stockmon.reference.fleet.lease import (
    ACQUIRE_LUA,
    Lease,
    LocalLease,
    LocalLeases,
    RedisLease,
    epoch_key,
    granted,
    lease_ms,
    new_lease_value,
    try_acquire,
)
from stockmon.reference.fleet.token_state import CachedCredential

log = logging.getLogger(__name__)

TOKEN = "token"  # noqa: S105 - a key name, not a secret
APPROVAL = "approval"
SOCKET = "socket"

_WRITE = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
local v = redis.call('incr', KEYS[3])
redis.call('hset', KEYS[2], 'value', ARGV[2], 'expires_at', ARGV[3], 'issued_at', ARGV[4],
           'refresh_after', ARGV[7], 'version', v)
redis.call('pexpire', KEYS[2], ARGV[5])
if tonumber(ARGV[6]) > 0 then redis.call('set', KEYS[4], '1', 'PX', ARGV[6]) end
redis.call('publish', ARGV[8], cjson.encode({value=ARGV[2], expires_at=ARGV[3],
           issued_at=ARGV[4], refresh_after=ARGV[7], version=v}))
return v
"""

_SNAPSHOT = """
return {redis.call('hgetall', KEYS[1]), redis.call('pttl', KEYS[2])}
"""
# The claim (CredentialStore.claim). KEYS: cache hash, throttle, lease, lease epoch. ARGV: the
# version the caller has seen, the lease value, its TTL ms. -> {hash, throttle PTTL, epoch or 0}
_CLAIM = (
    ACQUIRE_LUA
    + """
local h = redis.call('hgetall', KEYS[1])
local t = redis.call('pttl', KEYS[2])
local v = tonumber(redis.call('hget', KEYS[1], 'version')) or 0
if t > 0 or v > tonumber(ARGV[1]) then return {h, t, 0} end
return {h, t, acquire(KEYS[3], KEYS[4], ARGV[2], ARGV[3])}
"""
)

# The listener's read timeout (below the client's socket timeout; a timeout just reads again).
_LISTEN_POLL_S = 0.5
# How often aclose() repeats its cancel of the listener (a cancel can meet a read's timeout).
_CLOSE_STEP_S = 0.1
# Redis' errors that mean "unreachable" (the manager's STORE_ERRORS; redis_conn has no copy).
STORE_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)


def app_key_digest(app_key: Secret) -> str:
    """The name an app key goes by in stores and file names: a SHA-256 digest, never the key."""
    return hashlib.sha256(app_key.reveal().encode()).hexdigest()[:32]


def key_prefix(env: str, app_key: Secret, broker: str = "kis") -> str:
    """Redis key prefix of one broker's app key in one environment; the key itself never shows."""
    return f"stockmon:{{{env}:{broker}:{app_key_digest(app_key)}}}"


@dataclass(frozen=True)
class StoreWrite:
    """What one fenced write stores: the credential, how long the entry is worth keeping (its
    remaining validity, real s), and the issuance throttle window it starts in the same step."""

    cred: CachedCredential
    keep_for: float
    throttle: float | None = None


@dataclass(frozen=True, slots=True)
class Claim:
    """What one claim saw and got: the cache, the throttle's seconds left, the version stored
    (0: none, or unreadable), and the refresh lease when the claim took it."""

    cred: CachedCredential | None
    throttle: float
    version: int
    lease: Lease | None = None


async def claim_in_steps(
    store: CredentialStore, kind: str, ttl: float, holder: str, seen: int
) -> Claim:
    """:meth:`CredentialStore.claim` of a store without scripts: snapshot, lease, snapshot again.

    The second snapshot is the lock pattern's double-check: a write made between the first one and
    the acquisition is seen, and the lease given back.
    """
    cred, wait = await store.snapshot(kind)
    version = cred.version if cred is not None else 0
    if wait > 0 or version > seen:
        return Claim(cred, wait, version)
    lease = await store.try_acquire(kind, ttl, holder)
    if lease is None:
        return Claim(cred, wait, version)
    cred, wait = await store.snapshot(kind)
    version = cred.version if cred is not None else 0
    if wait > 0 or version > seen:
        await lease.release()
        return Claim(cred, wait, version)
    return Claim(cred, wait, version, lease)


class ChangeFeed(Protocol):
    """Wake-ups for processes waiting on another's refresh (a hint, never the source of truth).

    A feed is made *before* the cache read it follows up: a write after it was made is noticed.
    """

    async def wait(self, at_most: float) -> CachedCredential | None:
        """Return when a new credential may have been stored, or after ``at_most`` seconds.

        Returns the stored credential when the notice carried one (the caller adopts it if it is
        newer, saving a cache read), else None. May return early for no reason: the caller
        re-reads the cache then.
        """
        ...

    def live(self) -> bool:
        """Whether notices arrive now (then a waiter's cache re-read is only a fallback)."""
        ...


class SleepFeed:
    """No notifications: every wait is the full timeout (stores that cannot tell, e.g. a file)."""

    async def wait(self, at_most: float) -> CachedCredential | None:
        """Sleep ``at_most``; nothing is ever carried."""
        await asyncio.sleep(at_most)
        return None

    def live(self) -> bool:
        """Never: polling is all there is."""
        return False


class CredentialStore(Protocol):
    """Shared (or local) credential cache with a refresh lease and an issuance throttle."""

    @property
    def backend(self) -> str:
        """``redis``, ``file`` or ``local`` (for logs and status events)."""
        ...

    @property
    def location(self) -> str:
        """Where credentials are kept, in words a user can act on (no secret in it)."""
        ...

    async def read(self, kind: str) -> CachedCredential | None:
        """The stored credential of ``kind``, or None. May raise RedisError/OSError."""
        ...

    async def snapshot(self, kind: str) -> tuple[CachedCredential | None, float]:
        """:meth:`read` and :meth:`throttle_remaining` at one instant (one round trip): a write
        between two separate reads would show its throttle without its credential."""
        ...

    async def try_acquire(self, kind: str, ttl: float, holder: str) -> Lease | None:
        """One attempt at the refresh lease of ``kind``."""
        ...

    async def claim(self, kind: str, ttl: float, holder: str, seen: int) -> Claim:
        """One step: read the cache and the throttle, and take the refresh lease unless it is held,
        a throttle window is open or the cache holds a version newer than ``seen`` (somebody
        refreshed since the caller looked: it adopts that instead).

        With the lease, the cache returned is the one the refresh replaces: no write falls between
        the read and the acquisition (the lock pattern's double-check, in the same step).
        """
        ...

    async def write(self, lease: Lease, kind: str, w: StoreWrite) -> int | None:
        """Fenced write; returns the new version, or None when ``lease`` is no longer ours."""
        ...

    async def throttle_remaining(self, kind: str) -> float:
        """Seconds before issuance of ``kind`` is allowed again (0 = now)."""
        ...

    async def set_throttle(self, kind: str, seconds: float) -> None:
        """Forbid issuance of ``kind`` for ``seconds`` (the broker said so)."""
        ...

    def changes(self, kind: str) -> ChangeFeed:
        """A feed of the writes of ``kind`` from now on (starting whatever delivers them)."""
        ...

    async def aclose(self) -> None:
        """Stop what the store runs in the background (before its connection is closed)."""
        ...


class RedisCredentialStore:
    """The fleet's store: one Redis node (limits in lease.py)."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self._wakeups = _Wakeups()
        self._listener: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[None] | None = None

    @property
    def backend(self) -> str:
        """Always ``redis``."""
        return "redis"

    @property
    def location(self) -> str:
        """The Redis of REDIS_URL (the URL itself may hold a password)."""
        return "Redis (REDIS_URL)"

    def key(self, kind: str, suffix: str = "") -> str:
        """Full Redis key of ``kind`` (plus ``:suffix``)."""
        return f"{self.prefix}:{kind}" + (f":{suffix}" if suffix else "")

    async def read(self, kind: str) -> CachedCredential | None:
        """HGETALL the cache hash; a malformed entry reads as absent (and is logged)."""
        return self._parse(kind, await self.redis.hgetall(self.key(kind)))

    async def snapshot(self, kind: str) -> tuple[CachedCredential | None, float]:
        """One script: the cache hash and the throttle key's PTTL."""
        fields, pttl = await self.redis.eval(
            _SNAPSHOT, 2, self.key(kind), self.key(kind, "throttle")
        )
        return self._parse(kind, _pairs(fields)), _seconds(pttl)

    async def claim(self, kind: str, ttl: float, holder: str, seen: int) -> Claim:
        """One script (``_CLAIM``): the snapshot and, unless told otherwise, the acquisition."""
        key = self.key(kind, "lease")
        base = new_lease_value(holder, ttl)
        sent = time.monotonic()
        fields, pttl, epoch = await self.redis.eval(
            _CLAIM,
            4,
            self.key(kind),
            self.key(kind, "throttle"),
            key,
            epoch_key(key),
            seen,
            base,
            lease_ms(ttl),
        )
        raw = _pairs(fields)
        stored = raw.get("version", "")
        version = int(stored) if stored.isdigit() else 0  # what the script compared (tonumber)
        lease = granted(self.redis, key, base, ttl, sent, int(epoch), holder) if epoch else None
        return Claim(self._parse(kind, raw), _seconds(pttl), version, lease)

    def _parse(self, kind: str, raw: dict[Any, Any]) -> CachedCredential | None:
        if not raw:
            return None
        cred = CachedCredential.from_stored({_text(k): _text(v) for k, v in raw.items()})
        if cred is None:
            log.warning("ignoring a malformed %s cache entry in Redis", kind)
        return cred

    async def try_acquire(self, kind: str, ttl: float, holder: str) -> RedisLease | None:
        """SET NX PX on the refresh lease of ``kind``."""
        return await try_acquire(self.redis, self.key(kind, "lease"), ttl, holder)

    async def write(self, lease: Lease, kind: str, w: StoreWrite) -> int | None:
        """One script: check the lease value, bump the version, store, start the throttle."""
        if not isinstance(lease, RedisLease):
            raise TypeError("a Redis store takes Redis leases only")
        cred = w.cred
        ttl_ms = max(1000, math.ceil(w.keep_for * 1000))
        throttle_ms = 0 if not w.throttle else max(1, math.ceil(w.throttle * 1000))
        version = await self.redis.eval(
            _WRITE,
            4,
            lease.key,
            self.key(kind),
            self.key(kind, "version"),
            self.key(kind, "throttle"),
            lease.value,
            cred.value.reveal(),
            repr(cred.expires_at),
            repr(cred.issued_at),
            ttl_ms,
            throttle_ms,
            repr(cred.refresh_after),
            self.key(kind, "changed"),
        )
        return int(version) or None

    async def throttle_remaining(self, kind: str) -> float:
        """PTTL of the throttle key, in seconds."""
        pttl = int(await self.redis.pttl(self.key(kind, "throttle")))
        return pttl / 1000 if pttl > 0 else 0.0

    async def set_throttle(self, kind: str, seconds: float) -> None:
        """SET the throttle key with a TTL (never shortens a longer one already there)."""
        ms = max(1, math.ceil(seconds * 1000))
        current = int(await self.redis.pttl(self.key(kind, "throttle")))
        if current < ms:
            await self.redis.set(self.key(kind, "throttle"), "1", px=ms)

    def changes(self, kind: str) -> ChangeFeed:
        """Wake-ups from this store's listener (PSUBSCRIBE on a connection of its own).

        The listener starts on first use and runs until :meth:`aclose`; until Redis has confirmed
        its subscription (one round trip, once per store) a wait lasts until it has, and the
        caller re-reads the cache then.
        """
        self._ensure_listener()
        return _EventFeed(self._wakeups, kind, self._ensure_listener)

    def _ensure_listener(self) -> bool:
        """Start the listener unless one runs; whether it is confirmed listening."""
        task, ready = self._listener, self._ready
        if task is None or task.done() or ready is None:
            ready = asyncio.get_running_loop().create_future()
            self._ready = ready
            self._listener = asyncio.get_running_loop().create_task(
                self._listen(ready), name="credential-changes"
            )
            return False
        return ready.done()

    async def _listen(self, ready: asyncio.Future[None]) -> None:
        """PSUBSCRIBE to every ``<kind>:changed`` of this prefix; each message wakes its kind."""
        pubsub = self.redis.pubsub()
        head = len(self.prefix) + 1
        try:
            await pubsub.psubscribe(_glob_escape(self.prefix) + ":*:changed")
            me = asyncio.current_task()
            while True:
                msg = await pubsub.get_message(timeout=_LISTEN_POLL_S)
                if me is not None and me.cancelling():
                    # A cancel that met the read's own timeout can be swallowed there (asyncio's
                    # timeout on Python 3.11): honour it, or aclose() would wait forever.
                    raise asyncio.CancelledError
                if msg is None:
                    continue
                if msg["type"] == "psubscribe":
                    if not ready.done():
                        ready.set_result(None)
                        self._wakeups.bump_all()  # waiters that waited for this re-read now
                elif msg["type"] == "pmessage":
                    kind = _text(msg["channel"])[head : -len(":changed")]
                    self._wakeups.bump(kind, _carried(msg["data"]))
        except STORE_ERRORS as exc:
            # A broken listener is only a lost hint: waiters fall back to polling, and the next
            # waiter starts a new listener.
            log.debug("credential change listener stopped: %s", type(exc).__name__)
        finally:
            if ready.done():  # it was live: its waiters re-read and poll (never a busy loop)
                self._wakeups.bump_all()
            with contextlib.suppress(*STORE_ERRORS):
                # untyped before redis-py 8.2, typed since: the ignore may be unused
                await asyncio.shield(pubsub.aclose())  # type: ignore[no-untyped-call,unused-ignore]

    async def aclose(self) -> None:
        """Stop the change listener (before the Redis client is closed), in bounded time."""
        task, self._listener = self._listener, None
        for _ in range(int(4 * _LISTEN_POLL_S / _CLOSE_STEP_S)):
            if task is None or task.done():
                break
            task.cancel()  # again if a cancel was swallowed by the read it met
            await asyncio.wait((task,), timeout=_CLOSE_STEP_S)
        if task is not None and not task.done():
            log.warning("the credential change listener did not stop; leaving it")
        elif task is not None and not task.cancelled():
            task.exception()  # seen (a listener's errors were logged where they happened)


class _Generation:
    """One write generation of a kind: set by the write, with the credential it stored if known."""

    __slots__ = ("cred", "event")

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.cred: CachedCredential | None = None


class _Wakeups:
    """One generation per kind: a write sets it and starts the next one."""

    def __init__(self) -> None:
        self._events: dict[str, _Generation] = {}

    def current(self, kind: str) -> _Generation:
        """The generation the next write of ``kind`` sets."""
        return self._events.setdefault(kind, _Generation())

    def bump(self, kind: str, cred: CachedCredential | None = None) -> None:
        """A write of ``kind`` happened (or may have); ``cred`` is what it stored, if known."""
        gen = self._events.pop(kind, None)
        if gen is not None:
            gen.cred = cred
            gen.event.set()

    def bump_all(self) -> None:
        """Wake every waiter (the source of notices went away: they re-read and poll)."""
        for kind in list(self._events):
            self.bump(kind)


class _EventFeed:
    """Waits on the write generation current when it was made, then on the following ones."""

    def __init__(self, wakeups: _Wakeups, kind: str, live: Callable[[], bool]) -> None:
        self._wakeups = wakeups
        self._kind = kind
        self._event = wakeups.current(kind)
        self._live = live  # whether notices arrive (and restarts their source if it stopped)

    def live(self) -> bool:
        """Whether the source of notices is confirmed listening (restarting it if it stopped)."""
        return self._live()

    async def wait(self, at_most: float) -> CachedCredential | None:
        """Return once a write after the last wake-up happened (with what it stored, when the
        notice said), or after ``at_most``.

        While the source of notices is not yet live this returns as soon as it is, so the caller
        re-reads the cache: a write between the two would otherwise go unnoticed.
        """
        self._live()
        gen = self._event
        if not gen.event.is_set():
            # A timeout scope, not wait_for: on 3.11 wait_for runs the wait in a task of its own,
            # two loop turns more between the notice and the refresh task (token_storm.py).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(at_most):
                    await gen.event.wait()
        self._event = self._wakeups.current(self._kind)
        return gen.cred if gen.event.is_set() else None


class LocalCredentialStore:
    """Process memory: the no-Redis fallback (STOCKMON_ENV=mock only), one process only."""

    def __init__(self, leases: LocalLeases | None = None) -> None:
        self.leases = leases or LocalLeases()
        self._creds: dict[str, CachedCredential] = {}
        self._throttle_until: dict[str, float] = {}
        self._wakeups = _Wakeups()

    @property
    def backend(self) -> str:
        """Always ``local``."""
        return "local"

    @property
    def location(self) -> str:
        """This process only."""
        return "process memory"

    async def read(self, kind: str) -> CachedCredential | None:
        """The credential stored by this process."""
        return self._creds.get(kind)

    async def snapshot(self, kind: str) -> tuple[CachedCredential | None, float]:
        """Both at once (nothing runs between them in one process)."""
        return await self.read(kind), await self.throttle_remaining(kind)

    async def try_acquire(self, kind: str, ttl: float, holder: str) -> LocalLease | None:
        """Process-local lease."""
        return self.leases.try_acquire(f"{kind}:lease", ttl, holder)

    async def claim(self, kind: str, ttl: float, holder: str, seen: int) -> Claim:
        """In steps (nothing else runs between them in one process)."""
        return await claim_in_steps(self, kind, ttl, holder, seen)

    async def write(self, lease: Lease, kind: str, w: StoreWrite) -> int | None:
        """Fenced by the local lease table."""
        if not isinstance(lease, LocalLease) or not self.leases.holds(lease.key, lease.value):
            return None
        old = self._creds.get(kind)
        version = (old.version if old else 0) + 1
        self._creds[kind] = w.cred.with_version(version)
        if w.throttle:
            self._throttle_until[kind] = self.leases.monotonic() + w.throttle
        self._wakeups.bump(kind, self._creds[kind])
        return version

    def changes(self, kind: str) -> ChangeFeed:
        """Wake-ups from this process' own writes (other managers sharing this store)."""
        return _EventFeed(self._wakeups, kind, lambda: True)

    async def aclose(self) -> None:
        """Nothing runs in the background."""

    async def throttle_remaining(self, kind: str) -> float:
        """Seconds left in the throttle window."""
        return max(0.0, self._throttle_until.get(kind, 0.0) - self.leases.monotonic())

    async def set_throttle(self, kind: str, seconds: float) -> None:
        """Start (or extend) the throttle window."""
        until = self.leases.monotonic() + seconds
        self._throttle_until[kind] = max(until, self._throttle_until.get(kind, 0.0))


def _carried(data: object) -> CachedCredential | None:
    """The credential a change notice carries, or None (an older writer's bare version, junk)."""
    try:
        fields = bounded_json(data if isinstance(data, (bytes, str)) else str(data), what="notice")
    except ValueError:
        return None
    return CachedCredential.from_stored(fields) if isinstance(fields, dict) else None


def _pairs(fields: list[Any]) -> dict[str, str]:
    """An HGETALL reply (flat field, value list) as text."""
    return {_text(k): _text(v) for k, v in zip(fields[::2], fields[1::2], strict=True)}


def _seconds(pttl: Any) -> float:
    """A PTTL reply in seconds; 0 for a key without one or absent (-1, -2)."""
    ms = int(pttl)
    return ms / 1000 if ms > 0 else 0.0


def _glob_escape(text: str) -> str:
    """``text`` as a literal inside a Redis glob pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


__all__ = [
    "APPROVAL",
    "SOCKET",
    "STORE_ERRORS",
    "TOKEN",
    "ChangeFeed",
    "Claim",
    "CredentialStore",
    "LocalCredentialStore",
    "RedisCredentialStore",
    "SleepFeed",
    "app_key_digest",
    "claim_in_steps",
    "key_prefix",
]
