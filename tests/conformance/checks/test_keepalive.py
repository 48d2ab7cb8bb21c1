"""Keep-alive checks on hand-made traces (KA-PING, KA-HEARTBEAT, KA-TIMERS)."""

from __future__ import annotations

import pytest

from stockmon.conformance.checks import keepalive
from stockmon.conformance.errors import HarnessError
from stockmon.conformance.registry import Outcome

from ..traces import PING, Trace


def test_pings_every_interval_pass_and_fail() -> None:
    """Pings 30 s apart pass; a 50 s gap fails with the two records that frame it."""
    tr = Trace()
    tr.open(0, "ws-1")
    for t in (30, 60, 90):
        tr.text(t, "ws-1", "in", PING)
    assert keepalive.pings_sent_every_interval(tr.evidence(100)).outcome is Outcome.PASS
    tr.text(140, "ws-1", "in", PING)
    verdict = keepalive.pings_sent_every_interval(tr.evidence(150))
    assert verdict.outcome is Outcome.FAIL
    assert [r["t_spec"] for r in verdict.evidence] == [90, 140]


def test_reflection_answered_at_once_is_a_ping_storm() -> None:
    """A ping right after the reflection of the previous one is an answer to it."""
    tr = Trace()
    tr.open(0, "ws-1")
    tr.text(30, "ws-1", "in", PING)
    tr.text(30.01, "ws-1", "out", PING)
    assert keepalive.reflected_pings_not_answered(tr.evidence(40)).outcome is Outcome.PASS
    tr.text(30.5, "ws-1", "in", PING)
    assert keepalive.reflected_pings_not_answered(tr.evidence(40)).outcome is Outcome.FAIL


def test_closes_after_the_stop_are_not_the_clients_doing() -> None:
    """A socket closed because the harness sent SIGTERM is not an idle reconnect."""
    tr = Trace()
    tr.open(0, "ws-1")
    tr.text(5, "ws-1", "out", PING)
    tr.close(101, "ws-1")
    assert keepalive.inbound_frames_reset_idle_timer(tr.evidence(100)).outcome is Outcome.PASS


def test_sockets_the_target_kept_losing_fail_for_no_evidence() -> None:
    """No socket lived a ping interval and no fault was injected: the target fails, not the harness."""
    tr = Trace()
    for i in range(5):
        tr.open(10.0 * i, f"ws-{i}")
        tr.close(10.0 * i + 0.3, f"ws-{i}", by="server")
    verdict = keepalive.pings_sent_every_interval(tr.evidence(60))
    assert verdict.outcome is Outcome.FAIL
    assert verdict.summary.startswith("no evidence: none of the target's 5 socket(s)")


def test_short_sockets_after_an_injected_fault_are_the_harness_s() -> None:
    """The same with a fault in the scenario: the harness did not make its situation (an error)."""
    tr = Trace()
    tr.add(0.0, "control", "event", "fault", name="drop_socket")
    tr.open(1.0, "ws-1")
    tr.close(1.3, "ws-1", by="server")
    with pytest.raises(HarnessError):
        keepalive.pings_sent_every_interval(tr.evidence(60))
