"""Profile api can fail: each mutant of the reference gateway (targets/gateway_mutant.py) fails on
exactly the clauses it breaks, and the reference gateway itself passes the whole profile.

Each mutant runs only the scenario that exercises its behaviour; every run shares one pool of
scenario workers, so the file costs about the longest scenario twice over, not their sum.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from stockmon.conformance.catalog import SCENARIOS
from stockmon.conformance.registry import Outcome
from stockmon.conformance.report import render_terminal
from stockmon.conformance.runner import ScenarioResult, SuiteOptions, SuiteResult, assemble, plan

MUTANT = (sys.executable, str(Path(__file__).resolve().parent / "targets" / "gateway_mutant.py"))
SERVE = (sys.executable, "-m", "stockmon.cli", "serve")
VERSION = "1.2"
WORKERS = 3

# name -> (target, -k selection, the clauses that must fail)
CASES: dict[str, tuple[tuple[str, ...], str | None, frozenset[str]]] = {
    "reference": (SERVE, None, frozenset()),
    "status-unguarded": ((*MUTANT, "status-unguarded"), "api-auth", frozenset({"API-AUTH"})),
    "key-in-log": ((*MUTANT, "key-in-log"), "api-auth", frozenset({"API-AUTH"})),
    "serial-fanout": (
        (*MUTANT, "serial-fanout"),
        "api-slow-consumer",
        frozenset({"API-BACKPRESSURE"}),
    ),
    "failover-untracked": (
        (*MUTANT, "failover-untracked"),
        "api-failover",
        frozenset({"API-STATUS"}),
    ),
    "drop-event": ((*MUTANT, "drop-event"), "api-stream", frozenset({"API-STREAM"})),
    "reorder-events": ((*MUTANT, "reorder-events"), "api-stream", frozenset({"API-STREAM"})),
    "stale-snapshot": ((*MUTANT, "stale-snapshot"), "api-stream", frozenset({"API-SNAPSHOT"})),
    "duplicate-on-takeover": (
        (*MUTANT, "duplicate-on-takeover"),
        "api-fleet",
        frozenset({"API-FLEET"}),
    ),
    "cors-wildcard": ((*MUTANT, "cors-wildcard"), "api-http", frozenset({"API-CORS"})),
    "ws-origin-unchecked": ((*MUTANT, "ws-origin-unchecked"), "api-http", frozenset({"API-CORS"})),
    "frames-uncounted": ((*MUTANT, "frames-uncounted"), "api-http", frozenset({"API-METRICS"})),
    "change-unsigned": ((*MUTANT, "change-unsigned"), "api-stream", frozenset({"API-EVENT"})),
    "timestamp-in-utc": ((*MUTANT, "timestamp-in-utc"), "api-stream", frozenset({"API-EVENT"})),
    "shutdown-code-normal": (
        (*MUTANT, "shutdown-code-normal"),
        "api-service",
        frozenset({"API-SERVICE"}),
    ),
    "plain-errors": ((*MUTANT, "plain-errors"), "api-service", frozenset({"API-SERVICE"})),
}


def _options(name: str) -> SuiteOptions:
    target, select, _ = CASES[name]
    return SuiteOptions(target=target, spec_version=VERSION, keyword=select, profile="api")


@pytest.fixture(scope="module")
def results(request: pytest.FixtureRequest) -> Iterator[dict[str, SuiteResult]]:
    """Every selected case's scenarios at once in one pool, assembled per case (``-k NAME`` runs
    only that case's scenarios, not the whole matrix)."""
    chosen = [
        name
        for name in CASES
        if any(
            getattr(item, "callspec", None) is not None and item.callspec.params.get("name") == name
            for item in request.session.items
        )
    ]
    with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="api-matrix") as pool:
        runs = [(name, run) for name in chosen for run in plan(_options(name), SCENARIOS)]
        runs.sort(key=lambda item: -item[1].scenario.weight)
        futures: dict[str, list[Future[ScenarioResult]]] = {name: [] for name in chosen}
        for name, run in runs:
            futures[name].append(pool.submit(run.execute))
        yield {
            name: assemble(_options(name), SCENARIOS, [f.result() for f in futs], 0.0)
            for name, futs in futures.items()
        }


@pytest.mark.slow
@pytest.mark.parametrize("name", tuple(CASES))
def test_gateway_fails_exactly_the_clauses_it_breaks(
    results: dict[str, SuiteResult], name: str
) -> None:
    """The checks that ran fail on exactly the mutant's clauses (none for the reference)."""
    result = results[name]
    report = render_terminal(result, {}, verbose=True)
    assert not [r for r in result.results if r.verdict.outcome is Outcome.ERROR], report
    failing = {
        c for r in result.results if r.verdict.outcome is Outcome.FAIL for c in r.check.clauses
    }
    assert failing == CASES[name][2], report
    assert result.exit_code == (1 if failing else 0), report
