"""The fleet's bus (clause API-FLEET): ``stockmon serve`` replicas sharing one broker socket.

The replica holding the socket lease (fleet/lease_gate.py, unchanged) hands every normalised event
to :meth:`FleetBus.offer`, which marks it ``(epoch, acquisition, n)`` — the lease epoch, a random
name of this acquisition (a Redis restarted empty hands out epoch 1 again) and a count within it —
and a publisher task XADDs it to a bounded stream (``MAXLEN ~``) and keeps the latest tick and book
per key in a hash. Every replica, the holder included, reads the stream with XREAD BLOCK from its
last id (reads are consumer-independent: no group, nothing acknowledged) and fans each entry out
through its own :class:`~stockmon.reference.gateway.hub.Hub` with the entry id as ``event_id``.

Why the mark: stream ids order events but are not contiguous, and a browser sees only its
keys, so neither can reveal a gap. The reader can: an entry that does not follow the previous one
(another acquisition: the holder changed or re-took the lease; a jump in n: trimmed or a failed
publish) is preceded by a
``status`` event of state ``gap`` naming the ids around it. A duplicate is an event_id that does not
grow. The subscription set is a sorted set changed by scripts (the 41-registration limit holds
across replicas) and announced on a second stream that the same XREAD reads.

Redis down: the reader says so (a status event, ``bus`` in /v1/status, /readyz), retries with
jittered backoff and resumes from its last id; the lease rules stay lease_gate.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import secrets
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from stockmon.errors import SpecError
from stockmon.reference.fleet.lease import RedisLease, backoff_delays
from stockmon.reference.fleet.token_manager import STORE_ERRORS
from stockmon.reference.gateway.hub import Hub, Latest, Subscriber
from stockmon.settings import Subscription
from stockmon.spec import Spec

log = logging.getLogger(__name__)

# Reader outage backoff (real seconds; not normative).
_OUTAGE_BASE_S = 0.1
_OUTAGE_CAP_S = 1.0
SNAPSHOT_TYPES = ("tick", "orderbook")

_SEED = """
if redis.call('exists', KEYS[1]) == 1 then return 0 end
for i, member in ipairs(ARGV) do
  redis.call('zadd', KEYS[1], redis.call('incr', KEYS[2]), member)
end
return #ARGV
"""
_ADD = """
if redis.call('zscore', KEYS[1], ARGV[1]) then return 0 end
if redis.call('zcard', KEYS[1]) >= tonumber(ARGV[2]) then return -1 end
redis.call('zadd', KEYS[1], redis.call('incr', KEYS[2]), ARGV[1])
redis.call('xadd', KEYS[3], 'MAXLEN', '~', ARGV[3], '*', 'op', 'add', 'item', ARGV[1])
return 1
"""
_ENTRY_FIELDS = ("event", "received_at", "epoch", "acquisition", "n")  # API-FLEET entry_fields
# KEYS: lease, events, latest. ARGV: lease value, maxlen, count, then per entry the five fields
# and the latest-hash field ('' for a status).
_PUBLISH = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return -1 end
for i = 0, tonumber(ARGV[3]) - 1 do
  local b = 4 + i * 6
  redis.call('xadd', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'event', ARGV[b], 'received_at',
    ARGV[b + 1], 'epoch', ARGV[b + 2], 'acquisition', ARGV[b + 3], 'n', ARGV[b + 4])
  if ARGV[b + 5] ~= '' then
    redis.call('hset', KEYS[3], ARGV[b + 5],
      '{"event":' .. ARGV[b] .. ',"received_at":"' .. ARGV[b + 1] .. '"}')
  end
end
return tonumber(ARGV[3])
"""
_REMOVE = """
if redis.call('zrem', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('xadd', KEYS[3], 'MAXLEN', '~', ARGV[3], '*', 'op', 'remove', 'item', ARGV[1])
return 1
"""

Holding = Callable[[], RedisLease | None]  # the socket lease while this replica holds it
Mark = tuple[int, str, int]  # (lease epoch, acquisition, n)


def stream_id(text: str) -> tuple[int, int]:
    """A stream id ``ms-seq`` as a comparable pair."""
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _stamp() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Entry:
    """One stream entry as read: its id, event, receipt time and (epoch, acquisition, n) mark."""

    id: str
    event: dict[str, Any]
    received_at: str
    mark: Mark

    @classmethod
    def parse(cls, entry_id: Any, fields: dict[Any, Any]) -> Entry:
        """From XREAD/XRANGE's (id, {field: value}); KeyError/ValueError when not ours."""
        f = {_text(k): _text(v) for k, v in fields.items()}
        mark = (int(f["epoch"]), f["acquisition"], int(f["n"]))
        return cls(_text(entry_id), json.loads(f["event"]), f["received_at"], mark)


class FleetBus:
    """One replica's side of the bus: publisher (while holding), reader, subscriptions, status."""

    def __init__(
        self,
        spec: Spec,
        hub: Hub,
        redis: Redis,
        prefix: str,
        name: str,
        holding: Holding,
        source: str,
        *,
        rng: random.Random | None = None,
    ) -> None:
        c = spec.clause("API-FLEET")
        self.clause = c
        self.hub = hub
        self.redis = redis
        self.name = name
        self.holding = holding
        self.source = source

        def key(value: str) -> str:
            return f"{prefix}:{c.string(value)}"

        self.events_key = key("events_key")
        self.latest_key = key("latest_key")
        self.subs_key = key("subscriptions_key")
        self.changes_key = key("changes_key")
        self.replicas_key = key("replicas_key")
        if c.strings("entry_fields") != _ENTRY_FIELDS:
            raise SpecError(f"API-FLEET entry_fields is not {list(_ENTRY_FIELDS)} (fleet.py)")
        self.maxlen = c.integer("maxlen")
        self.changes_maxlen = c.integer("changes_maxlen")
        self.block_ms = c.integer("block_ms")
        self.read_count = c.integer("read_count")
        self.report_s = c.number("replica_report_s")
        self.stale_s = c.number("replica_stale_s")
        self.gap_state = c.string("gap_state")
        gaps = c.mapping("gap_reasons")
        self.gap_holder, self.gap_missing = str(gaps["holder_changed"]), str(gaps["missing"])
        states = c.mapping("bus_states")
        self.state_ok, self.state_down = str(states["ok"]), str(states["unavailable"])
        bus_status = c.mapping("bus_status_states")
        self.status_down, self.status_up = str(bus_status["down"]), str(bus_status["up"])
        self._rng = rng or random.Random()
        # publisher
        self._outbox: deque[tuple[dict[str, Any], dict[str, str], RedisLease]] = deque(
            maxlen=self.maxlen
        )
        self._wake = asyncio.Event()
        self._lease: RedisLease | None = None
        self._acquisition = ""
        self._n = 0
        self.published = 0
        self.publish_failed = 0
        self.publish_refused = 0
        # reader
        self.last_id: str | None = None
        self._mark: Mark | None = None
        self._changes_id = "0-0"
        self.ok = False
        self._was_up = False
        self._reported_at = -float("inf")
        self.replicas: dict[str, dict[str, Any]] = {}
        # subscriptions: set by the gateway (what to seed, what to do with the fleet's set)
        self.current_subscriptions: Callable[[], Sequence[Subscription]] = lambda: ()
        self.apply_subscriptions: Callable[[list[Subscription]], None] = lambda subs: None
        self.local_status: Callable[[], dict[str, Any]] = dict
        self.sync_client: Callable[[], None] = lambda: None  # after a failover switch, too

    # ------------------------------------------------------------------ publishing (the holder)

    def offer(self, obj: dict[str, Any], received_at: str | None) -> bool:
        """Hub.bus: take the event for the stream while this replica holds the lease."""
        lease = self.holding()
        if lease is None:
            return False
        if lease is not self._lease:  # a new acquisition: readers must see the seam
            self._lease, self._acquisition, self._n = lease, secrets.token_hex(4), 0
        self._n += 1
        fields = {
            "event": json.dumps(obj, ensure_ascii=False, separators=(",", ":")),
            "received_at": received_at or _stamp(),
            "epoch": str(lease.epoch),
            "acquisition": self._acquisition,
            "n": str(self._n),
        }
        self._outbox.append((obj, fields, lease))  # full: the oldest goes, readers see the jump
        self._wake.set()
        return True

    async def publish_forever(self) -> None:
        """XADD what :meth:`offer` took, in order, one fenced script per batch; never raises for
        Redis. The script writes only while the stored lease value is still ours, so a holder that
        lost its lease (paused past it) cannot slip events in beside the new holder's."""
        failing = False
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._outbox:
                lease = self._outbox[0][2]
                batch: list[tuple[dict[str, Any], dict[str, str], RedisLease]] = []
                while self._outbox and self._outbox[0][2] is lease and len(batch) < 512:
                    batch.append(self._outbox.popleft())
                args: list[str] = [lease.value, str(self.maxlen), str(len(batch))]
                for obj, fields, _ in batch:
                    slot = (
                        f"{obj['type']}:{obj['key']}" if obj.get("type") in SNAPSHOT_TYPES else ""
                    )
                    args += [fields[f] for f in _ENTRY_FIELDS] + [slot]
                keys = (lease.key, self.events_key, self.latest_key)
                try:
                    written = int(await self.redis.eval(_PUBLISH, 3, *keys, *args))
                except STORE_ERRORS as exc:
                    self.publish_failed += len(batch)
                    if not failing:
                        failing = True
                        log.warning("fleet bus: publish failed (%s)", type(exc).__name__)
                    continue
                if written < 0:
                    self.publish_refused += len(batch)
                    log.warning(
                        "fleet bus: the socket lease is no longer ours; %d dropped", len(batch)
                    )
                    continue
                self.published += len(batch)
                if failing:
                    failing = False
                    log.warning("fleet bus: publishing again")

    # ------------------------------------------------------------------ reading (every replica)

    async def read_forever(self) -> None:
        """Read the stream and the subscription changes until cancelled; survive Redis outages."""
        delays = backoff_delays(_OUTAGE_BASE_S, _OUTAGE_CAP_S, self._rng)
        while True:
            try:
                if not self.ok:
                    await self._resync()
                    self._up()
                    await self._report()  # the others know of this replica at once
                    delays = backoff_delays(_OUTAGE_BASE_S, _OUTAGE_CAP_S, self._rng)
                assert self.last_id is not None
                reply: Any = await self.redis.xread(
                    {self.events_key: self.last_id, self.changes_key: self._changes_id},
                    count=self.read_count,
                    block=self.block_ms,
                )
                changed = False
                for stream, entries in reply or []:
                    if _text(stream) == self.changes_key:
                        changed = True
                        self._changes_id = _text(entries[-1][0])
                        continue
                    for entry_id, fields in entries:
                        self._deliver(entry_id, fields)
                if changed:
                    await self.reload_subscriptions()
                if time.monotonic() - self._reported_at >= self.report_s:
                    self.sync_client()
                    await self._report()
            except STORE_ERRORS as exc:
                self._down(exc)
                await asyncio.sleep(next(delays))

    def _deliver(self, entry_id: Any, fields: dict[Any, Any]) -> None:
        try:
            entry = Entry.parse(entry_id, fields)
        except (KeyError, ValueError) as exc:
            log.warning("fleet bus: entry %s is not ours (%s); skipped", _text(entry_id), exc)
            self.last_id = _text(entry_id)
            return
        gap = self.gap_before(self._mark, self.last_id, entry)
        if gap is not None:
            self.hub.fan_out(gap, None)
        self._mark, self.last_id = entry.mark, entry.id
        obj = entry.event
        if obj.get("type") in SNAPSHOT_TYPES:
            self.hub.latest[(str(obj["type"]), str(obj["key"]))] = Latest(obj, entry.received_at)
        self.hub.fan_out(obj, entry.id)

    def gap_before(
        self, mark: Mark | None, last_id: str | None, entry: Entry
    ) -> dict[str, Any] | None:
        """The gap status to send before ``entry`` when it does not follow ``mark``, else None."""
        if mark is None:
            return None
        epoch, acquisition, n = entry.mark
        same = (epoch, acquisition) == mark[:2]
        if same and n == mark[2] + 1:
            return None
        if not same:
            reason = self.gap_holder
            detail = f"the socket holder changed (lease epoch {mark[0]} -> {epoch})"
        else:
            reason = self.gap_missing
            detail = f"{n - mark[2] - 1} event(s) missing from the stream (epoch {epoch})"
        return self._gap(reason, detail, last_id, entry.id, str(entry.event.get("source")))

    def _gap(
        self, reason: str, detail: str, after: str | None, before: str | None, source: str
    ) -> dict[str, Any]:
        after_f, before_f = self.clause.strings("gap_fields")
        if source not in ("kis", "kiwoom"):
            source = self.source
        return {
            "type": "status",
            "source": source,
            "state": self.gap_state,
            "reason": reason,
            "detail": f"events between {after} and {before} were not received: {detail}",
            after_f: after,
            before_f: before,
        }

    async def _resync(self) -> None:
        """After start or an outage: where to read from, the subscriptions, the latest values."""
        if self.last_id is None:
            tail = await self.redis.xrevrange(self.events_key, count=1)
            self.last_id = _text(tail[0][0]) if tail else "0-0"
            if tail:
                with_mark = _try_parse(tail[0])
                self._mark = with_mark.mark if with_mark else None
            changes = await self.redis.xrevrange(self.changes_key, count=1)
            self._changes_id = _text(changes[0][0]) if changes else "0-0"
            latest = await self.redis.hgetall(self.latest_key)
            for raw in latest.values():
                item = json.loads(raw)
                ev = item["event"]
                self.hub.latest.setdefault(
                    (str(ev["type"]), str(ev["key"])), Latest(ev, str(item["received_at"]))
                )
        seed = [str(s) for s in self.current_subscriptions()]
        await self.redis.eval(_SEED, 2, self.subs_key, self.subs_key + ":n", *seed)
        await self.reload_subscriptions()

    async def reload_subscriptions(self) -> None:
        """Adopt the fleet's subscription set (order of addition). May raise a store error."""
        members = await self.redis.zrange(self.subs_key, 0, -1)
        subs = []
        for raw in members:
            tr_id, _, key = _text(raw).partition(":")
            subs.append(Subscription(tr_id, key))
        self.apply_subscriptions(subs)

    def _up(self) -> None:
        self.ok = True
        if self._was_up:
            log.warning("fleet bus: Redis reachable again, reading from %s", self.last_id)
            self.hub.fan_out(
                self._bus_status(self.status_up, "reading the fleet's bus again"), None
            )
        self._was_up = True

    def _down(self, exc: BaseException) -> None:
        if self.ok or not self._was_up:
            log.warning("fleet bus: Redis unreachable (%s); retrying", type(exc).__name__)
        if self.ok:
            self.hub.fan_out(
                self._bus_status(self.status_down, "Redis unreachable: no fleet events"), None
            )
        self.ok = False

    def _bus_status(self, state: str, detail: str) -> dict[str, Any]:
        return {
            "type": "status",
            "source": self.hub.state.broker or self.source,
            "state": state,
            "reason": "redis",
            "detail": detail,
        }

    # ------------------------------------------------------------------ resume (API-FLEET after)

    async def replay(self, sub: Subscriber, after: str, keys: Sequence[str]) -> bool:
        """Queue for ``sub`` what followed ``after`` for ``keys``, then watch them live.

        False (nothing queued, keys not added) when the stream no longer holds ``after``. Live
        fan-out skips ``sub`` meanwhile; the replay reads up to what this replica's reader has
        fanned out, again until no read was outrun, and adds the keys with no await in between:
        each event exactly once, replay then live. Only a connection's first subscribe resumes
        (before it, a fleet connection gets no status events), so nothing live came before.
        """
        try:
            stream_id(after)
        except ValueError:
            return False
        sub.replaying = True
        try:
            return await self._replay(sub, after, set(keys))
        finally:
            sub.replaying = False

    async def _replay(self, sub: Subscriber, after: str, wanted: set[str]) -> bool:
        head = await self.redis.xrange(self.events_key, min=after, max=after, count=1)
        first = _try_parse(head[0]) if head else None
        if first is None:
            return False
        mark, last = first.mark, first.id
        while self.last_id is not None and stream_id(self.last_id) > stream_id(last):
            end = self.last_id
            entries: Any = await self.redis.xrange(self.events_key, min=f"({last}", max=end)
            for raw in entries:
                entry = _try_parse(raw)
                if entry is None:
                    continue
                gap = self.gap_before(mark, last, entry)
                if gap is not None:
                    sub.put_unconflated(self.hub.body(gap, None))
                mark, last = entry.mark, entry.id
                ev = entry.event
                if ev.get("type") == "status" or ev.get("key") in wanted:
                    sub.put_unconflated(self.hub.body(ev, entry.id))
            last = end
        sub.keys.update(wanted)
        return True

    def unresumable(self, after: str) -> dict[str, Any]:
        """The gap status for a resume the stream can no longer serve."""
        return self._gap(
            self.gap_missing, "the bus no longer holds that event", after, None, self.source
        )

    # ------------------------------------------------------------------ subscriptions (any replica)

    async def add(self, sub: Subscription, limit: int) -> int:
        """1 added, 0 already there, -1 over the limit (atomic across replicas). May raise."""
        keys = (self.subs_key, self.subs_key + ":n", self.changes_key)
        args = (str(sub), limit, self.changes_maxlen)
        result = int(await self.redis.eval(_ADD, 3, *keys, *args))
        await self.reload_subscriptions()
        return result

    async def remove(self, sub: Subscription) -> bool:
        """Whether it was there. May raise a store error."""
        keys = (self.subs_key, self.subs_key + ":n", self.changes_key)
        args = (str(sub), 0, self.changes_maxlen)
        result = bool(await self.redis.eval(_REMOVE, 3, *keys, *args))
        await self.reload_subscriptions()
        return result

    # ------------------------------------------------------------------ the fleet's answers

    async def latest(self, event_type: str, key: str) -> Latest | None:
        """The fleet's latest tick/book of a key (this replica's copy while Redis is down)."""
        try:
            raw = await self.redis.hget(self.latest_key, f"{event_type}:{key}")
        except STORE_ERRORS:
            return self.hub.latest.get((event_type, key))
        if raw is None:
            return None
        item = json.loads(raw)
        return Latest(item["event"], str(item["received_at"]))

    def role(self) -> str:
        """holder or standby."""
        return "holder" if self.holding() is not None else "standby"

    async def _report(self) -> None:
        """Write this replica's record, read everybody's (for /v1/status)."""
        record = {
            "role": self.role(),
            "at": time.time(),
            "subscribers": len(self.hub.subscribers),
            "last_event_id": self.last_id,
            "status": self.local_status(),
        }
        self._reported_at = time.monotonic()
        await self.redis.hset(self.replicas_key, self.name, json.dumps(record))
        await self._read_records()

    async def _read_records(self) -> None:
        """Every replica's record, the stale ones left out (and deleted when long gone)."""
        raw = await self.redis.hgetall(self.replicas_key)
        fresh: dict[str, dict[str, Any]] = {}
        stale: list[str] = []
        for name, value in raw.items():
            rec = json.loads(value)
            if time.time() - float(rec["at"]) <= self.stale_s:
                fresh[_text(name)] = rec
            elif time.time() - float(rec["at"]) > 100 * self.stale_s:
                stale.append(_text(name))
        if stale:
            await self.redis.hdel(self.replicas_key, *stale)
        self.replicas = fresh

    async def status(self, base: dict[str, Any]) -> dict[str, Any]:
        """API-STATUS for the fleet: the holder's socket view, every fresh replica's subscribers
        (the records read now; the last ones read while Redis is down)."""
        if self.ok:
            with contextlib.suppress(*STORE_ERRORS):
                await self._read_records()
        now = time.time()
        fresh = {n: r for n, r in self.replicas.items() if now - float(r["at"]) <= self.stale_s}
        role = self.role()
        holder = self.name if role == "holder" else None
        if holder is None:
            holders = sorted((float(r["at"]), n) for n, r in fresh.items() if r["role"] == "holder")
            holder = holders[-1][1] if holders else None  # the newest word wins after a takeover
        out = dict(base)
        if holder is not None and holder != self.name:
            theirs = fresh[holder]["status"]
            age = max(0.0, now - float(fresh[holder]["at"]))
            for field in ("broker", "socket", "reconnects", "token_expires_at", "failover"):
                out[field] = theirs[field]
            for field in ("last_heartbeat_age_s", "last_inbound_age_s"):
                value = theirs[field]
                out[field] = None if value is None else round(float(value) + age, 3)
        if self.ok:
            others = sum(int(r["subscribers"]) for n, r in fresh.items() if n != self.name)
            out["subscribers"] = len(self.hub.subscribers) + others
        out["fleet"] = {
            "replica": self.name,
            "role": role,
            "holder": holder,
            "bus": self.state_ok if self.ok else self.state_down,
            "last_event_id": self.last_id,
            "replicas": len(fresh | {self.name: {}}),
        }
        return out


def _try_parse(raw: Any) -> Entry | None:
    try:
        return Entry.parse(raw[0], raw[1])
    except (KeyError, ValueError, IndexError):
        return None


__all__ = ["Entry", "FleetBus", "stream_id"]
