"""The in-process bus of ``stockmon serve``: the ingest's sink, the latest quote and book per key,
and the fan-out to stream subscribers (clauses API-SNAPSHOT, API-STREAM, API-BACKPRESSURE).

:class:`Hub` is an :class:`~stockmon.reference.output.EventSink`: the reference client hands it
every event on the event loop, and ``event()`` only appends to bounded per-subscriber queues, so
ingest never waits for a browser. A subscriber that falls behind gets its ticks and books conflated
per (type, key), latest wins; one that stays behind past ``behind_max_s``, or whose queue of
never-conflated messages fills up, is closed with the clause's code. Memory per subscriber is
bounded by ``queue_max_messages`` plus one slot per (type, key) it watches.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

from stockmon.errors import SpecError
from stockmon.reference.events import (
    BrokerErrorReceived,
    DataReceived,
    Event,
    MalformedFrame,
    StatusChanged,
)
from stockmon.reference.gateway.enrich import Enricher, RawRecord
from stockmon.reference.output import status_object
from stockmon.spec import Spec

# The failover runner's status words (reference/failover/core.py) -> API-STATUS failover_states.
FAILOVER_STATES = {
    "failing_over": "backup",
    "failover": "backup",
    "probe_failed": "backup",
    "probing": "probing",
    "switched_back": "primary",
}
ENCODED = "\x00encoded"  # the body's JSON without its opening brace (never sent as a key)


class Bus(Protocol):
    """Where the events of a fleet's holder go first (API-FLEET; gateway/fleet.py)."""

    def offer(self, obj: dict[str, Any], received_at: str | None) -> bool:
        """Take the event for the fleet's stream (True), or leave it to this replica (False)."""
        ...


@dataclass
class Pending:
    """One queued message: its body (no seq yet) and how many it replaced (conflation)."""

    body: dict[str, Any]
    conflated: int = 0


@dataclass(frozen=True)
class Latest:
    """The latest tick or book of a key and when the service received it."""

    event: dict[str, Any]
    received_at: str


class Metrics:
    """The six API-METRICS series on a private registry (never the process-global one)."""

    def __init__(self, spec: Spec) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        spec_metrics = spec.clause("API-METRICS").mapping("metrics")
        kinds: dict[str, Callable[..., Any]] = {"counter": Counter, "gauge": Gauge}
        made: dict[str, Any] = {}
        for name, m in spec_metrics.items():
            full = str(m["name"])
            if m["type"] == "counter":
                full = full.removesuffix("_total")  # prometheus-client appends it
            made[name] = kinds[m["type"]](
                full, f"{name} (API-METRICS)", list(m["labels"]), registry=self.registry
            )
        self.frames_in: Counter = made["frames_in"]
        self.events_out: Counter = made["events_out"]
        self.subscribers: Gauge = made["subscribers"]
        self.reconnects: Counter = made["reconnects"]
        self.token_refreshes: Counter = made["token_refreshes"]
        self.drops: Counter = made["drops"]


class Subscriber:
    """One stream connection's queue: bounded, conflating ticks and books when behind."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.keys: set[str] = set()
        self.queue: deque[Pending] = deque()
        self._slots: dict[tuple[str, str], Pending] = {}
        self.wake = asyncio.Event()
        self.behind_since: float | None = None
        self.closed_code: int | None = None
        self.seq = 0
        self.replaying = False  # a fleet resume in progress: live events wait for the replay

    def next_seq(self) -> int:
        """The connection's next sequence number (API-STREAM: from seq_start, step seq_step)."""
        self.seq = self.hub.seq_start if self.seq == 0 else self.seq + self.hub.seq_step
        return self.seq

    def put(self, body: dict[str, Any]) -> None:
        """Queue a message; conflate or close, never wait."""
        if self.closed_code is not None:
            return
        hub = self.hub
        slot_key = _slot(body)
        if slot_key is not None and slot_key[0] not in hub.conflate_types:
            slot_key = None
        if slot_key is not None:
            pending = self._slots.get(slot_key)
            if pending is not None:  # still unsent: this subscriber is behind
                pending.body = body
                pending.conflated += 1
                hub.metrics.drops.labels(hub.drop_conflated).inc()
                self._behind()
                return
        if len(self.queue) >= hub.queue_max and slot_key is None:
            self._behind()
            self.close(hub.slow_close_code)  # a full queue of never-conflated messages
            return
        pending = Pending(body)
        self.queue.append(pending)
        if slot_key is not None:
            self._slots[slot_key] = pending
        if len(self.queue) >= hub.queue_max:
            self._behind()
        self.wake.set()

    def put_unconflated(self, body: dict[str, Any]) -> None:
        """Queue a replayed message as it is while the queue has room (a resume asked for each
        one), else as :meth:`put` would (conflated, the count stated)."""
        if self.closed_code is not None:
            return
        if len(self.queue) >= self.hub.queue_max // 2:
            self.put(body)
            return
        self.queue.append(Pending(body))
        self.wake.set()

    def _behind(self) -> None:
        now = self.hub.monotonic()
        if self.behind_since is None:
            self.behind_since = now
        elif now - self.behind_since > self.hub.behind_max_s:
            self.close(self.hub.slow_close_code)

    def take(self) -> Pending | None:
        """The next message to send (the slot freed), or None when the queue is empty."""
        if not self.queue:
            self.wake.clear()
            self.behind_since = None
            return None
        pending = self.queue.popleft()
        slot_key = _slot(pending.body)
        if slot_key is not None and self._slots.get(slot_key) is pending:
            del self._slots[slot_key]
        if len(self.queue) < self.hub.queue_max // 2:
            self.behind_since = None
        return pending

    def close(self, code: int) -> None:
        """Ask the connection's writer to close with ``code`` (it wakes up for it)."""
        if self.closed_code is None:
            self.closed_code = code
            self.queue.clear()
            self._slots.clear()
            if code == self.hub.slow_close_code:
                self.hub.metrics.drops.labels(self.hub.drop_slow).inc()
            self.wake.set()


def _slot(body: dict[str, Any]) -> tuple[str, str] | None:
    if body.get("type") != "event":
        return None
    ev = body["event"]
    key = ev.get("key")
    if key is None:
        return None
    return str(ev["type"]), str(key)


@dataclass
class IngestState:
    """What GET /v1/status reports beyond the client's own counters."""

    broker: str = ""
    failover: str = ""
    last_status: dict[str, Any] = field(default_factory=dict)
    token_expires_at: str | None = None  # of the access token in use (token_renewed statuses)
    tokens_seen: int = 0


class Hub:
    """The sink of the ingest and the source of every subscriber (one per service)."""

    def __init__(self, spec: Spec, monotonic: Callable[[], float]) -> None:
        self.spec = spec
        self.monotonic = monotonic
        stream = spec.clause("API-STREAM")
        self.seq_start = stream.integer("seq_start")
        self.seq_step = stream.integer("seq_step")
        bp = spec.clause("API-BACKPRESSURE")
        self.queue_max = bp.integer("queue_max_messages")
        self.behind_max_s = bp.number("behind_max_s")
        self.slow_close_code = bp.integer("close_code")
        self.slow_close_reason = bp.string("close_reason")
        self.conflate_types = frozenset(bp.strings("conflate_types"))
        self.drop_conflated, self.drop_slow = spec.clause("API-METRICS").strings("drop_reasons")
        self.enricher = Enricher(spec)
        unknown = set(FAILOVER_STATES.values()) - set(
            spec.clause("API-STATUS").strings("failover_states")
        )
        if unknown:
            raise SpecError(f"API-STATUS failover_states lacks {sorted(unknown)}")
        self.metrics = Metrics(spec)
        self.latest: dict[tuple[str, str], Latest] = {}
        self.subscribers: set[Subscriber] = set()
        self.idle = asyncio.Event()  # set while no stream is attached: a shutdown waits on it
        self.idle.set()
        self.state = IngestState()
        self.event_id = 0
        self.bus: Bus | None = None  # a fleet's bus: its reader fans out what the stream holds

    # ------------------------------------------------------------------ EventSink

    def event(self, ev: Event) -> None:
        """Take one event from the ingest: remember, count, fan out. Never blocks."""
        if isinstance(ev, DataReceived):
            self.metrics.frames_in.labels(ev.source).inc()
            self.state.broker = ev.source
            received = datetime.now(UTC)
            stamp = received.isoformat(timespec="milliseconds").replace("+00:00", "Z")
            records: list[RawRecord | None] = list(getattr(ev.records, "records", []))
            lines = ev.records.json_lines(ev.source).splitlines()
            if len(records) != len(lines):
                records = [None] * len(lines)
            for line, record in zip(lines, records, strict=True):
                obj = json.loads(line)
                self.enricher.enrich(obj, record, received)
                self.latest[(str(obj["type"]), str(obj["key"]))] = Latest(obj, stamp)
                self.publish(obj, stamp)
        elif isinstance(ev, StatusChanged | BrokerErrorReceived | MalformedFrame):
            obj = status_object(ev)
            self.state.broker = ev.source
            self.state.last_status = obj
            if isinstance(ev, StatusChanged):
                self._track(ev)
                if ev.expires_at is not None:
                    self._token(ev)
            self.publish(obj)

    def flush(self) -> None:
        """Nothing to flush: every subscriber's writer wakes on its own queue."""

    # ------------------------------------------------------------------ fan-out

    def publish(self, obj: dict[str, Any], received_at: str | None = None) -> None:
        """One event of this replica's ingest: to the fleet's bus when it takes it, else fanned
        out here (numbered by this hub alone; a fleet replica's own status has no bus id)."""
        if self.bus is None:
            self.event_id += 1
            self.fan_out(obj, str(self.event_id))
        elif not self.bus.offer(obj, received_at):
            self.fan_out(obj, None)

    def fan_out(self, obj: dict[str, Any], event_id: str | None) -> None:
        """Send one event object to every subscriber watching its key (status: everyone)."""
        body = self.body(obj, event_id)
        key = obj.get("key")
        status = obj.get("type") == "status"
        for sub in tuple(self.subscribers):
            if sub.replaying or (self.bus is not None and not sub.keys and status):
                continue  # the bus's replay covers it (a fleet connection resumes on subscribe)
            if status or key in sub.keys:
                sub.put(body)

    @staticmethod
    def body(obj: dict[str, Any], event_id: str | None) -> dict[str, Any]:
        """The message body of an event, encoded once for every subscriber (only seq and
        conflated differ per connection)."""
        body: dict[str, Any] = {"type": "event", "event": obj}
        if event_id is not None:
            body["event_id"] = event_id
        body[ENCODED] = json.dumps(body, ensure_ascii=False, separators=(",", ":"))[1:]
        return body

    def _token(self, ev: StatusChanged) -> None:
        """A new access token: its expiry for the status API; every one after the first is a
        refresh for the metric."""
        self.state.token_expires_at = ev.expires_at
        self.state.tokens_seen += 1
        if self.state.tokens_seen > 1:
            self.metrics.token_refreshes.labels(ev.source).inc()

    def _track(self, ev: StatusChanged) -> None:
        state = FAILOVER_STATES.get(ev.state)
        if state is not None:
            self.state.failover = state

    def attach(self) -> Subscriber:
        """A new stream subscriber."""
        sub = Subscriber(self)
        self.subscribers.add(sub)
        self.idle.clear()
        self.metrics.subscribers.set(len(self.subscribers))
        return sub

    def detach(self, sub: Subscriber) -> None:
        """A stream subscriber went away."""
        self.subscribers.discard(sub)
        if not self.subscribers:
            self.idle.set()
        self.metrics.subscribers.set(len(self.subscribers))

    def snapshot(self, key: str) -> tuple[Latest | None, Latest | None]:
        """The latest (tick, book) of a key."""
        return self.latest.get(("tick", key)), self.latest.get(("orderbook", key))

    def encode(self, pending: Pending, seq: int) -> str:
        """The message text with this connection's seq; counts events sent by event type."""
        body = pending.body
        tail = body.get(ENCODED)
        if tail is None:
            extra = {"conflated": pending.conflated} if pending.conflated else {}
            return json.dumps(
                {**body, "seq": seq, **extra}, ensure_ascii=False, separators=(",", ":")
            )
        self.metrics.events_out.labels(body["event"]["type"]).inc()
        conflated = f',"conflated":{pending.conflated}' if pending.conflated else ""
        return f'{{"seq":{seq}{conflated},{tail}'
