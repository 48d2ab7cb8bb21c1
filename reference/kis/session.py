"""Sans-I/O KIS WebSocket session: the protocol logic of the KIS dialect, with no I/O at all.

Theory of operation
-------------------
:class:`SessionCore` is a pure state machine (h11/aioquic style) on the shared connection lifecycle
of :mod:`stockmon.reference.lifecycle` (inputs with ``now``; outputs drained from
``data_to_send()``, ``next_event()`` and ``get_timer()``; no clock, sleep, randomness or socket), so
every policy below is unit-tested by calling methods with chosen ``now`` values. Its two tables:

* the **connection** (:data:`CONNECTION_TRANSITIONS`): the shared lifecycle, CONNECTED leading
  straight to OPEN, and a rejected approval key as one more reason to close, then reopen.
* each **subscription** (:data:`SUBSCRIPTION_TRANSITIONS`): QUEUED (wanted, no socket) -> SUBSCRIBING
  (request sent) -> ACTIVE (acknowledged); OVER_CAP when the session's registration cap is reached;
  RESETTING while recovering from "already subscribed"; REJECTED when the broker refused it;
  RELEASING while an unsubscribe is in flight; GONE when forgotten. A lost socket sends every
  subscription back to QUEUED, and ``connected`` sends every QUEUED one again (resubscription).

Policies, all with values read from the spec version in use (no number or code is written here):

* KA-PING / KA-HEARTBEAT / KA-TIMERS: the ping packet is sent ``interval_s`` after the last one
  (the *last-heartbeat* timer starts when the socket opens and is reset only by our own ping); the
  socket is closed and reopened when nothing at all was received for ``idle_timeout_s``
  (POL-IDLE-RECONNECT; the *last-inbound* timer is reset by every received frame, never by sending).
* KA-SERVER-PINGPONG (1.1): a server PINGPONG (one that carries the server-only header fields) is
  echoed back as text, verbatim, once. A PINGPONG without them, or identical to a text we sent
  (our ping reflected, or our echo reflected), is never answered: no ping storm.
* POL-ALREADY-SUBSCRIBED: on the already-subscribed code, release that key and subscribe it again,
  in that order, for that key only (the clause's ``actions``). Version 1.0 demands this release but
  defines no release packet (PKT-UNSUBSCRIBE is 1.1): the packet is a broker fact, so this one
  forced release borrows it from the newest version (:func:`stockmon.spec.broker_clause`), while
  an ``unsubscribe()`` the user asks for under 1.0 only forgets the key locally. If the broker
  answers "already subscribed" a second time in the same session the key is taken as registered —
  believing the broker is the only loop-free choice.
* WS-SESSION-LIMITS (1.1): never more than ``max_registrations`` registrations in flight or active;
  the rest wait as OVER_CAP (reported once each) and are sent when a slot frees. The in-use code
  closes the socket and asks for the next one no sooner than ``in_use_backoff_s``.
* POL-AUTH-FAILED (1.1 ``ws_codes``): close, ask the shell for a new approval key, reconnect,
  resubscribe.
* ERR-WS-BODY: every error body becomes a :class:`~stockmon.reference.events.BrokerErrorReceived`
  with a typed :class:`~stockmon.reference.errors.BrokerError` (``AuthError`` for the auth codes).

Illegal calls (our own bugs, e.g. ``connected`` while a socket is open) raise
:class:`~stockmon.reference.errors.LocalProtocolError`. Peer nonsense never raises: it becomes a
:class:`~stockmon.reference.events.MalformedFrame` event and the session goes on.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from stockmon.boundedjson import loads as bounded_json
from stockmon.reference.errors import (
    AuthError,
    BrokerError,
    FrameError,
    LocalProtocolError,
    RemoteProtocolError,
)
from stockmon.reference.events import BrokerErrorReceived, DataReceived, OpenSocket
from stockmon.reference.kis.frames import FrameParser
from stockmon.reference.lifecycle import (
    LIFECYCLE_TRANSITIONS,
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
from stockmon.spec import Spec, broker_clause
from stockmon.spec.model import thaw

SOURCE = "kis"
# How many of our own recent echo texts to remember, to recognise them if the server reflects them.
_ECHO_MEMORY = 16
# Name of the header field that carries the approval key (sheet §4.1; schema kis-ws-subscribe).
_APPROVAL_HEADER = "approval_key"
# DataReceived(frame, source) without the Python-level __new__ of a named tuple (once per frame)
_new_tuple = tuple.__new__
_OPEN = ConnState.OPEN

_C, _E = ConnState, ConnEvent
CONNECTION_TRANSITIONS: Mapping[tuple[ConnState, ConnEvent], ConnState] = MappingProxyType(
    {
        **LIFECYCLE_TRANSITIONS,
        (_C.CONNECTING, _E.CONNECTED): _C.OPEN,
        (_C.OPEN, _E.CREDENTIAL_REJECTED): _C.CLOSING,  # POL-AUTH-FAILED ws_codes
    }
)

_S, _V = SubState, SubEvent
# Peer events (ACK, ALREADY, REFUSED, RELEASED) are defined for every state, so a late or stray
# answer never raises; a missing local event is a bug and raises LocalProtocolError.
SUBSCRIPTION_TRANSITIONS: Mapping[tuple[SubState, SubEvent], SubState] = MappingProxyType(
    {
        **SUBSCRIPTION_ROWS,
        (_S.QUEUED, _V.NO_ROOM): _S.OVER_CAP,
        (_S.OVER_CAP, _V.SEND): _S.SUBSCRIBING,
        (_S.OVER_CAP, _V.RELEASE_LOCAL): _S.GONE,
        (_S.OVER_CAP, _V.SOCKET_LOST): _S.QUEUED,
        (_S.SUBSCRIBING, _V.ALREADY): _S.RESETTING,  # POL-ALREADY-SUBSCRIBED: release, subscribe
        (_S.SUBSCRIBING, _V.RELEASED): _S.SUBSCRIBING,  # stale answer to an earlier release
        (_S.RESETTING, _V.ACK): _S.ACTIVE,
        (_S.RESETTING, _V.ALREADY): _S.ACTIVE,  # the broker insists: take it as registered
        (_S.RESETTING, _V.RELEASED): _S.RESETTING,  # the answer to our own release
        (_S.RESETTING, _V.REFUSED): _S.REJECTED,
        (_S.RESETTING, _V.RELEASE): _S.RELEASING,
        (_S.RESETTING, _V.RELEASE_LOCAL): _S.GONE,
        (_S.RESETTING, _V.SOCKET_LOST): _S.QUEUED,
        (_S.ACTIVE, _V.ACK): _S.ACTIVE,
        (_S.ACTIVE, _V.ALREADY): _S.ACTIVE,
        (_S.ACTIVE, _V.REFUSED): _S.ACTIVE,  # an error after the ack is reported, not believed
        (_S.ACTIVE, _V.RELEASED): _S.ACTIVE,
        (_S.REJECTED, _V.ACK): _S.ACTIVE,  # a late success wins
        (_S.REJECTED, _V.ALREADY): _S.REJECTED,
        (_S.REJECTED, _V.REFUSED): _S.REJECTED,
        (_S.REJECTED, _V.RELEASED): _S.REJECTED,
        (_S.RELEASING, _V.ACK): _S.RELEASING,
        (_S.RELEASING, _V.ALREADY): _S.RELEASING,
        (_S.RELEASING, _V.REFUSED): _S.RELEASING,
        (_S.RELEASING, _V.WANT): _S.RESETTING,  # release then subscribe are both on the wire
    }
)

# States that hold one of the session's registrations (sent and not answered, or acknowledged).
REGISTERED_STATES = frozenset({_S.SUBSCRIBING, _S.RESETTING, _S.ACTIVE, _S.RELEASING})


@dataclass(frozen=True, slots=True)
class SessionRules:
    """Every spec value the session needs, read once from one spec version."""

    spec_version: str
    ping_interval_s: float
    ping_packet: Mapping[str, Any]
    pingpong_tr_id: str
    idle_timeout_s: float
    subscribe_header: Mapping[str, str]
    unsubscribe_header: Mapping[str, str] | None  # None: the version has no release packet
    force_release_header: Mapping[str, str] | None  # the POL-ALREADY-SUBSCRIBED release, if any
    body_fields: tuple[str, str]
    unsubscribe_codes: frozenset[str]
    already_code: str
    answer_server_ping: bool
    server_ping_fields: frozenset[str]  # header fields only a server ping carries
    max_registrations: int | None
    over_limit_code: str | None
    in_use_code: str | None
    in_use_backoff_s: float
    approval_codes: frozenset[str]
    success_rt_cd: str
    ws_codes: Mapping[str, Mapping[str, Any]]

    @classmethod
    def from_spec(cls, spec: Spec) -> SessionRules:
        """Read the clauses of ``spec``; errata clauses a version lacks switch their policy off."""
        ping = spec.clause("KA-PING")
        sub = spec.clause("PKT-SUBSCRIBE")
        body_fields = sub.strings("body_fields")
        if len(body_fields) != 2:
            raise ValueError(f"PKT-SUBSCRIBE body_fields must name tr_id and tr_key: {body_fields}")
        # The release packet is a broker fact (PKT-UNSUBSCRIBE, 1.1). A version without the clause
        # still demands a release where POL-ALREADY-SUBSCRIBED lists it as an action, so that one
        # forced release borrows the packet; a release the user asks for is not sent then.
        release = broker_clause(spec, "PKT-UNSUBSCRIBE")
        release_header: Mapping[str, str] = thaw(release.mapping("header"))
        unsub_header = release_header if spec.has("PKT-UNSUBSCRIBE") else None
        unsub_codes = frozenset({release.string("success_code"), release.string("not_found_code")})
        already = spec.clause("POL-ALREADY-SUBSCRIBED")
        force_release = "unsubscribe" in already.strings("actions")
        answer = spec.has("KA-SERVER-PINGPONG")
        server_fields: frozenset[str] = frozenset()
        if answer:
            spp = spec.clause("KA-SERVER-PINGPONG")
            client_fields = set(thaw(ping.mapping("packet"))["header"])
            server_fields = frozenset(spp.strings("server_packet_fields")) - client_fields
        limits = spec.clause("WS-SESSION-LIMITS") if spec.has("WS-SESSION-LIMITS") else None
        return cls(
            spec_version=spec.version,
            ping_interval_s=ping.number("interval_s"),
            ping_packet=thaw(ping.mapping("packet")),
            pingpong_tr_id=ping.string("tr_id"),
            idle_timeout_s=spec.clause("POL-IDLE-RECONNECT").number("idle_timeout_s"),
            subscribe_header=thaw(sub.mapping("header")),
            unsubscribe_header=unsub_header,
            force_release_header=release_header if force_release else None,
            body_fields=(body_fields[0], body_fields[1]),
            unsubscribe_codes=unsub_codes,
            already_code=already.string("code"),
            answer_server_ping=answer,
            server_ping_fields=server_fields,
            max_registrations=limits.integer("max_registrations") if limits else None,
            over_limit_code=limits.string("over_limit_code") if limits else None,
            in_use_code=limits.string("in_use_code") if limits else None,
            in_use_backoff_s=limits.number("in_use_backoff_s") if limits else 0.0,
            approval_codes=frozenset(spec.clause("POL-AUTH-FAILED").strings("ws_codes")),
            # The WS acks share the REST success convention for rt_cd (protocol/kis.md §2.2).
            success_rt_cd=spec.clause("ERR-REST-BODY").string("success_rt_cd"),
            ws_codes=spec.codes.get("ws", MappingProxyType({})),
        )


@dataclass(slots=True)
class SessionStats(CoreStats):
    """Counters a shell may print or export."""

    pings_sent: int = 0
    echoes_sent: int = 0
    reflections: int = 0


@dataclass(slots=True)
class _Sub:
    state: SubState
    resets: int = 0  # already-subscribed recoveries in the current session


class SessionCore(SessionLifecycle):
    """The KIS WebSocket session as a pure state machine (see the module docstring)."""

    TRANSITIONS = CONNECTION_TRANSITIONS
    SUBSCRIPTIONS = SUBSCRIPTION_TRANSITIONS
    source = SOURCE
    credential_failed_reason = "approval_failed"

    def __init__(self, spec: Spec, *, parser: FrameParser | None = None) -> None:
        super().__init__()
        self.spec = spec
        self.rules = r = SessionRules.from_spec(spec)
        self.parser = parser or FrameParser(spec)
        self.stats: SessionStats = SessionStats()
        self._subs: dict[Subscription, _Sub] = {}
        self._last_heartbeat = 0.0
        self._opened_at = 0.0
        self._echoed: deque[str] = deque(maxlen=_ECHO_MEMORY)
        self._ping_text = compact(r.ping_packet)
        grammar = self.parser.grammar
        self._data_flags = (grammar.plain_flag, grammar.encrypted_flag)
        self._parse = self.parser.parse

    # ------------------------------------------------------------------ outputs

    def get_timer(self) -> float | None:
        """Spec time of the next deadline (ping or idle timeout), None when no timer runs."""
        if self.state is not ConnState.OPEN:
            return None
        r = self.rules
        return min(self._last_heartbeat + r.ping_interval_s, self._last_inbound + r.idle_timeout_s)

    @property
    def subscriptions(self) -> Mapping[Subscription, SubState]:
        """Every subscription the core knows about and its state."""
        return MappingProxyType({s: v.state for s, v in self._subs.items()})

    @property
    def registrations(self) -> int:
        """Registrations this session holds or has in flight (never above the cap)."""
        return sum(1 for v in self._subs.values() if v.state in REGISTERED_STATES)

    @property
    def last_heartbeat(self) -> float:
        """Spec time of our last ping, or of the socket opening (KA-TIMERS last-heartbeat)."""
        return self._last_heartbeat

    # ------------------------------------------------------------------ inputs

    def _missing_credential(self) -> str:
        return "set_credential() (the approval key) must be called before connected()"

    def _on_connected(self, now: float) -> None:
        """Start the timers and (re)subscribe everything."""
        self._opened_at = self._last_heartbeat = now
        for sub in self._subs.values():
            sub.resets = 0
        self._status("connected", "session_open", detail=f"session {self.stats.sessions}")
        self._fill_slots()

    def _on_closed(self) -> None:
        for s, sub in list(self._subs.items()):
            self._sub_event(s, sub, SubEvent.SOCKET_LOST)

    def subscribe(self, sub: Subscription, now: float) -> None:
        """Want a subscription; sent now if a socket is open and the cap allows, else later."""
        entry = self._subs.get(sub)
        if entry is None:
            entry = self._subs[sub] = _Sub(SubState.QUEUED)
            if self.state is ConnState.OPEN:
                self._fill_slots()
        elif entry.state is SubState.RELEASING:
            self._out.append(self._packet(sub, self.rules.subscribe_header))
            self._sub_event(sub, entry, SubEvent.WANT)

    def unsubscribe(self, sub: Subscription, now: float) -> None:
        """Stop wanting a subscription; releases it on the wire when the spec version can."""
        entry = self._subs.get(sub)
        if entry is None or entry.state in (SubState.GONE, SubState.RELEASING):
            return
        r = self.rules
        if (
            entry.state in REGISTERED_STATES
            and self.state is ConnState.OPEN
            and r.unsubscribe_header is not None
        ):
            self._out.append(self._packet(sub, r.unsubscribe_header))
            self._sub_event(sub, entry, SubEvent.RELEASE)
            return
        was_registered = entry.state in REGISTERED_STATES
        self._sub_event(sub, entry, SubEvent.RELEASE_LOCAL)
        detail = ""
        if was_registered and self.state is ConnState.OPEN:
            detail = f"spec {r.spec_version} has no release packet; forgotten locally"
        self._status("unsubscribed", "local", sub, detail=detail)
        self._fill_slots()

    def handle_timer(self, now: float) -> None:
        """Run whatever deadline has passed: the idle reconnect first, then the ping."""
        if self.state is not ConnState.OPEN:
            return
        r = self.rules
        if self._idle_expired(now, r.idle_timeout_s):
            return
        if now >= self._last_heartbeat + r.ping_interval_s:
            self._out.append(self._ping_text)
            self._last_heartbeat = now
            self.stats.pings_sent += 1

    def texts_received(self, texts: list[str], now: float) -> None:
        """Text frames read at once, in order; the data frames of an open session in one loop.

        The hot path of the client: each is what ``text_received`` does with a data frame in
        OPEN (everything else goes through it), without two calls per frame."""
        flags, parse, stats, append = self._data_flags, self._parse, self.stats, self._events.append
        for text in texts:
            if text[:1] not in flags or self.state is not _OPEN:
                self.text_received(text, now)
                continue
            self._last_inbound = now
            try:
                frame = parse(text)
            except FrameError as exc:
                self._malformed(exc, text)
                continue
            stats.frames += 1
            stats.records += frame.count
            append(_new_tuple(DataReceived, (frame, SOURCE)))

    def _received(self, text: str) -> None:
        """One text frame from the peer: data, control answer, PINGPONG or nonsense."""
        if text[:1] in self._data_flags:
            try:
                frame = self._parse(text)
            except FrameError as exc:
                self._malformed(exc, text)
                return
            stats = self.stats
            stats.frames += 1
            stats.records += frame.count
            self._events.append(_new_tuple(DataReceived, (frame, SOURCE)))
            return
        try:
            msg = bounded_json(text, what="control frame")
        except ValueError as exc:
            self._malformed(
                RemoteProtocolError(f"text frame is neither data nor JSON: {exc}"), text
            )
            return
        if not isinstance(msg, dict):
            self._malformed(RemoteProtocolError("JSON frame is not an object"), text)
            return
        header = msg.get("header")
        header = header if isinstance(header, dict) else {}
        if header.get("tr_id") == self.rules.pingpong_tr_id:
            self._pingpong(text, msg, header)
            return
        body = msg.get("body")
        if self.state is ConnState.OPEN and isinstance(body, dict):
            self._control(header, body)

    # ------------------------------------------------------------------ internals

    def _sub_event(self, sub: Subscription, entry: _Sub, event: SubEvent) -> None:
        new = self._sub_step(sub, entry.state, event)
        if new is None:
            return
        entry.state = new
        if new is SubState.GONE:
            del self._subs[sub]

    def _packet(self, sub: Subscription, header: Mapping[str, str]) -> str:
        if self._credential is None:
            raise LocalProtocolError("no approval key: call set_credential() first")
        f_tr, f_key = self.rules.body_fields
        return compact(
            {
                "header": {_APPROVAL_HEADER: self._credential.reveal(), **header},
                "body": {"input": {f_tr: sub.tr_id, f_key: sub.tr_key}},
            }
        )

    def _fill_slots(self) -> None:
        """Send every waiting subscription that fits under the cap, in the order they were added."""
        if self.state is not ConnState.OPEN:
            return
        cap = self.rules.max_registrations
        used = self.registrations
        for sub, entry in list(self._subs.items()):
            if entry.state not in (SubState.QUEUED, SubState.OVER_CAP):
                continue
            if cap is not None and used >= cap:
                if entry.state is SubState.QUEUED:
                    self._sub_event(sub, entry, SubEvent.NO_ROOM)
                    self._status(
                        "over_cap",
                        "session_limit",
                        sub,
                        detail=f"{cap} registrations per session (WS-SESSION-LIMITS); waiting",
                    )
                continue
            self._out.append(self._packet(sub, self.rules.subscribe_header))
            self._sub_event(sub, entry, SubEvent.SEND)
            used += 1

    def _pingpong(self, text: str, msg: dict[str, Any], header: dict[str, Any]) -> None:
        r = self.rules
        is_server_ping = (
            r.answer_server_ping
            and bool(r.server_ping_fields)
            and all(f in header for f in r.server_ping_fields)
            and "body" not in msg
        )
        if not is_server_ping or msg == r.ping_packet or text in self._echoed:
            # our ping or our echo coming back, or a PINGPONG this version does not answer
            self.stats.reflections += 1
            return
        if self.state is ConnState.OPEN:
            self._out.append(text)
            self._echoed.append(text)
            self.stats.echoes_sent += 1

    def _find(self, header: dict[str, Any]) -> tuple[Subscription, _Sub] | None:
        tr_id, tr_key = header.get("tr_id"), header.get("tr_key")
        if isinstance(tr_id, str) and isinstance(tr_key, str):
            key = Subscription(tr_id, tr_key)
            entry = self._subs.get(key)
            if entry is not None:
                return key, entry
        if isinstance(tr_key, str) and tr_key:
            for s, e in self._subs.items():
                if s.tr_key == tr_key and e.state in REGISTERED_STATES:
                    return s, e
        return None

    def _control(self, header: dict[str, Any], body: dict[str, Any]) -> None:
        r = self.rules
        code = body.get("msg_cd")
        code = code if isinstance(code, str) else ""
        message = body.get("msg1")
        message = message if isinstance(message, str) else ""
        rt_cd = body.get("rt_cd")
        if not isinstance(rt_cd, str):
            known = r.ws_codes.get(code)
            rt_cd = known.get("rt_cd") if known else None
        success = rt_cd == r.success_rt_cd
        found = self._find(header)
        sub = found[0] if found else None

        if not success:
            self.stats.broker_errors += 1
            err: BrokerError
            if code in r.approval_codes:
                err = AuthError(code, message, retryable=True)
            else:
                err = BrokerError(code, message)
            self._events.append(
                BrokerErrorReceived(
                    err, sub.tr_id if sub else None, sub.tr_key if sub else None, source=SOURCE
                )
            )

        if code and code == r.in_use_code:
            self._close_for(
                ConnEvent.SESSION_IN_USE,
                "session_in_use",
                OpenSocket("session_in_use", min_delay_s=r.in_use_backoff_s),
                code=code,
                detail=f"{code} {message}".strip(),
            )
            return
        if code and code in r.approval_codes:
            self._need_new_credential = True
            self._close_for(
                ConnEvent.CREDENTIAL_REJECTED,
                "auth_refresh",
                OpenSocket("auth_refresh", new_credential=True),
                code=code,
                detail=f"{code} {message}: new approval key, reconnect, resubscribe".strip(),
            )
            return
        if found is None:
            return
        key, entry = found
        if code and code == r.already_code:
            self._already_subscribed(key, entry, code)
        elif code and code in r.unsubscribe_codes:
            was = entry.state
            self._sub_event(key, entry, SubEvent.RELEASED)
            if was is SubState.RELEASING:
                self._status("unsubscribed", "ack", key, code=code)
                self._fill_slots()
        elif success:
            was = entry.state
            self._sub_event(key, entry, SubEvent.ACK)
            if was is not SubState.ACTIVE and entry.state is SubState.ACTIVE:
                self._status("subscribed", "ack", key, code=code)
        else:
            was = entry.state
            self._sub_event(key, entry, SubEvent.REFUSED)
            if entry.state is SubState.REJECTED and was is not SubState.REJECTED:
                over = code == r.over_limit_code
                self._status(
                    "over_cap" if over else "rejected",
                    "server_limit" if over else "refused",
                    key,
                    code=code,
                    detail=message,
                )
                self._fill_slots()

    def _already_subscribed(self, key: Subscription, entry: _Sub, code: str) -> None:
        r = self.rules
        if entry.state is not SubState.SUBSCRIBING:
            was = entry.state
            self._sub_event(key, entry, SubEvent.ALREADY)
            if was is SubState.RESETTING:
                self._status(
                    "subscribed",
                    "already_subscribed",
                    key,
                    code=code,
                    detail="the broker repeats it is registered; taken as registered",
                )
            return
        entry.resets += 1
        if r.force_release_header is not None:
            self._out.append(self._packet(key, r.force_release_header))
            detail = "force unsubscribe, then subscribe again"
        else:
            detail = "the clause lists no release: subscribe again"
        self._out.append(self._packet(key, r.subscribe_header))
        self._sub_event(key, entry, SubEvent.ALREADY)
        self._status("resubscribing", "already_subscribed", key, code=code, detail=detail)
