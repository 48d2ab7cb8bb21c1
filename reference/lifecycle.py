"""What every broker's sans-I/O session core shares: the BrokerCore protocol and the connection lifecycle.

Theory of operation
-------------------
A session core is a pure state machine in the style of h11 and aioquic. The shell feeds it inputs,
each with the current spec time ``now`` (``start``, ``connected``, ``text_received``, ``closed``,
``subscribe``, ``unsubscribe``, ``reconnect``, ``stop``, ``handle_timer``) and after every input drains
its outputs: text frames from ``data_to_send()``, events from ``next_event()``
(:mod:`stockmon.reference.events`) and the single deadline from ``get_timer()``. The core never reads
a clock, sleeps, draws random numbers or touches a socket.

The connection lifecycle is the same for every broker and written once here
(:class:`SessionLifecycle`): IDLE -> CONNECTING -> (LOGGING_IN ->) OPEN; from a live socket either
the peer drops us (straight back to CONNECTING: reconnect) or we decide to close (CLOSING, then
CONNECTING once the shell reports the socket fully closed). A new socket is requested only from
CONNECTING, which is entered only after ``closed``: the core can never ask for a second socket while
one is open (WS-SINGLE-SOCKET). STOP leads to SHUTTING_DOWN / STOPPED. Each dialect writes its
whole table out (:data:`LIFECYCLE_TRANSITIONS` plus its own rows) so a test can hold it against
spec/; subscriptions use the shared :class:`SubState` / :class:`SubEvent` with a table per dialect.
"""

from __future__ import annotations

import enum
import json
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar, Protocol, runtime_checkable

from stockmon.boundedjson import decode_text
from stockmon.errors import InputRejected
from stockmon.redaction import Secret
from stockmon.reference.errors import LocalProtocolError, RemoteProtocolError
from stockmon.reference.events import CloseSocket, Event, MalformedFrame, OpenSocket, StatusChanged
from stockmon.settings import Subscription


def compact(obj: Any) -> str:
    """JSON text as brokers expect it: no spaces, UTF-8 as is."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


# Characters of a bad frame kept in the MalformedFrame event (enough to recognise it in a log).
EXCERPT = 80


@runtime_checkable
class BrokerCore(Protocol):
    """The sans-I/O session of one broker as the one shell drives it: the inputs and outputs of the
    module docstring. :class:`SessionLifecycle` implements the lifecycle part once."""

    @property
    def state(self) -> ConnState: ...
    @property
    def malformed(self) -> int: ...
    def set_credential(self, value: str | Secret | None) -> None: ...
    def start(self, now: float) -> None: ...
    def stop(self, now: float) -> None: ...
    def reconnect(self, now: float, reason: str) -> None: ...
    def connected(self, now: float) -> None: ...
    def closed(self, now: float, code: int | None = None) -> None: ...
    def subscribe(self, sub: Subscription, now: float) -> None: ...
    def unsubscribe(self, sub: Subscription, now: float) -> None: ...
    def text_received(self, text: str, now: float) -> None: ...
    def texts_received(self, texts: list[str], now: float) -> None: ...
    def bytes_received(self, data: bytes, now: float) -> None: ...
    def handle_timer(self, now: float) -> None: ...
    def get_timer(self) -> float | None: ...
    def data_to_send(self) -> list[str]: ...
    def next_event(self) -> Event | None: ...


class ConnState(enum.Enum):
    """States of the one WebSocket connection."""

    IDLE = "idle"  # created, not started
    CONNECTING = "connecting"  # a socket was requested (OpenSocket) and is not open yet
    LOGGING_IN = "logging_in"  # socket open, LOGIN sent, not accepted yet (Kiwoom)
    OPEN = "open"  # socket open: subscriptions and timers run
    CLOSING = "closing"  # we asked for the socket to close and will reconnect after
    SHUTTING_DOWN = "shutting_down"  # we asked for the socket to close and will stay closed
    STOPPED = "stopped"  # terminal


class ConnEvent(enum.Enum):
    """What can happen to the connection."""

    START = "start"
    CONNECTED = "connected"
    LOGIN_OK = "login_ok"
    LOGIN_REFUSED = "login_refused"
    LOGIN_TIMEOUT = "login_timeout"
    CLOSED = "closed"  # socket fully closed, or the connection attempt failed
    IDLE_TIMEOUT = "idle_timeout"  # POL-IDLE-RECONNECT
    SESSION_IN_USE = "session_in_use"  # WS-SESSION-LIMITS in_use_code, Kiwoom's replaced login
    CREDENTIAL_REJECTED = "credential_rejected"  # POL-AUTH-FAILED ws_codes
    RECONNECT = "reconnect"  # the shell wants a fresh socket (e.g. the connect gate was lost)
    STOP = "stop"


_C, _E = ConnState, ConnEvent
# Rows every broker shares; a dialect adds where CONNECTED leads and its own reasons to close.
LIFECYCLE_TRANSITIONS: Mapping[tuple[ConnState, ConnEvent], ConnState] = MappingProxyType(
    {
        (_C.IDLE, _E.START): _C.CONNECTING,
        (_C.IDLE, _E.RECONNECT): _C.IDLE,
        (_C.IDLE, _E.STOP): _C.STOPPED,
        (_C.CONNECTING, _E.CLOSED): _C.CONNECTING,  # attempt failed: ask again (shell backs off)
        (_C.CONNECTING, _E.RECONNECT): _C.CONNECTING,
        (_C.CONNECTING, _E.STOP): _C.STOPPED,
        (_C.OPEN, _E.CLOSED): _C.CONNECTING,  # lost: the only allowed action is to reconnect
        (_C.OPEN, _E.IDLE_TIMEOUT): _C.CLOSING,
        (_C.OPEN, _E.SESSION_IN_USE): _C.CLOSING,
        (_C.OPEN, _E.RECONNECT): _C.CLOSING,
        (_C.OPEN, _E.STOP): _C.SHUTTING_DOWN,
        (_C.CLOSING, _E.CLOSED): _C.CONNECTING,  # close first, then open
        (_C.CLOSING, _E.RECONNECT): _C.CLOSING,
        (_C.CLOSING, _E.STOP): _C.SHUTTING_DOWN,
        (_C.SHUTTING_DOWN, _E.CLOSED): _C.STOPPED,
        (_C.SHUTTING_DOWN, _E.RECONNECT): _C.SHUTTING_DOWN,
        (_C.SHUTTING_DOWN, _E.STOP): _C.SHUTTING_DOWN,
        (_C.STOPPED, _E.CONNECTED): _C.SHUTTING_DOWN,  # a connect that finished after stop
        (_C.STOPPED, _E.CLOSED): _C.STOPPED,
        (_C.STOPPED, _E.RECONNECT): _C.STOPPED,
        (_C.STOPPED, _E.STOP): _C.STOPPED,
    }
)
# States with a socket we may write to, and states in which frames may still arrive.
LIVE_STATES = frozenset({_C.LOGGING_IN, _C.OPEN})
RECEIVING_STATES = LIVE_STATES | {_C.CLOSING, _C.SHUTTING_DOWN}
_OPEN = _C.OPEN


class SubState(enum.Enum):
    """States of one subscription (TR + key)."""

    QUEUED = "queued"  # wanted; waits for a socket
    OVER_CAP = "over_cap"  # wanted; the session's registration cap is reached
    SUBSCRIBING = "subscribing"  # subscribe (REG) sent, no answer yet
    RESETTING = "resetting"  # already-subscribed recovery: release (if any) and subscribe sent
    ACTIVE = "active"  # acknowledged
    REJECTED = "rejected"  # the broker refused it; retried on the next session
    RELEASING = "releasing"  # unsubscribe (REMOVE) sent, no answer yet
    GONE = "gone"  # forgotten


class SubEvent(enum.Enum):
    """What can happen to a subscription."""

    SEND = "send"  # local: subscribe packet queued
    NO_ROOM = "no_room"  # local: cap reached
    WANT = "want"  # local: subscribe() called again while releasing
    RELEASE = "release"  # local: unsubscribe packet queued
    RELEASE_LOCAL = "release_local"  # local: forgotten without a packet
    SOCKET_LOST = "socket_lost"
    ACK = "ack"  # peer: subscribe success
    ALREADY = "already"  # peer: already subscribed
    REFUSED = "refused"  # peer: any other error for this key
    RELEASED = "released"  # peer: unsubscribe success or not-found


PEER_EVENTS = frozenset({SubEvent.ACK, SubEvent.ALREADY, SubEvent.REFUSED, SubEvent.RELEASED})
SubTable = Mapping[tuple[SubState, SubEvent], SubState]
_S, _V = SubState, SubEvent
# Rows every broker shares; a dialect adds its answers to stray or repeated peer events and where a
# subscription wanted again while releasing goes.
SUBSCRIPTION_ROWS: SubTable = MappingProxyType(
    {
        (_S.QUEUED, _V.SEND): _S.SUBSCRIBING,
        (_S.QUEUED, _V.RELEASE_LOCAL): _S.GONE,
        (_S.QUEUED, _V.SOCKET_LOST): _S.QUEUED,
        (_S.SUBSCRIBING, _V.ACK): _S.ACTIVE,
        (_S.SUBSCRIBING, _V.REFUSED): _S.REJECTED,
        (_S.SUBSCRIBING, _V.RELEASE): _S.RELEASING,
        (_S.SUBSCRIBING, _V.RELEASE_LOCAL): _S.GONE,
        (_S.SUBSCRIBING, _V.SOCKET_LOST): _S.QUEUED,
        (_S.ACTIVE, _V.RELEASE): _S.RELEASING,
        (_S.ACTIVE, _V.RELEASE_LOCAL): _S.GONE,
        (_S.ACTIVE, _V.SOCKET_LOST): _S.QUEUED,  # registrations do not survive a socket
        (_S.REJECTED, _V.RELEASE_LOCAL): _S.GONE,
        (_S.REJECTED, _V.SOCKET_LOST): _S.QUEUED,  # asked again on the next socket
        (_S.RELEASING, _V.RELEASED): _S.GONE,
        (_S.RELEASING, _V.SOCKET_LOST): _S.GONE,  # a closed session releases everything
    }
)


@dataclass(slots=True)
class CoreStats:
    """Counters every core keeps (a dialect adds its own)."""

    sessions: int = 0
    frames: int = 0
    records: int = 0
    malformed: int = 0
    broker_errors: int = 0


class SessionLifecycle:
    """The connection lifecycle of every broker's core, written once (see the module docstring).

    A dialect sets the class attributes, ``rules.idle_timeout_s`` and ``stats``, and implements
    ``_on_connected`` / ``_on_closed`` (what its subscriptions do) and its own inputs.
    """

    TRANSITIONS: ClassVar[Mapping[tuple[ConnState, ConnEvent], ConnState]]
    SUBSCRIPTIONS: ClassVar[SubTable]
    source: ClassVar[str]
    # The shell's status reason when the session credential cannot be had.
    credential_failed_reason: ClassVar[str]
    stats: CoreStats

    def __init__(self) -> None:
        self.state = ConnState.IDLE
        self._out: list[str] = []
        self._events: deque[Event] = deque()
        self._credential: Secret | None = None
        self._last_inbound = 0.0
        self._next_open: OpenSocket | None = None
        self._need_new_credential = False

    # ------------------------------------------------------------------ outputs

    def data_to_send(self) -> list[str]:
        """Text frames to write, in order, in a new list (the core keeps none)."""
        out = self._out
        if not out:
            return []
        frames = out.copy()
        out.clear()
        return frames

    def next_event(self) -> Event | None:
        """The next event for the shell, or None."""
        return self._events.popleft() if self._events else None

    @property
    def pending(self) -> tuple[list[str], deque[Event]]:
        """The two output queues themselves (text frames, events), never replaced: a shell that
        drains them once per received frame tests them in place rather than calling
        ``data_to_send()`` and ``next_event()`` to find them empty. Read-only for the shell except
        through those two calls or ``popleft()`` on the events."""
        return self._out, self._events

    @property
    def last_inbound(self) -> float:
        """Spec time of the last received frame (KA-TIMERS last-inbound)."""
        return self._last_inbound

    @property
    def malformed(self) -> int:
        """Frames dropped as malformed so far."""
        return self.stats.malformed

    # ------------------------------------------------------------------ inputs

    def set_credential(self, value: str | Secret | None) -> None:
        """The credential the next session carries (None: none, where the broker allows it)."""
        self._credential = (
            None if value is None else value if isinstance(value, Secret) else Secret(value)
        )

    def start(self, now: float) -> None:
        """Begin: ask the shell for the first socket."""
        self._conn(ConnEvent.START)
        self._request_open("startup")

    def stop(self, now: float) -> None:
        """Shut down: close the socket if one is open and never ask for another."""
        before = self.state
        self._conn(ConnEvent.STOP)
        if before in LIVE_STATES:
            self._events.append(CloseSocket("shutdown"))
        if self.state is ConnState.STOPPED and before is not ConnState.STOPPED:
            self._status("stopped", "shutdown")

    def reconnect(self, now: float, reason: str) -> None:
        """Replace the socket (close, then open) for a reason outside the protocol."""
        if self.state in LIVE_STATES:
            self._close_for(ConnEvent.RECONNECT, reason, OpenSocket(reason))
        else:
            self._conn(ConnEvent.RECONNECT)

    def connected(self, now: float) -> None:
        """The socket the core asked for is open: the dialect starts its session."""
        if (
            self._credential is None
            and self.state is ConnState.CONNECTING
            and self._needs_credential()
        ):
            raise LocalProtocolError(self._missing_credential())
        before = self.state
        self._conn(ConnEvent.CONNECTED)
        if before is ConnState.STOPPED:
            self._events.append(CloseSocket("shutdown"))
            return
        self.stats.sessions += 1
        self._need_new_credential = False
        self._last_inbound = now
        self._on_connected(now)

    def closed(self, now: float, code: int | None = None) -> None:
        """The socket is fully closed (or the attempt to open it failed)."""
        before = self.state
        self._conn(ConnEvent.CLOSED)
        self._on_closed()
        if before in LIVE_STATES:
            detail = f"close code {code}" if code is not None else "connection lost"
            self._request_open("socket_closed", detail=detail)
        elif before is ConnState.CLOSING:
            pending = self._next_open or OpenSocket("reconnect")
            self._next_open = None
            self._events.append(pending)
        elif before is ConnState.CONNECTING:
            self._request_open("connect_failed", detail="the connection attempt failed")
        elif before is ConnState.SHUTTING_DOWN:
            self._status("stopped", "shutdown")

    def text_received(self, text: str, now: float) -> None:
        """One text frame from the peer; the dialect reads it."""
        # the identity test first: hashing an Enum member for the set runs Python code, per frame
        if self.state is not _OPEN and self.state not in RECEIVING_STATES:
            raise LocalProtocolError(f"text_received() in state {self.state.value}")
        self._last_inbound = now
        self._received(text)

    def texts_received(self, texts: list[str], now: float) -> None:
        """Text frames read at once, in order: ``text_received`` for each (a dialect may fuse it)."""
        for text in texts:
            self.text_received(text, now)

    def bytes_received(self, data: bytes, now: float) -> None:
        """One binary frame: read as the text it must be (strict UTF-8), else counted and dropped."""
        try:
            text = decode_text(data, "binary frame")
        except InputRejected as exc:
            if self.state not in RECEIVING_STATES:
                raise LocalProtocolError(f"bytes_received() in state {self.state.value}") from None
            self._last_inbound = now
            self._malformed(RemoteProtocolError(str(exc)), repr(data[:EXCERPT]))
            return
        self.text_received(text, now)

    # the dialect's inputs and outputs (see BrokerCore)
    def subscribe(self, sub: Subscription, now: float) -> None: ...
    def unsubscribe(self, sub: Subscription, now: float) -> None: ...
    def handle_timer(self, now: float) -> None: ...
    def get_timer(self) -> float | None: ...

    # ------------------------------------------------------------------ for the dialects

    def _needs_credential(self) -> bool:
        return True

    def _missing_credential(self) -> str:
        return "set_credential() must be called before connected()"

    def _on_connected(self, now: float) -> None: ...  # start the session (LOGIN, subscribe)
    def _on_closed(self) -> None: ...  # what the subscriptions do when the socket is gone
    def _received(self, text: str) -> None: ...  # one frame, in a receiving state

    def _conn(self, event: ConnEvent) -> None:
        try:
            self.state = self.TRANSITIONS[self.state, event]
        except KeyError:
            raise LocalProtocolError(
                f"{event.value} is not allowed in {self.source} connection state {self.state.value}"
            ) from None

    def _sub_step(self, what: object, state: SubState, event: SubEvent) -> SubState | None:
        """The subscription table's answer; None for a stray peer answer, our bug raises."""
        new = self.SUBSCRIPTIONS.get((state, event))
        if new is None and event not in PEER_EVENTS:
            raise LocalProtocolError(f"{event.value} is not allowed for {what} in {state}")
        return new

    def _idle_expired(self, now: float, idle_timeout_s: float) -> bool:
        """POL-IDLE-RECONNECT: close, then open, when nothing arrived for ``idle_timeout_s``."""
        if now < self._last_inbound + idle_timeout_s:
            return False
        self._close_for(
            ConnEvent.IDLE_TIMEOUT,
            "idle_timeout",
            OpenSocket("idle_timeout"),
            detail=f"no frame for {now - self._last_inbound:g} s (limit {idle_timeout_s:g} s)",
        )
        return True

    def _status(
        self,
        state: str,
        reason: str,
        sub: Subscription | None = None,
        *,
        code: str | None = None,
        detail: str = "",
        backoff_s: float | None = None,
    ) -> None:
        self._events.append(
            StatusChanged(
                state=state,
                reason=reason,
                tr_id=sub.tr_id if sub else None,
                key=sub.tr_key if sub else None,
                code=code,
                detail=detail,
                backoff_s=backoff_s,
                source=self.source,
            )
        )

    def _request_open(self, reason: str, *, detail: str = "", min_delay_s: float = 0.0) -> None:
        self._status(
            "connecting" if reason == "startup" else "reconnecting",
            reason,
            detail=detail,
            backoff_s=min_delay_s or None,
        )
        self._events.append(OpenSocket(reason, min_delay_s, self._need_new_credential))

    def _close_for(
        self,
        event: ConnEvent,
        reason: str,
        then: OpenSocket,
        *,
        code: str | None = None,
        detail: str = "",
    ) -> None:
        self._conn(event)
        self._next_open = then
        self._status(
            "reconnecting", reason, code=code, detail=detail, backoff_s=then.min_delay_s or None
        )
        self._events.append(CloseSocket(reason))

    def _malformed(self, error: RemoteProtocolError, text: str) -> None:
        self.stats.malformed += 1
        self._events.append(MalformedFrame(error, text[:EXCERPT], source=self.source))
