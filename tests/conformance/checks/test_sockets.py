"""Socket checks on hand-made traces (WS-SINGLE-SOCKET, POL-IDLE-RECONNECT)."""

from __future__ import annotations

from stockmon.conformance.checks import keepalive, sockets
from stockmon.conformance.registry import Outcome

from ..traces import PING, Trace


def test_never_two_sockets_open_names_both() -> None:
    """The failure shows the opening of both sockets."""
    tr = Trace()
    tr.open(0, "ws-1")
    tr.open(1, "ws-2")
    verdict = sockets.never_two_sockets_open(tr.evidence(5))
    assert verdict.outcome is Outcome.FAIL
    assert {r["conn"] for r in verdict.evidence} == {"ws-1", "ws-2"}


def test_idle_close_judged_against_the_last_inbound_frame() -> None:
    """Closing 600 s after the last inbound frame passes even though pings were sent meanwhile."""
    tr = Trace()
    tr.open(0, "ws-1")
    tr.text(10, "ws-1", "out", {"header": {"tr_id": "H0STCNT0"}})
    for t in range(40, 600, 30):
        tr.text(t, "ws-1", "in", PING)
    tr.close(610, "ws-1")
    tr.open(611, "ws-2")
    ev = tr.evidence(700, stall=10.5)
    assert sockets.idle_socket_closed_then_reopened(ev).outcome is Outcome.PASS
    assert keepalive.idle_measured_from_last_inbound(ev).outcome is Outcome.PASS
