"""Reports of a suite run: the terminal table, JUnit XML and Markdown."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from stockmon.conformance import catalog
from stockmon.conformance.checks import keepalive, sockets
from stockmon.conformance.registry import registered
from stockmon.conformance.report import render_markdown, render_terminal, write_junit
from stockmon.conformance.runner import CheckResult, ScenarioResult, SuiteResult
from stockmon.conformance.scenarios import scenario

from .traces import SPEC, Trace


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
    assert {c.find("./properties/property").get("value") for c in skipped} >= {
        "TEST-MOCKED",
        *{cid for cid in catalog.pending_clauses() if SPEC.has(cid)},  # of the suite's version
    }


def test_markdown_report_has_table_and_failure_sections() -> None:
    """Markdown: the clause table, then each failure with its trace in a code block."""
    md = render_markdown(_suite(), catalog.pending_clauses())
    assert "| WS-SINGLE-SOCKET | Single socket | FAIL |" in md
    assert "### FAIL WS-SINGLE-SOCKET — `never_two_sockets_open`" in md
    assert "```text" in md
