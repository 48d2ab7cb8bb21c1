"""REST time limits (REST-TIMEOUT, spec 1.2), judged from the mock's side of the connection.

The ``rest-timeout`` story makes the mock hold its answer to the target's first REST call far
longer than request_timeout_s. The mock traces ``abandoned`` when the client closes that
connection before the answer; the clause holds when that happens within request_timeout_s of the
request (real seconds, as the clause says: STOCKMON_TIME_SCALE does not shorten a round trip).
"""

from __future__ import annotations

from stockmon.conformance.evidence import Evidence
from stockmon.conformance.protocol import REAL_SLACK_S
from stockmon.conformance.registry import Verdict, check, failed, no_evidence, passed

HELD = "rest-held"  # the story's mark: the mock starts holding the next REST answer


@check("REST-TIMEOUT")
def a_held_rest_call_is_given_up_in_time(ev: Evidence) -> Verdict:
    """The first REST call after the mock began holding its answer is given up (the client closes
    the connection) within request_timeout_s real seconds."""
    limit_real = ev.spec.clause("REST-TIMEOUT").number("request_timeout_s")
    t_held = ev.marks.get(HELD)
    rest = [r for r in ev.records if r.get("channel") == "rest"]
    held = next(
        (
            r
            for r in rest
            if r.get("kind") == "request" and t_held is not None and r["t_spec"] >= t_held
        ),
        None,
    )
    if held is None:
        return no_evidence(
            "the target made no REST call while the mock held its answers",
            expected="a token or approval request",
        )
    ends = [r for r in rest if r.get("request_seq") == held["seq"]]
    end = ends[0] if ends else None
    what = f"{held.get('method')} {held.get('path')}"
    if end is None or end.get("kind") != "abandoned":
        return failed(
            f"{what}: the target was still waiting for the held answer "
            + ("when the story ended" if end is None else "when the mock finally answered"),
            expected=f"the call given up within {limit_real:g} real s (REST-TIMEOUT)",
            evidence=[held, *ends],
        )
    waited = (float(end["t_spec"]) - float(held["t_spec"])) / ev.time_scale
    if waited > limit_real + REAL_SLACK_S:
        return failed(
            f"{what} was given up after {waited:.1f} real s",
            expected=f"within {limit_real:g} real s (+{REAL_SLACK_S:g} s tolerance)",
            evidence=[held, end],
        )
    return passed(f"{what}, held by the mock, given up after {waited:.1f} real s")
