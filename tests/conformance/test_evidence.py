"""Queries over the evidence of one scenario run (sockets, last inbound, output times)."""

from __future__ import annotations

from stockmon.conformance.evidence import Event, trace_slice

from .traces import PING, Trace


def test_overlapping_sockets_follow_trace_order() -> None:
    """Two sessions overlap when the second opens before the first's close record."""
    tr = Trace()
    tr.open(0, "ws-1")
    tr.open(5, "ws-2")
    tr.close(6, "ws-1")
    tr.close(9, "ws-2")
    tr.open(10, "ws-3")
    pairs = tr.evidence(20).overlapping_sockets()
    assert [(a.conn, b.conn) for a, b in pairs] == [("ws-1", "ws-2")]


def test_last_inbound_is_the_last_frame_sent_to_the_client() -> None:
    """last-inbound counts what the mock sent on that socket, never what the client sent."""
    tr = Trace()
    tr.open(0, "ws-1")
    tr.text(3, "ws-1", "out", {"header": {"tr_id": "H0STCNT0"}})
    tr.text(7, "ws-1", "in", PING)
    assert tr.evidence(10).last_inbound_before("ws-1", 9) == 3


def test_event_dataclass_keeps_spec_time() -> None:
    """Output lines carry the mock-relative time in spec seconds as well."""
    e = Event(1.5, 15.0, {"type": "status"}, 1)
    assert e.t_spec == 15.0


def test_trace_slice_keeps_only_the_cited_connections() -> None:
    """A failure's slice shows the records of the cited socket, not REST lines around it."""
    tr = Trace()
    tr.open(0.0, "ws-1")
    tr.add(0.5, "rest-1", "in", "request", method="GET", path="/quote")
    tr.text(1.0, "ws-1", "in", PING)
    tr.add(1.5, "rest-1", "out", "response", status=200)
    tr.text(2.0, "ws-1", "out", PING)
    records = tr.evidence(3.0).records
    cited = [r for r in records if r.get("kind") == "text"][-1:]
    rows = trace_slice(records, cited)
    assert [r.get("conn") for _, r in rows] == ["ws-1", "ws-1", "ws-1"]
    assert [mark for mark, _ in rows] == [False, False, True]
