"""The mock-server base: listeners, live sessions, the batched writer, the control plane.

Every broker's mock is a :class:`MockServer` (``kis.mock.KisMock``, ``kiwoom.mock.KiwoomMock``):
REST on httptools, WebSocket on ``websockets``, protocol decisions in the dialect's sans-I/O core
and REST app. The asyncio shell owns sockets and time: spec time is ``trace.now() * time_scale`` for
every period, window and lifetime, read once per step and handed to the core with its input.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State

from stockmon.mockserver.config import CommonConfig, is_loopback
from stockmon.mockserver.core import Close, CoreBase, Send
from stockmon.mockserver.errors import MockConfigError, MockError
from stockmon.mockserver.faults import Faults
from stockmon.mockserver.httpserver import (
    HttpRequest,
    HttpResponse,
    HttpServer,
    RestAppBase,
    parse_body,
    traced_call,
)
from stockmon.mockserver.trace import Trace
from stockmon.mockserver.world import WorldBase

log = logging.getLogger(__name__)
CONTROL_PREFIX = "/_mock/"
# Status of a refused WebSocket handshake (refuse_connections fault). Non-normative.
REFUSED_STATUS = 503


class _Connection(ServerConnection):
    """websockets connection that reports RFC 6455 ping/pong frames to the session core."""

    mock_hook: Any = None

    def process_event(self, event: Any) -> None:
        if (
            isinstance(event, Frame)
            and self.mock_hook is not None
            and event.opcode in (Opcode.PONG, Opcode.PING)
        ):
            try:
                self.mock_hook(event.opcode, bytes(event.data))
            except Exception:  # the hook must never break the protocol machinery
                log.exception("ping/pong hook failed")
        super().process_event(event)


S = TypeVar("S", bound=CoreBase)


@dataclass
class _Live(Generic[S]):
    ws: ServerConnection
    session: S
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    closed_by: str | None = None


class MockServer(Generic[S]):
    """A running mock of one broker (its session cores are ``S``): ``async with SomeMock() as m``."""

    # The broker a scenario step names (``broker:``, default kis) to reach this mock.
    broker: ClassVar[str] = "kis"
    config: CommonConfig
    world: WorldBase
    rest: RestAppBase
    faults: Faults

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        self.loop: asyncio.AbstractEventLoop | None = None
        self.loop_thread_id: int | None = None
        self._http = HttpServer(self._handle_http, lambda: self.world.next_conn_id("rest"))
        self._ws_server: Server | None = None
        self._live: dict[str, _Live[S]] = {}
        self.rest_port = 0
        self.ws_port = 0
        self._scenario: Any = None
        self._started = False
        self._bg: set[asyncio.Future[None]] = set()
        self._control_token: str | None = None

    # --- what a dialect says ----------------------------------------------------------------
    def _new_session(self, conn: str, now: float) -> S:
        raise NotImplementedError

    def _refuse(self, ws: ServerConnection, request: Request) -> Response | None:
        """A dialect's own handshake refusal (e.g. a wrong path), recorded; None = accept."""
        return None

    def _started_fields(self) -> dict[str, Any]:
        return {}

    def _state(self) -> dict[str, Any]:
        """GET /_mock/state (a dialect adds its keys)."""
        f = self.world.faults
        return {
            "spec_version": self.config.spec_version,
            "time_scale": self.config.time_scale,
            "t_spec": self.now(),
            "rest_url": self.rest_url,
            "ws_url": self.ws_url,
            "open_sockets": self.open_sockets(),
            "market": self.world.sim.market_states(self.world.wall(self.now())),
            "sessions": self.sessions(),
            "tokens_issued": self.world.auth.issued_count,
            "faults": {
                "rest_failures": f.rest_failures,
                "throttle_override": f.throttle_override,
                "refuse_connections": f.refuse_connections,
                "stalled": self.world.stalled(self.now()),
            },
        }

    # --- public surface ------------------------------------------------------------------
    @property
    def app_key(self) -> str:
        """Test app key."""
        return self.world.app_key

    @property
    def app_secret(self) -> str:
        """Test app secret."""
        return self.world.app_secret

    @property
    def rest_url(self) -> str:
        """Base URL of the REST side."""
        return f"http://{_url_host(self.config.host)}:{self.rest_port}"

    @property
    def ws_url(self) -> str:
        """Base URL of the WebSocket side."""
        return f"ws://{_url_host(self.config.host)}:{self.ws_port}"

    def env(self) -> dict[str, str]:
        """The environment an implementation needs to use this mock (DESIGN §4)."""
        return {}

    def new_credentials(self) -> tuple[str, str]:
        """Register another app key/secret pair (e.g. for a second, independent session)."""
        return self.world.auth.new_credentials()

    def now(self) -> float:
        """Spec seconds since the (possibly shared) trace started."""
        return self.trace.now() * self.config.time_scale

    def open_sockets(self) -> int:
        """WebSocket sessions open right now."""
        return len(self._live)

    def sessions(self) -> list[dict[str, Any]]:
        """A summary of every open session (for /_mock/state)."""
        return [{"conn": conn, **live.session.summary()} for conn, live in self._live.items()]

    # --- lifecycle -------------------------------------------------------------------------
    async def __aenter__(self) -> Any:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Bind both listeners (on the running loop) and start this mock's scenario steps."""
        if self._started:
            return
        self.loop = asyncio.get_running_loop()
        self.loop_thread_id = threading.get_ident()
        scenario = None
        if self.config.scenario is not None:
            from stockmon.mockserver.scenario import load_scenario

            scenario = load_scenario(self.config.scenario)  # a bad file fails before binding
        logger = ".".join(
            ["stockmon.mockserver", *([self.world.broker] if self.world.broker else []), "ws"]
        )
        self._control_token = self.config.control_token or (
            None if is_loopback(self.config.host) else secrets.token_urlsafe(24)
        )
        self._http.request_timeout_s = self.config.rest_request_timeout_s
        self._http.idle_timeout_s = self.config.rest_idle_timeout_s
        try:
            self.rest_port = await self._http.start(self.config.host, self.config.rest_port)
            self._ws_server = await serve(
                self._handle_ws,
                self.config.host,
                self.config.ws_port,
                process_request=self._ws_process_request,
                ping_interval=None,  # keep-alive is the session core's ping, not library pings
                open_timeout=self.config.ws_open_timeout_s,  # half-open upgrades are dropped
                max_size=self.config.ws_max_size,
                compression=None,
                create_connection=_Connection,
                logger=logging.getLogger(logger),
            )
        except OSError as exc:
            await self._http.close()
            raise MockConfigError(
                f"cannot listen on {self.config.host}: {exc.strerror or exc}"
            ) from None
        self.ws_port = int(next(iter(self._ws_server.sockets)).getsockname()[1])
        self._started = True
        self.world.record(
            self.now(),
            "mock",
            self.world.mock_conn,
            "event",
            "mock_started",
            rest_url=self.rest_url,
            ws_url=self.ws_url,
            spec_version=self.config.spec_version,
            time_scale=self.config.time_scale,
            seed=self.config.seed,
            **self._started_fields(),
        )
        if scenario is not None:
            from stockmon.mockserver.scenario import ScenarioRunner

            self._scenario = ScenarioRunner(self, scenario, broker=self.broker)
            self._scenario.start()

    async def stop(self) -> None:
        """Close every session and both listeners."""
        if not self._started:
            return
        self._started = False
        if self._scenario is not None:
            self._scenario.stop()
        if self._ws_server is not None:
            self._ws_server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws_server.wait_closed(), 5)
        await self._http.close()
        self.world.record(self.now(), "mock", self.world.mock_conn, "event", "mock_stopped")

    # --- fault hooks (loop thread) -------------------------------------------------------
    def _real_delay(self, spec_deadline: float) -> float:
        return (spec_deadline - self.now()) / self.config.time_scale

    def wake_all(self) -> None:
        """Let every session writer recompute its timer (after a fault changed state)."""
        for live in self._live.values():
            live.wake.set()

    def drop(self, conn: str | None) -> int:
        """Abort the TCP connection of one session or all."""
        n = 0
        for c, live in list(self._live.items()):
            if conn is None or c == conn:
                live.closed_by = "abrupt"
                live.ws.transport.abort()
                n += 1
        return n

    def close_sessions(self, code: int, reason: str, conn: str | None) -> int:
        """Close one session or all with a close frame; the cores answer nothing more."""
        n = 0
        for c, live in list(self._live.items()):
            if conn is None or c == conn:
                live.closed_by = "server"
                live.session.mark_closing()
                task = asyncio.ensure_future(live.ws.close(code, reason))
                self._bg.add(task)
                task.add_done_callback(self._bg.discard)
                n += 1
        return n

    def ping_all(self) -> int:
        """Queue a server ping on every session."""
        now = self.now()
        for live in self._live.values():
            live.session.server_ping_now(now)
            live.wake.set()
        return len(self._live)

    # --- WebSocket shell -------------------------------------------------------------------
    def _ws_process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        if self.world.faults.refuse_connections:
            self._record_refused(ws, request, REFUSED_STATUS)
            return ws.respond(REFUSED_STATUS, "connections refused (mock fault)\n")
        return self._refuse(ws, request)

    def _record_refused(self, ws: ServerConnection, request: Request, status: int) -> None:
        self.world.record(
            self.now(),
            "ws",
            self.world.mock_conn,
            "event",
            "ws_refused",
            path=request.path,
            peer=_peer(ws),
            status=status,
        )

    async def _handle_ws(self, ws: ServerConnection) -> None:
        world = self.world
        conn = world.next_conn_id("ws")
        now = self.now()
        world.emit("ws_open", conn=conn)
        session = self._new_session(conn, now)
        live = _Live(ws, session)
        self._live[conn] = live
        path = ws.request.path if ws.request is not None else ""
        world.record(now, "ws", conn, "event", "ws_open", path=path, peer=_peer(ws))

        def hook(opcode: Opcode, data: bytes) -> None:
            if opcode is Opcode.PONG:
                session.receive_pong(data, self.now())
            else:
                session.receive_ping(data, self.now())
            live.wake.set()

        if isinstance(ws, _Connection):
            ws.mock_hook = hook
        writer = asyncio.create_task(self._writer(live))
        try:
            while True:
                msg = await ws.recv()
                now = self.now()
                if isinstance(msg, str):
                    session.receive_text(msg, now)
                else:
                    session.receive_binary(bytes(msg), now)
                live.wake.set()
        except ConnectionClosed:
            pass
        except Exception:  # never let one session's surprise reach the server
            log.exception("%s session %s failed", self.broker, conn)
            live.closed_by = live.closed_by or "server"
            ws.transport.abort()
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
            self._live.pop(conn, None)
            by, code, reason = close_summary(ws, live.closed_by)
            now = self.now()
            world.record(now, "ws", conn, "event", "ws_close", code=code, reason=reason, by=by)
            session.connection_lost(now, abrupt=by == "abrupt")
            world.emit("ws_close", conn=conn, by=by)

    async def _writer(self, live: _Live[S]) -> None:
        session, ws, conn = live.session, live.ws, live.session.conn
        try:
            while True:
                deadline = session.get_timer()
                if deadline is not None:
                    delay = self._real_delay(deadline)
                    if delay > 0:
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(delay):
                                await live.wake.wait()
                else:
                    await live.wake.wait()
                live.wake.clear()
                now = self.now()
                deadline = session.get_timer()
                if deadline is not None and now >= deadline:
                    session.handle_timer(now)
                items = session.data_to_send()
                if items and not await self._send_batch(ws, conn, items, now):
                    return
                for item in items:
                    if isinstance(item, Close):
                        if item.abrupt:
                            live.closed_by = "abrupt"
                            ws.transport.abort()
                        else:
                            live.closed_by = "server"
                            await ws.close(item.code, item.reason)
                        return
                if deadline is not None and now >= deadline:
                    await asyncio.sleep(0)  # let the reader and other sessions run
        except ConnectionClosed:
            return

    async def _send_batch(
        self, ws: ServerConnection, conn: str, items: list[Send | Close], now: float
    ) -> bool:
        """Write the text frames of a batch with one socket write; False if the socket closed.

        Frames are encoded and flushed once, with flow control (drain), instead of one
        ``await ws.send`` per frame: at tens of thousands of frames per second the per-call
        overhead would dominate. The frames are recorded (at the step's ``now``, one trace call
        for the batch) before they are written, so no reaction of the client can precede them.
        """
        sends: list[Send] = []
        for item in items:
            if not isinstance(item, Send):
                break  # a Close ends the batch
            sends.append(item)
        if not sends:
            return True
        proto = ws.protocol
        if proto.state is not State.OPEN:
            return False
        self.trace.record_texts_out(now, "ws", conn, sends, self.world.broker)
        if proto.extensions or proto.debug or proto.expect_continuation_frame:
            for send in sends:
                proto.send_text(send.text.encode())
            chunks = proto.data_to_send()
        else:
            chunks = proto.data_to_send()  # anything the protocol queued (a pong) goes first
            chunks.extend(text_frames(sends))
        try:
            transport = ws.transport
            transport.write(b"".join(chunks))
            if not all(chunks):  # an end-of-stream marker (as websockets' send_data does)
                if transport.can_write_eof():
                    transport.write_eof()
                else:
                    transport.close()
            await ws.drain()
        except Exception:
            return False
        return True

    # --- REST shell ------------------------------------------------------------------------
    async def _handle_http(self, req: HttpRequest) -> HttpResponse:
        if req.path.startswith(CONTROL_PREFIX):
            return self._control(req)
        return await traced_call(
            self.world.record, self.rest.handle, req, self.now, self.config.time_scale
        )

    @property
    def control_token(self) -> str | None:
        """The bearer token /_mock/* requires (None on loopback unless configured)."""
        return self._control_token

    def _control(self, req: HttpRequest) -> HttpResponse:
        token = self._control_token
        if token is not None and not hmac.compare_digest(
            req.headers.get("authorization", "").encode(), f"Bearer {token}".encode()
        ):
            return HttpResponse(
                401,
                {
                    "error": "the control plane needs 'authorization: Bearer <token>' (printed at start)"
                },
            )
        sub = req.path[len(CONTROL_PREFIX) :]
        if req.method == "GET" and sub == "trace":
            since = req.query.get("since", "0")
            try:
                since_seq = int(since)
            except ValueError:
                return HttpResponse(400, {"error": f"since={since!r} is not an integer"})
            return HttpResponse(
                200,
                None,
                chunks=self.trace.jsonl_chunks(since_seq),
                content_type="application/x-ndjson; charset=utf-8",
            )
        if req.method == "GET" and sub == "state":
            return HttpResponse(200, self._state())
        if req.method == "GET" and sub == "env":
            return HttpResponse(200, self.env())
        if req.method == "POST" and sub.startswith("faults/"):
            name = sub[len("faults/") :]
            parsed, _ = parse_body(req.body)
            if parsed is None:
                parsed = {}
            if not isinstance(parsed, dict):
                return HttpResponse(400, {"error": "the body must be a JSON object of parameters"})
            try:
                result = self.faults.apply(name, parsed)
            except MockError as exc:
                status = 404 if "unknown fault" in str(exc) else 400
                return HttpResponse(status, {"error": str(exc)})
            return HttpResponse(200, {"ok": True, "fault": name, "result": _jsonable(result)})
        return HttpResponse(404, {"error": f"no control endpoint {req.method} {req.path}"})


# Server-to-client text frame headers (FIN + text opcode, unmasked) by payload length < 2**16.
_TEXT_HEADS: dict[int, bytes] = {}


def text_frames(sends: list[Send]) -> list[bytes]:
    """RFC 6455 text frames of a server without extensions (unfragmented, unmasked): header and
    payload per frame, as websockets' Frame.serialize writes them, without a Frame per frame."""
    heads = _TEXT_HEADS
    out: list[bytes] = []
    for send in sends:
        data = send.text.encode()
        n = len(data)
        head = heads.get(n)
        if head is None:
            if n < 126:
                head = bytes((0x81, n))
            elif n < 65536:
                head = b"\x81\x7e" + n.to_bytes(2, "big")
            else:
                head = b"\x81\x7f" + n.to_bytes(8, "big")
            if n < 65536:
                heads[n] = head
        out.append(head)
        out.append(data)
    return out


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return str(value)
    return value


def close_summary(ws: ServerConnection, closed_by: str | None) -> tuple[str, int | None, str]:
    """Who ended a WebSocket session ("client", "server" or "abrupt"), with the close code and reason.

    ``closed_by`` is what the mock itself decided (a fault, a policy close); otherwise the close
    frames exchanged tell, and no close frame at all means the TCP connection just went away.
    """
    proto = ws.protocol
    by = closed_by
    if by is None:
        if proto.close_rcvd is not None and proto.close_rcvd_then_sent is not False:
            by = "client"
        elif proto.close_sent is not None:
            by = "server"
        else:
            by = "abrupt"
    rcvd, sent = proto.close_rcvd, proto.close_sent
    frame = rcvd if by == "client" else sent if sent is not None else rcvd
    if frame is None or by == "abrupt":
        return by, None, ""
    return by, frame.code, frame.reason


def _peer(ws: ServerConnection) -> str:
    addr = ws.remote_address
    if isinstance(addr, tuple) and len(addr) >= 2:
        return f"{addr[0]}:{addr[1]}"
    return str(addr)


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", ""):  # noqa: S104 - only for printing a reachable URL
        return "127.0.0.1"
    if host == "::":  # IPv6 any-address: an IPv6-only socket, reachable at the IPv6 loopback
        return "[::1]"
    return f"[{host}]" if ":" in host else host
