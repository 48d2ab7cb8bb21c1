"""KiwoomMock: the running Kiwoom mock (REST on h11, WebSocket on ``websockets``), and its thread.

Protocol decisions live in the sans-I/O parts (:mod:`~stockmon.mockserver.kiwoom_session`,
:mod:`~stockmon.mockserver.kiwoom_rest`); this module owns sockets and time. Spec time is
``trace.now() * time_scale``.

Alone (``KiwoomMock(config)``) it has its own trace and simulator. Beside a KIS mock
(``KiwoomMock(config, beside=kis_mock)``, started on the same event loop) it shares that mock's
trace, market simulator and wall clock: one trace then orders every socket of both brokers (the
evidence for "never two sockets", WS-SINGLE-SOCKET), and a KR code trades at the same prices on both.
Kiwoom records carry ``broker: "kiwoom"`` and conn ids ``kiwoom-ws-N`` / ``kiwoom-rest-N``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from stockmon.mockserver.errors import MockConfigError, MockError
from stockmon.mockserver.httpserver import HttpServer
from stockmon.mockserver.kiwoom_config import KiwoomMockConfig
from stockmon.mockserver.kiwoom_faults import MOCK_CONN, KiwoomFaults
from stockmon.mockserver.kiwoom_market import KiwoomMarket
from stockmon.mockserver.kiwoom_profile import KiwoomProfile, load_kiwoom_profile
from stockmon.mockserver.kiwoom_rest import KiwoomRestApp
from stockmon.mockserver.kiwoom_session import KiwoomServerSession
from stockmon.mockserver.kiwoom_state import KiwoomWorld
from stockmon.mockserver.profile import load_profile
from stockmon.mockserver.rest import HttpRequest, HttpResponse, parse_body, traced_call
from stockmon.mockserver.server import (
    CONTROL_PREFIX,
    _jsonable,
    _peer,
    _url_host,
    close_summary,
)
from stockmon.mockserver.session import Close, Send
from stockmon.mockserver.simulator import MarketSimulator
from stockmon.mockserver.threaded import BackgroundMock
from stockmon.mockserver.trace import Trace

if TYPE_CHECKING:
    from stockmon.mockserver.server import KisMock

log = logging.getLogger(__name__)
# Status of a refused WebSocket handshake (refuse_connections fault, wrong path). Non-normative.
REFUSED_STATUS = 503
NOT_FOUND_STATUS = 404


@dataclass
class _Live:
    ws: ServerConnection
    session: KiwoomServerSession
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    closed_by: str | None = None


class KiwoomMock:
    """A running Kiwoom mock: ``async with KiwoomMock(config) as mock: ...``."""

    def __init__(
        self,
        config: KiwoomMockConfig | None = None,
        *,
        beside: KisMock | None = None,
        **overrides: Any,
    ) -> None:
        config = config or KiwoomMockConfig()
        if overrides:
            config = replace(config, **overrides)
        self.config = config
        self.profile: KiwoomProfile = load_kiwoom_profile(config.spec_version)
        if beside is not None:
            if beside.config.time_scale != config.time_scale:
                raise MockConfigError(
                    f"the Kiwoom mock's time_scale ({config.time_scale:g}) must equal the KIS "
                    f"mock's ({beside.config.time_scale:g}) when they share a trace"
                )
            trace, sim, wall0 = beside.trace, beside.world.sim, beside.world.wall0
        else:
            trace = Trace(config.time_scale, config.trace_limit)
            sim = MarketSimulator(load_profile(config.spec_version), config.seed, config.symbols)
            wall0 = time.time()
        self.trace = trace
        self.world = KiwoomWorld(config, self.profile, trace, sim, wall0)
        self.world.evict = self._evict
        self.market = KiwoomMarket(self.profile, sim)
        self.rest = KiwoomRestApp(self.world, self.market)
        self.faults = KiwoomFaults(self)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.loop_thread_id: int | None = None
        self._http = HttpServer(self._handle_http, lambda: self.world.next_conn_id("rest"))
        self._ws_server: Server | None = None
        self._live: dict[str, _Live] = {}
        self.rest_port = 0
        self.ws_port = 0
        self._scenario: Any = None
        self._started = False
        self._bg: set[asyncio.Future[None]] = set()

    # --- public surface ------------------------------------------------------------------
    @property
    def app_key(self) -> str:
        """Test app key."""
        return self.world.app_key

    @property
    def app_secret(self) -> str:
        """Test secret key."""
        return self.world.app_secret

    @property
    def rest_url(self) -> str:
        """Base URL of the REST side."""
        return f"http://{_url_host(self.config.host)}:{self.rest_port}"

    @property
    def ws_url(self) -> str:
        """Full URL of the domestic WebSocket (path included, as KIWOOM_WS_URL wants it)."""
        return f"ws://{_url_host(self.config.host)}:{self.ws_port}{self.profile.ws_path}"

    @property
    def env_name(self) -> str:
        """The Kiwoom environment this run emulates: ``mock`` (token optional) or ``prod``."""
        return self.world.settings.env

    def env(self) -> dict[str, str]:
        """The KIWOOM_* environment an implementation needs to use this mock (DESIGN §4)."""
        return {
            "KIWOOM_APP_KEY": self.app_key,
            "KIWOOM_APP_SECRET": self.app_secret,
            "KIWOOM_REST_URL": self.rest_url,
            "KIWOOM_WS_URL": self.ws_url,
        }

    def new_credentials(self) -> tuple[str, str]:
        """Register another app key / secret key pair."""
        return self.world.auth.new_credentials()

    def now(self) -> float:
        """Spec seconds since the (shared) trace started."""
        return self.trace.now() * self.config.time_scale

    def open_sockets(self) -> int:
        """Kiwoom WebSocket sessions open right now."""
        return len(self._live)

    def sessions(self) -> list[dict[str, Any]]:
        """A summary of every open session (for /_mock/state)."""
        return [
            {
                "conn": conn,
                "state": live.session.state.value,
                "logged_in_with_token": live.session.token_id is not None,
                "registrations": [f"{t}:{i}" for t, i in live.session.registrations],
            }
            for conn, live in self._live.items()
        ]

    # --- lifecycle -------------------------------------------------------------------------
    async def __aenter__(self) -> KiwoomMock:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Bind both listeners (on the running loop) and start the scenario's Kiwoom steps."""
        if self._started:
            return
        self.loop = asyncio.get_running_loop()
        self.loop_thread_id = threading.get_ident()
        scenario = None
        if self.config.scenario is not None:
            from stockmon.mockserver.scenario import load_scenario

            scenario = load_scenario(self.config.scenario)
        try:
            self.rest_port = await self._http.start(self.config.host, self.config.rest_port)
            self._ws_server = await serve(
                self._handle_ws,
                self.config.host,
                self.config.ws_port,
                process_request=self._ws_process_request,
                ping_interval=None,  # keep-alive is Kiwoom's PING frame, not library pings
                max_size=self.config.ws_max_size,
                compression=None,
                logger=logging.getLogger("stockmon.mockserver.kiwoom.ws"),
            )
        except OSError as exc:
            await self._http.close()
            raise MockConfigError(
                f"cannot listen on {self.config.host}: {exc.strerror or exc}"
            ) from None
        self.ws_port = int(next(iter(self._ws_server.sockets)).getsockname()[1])
        self._started = True
        self.world.record(
            "mock",
            MOCK_CONN,
            "event",
            "mock_started",
            rest_url=self.rest_url,
            ws_url=self.ws_url,
            spec_version=self.config.spec_version,
            time_scale=self.config.time_scale,
            seed=self.config.seed,
            env=self.env_name,
        )
        if scenario is not None:
            from stockmon.mockserver.scenario import ScenarioRunner

            self._scenario = ScenarioRunner(self, scenario, broker="kiwoom")
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
        self.world.record("mock", MOCK_CONN, "event", "mock_stopped")

    # --- fault hooks (loop thread) -------------------------------------------------------
    def wake_all(self) -> None:
        """Let every session writer recompute its timer."""
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
        """Close one session or all with a close frame."""
        n = 0
        for c, live in list(self._live.items()):
            if conn is None or c == conn:
                live.closed_by = "server"
                task = asyncio.ensure_future(live.ws.close(code, reason))
                self._bg.add(task)
                task.add_done_callback(self._bg.discard)
                n += 1
        return n

    def ping_all(self) -> int:
        """Queue a PING on every session."""
        now = self.now()
        for live in self._live.values():
            live.session.server_ping_now(now)
            live.wake.set()
        return len(self._live)

    def system_all(self, name: str, close: bool) -> int:
        """Queue a SYSTEM frame (and a close) on every session."""
        now = self.now()
        for live in self._live.values():
            live.session.system_now(name, now, close)
            live.wake.set()
        return len(self._live)

    def _evict(self, conn: str, now: float) -> None:
        live = self._live.get(conn)
        if live is not None:
            live.session.evict(now)
            live.wake.set()

    # --- WebSocket shell -------------------------------------------------------------------
    def _ws_process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if self.world.faults.refuse_connections:
            self.world.record(
                "ws",
                MOCK_CONN,
                "event",
                "ws_refused",
                path=request.path,
                peer=_peer(ws),
                status=REFUSED_STATUS,
            )
            return ws.respond(REFUSED_STATUS, "connections refused (mock fault)\n")
        if path != self.profile.ws_path:
            self.world.record(
                "ws",
                MOCK_CONN,
                "event",
                "ws_refused",
                path=request.path,
                peer=_peer(ws),
                status=NOT_FOUND_STATUS,
            )
            return ws.respond(NOT_FOUND_STATUS, f"the domestic socket is {self.profile.ws_path}\n")
        return None

    async def _handle_ws(self, ws: ServerConnection) -> None:
        conn = self.world.next_conn_id("ws")
        self.world.emit("ws_open", conn=conn)
        session = KiwoomServerSession(self.world, self.market, conn, self.now())
        live = _Live(ws, session)
        self._live[conn] = live
        path = ws.request.path if ws.request is not None else ""
        self.world.record("ws", conn, "event", "ws_open", path=path, peer=_peer(ws))
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
            log.exception("Kiwoom session %s failed", conn)
            live.closed_by = live.closed_by or "server"
            ws.transport.abort()
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
            self._live.pop(conn, None)
            by, code, reason = close_summary(ws, live.closed_by)
            self.world.record("ws", conn, "event", "ws_close", code=code, reason=reason, by=by)
            session.connection_lost(self.now())
            self.world.emit("ws_close", conn=conn, by=by)

    async def _writer(self, live: _Live) -> None:
        session, ws, conn = live.session, live.ws, live.session.conn
        try:
            while True:
                deadline = session.get_timer()
                if deadline is not None:
                    delay = (deadline - self.now()) / self.config.time_scale
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
                for item in session.data_to_send():
                    if isinstance(item, Close):
                        live.closed_by = "server"
                        await ws.close(item.code, item.reason)
                        return
                    await self._send(ws, conn, item)
                if deadline is not None and now >= deadline:
                    await asyncio.sleep(0)  # let the reader and other sessions run
        except ConnectionClosed:
            return

    async def _send(self, ws: ServerConnection, conn: str, item: Send) -> None:
        # Recorded before it is written, so no reaction of the client can precede it in the trace.
        self.world.record(
            "ws",
            conn,
            "out",
            "text",
            text=item.text,
            json=item.json,
            tr_id=item.tr_id,
            tr_type=None,
            tr_key=item.tr_key,
            msg_cd=item.msg_cd,
            frame=item.frame,
            trnm=item.tr_id,
        )
        await ws.send(item.text)

    # --- REST shell ------------------------------------------------------------------------
    async def _handle_http(self, req: HttpRequest) -> HttpResponse:
        if req.path.startswith(CONTROL_PREFIX):
            return self._control(req)
        return await traced_call(
            self.world.record, self.rest.handle, req, self.now(), self.config.time_scale
        )

    def _control(self, req: HttpRequest) -> HttpResponse:
        sub = req.path[len(CONTROL_PREFIX) :]
        if req.method == "GET" and sub == "trace":
            try:
                since_seq = int(req.query.get("since", "0"))
            except ValueError:
                return HttpResponse(400, {"error": "since is not an integer"})
            return HttpResponse(
                200,
                None,
                raw=self.trace.jsonl(since_seq).encode(),
                content_type="application/x-ndjson; charset=utf-8",
            )
        if req.method == "GET" and sub == "state":
            f = self.world.faults
            return HttpResponse(
                200,
                {
                    "broker": "kiwoom",
                    "env": self.env_name,
                    "spec_version": self.config.spec_version,
                    "time_scale": self.config.time_scale,
                    "t_spec": self.now(),
                    "rest_url": self.rest_url,
                    "ws_url": self.ws_url,
                    "open_sockets": self.open_sockets(),
                    "sessions": self.sessions(),
                    "tokens_issued": self.world.auth.issued_count,
                    "faults": {
                        "rest_failures": f.rest_failures,
                        "throttle_override": f.throttle_override,
                        "refuse_connections": f.refuse_connections,
                        "stalled": self.world.stalled(self.now()),
                    },
                },
            )
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


class KiwoomMockThread(BackgroundMock[KiwoomMock]):
    """Runs a KiwoomMock on its own event loop in a background thread (for synchronous users)."""

    def __init__(self, config: KiwoomMockConfig | None = None, **overrides: Any) -> None:
        super().__init__(lambda: KiwoomMock(config, **overrides), "kiwoom")


def kiwoom_beside(
    kis: KisMock, config: KiwoomMockConfig | None = None, **overrides: Any
) -> KiwoomMock:
    """A Kiwoom mock sharing ``kis``'s trace, simulator and clock (start it on ``kis``'s loop)."""
    base = config or KiwoomMockConfig(
        spec_version=kis.config.spec_version,
        host=kis.config.host,
        seed=kis.config.seed,
        time_scale=kis.config.time_scale,
        symbols=kis.config.symbols,
    )
    return KiwoomMock(base, beside=kis, **overrides)


__all__ = ["KiwoomMock", "KiwoomMockThread", "kiwoom_beside"]
