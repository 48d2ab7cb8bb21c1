"""A fleet through a Redis outage (FLEET-REDIS-OUTAGE, spec 1.2), judged from the mock's sockets.

The ``redis-outage`` story runs two processes on one Redis, kills Redis for less than keep_s
while one of them holds the socket, and starts it again empty. The holder must keep its socket
through it (the outage policy's purpose: a monitoring fleet keeps streaming), and nobody may open
another socket while Redis is down or before keep_s has passed since it came back (the quarantine
lasts TTL + keep_s, at least keep_s, whatever lease TTL the fleet picked). That one socket stays
one is WS-SINGLE-SOCKET's check, run beside these.
"""

from __future__ import annotations

from stockmon.conformance.evidence import Evidence
from stockmon.conformance.protocol import slack
from stockmon.conformance.registry import Verdict, check, failed, no_evidence, passed

DOWN, UP = "redis-down", "redis-up"  # the story's marks around the outage


def _outage(ev: Evidence) -> tuple[float, float] | None:
    down, up = ev.marks.get(DOWN), ev.marks.get(UP)
    return None if down is None or up is None else (float(down), float(up))


@check("FLEET-REDIS-OUTAGE")
def holder_keeps_its_socket_through_a_short_outage(ev: Evidence) -> Verdict:
    """The socket open when Redis died, for less than keep_s, stays open until Redis is back."""
    keep = ev.spec.clause("FLEET-REDIS-OUTAGE").number("keep_s")
    outage = _outage(ev)
    if outage is None:
        return no_evidence("Redis was never taken down", expected="an outage shorter than keep_s")
    down, up = outage
    held = [s for s in ev.sockets() if s.open_at(down)]
    if not held:
        return no_evidence(
            "no socket was open when Redis went down", expected="a holder streaming at the outage"
        )
    s = held[0]
    if s.close_t is not None and s.close_t < up + slack(ev):
        return failed(
            f"{s.conn} was closed {s.close_t - down:.1f} spec s into a {up - down:.1f} spec s "
            f"Redis outage (keep_s {keep:g})",
            expected="the holder keeps its socket while Redis is down for less than keep_s",
            evidence=[r for r in (s.open_record, s.close_record) if r is not None],
        )
    return passed(f"{s.conn} stayed open through a {up - down:.1f} spec s Redis outage")


@check("FLEET-REDIS-OUTAGE")
def nobody_opens_a_socket_while_redis_is_down_or_in_quarantine(ev: Evidence) -> Verdict:
    """No new socket opens while Redis is down, nor within keep_s of its return without state
    (only the holder that kept its socket may reassert)."""
    keep = ev.spec.clause("FLEET-REDIS-OUTAGE").number("keep_s")
    outage = _outage(ev)
    if outage is None:
        return no_evidence("Redis was never taken down", expected="an outage and a return")
    down, up = outage
    tol = slack(ev)
    barred = [s for s in ev.sockets() if down + tol < s.open_t < up + keep - tol]
    if barred:
        s = barred[0]
        return failed(
            f"{s.conn} opened {s.open_t - down:.1f} spec s after Redis went down "
            f"({s.open_t - up:+.1f} s from its return without state)",
            expected=f"no socket acquired during the outage nor within keep_s ({keep:g} s) of "
            "Redis returning empty (quarantine)",
            evidence=[s.open_record],
        )
    end = float(ev.marks.get("end", ev.end_t_spec))
    if not any(s.open_at(end - tol) or s.open_t > up for s in ev.sockets()):
        return failed(
            "no socket was open after Redis came back",
            expected="the fleet streaming again once Redis is back",
        )
    return passed(
        f"no socket opened during the {up - down:.1f} s outage or the {keep:g} s after it"
    )
