"""Reports to look at: the HTML page draws one SVG lane per socket with the failure's records
highlighted (seen in headless Chromium), the JSON report carries the rerun command, and
--last-failed reruns what failed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stockmon.conformance import cli as conformance_cli
from stockmon.conformance.catalog import SCENARIOS
from stockmon.conformance.registry import failed, passed
from stockmon.conformance.report_html import render_html, render_json, rerun_command
from stockmon.conformance.runner import CheckResult, ScenarioResult, SuiteResult

from .traces import PING, Trace


def _result() -> SuiteResult:
    """Two sockets (the first closed by the client), pings, a server ping, a fault, a failure."""
    tr = Trace()
    tr.open(0.0, "ws-1")
    tr.text(30.0, "ws-1", "in", PING)
    tr.text(30.1, "ws-1", "out", {"header": {"tr_id": "PINGPONG", "datetime": "20260101090000"}})
    tr.add(40.0, "", "event", "fault", name="stall", channel="control")
    tr.close(45.0, "ws-1")
    tr.open(46.0, "ws-2")
    tr.text(60.0, "ws-2", "in", PING)
    ev = tr.evidence(90.0)
    sc = next(s for s in SCENARIOS if s.name == "stall")
    chk = sc.check_objects()[0]
    bad = failed("closed too early", expected="close after idle", evidence=[tr.records[4]])
    results = [
        CheckResult(chk, sc.name, bad, 1.0),
        CheckResult(sc.check_objects()[1], sc.name, passed("fine"), 1.0),
    ]
    scen = ScenarioResult(sc, results, 1.0, 10.0, None, ["a note"], ev)
    return SuiteResult("1.1", ("my-client", "--flag"), [scen], 1.0, "kis")


def test_rerun_command_selects_exactly_that_check() -> None:
    """The rerun line names the target, version, profile and a -k picking that one check."""
    res = _result()
    cmd = rerun_command(res, res.results[0])
    assert "--target 'my-client --flag'" in cmd and "--spec 1.1" in cmd and "--profile kis" in cmd
    assert f"-k '{res.results[0].check.name} and stall'" in cmd


def test_json_report_has_verdict_and_reruns() -> None:
    """The JSON report states the verdict, spec-second unit, each check and the rerun of failures."""
    doc = json.loads(render_json(_result(), {}))
    assert doc["exit_code"] == 1 and doc["profile"] == "kis"
    assert "spec seconds" in doc["time_unit"]
    bad = [c for c in doc["checks"] if c["outcome"] == "fail"]
    assert bad and bad[0]["rerun"].startswith("stockmon conformance")
    assert all("rerun" not in c for c in doc["checks"] if c["outcome"] == "pass")


def test_html_report_is_self_contained() -> None:
    """The page loads nothing from elsewhere (no CDN, no script) and labels spec seconds."""
    page = render_html(_result(), {})
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page and "<script" not in page
    assert "spec s" in page


def test_html_report_timeline_in_chromium(tmp_path: Path, chromium: str) -> None:
    """Headless Chromium shows a lane per socket and the failure record highlighted (screenshot)."""
    from playwright import sync_api  # a dev dependency: missing is a broken install, not a skip

    html_path = tmp_path / "report.html"
    html_path.write_text(render_html(_result(), {}), encoding="utf-8")
    shot = tmp_path / "report.png"
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(html_path.as_uri())
        assert page.locator("svg.timeline g.lane.socket").count() == 2
        assert page.locator("svg.timeline .failure").count() == 1
        assert page.locator("svg.timeline line.fault").count() == 1
        assert page.locator("svg.timeline").first.bounding_box()["width"] > 500
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert shot.stat().st_size > 5000


def test_last_failed_reruns_recorded_failures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--last-failed turns the recorded failures into a -k expression (and says when none)."""
    monkeypatch.chdir(tmp_path)
    conformance_cli._record_failures("1.1", _result())
    expr = conformance_cli._last_failed("1.1", None)
    assert expr == f"({_result().results[0].check.name} and stall)"
    assert conformance_cli._last_failed("1.0", "quiet") == "quiet"


def test_exitfirst_and_report_flags_exist() -> None:
    """-x/--exitfirst and --last-failed are flags of `stockmon conformance`."""
    out = subprocess.run(
        [sys.executable, "-m", "stockmon.cli", "conformance", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--exitfirst" in out and "--last-failed" in out and ".html" in out
