"""Scenarios: one target run (mock configuration + fault timeline in spec time) feeding several checks.

A scenario's ``script`` is its timeline: it starts the target(s), waits for the situation it needs
(``wait_until`` on the trace, always bounded in spec seconds), injects faults and sets named marks
the checks can refer to. Waiting that times out is not a harness error: the target simply did not
do what the scenario waited for, and the checks will say so from the evidence.

Below the :class:`Scenario` type are the building blocks every subject's scripts share (pacing,
trace watchers); the catalogue itself is :mod:`stockmon.conformance.scenarios`, one module a subject.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from stockmon.conformance.evidence import Record
from stockmon.conformance.registry import Check, CheckFunc, registered
from stockmon.spec import Spec, ws_answer_code


class Driver(Protocol):
    """What a scenario script may do while its target runs (implemented by the runner)."""

    spec: Spec
    time_scale: float
    subscriptions: tuple[tuple[str, str], ...]
    # The target's internal API (scenarios with ``api`` set; empty otherwise): the first
    # target's URL, and every target's in index order (each replica serves on its own port).
    api_url: str
    api_urls: tuple[str, ...]
    api_key: str

    def start(self, index: int | None = None) -> None:
        """Start one target (or all of them)."""

    def kill(self, index: int) -> None:
        """SIGKILL target ``index`` (a replica that dies without a word; marks ``kill<index>``)."""

    def redis_kill(self, mark: str) -> None:
        """Kill the scenario's redis-server (an outage as clients see it; marks ``mark``)."""

    def redis_start(self, mark: str) -> None:
        """Start it again on its port, empty (it keeps nothing); marks ``mark`` once it answers."""

    def terminate(self, index: int) -> None:
        """SIGTERM target ``index`` and wait for it to exit (marks ``term<index>``; its run's
        ``end_t`` is when it was gone)."""

    def now(self) -> float:
        """Spec seconds since the mock started."""

    def sleep(self, spec_s: float) -> None:
        """Let ``spec_s`` spec seconds pass (ends early if every target has exited)."""

    def wait_until(
        self, predicate: Callable[[Sequence[Record]], bool], timeout_s: float, label: str
    ) -> bool:
        """Poll the trace until ``predicate(records)`` holds; False after ``timeout_s`` spec s."""

    def fault(self, name: str, **params: Any) -> None:
        """Call ``mock.faults.<name>(**params)`` on the mock's loop (the mock traces it)."""

    def kiwoom_fault(self, name: str, **params: Any) -> None:
        """The same on the scenario's Kiwoom mock (scenarios with ``kiwoom`` set)."""

    def mark(self, name: str) -> float:
        """Remember the current spec time under ``name`` for the checks; returns it."""

    def records(self) -> Sequence[Record]:
        """The trace so far."""

    def observe(self, record: Record) -> None:
        """Keep what a browser saw on the internal API (evidence for the API checks)."""

    def alive(self) -> int:
        """How many targets are still running."""


# ------------------------------------------------------------------------------ subscriptions
def three_ticks(spec: Spec) -> tuple[tuple[str, str], ...]:
    """Three tick subscriptions with distinct keys (faults are injected per key)."""
    kr = next(
        t for t, lay in sorted(spec.layouts.items()) if lay.market == "KR" and lay.kind == "tick"
    )
    us = next(
        t for t, lay in sorted(spec.layouts.items()) if lay.market == "US" and lay.kind == "tick"
    )
    return ((kr, "005930"), (kr, "000660"), (us, "DNASAAPL"))


def kiwoom_subscriptions(spec: Spec) -> tuple[tuple[str, str], ...]:
    """A KR tick, a KR book (Kiwoom serves both) and a US tick (it serves none), from the layouts."""
    keys = {"KR": ("005930", "000660"), "US": ("DNASAAPL",)}
    out: list[tuple[str, str]] = []
    used: dict[str, int] = {}
    for tr_id, layout in sorted(spec.layouts.items(), key=lambda kv: (kv[1].market, kv[1].kind)):
        if layout.market not in keys or (layout.market == "US" and layout.kind != "tick"):
            continue
        i = used.get(layout.market, 0)
        if i < len(keys[layout.market]):
            out.append((tr_id, keys[layout.market][i]))
            used[layout.market] = i + 1
    return tuple(out)


# ------------------------------------------------------------------------------ profiles
# What a backend is judged as: ``kis`` a KIS-only backend (no Kiwoom backup, so the Kiwoom and
# failover stories are not in its profile), ``full`` KIS with the Kiwoom backup, ``api`` the
# internal API a backend serves to browsers (its broker half is judged by ``kis`` or ``full``).
PROFILES: Mapping[str, str] = {
    "kis": "a KIS-only backend (Kiwoom and failover scenarios not in profile)",
    "full": "KIS with the Kiwoom backup",
    "api": "the internal API behind VITE_API_KEY (REST + WebSocket; default target 'stockmon serve')",
}
# How a target declares its profile when --profile is not given: this variable in the environment
# the suite runs in (next to the --target command in CI).
PROFILE_VARIABLE = "STOCKMON_TARGET_PROFILE"
DEFAULT_PROFILE = "full"


def _no_overrides(spec: Spec) -> Mapping[str, Any]:
    return {}


@dataclass(frozen=True)
class Scenario:
    """A mock configuration, a timeline and the checks that judge the run."""

    name: str
    doc: str
    checks: tuple[CheckFunc, ...]
    script: Callable[[Driver], None]
    subscriptions: Callable[[Spec], Sequence[tuple[str, str]]] = three_ticks
    # Spec seconds per real second, chosen so the scenario's tolerances stay above scheduling
    # noise on a loaded 2-core machine; ``--time-scale`` multiplies it.
    time_scale: float = 10.0
    mock: Callable[[Spec], Mapping[str, Any]] = _no_overrides
    targets: int = 1
    redis: bool = False
    drop_env: tuple[str, ...] = ()
    # The target is expected to exit on its own (e.g. a missing credential): no start error then.
    expect_exit: bool = False
    # Clauses the scenario needs; it is skipped for a spec version that lacks any of them.
    requires: tuple[str, ...] = ()
    # Rough real seconds at the default scale, to start the longest scenarios first.
    weight: float = 10.0
    # STOCKMON_BROKER and STOCKMON_ENV of the target ("kiwoom" or "auto"; "prod" for the rules
    # the mock environment may skip).
    broker: str = "kis"
    env: str = "mock"
    # KiwoomMockConfig overrides; set = a Kiwoom mock runs beside the KIS mock, on one trace.
    kiwoom: Callable[[Spec], Mapping[str, Any]] | None = None
    # The target serves the internal API: the runner gives it STOCKMON_API_HOST/PORT and a
    # VITE_API_KEY, and the script connects to it as browsers do (profile api only).
    api: bool = False

    def check_objects(self) -> tuple[Check, ...]:
        """The registered checks this scenario feeds."""
        return tuple(registered(f) for f in self.checks)

    def in_profile(self, profile: str) -> bool:
        """Whether the scenario judges a backend of that profile (a KIS-only backend has no
        Kiwoom backup to register, log in to or fail over to; the internal API's scenarios are
        profile api's, and only those)."""
        if self.api or profile == "api":
            return self.api and profile == "api"
        return profile != "kis" or (self.kiwoom is None and self.broker == "kis")

    def applies_to(self, spec: Spec) -> bool:
        """Whether the scenario makes sense for a spec version."""
        return all(spec.has(c) for c in self.requires)


# ------------------------------------------------------------------------------ pacing
def story(
    name: str, checks: tuple[CheckFunc, ...], **options: Any
) -> Callable[[Callable[[Driver], None]], Scenario]:
    """Declare a scenario on its script: the script's docstring is the scenario's doc (``--list``
    and the reports), so what a story does and what it says it does stand together."""

    def declare(script: Callable[[Driver], None]) -> Scenario:
        if not script.__doc__:
            raise TypeError(f"scenario {name}: its script needs a docstring (the scenario's doc)")
        doc = " ".join(script.__doc__.split())
        return Scenario(name=name, doc=doc, checks=checks, script=script, **options)

    return declare


def ticking(scale: float, per_real_s: float = 5.0) -> Callable[[Spec], Mapping[str, Any]]:
    """Mock overrides that only pace market data (:func:`frames`) for a story at ``scale``."""
    rate = frames(scale, per_real_s)
    return lambda spec: {"tick_rate_hz": rate}


# Non-normative: spec seconds a script lets pass after the situation it waited for, so late
# misbehaviour (a second request, a storm) still lands in the trace.
SETTLE_REAL_S = 1.5
# How long a target may take to start and subscribe, in real seconds: process start, imports,
# token and approval key on two busy cores (seven scenarios run at once) is not a clause, so the
# bound is generous; it is a wait for an event, so a target that is quicker is not slowed down.
STARTUP_REAL_S = 20.0


def frames(scale: float, per_real_s: float = 5.0) -> float:
    """``tick_rate_hz`` (per spec second) giving ``per_real_s`` data frames per real second per
    registration (non-normative pacing: the mock and the target are never the bottleneck)."""
    return per_real_s / scale


def calm(spec: Spec, scale: float) -> dict[str, Any]:
    """KIS mock settings for stories that do not judge keep-alive: the server's grace for an
    unanswered PINGPONG (30 spec s) would be a fraction of a real second at a high time scale, and
    a late answer on a loaded machine would close the socket in the middle of another story."""
    return {"unanswered_pingpong_grace_s": 3.0 * scale} if spec.has("KA-SERVER-PINGPONG") else {}


def settle(d: Driver) -> None:
    """Let ``SETTLE_REAL_S`` real seconds pass."""
    d.sleep(SETTLE_REAL_S * d.time_scale)


def ping_interval(spec: Spec) -> float:
    """KA-PING's interval (spec s)."""
    return spec.clause("KA-PING").number("interval_s")


# ------------------------------------------------------------------------------ trace watchers
def all_subscribed(
    d: Driver, after_seq: int = 0, exclude: Sequence[str] = ()
) -> Callable[[Sequence[Record]], bool]:
    """Predicate: one KIS session has confirmed every subscription (but ``exclude``d keys)."""
    code = ws_answer_code(d.spec, "subscribed")
    wanted = {s for s in d.subscriptions if s[1] not in exclude}
    state: dict[str, set[tuple[Any, Any]]] = {}
    cursor = [0]

    def pred(records: Sequence[Record]) -> bool:
        for r in records[cursor[0] :]:
            if (
                r.get("kind") == "text"
                and r.get("dir") == "out"
                and r.get("msg_cd") == code
                and int(r["seq"]) > after_seq
            ):
                state.setdefault(str(r["conn"]), set()).add((r.get("tr_id"), r.get("tr_key")))
        cursor[0] = len(records)
        return any(wanted <= s for s in state.values())

    return pred


def seen(
    match: Callable[[Record], bool], after_seq: int = 0, count: int = 1
) -> Callable[[Sequence[Record]], bool]:
    """Predicate: ``count`` records after ``after_seq`` match."""
    state = {"cursor": 0, "hits": 0}

    def pred(records: Sequence[Record]) -> bool:
        for r in records[state["cursor"] :]:
            if int(r["seq"]) > after_seq and match(r):
                state["hits"] += 1
        state["cursor"] = len(records)
        return state["hits"] >= count

    return pred


def last_seq(d: Driver) -> int:
    """The sequence number of the newest trace record (0 for an empty trace)."""
    recs = d.records()
    return int(recs[-1]["seq"]) if recs else 0


def start_and_subscribe(
    d: Driver, timeout_s: float | None = None, exclude: Sequence[str] = ()
) -> bool:
    """Start the target and wait until one KIS session confirmed every subscription."""
    d.start()
    return d.wait_until(
        all_subscribed(d, exclude=exclude),
        timeout_s if timeout_s is not None else STARTUP_REAL_S * d.time_scale,
        "every subscription confirmed on one socket",
    )


def exits_on_its_own(d: Driver) -> None:
    """Start a target that must exit at once (a missing credential): wait until it exits or
    contacts a mock, bounded in spec time, then settle."""
    d.start()
    contact = seen(lambda r: r.get("dir") == "in" or r.get("kind") == "ws_open")
    deadline = d.now() + 8 * d.time_scale
    while d.alive() and d.now() < deadline and not contact(d.records()):
        d.sleep(0.05 * d.time_scale)
    settle(d)
