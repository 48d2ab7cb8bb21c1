"""Sans-I/O server session core, driven with explicit times (no sockets, no event loop, no sleeps)."""

from __future__ import annotations

import json

from stockmon.mockserver.config import MockConfig
from stockmon.mockserver.core import Close, Send, SessionState
from stockmon.mockserver.kis.profile import load_profile
from stockmon.mockserver.kis.session import ServerSession
from stockmon.mockserver.kis.state import World
from stockmon.mockserver.trace import Trace
from stockmon.mockserver.world import SubscribeError

from ..support import PING, code, sub


def make(**overrides: object) -> tuple[World, ServerSession, str]:
    """A world, one session opened at t=0 and an approval key of the world's appkey."""
    config = MockConfig(**overrides)  # type: ignore[arg-type]
    world = World(config, load_profile(config.spec_version), Trace(), wall0=1_700_000_000.0)
    session = ServerSession(world, "ws-1", 0.0)
    approval = world.auth.issue_approval(world.app_key, 0.0)
    return world, session, approval


def texts(session: ServerSession) -> list[Send]:
    """The Send items queued so far."""
    return [x for x in session.data_to_send() if isinstance(x, Send)]


def test_server_ping_schedule_and_grace_drop() -> None:
    """KA-SERVER-PINGPONG: ping at the period; unanswered past the grace -> Close."""
    world, s, _ = make()
    period = world.session_settings.server_pingpong_period_s
    grace = world.session_settings.unanswered_pingpong_grace_s
    assert period and grace
    assert s.get_timer() == period
    s.handle_timer(period)
    [ping] = texts(s)
    assert ping.frame == "pingpong" and json.loads(ping.text)["header"]["tr_id"] == PING
    assert s.get_timer() == period + grace
    s.handle_timer(period + grace)
    out = s.data_to_send()
    assert isinstance(out[-1], Close)
    assert s.state is SessionState.CLOSING


def test_answered_ping_cancels_drop() -> None:
    """A text echo (even re-serialised) answers the ping; the next timer is the next ping."""
    world, s, _ = make()
    period = world.session_settings.server_pingpong_period_s
    assert period
    s.handle_timer(period)
    [ping] = texts(s)
    s.receive_text(json.dumps(json.loads(ping.text), indent=1), period + 1)
    assert texts(s) == []  # an answer is never reflected
    assert s.get_timer() == 2 * period


def test_stall_holds_answers_and_skips_pings() -> None:
    """A stall sends nothing (pings included) and delivers held acks when it ends."""
    world, s, approval = make()
    period = world.session_settings.server_pingpong_period_s
    assert period
    world.faults.stall_until = period + 10
    s.receive_text(sub(approval, "H0STCNT0", "005930"), 1.0)
    assert texts(s) == []
    s.handle_timer(period)
    assert all(x.frame != "pingpong" for x in texts(s))
    assert s.get_timer() == period + 10
    s.handle_timer(period + 10)
    sent = texts(s)
    assert sent[0].msg_cd == code("subscribed")


def test_data_frames_follow_the_rate() -> None:
    """tick_rate_hz frames per spec second per registration, caught up after a gap."""
    _world, s, approval = make(tick_rate_hz=10, server_pingpong_period_s=0)
    s.receive_text(sub(approval, "H0STCNT0", "005930"), 0.0)
    s.data_to_send()
    assert s.get_timer() == 0.1
    s.handle_timer(0.55)
    frames = [x for x in texts(s) if x.frame == "data"]
    assert len(frames) == 5


def test_no_ping_when_period_off() -> None:
    """1.0 profile: no server PINGPONG timer at all."""
    _, s, _ = make(spec_version="1.0")
    assert s.get_timer() is None


def test_in_use_refusal_then_close() -> None:
    """A second session of a bound appkey gets the in-use code and a Close."""
    world, first, approval = make()
    first.receive_text(sub(approval, "H0STCNT0", "005930"), 0.0)
    second = ServerSession(world, "ws-2", 1.0)
    second.receive_text(sub(approval, "H0STCNT0", "005930"), 1.0)
    out = second.data_to_send()
    assert isinstance(out[0], Send) and out[0].msg_cd == code("appkey_in_use")
    assert isinstance(out[-1], Close)
    first.connection_lost(2.0, abrupt=False)
    third = ServerSession(world, "ws-3", 3.0)
    third.receive_text(sub(approval, "H0STCNT0", "005930"), 3.0)
    assert texts(third)[0].msg_cd == code("subscribed")


def test_slot_held_after_abrupt_disconnect() -> None:
    """appkey_slot_hold_s keeps the slot after an abrupt end, then frees it."""
    world, first, approval = make(appkey_slot_hold_s=60)
    first.receive_text(sub(approval, "H0STCNT0", "005930"), 0.0)
    first.connection_lost(1.0, abrupt=True)
    s2 = ServerSession(world, "ws-2", 2.0)
    s2.receive_text(sub(approval, "H0STCNT0", "005930"), 2.0)
    assert texts(s2)[0].msg_cd == code("appkey_in_use")
    s3 = ServerSession(world, "ws-3", 62.0)
    s3.receive_text(sub(approval, "H0STCNT0", "005930"), 62.0)
    assert texts(s3)[0].msg_cd == code("subscribed")


def test_injected_already_subscribed_keeps_registration() -> None:
    """An injected OPSP0002 behaves like the gateway's: the registration exists, data flows."""
    world, s, approval = make(server_pingpong_period_s=0)
    world.faults.subscribe_errors.append(SubscribeError(code("already_subscribed"), "005930", 1))
    s.receive_text(sub(approval, "H0STCNT0", "005930"), 0.0)
    assert texts(s)[0].msg_cd == code("already_subscribed")
    s.receive_text(sub(approval, "H0STCNT0", "005930", tr_type="2"), 0.1)
    assert texts(s)[0].msg_cd == code("unsubscribed")


def test_malformed_frames_fault() -> None:
    """Pending corruptions change the next data frames only."""
    world, s, approval = make(server_pingpong_period_s=0, tick_rate_hz=10, max_records_per_frame=1)
    s.receive_text(sub(approval, "H0STCNT0", "005930"), 0.0)
    s.data_to_send()
    world.faults.malformed.extend(["bad_count", "truncated"])
    s.handle_timer(0.35)
    frames = [x.text for x in texts(s) if x.frame == "data"]
    n = len(world.profile.spec.layout("H0STCNT0").fields)
    assert frames[0].split("|")[2] == "002" and len(frames[0].split("^")) == n
    assert len(frames[1].split("^")) < n
    assert len(frames[2].split("^")) == n
