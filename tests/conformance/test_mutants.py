"""The suite can fail: each mutant fails on exactly the clauses it breaks; correct targets pass.

A mutant is a target with one behaviour switched off spec: the standalone minimal client
(targets/minimal_client.py, no stockmon code, ``--mutant NAME``, KIS only), or the reference client
with one KIS session rule (targets/reference_mutant.py) or one Kiwoom or failover behaviour
(targets/backup_mutant.py) patched. Each case runs only the scenarios that exercise the broken
behaviour (``-k``) and asserts the set of failing clauses among the checks that ran, for either
broker. All selected runs share one pool of scenario workers, so the whole matrix costs a few
minutes of wall time on two cores, not the sum of its scenarios.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from stockmon.conformance.catalog import SCENARIOS
from stockmon.conformance.registry import Outcome
from stockmon.conformance.report import render_terminal
from stockmon.conformance.runner import ScenarioResult, SuiteOptions, SuiteResult, assemble, plan

TARGETS = Path(__file__).resolve().parent / "targets"
MINIMAL = (sys.executable, str(TARGETS / "minimal_client.py"))
REFERENCE = (sys.executable, "-m", "stockmon.cli", "stream")
# Scenarios run at once across every case: enough to finish in minutes, few enough that one
# real second of timing slack is never eaten by scheduling on two cores.
WORKERS = 5


@dataclass(frozen=True)
class Case:
    """A target, the scenarios that judge it, and the clauses it must fail per spec version."""

    name: str
    target: tuple[str, ...]
    select: str | None
    breaks: Mapping[str, frozenset[str]]
    profile: str = "full"

    def options(self, version: str) -> SuiteOptions:
        """Suite options of this case for one spec version."""
        return SuiteOptions(
            target=self.target, spec_version=version, keyword=self.select, profile=self.profile
        )


def _case(prefix: str, argv: tuple[str, ...], select: str, breaks: dict[str, set[str]]) -> Case:
    """A case ``prefix-name``; ``breaks`` maps 'v1_0'/'v1_1'/'v1_2' to the clauses it must fail."""
    versions = {k[1:].replace("_", "."): frozenset(v) for k, v in breaks.items()}
    return Case(f"{prefix}{argv[-1]}", argv, select, versions)


def mutant(name: str, select: str, **breaks: set[str]) -> Case:
    """A case for ``minimal_client.py --mutant name``."""
    return _case("", (*MINIMAL, "--mutant", name), select, breaks)


def reference_mutant(name: str, select: str, **breaks: set[str]) -> Case:
    """A case for the reference client with one KIS session rule patched (reference_mutant.py)."""
    return _case(
        "reference-", (sys.executable, str(TARGETS / "reference_mutant.py"), name), select, breaks
    )


def kiwoom_mutant(name: str, select: str, **breaks: set[str]) -> Case:
    """A case for the reference client with one Kiwoom or failover behaviour patched
    (backup_mutant.py), judged by the kiwoom-* scenarios."""
    return _case(
        "kiwoom-", (sys.executable, str(TARGETS / "backup_mutant.py"), name), select, breaks
    )


def fleet_mutant(name: str, select: str, **breaks: set[str]) -> Case:
    """A case for the reference client with one fleet behaviour patched (fleet_mutant.py)."""
    return _case("fleet-", (sys.executable, str(TARGETS / "fleet_mutant.py"), name), select, breaks)


NONE: set[str] = set()
CASES: tuple[Case, ...] = (
    # keep-alive
    mutant("ping-period", "kis-steady", v1_0={"KA-PING"}),
    mutant("ping-packet", "kis-steady", v1_1={"KA-PING"}),
    # no ping: no reflection to judge either (no evidence is a failure)
    mutant("no-ping", "kis-steady", v1_0={"KA-PING", "KA-HEARTBEAT"}),
    mutant(
        "echo-reflection",
        "kis-steady",
        v1_0={"KA-PING", "KA-HEARTBEAT"},
        v1_1={"KA-PING", "KA-HEARTBEAT", "KA-SERVER-PINGPONG"},
    ),
    # the same at full speed: judged as fast as the slow storm, the watchdog never needed
    mutant("ping-storm", "kis-steady", v1_1={"KA-PING", "KA-HEARTBEAT", "KA-SERVER-PINGPONG"}),
    # frames built to crash a judge: the mock closes each socket (1009), the target is judged
    mutant(
        "hostile-frames",
        "kis-steady",
        v1_1={
            "KA-PING",
            "KA-HEARTBEAT",
            "KA-SERVER-PINGPONG",
            "PKT-DATA",
            "PKT-DATA-FRAME",
            "WS-PRIMARY-CHANNEL",
        },
    ),
    mutant("ignore-server-ping", "kis-steady", v1_0=NONE, v1_1={"KA-SERVER-PINGPONG"}),
    mutant("pong-frame", "kis-steady", v1_1={"KA-SERVER-PINGPONG"}),
    mutant("require-reflection", "no-reflection", v1_0={"KA-HEARTBEAT"}),
    # idle and reconnects
    mutant("no-idle-reconnect", "stall", v1_1={"POL-IDLE-RECONNECT", "KA-TIMERS"}),
    mutant("idle-on-send", "stall", v1_0={"POL-IDLE-RECONNECT", "KA-TIMERS"}),
    mutant("idle-data-only", "quiet", v1_1={"KA-TIMERS"}),
    mutant("open-before-close", "stall", v1_1={"POL-IDLE-RECONNECT", "WS-SINGLE-SOCKET"}),
    mutant("drop-subscriptions", "stall", v1_0={"POL-IDLE-RECONNECT"}),
    # packets and data
    mutant(
        "custtype-b",
        "kis-steady or subscribe-errors",
        v1_0={"PKT-SUBSCRIBE"},
        v1_1={"PKT-SUBSCRIBE", "PKT-UNSUBSCRIBE"},
    ),
    mutant("misparse", "kis-steady", v1_0={"PKT-DATA"}),
    mutant("first-record-only", "kis-steady", v1_0=NONE, v1_1={"PKT-DATA-FRAME"}),
    mutant("ignore-us", "kis-steady", v1_1={"WS-PRIMARY-CHANNEL"}),
    # error policies
    mutant("opsp0002-no-release", "subscribe-errors", v1_0={"POL-ALREADY-SUBSCRIBED"}),
    # a release with tr_type "0" is no release: the policy fails, and so does the packet clause
    mutant(
        "release-tr-type-0",
        "subscribe-errors",
        v1_0={"POL-ALREADY-SUBSCRIBED"},
        v1_1={"POL-ALREADY-SUBSCRIBED", "PKT-UNSUBSCRIBE"},
    ),
    mutant(
        "ignore-errors", "subscribe-errors or rest-error", v1_1={"ERR-WS-BODY", "ERR-REST-BODY"}
    ),
    mutant("no-auth-retry", "auth-failure", v1_0={"POL-AUTH-FAILED"}),
    mutant("retry-forever", "auth-persistent", v1_1={"POL-AUTH-FAILED"}),
    mutant("approval-no-renew", "approval-invalid", v1_1={"POL-AUTH-FAILED"}),
    # session limits
    mutant("over-limit", "registration-limit", v1_1={"WS-SESSION-LIMITS"}),
    mutant("no-in-use-backoff", "in-use", v1_1={"WS-SESSION-LIMITS"}),
    # tokens
    mutant("hammer-throttle", "auth-failure", v1_1={"TOKEN-KIS-THROTTLE"}),
    mutant(
        "assume-24h",
        "token-refresh",
        v1_0={"TOKEN-KIS-REFRESH"},
        v1_1={"TOKEN-KIS-REFRESH", "TOKEN-KIS-EXPIRY"},
    ),
    mutant("early-refresh", "token-refresh", v1_1={"TOKEN-KIS-REFRESH"}),
    # every token request of a fleet counts, the throttled one too (1.1 has the throttle)
    mutant("no-lock", "fleet", v1_0={"TOKEN-KIS-LOCK"}, v1_1={"TOKEN-KIS-LOCK"}),
    mutant("no-socket-lease", "fleet", v1_1={"WS-SINGLE-SOCKET"}),
    # credentials
    mutant("print-secret", "kis-steady", v1_1={"CRED-ENV"}),
    mutant("no-credential-check", "missing-credential", v1_0={"CRED-ENV"}),
    # the reference client itself, one rule of its session core patched
    reference_mutant("ping-period", "kis-steady", v1_1={"KA-PING"}),
    reference_mutant("no-idle-reconnect", "stall", v1_0={"POL-IDLE-RECONNECT", "KA-TIMERS"}),
    reference_mutant("ignore-server-ping", "kis-steady", v1_1={"KA-SERVER-PINGPONG"}),
    reference_mutant("custtype-b", "kis-steady", v1_0={"PKT-SUBSCRIBE"}),
    reference_mutant("no-limit", "registration-limit", v1_1={"WS-SESSION-LIMITS"}),
    # the reference client, one Kiwoom behaviour patched (spec 1.1 has the Kiwoom clauses)
    kiwoom_mutant("no-login", "kiwoom-steady", v1_1={"KIWOOM-PROTOCOL"}),
    kiwoom_mutant("reg-before-login", "kiwoom-steady", v1_1={"KIWOOM-PROTOCOL"}),
    kiwoom_mutant("ping-not-verbatim", "kiwoom-steady", v1_1={"KIWOOM-PROTOCOL"}),
    kiwoom_mutant("prod-no-token", "kiwoom-prod", v1_1={"TOKEN-KIWOOM-SESSION"}),
    kiwoom_mutant("accept-missing-secret", "kiwoom-missing-secret", v1_1={"CRED-KIWOOM-SECRET"}),
    # ... or one failover behaviour
    kiwoom_mutant("make-before-break", "kiwoom-failover", v1_1={"WS-SINGLE-SOCKET"}),
    kiwoom_mutant("early-failover", "kiwoom-failover", v1_1={"FAILOVER-KIWOOM"}),
    kiwoom_mutant("no-switch-back", "kiwoom-failover", v1_1={"FAILOVER-KIWOOM"}),
    kiwoom_mutant("probe-storm", "kiwoom-failover", v1_1={"FAILOVER-KIWOOM"}),
    kiwoom_mutant("drop-us-silently", "kiwoom-failover", v1_1={"FAILOVER-KIWOOM"}),
    # ... or one fleet behaviour (spec 1.2 has the Redis outage policy)
    fleet_mutant("no-keep", "redis-outage", v1_2={"FLEET-REDIS-OUTAGE"}),
    # REST time limits (1.2): a call held by the broker is waited for forever
    mutant("rest-no-timeout", "rest-timeout", v1_2={"REST-TIMEOUT"}),
    # correct targets, nothing broken: the minimal client speaks KIS only (profile kis, every
    # scenario of it); the reference runs
    # the whole suite, and once more the Kiwoom scenarios alone (1.0 runs kiwoom-prod only)
    Case("minimal", MINIMAL, None, {"1.0": frozenset(), "1.1": frozenset()}, "kis"),
    Case("reference", REFERENCE, None, {"1.0": frozenset(), "1.1": frozenset()}),
    Case("kiwoom-reference", REFERENCE, "kiwoom", {"1.0": frozenset(), "1.1": frozenset()}),
    Case("infra-reference", REFERENCE, "redis-outage or rest-timeout", {"1.2": frozenset()}),
    Case("minimal-rest", MINIMAL, "rest-timeout", {"1.2": frozenset()}, "kis"),
)

PARAMS = [pytest.param(c, v, id=f"{c.name}-{v}") for c in CASES for v in c.breaks]


class Matrix:
    """Runs the selected cases' scenarios in one shared pool; each test waits for its own case."""

    def __init__(self, wanted: list[tuple[Case, str]]) -> None:
        self._pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="matrix")
        self._jobs: dict[
            tuple[str, str], tuple[SuiteOptions, list[Future[ScenarioResult]], float]
        ] = {}
        self._lock = threading.Lock()
        runs = []
        for case, version in wanted:
            opts = case.options(version)
            futures: list[Future[ScenarioResult]] = []
            self._jobs[(case.name, version)] = (opts, futures, time.monotonic())
            runs.extend((run, futures) for run in plan(opts, SCENARIOS))
        runs.sort(key=lambda item: -item[0].scenario.weight)
        for run, futures in runs:
            futures.append(self._pool.submit(run.execute))

    def result(self, case: Case, version: str) -> SuiteResult:
        """The assembled suite result of one case (blocks until its scenarios are done)."""
        opts, futures, started = self._jobs[(case.name, version)]
        results = [f.result() for f in futures]
        return assemble(opts, SCENARIOS, results, time.monotonic() - started)

    def close(self) -> None:
        """Wait for every run (processes must not outlive the session)."""
        self._pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="module")
def matrix(request: pytest.FixtureRequest) -> Matrix:
    """Start every case selected in this session at once; tests then collect their own."""
    wanted = []
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and item.module is sys.modules[__name__]:
            params = callspec.params
            if "case" in params:
                wanted.append((params["case"], params["version"]))
    m = Matrix(wanted)
    request.addfinalizer(m.close)
    return m


def _failing(result: SuiteResult) -> set[str]:
    return {c for r in result.results if r.verdict.outcome is Outcome.FAIL for c in r.check.clauses}


@pytest.mark.slow
@pytest.mark.parametrize(("case", "version"), PARAMS)
def test_suite_fails_exactly_the_clauses_the_target_breaks(
    matrix: Matrix, case: Case, version: str
) -> None:
    """The checks that ran fail on exactly the mutant's clauses (none for a correct target)."""
    result = matrix.result(case, version)
    report = render_terminal(result, {}, verbose=True)
    errors = [r for r in result.results if r.verdict.outcome is Outcome.ERROR]
    assert not errors, report
    assert _failing(result) == set(case.breaks[version]), report
