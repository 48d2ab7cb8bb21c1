#!/usr/bin/env python3
"""The reference gateway with one behaviour of its internal API changed, then ``stockmon serve``.

``gateway_mutant.py NAME`` patches one method of the gateway (``reference/gateway``) so one API
behaviour leaves the spec, and runs the serve command unchanged otherwise. The conformance suite
(profile api) must fail it on exactly that behaviour's clauses.
"""

from __future__ import annotations

import asyncio
import sys
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.websockets import WebSocket

from stockmon.cli import main as stockmon_main
from stockmon.reference.gateway import app, enrich, fleet, hub, serve_cli
from stockmon.spec import latest_version, load_spec


def status_unguarded() -> None:
    """GET /v1/status answers without the key (one route left unguarded)."""
    original = app.Gateway.authorized
    path = load_spec(latest_version()).clause("API-STATUS").string("path")

    def authorized(self: app.Gateway, request: Request) -> bool:
        return request.url.path == path or original(self, request)

    app.Gateway.authorized = authorized  # type: ignore[method-assign]


def key_in_log() -> None:
    """Every checked request logs its authorization header (the key) on stderr."""
    original = app.Gateway.authorized

    def authorized(self: app.Gateway, request: Request) -> bool:
        print(f"auth: {dict(request.headers).get('authorization')}", file=sys.stderr, flush=True)
        return original(self, request)

    app.Gateway.authorized = authorized  # type: ignore[method-assign]


def serial_fanout() -> None:
    """One send at a time across every stream, and a slow tab is never closed (its queue grows
    without bound): a tab whose socket is full holds up every other."""
    lock = asyncio.Lock()
    close = hub.Subscriber.close

    def never_slow(self: hub.Subscriber, code: int) -> None:
        if code != self.hub.slow_close_code:
            close(self, code)

    hub.Subscriber.close = never_slow  # type: ignore[method-assign]

    async def write(self: app.StreamEndpoint, ws: WebSocket, sub: hub.Subscriber) -> None:
        while sub.closed_code is None:
            pending = sub.take()
            if pending is None:
                await sub.wake.wait()
                continue
            async with lock:
                await ws.send_text(self.gw.hub.encode(pending, sub.next_seq()))

    app.StreamEndpoint._write = write  # type: ignore[method-assign]


def _data(obj: dict[str, Any]) -> bool:
    return obj.get("type") in ("tick", "orderbook")


def drop_event() -> None:
    """Every fifth tick or book is never fanned out (the snapshot still sees it)."""
    original = hub.Hub.publish
    count = [0]

    def publish(self: hub.Hub, obj: dict[str, Any], *rest: Any) -> None:
        if _data(obj):
            count[0] += 1
            if count[0] % 5 == 0:
                return
        original(self, obj, *rest)

    hub.Hub.publish = publish  # type: ignore[method-assign]


def reorder_events() -> None:
    """Ticks and books are fanned out in pairs, the second of each pair first."""
    original = hub.Hub.publish
    held: list[tuple[dict[str, Any], tuple[Any, ...]]] = []

    def publish(self: hub.Hub, obj: dict[str, Any], *rest: Any) -> None:
        if not _data(obj):
            original(self, obj, *rest)
        elif held:
            original(self, obj, *rest)
            first, first_rest = held.pop()
            original(self, first, *first_rest)
        else:
            held.append((obj, rest))

    hub.Hub.publish = publish  # type: ignore[method-assign]


def stale_snapshot() -> None:
    """GET /v1/quotes and /v1/books keep answering the first tick and book of a key."""
    original = hub.Hub.event

    def event(self: hub.Hub, ev: Any) -> None:
        kept = dict(self.latest)
        original(self, ev)
        self.latest.update(kept)

    hub.Hub.event = event  # type: ignore[method-assign]


def failover_untracked() -> None:
    """The status never leaves failover 'primary', whichever broker serves."""
    hub.Hub._track = lambda self, ev: None  # type: ignore[method-assign]


def duplicate_on_takeover() -> None:
    """When the holder changes, a replica's reader delivers the last few entries it read before
    the takeover again (their event_ids a second time), as if the new holder had re-published them."""
    original = fleet.FleetBus._deliver
    recent: deque[fleet.Entry] = deque(maxlen=3)

    def deliver(self: fleet.FleetBus, entry_id: Any, fields: dict[Any, Any]) -> None:
        try:
            entry = fleet.Entry.parse(entry_id, fields)
        except (KeyError, ValueError):
            original(self, entry_id, fields)
            return
        if self._mark is not None and entry.mark[:2] != self._mark[:2]:
            for old in recent:
                self.hub.fan_out(old.event, old.id)
        original(self, entry_id, fields)
        recent.append(entry)

    fleet.FleetBus._deliver = deliver  # type: ignore[method-assign]


def cors_wildcard() -> None:
    """Every origin is allowed: CORS answers '*' (and the configured origin is forgotten)."""
    serve_cli.origins = lambda spec: ("*",)


def ws_origin_unchecked() -> None:
    """A stream handshake's Origin is never checked: any page's script may open the stream."""
    app._own_origin = lambda ws: str(ws.headers.get("origin", ""))


def frames_uncounted() -> None:
    """Frames received are counted on a registry nobody scrapes: /metrics shows 0 frames in."""
    original = hub.Metrics.__init__

    def init(self: hub.Metrics, spec: Any) -> None:
        original(self, spec)
        name = str(spec.clause("API-METRICS").mapping("metrics")["frames_in"]["name"])
        self.frames_in = Counter(
            name.removesuffix("_total"), "unscraped", ["broker"], registry=CollectorRegistry()
        )

    hub.Metrics.__init__ = init  # type: ignore[method-assign]


def change_unsigned() -> None:
    """A tick's change and change rate ignore the sign code: a fall shows as a rise."""
    original = enrich.Enricher.__init__

    def init(self: enrich.Enricher, spec: Any) -> None:
        original(self, spec)
        self._negative = set()

    enrich.Enricher.__init__ = init  # type: ignore[method-assign]


def timestamp_in_utc() -> None:
    """Timestamps are given in UTC, not in the exchange's local time."""
    original = enrich.Enricher.enrich

    def enrich_utc(self: enrich.Enricher, obj: dict[str, Any], *rest: Any) -> None:
        original(self, obj, *rest)
        field = self._field
        if isinstance(obj.get(field), str):
            obj[field] = datetime.fromisoformat(obj[field]).astimezone(UTC).isoformat()

    enrich.Enricher.enrich = enrich_utc  # type: ignore[method-assign]


def shutdown_code_normal() -> None:
    """SIGTERM closes the streams with 1000 (normal closure), not the spec's shutdown code."""

    def close_all(gw: app.Gateway) -> None:
        gw.shutting_down = True
        for sub in tuple(gw.hub.subscribers):
            sub.close(1000)

    serve_cli.close_all = close_all


def plain_errors() -> None:
    """Refusals answer plain text ('Not Found'), not an api-error JSON body."""

    def error(status: int, code: str, message: str, **extra: Any) -> Response:
        return PlainTextResponse(message, status_code=status)

    app.error = error  # type: ignore[assignment]


MUTANTS: dict[str, Callable[[], None]] = {
    "status-unguarded": status_unguarded,
    "key-in-log": key_in_log,
    "serial-fanout": serial_fanout,  # unbounded queue, one writer at a time
    "drop-event": drop_event,
    "reorder-events": reorder_events,
    "failover-untracked": failover_untracked,
    "stale-snapshot": stale_snapshot,
    "duplicate-on-takeover": duplicate_on_takeover,
    "cors-wildcard": cors_wildcard,
    "ws-origin-unchecked": ws_origin_unchecked,
    "frames-uncounted": frames_uncounted,
    "change-unsigned": change_unsigned,
    "timestamp-in-utc": timestamp_in_utc,
    "shutdown-code-normal": shutdown_code_normal,
    "plain-errors": plain_errors,
}


def main() -> int:
    """Patch the gateway, then run ``stockmon serve``."""
    if len(sys.argv) != 2 or sys.argv[1] not in MUTANTS:
        print(f"usage: gateway_mutant.py {{{','.join(MUTANTS)}}}", file=sys.stderr)
        return 2
    MUTANTS[sys.argv[1]]()
    return stockmon_main(["serve"])


if __name__ == "__main__":
    sys.exit(main())
