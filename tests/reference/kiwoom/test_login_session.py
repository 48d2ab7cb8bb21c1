"""Kiwoom session core and REAL parser, sans-I/O: explicit times, no sockets, no event loop."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stockmon.reference.errors import FrameError, LocalProtocolError
from stockmon.reference.events import (
    BrokerErrorReceived,
    CloseSocket,
    DataReceived,
    MalformedFrame,
    OpenSocket,
    StatusChanged,
)
from stockmon.reference.kiwoom.frames import (
    BUY,
    SELL,
    KiwoomBook,
    KiwoomFrame,
    KiwoomParser,
    KiwoomTick,
)
from stockmon.reference.kiwoom.rules import KiwoomRules
from stockmon.reference.kiwoom.session import (
    KiwoomSessionCore,
)
from stockmon.reference.lifecycle import ConnState, SubState
from stockmon.settings import Subscription
from stockmon.spec import load_spec

SPEC = load_spec("1.1")
PROTO = SPEC.clause("KIWOOM-PROTOCOL")
TICK, BOOK = SPEC.kiwoom_layouts["0B"], SPEC.kiwoom_layouts["0D"]
KR_TICK, KR_BOOK, US_TICK = (
    Subscription("H0STCNT0", "005930"),
    Subscription("H0STASP0", "000660"),
    Subscription("HDFSCNT0", "DNASAAPL"),
)
LOGIN_TIMEOUT = 10.0


def core(env: str = "mock", token: str | None = "tok") -> KiwoomSessionCore:  # noqa: S107
    """A started core with a socket open (LOGIN sent) at t=0."""
    c = KiwoomSessionCore(SPEC, env=env, login_timeout_s=LOGIN_TIMEOUT)
    c.set_credential(token)
    for sub in (KR_TICK, KR_BOOK, US_TICK):
        c.subscribe(sub, 0.0)
    c.start(0.0)
    c.connected(0.0)
    return c


def events(c: KiwoomSessionCore) -> list[Any]:
    """Drain the events."""
    out = []
    while (ev := c.next_event()) is not None:
        out.append(ev)
    return out


def sent(c: KiwoomSessionCore) -> list[dict[str, Any]]:
    """Drain the frames, parsed."""
    return [json.loads(t) for t in c.data_to_send()]


def ack(trnm: str, rc: int = 0, msg: str = "") -> str:
    """A LOGIN/REG/REMOVE reply."""
    return json.dumps({"trnm": trnm, "return_code": rc, "return_msg": msg})


def logged_in() -> KiwoomSessionCore:
    """A core past LOGIN, with its REG frame drained."""
    c = core()
    sent(c)
    c.text_received(ack(PROTO.string("first_message")), 1.0)
    sent(c)
    events(c)
    return c


def tick_values(price: str = "-20800", volume: str = "+82") -> dict[str, str]:
    """0B values with the official example's shape."""
    return {
        TICK.roles["time"]: "165208",
        TICK.roles["price"]: price,
        TICK.roles["volume"]: volume,
        TICK.roles["cumulative_volume"]: "30379732",
    }


def book_values() -> dict[str, str]:
    """0D values: ten levels, signs on prices."""
    r = BOOK.roles
    v = {r["time"]: "165207"}
    for i, (ap, aq, bp, bq) in enumerate(
        zip(r["ask_prices"], r["ask_quantities"], r["bid_prices"], r["bid_quantities"], strict=True)
    ):
        v.update(
            {ap: f"-{20800 + 100 * i}", aq: str(10 + i), bp: f" {20700 - 100 * i}", bq: str(20 + i)}
        )
    return v


# ------------------------------------------------------------------ KIWOOM-PROTOCOL
def test_login_first_with_the_raw_token_then_nothing_until_the_ack() -> None:
    """LOGIN is the first frame (token without 'Bearer '); REG waits for the ack."""
    c = core()
    assert sent(c) == [{"trnm": PROTO.string("first_message"), "token": "tok"}]
    c.text_received(json.dumps({"trnm": PROTO.string("ping"), "seq": "1"}), 0.5)
    assert sent(c) == [{"trnm": PROTO.string("ping"), "seq": "1"}]  # PINGs are echoed even now
    c.text_received(ack(PROTO.string("first_message")), 1.0)
    [reg] = sent(c)
    assert reg == {
        "trnm": PROTO.string("subscribe"),
        "grp_no": PROTO.string("grp_no"),
        "refresh": PROTO.string("refresh_keep"),
        "data": [{"item": ["005930"], "type": ["0B"]}, {"item": ["000660"], "type": ["0D"]}],
    }
    assert c.state is ConnState.OPEN


def test_reg_ack_activates_and_us_keys_are_reported_unserved() -> None:
    """The REG reply answers the pending REG; a US subscription is reported once, never sent."""
    c = core()
    evs = events(c)
    unserved = [e for e in evs if isinstance(e, StatusChanged) and e.state == "unserved"]
    assert [(e.tr_id, e.key) for e in unserved] == [("HDFSCNT0", "DNASAAPL")]
    assert c.unserved == (US_TICK,)
    sent(c)
    c.text_received(ack(PROTO.string("first_message")), 1.0)
    sent(c)
    c.text_received(ack(PROTO.string("subscribe")), 1.5)
    assert set(c.registrations.values()) == {SubState.ACTIVE}
    assert {
        e.key for e in events(c) if isinstance(e, StatusChanged) and e.state == "subscribed"
    } == {"005930", "000660"}


def test_ping_echo_is_the_received_text_verbatim() -> None:
    """Whatever spacing or key order the PING has, the echo is byte for byte the same text."""
    c = logged_in()
    text = '{ "seq":"7" , "trnm" : "PING" }'
    c.text_received(text, 2.0)
    assert c.data_to_send() == [text]


def test_system_frames_are_reported_not_echoed() -> None:
    """SYSTEM heartbeat_missed: a broker_notice status, nothing sent."""
    c = logged_in()
    code = PROTO.mapping("system_codes")["heartbeat_missed"]
    c.text_received(json.dumps({"trnm": PROTO.string("system"), "code": code, "message": "m"}), 2.0)
    assert c.data_to_send() == []
    [ev] = events(c)
    assert isinstance(ev, StatusChanged) and ev.code == code and ev.reason == "heartbeat_missed"


def test_replaced_by_new_login_closes_and_backs_off() -> None:
    """SYSTEM replaced_by_new_login: close, next socket no sooner than the in-use back-off."""
    c = logged_in()
    code = PROTO.mapping("system_codes")["replaced_by_new_login"]
    c.text_received(json.dumps({"trnm": "SYSTEM", "code": code, "message": "m"}), 2.0)
    assert any(isinstance(e, CloseSocket) for e in events(c))
    c.closed(3.0, 1000)
    [ev] = [e for e in events(c) if isinstance(e, OpenSocket)]
    assert ev.min_delay_s == SPEC.clause("WS-SESSION-LIMITS").number("in_use_backoff_s")


def test_real_frame_with_several_entries_becomes_one_record_each() -> None:
    """REAL with entries of both types and both key orders: typed records, signs stripped."""
    c = logged_in()
    frame = {
        "data": [
            {"type": "0B", "name": "n", "item": "005930", "values": tick_values()},
            {"values": book_values(), "type": "0D", "name": "n", "item": "000660"},
            {"type": "0B", "name": "n", "item": "005930", "values": tick_values(" 20850", "-3")},
        ],
        "trnm": PROTO.string("data"),
    }
    c.text_received(json.dumps(frame), 2.0)
    [data] = events(c)
    assert isinstance(data, DataReceived) and data.source == "kiwoom"
    assert isinstance(data.records, KiwoomFrame)
    t1, book, t2 = data.records.records
    assert t1 == KiwoomTick("0B", "005930", "165208", 20800, 82, BUY)
    assert t2 == KiwoomTick("0B", "005930", "165208", 20850, 3, SELL)
    assert (
        isinstance(book, KiwoomBook) and book.asks[0] == (20800, 10) and book.bids[0] == (20700, 20)
    )
    assert len(book.asks) == len(BOOK.roles["ask_prices"])
    assert data.records.kis_tr_ids == ("H0STCNT0", "H0STASP0", "H0STCNT0")


def test_a_bad_entry_is_dropped_the_others_kept() -> None:
    """A non-numeric price drops its entry (malformed, counted); the good entry still arrives."""
    c = logged_in()
    frame = {
        "trnm": "REAL",
        "data": [
            {"type": "0B", "name": "n", "item": "005930", "values": tick_values("abc")},
            {"type": "0B", "name": "n", "item": "005930", "values": tick_values()},
        ],
    }
    c.text_received(json.dumps(frame), 2.0)
    evs = events(c)
    assert isinstance(evs[0], MalformedFrame)
    assert isinstance(evs[1], DataReceived) and evs[1].records.count == 1
    assert c.stats.malformed == 1


def test_parser_rejects_missing_fids() -> None:
    """An entry without its price FID is a FrameError naming the FID."""
    values = tick_values()
    del values[TICK.roles["price"]]
    with pytest.raises(FrameError, match=TICK.roles["price"]):
        KiwoomParser(SPEC.kiwoom_layouts).entry({"type": "0B", "item": "005930", "values": values})


# ------------------------------------------------------------------ TOKEN-KIWOOM-SESSION
def test_prod_needs_a_token_before_connecting() -> None:
    """In prod a LOGIN without a token is our own bug: connected() refuses it."""
    c = KiwoomSessionCore(SPEC, env="prod", login_timeout_s=LOGIN_TIMEOUT)
    c.start(0.0)
    with pytest.raises(LocalProtocolError, match="TOKEN-KIWOOM-SESSION"):
        c.connected(0.0)


def test_mock_env_logs_in_without_a_token() -> None:
    """In the mock environment LOGIN may go without a token."""
    c = core(env="mock", token=None)
    assert sent(c) == [{"trnm": PROTO.string("first_message")}]


def test_auth_refusal_asks_for_a_new_token_then_reconnects() -> None:
    """LOGIN refused with CODE=8005: retryable AuthError, close, then OpenSocket(new token)."""
    c = core()
    sent(c)
    c.text_received(
        ack("LOGIN", 805004, "인증에 실패했습니다[CODE=8005:Token이 유효하지 않습니다]"), 1.0
    )
    evs = events(c)
    err = next(e for e in evs if isinstance(e, BrokerErrorReceived))
    assert err.error.code == "8005" and getattr(err.error, "retryable", False)
    assert any(isinstance(e, CloseSocket) for e in evs)
    c.closed(1.5, 1008)
    [op] = [e for e in events(c) if isinstance(e, OpenSocket)]
    assert op.new_credential and op.reason == "auth_refresh"


def test_login_unanswered_and_idle_close_then_reopen() -> None:
    """No LOGIN reply within the timeout: close and reopen; POL-IDLE-RECONNECT once logged in."""
    c = core()
    assert c.get_timer() == LOGIN_TIMEOUT
    c.handle_timer(LOGIN_TIMEOUT)
    assert any(isinstance(e, CloseSocket) for e in events(c))
    c2 = logged_in()
    idle = SPEC.clause("POL-IDLE-RECONNECT").number("idle_timeout_s")
    assert c2.get_timer() == 1.0 + idle
    c2.handle_timer(1.0 + idle)
    assert c2.state is ConnState.CLOSING


def test_socket_loss_registers_everything_again_after_the_next_login() -> None:
    """Registrations do not survive a socket: after reconnect, LOGIN, then the same REG again."""
    c = logged_in()
    c.text_received(ack("REG"), 1.5)
    c.closed(2.0, None)
    assert set(c.registrations.values()) == {SubState.QUEUED}
    assert any(isinstance(e, OpenSocket) for e in events(c))
    c.connected(3.0)
    assert [f["trnm"] for f in sent(c)] == ["LOGIN"]
    c.text_received(ack("LOGIN"), 3.5)
    assert [f["trnm"] for f in sent(c)] == ["REG"]


def test_unsubscribe_sends_remove_and_forgets_on_the_reply() -> None:
    """REMOVE on the wire for a registered key; forgotten when Kiwoom answers."""
    c = logged_in()
    c.text_received(ack("REG"), 1.5)
    c.unsubscribe(KR_TICK, 2.0)
    [remove] = sent(c)
    assert remove == {
        "trnm": PROTO.string("unsubscribe"),
        "grp_no": "1",
        "data": [{"item": ["005930"], "type": ["0B"]}],
    }
    c.text_received(ack("REMOVE"), 2.5)
    assert ("0B", "005930") not in c.registrations


def test_rules_map_kis_trs_to_kiwoom_types_by_market_and_kind() -> None:
    """H0STCNT0 -> 0B, H0STASP0 -> 0D, US TRs -> none (from the layouts, not from code)."""
    r = KiwoomRules.from_spec(SPEC)
    assert r.kiwoom_type(KR_TICK) == "0B" and r.kiwoom_type(KR_BOOK) == "0D"
    assert r.kiwoom_type(US_TICK) is None
    assert r.token_required("prod") and not r.token_required("mock")
    assert KiwoomRules.from_spec(load_spec("1.0")).login == PROTO.string("first_message")
