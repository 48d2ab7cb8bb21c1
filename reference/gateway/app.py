"""The internal API of ``stockmon serve`` as a Starlette app (clauses API-SERVICE ... API-METRICS).

Every status code, path, close code and limit is read from the spec's API clauses when the app is
built. The key (VITE_API_KEY) is compared in constant time and never written anywhere: REST callers
send ``authorization: Bearer <key>``; a browser's WebSocket offers a single-use ticket from
``POST /v1/stream/ticket`` as a subprotocol, so the key stays out of URLs and logs (API-AUTH).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Protocol

from prometheus_client import generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from stockmon import schemas
from stockmon.redaction import Secret
from stockmon.reference.fleet.token_manager import STORE_ERRORS
from stockmon.reference.gateway.fleet import FleetBus
from stockmon.reference.gateway.hub import Hub, Subscriber
from stockmon.reference.lifecycle import ConnState
from stockmon.settings import Subscription
from stockmon.spec import Spec

Handler = Callable[[Request], Awaitable[Response]]


class Ingest(Protocol):
    """What the API needs of the running client (a StreamClient or the failover runner)."""

    def stop(self) -> None:
        """Stop streaming."""
        ...


@dataclass
class Gateway:
    """Everything the routes share: the spec, the hub, the key, the running client."""

    spec: Spec
    hub: Hub
    key: Secret | None
    origins: tuple[str, ...]
    subscriptions: list[Subscription]
    broker: str
    failover: bool
    monotonic: Callable[[], float]  # real seconds: ticket lifetimes
    ingest_clock: Callable[[], float]  # the client's clock: heartbeat and inbound ages
    runner: Ingest | None = None
    # spec seconds -> real seconds of the ingest clock (the page's real-time row ages)
    time_scale: float = 1.0
    tickets: dict[str, float] = field(default_factory=dict)
    shutting_down: bool = False
    fleet: FleetBus | None = None  # with REDIS_URL (API-FLEET)
    _reconnects_counted: int = 0
    _built_with: tuple[Subscription, ...] = ()
    _synced: tuple[object, set[Subscription]] | None = None

    @property
    def key_patterns(self) -> dict[str, str]:
        """Every market's key pattern, as an unknown key's answer states them."""
        return {m: p.pattern for m, p in self.spec.key_patterns.items()}

    def __post_init__(self) -> None:
        self._built_with = tuple(self.subscriptions)  # what the ingest's client starts from

    # ------------------------------------------------------------------ fleet subscriptions

    def apply_subscriptions(self, subs: list[Subscription]) -> None:
        """Adopt the fleet's subscription set and tell the running client the difference."""
        self.subscriptions[:] = subs
        self.sync_client()

    def sync_client(self) -> None:
        """Subscribe/unsubscribe the client streaming now so it wants exactly ``subscriptions``
        (only the holder's socket is open, so a key reaches the broker once, through it). The
        runner is told, not its active client: a failover runner keeps the set for the next one."""
        client: Any = self.runner
        if client is None:
            return
        if self._synced is None or self._synced[0] is not client:
            self._synced = (client, set(self._built_with))
        told = self._synced[1]
        for sub in self.subscriptions:
            if sub not in told and hasattr(client, "subscribe"):
                client.subscribe(sub)
                told.add(sub)
        for sub in [s for s in told if s not in self.subscriptions]:
            if hasattr(client, "unsubscribe"):
                client.unsubscribe(sub)
            told.discard(sub)

    # ------------------------------------------------------------------ auth

    def authorized(self, request: Request) -> bool:
        """The request carries ``<scheme> <key>`` (constant-time; no key configured: never)."""
        auth = self.spec.clause("API-AUTH")
        if self.key is None:
            return False
        sent = request.headers.get(auth.string("rest_header"), "")
        want = f"{auth.string('rest_scheme')} {self.key.reveal()}"
        return hmac.compare_digest(sent.encode(), want.encode())

    def issue_ticket(self) -> tuple[str, float]:
        """A fresh single-use ticket and its lifetime in seconds."""
        auth = self.spec.clause("API-AUTH")
        ttl = auth.number("ticket_ttl_s")
        now = self.monotonic()
        self.tickets = {t: exp for t, exp in self.tickets.items() if exp > now}
        ticket = secrets.token_urlsafe(auth.integer("ticket_min_bytes"))
        self.tickets[ticket] = now + ttl
        return ticket, ttl

    def redeem(self, offered: str) -> bool:
        """True once for a live ticket; every stored ticket is compared in constant time."""
        now = self.monotonic()
        found = None
        for ticket, expires in self.tickets.items():
            if hmac.compare_digest(ticket.encode(), offered.encode()) and expires > now:
                found = ticket
        if found is not None and self.spec.clause("API-AUTH").flag("ticket_single_use"):
            del self.tickets[found]
        return found is not None

    # ------------------------------------------------------------------ status

    def client(self) -> Any:
        """The StreamClient streaming now: the runner itself, or the failover runner's active one."""
        active = getattr(self.runner, "active", None)
        return active if active is not None else self.runner

    def socket_state(self) -> str:
        """connecting, open, closed or backoff (API-STATUS socket_states)."""
        connecting, open_, closed, backoff = self.spec.clause("API-STATUS").strings("socket_states")
        core = getattr(self.client(), "core", None)
        state = getattr(core, "state", None)
        if state is ConnState.OPEN:
            return open_
        if state in (ConnState.CONNECTING, ConnState.LOGGING_IN):
            return connecting
        last = self.hub.state.last_status
        if core is None and last.get("state") in ("connected", "subscribed"):
            return open_
        if last.get("backoff_s") is not None:
            return backoff
        return closed

    def reconnects(self) -> int:
        """Sockets opened after the first one."""
        opened = int(getattr(self.client(), "sockets_opened", 0))
        count = max(0, opened - 1)
        if count > self._reconnects_counted:
            self.hub.metrics.reconnects.labels(self.broker_now()).inc(
                count - self._reconnects_counted
            )
            self._reconnects_counted = count
        return count

    def broker_now(self) -> str:
        """The broker whose events arrive now (the first one before any event)."""
        return str(self.hub.state.broker or self.broker)

    def status(self) -> dict[str, Any]:
        """The API-STATUS body."""
        off, primary, *_ = self.spec.clause("API-STATUS").strings("failover_states")
        core = getattr(self.client(), "core", None)
        now = self.ingest_clock()

        def age(name: str) -> float | None:
            at = getattr(core, name, None)
            if not isinstance(at, int | float) or at <= 0:
                return None
            return round(max(0.0, now - at), 3)

        base = {
            "broker": self.broker_now(),
            "socket": self.socket_state(),
            "last_heartbeat_age_s": age("last_heartbeat"),
            "last_inbound_age_s": age("last_inbound"),
            "reconnects": self.reconnects(),
            "token_expires_at": self.hub.state.token_expires_at,
            "failover": (self.hub.state.failover or primary) if self.failover else off,
            "subscriptions": [{"tr_id": s.tr_id, "key": s.tr_key} for s in self.subscriptions],
            "subscribers": len(self.hub.subscribers),
            "spec": self.spec.version,
        }
        return base

    async def fleet_status(self) -> dict[str, Any]:
        """API-STATUS: this replica's, or the fleet's with REDIS_URL."""
        base = self.status()
        return base if self.fleet is None else await self.fleet.status(base)

    def ingested_keys(self) -> list[str]:
        """Keys of the broker subscriptions, each once, in order."""
        return list(dict.fromkeys(s.tr_key for s in self.subscriptions))


def error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    """An api-error answer (API-SERVICE error_fields)."""
    return JSONResponse({"error": code, "message": message, **extra}, status_code=status)


def build_app(gw: Gateway) -> Starlette:
    """The Starlette app of the internal API, every value from the spec."""
    spec = gw.spec
    auth = spec.clause("API-AUTH")
    cors = spec.clause("API-CORS")
    snap = spec.clause("API-SNAPSHOT")
    status_c = spec.clause("API-STATUS")
    subs_c = spec.clause("API-SUBSCRIPTIONS")
    health = spec.clause("API-HEALTH")
    metrics_c = spec.clause("API-METRICS")
    stream_c = spec.clause("API-STREAM")
    limits = spec.clause(subs_c.string("limit_clause"))
    max_subs = limits.integer(subs_c.string("limit_value"))

    def guarded(handler: Handler) -> Handler:
        async def checked(request: Request) -> Response:
            if not gw.authorized(request):
                return error(
                    auth.integer("rest_status"),
                    auth.string("ws_close_reason"),
                    f"missing or wrong key ({auth.string('rest_header')}: "
                    f"{auth.string('rest_scheme')} <{auth.string('key_variable')}>)",
                )
            return await handler(request)

        return checked

    def unknown(key: str, what: str) -> JSONResponse:
        return error(
            snap.integer("unknown_key_status"),
            snap.string("unknown_key_error"),
            f"no {what} for this key",
            key=key,
            key_patterns=gw.key_patterns,
        )

    def latest_of(event_type: str, field_name: str) -> Handler:
        """GET one key's latest event of a type (API-SNAPSHOT: quotes are ticks, books books)."""

        async def answer(request: Request) -> Response:
            key = request.path_params["key"]
            if gw.fleet is not None:
                latest = await gw.fleet.latest(event_type, key)
            else:
                latest = gw.hub.latest.get((event_type, key))
            if latest is None:
                return unknown(key, field_name)
            return JSONResponse(
                {"key": key, field_name: latest.event, "received_at": latest.received_at}
            )

        return answer

    async def status(request: Request) -> Response:
        return JSONResponse(await gw.fleet_status())

    def listing() -> dict[str, Any]:
        return {
            "subscriptions": [{"tr_id": s.tr_id, "key": s.tr_key} for s in gw.subscriptions],
            "limit": max_subs,
            "clause": limits.id,
        }

    def invalid(message: str) -> JSONResponse:
        return error(subs_c.integer("invalid_status"), "invalid_subscription", message)

    def parse_item(item: Any) -> Subscription | JSONResponse:
        fields = subs_c.strings("item_fields")
        if not isinstance(item, dict) or set(item) != set(fields):
            return invalid(f"expected an object with exactly {', '.join(fields)}")
        tr_id, key = (item[f] for f in fields)
        if not isinstance(tr_id, str) or not isinstance(key, str):
            return invalid(f"{', '.join(fields)} are strings")
        layout = spec.layouts.get(tr_id) or spec.kiwoom_layouts.get(tr_id)
        if layout is None:
            return invalid(f"tr_id {tr_id!r} is not a layout of spec {spec.version}")
        if spec.key_match(key, layout.market) is None:
            pattern = gw.key_patterns[layout.market]
            return invalid(f"key does not match the {layout.market} pattern {pattern}")
        return Subscription(tr_id, key)

    def changed(method: str, sub: Subscription, status_value: str) -> Response:
        """Tell the runner: the client streaming now, and (failover) the set the next one starts from."""
        live = getattr(gw.runner, method, None)
        if live is not None:
            live(sub)
        return JSONResponse(listing(), status_code=subs_c.integer(status_value))

    async def list_subs(request: Request) -> Response:
        return JSONResponse(listing())

    fleet_c = spec.clause("API-FLEET") if spec.has("API-FLEET") else None

    def fleet_down() -> JSONResponse:
        assert fleet_c is not None
        return error(
            fleet_c.integer("unavailable_status"),
            fleet_c.string("unavailable_error"),
            "the fleet's Redis is unreachable: the subscription set cannot change now",
        )

    def over_limit() -> JSONResponse:
        return error(
            subs_c.integer("over_limit_status"),
            subs_c.string("over_limit_error"),
            f"at most {max_subs} broker subscriptions per session ({limits.id})",
            clause=limits.id,
            limit=max_subs,
        )

    async def add_sub(request: Request) -> Response:
        try:
            item = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            return invalid("the body is not JSON")
        sub = parse_item(item)
        if isinstance(sub, JSONResponse):
            return sub
        if gw.fleet is not None:
            try:
                added = await gw.fleet.add(sub, max_subs)
            except STORE_ERRORS:
                return fleet_down()
            if added < 0:
                return over_limit()
            status_name = "created_status" if added else "existing_status"
            return JSONResponse(listing(), status_code=subs_c.integer(status_name))
        if sub in gw.subscriptions:
            return JSONResponse(listing(), status_code=subs_c.integer("existing_status"))
        if len(gw.subscriptions) >= max_subs:
            return over_limit()
        gw.subscriptions.append(sub)
        return changed("subscribe", sub, "created_status")

    async def delete_sub(request: Request) -> Response:
        names = subs_c.strings("delete_params")
        sub = parse_item({n: request.query_params.get(n) for n in names})
        if isinstance(sub, JSONResponse):
            return sub
        if gw.fleet is not None:
            try:
                removed = await gw.fleet.remove(sub)
            except STORE_ERRORS:
                return fleet_down()
            if not removed:
                return error(
                    subs_c.integer("not_found_status"), "not_found", "no such subscription"
                )
            return JSONResponse(listing(), status_code=subs_c.integer("deleted_status"))
        if sub not in gw.subscriptions:
            return error(subs_c.integer("not_found_status"), "not_found", "no such subscription")
        gw.subscriptions.remove(sub)
        return changed("unsubscribe", sub, "deleted_status")

    # one route per path, so a 405 lists every method of it in Allow (RFC 9110)
    by_method: dict[str, Handler] = dict(
        zip(subs_c.strings("methods"), (list_subs, add_sub, delete_sub), strict=True)
    )

    async def subscriptions(request: Request) -> Response:
        return await by_method[request.method](request)

    async def ticket(request: Request) -> Response:
        value, ttl = gw.issue_ticket()
        return JSONResponse(
            {"ticket": value, "expires_in_s": int(ttl)}, status_code=auth.integer("ticket_status")
        )

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"}, status_code=health.integer("ok_status"))

    async def readyz(request: Request) -> Response:
        socket_open, fleet_bus = health.strings("ready_when")
        bus_ok = gw.fleet is not None and gw.fleet.ok
        checks = {socket_open: gw.socket_state() == "open", fleet_bus: bus_ok}
        # in a fleet every replica's browsers are fed from the bus, the holder's too
        ready = (bus_ok if gw.fleet is not None else checks[socket_open]) and not gw.shutting_down
        return JSONResponse(
            {"status": "ready" if ready else "not_ready", "checks": checks},
            status_code=health.integer("ok_status" if ready else "not_ready_status"),
        )

    async def metrics(request: Request) -> Response:
        gw.reconnects()
        return Response(
            generate_latest(gw.hub.metrics.registry),
            media_type=metrics_c.string("content_type"),
        )

    page_config = {
        "header": auth.string("rest_header"),
        "scheme": auth.string("rest_scheme"),
        "ticket_path": auth.string("ticket_path"),
        "subprotocol": auth.string("ws_subprotocol"),
        "ticket_prefix": auth.string("ws_ticket_subprotocol_prefix"),
        "stream_path": stream_c.string("path"),
        "status_path": status_c.string("path"),
        "subscriptions_path": subs_c.string("path"),
        "tr_ids": sorted(spec.layouts),
        # a live socket has an inbound frame at least every ping interval (the broker reflects
        # each ping, KA-HEARTBEAT): longer without one is a stall, shown as such
        "stall_after_s": spec.clause("KA-PING").number("interval_s"),
        "row_stale_after_real_s": spec.clause("KA-PING").number("interval_s") / gw.time_scale,
    }
    page = (
        resources.files("stockmon.reference.gateway")
        .joinpath("static/index.html")
        .read_text(encoding="utf-8")
        .replace("__STOCKMON_CONFIG__", json.dumps(page_config).replace("<", "\\u003c"))
    )

    async def dashboard(request: Request) -> Response:
        return HTMLResponse(page)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        answer = error(exc.status_code, code, str(exc.detail))
        answer.headers.update(exc.headers or {})  # e.g. Allow on a 405 (RFC 9110)
        return answer

    routes = [
        Route("/", dashboard),
        Route(snap.string("quote_path"), guarded(latest_of("tick", "tick"))),
        Route(snap.string("book_path"), guarded(latest_of("orderbook", "book"))),
        Route(status_c.string("path"), guarded(status)),
        Route(subs_c.string("path"), guarded(subscriptions), methods=list(by_method)),
        Route(auth.string("ticket_path"), guarded(ticket), methods=[auth.string("ticket_method")]),
        Route(health.string("liveness_path"), healthz),
        Route(health.string("readiness_path"), readyz),
        Route(metrics_c.string("path"), guarded(metrics)),
        WebSocketRoute(stream_c.string("path"), StreamEndpoint(gw).handle),
    ]
    middleware = [
        Middleware(
            CORSMiddleware,
            allow_origins=list(gw.origins),
            allow_methods=list(cors.strings("allow_methods")),
            allow_headers=list(cors.strings("allow_headers")),
            allow_credentials=cors.flag("allow_credentials"),
            max_age=cors.integer("max_age_s"),
        )
    ]
    return Starlette(
        routes=routes, middleware=middleware, exception_handlers={HTTPException: http_error}
    )


class StreamEndpoint:
    """WebSocket /v1/stream: welcome, subscribe/unsubscribe, snapshots, live events (API-STREAM)."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        spec = gw.spec
        self.auth = spec.clause("API-AUTH")
        self.cors = spec.clause("API-CORS")
        self.stream = spec.clause("API-STREAM")
        self.bp = spec.clause("API-BACKPRESSURE")
        self.max_bytes = self.stream.integer("max_message_bytes")
        self.codes = self.stream.mapping("error_codes")

    async def handle(self, ws: WebSocket) -> None:
        """One browser connection, from handshake to close."""
        protocol = self.auth.string("ws_subprotocol")
        prefix = self.auth.string("ws_ticket_subprotocol_prefix")
        offered: list[str] = list(ws.scope.get("subprotocols") or [])
        await ws.accept(subprotocol=protocol if protocol in offered else None)
        origin = ws.headers.get("origin")
        if (
            self.cors.flag("ws_origin_checked")
            and origin is not None
            and origin not in self.gw.origins
            and origin != _own_origin(ws)  # the dashboard served from here is not cross-origin
        ):
            await ws.close(
                self.cors.integer("ws_origin_close_code"),
                self.cors.string("ws_origin_close_reason"),
            )
            return
        tickets = [p[len(prefix) :] for p in offered if p.startswith(prefix)]
        if (
            self.gw.key is None
            or protocol not in offered
            or len(tickets) != 1
            or not self.gw.redeem(tickets[0])
        ):
            await ws.close(self.auth.integer("ws_close_code"), self.auth.string("ws_close_reason"))
            return
        sub = self.gw.hub.attach()
        try:
            await self._serve(ws, sub)
        finally:
            self.gw.hub.detach(sub)

    async def _serve(self, ws: WebSocket, sub: Subscriber) -> None:
        limits = {
            "max_message_bytes": self.max_bytes,
            "max_keys_per_message": self.stream.integer("max_keys_per_message"),
            "queue_max_messages": self.bp.integer("queue_max_messages"),
            "behind_max_s": self.bp.integer("behind_max_s"),
        }
        sub.put(
            {
                "type": "welcome",
                "spec": self.gw.spec.version,
                "keys": self.gw.ingested_keys(),
                "limits": limits,
            }
        )
        reader = asyncio.create_task(self._read(ws, sub))
        writer = asyncio.create_task(self._write(ws, sub))
        _, pending = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if sub.closed_code is not None:
            reason = {
                self.bp.integer("close_code"): self.bp.string("close_reason"),
            }.get(sub.closed_code, "")
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(sub.closed_code, reason), timeout=1.0)

    async def _write(self, ws: WebSocket, sub: Subscriber) -> None:
        while sub.closed_code is None:
            pending = sub.take()
            if pending is None:
                await sub.wake.wait()
                continue
            await ws.send_text(self.gw.hub.encode(pending, sub.next_seq()))

    async def _read(self, ws: WebSocket, sub: Subscriber) -> None:
        while sub.closed_code is None:
            try:
                message = await ws.receive()
            except WebSocketDisconnect:
                return
            if message["type"] == "websocket.disconnect":
                return
            raw = message.get("bytes") or (message.get("text") or "").encode()
            if len(raw) > self.max_bytes:
                sub.close(self.stream.integer("oversize_close_code"))
                return
            await self._handle(sub, raw)

    async def _handle(self, sub: Subscriber, raw: bytes) -> None:
        try:
            request = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            request = None
        problems = schemas.errors("api-stream-request", request) if request is not None else ["x"]
        if problems:
            sub.put(
                {
                    "type": "error",
                    "code": self.codes["bad_message"],
                    "message": 'expected {"type": "subscribe"|"unsubscribe", "keys": [...]}',
                }
            )
            return
        op, keys = request["type"], list(request["keys"])
        echo = {"id": request["id"]} if "id" in request else {}
        bad = [k for k in keys if self.gw.spec.market_of(k) is None]
        missing = [
            k
            for k in keys
            if k not in bad and k not in self.gw.ingested_keys() and op != "unsubscribe"
        ]
        refusals = (
            ("unknown_key", "no market's key pattern matches", bad, self.gw.key_patterns),
            (
                "not_ingested",
                "not among the broker subscriptions (POST /v1/subscriptions)",
                missing,
                None,
            ),
        )
        for name, message, refused, patterns in refusals:
            if refused:
                extra = {"key_patterns": patterns} if patterns else {}
                sub.put(
                    {
                        "type": "error",
                        "code": self.codes[name],
                        "message": message,
                        "keys": refused,
                        **extra,
                        **echo,
                    }
                )
        good = [k for k in keys if k not in bad and k not in missing]
        fleet = self.gw.fleet
        after = request.get("after") if op == "subscribe" else None
        if fleet is not None and isinstance(after, str) and not sub.keys:
            new = [k for k in good if k not in sub.keys]
            sub.put({"type": "ack", "op": op, "keys": good, **echo})
            try:
                if await fleet.replay(sub, after, new):
                    return  # what followed `after`, then live: no snapshot needed
            except STORE_ERRORS:
                pass
            sub.put(self.gw.hub.body(fleet.unresumable(after), None))
            sub.keys.update(new)
        else:
            new = self._apply(sub, op, good)
            sub.put({"type": "ack", "op": op, "keys": good, **echo})
        for key in new:
            tick, book = self.gw.hub.snapshot(key)
            sub.put(
                {
                    "type": "snapshot",
                    "key": key,
                    "quote": tick.event if tick else None,
                    "book": book.event if book else None,
                }
            )

    @staticmethod
    def _apply(sub: Subscriber, op: str, keys: Iterable[str]) -> list[str]:
        if op == "unsubscribe":
            sub.keys.difference_update(keys)
            return []
        new = [k for k in keys if k not in sub.keys]
        sub.keys.update(new)
        return new


def _own_origin(ws: WebSocket) -> str:
    scheme = "https" if ws.url.scheme == "wss" else "http"
    return f"{scheme}://{ws.headers.get('host', '')}"


def close_all(gw: Gateway) -> None:
    """Close every stream connection with the shutdown code (SIGTERM, API-SERVICE)."""
    gw.shutting_down = True
    code = gw.spec.clause("API-SERVICE").integer("shutdown_close_code")
    for sub in tuple(gw.hub.subscribers):
        sub.close(code)
