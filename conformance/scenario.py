"""Scenarios: one target run (mock configuration + fault timeline in spec time) feeding several checks.

A scenario's ``script`` is its timeline: it starts the target(s), waits for the situation it needs
(``wait_until`` on the trace, always bounded in spec seconds), injects faults and sets named marks
the checks can refer to. Waiting that times out is not a harness error: the target simply did not
do what the scenario waited for, and the checks will say so from the evidence.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from stockmon.conformance.evidence import Record
from stockmon.conformance.registry import Check, CheckFunc, registered
from stockmon.spec import Spec


class Driver(Protocol):
    """What a scenario script may do while its target runs (implemented by the runner)."""

    spec: Spec
    time_scale: float
    subscriptions: tuple[tuple[str, str], ...]

    def start(self, index: int | None = None) -> None:
        """Start one target (or all of them)."""

    def now(self) -> float:
        """Spec seconds since the mock started."""

    def sleep(self, spec_s: float) -> None:
        """Let ``spec_s`` spec seconds pass (ends early if every target has exited)."""

    def sleep_until(self, t_spec: float) -> None:
        """Sleep until the mock's spec clock reads ``t_spec``."""

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

    def note(self, text: str) -> None:
        """A remark for the report (e.g. what the script waited for in vain)."""

    def records(self) -> Sequence[Record]:
        """The trace so far."""

    def alive(self) -> int:
        """How many targets are still running."""


def _no_overrides(spec: Spec) -> Mapping[str, Any]:
    return {}


@dataclass(frozen=True)
class Scenario:
    """A mock configuration, a timeline and the checks that judge the run."""

    name: str
    doc: str
    checks: tuple[CheckFunc, ...]
    script: Callable[[Driver], None]
    subscriptions: Callable[[Spec], Sequence[tuple[str, str]]]
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
    extra_env: Callable[[Spec], Mapping[str, str]] = field(default=lambda spec: {})
    # KiwoomMockConfig overrides; set = a Kiwoom mock runs beside the KIS mock, on one trace.
    kiwoom: Callable[[Spec], Mapping[str, Any]] | None = None

    def check_objects(self) -> tuple[Check, ...]:
        """The registered checks this scenario feeds."""
        return tuple(registered(f) for f in self.checks)

    def applies_to(self, spec: Spec) -> bool:
        """Whether the scenario makes sense for a spec version."""
        return all(spec.has(c) for c in self.requires)
