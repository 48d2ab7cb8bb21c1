"""The black-box runner: a fresh mock (and Redis) per scenario, the target as subprocesses, verdicts.

For each selected scenario: start the KIS mock in-process on free loopback ports (``MockThread``,
fresh state), a private ``redis-server`` if the scenario needs one, then run the scenario's script,
which starts the target(s) with the environment of DESIGN §5 and injects faults at spec times.
At the end the targets get SIGTERM, the mock stops, and the checks judge the trace and the output.
Scenarios run concurrently (each has its own mock, ports and processes).
"""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import shutil
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stockmon.conformance.browser import ALLOWED_ORIGIN
from stockmon.conformance.errors import (
    CheckCrashed,
    CheckFailure,
    ConfigError,
    HarnessError,
    TargetStartError,
)
from stockmon.conformance.evidence import Evidence, Record
from stockmon.conformance.mocks import ScenarioMocks
from stockmon.conformance.protocol import KIWOOM
from stockmon.conformance.redis_server import PrivateRedis, free_port
from stockmon.conformance.registry import (
    Check,
    KeywordExpression,
    Outcome,
    Verdict,
    errored,
    failed,
    no_evidence,
)
from stockmon.conformance.scenario import DEFAULT_PROFILE, PROFILES, Scenario
from stockmon.conformance.target import TargetProcess
from stockmon.spec import Spec, available_versions, load_spec

# Non-normative: how often a script's waits look at the trace (real seconds).
_POLL_S = 0.02
# Non-normative: the most scenarios run at once by default (each is a mock thread + a process).
# Scenarios mostly wait on spec time (1.1 on two cores: ~25 CPU s in ~190 scenario s), so more
# run at once than there are cores; 7 keeps the longest (~19 s) the critical path: 1.1 took 44 s
# with 4 and 33 s with 7, the same verdicts.
DEFAULT_JOBS = 7
# Non-normative: real seconds the checks of one scenario may take to judge its evidence. Judging
# is linear in the trace; a trace that still takes longer grew without bound (a storm of frames),
# and that is the target's failure, not the harness's.
JUDGING_BUDGET_S = 30.0


@dataclass(frozen=True)
class SuiteOptions:
    """What to run: the target command, the spec version, the selection and the pacing."""

    target: tuple[str, ...]
    spec_version: str
    time_scale_factor: float = 1.0
    keyword: str | None = None
    jobs: int = DEFAULT_JOBS
    trace_dir: Path | None = None
    seed: int = 1
    profile: str = DEFAULT_PROFILE
    judging_budget_s: float = JUDGING_BUDGET_S
    # -x: stop starting scenarios after the first one with a failure.
    exitfirst: bool = False


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict in one scenario."""

    check: Check
    scenario: str
    verdict: Verdict
    wall_s: float


@dataclass
class ScenarioResult:
    """Everything one scenario run produced."""

    scenario: Scenario
    results: list[CheckResult]
    wall_s: float
    time_scale: float
    error: HarnessError | None = None
    notes: list[str] = field(default_factory=list)
    evidence: Evidence | None = None


@dataclass
class SuiteResult:
    """A whole run against one spec version."""

    spec_version: str
    target: tuple[str, ...]
    scenarios: list[ScenarioResult]
    wall_s: float
    profile: str = DEFAULT_PROFILE
    # Scenarios the -k selection chose but the profile leaves out, with the reason.
    not_in_profile: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def results(self) -> list[CheckResult]:
        """Every check result, scenario by scenario."""
        return [r for s in self.scenarios for r in s.results]

    @property
    def errors(self) -> list[HarnessError]:
        """Harness errors (the run proves nothing where they happened)."""
        return [s.error for s in self.scenarios if s.error is not None]

    @property
    def exit_code(self) -> int:
        """0 conformant, 1 non-conformant, 2 the harness could not judge; a proven failure is 1
        whatever else could not be judged (CI must never retry it as an infrastructure flake)."""
        outcomes = {r.verdict.outcome for r in self.results}
        if Outcome.FAIL in outcomes:
            return 1
        if self.errors or Outcome.ERROR in outcomes:
            return 2
        return 0

    def clause_verdicts(self) -> dict[str, tuple[Outcome, list[CheckResult]]]:
        """Clause -> worst outcome over its checks, and the checks (ERROR beats FAIL beats PASS)."""
        rank = {Outcome.PASS: 0, Outcome.FAIL: 1, Outcome.ERROR: 2}
        table: dict[str, tuple[Outcome, list[CheckResult]]] = {}
        for r in self.results:
            for clause in r.check.clauses:
                outcome, items = table.get(clause, (Outcome.PASS, []))
                items.append(r)
                worst = outcome if rank[outcome] >= rank[r.verdict.outcome] else r.verdict.outcome
                table[clause] = (worst, items)
        return table


# ------------------------------------------------------------------------------------ selection
def selected(
    scenarios: Sequence[Scenario], spec: Spec, keyword: str | None, profile: str | None = None
) -> list[tuple[Scenario, tuple[Check, ...]]]:
    """The scenarios to run for a spec version, each with the checks of it that are selected
    (only those in ``profile``, when given)."""
    expr = KeywordExpression(keyword) if keyword else None
    out = []
    for sc in scenarios:
        if not sc.applies_to(spec) or (profile is not None and not sc.in_profile(profile)):
            continue
        checks = tuple(
            c
            for c in sc.check_objects()
            if c.applies_to(spec) and (expr is None or expr.matches((*c.keywords(), sc.name)))
        )
        if checks:
            out.append((sc, checks))
    return out


def out_of_profile(options: SuiteOptions, scenarios: Sequence[Scenario]) -> list[tuple[str, str]]:
    """Scenarios the selection chose that the profile leaves out, each with the reason."""
    spec = load_spec(options.spec_version)
    return [
        (sc.name, f"not in profile {options.profile}: {PROFILES[options.profile]}")
        for sc, _ in selected(scenarios, spec, options.keyword)
        if not sc.in_profile(options.profile)
    ]


def profile_notes(profile: str) -> list[str]:
    """What the profile cannot judge yet (said, never faked as verdicts): nothing at present."""
    return []


def contacted(records: Sequence[Record]) -> bool:
    """Whether the target ever talked to a mock (a request, a frame or a socket)."""
    return any(r.get("dir") == "in" or r.get("kind") == "ws_open" for r in records)


def resolve_target(argv: Sequence[str]) -> tuple[str, ...]:
    """Check that the target command can be executed before any scenario starts."""
    if not argv:
        raise ConfigError("--target: empty command")
    exe = argv[0]
    if os.sep in exe:
        if not Path(exe).is_file():
            raise ConfigError(f"--target: {exe!r} does not exist")
        if not os.access(exe, os.X_OK):
            raise ConfigError(f"--target: {exe!r} is not executable")
    elif shutil.which(exe) is None:
        raise ConfigError(f"--target: command {exe!r} not found on PATH")
    return tuple(argv)


def spec_variables() -> frozenset[str]:
    """Every environment variable any spec version declares (never inherited by a target)."""
    return frozenset(e.name for v in available_versions() for e in load_spec(v).environment)


# ------------------------------------------------------------------------------------ one scenario
class ScenarioRun:
    """Runs one scenario: the Driver its script talks to, then the checks."""

    def __init__(
        self,
        scenario: Scenario,
        checks: tuple[Check, ...],
        spec: Spec,
        options: SuiteOptions,
    ) -> None:
        self.scenario = scenario
        self.checks = checks
        self.spec = spec
        self.options = options
        self.time_scale = scenario.time_scale * options.time_scale_factor
        self.subscriptions = tuple(scenario.subscriptions(spec))
        self._mocks = ScenarioMocks(scenario, spec, self.time_scale, options.seed)
        self._targets: list[TargetProcess] = []
        self._redis: PrivateRedis | None = None
        self._env: dict[str, str] = {}
        self._records: list[Record] = []
        self._last_seq = 0
        self._marks: dict[str, float] = {}
        self._notes: list[str] = []
        self._secrets: dict[str, str] = {}
        self._lock = threading.Lock()
        # The internal API (scenarios with ``api`` set): where the target serves it, its key, and
        # what the suite's browsers saw there (evidence beside the mock's trace).
        self.api_url = ""
        self.api_urls: tuple[str, ...] = ()
        self.api_key = ""
        self._api_ports: tuple[str, ...] = ()
        self._observations: list[Record] = []

    # --- Driver -----------------------------------------------------------------------------
    def now(self) -> float:
        """Spec seconds since the mock started."""
        return self._mocks.now() * self.time_scale

    def start(self, index: int | None = None) -> None:
        """Start target ``index`` (or every target not started yet)."""
        indexes = range(self.scenario.targets) if index is None else [index]
        for i in indexes:
            if any(t.index == i for t in self._targets):
                continue
            env = dict(self._env)
            if self._api_ports:  # every replica serves the internal API on a port of its own
                env[self.spec.clause("API-SERVICE").string("port_variable")] = self._api_ports[i]
            proc = TargetProcess(i, self.options.target, env, self._mocks.now)
            self.mark(f"start{i}")
            proc.start()
            self._targets.append(proc)

    def kill(self, index: int) -> None:
        """SIGKILL target ``index`` (a replica dying without a word: no SIGTERM, no clean-up)."""
        self.mark(f"kill{index}")
        for t in self._targets:
            if t.index == index:
                t.kill()

    def redis_kill(self, mark: str) -> None:
        """Kill the scenario's redis-server (the scenario must have ``redis`` set)."""
        if self._redis is None:
            raise HarnessError(f"scenario {self.scenario.name} has no Redis to kill")
        self.mark(mark)
        self._redis.kill()

    def redis_start(self, mark: str) -> None:
        """Restart the scenario's redis-server on its port, empty."""
        if self._redis is None:
            raise HarnessError(f"scenario {self.scenario.name} has no Redis to start")
        self._redis.start()
        self.mark(mark)

    def terminate(self, index: int) -> None:
        """SIGTERM target ``index`` and wait for it (an orderly shutdown, as API-SERVICE's)."""
        self.mark(f"term{index}")
        for t in self._targets:
            if t.index == index:
                t.stop()

    def alive(self) -> int:
        """Targets still running."""
        return sum(1 for t in self._targets if t.alive())

    def records(self) -> Sequence[Record]:
        """The trace so far (fetched incrementally)."""
        with self._lock:
            new = self._mocks.records(self._last_seq)
            if new:
                self._records.extend(new)
                self._last_seq = int(new[-1]["seq"])
            return self._records

    def sleep(self, spec_s: float) -> None:
        """Let spec time pass; returns early once every started target has exited."""
        self.sleep_until(self.now() + spec_s)

    def sleep_until(self, t_spec: float) -> None:
        """Sleep until the mock's spec clock reads ``t_spec`` (early if all targets exited)."""
        while True:
            left = (t_spec - self.now()) / self.time_scale
            if left <= 0 or (self._targets and self.alive() == 0):
                return
            time.sleep(min(left, _POLL_S * 5))

    def wait_until(
        self, predicate: Callable[[Sequence[Record]], bool], timeout_s: float, label: str
    ) -> bool:
        """Poll until the predicate holds on the trace; False (and a note) after the timeout."""
        deadline = self.now() + timeout_s
        while True:
            if predicate(self.records()):
                return True
            if self.now() >= deadline:
                self.note(f"waited {timeout_s:g} spec s for {label}: did not happen")
                return False
            if self._targets and self.alive() == 0:
                self.note(f"every target exited while waiting for {label}")
                return False
            time.sleep(_POLL_S)

    def fault(self, name: str, **params: Any) -> None:
        """Inject a fault through the KIS mock's fault API on its own loop."""
        self._mocks.fault("kis", name, params)

    def kiwoom_fault(self, name: str, **params: Any) -> None:
        """Inject a fault on the scenario's Kiwoom mock (the same thread-safe fault API)."""
        self._mocks.fault(KIWOOM, name, params)

    def mark(self, name: str) -> float:
        """Remember the current spec time under a name."""
        t = self.now()
        self._marks[name] = t
        return t

    def note(self, text: str) -> None:
        """A remark for the report."""
        self._notes.append(text)

    def observe(self, record: Record) -> None:
        """Keep what a browser of the suite saw on the target's internal API (thread-safe)."""
        with self._lock:
            self._observations.append(record)

    # --- lifecycle --------------------------------------------------------------------------
    def _build_env(
        self, mock_env: Mapping[str, str], redis: PrivateRedis | None, cache_dir: str
    ) -> None:
        strip = spec_variables()
        env = {k: v for k, v in os.environ.items() if k not in strip}
        env.update(mock_env)
        env["STOCKMON_SUBSCRIPTIONS"] = ",".join(f"{t}:{k}" for t, k in self.subscriptions)
        env["STOCKMON_TIME_SCALE"] = repr(self.time_scale)
        env["STOCKMON_SPEC_VERSION"] = self.spec.version
        env["STOCKMON_ENV"] = self.scenario.env
        env["STOCKMON_BROKER"] = self.scenario.broker
        # A token cached by an earlier scenario's mock must not leak into this one.
        env["STOCKMON_CACHE_DIR"] = cache_dir
        # Python targets block-buffer a pipe; events must arrive as they happen.
        env["PYTHONUNBUFFERED"] = "1"
        # Canaries: secrets the target has no use for must not be printed either (CRED-ENV).
        for name in self.spec.secret_variables:
            if name not in env and name != "REDIS_URL":
                env[name] = f"canary-{name.lower().replace('_', '-')}-{secrets.token_hex(10)}"
        if redis is not None:
            env["REDIS_URL"] = redis.url
        if self.scenario.api:
            self._api_env(env)
        for name in self.scenario.drop_env:
            env.pop(name, None)
        self._env = env
        self._secrets = {
            name: env[name]
            for name in self.spec.secret_variables
            if env.get(name) and name != "REDIS_URL"
        }
        if redis is not None and "REDIS_URL" in env:
            self._secrets["REDIS_URL password"] = redis.password

    def _api_env(self, env: dict[str, str]) -> None:
        """The internal API's address (a free loopback port) and a fresh key (API-SERVICE, API-AUTH)."""
        service = self.spec.clause("API-SERVICE")
        host = service.string("host")
        env[service.string("host_variable")] = host
        self._api_ports = tuple(str(free_port()) for _ in range(self.scenario.targets))
        env[service.string("port_variable")] = self._api_ports[0]
        self.api_urls = tuple(f"http://{host}:{port}" for port in self._api_ports)
        self.api_url = self.api_urls[0]
        self.api_key = f"suite-api-key-{secrets.token_hex(16)}"
        env[self.spec.clause("API-AUTH").string("key_variable")] = self.api_key
        env[self.spec.clause("API-CORS").string("origins_variable")] = ALLOWED_ORIGIN

    def execute(self) -> ScenarioResult:
        """Run the scenario and judge it; harness errors end up in the result, not raised."""
        started = time.monotonic()
        try:
            evidence = self._run()
        except ConfigError:
            raise
        except HarnessError as exc:
            return self._errored(exc, time.monotonic() - started)
        except Exception as exc:  # a bug in a scenario script must not hide the other scenarios
            crash = CheckCrashed(
                f"scenario {self.scenario.name} crashed: {type(exc).__name__}: {exc}\n"
                + traceback.format_exc(limit=6)
            )
            return self._errored(crash, time.monotonic() - started)
        wall = time.monotonic() - started
        silent = not self.scenario.expect_exit and not contacted(evidence.records)
        verdicts = judge_within(
            self.checks,
            evidence,
            lambda c: self._judge(c, evidence, silent),
            self.options.judging_budget_s,
        )
        results = [
            CheckResult(c, self.scenario.name, v, wall)
            for c, v in zip(self.checks, verdicts, strict=True)
        ]
        return ScenarioResult(
            self.scenario, results, wall, self.time_scale, None, list(self._notes), evidence
        )

    def _errored(self, exc: HarnessError, wall: float) -> ScenarioResult:
        verdict = errored(str(exc))
        results = [CheckResult(c, self.scenario.name, verdict, wall) for c in self.checks]
        return ScenarioResult(self.scenario, results, wall, self.time_scale, exc, list(self._notes))

    def _run(self) -> Evidence:
        redis: PrivateRedis | None = None
        cache = tempfile.TemporaryDirectory(prefix="stockmon-cache-")
        try:
            self._mocks.start()
            if self.scenario.redis:
                redis = PrivateRedis()
                redis.start()
                self._redis = redis
            self._build_env(self._mocks.env(), redis, cache.name)
            try:
                self.scenario.script(self)
            finally:
                self.mark("end")
                for t in self._targets:
                    t.stop()
            records = tuple(self.records())
            runs = tuple(t.result(self.time_scale) for t in self._targets)
            end_t_spec = self.now()
            if self.options.trace_dir is not None:
                self._dump(records)
        finally:
            try:
                self._mocks.stop()
            finally:
                if redis is not None:
                    redis.stop()
                cache.cleanup()
        self._check_started(records, runs)
        return Evidence(
            scenario=self.scenario.name,
            spec=self.spec,
            time_scale=self.time_scale,
            records=records,
            targets=runs,
            subscriptions=self.subscriptions,
            secrets=dict(self._secrets),
            marks=dict(self._marks),
            mock=self._mocks.facts(),
            end_t_spec=end_t_spec,
            notes=tuple(self._notes),
            observations=tuple(self._observations),
        )

    def _check_started(self, records: Sequence[Record], runs: Sequence[Any]) -> None:
        """A target that exited before it ever talked to the mock could not start."""
        if self.scenario.expect_exit or not runs:
            return
        talked = contacted(records)
        for run in runs:
            if run.exited_by_itself and not talked:
                raise TargetStartError(
                    f"target exited with status {run.returncode} before contacting the mock "
                    f"(scenario {self.scenario.name})",
                    run.stderr_tail(),
                )

    def _dump(self, records: Sequence[Record]) -> None:
        assert self.options.trace_dir is not None
        self.options.trace_dir.mkdir(parents=True, exist_ok=True)
        path = self.options.trace_dir / f"{self.spec.version}-{self.scenario.name}.jsonl"
        # backslashreplace: whatever a target made the mock record, the dump never fails on it
        with path.open("w", encoding="utf-8", errors="backslashreplace") as fh:
            for r in records:
                # Compact JSON, one record a line; a value JSON cannot hold becomes its string.
                fh.write(
                    json.dumps(dict(r), ensure_ascii=False, separators=(",", ":"), default=str)
                )
                fh.write("\n")

    def _judge(self, check: Check, evidence: Evidence, silent: bool = False) -> Verdict:
        verdict = self._verdict(check, evidence)
        if silent and verdict.ok:
            return no_evidence(
                "the target never contacted the mock (no request, no socket, no frame); "
                f"the check alone would have said: {verdict.summary}",
                expected=check.doc,
            )
        return verdict

    def _verdict(self, check: Check, evidence: Evidence) -> Verdict:
        try:
            verdict = check.func(evidence)
        except CheckFailure as exc:
            return failed(exc.message, expected=exc.expected, evidence=exc.evidence)
        except HarnessError as exc:
            return errored(str(exc))
        except Exception as exc:  # a bug in a check must not hide the other verdicts
            tb = traceback.format_exc(limit=4)
            return errored(f"check {check.name} crashed: {type(exc).__name__}: {exc}\n{tb}")
        if not isinstance(verdict, Verdict):
            return errored(f"check {check.name} returned {type(verdict).__name__}, not a Verdict")
        return verdict


# ------------------------------------------------------------------------------------ watchdog
class _JudgingStopped(BaseException):
    """Raised inside a check that overran the judging budget (never caught by a check)."""


def _stop_thread(thread: threading.Thread) -> None:
    """Interrupt a pure-Python check at its next bytecode (it holds no resource to clean up)."""
    if thread.ident is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(thread.ident), ctypes.py_object(_JudgingStopped)
        )


def judge_within(
    checks: Sequence[Check],
    evidence: Evidence,
    judge: Callable[[Check], Verdict],
    budget_s: float,
) -> list[Verdict]:
    """Every check's verdict, the checks judged one after another under a watchdog: the checks
    still unjudged when ``budget_s`` real seconds are up fail (the evidence grew without bound)."""
    verdicts: list[Verdict] = []

    def work() -> None:
        try:
            for c in checks:
                verdicts.append(judge(c))
        except _JudgingStopped:
            return

    worker = threading.Thread(target=work, name="judge", daemon=True)
    started = time.monotonic()
    worker.start()
    worker.join(budget_s)
    if worker.is_alive():
        _stop_thread(worker)
        worker.join(5.0)
    done = list(verdicts)
    if len(done) == len(checks):
        return done
    mine = [r for r in evidence.records if r.get("dir") == "in"]
    stopped = failed(
        f"the evidence grew without bound: judging was stopped by the watchdog after "
        f"{time.monotonic() - started:.1f} real s ({len(evidence.records)} trace records, "
        f"{len(mine)} of them sent by the target)",
        expected=f"a trace the suite can judge within {budget_s:g} real s (no storm of frames)",
        evidence=mine[-3:],
    )
    return done + [stopped] * (len(checks) - len(done))


# ------------------------------------------------------------------------------------ the suite
def plan(options: SuiteOptions, scenarios: Sequence[Scenario]) -> list[ScenarioRun]:
    """Validate the options and build one run per selected scenario (longest first); raises
    :class:`ConfigError` for a bad version, target, selection or a missing redis-server."""
    if options.spec_version not in available_versions():
        raise ConfigError(
            f"--spec {options.spec_version!r} is unknown; available: {', '.join(available_versions())}"
        )
    if options.profile not in PROFILES:
        raise ConfigError(
            f"--profile {options.profile!r} is unknown; choose one of {', '.join(PROFILES)}"
        )
    if not options.time_scale_factor > 0:
        raise ConfigError("--time-scale must be a positive number")
    spec = load_spec(options.spec_version)
    resolve_target(options.target)
    chosen = selected(scenarios, spec, options.keyword, options.profile)
    if not chosen:
        raise ConfigError(
            f"-k {options.keyword!r} selects no check for spec {spec.version} in profile "
            f"{options.profile}"
            if options.keyword
            else f"no scenario applies to spec {spec.version} in profile {options.profile}"
        )
    if any(sc.redis for sc, _ in chosen) and shutil.which("redis-server") is None:
        names = ", ".join(sc.name for sc, _ in chosen if sc.redis)
        raise ConfigError(
            f"redis-server is not installed but scenario(s) {names} need it "
            "(install redis-server, or deselect them with -k)"
        )
    chosen.sort(key=lambda item: -item[0].weight)
    return [ScenarioRun(sc, checks, spec, options) for sc, checks in chosen]


def assemble(
    options: SuiteOptions,
    scenarios: Sequence[Scenario],
    results: Sequence[ScenarioResult],
    wall_s: float,
) -> SuiteResult:
    """The suite result of finished scenario runs, in catalogue order."""
    order = {sc.name: i for i, sc in enumerate(scenarios)}
    ordered = sorted(results, key=lambda r: order.get(r.scenario.name, 0))
    return SuiteResult(
        options.spec_version,
        options.target,
        ordered,
        wall_s,
        options.profile,
        out_of_profile(options, scenarios),
        profile_notes(options.profile),
    )


def run_suite(
    options: SuiteOptions,
    scenarios: Sequence[Scenario],
    progress: Callable[[ScenarioResult], None] | None = None,
) -> SuiteResult:
    """Run every selected scenario (concurrently) against the target; never raises for the
    target's behaviour, only for configuration errors (:class:`ConfigError`)."""
    runs = plan(options, scenarios)
    started = time.monotonic()
    results: list[ScenarioResult] = []
    with ThreadPoolExecutor(
        max_workers=max(1, min(options.jobs, len(runs))), thread_name_prefix="scenario"
    ) as pool:
        futures = [pool.submit(run.execute) for run in runs]
        for fut in futures:
            if fut.cancelled():
                continue
            res = fut.result()
            results.append(res)
            if progress is not None:
                progress(res)
            if options.exitfirst and any(r.verdict.outcome is Outcome.FAIL for r in res.results):
                for other in futures:
                    other.cancel()
    return assemble(options, scenarios, results, time.monotonic() - started)
