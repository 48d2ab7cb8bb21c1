"""Sans-I/O Kiwoom WebSocket session: the protocol logic of the reference's backup client.

Theory of operation
-------------------
The same shape as the KIS :class:`~stockmon.reference.session.SessionCore` (h11/aioquic style): the
shell feeds inputs with the current spec time ``now`` — ``start``, ``connected``, ``text_received``,
``closed``, ``subscribe``, ``unsubscribe``, ``reconnect``, ``stop``, ``handle_timer`` — and drains
``data_to_send()``, ``next_event()`` and the one deadline of ``get_timer()``. The core never reads a
clock, sleeps or touches a socket.

The connection (:data:`KIWOOM_TRANSITIONS`): IDLE -> CONNECTING -> LOGGING_IN (socket open, LOGIN
sent) -> OPEN (LOGIN accepted) and from LOGGING_IN/OPEN either the peer drops us (back to
CONNECTING: reconnect) or we close (LOGIN refused, LOGIN unanswered, idle, replaced by another login
of our app key, an outside request: CLOSING, then CONNECTING once the socket is fully closed). A new
socket is requested only from CONNECTING, entered only after ``closed``: never two sockets
(WS-SINGLE-SOCKET).

Policies (KIWOOM-PROTOCOL, TOKEN-KIWOOM-SESSION; values from :class:`KiwoomRules`):

* LOGIN first, carrying the session token when there is one (``set_token``); in an environment
  where the token is required (prod) and none was set, ``connected`` raises LocalProtocolError.
  Nothing else is sent before the LOGIN ack; a frame other than PING, SYSTEM or the ack arriving
  before it is reported as malformed.
* LOGIN refused with an auth code (``CODE=8005`` ... in ``return_msg``): close, ask the shell for a
  new token, reconnect (with the shell's back-off: never a LOGIN storm). Any other refusal: close and
  reconnect with back-off. No ack within ``login_timeout_s``: the same.
* After the ack: one REG per realtime type (``grp_no``, ``refresh`` "1" = keep), items grouped; each
  reply answers the oldest pending REG/REMOVE. Registrations do not survive a socket: every new
  LOGIN registers everything again.
* PING: the received text is sent back verbatim, at once, in any state with a socket; SYSTEM frames
  are reported, never echoed; SYSTEM ``replaced_by_new_login`` closes and backs off
  ``replaced_backoff_s`` before the next socket.
* POL-IDLE-RECONNECT: nothing received for ``idle_timeout_s`` -> close, then open.
* KIS subscriptions Kiwoom cannot serve (a market without a Kiwoom layout: US) are reported once
  each as ``unserved`` status events and never registered.
"""

from __future__ import annotations

import enum
import json
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from stockmon.redaction import Secret
from stockmon.reference.errors import (
    AuthError,
    BrokerError,
    FrameError,
    LocalProtocolError,
    RemoteProtocolError,
)
from stockmon.reference.events import CloseSocket, OpenSocket
from stockmon.reference.kiwoom_events import (
    KiwoomBrokerError,
    KiwoomData,
    KiwoomEvent,
    KiwoomMalformed,
    SourcedStatus,
)
from stockmon.reference.kiwoom_frames import KiwoomParser, KiwoomRecord
from stockmon.reference.kiwoom_rules import KiwoomRules
from stockmon.settings import Subscription
from stockmon.spec import Spec

# Characters of a bad frame kept in the malformed event.
_EXCERPT = 80


class KConn(enum.Enum):
    """States of the one Kiwoom socket."""

    IDLE = "idle"
    CONNECTING = "connecting"
    LOGGING_IN = "logging_in"
    OPEN = "open"
    CLOSING = "closing"
    SHUTTING_DOWN = "shutting_down"
    STOPPED = "stopped"


class KEvent(enum.Enum):
    """What can happen to the Kiwoom connection."""

    START = "start"
    CONNECTED = "connected"
    LOGIN_OK = "login_ok"
    LOGIN_REFUSED = "login_refused"
    LOGIN_TIMEOUT = "login_timeout"
    CLOSED = "closed"
    IDLE_TIMEOUT = "idle_timeout"
    REPLACED = "replaced"  # SYSTEM replaced_by_new_login
    RECONNECT = "reconnect"
    STOP = "stop"


_C, _E = KConn, KEvent
KIWOOM_TRANSITIONS: Mapping[tuple[KConn, KEvent], KConn] = MappingProxyType(
    {
        (_C.IDLE, _E.START): _C.CONNECTING,
        (_C.IDLE, _E.RECONNECT): _C.IDLE,
        (_C.IDLE, _E.STOP): _C.STOPPED,
        (_C.CONNECTING, _E.CONNECTED): _C.LOGGING_IN,
        (_C.CONNECTING, _E.CLOSED): _C.CONNECTING,  # attempt failed: ask again (shell backs off)
        (_C.CONNECTING, _E.RECONNECT): _C.CONNECTING,
        (_C.CONNECTING, _E.STOP): _C.STOPPED,
        (_C.LOGGING_IN, _E.LOGIN_OK): _C.OPEN,
        (_C.LOGGING_IN, _E.LOGIN_REFUSED): _C.CLOSING,
        (_C.LOGGING_IN, _E.LOGIN_TIMEOUT): _C.CLOSING,
        (_C.LOGGING_IN, _E.CLOSED): _C.CONNECTING,
        (_C.LOGGING_IN, _E.IDLE_TIMEOUT): _C.CLOSING,
        (_C.LOGGING_IN, _E.REPLACED): _C.CLOSING,
        (_C.LOGGING_IN, _E.RECONNECT): _C.CLOSING,
        (_C.LOGGING_IN, _E.STOP): _C.SHUTTING_DOWN,
        (_C.OPEN, _E.CLOSED): _C.CONNECTING,  # lost: reconnect
        (_C.OPEN, _E.IDLE_TIMEOUT): _C.CLOSING,
        (_C.OPEN, _E.REPLACED): _C.CLOSING,
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
_SOCKET_STATES = frozenset({KConn.LOGGING_IN, KConn.OPEN, KConn.CLOSING, KConn.SHUTTING_DOWN})


class KSub(enum.Enum):
    """States of one Kiwoom registration (type + item)."""

    QUEUED = "queued"  # wanted; waits for a logged-in socket
    REGISTERING = "registering"  # REG sent, no reply yet
    ACTIVE = "active"
    REJECTED = "rejected"  # refused; asked again on the next socket
    RELEASING = "releasing"  # REMOVE sent


@dataclass(slots=True)
class _Reg:
    kis: Subscription
    state: KSub = KSub.QUEUED


@dataclass(slots=True)
class KiwoomStats:
    """Counters a shell may print or export."""

    sessions: int = 0
    logins: int = 0
    pings_echoed: int = 0
    frames: int = 0
    records: int = 0
    malformed: int = 0
    broker_errors: int = 0


def _compact(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _code_in(message: str, codes: tuple[str, ...]) -> str | None:
    """The documented code a LOGIN refusal carries as ``CODE=NNNN`` (protocol/kiwoom.md §2.1)."""
    return next((c for c in codes if f"CODE={c}" in message), None)


class KiwoomSessionCore:
    """The Kiwoom WebSocket session as a pure state machine (see the module docstring)."""

    def __init__(self, spec: Spec, *, env: str, login_timeout_s: float) -> None:
        self.spec = spec
        self.rules = r = KiwoomRules.from_spec(spec)
        self.env = env
        self.token_required = r.token_required(env)
        self.login_timeout_s = login_timeout_s
        self.parser = KiwoomParser(r.layouts)
        self.stats = KiwoomStats()
        self.state = KConn.IDLE
        self._regs: dict[tuple[str, str], _Reg] = {}  # (type, item) -> registration
        self._unserved: list[Subscription] = []
        self._pending: deque[tuple[str, tuple[tuple[str, str], ...]]] = deque()  # trnm, pairs
        self._out: list[str] = []
        self._events: deque[KiwoomEvent] = deque()
        self._token: Secret | None = None
        self._connected_at = 0.0
        self._last_inbound = 0.0
        self._next_open: OpenSocket | None = None

    # ------------------------------------------------------------------ outputs

    def data_to_send(self) -> list[str]:
        """Text frames to write, in order."""
        out, self._out = self._out, []
        return out

    def next_event(self) -> KiwoomEvent | None:
        """The next event for the shell, or None."""
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """Spec time of the next deadline (LOGIN ack, idle), None when no timer runs."""
        if self.state is KConn.LOGGING_IN:
            return min(
                self._connected_at + self.login_timeout_s,
                self._last_inbound + self.rules.idle_timeout_s,
            )
        if self.state is KConn.OPEN:
            return self._last_inbound + self.rules.idle_timeout_s
        return None

    @property
    def registrations(self) -> Mapping[tuple[str, str], KSub]:
        """Every wanted Kiwoom registration and its state."""
        return MappingProxyType({k: v.state for k, v in self._regs.items()})

    @property
    def unserved(self) -> tuple[Subscription, ...]:
        """KIS subscriptions Kiwoom cannot serve (reported, not registered)."""
        return tuple(self._unserved)

    @property
    def last_inbound(self) -> float:
        """Spec time of the last received frame."""
        return self._last_inbound

    # ------------------------------------------------------------------ inputs

    def set_token(self, token: str | Secret | None) -> None:
        """The session token LOGIN carries (None: LOGIN without one, where the env allows it)."""
        self._token = (
            None if token is None else token if isinstance(token, Secret) else Secret(token)
        )

    def start(self, now: float) -> None:
        """Begin: ask the shell for the first socket."""
        self._conn(KEvent.START)
        self._request_open("startup")

    def stop(self, now: float) -> None:
        """Shut down: close the socket if one is open and never ask for another."""
        before = self.state
        self._conn(KEvent.STOP)
        if before in (KConn.LOGGING_IN, KConn.OPEN):
            self._events.append(CloseSocket("shutdown"))
        if self.state is KConn.STOPPED and before is not KConn.STOPPED:
            self._status("stopped", "shutdown")

    def reconnect(self, now: float, reason: str) -> None:
        """Replace the socket (close, then open) for a reason outside the protocol."""
        if self.state in (KConn.LOGGING_IN, KConn.OPEN):
            self._close_for(KEvent.RECONNECT, reason, OpenSocket(reason))
        else:
            self._conn(KEvent.RECONNECT)

    def connected(self, now: float) -> None:
        """The socket is open: send LOGIN (nothing else until it is accepted)."""
        if self.token_required and self._token is None and self.state is KConn.CONNECTING:
            raise LocalProtocolError(
                f"a session token is required in {self.env} (TOKEN-KIWOOM-SESSION): set_token() first"
            )
        before = self.state
        self._conn(KEvent.CONNECTED)
        if before is KConn.STOPPED:
            self._events.append(CloseSocket("shutdown"))
            return
        self.stats.sessions += 1
        self._connected_at = self._last_inbound = now
        self._pending.clear()
        login: dict[str, str] = {"trnm": self.rules.login}
        if self._token is not None:
            login["token"] = self._token.reveal()
        self._out.append(_compact(login))
        self._status("logging_in", "session_open", detail=f"session {self.stats.sessions}")

    def closed(self, now: float, code: int | None = None) -> None:
        """The socket is fully closed (or the attempt to open it failed)."""
        before = self.state
        self._conn(KEvent.CLOSED)
        self._pending.clear()
        for key, reg in list(self._regs.items()):
            if reg.state is KSub.RELEASING:
                del self._regs[key]  # a closed session releases everything
            else:
                reg.state = KSub.QUEUED
        if before in (KConn.OPEN, KConn.LOGGING_IN):
            detail = f"close code {code}" if code is not None else "connection lost"
            self._request_open("socket_closed", detail=detail)
        elif before is KConn.CLOSING:
            pending = self._next_open or OpenSocket("reconnect")
            self._next_open = None
            self._events.append(pending)
        elif before is KConn.CONNECTING:
            self._request_open("connect_failed", detail="the connection attempt failed")
        elif before is KConn.SHUTTING_DOWN:
            self._status("stopped", "shutdown")

    def subscribe(self, sub: Subscription, now: float) -> None:
        """Want a KIS subscription served by Kiwoom (or reported unserved)."""
        code = self.rules.kiwoom_type(sub)
        if code is None:
            if sub not in self._unserved:
                self._unserved.append(sub)
                self._status(
                    "unserved",
                    "not_served_by_kiwoom",
                    sub,
                    detail=f"Kiwoom has no realtime type for {sub.tr_id} keys like {sub.tr_key}",
                )
            return
        key = (code, sub.tr_key)
        reg = self._regs.get(key)
        if reg is None:
            self._regs[key] = _Reg(sub)
            if self.state is KConn.OPEN:
                self._register([key])
        elif reg.state is KSub.RELEASING:
            reg.state = KSub.QUEUED
            if self.state is KConn.OPEN:
                self._register([key])

    def unsubscribe(self, sub: Subscription, now: float) -> None:
        """Stop wanting a subscription; REMOVE on the wire when it is registered."""
        if sub in self._unserved:
            self._unserved.remove(sub)
            return
        code = self.rules.kiwoom_type(sub)
        key = (code, sub.tr_key) if code else None
        reg = self._regs.get(key) if key else None
        if key is None or reg is None or reg.state is KSub.RELEASING:
            return
        if self.state is KConn.OPEN and reg.state in (KSub.ACTIVE, KSub.REGISTERING):
            reg.state = KSub.RELEASING
            self._send_group(self.rules.remove, [key])
            return
        del self._regs[key]
        self._status("unsubscribed", "local", sub)

    def handle_timer(self, now: float) -> None:
        """Run whatever deadline has passed: LOGIN ack, then idle."""
        if self.state is KConn.LOGGING_IN and now >= self._connected_at + self.login_timeout_s:
            self._close_for(
                KEvent.LOGIN_TIMEOUT,
                "login_timeout",
                OpenSocket("login_timeout"),
                detail=f"no {self.rules.login} reply within {self.login_timeout_s:g} s",
            )
            return
        if self.state in (KConn.LOGGING_IN, KConn.OPEN):
            r = self.rules
            if now >= self._last_inbound + r.idle_timeout_s:
                self._close_for(
                    KEvent.IDLE_TIMEOUT,
                    "idle_timeout",
                    OpenSocket("idle_timeout"),
                    detail=f"no frame for {now - self._last_inbound:g} s "
                    f"(limit {r.idle_timeout_s:g} s)",
                )

    def text_received(self, text: str, now: float) -> None:
        """One text frame: PING, LOGIN/REG/REMOVE reply, REAL, SYSTEM or nonsense."""
        if self.state not in _SOCKET_STATES:
            raise LocalProtocolError(f"text_received() in state {self.state.value}")
        self._last_inbound = now
        try:
            msg = json.loads(text)
        except ValueError:
            self._malformed(RemoteProtocolError("text frame is not JSON"), text)
            return
        if not isinstance(msg, dict):
            self._malformed(RemoteProtocolError("JSON frame is not an object"), text)
            return
        r = self.rules
        trnm = msg.get("trnm")
        if trnm == r.ping:
            if self.state in (KConn.LOGGING_IN, KConn.OPEN):
                self._out.append(text)  # verbatim: the server compares the text
                self.stats.pings_echoed += 1
            return
        if trnm == r.system:
            self._system(msg)
            return
        if self.state is KConn.LOGGING_IN:
            if trnm == r.login:
                self._login_reply(msg)
            else:
                self._malformed(
                    RemoteProtocolError(f"{trnm!r} frame before the {r.login} reply"), text
                )
            return
        if self.state is not KConn.OPEN:
            return
        if trnm == r.real:
            self._real(msg, text)
        elif trnm in (r.reg, r.remove):
            self._reg_reply(str(trnm), msg)
        elif trnm == r.login:
            return  # a repeated ack: nothing to do
        else:
            self._malformed(RemoteProtocolError(f"unknown trnm {trnm!r}"), text)

    # ------------------------------------------------------------------ internals

    def _conn(self, event: KEvent) -> None:
        try:
            self.state = KIWOOM_TRANSITIONS[self.state, event]
        except KeyError:
            raise LocalProtocolError(
                f"{event.value} is not allowed in Kiwoom connection state {self.state.value}"
            ) from None

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
            SourcedStatus(
                state=state,
                reason=reason,
                tr_id=sub.tr_id if sub else None,
                key=sub.tr_key if sub else None,
                code=code,
                detail=detail,
                backoff_s=backoff_s,
            )
        )

    def _request_open(self, reason: str, *, detail: str = "") -> None:
        self._status("connecting" if reason == "startup" else "reconnecting", reason, detail=detail)
        self._events.append(OpenSocket(reason))

    def _close_for(
        self,
        event: KEvent,
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

    def _login_reply(self, msg: Mapping[str, Any]) -> None:
        r = self.rules
        rc = msg.get("return_code")
        message = msg.get("return_msg")
        message = message if isinstance(message, str) else ""
        if rc == r.success_return_code:
            self._conn(KEvent.LOGIN_OK)
            self.stats.logins += 1
            self._status("connected", "login_accepted", detail=f"session {self.stats.sessions}")
            self._register([k for k, reg in self._regs.items() if reg.state is KSub.QUEUED])
            return
        self.stats.broker_errors += 1
        auth_code = _code_in(message, r.auth_failure_codes)
        code = auth_code or str(rc)
        err: BrokerError = (
            AuthError(code, message, retryable=True) if auth_code else BrokerError(code, message)
        )
        self._events.append(KiwoomBrokerError(err))
        self._close_for(
            KEvent.LOGIN_REFUSED,
            "auth_refresh" if auth_code else "login_refused",
            OpenSocket(
                "auth_refresh" if auth_code else "login_refused",
                new_approval_key=auth_code is not None,
            ),
            code=code,
            detail=f"{r.login} refused: {message}".strip(),
        )

    def _register(self, keys: list[tuple[str, str]]) -> None:
        if keys:
            self._send_group(self.rules.reg, keys)

    def _send_group(self, trnm: str, keys: list[tuple[str, str]]) -> None:
        """One REG/REMOVE frame; items grouped by type so no unwanted (type, item) pair is asked."""
        r = self.rules
        by_type: dict[str, list[str]] = {}
        for code, item in keys:
            by_type.setdefault(code, []).append(item)
        packet: dict[str, Any] = {"trnm": trnm, "grp_no": r.grp_no}
        if trnm == r.reg:
            packet["refresh"] = r.refresh_keep
            for key in keys:
                self._regs[key].state = KSub.REGISTERING
        packet["data"] = [{"item": items, "type": [code]} for code, items in by_type.items()]
        self._out.append(_compact(packet))
        self._pending.append((trnm, tuple(keys)))

    def _reg_reply(self, trnm: str, msg: Mapping[str, Any]) -> None:
        r = self.rules
        if not self._pending or self._pending[0][0] != trnm:
            return  # an answer to nothing we asked in this session
        _, keys = self._pending.popleft()
        ok = msg.get("return_code") == r.success_return_code
        message = msg.get("return_msg")
        message = message if isinstance(message, str) else ""
        if not ok:
            self.stats.broker_errors += 1
        for key in keys:
            reg = self._regs.get(key)
            if reg is None:
                continue
            if trnm == r.remove:
                if reg.state is KSub.RELEASING:
                    del self._regs[key]
                    self._status("unsubscribed", "ack", reg.kis)
                continue
            if reg.state is not KSub.REGISTERING:
                continue
            if ok:
                reg.state = KSub.ACTIVE
                self._status("subscribed", "ack", reg.kis, detail=f"{key[0]}:{key[1]}")
            else:
                reg.state = KSub.REJECTED
                code = str(msg.get("return_code"))
                self._events.append(
                    KiwoomBrokerError(BrokerError(code, message), reg.kis.tr_id, reg.kis.tr_key)
                )
                self._status("rejected", "refused", reg.kis, code=code, detail=message)

    def _real(self, msg: Mapping[str, Any], text: str) -> None:
        data = msg.get("data")
        if not isinstance(data, list) or not data:
            self._malformed(RemoteProtocolError("REAL frame without a data list"), text)
            return
        records: list[KiwoomRecord] = []
        kis_ids: list[str | None] = []
        for raw in data:
            try:
                rec = self.parser.entry(raw)
            except FrameError as exc:
                self._malformed(exc, text)
                continue
            if rec is None:
                continue
            reg = self._regs.get((rec.type_code, rec.item))
            records.append(rec)
            kis_ids.append(reg.kis.tr_id if reg is not None else None)
        self.stats.frames += 1
        if records:
            self.stats.records += len(records)
            self._events.append(KiwoomData(tuple(records), tuple(kis_ids)))

    def _system(self, msg: Mapping[str, Any]) -> None:
        r = self.rules
        code = str(msg.get("code", ""))
        message = msg.get("message")
        message = message if isinstance(message, str) else ""
        name = r.system_name(code)
        if name == "replaced_by_new_login" and self.state in (KConn.LOGGING_IN, KConn.OPEN):
            self._close_for(
                KEvent.REPLACED,
                "session_replaced",
                OpenSocket("session_replaced", min_delay_s=r.replaced_backoff_s),
                code=code,
                detail=f"{code} {message}".strip(),
            )
            return
        self._status("broker_notice", name or "system", code=code, detail=message)

    def _malformed(self, error: RemoteProtocolError, text: str) -> None:
        self.stats.malformed += 1
        self._events.append(KiwoomMalformed(error, text[:_EXCERPT]))


__all__ = ["KIWOOM_TRANSITIONS", "KConn", "KEvent", "KSub", "KiwoomSessionCore", "KiwoomStats"]
