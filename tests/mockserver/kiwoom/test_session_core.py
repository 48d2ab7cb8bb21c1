"""Sans-I/O Kiwoom server session, driven with explicit times (no sockets, no event loop, no sleeps)."""

from __future__ import annotations

import json
from typing import Any

from stockmon.mockserver.config import KiwoomMockConfig
from stockmon.mockserver.core import Close, Send
from stockmon.mockserver.core import SessionState as KState
from stockmon.mockserver.kiwoom.market import KiwoomMarket
from stockmon.mockserver.kiwoom.profile import load_kiwoom_profile
from stockmon.mockserver.kiwoom.session import KiwoomServerSession
from stockmon.mockserver.kiwoom.state import KiwoomWorld
from stockmon.mockserver.simulator import MarketSimulator
from stockmon.mockserver.trace import Trace
from stockmon.spec import load_spec

SPEC = load_spec("1.1")
PROTO = SPEC.clause("KIWOOM-PROTOCOL")
MP = SPEC.mock_profile["kiwoom"]
LOGIN, REG, REMOVE = (
    PROTO.string("first_message"),
    PROTO.string("subscribe"),
    PROTO.string("unsubscribe"),
)
PING, REAL, SYSTEM = PROTO.string("ping"), PROTO.string("data"), PROTO.string("system")
CODES = PROTO.mapping("system_codes")


def make(**overrides: Any) -> tuple[KiwoomWorld, KiwoomServerSession]:
    """A world and one session opened at t=0."""
    config = KiwoomMockConfig(**overrides)
    profile = load_kiwoom_profile(config.spec_version)
    sim = MarketSimulator(load_spec(config.spec_version), config.seed, config.symbols)
    world = KiwoomWorld(config, profile, Trace(), sim, 1_700_000_000.0)
    return world, KiwoomServerSession(world, KiwoomMarket(profile, sim), "kiwoom-ws-1", 0.0)


def sent(session: KiwoomServerSession) -> list[dict[str, Any]]:
    """The JSON objects of the Send items queued so far."""
    return [json.loads(x.text) for x in session.data_to_send() if isinstance(x, Send)]


def reg(items: list[str], types: list[str], refresh: str = "1", trnm: str = REG) -> str:
    """A REG/REMOVE text."""
    body: dict[str, Any] = {
        "trnm": trnm,
        "grp_no": PROTO.string("grp_no"),
        "data": [{"item": items, "type": types}],
    }
    if trnm == REG:
        body["refresh"] = refresh
    return json.dumps(body)


def login(world: KiwoomWorld, s: KiwoomServerSession, now: float = 0.0) -> None:
    """LOGIN with a freshly issued token, and drop the ack."""
    token = world.auth.issue(world.app_key, now)
    s.receive_text(json.dumps({"trnm": LOGIN, "token": token.value}), now)
    [ack] = sent(s)
    assert ack["return_code"] == 0


def violations(world: KiwoomWorld) -> list[dict[str, Any]]:
    """Violation records so far."""
    return [r for r in world.trace.records() if r["kind"] == "violation"]


# ---------------------------------------------------------------- TOKEN-KIWOOM-SESSION
def test_prod_login_needs_a_live_token() -> None:
    """Prod profile: LOGIN without a token gets the login-failure ack (CODE=NNNN) and a close."""
    _world, s = make(env="prod")
    s.receive_text(json.dumps({"trnm": LOGIN}), 1.0)
    out = s.data_to_send()
    ack = json.loads(out[0].text)  # type: ignore[union-attr]
    assert ack["trnm"] == LOGIN and ack["return_code"] == MP["login_failure"]["return_code"]
    assert any(f"CODE={c}" in ack["return_msg"] for c in PROTO.strings("auth_failure_codes"))
    assert isinstance(out[-1], Close) and s.state is KState.CLOSING


def test_mock_login_without_token_is_accepted() -> None:
    """Mock profile: LOGIN may come without a token (TOKEN-KIWOOM-SESSION optional_in)."""
    world, s = make(env="mock")
    s.receive_text(json.dumps({"trnm": LOGIN}), 1.0)
    [ack] = sent(s)
    assert ack["return_code"] == 0 and s.state is KState.OPEN
    assert violations(world) == []


def test_expired_token_is_refused_even_in_mock_profile() -> None:
    """A token that is present must be live: an expired one is refused in either profile."""
    world, s = make(env="mock")
    token = world.auth.issue(world.app_key, 0.0)
    world.auth.expire_all(1.0)
    s.receive_text(json.dumps({"trnm": LOGIN, "token": token.value}), 2.0)
    assert sent(s)[0]["return_code"] != 0 and s.state is KState.CLOSING


# ---------------------------------------------------------------- KIWOOM-PROTOCOL
def test_reg_before_login_gets_r10004_and_close() -> None:
    """Anything but LOGIN first: SYSTEM no_login, then close; the REG is a recorded violation."""
    world, s = make()
    s.receive_text(reg(["005930"], ["0B"]), 1.0)
    out = s.data_to_send()
    system = json.loads(out[0].text)  # type: ignore[union-attr]
    assert system == {
        "trnm": SYSTEM,
        "code": CODES["no_login"],
        "message": MP["system_messages"][CODES["no_login"]],
    }
    assert isinstance(out[-1], Close)
    assert violations(world)


def test_no_login_in_time_gets_r10004() -> None:
    """No LOGIN within login_timeout_s: SYSTEM no_login and close."""
    _world, s = make(login_timeout_s=5.0, ping_period_s=0)
    assert s.get_timer() == 5.0
    s.handle_timer(5.0)
    out = s.data_to_send()
    assert json.loads(out[0].text)["code"] == CODES["no_login"]  # type: ignore[union-attr]
    assert isinstance(out[-1], Close)


def test_reg_acked_then_real_frames_with_several_entries() -> None:
    """REG is acked {trnm, return_code 0, return_msg}; REAL frames carry an entry per registration."""
    world, s = make(tick_rate_hz=1.0, ping_period_s=0, repeat_entry_probability=0.0)
    login(world, s)
    s.receive_text(reg(["005930", "000660"], ["0B"]), 1.0)
    assert sent(s) == [{"trnm": REG, "return_code": 0, "return_msg": ""}]
    s.handle_timer(2.0)
    [frame] = sent(s)
    assert frame["trnm"] == REAL
    assert [(e["type"], e["item"]) for e in frame["data"]] == [("0B", "005930"), ("0B", "000660")]
    values = frame["data"][0]["values"]
    layout = SPEC.kiwoom_layouts["0B"]
    assert set(values) == {f.fid for f in layout.fields}
    assert all(isinstance(v, str) for v in values.values())
    price = values[layout.roles["price"]]
    assert price[0] in "+- " and price[1:].isdigit()
    assert values[layout.roles["volume"]][0] in "+-"


def test_refresh_zero_replaces_registrations_and_remove_releases() -> None:
    """refresh "0" drops the previous registrations first; REMOVE releases one."""
    world, s = make(ping_period_s=0)
    login(world, s)
    s.receive_text(reg(["005930"], ["0B"]), 1.0)
    s.receive_text(reg(["000660"], ["0D"], refresh="0"), 1.0)
    assert list(s.registrations) == [("0D", "000660")]
    s.receive_text(reg(["000660"], ["0D"], trnm=REMOVE), 1.0)
    assert s.registrations == {}
    assert [a["trnm"] for a in sent(s)] == [REG, REG, REMOVE]


def test_reg_of_unknown_type_or_us_key_fails() -> None:
    """A type without a layout or a non-KR code: return_code reg_failure."""
    world, s = make(ping_period_s=0)
    login(world, s)
    s.receive_text(reg(["DNASAAPL"], ["0B"]), 1.0)
    s.receive_text(reg(["005930"], ["0A"]), 1.0)
    assert [a["return_code"] for a in sent(s)] == [MP["reg_failure"]["return_code"]] * 2
    assert s.registrations == {}


def test_only_verbatim_echo_answers_a_ping() -> None:
    """A re-serialised PING is a violation and counts as missed; the verbatim echo answers it."""
    world, s = make(ping_period_s=10.0, max_missed_pings=2, login_timeout_s=0)
    login(world, s)
    s.handle_timer(10.0)
    [ping] = [x for x in s.data_to_send() if isinstance(x, Send)]
    s.receive_text(json.dumps(json.loads(ping.text), separators=(", ", ": ")) + " ", 11.0)
    assert violations(world)[-1]["schema"] == "kiwoom-ping"
    s.handle_timer(20.0)  # one miss; a new ping
    [ping2] = [x for x in s.data_to_send() if isinstance(x, Send)]
    s.receive_text(ping2.text, 21.0)  # verbatim: answered, misses reset
    s.handle_timer(30.0)
    assert s.state is KState.OPEN


def test_missed_pings_get_r10002_and_close() -> None:
    """max_missed_pings unanswered in a row: SYSTEM heartbeat_missed, then close."""
    world, s = make(ping_period_s=10.0, max_missed_pings=3, login_timeout_s=0)
    login(world, s)
    for t in (10.0, 20.0, 30.0):
        s.handle_timer(t)
        assert s.state is KState.OPEN
    s.handle_timer(40.0)
    out = s.data_to_send()
    assert json.loads(out[-2].text)["code"] == CODES["heartbeat_missed"]  # type: ignore[union-attr]
    assert isinstance(out[-1], Close)


def test_second_login_with_same_appkey_evicts_the_older_session() -> None:
    """One session per app key: the older session gets SYSTEM replaced_by_new_login and closes."""
    world, s1 = make(ping_period_s=0)
    evicted: list[str] = []
    world.evict = lambda conn, now: evicted.append(conn) or s1.evict(now)  # type: ignore[func-returns-value]
    login(world, s1)
    s2 = KiwoomServerSession(world, s1.market, "kiwoom-ws-2", 1.0)
    login(world, s2, 1.0)
    assert evicted == ["kiwoom-ws-1"]
    out = s1.data_to_send()
    assert json.loads(out[0].text)["code"] == CODES["replaced_by_new_login"]  # type: ignore[union-attr]
    assert isinstance(out[-1], Close) and s2.state is KState.OPEN


def test_stall_sends_nothing_until_it_ends() -> None:
    """While stalled no PING and no REAL; acks are held and released when the stall ends."""
    world, s = make(ping_period_s=10.0, tick_rate_hz=1.0, login_timeout_s=0)
    world.faults.stall_until = 50.0
    s.receive_text(json.dumps({"trnm": LOGIN}), 1.0)
    assert s.data_to_send() == []
    assert s.get_timer() == 50.0
    s.handle_timer(50.0)
    assert sent(s)[0]["trnm"] == LOGIN
