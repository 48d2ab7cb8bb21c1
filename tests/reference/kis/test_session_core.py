"""Sans-I/O session core: every policy driven with chosen spec times, no event loop, no sleeps."""

from __future__ import annotations

import json

import pytest
from stream_support import (
    APPROVAL,
    Wire,
    ack,
    code,
    data_frame,
    key_of,
    packet_kind,
    sample_fields,
    server_ping,
)

from stockmon.clock import FakeClock
from stockmon.reference.errors import AuthError, LocalProtocolError
from stockmon.reference.events import (
    BrokerErrorReceived,
    CloseSocket,
    DataReceived,
    MalformedFrame,
    OpenSocket,
    StatusChanged,
)
from stockmon.reference.kis.session import (
    REGISTERED_STATES,
    SUBSCRIPTION_TRANSITIONS,
    ConnState,
    SessionCore,
    SubEvent,
    SubState,
)
from stockmon.schemas import errors as schema_errors
from stockmon.settings import Subscription
from stockmon.spec import Spec, load_spec
from stockmon.spec.model import thaw

SPEC = load_spec("1.1")
SPEC10 = load_spec("1.0")
KR = Subscription("H0STCNT0", "005930")
US = Subscription("HDFSCNT0", "DNASAAPL")
BOOK = Subscription("H0STASP0", "000660")


def wire(spec: Spec = SPEC, *subs: Subscription, now: float = 0.0) -> Wire:
    """A started, connected core with ``subs`` wanted and acknowledged."""
    w = Wire(SessionCore(spec))
    for s in subs:
        w.core.subscribe(s, now)
    w.start(now)
    ok = code(spec, "PKT-UNSUBSCRIBE", "success_code") if spec.has("PKT-UNSUBSCRIBE") else None
    success = next(c for c, v in spec.codes["ws"].items() if v["rt_cd"] == "0" and c != ok)
    for s in subs:
        w.recv(ack(spec, s.tr_id, s.tr_key, success), now)
    w.sent.clear()
    return w


def pings(w: Wire) -> list[dict[str, object]]:
    return [p for p in w.take_sent() if packet_kind(w.core.spec, p) == "ping"]


def subscribe_code(spec: Spec) -> str:
    """The subscribe-success code (rt_cd success, not the unsubscribe one)."""
    ok = spec.clause("PKT-UNSUBSCRIBE").string("success_code")
    return next(c for c, v in spec.codes["ws"].items() if v["rt_cd"] == "0" and c != ok)


# ---------------------------------------------------------------- KA-PING / KA-HEARTBEAT / KA-TIMERS


class TestKaPing:
    def test_pings_at_exact_multiples_of_the_interval(self) -> None:
        """Pings go out at exactly 30, 60, 90 s of spec time after the socket opens (KA-PING)."""
        interval = SPEC.clause("KA-PING").number("interval_s")
        assert interval == 30
        clock = FakeClock()
        w = wire(SPEC, KR)
        times = []
        for _ in range(3):
            deadline = w.core.get_timer()
            assert deadline is not None
            clock.set(deadline)
            w.tick(clock.monotonic())
            if pings(w):
                times.append(clock.monotonic())
        assert times == [interval, 2 * interval, 3 * interval]

    def test_no_ping_before_the_interval(self) -> None:
        """A timer fired early, or any number of inbound frames, never makes a ping early."""
        w = wire(SPEC, KR)
        interval = w.core.rules.ping_interval_s
        frame = data_frame(SPEC, KR.tr_id, [sample_fields(SPEC.layout(KR.tr_id), KR.tr_key)])
        for t in (0.5, 10.0, 29.0, interval - 1e-6):
            w.recv(frame, t)
            w.tick(t)
        assert pings(w) == []
        w.tick(interval)
        assert len(pings(w)) == 1

    def test_ping_packet_is_the_spec_packet(self) -> None:
        """The ping is exactly the clause's packet and validates against its schema."""
        w = wire(SPEC)
        w.tick(w.core.rules.ping_interval_s)
        (sent,) = pings(w)
        assert sent == thaw(SPEC.clause("KA-PING").mapping("packet"))
        assert schema_errors("kis-ws-client-pingpong", sent) == []

    def test_sending_never_resets_last_inbound(self) -> None:
        """Pings and subscribes do not count as inbound: silence still ends in an idle close (KA-TIMERS)."""
        w = wire(SPEC, KR)
        idle = w.core.rules.idle_timeout_s
        t = 0.0
        while True:
            deadline = w.core.get_timer()
            assert deadline is not None
            t = deadline
            w.core.subscribe(Subscription("H0STCNT0", f"{int(t):06d}"), t)
            new = w.tick(t)
            if any(isinstance(e, CloseSocket) for e in new):
                break
        assert t == idle
        assert w.core.stats.pings_sent == int(idle // w.core.rules.ping_interval_s) - (
            1 if idle % w.core.rules.ping_interval_s == 0 else 0
        )

    def test_any_inbound_frame_resets_last_inbound(self) -> None:
        """A reflection, a data frame or an ack postpones the idle timeout (KA-TIMERS)."""
        w = wire(SPEC, KR)
        idle = w.core.rules.idle_timeout_s
        w.recv(json.dumps(thaw(SPEC.clause("KA-PING").mapping("packet"))), idle - 1)
        assert w.core.get_timer() is not None
        assert w.core.last_inbound == idle - 1
        w.tick(idle)
        assert not any(isinstance(e, CloseSocket) for e in w.events)

    def test_ping_spacing_is_never_below_the_interval_when_the_timer_fires_late(self) -> None:
        """A late timer moves the next ping later, never earlier (last-heartbeat = send time)."""
        w = wire(SPEC)
        interval = w.core.rules.ping_interval_s
        w.tick(interval + 7)
        assert w.core.get_timer() == pytest.approx(2 * interval + 7)


# ---------------------------------------------------------------- KA-SERVER-PINGPONG


class TestServerPingpong:
    def test_server_ping_is_echoed_verbatim_once(self) -> None:
        """A server PINGPONG is answered with a byte-identical text echo, exactly once."""
        w = wire(SPEC, KR)
        text = server_ping(SPEC)
        w.recv(text, 5)
        assert w.sent == [text]
        assert schema_errors("kis-ws-client-pingpong", json.loads(w.sent[0])) == []
        w.sent.clear()
        w.recv(text, 6)  # the same text again: our echo coming back, never answered twice
        assert w.sent == []
        w.recv(server_ping(SPEC, "20260826093155"), 100)
        assert len(w.sent) == 1

    def test_reflection_of_our_ping_is_never_answered(self) -> None:
        """A server that reflects every ping gets one ping per interval and no echoes (no storm)."""
        w = wire(SPEC, KR)
        horizon = 10 * w.core.rules.ping_interval_s
        t = 0.0
        all_sent: list[str] = []
        while t < horizon:
            deadline = w.core.get_timer()
            assert deadline is not None
            t = deadline
            w.tick(t)
            while w.sent:  # reflect everything the client sent, and whatever that provokes
                batch = list(w.sent)
                w.sent.clear()
                all_sent.extend(batch)
                for text in batch:
                    w.recv(text, t)
        kinds = [packet_kind(SPEC, json.loads(p)) for p in all_sent]
        assert kinds == ["ping"] * 10
        assert w.core.stats.echoes_sent == 0
        assert w.core.stats.reflections == 10

    def test_reflection_with_extra_whitespace_is_still_a_reflection(self) -> None:
        """A re-serialised copy of our ping (spaces after ':') is recognised as ours."""
        w = wire(SPEC)
        tr_id = SPEC.clause("KA-PING").string("tr_id")
        w.recv(json.dumps({"header": {"tr_id": tr_id}}, separators=(", ", ": ")), 1)
        assert w.sent == []

    def test_version_without_the_erratum_does_not_answer(self) -> None:
        """Spec 1.0 has no KA-SERVER-PINGPONG: a server PINGPONG is inbound traffic, not a question."""
        w = wire(SPEC10, KR)
        w.recv(server_ping(SPEC10), 5)
        assert w.sent == []
        assert w.core.last_inbound == 5


# ---------------------------------------------------------------- POL-IDLE-RECONNECT


class TestIdleReconnect:
    def test_silence_closes_then_opens_then_resubscribes_everything(self) -> None:
        """After idle_timeout_s without a frame: close, (closed) open, every subscription resent."""
        w = wire(SPEC, KR, US, BOOK)
        idle = w.core.rules.idle_timeout_s
        assert idle == 600
        t = 0.0
        while not w.want_close:
            deadline = w.core.get_timer()
            assert deadline is not None
            t = deadline
            w.tick(t)
        assert t == idle
        assert w.want_open is None, "open requested before the old socket closed"
        w.sent.clear()
        w.close(t + 0.1)
        assert isinstance(w.want_open, OpenSocket)
        assert w.want_open.reason == "idle_timeout"
        w.connect(t + 0.2)
        resent = [key_of(p) for p in w.take_sent() if packet_kind(SPEC, p) == "subscribe"]
        assert resent == [(s.tr_id, s.tr_key) for s in (KR, US, BOOK)]
        assert any(s.state == "reconnecting" and s.reason == "idle_timeout" for s in w.statuses())

    def test_actions_follow_the_clause(self) -> None:
        """The requests come in the order the clause lists its actions (close, open)."""
        w = wire(SPEC, KR)
        w.tick(w.core.rules.idle_timeout_s)
        w.close(w.core.rules.idle_timeout_s)
        seen = [
            {"CloseSocket": "close", "OpenSocket": "open"}[type(e).__name__]
            for e in w.events
            if isinstance(e, CloseSocket | OpenSocket)
        ][1:]  # drop the startup OpenSocket
        assert seen == list(SPEC.clause("POL-IDLE-RECONNECT").strings("actions"))

    def test_peer_drop_reconnects_and_resubscribes(self) -> None:
        """A socket lost under us is replaced (WS-SINGLE-SOCKET on_loss) and every key resent."""
        w = wire(SPEC, KR, US)
        w.close(42, code=None)
        assert w.want_open is not None and w.want_open.reason == "socket_closed"
        w.connect(43)
        assert sorted(key_of(p) for p in w.take_sent()) == sorted(
            [(KR.tr_id, KR.tr_key), (US.tr_id, US.tr_key)]
        )


# ---------------------------------------------------------------- POL-ALREADY-SUBSCRIBED


class TestAlreadySubscribed:
    def test_unsubscribe_then_subscribe_that_key_only(self) -> None:
        """The already-subscribed code releases that key then subscribes it again, in that order."""
        w = Wire(SessionCore(SPEC))
        for s in (KR, US, BOOK):
            w.core.subscribe(s, 0)
        w.start(0)
        w.sent.clear()
        already = code(SPEC, "POL-ALREADY-SUBSCRIBED", "code")
        w.recv(ack(SPEC, US.tr_id, US.tr_key, already), 1)
        sent = w.take_sent()
        assert [(packet_kind(SPEC, p), key_of(p)) for p in sent] == [
            ("unsubscribe", (US.tr_id, US.tr_key)),
            ("subscribe", (US.tr_id, US.tr_key)),
        ]
        assert list(SPEC.clause("POL-ALREADY-SUBSCRIBED").strings("actions")) == [
            "unsubscribe",
            "subscribe",
        ]
        assert schema_errors("kis-ws-unsubscribe", sent[0]) == []
        assert schema_errors("kis-ws-subscribe", sent[1]) == []
        # the answers to both packets settle the key as active
        w.recv(ack(SPEC, US.tr_id, US.tr_key, code(SPEC, "PKT-UNSUBSCRIBE", "success_code")), 2)
        w.recv(ack(SPEC, US.tr_id, US.tr_key, subscribe_code(SPEC)), 2)
        assert w.core.subscriptions[US] is SubState.ACTIVE
        assert w.take_sent() == []

    def test_repeated_already_subscribed_does_not_loop(self) -> None:
        """A broker that answers already-subscribed again gets no third packet: taken as registered."""
        w = Wire(SessionCore(SPEC))
        w.core.subscribe(KR, 0)
        w.start(0)
        w.sent.clear()
        already = code(SPEC, "POL-ALREADY-SUBSCRIBED", "code")
        for t in range(1, 6):
            w.recv(ack(SPEC, KR.tr_id, KR.tr_key, already), t)
        assert len(w.take_sent()) == 2
        assert w.core.subscriptions[KR] is SubState.ACTIVE

    def test_version_1_0_force_release_borrows_the_broker_packet(self) -> None:
        """1.0 demands the release (actions) but has no packet for it: the broker's one is borrowed."""
        assert not SPEC10.has("PKT-UNSUBSCRIBE")
        assert "unsubscribe" in SPEC10.clause("POL-ALREADY-SUBSCRIBED").strings("actions")
        w = Wire(SessionCore(SPEC10))
        w.core.subscribe(KR, 0)
        w.start(0)
        w.sent.clear()
        w.recv(ack(SPEC10, KR.tr_id, KR.tr_key, code(SPEC10, "POL-ALREADY-SUBSCRIBED", "code")), 1)
        sent = w.take_sent()
        assert [(packet_kind(SPEC10, p), key_of(p)) for p in sent] == [
            ("unsubscribe", (KR.tr_id, KR.tr_key)),
            ("subscribe", (KR.tr_id, KR.tr_key)),
        ]
        assert (
            sent[0]["header"]["tr_type"]
            == SPEC.clause("PKT-UNSUBSCRIBE").mapping("header")["tr_type"]
        )

    def test_version_1_0_user_unsubscribe_is_local(self) -> None:
        """Under 1.0 an unsubscribe() the user asks for sends no packet (none is defined) and says so."""
        w = wire(SPEC10, KR)
        w.core.unsubscribe(KR, 1)
        w.drain()
        assert w.sent == []
        assert KR not in w.core.subscriptions
        status = [s for s in w.statuses() if s.state == "unsubscribed"]
        assert status and "no release packet" in status[-1].detail


# ---------------------------------------------------------------- PKT-SUBSCRIBE / PKT-UNSUBSCRIBE


class TestPackets:
    def test_subscribe_packet_values_come_from_the_clause(self) -> None:
        """Header custtype/tr_type/content-type and body.input tr_id/tr_key as PKT-SUBSCRIBE says."""
        w = Wire(SessionCore(SPEC))
        w.core.subscribe(KR, 0)
        w.start(0)
        (pkt,) = w.take_sent()
        assert pkt["header"] == {
            "approval_key": APPROVAL,
            **SPEC.clause("PKT-SUBSCRIBE").mapping("header"),
        }
        assert pkt["body"] == {"input": {"tr_id": KR.tr_id, "tr_key": KR.tr_key}}
        assert schema_errors("kis-ws-subscribe", pkt) == []

    def test_unsubscribe_packet_and_ack(self) -> None:
        """unsubscribe() sends the PKT-UNSUBSCRIBE shape; its ack forgets the key."""
        w = wire(SPEC, KR)
        w.core.unsubscribe(KR, 1)
        w.drain()
        (pkt,) = w.take_sent()
        assert (
            pkt["header"]["tr_type"] == SPEC.clause("PKT-UNSUBSCRIBE").mapping("header")["tr_type"]
        )
        assert schema_errors("kis-ws-unsubscribe", pkt) == []
        assert w.core.subscriptions[KR] is SubState.RELEASING
        w.recv(ack(SPEC, KR.tr_id, KR.tr_key, code(SPEC, "PKT-UNSUBSCRIBE", "success_code")), 2)
        assert KR not in w.core.subscriptions
        assert any(s.state == "unsubscribed" for s in w.statuses())

    def test_subscriptions_wait_for_a_socket(self) -> None:
        """subscribe() before the socket opens sends nothing until connected()."""
        w = Wire(SessionCore(SPEC))
        w.core.set_credential(APPROVAL)
        w.core.subscribe(KR, 0)
        w.core.start(0)
        w.drain()
        assert w.sent == []
        w.connect(1)
        assert len(w.sent) == 1

    def test_approval_key_never_in_events_or_reprs(self) -> None:
        """The approval key goes on the wire only, never into an event or the core's repr."""
        w = wire(SPEC, KR)
        w.tick(w.core.get_timer() or 0)
        assert APPROVAL not in repr(w.events)
        assert APPROVAL not in repr(w.core.__dict__ if hasattr(w.core, "__dict__") else w.core)


# ---------------------------------------------------------------- WS-SESSION-LIMITS


class TestSessionLimits:
    def test_never_more_than_the_cap_rest_reported(self) -> None:
        """Beyond max_registrations nothing is sent; each extra key is reported once as over_cap."""
        cap = SPEC.clause("WS-SESSION-LIMITS").integer("max_registrations")
        w = Wire(SessionCore(SPEC))
        subs = [Subscription("H0STCNT0", f"{i:06d}") for i in range(cap + 4)]
        for s in subs:
            w.core.subscribe(s, 0)
        w.start(0)
        assert len(w.take_sent()) == cap
        over = [s for s in w.statuses() if s.state == "over_cap"]
        assert [s.key for s in over] == [s.tr_key for s in subs[cap:]]
        assert w.core.registrations == cap
        # releasing one frees one slot for the first waiting key
        w.core.unsubscribe(subs[0], 1)
        w.drain()
        w.recv(
            ack(SPEC, subs[0].tr_id, subs[0].tr_key, code(SPEC, "PKT-UNSUBSCRIBE", "success_code")),
            2,
        )
        sent = w.take_sent()
        assert [(packet_kind(SPEC, p), key_of(p)) for p in sent] == [
            ("unsubscribe", (subs[0].tr_id, subs[0].tr_key)),
            ("subscribe", (subs[cap].tr_id, subs[cap].tr_key)),
        ]
        assert w.core.registrations == cap

    def test_server_over_limit_is_reported_not_retried(self) -> None:
        """The over-limit code marks that key and reports it; no retry in the same session."""
        w = Wire(SessionCore(SPEC))
        w.core.subscribe(KR, 0)
        w.start(0)
        w.sent.clear()
        w.recv(
            ack(SPEC, KR.tr_id, KR.tr_key, code(SPEC, "WS-SESSION-LIMITS", "over_limit_code")), 1
        )
        assert w.sent == []
        assert w.core.subscriptions[KR] is SubState.REJECTED
        assert any(s.state == "over_cap" and s.key == KR.tr_key for s in w.statuses())

    def test_in_use_closes_backs_off_and_reconnects(self) -> None:
        """The in-use code: close, then one new socket no sooner than in_use_backoff_s, never two."""
        limits = SPEC.clause("WS-SESSION-LIMITS")
        w = wire(SPEC, KR)
        in_use = json.dumps(
            {
                "header": {"tr_id": "(null)", "tr_key": ""},
                "body": {
                    "rt_cd": limits.string("in_use_rt_cd"),
                    "msg_cd": limits.string("in_use_code"),
                    "msg1": "ALREADY IN USE appkey",
                },
            }
        )
        w.recv(in_use, 3)
        assert w.want_close is not None and w.want_open is None
        w.close(3.5)
        assert w.want_open is not None
        assert w.want_open.min_delay_s == limits.number("in_use_backoff_s")
        assert list(limits.strings("on_in_use")) == ["close", "backoff", "reconnect"]
        status = next(s for s in w.statuses() if s.reason == "session_in_use")
        assert status.code == limits.string("in_use_code") and status.backoff_s == limits.number(
            "in_use_backoff_s"
        )


# ---------------------------------------------------------------- POL-AUTH-FAILED / ERR-WS-BODY


class TestErrors:
    def test_invalid_approval_key_new_key_reconnect_resubscribe(self) -> None:
        """The WS auth code: close, open with a new approval key, resubscribe everything."""
        clause = SPEC.clause("POL-AUTH-FAILED")
        (ws_code,) = clause.strings("ws_codes")
        w = wire(SPEC, KR, US)
        w.recv(ack(SPEC, KR.tr_id, KR.tr_key, ws_code), 1)
        err = next(e for e in w.events if isinstance(e, BrokerErrorReceived))
        assert isinstance(err.error, AuthError) and err.error.retryable
        w.close(1.1)
        assert w.want_open is not None and w.want_open.new_credential
        w.core.set_credential("b" * 36)
        w.connect(2)
        sent = w.take_sent()
        assert {key_of(p) for p in sent} == {(KR.tr_id, KR.tr_key), (US.tr_id, US.tr_key)}
        assert all(p["header"]["approval_key"] == "b" * 36 for p in sent)
        assert list(clause.strings("ws_actions")) == [
            "new_approval_key",
            "reconnect",
            "resubscribe",
        ]

    def test_error_body_becomes_a_typed_event(self) -> None:
        """A bare ERR-WS-BODY {"body":{"msg1","msg_cd"}} is a BrokerErrorReceived with code and text."""
        w = wire(SPEC, KR)
        w.recv(
            json.dumps(
                {"body": {"msg1": "JSON PARSING ERROR : invalid json format", "msg_cd": "OPSP9999"}}
            ),
            1,
        )
        (err,) = [e for e in w.events if isinstance(e, BrokerErrorReceived)]
        assert err.error.code == "OPSP9999" and "invalid json" in err.error.message
        assert w.core.state is ConnState.OPEN

    def test_refused_key_is_rejected_and_reported(self) -> None:
        """Another error for a pending key rejects that key only and says so."""
        w = Wire(SessionCore(SPEC))
        w.core.subscribe(KR, 0)
        w.core.subscribe(US, 0)
        w.start(0)
        w.recv(ack(SPEC, US.tr_id, US.tr_key, "OPSP8992"), 1)
        assert w.core.subscriptions[US] is SubState.REJECTED
        assert w.core.subscriptions[KR] is SubState.SUBSCRIBING
        assert any(s.state == "rejected" and s.code == "OPSP8992" for s in w.statuses())

    def test_garbage_is_counted_and_the_session_goes_on(self) -> None:
        """Non-JSON text, JSON that is not an object and broken data frames become MalformedFrame."""
        w = wire(SPEC, KR)
        for i, text in enumerate(
            ["hello", "[1,2]", "0|H0STCNT0|001|x^y", "0|NOPE0000|001|x", "1|H0STCNT0|001|zz"]
        ):
            w.recv(text, i)
        assert w.core.stats.malformed == 5 and len(w.malformed()) == 5
        assert w.core.state is ConnState.OPEN
        assert w.core.last_inbound == 4


# ---------------------------------------------------------------- WS-SINGLE-SOCKET and the tables


class TestSingleSocket:
    def test_connected_while_open_is_our_bug(self) -> None:
        """A second connected() while a socket is open raises LocalProtocolError."""
        w = wire(SPEC)
        with pytest.raises(LocalProtocolError):
            w.core.connected(1)

    def test_every_peer_answer_is_defined_in_every_state_that_waits(self) -> None:
        """The subscription table answers every peer event in every state that can receive one."""
        peer = {SubEvent.ACK, SubEvent.ALREADY, SubEvent.REFUSED, SubEvent.RELEASED}
        for state in REGISTERED_STATES | {SubState.REJECTED}:
            for ev in peer:
                assert (state, ev) in SUBSCRIPTION_TRANSITIONS, (state, ev)

    def test_stop_closes_and_stays_closed(self) -> None:
        """stop() closes the open socket and no OpenSocket follows."""
        w = wire(SPEC, KR)
        w.core.stop(1)
        w.drain()
        assert w.want_close is not None
        w.close(2)
        assert w.want_open is None and w.core.state is ConnState.STOPPED
        assert w.core.get_timer() is None
        assert [s.state for s in w.statuses()][-1] == "stopped"


def test_data_frames_become_data_events() -> None:
    """A multi-record data frame is one DataReceived with every record, typed (PKT-DATA-FRAME)."""
    w = wire(SPEC, KR)
    layout = SPEC.layout(KR.tr_id)
    recs = [sample_fields(layout, KR.tr_key, n) for n in range(3)]
    w.recv(data_frame(SPEC, KR.tr_id, recs), 1)
    (ev,) = w.data()
    assert isinstance(ev, DataReceived)
    prices = [r.price for r in ev.records.records]  # type: ignore[attr-defined]
    assert prices == [int(r[layout.index("STCK_PRPR")]) for r in recs]
    assert isinstance(w.statuses()[0], StatusChanged)


def _seen(w: Wire) -> list[object]:
    """What the core left for the shell, comparable across two cores (frames as their lines)."""
    w.drain()
    seen: list[object] = [tuple(w.sent), w.core.stats, w.core.last_inbound, w.core.state]
    for ev in w.events:
        if isinstance(ev, DataReceived):
            seen.append(ev.records.json_lines(ev.source))
        elif isinstance(ev, MalformedFrame):
            seen.append((type(ev.error), str(ev.error), ev.excerpt))
        else:
            seen.append(ev)
    return seen


def test_texts_received_leaves_what_text_received_for_each_leaves() -> None:
    """A read's frames given at once (the shell's hot path) equal one text_received per frame."""
    layout = SPEC.layout(KR.tr_id)
    texts = [
        data_frame(SPEC, KR.tr_id, [sample_fields(layout, KR.tr_key, 0)]),
        f"0|{KR.tr_id}|001|not^enough^fields",
        server_ping(SPEC),
        data_frame(SPEC, KR.tr_id, [sample_fields(layout, KR.tr_key, n) for n in range(2)]),
        "neither data nor JSON",
        ack(SPEC, US.tr_id, US.tr_key, subscribe_code(SPEC)),
        data_frame(SPEC, KR.tr_id, [sample_fields(layout, KR.tr_key, 3)]),
    ]
    one, batch = wire(SPEC, KR, US), wire(SPEC, KR, US)
    for text in texts:
        one.core.text_received(text, 5.0)
    batch.core.texts_received(texts, 5.0)
    one.core.text_received(texts[0], 7.0)  # a read of data frames only
    batch.core.texts_received(texts[:1], 7.0)
    assert _seen(batch) == _seen(one)
    assert len(batch.data()) == 4 and len(batch.malformed()) == 2
