"""Errors of the conformance suite: a *failure* is the target's fault, a *harness error* is ours.

    ConformanceError (StockmonError)
    ├── HarnessError                  the suite could not judge; exit 2, never a verdict on the target
    │   ├── ConfigError (UsageError)  bad flag, unknown spec version, bad target command, empty -k selection
    │   ├── TargetStartError          the target exited before it ever talked to the mock (stderr tail)
    │   ├── ResourceError             a port in use, redis-server missing or dead, the mock failed to start
    │   └── CheckCrashed              a check raised instead of returning a verdict (a bug in the suite)
    └── CheckFailure (+ AssertionError)  the target broke a clause: what happened, what was expected, evidence

Like schemathesis (core/failures.py), a failure is data about the target, reported with the clause it
breaks and the slice of the trace that shows it; a harness error says the run proves nothing. A check
normally *returns* a failed verdict; raising :class:`CheckFailure` is the shortcut for deep helpers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from stockmon.errors import StockmonError, UsageError


class ConformanceError(StockmonError):
    """Root of every error the conformance suite raises on purpose."""


class HarnessError(ConformanceError):
    """The suite itself could not run or judge: the result says nothing about the target."""


class ConfigError(HarnessError, UsageError):
    """The user's configuration is wrong (flag, spec version, target command, selection)."""


class TargetStartError(HarnessError):
    """The target exited before it contacted the mock; carries the tail of its stderr."""

    def __init__(self, message: str, stderr_tail: str = "") -> None:
        tail = stderr_tail.strip().splitlines()[-1:] if stderr_tail.strip() else []
        super().__init__(message + (f"; last stderr line: {tail[0]}" if tail else ""))
        self.stderr_tail = stderr_tail


class ResourceError(HarnessError):
    """A resource the harness needs is unavailable (port, redis-server, the mock)."""


class CheckCrashed(HarnessError):
    """A check raised an unexpected exception: a bug in the suite, not a verdict on the target."""


class CheckFailure(ConformanceError, AssertionError):
    """The target broke a clause; raised by deep helpers and turned into a failed verdict."""

    def __init__(
        self,
        message: str,
        *,
        expected: str,
        evidence: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.expected = expected
        self.evidence = tuple(evidence)
