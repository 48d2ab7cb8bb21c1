"""Market data: the values printed equal the values sent (PKT-DATA), and every record of every
frame, multi-record frames included, becomes an event (PKT-DATA-FRAME, 1.1).

The judge decodes what the mock sent with the spec's field layouts (its own parser) and compares
by the layouts' roles: key, time, price, volume for ticks; ask/bid prices and quantities for books.
"""

from __future__ import annotations

from collections import defaultdict

from stockmon.conformance.evidence import Evidence
from stockmon.conformance.protocol import (
    SentRecord,
    data_events,
    event_matches,
    expected_event,
    match_in_order,
    output_stop,
    sent_records,
    slack,
)
from stockmon.conformance.registry import Verdict, check, failed, passed


def _by_stream(ev: Evidence) -> dict[tuple[str, str], list[SentRecord]]:
    out: dict[tuple[str, str], list[SentRecord]] = defaultdict(list)
    for rec in sent_records(ev):
        out[(rec.tr_id, rec.key(ev.spec))].append(rec)
    return out


@check("PKT-DATA")
def event_values_equal_values_sent(ev: Evidence) -> Verdict:
    """Every tick/order-book event on stdout carries exactly the values of a record the mock sent."""
    for tr in ev.targets:
        if tr.bad_lines:
            n, text, why = tr.bad_lines[0]
            return failed(
                f"stdout line {n} is not an event ({why}): {text[:200]}",
                expected="one JSON object per line, valid against schema 'event'",
            )
    streams = _by_stream(ev)
    events = data_events(ev)
    if not events:
        return failed(
            "the target printed no tick or order-book event",
            expected="one event per record received",
        )
    _, miss = match_in_order(
        events,
        streams,
        lambda e: (str(e.data.get("tr_id")), str(e.data.get("key"))),
        lambda e, rec: event_matches(ev.spec, e.data, rec),
    )
    if miss is not None:
        e, key, at = miss
        recs = streams.get(key, [])
        near = recs[at] if at < len(recs) else (recs[-1] if recs else None)
        want = expected_event(ev.spec, near) if near is not None else "no record of that TR and key"
        return failed(
            f"event on stdout line {e.line_no} matches no record the mock sent: {dict(e.data)}",
            expected=f"the values of the record, e.g. the next one sent: {want}",
            evidence=[r for r in ev.records if near is not None and r.get("seq") == near.seq],
        )
    return passed(f"{len(events)} events, each equal to a record the mock sent")


@check("PKT-DATA-FRAME")
def every_record_of_a_frame_becomes_an_event(ev: Evidence) -> Verdict:
    """Each record of each data frame (several per frame at busy times) becomes one event."""
    streams = _by_stream(ev)
    if not streams:
        return failed("the mock sent no data frame (nothing subscribed?)", expected="data frames")
    multi = sum(1 for recs in streams.values() for r in recs if r.frame_records > 1)
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for e in data_events(ev):
        counts[(str(e.data.get("tr_id")), str(e.data.get("key")))] += 1
    # Records sent in the last moments before the stop may still be in flight: not required.
    cutoff = output_stop(ev) - 2 * slack(ev)
    for key, recs in sorted(streams.items()):
        due = sum(1 for r in recs if r.t < cutoff)
        got = counts.get(key, 0)
        if got < due:
            example = next((r for r in recs if r.frame_records > 1), recs[0])
            return failed(
                f"{key[0]}:{key[1]}: {got} events for {due} records sent ({multi} records came in "
                "multi-record frames)",
                expected="one event per record, every record of a multi-record frame included",
                evidence=[r for r in ev.records if r.get("seq") == example.seq],
            )
        if got > len(recs):
            return failed(
                f"{key[0]}:{key[1]}: {got} events but only {len(recs)} records sent",
                expected="exactly one event per record",
            )
    return passed(
        f"{sum(counts.values())} events for {sum(len(r) for r in streams.values())} records "
        f"({multi} in multi-record frames)"
    )
