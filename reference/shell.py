"""The one asyncio shell around any broker's sans-I/O core (aioquic's protocol.py shape).

The shell owns the I/O and nothing else: it opens and closes the one socket the core asks for, feeds
every received frame and the time to the core, writes the frames the core queues, hands events to a
sink and keeps exactly one ``loop.call_at`` timer armed at the core's next deadline. Before each
socket it puts a credential from its :class:`~stockmon.reference.seams.CredentialSource` into the core
(a new one when the core asks for it: an approval key or a session token, the shell does not care).

Time: the core lives in spec seconds. ``clock`` is a :class:`~stockmon.clock.ScaledClock` (scale 1
in production, STOCKMON_TIME_SCALE otherwise); every spec duration becomes real time through
``clock.to_real`` — the timer, the in-use back-off and the reconnect back-off alike.

Single socket (WS-SINGLE-SOCKET): one task runs the connection loop, so there is at most one socket
object at any time; a new one is opened only after the previous one is fully closed (its closing
handshake done or timed out and its TCP connection gone) and after the core asked for it, which the
core does only from CONNECTING. Between sockets the shell backs off: a jittered capped exponential
delay from an injectable iterator (reset after a healthy session), but never less than the core's
``min_delay_s``. The optional :class:`~stockmon.reference.seams.ConnectGate` is acquired before each
socket and released after it closed; losing it closes the socket at once.

What happened to each socket attempt is reported as a typed :class:`Outcome` to ``on_outcome`` (the
failover runner counts failed attempts with it). Malformed frames are logged (rate-limited), counted
and reported; the stream goes on. ``stop()`` (the CLI wires it to SIGINT/SIGTERM) closes the socket
cleanly and makes :meth:`StreamClient.run` return.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Awaitable, Callable, Iterable, Sized
from typing import Protocol, TypeVar

import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.frames import Frame, Opcode

from stockmon.errors import SettingsError
from stockmon.reference.backoff import HEALTHY_SESSION_S, BackoffFactory, jittered_backoff
from stockmon.reference.errors import ClientError, FrameError
from stockmon.reference.events import (
    CloseSocket,
    DataReceived,
    Event,
    MalformedFrame,
    OpenSocket,
    StatusChanged,
)
from stockmon.reference.lifecycle import ConnState, SessionLifecycle
from stockmon.reference.output import EventSink, safe_event
from stockmon.reference.seams import ConnectGate, CredentialSource, OpenGate
from stockmon.settings import Subscription

log = logging.getLogger(__name__)
T = TypeVar("T")

# Real seconds allowed for the opening and the closing handshake. Not normative.
OPEN_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 2.0
# Largest inbound message; KIS frames are a few kB even with many records. Not normative.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
# At most this many malformed-frame warnings per session reach the log (all are counted).
_MALFORMED_LOG_LIMIT = 20
_CLOSE = object()
_TEXT = Opcode.TEXT


class Outcome(enum.Enum):
    """What became of one socket attempt, as the shell reports it (not a free-text reason)."""

    CONNECTED = "connected"  # the socket is open
    CONNECT_FAILED = "connect_failed"  # the socket could not be opened
    CREDENTIAL_FAILED = "credential_failed"  # no credential (approval key, token) could be had


class DirectConnection(ClientConnection):
    """A ``ClientConnection`` that hands whole text messages to the shell as they are parsed.

    Why: websockets queues every frame for ``recv()`` (a queue, a future, two coroutines and a join
    per message), which cost the stream about as much as parsing and printing it. Here the complete
    (unfragmented) text frames of one read that arrive with nothing queued before them are decoded
    and handed to ``deliver`` in one list, in order, with one clock reading for the read, at the end
    of ``data_received``. Everything else — fragments, binary frames, invalid UTF-8, frames before
    :meth:`deliver_to`, and every frame after one of those until ``recv()`` has taken it — goes to
    websockets' own queue and ``recv()`` as before, so order, close codes and errors are unchanged;
    ping/pong and the closing handshake are the protocol's, below this. An exception from
    ``deliver`` stops the direct path; it is raised from the pending ``recv()``, or else kept in
    :attr:`failure` for the reader to raise.
    """

    _deliver: Callable[[list[str], float], None] | None = None
    _clock: Callable[[], float] = staticmethod(lambda: 0.0)
    _batch: list[str] | None = None
    _queue: Sized = ()
    _failure: Exception | None = None

    def deliver_to(
        self, deliver: Callable[[list[str], float], None] | None, clock: Callable[[], float]
    ) -> bool:
        """Hand each read's whole text messages and ``clock()`` to ``deliver`` (None: stop).

        False, and nothing changes, if this websockets' receive queue is not the one this class
        knows (then ``recv()`` reads everything, as on any connection)."""
        frames = getattr(getattr(self, "recv_messages", None), "frames", None)
        queue = getattr(frames, "queue", None)
        if deliver is not None and (queue is None or not hasattr(frames, "get_waiter")):
            return False
        self._deliver, self._clock = deliver, clock
        self._queue = queue if queue is not None else ()
        return True

    @property
    def failure(self) -> Exception | None:
        """What ``deliver`` raised, if it did (the direct path is off since)."""
        return self._failure

    def data_received(self, data: bytes) -> None:
        """Bytes from the network: websockets parses them, then their text goes to the shell."""
        deliver = self._deliver
        if deliver is None:
            super().data_received(data)
            return
        now = self._clock()
        batch = self._batch = []
        try:
            super().data_received(data)
        finally:
            self._batch = None
        if batch:
            try:
                deliver(batch, now)
            except Exception as exc:
                self._fail(exc)

    def process_event(self, event: object) -> None:
        """One parsed frame: a whole text message joins the read's batch, the rest websockets'."""
        batch = self._batch
        if (
            batch is not None
            and type(event) is Frame
            and event.opcode is _TEXT
            and event.fin
            and not self._queue  # a message queued before it goes first
        ):
            data = event.data
            try:
                text = data.decode() if type(data) is bytes or type(data) is bytearray else None
            except UnicodeDecodeError:
                text = None  # recv() fails the connection with its own close code
            if text is not None:
                batch.append(text)
                return
        super().process_event(event)  # type: ignore[arg-type]

    def _fail(self, exc: Exception) -> None:
        self._deliver = None
        self._failure = exc
        waiter = getattr(self.recv_messages.frames, "get_waiter", None)
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)


class ShellClock(Protocol):
    """Spec time and its conversion to real seconds (ScaledClock)."""

    def monotonic(self) -> float:
        """Spec seconds."""
        ...

    def to_real(self, spec_seconds: float) -> float:
        """Real seconds for a spec duration."""
        ...


class CoreLoop:
    """One re-armed timer driven by a sans-I/O core, and waits that end early on stop().

    Shared by the shell and the failover runner: a subclass sets ``clock``, ``_stop``, ``_timer`` and
    ``_timer_at`` in its constructor and implements ``_pump`` and ``_timer_fired``.
    """

    clock: ShellClock
    _stop: asyncio.Event
    _timer: asyncio.TimerHandle | None
    _timer_at: float | None

    def _pump(self) -> None:
        """Drain the core's outputs and re-arm the timer."""
        raise NotImplementedError

    def _timer_fired(self, now: float) -> None:
        """Tell the core its deadline passed."""
        raise NotImplementedError

    def _arm(self, deadline: float | None) -> None:
        self._cancel_timer()
        self._timer_at = deadline
        if deadline is None:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, self.clock.to_real(deadline - self.clock.monotonic()))
        self._timer = loop.call_at(loop.time() + delay, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_at = None

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self._timer_fired(self.clock.monotonic())
        self._pump()

    # ------------------------------------------------------------------ waiting

    async def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopped first; True if the full time passed."""
        if seconds <= 0:
            return not self._stop.is_set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)
        return not self._stop.is_set()

    async def _until_stopped(self, aw: Awaitable[T]) -> tuple[bool, T | None]:
        """Await ``aw`` unless stop() comes first: ``(True, result)`` or ``(False, None)``."""
        task = asyncio.ensure_future(aw)
        stopper = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        if task.done():
            return True, task.result()
        task.cancel()
        result: T | None = None
        with contextlib.suppress(asyncio.CancelledError, Exception):
            result = await task
        # a connection that completed while we were cancelling is closed, never used
        if isinstance(result, ClientConnection):
            with contextlib.suppress(Exception):
                await result.close()
        return False, None


class StreamClient(CoreLoop):
    """Runs one broker's market-data session until :meth:`stop`, reconnecting as the core says."""

    def __init__(
        self,
        *,
        core: SessionLifecycle,
        ws_url: str,
        url_variable: str,
        subscriptions: Iterable[Subscription],
        credentials: CredentialSource,
        clock: ShellClock,
        sink: EventSink,
        gate: ConnectGate | None = None,
        backoff: BackoffFactory = jittered_backoff,
        healthy_after_s: float = HEALTHY_SESSION_S,
        on_outcome: Callable[[Outcome], None] | None = None,
    ) -> None:
        self.core = core
        self._core_out, self._core_events = core.pending
        self.ws_url = ws_url
        self.url_variable = url_variable
        self.credentials = credentials
        self.clock = clock
        self.sink = sink
        self.gate: ConnectGate = gate or OpenGate()
        self.on_outcome = on_outcome
        self._backoff_factory = backoff
        self._healthy_after = healthy_after_s
        self._backoff = backoff()
        self._subscriptions = tuple(subscriptions)
        self._stop = asyncio.Event()
        self._open_request: OpenSocket | None = None
        self._outbox: asyncio.Queue[object] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._malformed_logged = 0
        self._flush_pending = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.sockets_opened = 0
        self.open_sockets = 0
        self.max_open_sockets = 0

    # ------------------------------------------------------------------ public

    @property
    def malformed(self) -> int:
        """Frames dropped as malformed (structure or value)."""
        return self.core.malformed

    def stop(self) -> None:
        """Ask for a clean shutdown (safe to call from a signal handler, more than once)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self.core.stop(self.clock.monotonic())
        self._pump()

    def subscribe(self, sub: Subscription) -> None:
        """Add a subscription while running (``stockmon serve``'s POST /v1/subscriptions)."""
        self.core.subscribe(sub, self.clock.monotonic())
        self._pump()

    def unsubscribe(self, sub: Subscription) -> None:
        """Release a subscription while running (``stockmon serve``'s DELETE /v1/subscriptions)."""
        self.core.unsubscribe(sub, self.clock.monotonic())
        self._pump()

    async def run(self) -> None:
        """Stream until :meth:`stop`; never raises for network or broker trouble."""
        self._loop = asyncio.get_running_loop()
        now = self.clock.monotonic()
        for sub in self._subscriptions:
            self.core.subscribe(sub, now)
        self.core.start(now)
        self._pump()
        try:
            while not self._stop.is_set():
                request, self._open_request = self._open_request, None
                if request is None:  # the core always asks for the next socket after a close
                    break
                await self._one_socket(request)
        finally:
            self._cancel_timer()
            if self.core.state is not ConnState.STOPPED:
                self.core.stop(self.clock.monotonic())
            self._pump()
            with contextlib.suppress(Exception):
                self.sink.flush()

    # ------------------------------------------------------------------ one socket

    async def _one_socket(self, request: OpenSocket) -> None:
        if request.reason != "startup":
            delay = max(request.min_delay_s, next(self._backoff))
            log.debug("next socket in %.3f spec s (%s)", delay, request.reason)
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
            if self.clock.monotonic() - opened_at >= self._healthy_after:
                self._backoff = self._backoff_factory()
            self.core.closed(self.clock.monotonic(), code)
            self._pump()
        finally:
            try:
                await self.gate.release()
            except Exception as exc:  # a store outage must not stop the stream
                log.warning("connect gate release failed: %s", type(exc).__name__)

    async def _open(self, request: OpenSocket) -> ClientConnection | None:
        """Credential, then the socket; on failure tell the core (it asks again) and return None."""
        core = self.core
        try:
            got, credential = await self._until_stopped(
                self.credentials.credential(force_new=request.new_credential)
            )
            if not got:
                return None
            core.set_credential(credential)
            _, ws = await self._until_stopped(
                connect(
                    self.ws_url,
                    ping_interval=None,  # keep-alive is the core's (PINGPONG, PING), not RFC 6455
                    open_timeout=OPEN_TIMEOUT_S,
                    close_timeout=CLOSE_TIMEOUT_S,
                    max_size=MAX_MESSAGE_BYTES,
                    compression=None,
                    create_connection=DirectConnection,
                )
            )
        except (websockets.InvalidURI, ValueError) as exc:
            # configuration, not the network: retrying cannot help
            raise SettingsError(f"{self.url_variable} is not a WebSocket URL: {exc}") from None
        except (ClientError, OSError, TimeoutError, websockets.WebSocketException) as exc:
            failed = isinstance(exc, ClientError)
            reason = core.credential_failed_reason if failed else "connect_failed"
            safe_event(
                self.sink, StatusChanged("error", reason, detail=_describe(exc), source=core.source)
            )
            self._report(Outcome.CREDENTIAL_FAILED if failed else Outcome.CONNECT_FAILED)
            core.closed(self.clock.monotonic(), None)
            self._pump()
            return None
        if ws is None:
            return None
        self.sockets_opened += 1
        self.open_sockets += 1
        self.max_open_sockets = max(self.max_open_sockets, self.open_sockets)
        self._outbox = asyncio.Queue()
        self._malformed_logged = 0
        core.connected(self.clock.monotonic())
        self._report(Outcome.CONNECTED)
        self._pump()
        return ws

    def _report(self, outcome: Outcome) -> None:
        if self.on_outcome is not None:
            self.on_outcome(outcome)

    async def _serve(self, ws: ClientConnection) -> None:
        """Read until the socket closes; a writer task sends in order; a watcher guards the gate.

        Whole text messages come straight from the connection (:class:`DirectConnection`); this
        loop reads whatever websockets still queues (and everything, on another connection class).
        """
        assert self._outbox is not None
        writer = asyncio.create_task(self._write(ws, self._outbox))
        watcher = asyncio.create_task(self._watch_gate())
        core, monotonic, pump = self.core, self.clock.monotonic, self._pump
        text_received, texts_received = core.text_received, core.texts_received

        def deliver(texts: list[str], now: float) -> None:
            texts_received(texts, now)
            pump()

        direct: DirectConnection | None = None
        if isinstance(ws, DirectConnection) and ws.deliver_to(deliver, monotonic):
            direct = ws
        try:
            async for message in ws:
                if isinstance(message, str):
                    text_received(message, monotonic())
                else:
                    core.bytes_received(message, monotonic())
                pump()
                if direct is not None and direct.failure is not None:
                    raise direct.failure  # a direct delivery failed while this one was queued
        except websockets.ConnectionClosed:
            pass
        finally:
            if direct is not None:
                direct.deliver_to(None, monotonic)
            watcher.cancel()
            writer.cancel()
            await asyncio.gather(writer, watcher, return_exceptions=True)
        if direct is not None and direct.failure is not None:  # raised with no recv() pending
            raise direct.failure

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
        log.warning("connect permission lost: closing the %s socket", self.core.source)
        self.core.reconnect(self.clock.monotonic(), "connect_gate_lost")
        self._pump()

    async def _finish(self, ws: ClientConnection) -> int | None:
        """Make sure the socket is fully closed; returns its close code."""
        with contextlib.suppress(Exception):
            await ws.close()
        with contextlib.suppress(Exception):
            await ws.wait_closed()
        self._outbox = None
        self.open_sockets -= 1
        return ws.close_code

    # ------------------------------------------------------------------ core plumbing

    def _pump(self) -> None:
        """Flush the core's outputs: frames to the writer, events to the sink, re-arm the timer.

        This runs once per received frame, so it does the least it can: the core's queues are
        tested in place (``core.pending``) and the timer is re-armed only after something other
        than data happened. Data only ever moves the idle deadline later, and a timer that fires
        early is harmless (the core does nothing and the timer is re-armed). The sink is flushed
        once the loop is idle (see :meth:`_flush_soon`).
        """
        core = self.core
        changed = False
        if self._core_out:
            changed = True
            out = core.data_to_send()
            if self._outbox is not None:
                for text in out:
                    self._outbox.put_nowait(text)
            else:
                log.debug("dropped %d frame(s) queued with no socket open", len(out))
        events = self._core_events
        if events:
            sink = self.sink
            while events:
                ev = events.popleft()
                if type(ev) is DataReceived:
                    try:
                        sink.event(ev)
                    except FrameError as exc:
                        self._bad_value(exc)
                else:
                    changed = True
                    self._control_event(ev)
            if not self._flush_pending:
                self._flush_soon()
        if changed or self._timer_at is None:
            deadline = core.get_timer()
            if deadline != self._timer_at:
                self._arm(deadline)

    def _flush_soon(self) -> None:
        """Flush the sink as soon as the loop is idle: every line is out before the client waits
        for the next frame, without one system call per frame when frames queue up."""
        if not self._flush_pending and self._loop is not None:
            self._flush_pending = True
            self._loop.call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self._flush_pending = False
        self.sink.flush()

    def _bad_value(self, exc: FrameError) -> None:
        self.core.stats.malformed += 1
        if self._malformed_logged < _MALFORMED_LOG_LIMIT:
            self._malformed_logged += 1
            log.warning("dropped a data frame with a bad value: %s", exc)
        safe_event(self.sink, MalformedFrame(exc, source=self.core.source))

    def _control_event(self, ev: Event) -> None:
        if isinstance(ev, OpenSocket):
            self._open_request = ev
        elif isinstance(ev, CloseSocket):
            if self._outbox is not None:
                self._outbox.put_nowait(_CLOSE)
        else:
            if isinstance(ev, MalformedFrame) and self._malformed_logged < _MALFORMED_LOG_LIMIT:
                self._malformed_logged += 1
                log.warning("dropped a malformed frame: %s (%r)", ev.error, ev.excerpt)
            self.sink.event(ev)

    def _timer_fired(self, now: float) -> None:
        self.core.handle_timer(now)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
