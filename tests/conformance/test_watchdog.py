"""Judging is bounded: linear in the trace (a ping storm judged in a blink), and a watchdog fails
the target, not the harness, when judging still overruns its budget."""

from __future__ import annotations

import gc
import time

from stockmon.conformance.checks import keepalive
from stockmon.conformance.evidence import Evidence
from stockmon.conformance.registry import Check, Outcome, Verdict, passed, registered
from stockmon.conformance.runner import judge_within

from .traces import PING, Trace


def _storm(n: int) -> Evidence:
    """A socket on which every reflection of the client's ping is answered by another ping."""
    tr = Trace()
    tr.open(0.0, "ws-1")
    t = 0.0
    for _ in range(n):
        tr.text(t, "ws-1", "in", PING)
        t += 0.001
        tr.text(t, "ws-1", "out", PING)
        t += 0.001
    return tr.evidence(t + 1.0)


def _judge_s(ev: Evidence) -> float:
    """CPU seconds of this thread to judge ``ev``, the collector off: the work itself, not the
    wall time, which another test process on the same cores can stretch at random (it did in CI:
    27 ms, then 155 ms)."""
    chk = registered(keepalive.reflected_pings_not_answered)
    gc.disable()
    try:
        started = time.thread_time()
        verdict = chk.func(ev)
        spent = time.thread_time() - started
    finally:
        gc.enable()
    assert verdict.outcome is Outcome.FAIL and "ping storm" in verdict.summary
    return spent


def test_ping_storm_judging_is_linear_in_the_trace() -> None:
    """Doubling a ping storm at most about doubles the time to judge it (quadratic would be 4x)."""
    small, large = _storm(5_000), _storm(10_000)
    _judge_s(_storm(500))  # warm caches and imports
    pairs = [(_judge_s(small), _judge_s(large)) for _ in range(5)]  # interleaved: same conditions
    t_small, t_large = min(p[0] for p in pairs), min(p[1] for p in pairs)
    # no wall-clock slack: a quadratic judge (4x) must fail this, and CPU time is steady enough
    assert t_large < 3.0 * t_small + 0.002, (t_small, t_large)


def test_watchdog_fails_the_target_when_judging_overruns() -> None:
    """A check that never ends is stopped at the budget: a FAIL naming the unbounded evidence."""

    def endless(ev: Evidence) -> Verdict:
        while True:
            for _ in ev.records:
                pass

    def quick(ev: Evidence) -> Verdict:
        return passed("fine")

    checks = [
        Check("quick", ("KA-PING",), quick, "q"),
        Check("endless", ("KA-PING",), endless, "e"),
    ]
    ev = _storm(50)
    started = time.monotonic()
    verdicts = judge_within(checks, ev, lambda c: c.func(ev), budget_s=0.5)
    assert time.monotonic() - started < 5.0
    assert verdicts[0].ok
    assert verdicts[1].outcome is Outcome.FAIL
    assert "grew without bound" in verdicts[1].summary and "watchdog" in verdicts[1].summary
