"""Sans-I/O Kiwoom WebSocket session: the protocol logic of the reference's backup client.

Theory of operation
-------------------
The same shape as the KIS core, on the shared lifecycle of :mod:`stockmon.reference.lifecycle`:
inputs with ``now``, outputs drained, no clock or socket. The connection
(:data:`CONNECTION_TRANSITIONS`) adds LOGGING_IN between the socket and OPEN (LOGIN sent, not yet
accepted) and its reasons to close (LOGIN refused or unanswered, replaced by another login of our app
key); registrations follow :data:`SUBSCRIPTION_TRANSITIONS`.

Policies (KIWOOM-PROTOCOL, TOKEN-KIWOOM-SESSION; values from :class:`KiwoomRules`):

* LOGIN first, carrying the session token when there is one (``set_credential``); in an environment
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

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from stockmon.boundedjson import loads as bounded_json
from stockmon.reference.errors import AuthError, BrokerError, FrameError, RemoteProtocolError
from stockmon.reference.events import BrokerErrorReceived, DataReceived, OpenSocket
from stockmon.reference.kiwoom.frames import KiwoomFrame, KiwoomParser, KiwoomRecord
from stockmon.reference.kiwoom.rules import KiwoomRules
from stockmon.reference.lifecycle import (
    LIFECYCLE_TRANSITIONS,
    LIVE_STATES,
    SUBSCRIPTION_ROWS,
    ConnEvent,
    ConnState,
    CoreStats,
    SessionLifecycle,
    SubEvent,
    SubState,
    compact,
)
from stockmon.settings import Subscription
from stockmon.spec import Spec

SOURCE = "kiwoom"

_C, _E = ConnState, ConnEvent
CONNECTION_TRANSITIONS: Mapping[tuple[ConnState, ConnEvent], ConnState] = MappingProxyType(
    {
        **LIFECYCLE_TRANSITIONS,
        (_C.CONNECTING, _E.CONNECTED): _C.LOGGING_IN,  # LOGIN first
        (_C.LOGGING_IN, _E.LOGIN_OK): _C.OPEN,
        (_C.LOGGING_IN, _E.LOGIN_REFUSED): _C.CLOSING,
        (_C.LOGGING_IN, _E.LOGIN_TIMEOUT): _C.CLOSING,
        (_C.LOGGING_IN, _E.CLOSED): _C.CONNECTING,
        (_C.LOGGING_IN, _E.IDLE_TIMEOUT): _C.CLOSING,
        (_C.LOGGING_IN, _E.SESSION_IN_USE): _C.CLOSING,  # SYSTEM replaced_by_new_login
        (_C.LOGGING_IN, _E.RECONNECT): _C.CLOSING,
        (_C.LOGGING_IN, _E.STOP): _C.SHUTTING_DOWN,
    }
)

_S, _V = SubState, SubEvent
# One registration per (type, item). A REG/REMOVE reply answers the oldest pending request; a peer
# event a state does not list is a stray answer and ignored; a missing local event raises.
SUBSCRIPTION_TRANSITIONS: Mapping[tuple[SubState, SubEvent], SubState] = MappingProxyType(
    {
        **SUBSCRIPTION_ROWS,
        (_S.RELEASING, _V.WANT): _S.QUEUED,  # wanted again: REG after the REMOVE
    }
)


@dataclass(slots=True)
class _Reg:
    kis: Subscription
    state: SubState = SubState.QUEUED


@dataclass(slots=True)
class KiwoomStats(CoreStats):
    """Counters a shell may print or export."""

    logins: int = 0
    pings_echoed: int = 0


def _code_in(message: str, codes: tuple[str, ...]) -> str | None:
    """The documented code a LOGIN refusal carries as ``CODE=NNNN`` (protocol/kiwoom.md §2.1)."""
    return next((c for c in codes if f"CODE={c}" in message), None)


class KiwoomSessionCore(SessionLifecycle):
    """The Kiwoom WebSocket session as a pure state machine (see the module docstring)."""

    TRANSITIONS = CONNECTION_TRANSITIONS
    SUBSCRIPTIONS = SUBSCRIPTION_TRANSITIONS
    source = SOURCE
    credential_failed_reason = "token_failed"

    def __init__(self, spec: Spec, *, env: str, login_timeout_s: float) -> None:
        super().__init__()
        self.spec = spec
        self.rules = r = KiwoomRules.from_spec(spec)
        self.env = env
        self.token_required = r.token_required(env)
        self.login_timeout_s = login_timeout_s
        self.parser = KiwoomParser(r.layouts)
        self.stats: KiwoomStats = KiwoomStats()
        self._regs: dict[tuple[str, str], _Reg] = {}  # (type, item) -> registration
        self._unserved: list[Subscription] = []
        self._pending: deque[tuple[str, tuple[tuple[str, str], ...]]] = deque()  # trnm, pairs
        self._connected_at = 0.0

    # ------------------------------------------------------------------ outputs

    def get_timer(self) -> float | None:
        """Spec time of the next deadline (LOGIN ack, idle), None when no timer runs."""
        if self.state is ConnState.LOGGING_IN:
            return min(
                self._connected_at + self.login_timeout_s,
                self._last_inbound + self.rules.idle_timeout_s,
            )
        if self.state is ConnState.OPEN:
            return self._last_inbound + self.rules.idle_timeout_s
        return None

    @property
    def registrations(self) -> Mapping[tuple[str, str], SubState]:
        """Every wanted Kiwoom registration and its state."""
        return MappingProxyType({k: v.state for k, v in self._regs.items()})

    @property
    def unserved(self) -> tuple[Subscription, ...]:
        """KIS subscriptions Kiwoom cannot serve (reported, not registered)."""
        return tuple(self._unserved)

    # ------------------------------------------------------------------ inputs

    def _needs_credential(self) -> bool:
        return self.token_required

    def _missing_credential(self) -> str:
        return (
            f"a session token is required in {self.env} (TOKEN-KIWOOM-SESSION): "
            "set_credential() first"
        )

    def _on_connected(self, now: float) -> None:
        """Send LOGIN (nothing else until it is accepted)."""
        self._connected_at = now
        self._pending.clear()
        login: dict[str, str] = {"trnm": self.rules.login}
        if self._credential is not None:
            login["token"] = self._credential.reveal()
        self._out.append(compact(login))
        self._status("logging_in", "session_open", detail=f"session {self.stats.sessions}")

    def _on_closed(self) -> None:
        self._pending.clear()
        for key, reg in list(self._regs.items()):
            self._reg_event(key, reg, SubEvent.SOCKET_LOST)

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
            if self.state is ConnState.OPEN:
                self._register([key])
        elif reg.state is SubState.RELEASING:
            self._reg_event(key, reg, SubEvent.WANT)
            if self.state is ConnState.OPEN:
                self._register([key])

    def unsubscribe(self, sub: Subscription, now: float) -> None:
        """Stop wanting a subscription; REMOVE on the wire when it is registered."""
        if sub in self._unserved:
            self._unserved.remove(sub)
            return
        code = self.rules.kiwoom_type(sub)
        key = (code, sub.tr_key) if code else None
        reg = self._regs.get(key) if key else None
        if key is None or reg is None or reg.state is SubState.RELEASING:
            return
        if self.state is ConnState.OPEN and reg.state in (SubState.ACTIVE, SubState.SUBSCRIBING):
            self._reg_event(key, reg, SubEvent.RELEASE)
            self._send_group(self.rules.remove, [key])
            return
        self._reg_event(key, reg, SubEvent.RELEASE_LOCAL)
        self._status("unsubscribed", "local", sub)

    def handle_timer(self, now: float) -> None:
        """Run whatever deadline has passed: LOGIN ack, then idle."""
        if self.state is ConnState.LOGGING_IN and now >= self._connected_at + self.login_timeout_s:
            self._close_for(
                ConnEvent.LOGIN_TIMEOUT,
                "login_timeout",
                OpenSocket("login_timeout"),
                detail=f"no {self.rules.login} reply within {self.login_timeout_s:g} s",
            )
            return
        if self.state in LIVE_STATES:
            self._idle_expired(now, self.rules.idle_timeout_s)

    def _received(self, text: str) -> None:
        """One text frame: PING, LOGIN/REG/REMOVE reply, REAL, SYSTEM or nonsense."""
        try:
            msg = bounded_json(text, what="text frame")
        except ValueError as exc:
            self._malformed(RemoteProtocolError(f"text frame is not JSON: {exc}"), text)
            return
        if not isinstance(msg, dict):
            self._malformed(RemoteProtocolError("JSON frame is not an object"), text)
            return
        r = self.rules
        trnm = msg.get("trnm")
        if trnm == r.ping:
            if self.state in LIVE_STATES:
                self._out.append(text)  # verbatim: the server compares the text
                self.stats.pings_echoed += 1
            return
        if trnm == r.system:
            self._system(msg)
            return
        if self.state is ConnState.LOGGING_IN:
            if trnm == r.login:
                self._login_reply(msg)
            else:
                self._malformed(
                    RemoteProtocolError(f"{trnm!r} frame before the {r.login} reply"), text
                )
            return
        if self.state is not ConnState.OPEN:
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

    def _reg_event(self, key: tuple[str, str], reg: _Reg, event: SubEvent) -> None:
        new = self._sub_step(key, reg.state, event)
        if new is None:
            return
        reg.state = new
        if new is SubState.GONE:
            del self._regs[key]

    def _login_reply(self, msg: Mapping[str, Any]) -> None:
        r = self.rules
        rc = msg.get("return_code")
        message = msg.get("return_msg")
        message = message if isinstance(message, str) else ""
        if rc == r.success_return_code:
            self._conn(ConnEvent.LOGIN_OK)
            self.stats.logins += 1
            self._status("connected", "login_accepted", detail=f"session {self.stats.sessions}")
            self._register([k for k, reg in self._regs.items() if reg.state is SubState.QUEUED])
            return
        self.stats.broker_errors += 1
        auth_code = _code_in(message, r.auth_failure_codes)
        code = auth_code or str(rc)
        err: BrokerError = (
            AuthError(code, message, retryable=True) if auth_code else BrokerError(code, message)
        )
        self._events.append(BrokerErrorReceived(err, source=SOURCE))
        self._close_for(
            ConnEvent.LOGIN_REFUSED,
            "auth_refresh" if auth_code else "login_refused",
            OpenSocket(
                "auth_refresh" if auth_code else "login_refused",
                new_credential=auth_code is not None,
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
                self._reg_event(key, self._regs[key], SubEvent.SEND)
        packet["data"] = [{"item": items, "type": [code]} for code, items in by_type.items()]
        self._out.append(compact(packet))
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
                if reg.state is SubState.RELEASING:
                    self._reg_event(key, reg, SubEvent.RELEASED)
                    self._status("unsubscribed", "ack", reg.kis)
                continue
            if reg.state is not SubState.SUBSCRIBING:
                continue
            if ok:
                self._reg_event(key, reg, SubEvent.ACK)
                self._status("subscribed", "ack", reg.kis, detail=f"{key[0]}:{key[1]}")
            else:
                self._reg_event(key, reg, SubEvent.REFUSED)
                code = str(msg.get("return_code"))
                self._events.append(
                    BrokerErrorReceived(
                        BrokerError(code, message), reg.kis.tr_id, reg.kis.tr_key, source=SOURCE
                    )
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
            self._events.append(DataReceived(KiwoomFrame(tuple(records), tuple(kis_ids)), SOURCE))

    def _system(self, msg: Mapping[str, Any]) -> None:
        r = self.rules
        code = str(msg.get("code", ""))
        message = msg.get("message")
        message = message if isinstance(message, str) else ""
        name = r.system_name(code)
        if name == "replaced_by_new_login" and self.state in LIVE_STATES:
            self._close_for(
                ConnEvent.SESSION_IN_USE,
                "session_replaced",
                OpenSocket("session_replaced", min_delay_s=r.replaced_backoff_s),
                code=code,
                detail=f"{code} {message}".strip(),
            )
            return
        self._status("broker_notice", name or "system", code=code, detail=message)


__all__ = [
    "CONNECTION_TRANSITIONS",
    "SOURCE",
    "SUBSCRIPTION_TRANSITIONS",
    "KiwoomSessionCore",
    "KiwoomStats",
]
