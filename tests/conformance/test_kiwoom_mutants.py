"""The Kiwoom and failover checks can fail: each mutant fails exactly its clauses; the reference passes.

The mutants are the reference client with one Kiwoom or failover behaviour patched off spec
(targets/kiwoom_mutant.py). Each case runs only the kiwoom-* scenario that exercises the broken
behaviour; the correct reference runs every kiwoom-* scenario. All cases share one pool of
scenario workers (the matrix of test_mutants.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from stockmon.conformance.registry import Outcome
from stockmon.conformance.report import render_terminal

from .test_mutants import REFERENCE, Case, Matrix

KIWOOM_MUTANT = (
    sys.executable,
    str(Path(__file__).resolve().parent / "targets" / "kiwoom_mutant.py"),
)


def kiwoom_mutant(name: str, select: str, breaks: set[str]) -> Case:
    """A case for ``kiwoom_mutant.py name`` on spec 1.1 (the version with the Kiwoom clauses)."""
    return Case(f"kiwoom-{name}", (*KIWOOM_MUTANT, name), select, {"1.1": frozenset(breaks)})


CASES: tuple[Case, ...] = (
    # KIWOOM-PROTOCOL
    kiwoom_mutant("no-login", "kiwoom-steady", {"KIWOOM-PROTOCOL"}),
    kiwoom_mutant("reg-before-login", "kiwoom-steady", {"KIWOOM-PROTOCOL"}),
    kiwoom_mutant("ping-not-verbatim", "kiwoom-steady", {"KIWOOM-PROTOCOL"}),
    # TOKEN-KIWOOM-SESSION, CRED-KIWOOM-SECRET
    kiwoom_mutant("prod-no-token", "kiwoom-prod", {"TOKEN-KIWOOM-SESSION"}),
    kiwoom_mutant("accept-missing-secret", "kiwoom-missing-secret", {"CRED-KIWOOM-SECRET"}),
    # failover
    kiwoom_mutant("make-before-break", "kiwoom-failover", {"WS-SINGLE-SOCKET"}),
    kiwoom_mutant("early-failover", "kiwoom-failover", {"FAILOVER-KIWOOM"}),
    kiwoom_mutant("no-switch-back", "kiwoom-failover", {"FAILOVER-KIWOOM"}),
    kiwoom_mutant("probe-storm", "kiwoom-failover", {"FAILOVER-KIWOOM"}),
    kiwoom_mutant("drop-us-silently", "kiwoom-failover", {"FAILOVER-KIWOOM"}),
    # the correct reference: every Kiwoom scenario, nothing broken (1.0 runs kiwoom-prod only)
    Case("kiwoom-reference", REFERENCE, "kiwoom", {"1.0": frozenset(), "1.1": frozenset()}),
)

PARAMS = [pytest.param(c, v, id=f"{c.name}-{v}") for c in CASES for v in c.breaks]


@pytest.fixture(scope="module")
def matrix(request: pytest.FixtureRequest) -> Matrix:
    """Start every case selected in this session at once; tests then collect their own."""
    wanted = []
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and item.module is sys.modules[__name__]:
            wanted.append((callspec.params["case"], callspec.params["version"]))
    m = Matrix(wanted)
    request.addfinalizer(m.close)
    return m


@pytest.mark.slow
@pytest.mark.parametrize(("case", "version"), PARAMS)
def test_kiwoom_suite_fails_exactly_the_clauses_the_target_breaks(
    matrix: Matrix, case: Case, version: str
) -> None:
    """The Kiwoom checks that ran fail on exactly the mutant's clauses (none for the reference)."""
    result = matrix.result(case, version)
    report = render_terminal(result, {}, verbose=True)
    errors = [r for r in result.results if r.verdict.outcome is Outcome.ERROR]
    assert not errors, report
    failing = {
        c for r in result.results if r.verdict.outcome is Outcome.FAIL for c in r.check.clauses
    }
    assert failing == set(case.breaks[version]), report
