"""Honest verdicts: silence proves nothing (a do-nothing target is exit 1 under every selection
and profile), a proven failure is exit 1 whatever else could not be judged, profiles say what
they leave out."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from stockmon.cli import main
from stockmon.conformance.catalog import SCENARIOS
from stockmon.conformance.errors import CheckCrashed
from stockmon.conformance.registry import NO_EVIDENCE, Outcome, Verdict, errored, failed, passed
from stockmon.conformance.runner import (
    CheckResult,
    ScenarioResult,
    SuiteOptions,
    SuiteResult,
    assemble,
    plan,
)
from stockmon.conformance.scenario import PROFILE_VARIABLE, PROFILES
from stockmon.spec import latest_version

TARGETS = Path(__file__).resolve().parent / "targets"
DO_NOTHING = ("sh", "-c", "exec sleep 600")
# The selections the issue tried by hand (each gave CONFORMANT for a program that did nothing).
SELECTIONS = ("quiet", "no-reflection", "in-use", "KA-HEARTBEAT")
# Profile api judges the internal API only: its own scenarios and clauses.
API_SELECTIONS = ("api-auth", "API-STATUS")
# A do-nothing target needs no realism: run its scenarios fast.
FAST = 20.0


def _options(keyword: str, profile: str) -> SuiteOptions:
    return SuiteOptions(
        target=DO_NOTHING,
        spec_version=latest_version(),
        keyword=keyword,
        profile=profile,
        time_scale_factor=FAST,
    )


@pytest.fixture(scope="module")
def silent_runs() -> dict[tuple[str, str], SuiteResult]:
    """Every selection under every profile against the do-nothing target, in one pool."""
    cases = [(k, p) for k in SELECTIONS for p in PROFILES if p != "api"]
    cases += [(k, "api") for k in API_SELECTIONS]
    with ThreadPoolExecutor(max_workers=6) as pool:
        jobs = {
            c: (_options(*c), [pool.submit(r.execute) for r in plan(_options(*c), SCENARIOS)])
            for c in cases
        }
        return {
            c: assemble(opts, SCENARIOS, [f.result() for f in futs], 0.0)
            for c, (opts, futs) in jobs.items()
        }


@pytest.mark.parametrize(
    ("keyword", "profile"),
    [(k, p) for k in SELECTIONS for p in PROFILES if p != "api"]
    + [(k, "api") for k in API_SELECTIONS],
)
def test_do_nothing_target_is_non_conformant(
    silent_runs: dict[tuple[str, str], SuiteResult], keyword: str, profile: str
) -> None:
    """A program that never opens a socket fails every selected check with 'no evidence' (exit 1)."""
    result = silent_runs[(keyword, profile)]
    assert result.exit_code == 1
    assert result.results
    for r in result.results:
        assert r.verdict.outcome is Outcome.FAIL, (r.check.name, r.verdict.summary)
        assert r.verdict.summary.startswith(NO_EVIDENCE) or r.verdict.evidence, r.verdict.summary


def test_do_nothing_target_cli_says_no_evidence(capsys: pytest.CaptureFixture[str]) -> None:
    """Through the CLI the gate says 'no evidence' and exits 1 (the issue's own reproduction)."""
    code = main(
        [
            "conformance",
            "--target",
            "sh -c 'exec sleep 600'",
            "-k",
            "in-use",
            "--time-scale",
            str(FAST),
            "--details",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 1, out
    assert "no evidence: " in out
    assert "profile full assumed" in err


def _result(*outcomes: Outcome, error: bool = False) -> SuiteResult:
    sc = SCENARIOS[0]
    chk = sc.check_objects()[0]
    verdicts: dict[Outcome, Verdict] = {
        Outcome.PASS: passed("fine"),
        Outcome.FAIL: failed("broke it", expected="not to"),
        Outcome.ERROR: errored("harness could not judge"),
    }
    results = [CheckResult(chk, sc.name, verdicts[o], 0.0) for o in outcomes]
    res = ScenarioResult(sc, results, 0.0, 1.0, CheckCrashed("boom") if error else None)
    return SuiteResult(latest_version(), DO_NOTHING, [res], 0.0)


def test_proven_failure_is_exit_1_whatever_else_was_not_judged() -> None:
    """A failure beats a harness error: exit 1; harness errors alone are exit 2; all passes 0."""
    assert _result(Outcome.FAIL, Outcome.ERROR).exit_code == 1
    assert _result(Outcome.FAIL, error=True).exit_code == 1
    assert _result(Outcome.PASS, Outcome.ERROR).exit_code == 2
    assert _result(Outcome.PASS).exit_code == 0


def test_kis_profile_leaves_kiwoom_out_and_says_so() -> None:
    """Under --profile kis the Kiwoom scenarios are not run and are reported as not in profile."""
    opts = SuiteOptions(
        target=DO_NOTHING, spec_version=latest_version(), keyword="kiwoom or quiet", profile="kis"
    )
    runs = plan(opts, SCENARIOS)
    assert [r.scenario.name for r in runs] == ["quiet"]
    result = assemble(opts, SCENARIOS, [], 0.0)
    names = {name for name, _ in result.not_in_profile}
    assert names and all("kiwoom" in n for n in names)
    assert all("not in profile kis" in why for _, why in result.not_in_profile)


def test_kis_profile_with_only_kiwoom_selected_is_a_harness_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Selecting only scenarios outside the profile judges nothing: exit 2, one line."""
    assert main(["conformance", "--target", "true", "--profile", "kis", "-k", "kiwoom"]) == 2
    assert "in profile kis" in capsys.readouterr().err.strip().splitlines()[-1]


def test_api_profile_runs_the_fleet_story() -> None:
    """--profile api plans the fleet story (two replicas on one Redis) and notes nothing unwritten."""
    options = SuiteOptions(target=DO_NOTHING, spec_version=latest_version(), profile="api")
    fleet = [r.scenario for r in plan(options, SCENARIOS) if r.scenario.name == "api-fleet"]
    assert fleet and fleet[0].targets == 2 and fleet[0].redis
    assert not assemble(options, SCENARIOS, [], 0.0).notes


def test_declared_profile_is_used(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A target's declaration in the environment picks the profile when no flag is given."""
    monkeypatch.setenv(PROFILE_VARIABLE, "KIS")
    assert main(["conformance", "--target", "true", "--list", "-k", "kiwoom or quiet"]) == 0
    captured = capsys.readouterr()
    assert "declared by" in captured.err
    assert "kiwoom" not in captured.out and "quiet" in captured.out
    monkeypatch.setenv(PROFILE_VARIABLE, "nonsense")
    assert main(["conformance", "--target", "true", "--list"]) == 2


def test_proven_approval_key_failure_is_exit_1() -> None:
    """A wrong approval-request field is proven on WS-APPROVAL-KEY: exit 1, though nothing that
    needs a subscribe could be judged after it."""
    target = (
        sys.executable,
        str(TARGETS / "minimal_client.py"),
        "--mutant",
        "approval-wrong-field",
    )
    opts = SuiteOptions(
        target=target,
        spec_version=latest_version(),
        keyword="kis-steady",
        profile="kis",
        time_scale_factor=4.0,
    )
    result = assemble(opts, SCENARIOS, [r.execute() for r in plan(opts, SCENARIOS)], 0.0)
    assert result.exit_code == 1
    approval = [r for r in result.results if "WS-APPROVAL-KEY" in r.check.clauses]
    assert approval and approval[0].verdict.outcome is Outcome.FAIL
    assert "malformed" in approval[0].verdict.summary
