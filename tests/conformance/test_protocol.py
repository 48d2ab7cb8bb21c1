"""The judge's own reading of the wire: the data-frame parser and event matching by layout roles."""

from __future__ import annotations

import pytest

from stockmon.conformance.protocol import SentRecord, event_matches, parse_frame

from .traces import SPEC


def _record(tr_id: str, overrides: dict[str, str]) -> list[str]:
    layout = SPEC.layout(tr_id)
    values = {f.name: ("1" if f.type != "str" else "A") for f in layout.fields}
    values.update(overrides)
    return [values[n] for n in layout.names]


def test_parse_frame_splits_multi_record_frames_by_layout() -> None:
    """enc|tr_id|NNN|records: the count times the layout's field count, split in order."""
    a = _record("H0STCNT0", {"MKSC_SHRN_ISCD": "005930", "STCK_PRPR": "71000"})
    b = _record("H0STCNT0", {"MKSC_SHRN_ISCD": "005930", "STCK_PRPR": "71100"})
    parsed = parse_frame(SPEC, "0|H0STCNT0|002|" + "^".join(a + b))
    assert parsed is not None
    tr_id, recs = parsed
    assert tr_id == "H0STCNT0" and [r["STCK_PRPR"] for r in recs] == ["71000", "71100"]


@pytest.mark.parametrize(
    "text",
    [
        "0|H0STCNT0|003|a^b",
        "1|H0STCNT0|001|x",
        "0|NOPE0000|001|a",
        '{"header":{}}',
        "0|H0STCNT0|1|a",
    ],
)
def test_parse_frame_refuses_malformed_frames(text: str) -> None:
    """Wrong counts, unknown TRs, encrypted or JSON frames are not data the judge can compare."""
    assert parse_frame(SPEC, text) is None


def test_event_matches_by_layout_roles() -> None:
    """A tick event equals a record by key, time digits, price and volume (numbers compared exactly)."""
    fields = _record(
        "HDFSCNT0", {"RSYM": "DNASAAPL", "KHMS": "093015", "LAST": "187.2300", "EVOL": "12"}
    )
    rec = SentRecord(
        1.0, 1, "HDFSCNT0", dict(zip(SPEC.layout("HDFSCNT0").names, fields, strict=True)), 1
    )
    good = {
        "type": "tick",
        "tr_id": "HDFSCNT0",
        "key": "DNASAAPL",
        "time": "09:30:15",
        "price": 187.23,
        "volume": 12,
    }
    assert event_matches(SPEC, good, rec)
    assert not event_matches(SPEC, {**good, "price": 187.24}, rec)
    assert not event_matches(SPEC, {**good, "key": "DNASMSFT"}, rec)
