"""The suite's own machinery without processes: selection, evidence queries, the judge's frame
parser, checks on hand-made traces, the clause catalogue and the reports."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from stockmon.conformance import catalog
from stockmon.conformance.checks import keepalive, sockets
from stockmon.conformance.errors import ConfigError
from stockmon.conformance.evidence import Event, Evidence, TargetRun
from stockmon.conformance.protocol import SentRecord, event_matches, parse_frame
from stockmon.conformance.registry import KeywordExpression, Outcome, all_checks, registered
from stockmon.conformance.report import render_markdown, render_terminal, write_junit
from stockmon.conformance.runner import CheckResult, ScenarioResult, SuiteResult
from stockmon.conformance.scenarios import SCENARIOS, scenario
from stockmon.spec import available_versions, load_spec

SPEC = load_spec("1.1")


class Trace:
    """Builds trace records the way the mock writes them (seq, t_spec, channel, conn, dir, kind)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def add(self, t: float, conn: str, dir_: str, kind: str, **extra: Any) -> dict[str, Any]:
        rec = {
            "seq": len(self.records) + 1,
            "t": t / 10,
            "t_spec": t,
            "channel": "ws",
            "conn": conn,
            "dir": dir_,
            "kind": kind,
            **extra,
        }
        self.records.append(rec)
        return rec

    def open(self, t: float, conn: str) -> None:
        self.add(t, conn, "event", "ws_open", path="/", peer="127.0.0.1")

    def close(self, t: float, conn: str, by: str = "client") -> None:
        self.add(t, conn, "event", "ws_close", code=1000, reason="", by=by)

    def text(self, t: float, conn: str, dir_: str, obj: Any) -> None:
        self.add(t, conn, dir_, "text", text=json.dumps(obj), json=obj)

    def evidence(self, end: float, **marks: float) -> Evidence:
        run = TargetRun(0, ("t",), 0.0, end / 10, None, False, True, (), (), (), "")
        return Evidence(
            scenario="unit",
            spec=SPEC,
            time_scale=10.0,
            records=tuple(self.records),
            targets=(run,),
            subscriptions=(("H0STCNT0", "005930"),),
            secrets={},
            marks={"end": end, **marks},
            mock={},
            end_t_spec=end,
        )


PING = {"header": {"tr_id": "PINGPONG"}}


# ------------------------------------------------------------------------------ -k selection
@pytest.mark.parametrize(
    ("expr", "words", "expected"),
    [
        ("KA-PING", ["pings_sent_every_interval", "KA-PING", "steady"], True),
        ("ka-ping", ["x", "KA-PING"], True),
        ("KA-PING and not steady", ["x", "KA-PING", "steady"], False),
        ("stall or quiet", ["x", "quiet"], True),
        ("not (stall or quiet)", ["x", "quiet"], False),
        ("TOKEN and LOCK", ["one_token", "TOKEN-KIS-LOCK"], True),
    ],
)
def test_keyword_expression_matches_like_pytest(
    expr: str, words: list[str], expected: bool
) -> None:
    """-k words are case-insensitive substrings combined with and/or/not and parentheses."""
    assert KeywordExpression(expr).matches(words) is expected


@pytest.mark.parametrize("expr", ["", "a and", "(a or b", "or a", "a b"])
def test_keyword_expression_rejects_bad_syntax_with_one_line(expr: str) -> None:
    """A malformed -k expression is a configuration error, not a traceback."""
    with pytest.raises(ConfigError, match="-k"):
        KeywordExpression(expr)


# ------------------------------------------------------------------------------ evidence
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


# ------------------------------------------------------------------------------ the judge's parser
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


# ------------------------------------------------------------------------------ checks on hand-made traces
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


def test_closes_after_the_stop_are_not_the_clients_doing() -> None:
    """A socket closed because the harness sent SIGTERM is not an idle reconnect."""
    tr = Trace()
    tr.open(0, "ws-1")
    tr.text(5, "ws-1", "out", PING)
    tr.close(101, "ws-1")
    assert keepalive.inbound_frames_reset_idle_timer(tr.evidence(100)).outcome is Outcome.PASS


# ------------------------------------------------------------------------------ catalogue
def test_catalog_covers_every_breakable_clause_or_says_why_not() -> None:
    """Every breakable clause of every version has a check, or a pending reason; never both."""
    covered = {c for ids in catalog.clause_index().values() for c in ids}
    pending = catalog.pending_clauses()
    for version in available_versions():
        for clause in load_spec(version).clauses:
            if clause.testability.breakable:
                assert (clause.id in covered) != (clause.id in pending), clause.id
    assert all(re.search(r"\bissue [0-9]+", reason) for reason in pending.values()), pending


def test_every_check_in_a_scenario_is_registered_and_tagged() -> None:
    """Scenario checks are registered functions citing clauses of some spec version."""
    ids = set(load_spec("1.0").clause_ids) | set(load_spec("1.1").clause_ids)
    for sc in SCENARIOS:
        for chk in sc.check_objects():
            assert all_checks()[chk.name] is chk
            assert chk.clauses and set(chk.clauses) <= ids
            assert chk.doc and chk.doc != chk.name


def test_scenario_names_do_not_select_each_other() -> None:
    """-k on a scenario's name selects only that scenario's checks (names are distinct words)."""
    for sc in catalog.SCENARIOS:
        expr = KeywordExpression(sc.name)
        others = [
            o.name
            for o in catalog.SCENARIOS
            if o is not sc and any(expr.matches((*c.keywords(), o.name)) for c in o.check_objects())
        ]
        assert not others, (sc.name, others)


# ------------------------------------------------------------------------------ reports
def _suite() -> SuiteResult:
    tr = Trace()
    tr.open(0, "ws-1")
    tr.open(1, "ws-2")
    ev = tr.evidence(5)
    sc = scenario("kis-steady")
    bad = CheckResult(
        registered(sockets.never_two_sockets_open), sc.name, sockets.never_two_sockets_open(ev), 3.0
    )
    good = CheckResult(
        registered(keepalive.pings_match_the_spec_packet),
        sc.name,
        keepalive.pings_match_the_spec_packet(ev),
        3.0,
    )
    return SuiteResult("1.1", ("my-target",), [ScenarioResult(sc, [good, bad], 3.0, 10.0)], 3.5)


def test_terminal_report_lists_every_clause_and_the_failure_trace() -> None:
    """The table has a row per clause of the version; a failure shows got/expected/trace."""
    text = render_terminal(_suite(), catalog.pending_clauses())
    for cid in SPEC.clause_ids:
        assert cid in text
    assert "FAIL WS-SINGLE-SOCKET — never_two_sockets_open" in text
    assert "expected:" in text and "ws_open" in text
    assert "NON-CONFORMANT (exit 1)" in text


def test_junit_has_clause_ids_in_names_and_properties(tmp_path: Path) -> None:
    """JUnit XML: one testcase per check, clause IDs in the name and as properties, skips for the rest."""
    path = tmp_path / "junit.xml"
    write_junit(_suite(), path, catalog.pending_clauses())
    root = ET.parse(path).getroot()  # noqa: S314 - our own file
    cases = root.findall(".//testcase")
    names = [c.get("name") for c in cases]
    assert "[WS-SINGLE-SOCKET] never_two_sockets_open" in names
    failing = next(c for c in cases if c.get("name") == "[WS-SINGLE-SOCKET] never_two_sockets_open")
    assert failing.find("failure") is not None
    assert [p.get("value") for p in failing.findall("./properties/property[@name='clause']")] == [
        "WS-SINGLE-SOCKET"
    ]
    skipped = [c for c in cases if c.find("skipped") is not None]
    pending = {cid for cid in catalog.pending_clauses() if SPEC.has(cid)}  # of the suite's version
    assert {c.find("./properties/property").get("value") for c in skipped} >= {
        "TEST-MOCKED",
        *pending,
    }


def test_markdown_report_has_table_and_failure_sections() -> None:
    """Markdown: the clause table, then each failure with its trace in a code block."""
    md = render_markdown(_suite(), catalog.pending_clauses())
    assert "| WS-SINGLE-SOCKET | Single socket | FAIL |" in md
    assert "### FAIL WS-SINGLE-SOCKET — `never_two_sockets_open`" in md
    assert "```text" in md


def test_event_dataclass_keeps_spec_time() -> None:
    """Output lines carry the mock-relative time in spec seconds as well."""
    e = Event(1.5, 15.0, {"type": "status"}, 1)
    assert e.t_spec == 15.0


def test_the_judge_never_imports_the_judged() -> None:
    """Importing every conformance module (and running its CLI setup) never loads stockmon.reference."""
    import subprocess
    import sys

    code = (
        "import sys, pkgutil, importlib, stockmon.conformance as c\n"
        "for m in pkgutil.walk_packages(c.__path__, 'stockmon.conformance.'):\n"
        "    importlib.import_module(m.name)\n"
        "assert not [n for n in sys.modules if n.startswith('stockmon.reference')], sorted(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
