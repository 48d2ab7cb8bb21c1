"""The asyncio shell around :class:`~stockmon.reference.kiwoom_session.KiwoomSessionCore`.

Same design as the KIS shell (:mod:`stockmon.reference.shell`): one task runs the connection loop, so
there is at most one socket object at any time; a new one opens only after the previous one is fully
closed and after the core asked for it; between sockets a jittered capped back-off (reset after a
healthy session), never less than the core's ``min_delay_s``; the
:class:`~stockmon.reference.seams.ConnectGate` (the fleet's socket lease, shared with the KIS client
under STOCKMON_BROKER=auto) is acquired before each socket and released after it closed; one
``loop.call_at`` timer at the core's deadline. Before each socket the session token is fetched from
the :class:`~stockmon.reference.kiwoom_auth.KiwoomTokenSource` (a new one after an auth refusal).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Protocol

import websockets
from websockets.asyncio.client import ClientConnection, connect

from stockmon.errors import SettingsError
from stockmon.reference.backoff import HEALTHY_SESSION_S, BackoffFactory, jittered_backoff
from stockmon.reference.errors import ClientError, FrameError
from stockmon.reference.events import CloseSocket, OpenSocket
from stockmon.reference.kiwoom_auth import KiwoomTokenSource
from stockmon.reference.kiwoom_events import KiwoomData, KiwoomEvent, KiwoomMalformed, SourcedStatus
from stockmon.reference.kiwoom_session import KConn, KiwoomSessionCore
from stockmon.reference.seams import ConnectGate, OpenGate
from stockmon.reference.shell import (
    CLOSE_TIMEOUT_S,
    MAX_MESSAGE_BYTES,
    OPEN_TIMEOUT_S,
    CoreLoop,
    ShellClock,
)
from stockmon.settings import Subscription
from stockmon.spec import Spec

log = logging.getLogger(__name__)

# Real seconds a LOGIN may wait for its reply (pain point: the server sometimes closes during the
# handshake without one, protocol/kiwoom.md §5). Not normative.
LOGIN_TIMEOUT_REAL_S = 10.0
_MALFORMED_LOG_LIMIT = 20
_CLOSE = object()


class KiwoomSink(Protocol):
    """Where the Kiwoom shell puts events (the brokers' JSON-lines or table sink)."""

    def event(self, ev: KiwoomEvent) -> None:
        """Handle one event (may raise FrameError for a value that does not convert)."""
        ...

    def flush(self) -> None:
        """Make everything handled so far visible."""
        ...


def safe_kiwoom_event(sink: KiwoomSink, ev: KiwoomEvent) -> None:
    """Hand an event to a sink; a bad value is reported as a malformed frame, never raised."""
    try:
        sink.event(ev)
    except FrameError as exc:
        log.warning("dropped a Kiwoom frame with a bad value: %s", exc)
        sink.event(KiwoomMalformed(exc))


class KiwoomStreamClient(CoreLoop):
    """Runs one Kiwoom market-data session until :meth:`stop`, reconnecting as the core says."""

    def __init__(
        self,
        *,
        spec: Spec,
        ws_url: str,
        subscriptions: Iterable[Subscription],
        tokens: KiwoomTokenSource,
        env: str,
        clock: ShellClock,
        sink: KiwoomSink,
        gate: ConnectGate | None = None,
        backoff: BackoffFactory = jittered_backoff,
        healthy_session_s: float = HEALTHY_SESSION_S,
    ) -> None:
        login_timeout = LOGIN_TIMEOUT_REAL_S / clock.to_real(1.0)
        self.core = KiwoomSessionCore(spec, env=env, login_timeout_s=login_timeout)
        self.ws_url = ws_url
        self.tokens = tokens
        self.clock = clock
        self.sink = sink
        self.gate: ConnectGate = gate or OpenGate()
        self._backoff_factory = backoff
        self._backoff = backoff()
        self._healthy_s = healthy_session_s
        self._subscriptions = tuple(subscriptions)
        self._stop = asyncio.Event()
        self._open_request: OpenSocket | None = None
        self._outbox: asyncio.Queue[object] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._malformed_logged = 0
        self.sockets_opened = 0
        self.open_sockets = 0
        self.max_open_sockets = 0

    def stop(self) -> None:
        """Ask for a clean shutdown (safe from a signal handler, more than once)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self.core.stop(self.clock.monotonic())
        self._pump()

    async def run(self) -> None:
        """Stream until :meth:`stop`; never raises for network or broker trouble."""
        now = self.clock.monotonic()
        for sub in self._subscriptions:
            self.core.subscribe(sub, now)
        self.core.start(now)
        self._pump()
        try:
            while not self._stop.is_set():
                request, self._open_request = self._open_request, None
                if request is None:
                    break
                await self._one_socket(request)
        finally:
            self._cancel_timer()
            if self.core.state is not KConn.STOPPED:
                self.core.stop(self.clock.monotonic())
            self._pump()
            with contextlib.suppress(Exception):
                self.sink.flush()

    async def _one_socket(self, request: OpenSocket) -> None:
        if request.reason != "startup":
            delay = max(request.min_delay_s, next(self._backoff))
            if not await self._sleep(self.clock.to_real(delay)):
                return
        acquired, _ = await self._until_stopped(self.gate.acquire())
        if not acquired:
            return
        try:
            ws = await self._open(request)
            if ws is None:
                return
            opened_at = self.clock.monotonic()
            try:
                await self._serve(ws)
            finally:
                code = await self._finish(ws)
            if self.clock.monotonic() - opened_at >= self._healthy_s:
                self._backoff = self._backoff_factory()
            self.core.closed(self.clock.monotonic(), code)
            self._pump()
        finally:
            try:
                await self.gate.release()
            except Exception as exc:  # a store outage must not stop the stream
                log.warning("connect gate release failed: %s", type(exc).__name__)

    async def _open(self, request: OpenSocket) -> ClientConnection | None:
        """Session token, then the socket; on failure tell the core (it asks again)."""
        try:
            got, token = await self._until_stopped(
                self.tokens.token(force_new=request.new_approval_key)
            )
            if not got:
                return None
            self.core.set_token(token)
            _, ws = await self._until_stopped(
                connect(
                    self.ws_url,
                    ping_interval=None,  # keep-alive is Kiwoom's PING echo, not RFC 6455 pings
                    open_timeout=OPEN_TIMEOUT_S,
                    close_timeout=CLOSE_TIMEOUT_S,
                    max_size=MAX_MESSAGE_BYTES,
                    compression=None,
                )
            )
        except websockets.InvalidURI as exc:
            # configuration, not the network: retrying cannot help
            raise SettingsError(f"KIWOOM_WS_URL is not a WebSocket URL: {exc}") from None
        except (ClientError, OSError, TimeoutError, websockets.WebSocketException) as exc:
            reason = "token_failed" if isinstance(exc, ClientError) else "connect_failed"
            safe_kiwoom_event(self.sink, SourcedStatus("error", reason, detail=_describe(exc)))
            self.core.closed(self.clock.monotonic(), None)
            self._pump()
            return None
        if ws is None:
            return None
        self.sockets_opened += 1
        self.open_sockets += 1
        self.max_open_sockets = max(self.max_open_sockets, self.open_sockets)
        self._outbox = asyncio.Queue()
        self._malformed_logged = 0
        self.core.connected(self.clock.monotonic())
        self._pump()
        return ws

    async def _serve(self, ws: ClientConnection) -> None:
        assert self._outbox is not None
        writer = asyncio.create_task(self._write(ws, self._outbox))
        watcher = asyncio.create_task(self._watch_gate())
        try:
            async for message in ws:
                text = message if isinstance(message, str) else message.decode("utf-8", "replace")
                self.core.text_received(text, self.clock.monotonic())
                self._pump()
        except websockets.ConnectionClosed:
            pass
        finally:
            watcher.cancel()
            writer.cancel()
            await asyncio.gather(writer, watcher, return_exceptions=True)

    async def _write(self, ws: ClientConnection, outbox: asyncio.Queue[object]) -> None:
        while True:
            item = await outbox.get()
            if item is _CLOSE:
                await ws.close()
                return
            assert isinstance(item, str)
            try:
                await ws.send(item)
            except websockets.ConnectionClosed:
                return

    async def _watch_gate(self) -> None:
        await self.gate.lost().wait()
        log.warning("connect permission lost: closing the Kiwoom socket")
        self.core.reconnect(self.clock.monotonic(), "connect_gate_lost")
        self._pump()

    async def _finish(self, ws: ClientConnection) -> int | None:
        with contextlib.suppress(Exception):
            await ws.close()
        with contextlib.suppress(Exception):
            await ws.wait_closed()
        self._outbox = None
        self.open_sockets -= 1
        return ws.close_code

    def _pump(self) -> None:
        core = self.core
        out = core.data_to_send()
        if out and self._outbox is not None:
            for text in out:
                self._outbox.put_nowait(text)
        handled = False
        while (ev := core.next_event()) is not None:
            handled = True
            if isinstance(ev, OpenSocket):
                self._open_request = ev
            elif isinstance(ev, CloseSocket):
                if self._outbox is not None:
                    self._outbox.put_nowait(_CLOSE)
            else:
                if (
                    isinstance(ev, KiwoomMalformed)
                    and self._malformed_logged < _MALFORMED_LOG_LIMIT
                ):
                    self._malformed_logged += 1
                    log.warning("dropped a malformed Kiwoom frame: %s (%r)", ev.error, ev.excerpt)
                if not isinstance(ev, KiwoomData) or ev.records:
                    safe_kiwoom_event(self.sink, ev)
        if handled:
            self.sink.flush()
        deadline = core.get_timer()
        if deadline != self._timer_at:
            self._arm(deadline)

    def _timer_fired(self, now: float) -> None:
        self.core.handle_timer(now)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


__all__ = ["LOGIN_TIMEOUT_REAL_S", "KiwoomSink", "KiwoomStreamClient", "safe_kiwoom_event"]
