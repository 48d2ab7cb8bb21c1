"""What both sans-I/O server session cores share (aioquic style): outputs, states, stall, data timer.

Theory of operation: the asyncio shell (:mod:`~stockmon.mockserver.server`) feeds every inbound
message with ``receive_text`` / ``receive_binary`` (each takes ``now`` in spec seconds), calls
``handle_timer(now)`` when ``get_timer()`` is due, and after each input sends what
``data_to_send()`` returns (``Send`` frames and at most one final ``Close``). A core never reads a
clock, sleeps or touches a socket; every trace record it writes is stamped with the ``now`` of its
input. A dialect's core (``kis.session``, ``kiwoom.session``) adds its protocol rules.

States: [AWAIT_LOGIN ->] OPEN -> CLOSING (a Close is queued, or the shell is closing the socket)
-> CLOSED (``connection_lost``). In CLOSING and CLOSED every input is recorded, nothing answered.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass
from typing import Any

from stockmon.mockserver.world import WorldBase


@dataclass(slots=True)
class Send:
    """A text frame to send, with what the trace needs to know about it."""

    text: str
    frame: str  # data | control | pingpong | other
    json: Any = None
    tr_id: str | None = None
    tr_key: str | None = None
    msg_cd: str | None = None


@dataclass(slots=True)
class Close:
    """Close the connection (``abrupt``: drop TCP without a close frame)."""

    code: int
    reason: str
    abrupt: bool = False


class SessionState(enum.Enum):
    """Lifecycle of a session (AWAIT_LOGIN only where the dialect wants a login first)."""

    AWAIT_LOGIN = "await_login"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


ENDED = (SessionState.CLOSING, SessionState.CLOSED)


class CoreBase:
    """One WebSocket session's shared machinery; a dialect subclass speaks the protocol."""

    # At most this many data rounds per timer (bounds a burst after a long wait).
    MAX_CATCH_UP = 256
    # What a binary frame is called in the violation record.
    BINARY_VIOLATION = "binary frame (packets are JSON text)"

    def __init__(
        self, world: WorldBase, conn: str, now: float, tick_rate_hz: float, state: SessionState
    ) -> None:
        self.world = world
        self.conn = conn
        self.state = state
        self.appkey: str | None = None
        self.registrations: dict[tuple[str, str], Any] = {}
        self._out: list[Send | Close] = []
        self._held: list[Send] = []  # answers held back during a stall
        self._rng = random.Random(f"{world.config.seed}:{conn}")
        self._interval = 1.0 / tick_rate_hz if tick_rate_hz > 0 else None
        self._next_data: float | None = None
        self._now = now

    # --- outputs ----------------------------------------------------------------------------
    def data_to_send(self) -> list[Send | Close]:
        """Frames (and a final Close) queued since the last call."""
        out, self._out = self._out, []
        return out

    def get_timer(self) -> float | None:
        """Spec time of the next timer event, or None."""
        if self.state in ENDED:
            return None
        cands = self._deadlines()
        if self._next_data is not None and self.registrations:
            cands.append(self._next_data)
        stall_end = self.world.faults.stall_until
        if stall_end and (self._held or cands):
            # While stalled nothing is due before the stall ends; held answers are due then.
            cands = [max(c, stall_end) for c in cands]
            if self._held or not cands:
                cands.append(stall_end)
        return min(cands) if cands else None

    # --- inputs -----------------------------------------------------------------------------
    def handle_timer(self, now: float) -> None:
        """Release held answers after a stall, then the dialect's due timers."""
        self._now = now
        if self.state in ENDED:
            return
        stalled = self.world.stalled(now)
        if not stalled and self._held:
            self._out.extend(self._held)
            self._held.clear()
        self._on_timer(now, stalled)

    def server_ping_now(self, now: float) -> None:
        """Send the dialect's server ping now (fault API), unless stalled or closing."""
        self._now = now
        if self.state not in ENDED and not self.world.stalled(now):
            self._send_ping(now)

    def receive_binary(self, data: bytes, now: float) -> None:
        """A binary frame: both brokers speak JSON text, so it is a recorded violation."""
        self._now = now
        self._record("in", "binary", size=len(data), hex=data[:64].hex())
        self._violation(None, [self.BINARY_VIOLATION], None)
        if self.state is SessionState.OPEN:
            self._on_binary()

    def receive_text(self, text: str, now: float) -> None:
        """One inbound text frame (the dialect's protocol)."""
        raise NotImplementedError

    def connection_lost(self, now: float, abrupt: bool) -> None:
        """The socket is gone (``abrupt``: without a close frame)."""
        self.state = SessionState.CLOSED

    def summary(self) -> dict[str, Any]:
        """What /_mock/state shows of this session."""
        regs = [f"{a}:{b}" for a, b in self.registrations]
        return {"state": self.state.value, **self._summary(), "registrations": regs}

    def _summary(self) -> dict[str, Any]:
        return {}

    def receive_pong(self, data: bytes, now: float) -> None:
        """An RFC 6455 pong frame (ignored unless the dialect cares)."""

    def receive_ping(self, data: bytes, now: float) -> None:
        """An RFC 6455 ping frame; the library answers it (ignored unless the dialect cares)."""

    def mark_closing(self) -> None:
        """The shell is closing this session (a fault): answer nothing more."""
        if self.state is not SessionState.CLOSED:
            self.state = SessionState.CLOSING

    # --- dialect hooks ----------------------------------------------------------------------
    def _deadlines(self) -> list[float]:
        return []

    def _on_timer(self, now: float, stalled: bool) -> None:  # pings, login deadline, data
        pass

    def _send_ping(self, now: float) -> None:
        pass

    def _on_binary(self) -> None:  # answer a binary frame on an open session
        pass

    # --- helpers ----------------------------------------------------------------------------
    def _start_data(self, now: float) -> None:
        if self._next_data is None and self._interval is not None:
            self._next_data = now + self._interval

    def _due_rounds(self, now: float, stalled: bool) -> int:
        """Data rounds due now (0 while stalled or before the data timer); advances the timer."""
        nxt, interval = self._next_data, self._interval
        if nxt is None or interval is None or now < nxt:
            return 0
        if stalled:
            self._next_data = max(nxt, self.world.faults.stall_until)
            return 0
        rounds = min(self.MAX_CATCH_UP, int((now - nxt) / interval) + 1)
        nxt += rounds * interval
        self._next_data = now + interval if nxt < now - interval else nxt
        return rounds

    def _junk(self, n: int) -> str:
        return "".join(self._rng.choice("#$%&*?!~@") for _ in range(n))

    def _close(self, code: int, reason: str) -> None:
        self._out.extend(self._held)
        self._held.clear()
        self._out.append(Close(code, reason))
        self.state = SessionState.CLOSING

    def _queue(self, send: Send) -> None:
        if self.world.faults.stall_until and self.world.stalled(self._now):
            self._held.append(send)
        else:
            self._out.append(send)

    def _record(self, dir_: str, kind: str, **extra: Any) -> None:
        self.world.record(self._now, "ws", self.conn, dir_, kind, **extra)

    def _violation(self, schema: str | None, errors: list[str], text: str | None) -> None:
        self._record("in", "violation", schema=schema, errors=errors, text=text)
