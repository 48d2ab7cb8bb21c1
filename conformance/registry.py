"""Verdicts, the check registry and the ``-k`` selection.

A *check* is a plain function named for the property it checks (trio.testing style:
``pings_sent_every_interval(evidence)``), tagged with the clause IDs it judges, that reads the
evidence of one scenario run and returns a :class:`Verdict`. Checks never drive the target; the
scenario that feeds them does (see :mod:`stockmon.conformance.scenario`).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stockmon.conformance.errors import ConfigError
from stockmon.conformance.evidence import Evidence, Record
from stockmon.spec import Spec


class Outcome(enum.Enum):
    """How a check ended: the target passed, the target failed, or the harness could not judge."""

    PASS = "pass"  # noqa: S105 - a verdict, not a password
    FAIL = "fail"
    ERROR = "error"


@dataclass(frozen=True)
class Verdict:
    """The judgement of one check: what was seen, what was expected, and the records that show it."""

    outcome: Outcome
    summary: str
    expected: str = ""
    evidence: tuple[Record, ...] = ()

    @property
    def ok(self) -> bool:
        """True when the target passed."""
        return self.outcome is Outcome.PASS


def passed(summary: str) -> Verdict:
    """A passing verdict; ``summary`` says what was observed (shown in verbose reports)."""
    return Verdict(Outcome.PASS, summary)


def failed(summary: str, *, expected: str, evidence: Sequence[Record] = ()) -> Verdict:
    """A failing verdict: what the target did, what the clause expected, and the trace slice."""
    return Verdict(Outcome.FAIL, summary, expected, tuple(evidence))


NO_EVIDENCE = "no evidence: "


def no_evidence(what: str, *, expected: str, evidence: Sequence[Record] = ()) -> Verdict:
    """A check that had nothing to judge (no socket, no frame, no event) fails: silence proves
    nothing, and a gate must never go green on a target that did nothing."""
    return Verdict(Outcome.FAIL, NO_EVIDENCE + what, expected, tuple(evidence))


def errored(summary: str) -> Verdict:
    """The harness could not judge (a harness error, never the target's fault)."""
    return Verdict(Outcome.ERROR, summary)


CheckFunc = Callable[[Evidence], Verdict]


@dataclass(frozen=True)
class Check:
    """A registered check: its name (the function's), the clauses it judges, its one-line doc."""

    name: str
    clauses: tuple[str, ...]
    func: CheckFunc
    doc: str

    def applies_to(self, spec: Spec) -> bool:
        """A check runs for a spec version only when that version has every clause it cites."""
        return all(spec.has(c) for c in self.clauses)

    def keywords(self) -> tuple[str, ...]:
        """Names the ``-k`` expression matches against."""
        return (self.name, *self.clauses)


_CHECKS: dict[str, Check] = {}


def check(*clauses: str) -> Callable[[CheckFunc], CheckFunc]:
    """Register a check function under its own name, tagged with the clauses it judges."""
    if not clauses:
        raise ValueError("a check must cite at least one clause")

    def register(func: CheckFunc) -> CheckFunc:
        name = func.__name__
        if name in _CHECKS and _CHECKS[name].func is not func:
            raise ValueError(f"two checks named {name!r}")
        doc = (func.__doc__ or "").strip().splitlines()[0] if func.__doc__ else name
        _CHECKS[name] = Check(name, tuple(clauses), func, doc)
        return func

    return register


def registered(func: CheckFunc) -> Check:
    """The :class:`Check` of a registered function."""
    chk = _CHECKS.get(func.__name__)
    if chk is None or chk.func is not func:
        raise ValueError(f"{func.__name__} is not a registered check")
    return chk


def all_checks() -> Mapping[str, Check]:
    """Every registered check by name (import the check modules first)."""
    return dict(_CHECKS)


# ---------------------------------------------------------------------------------- -k selection
_TOKEN = re.compile(r"\s*(\(|\)|[^\s()]+)")


class KeywordExpression:
    """A pytest-like ``-k`` expression: words match as case-insensitive substrings of a keyword;
    ``and``, ``or``, ``not`` and parentheses combine them (``-k "KA-PING or idle and not fleet"``)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._tokens = [m.group(1) for m in _TOKEN.finditer(text)]
        if not self._tokens:
            raise ConfigError("-k: empty expression")
        self._pos = 0
        self._tree = self._parse_or()
        if self._pos != len(self._tokens):
            raise ConfigError(f"-k {text!r}: unexpected {self._tokens[self._pos]!r}")

    def _peek(self) -> str | None:
        return self._tokens[self._pos] if self._pos < len(self._tokens) else None

    def _take(self) -> str:
        tok = self._peek()
        if tok is None:
            raise ConfigError(f"-k {self.text!r}: expression ends too early")
        self._pos += 1
        return tok

    def _parse_or(self) -> Any:
        left = self._parse_and()
        while self._peek() == "or":
            self._take()
            left = ("or", left, self._parse_and())
        return left

    def _parse_and(self) -> Any:
        left = self._parse_not()
        while self._peek() == "and":
            self._take()
            left = ("and", left, self._parse_not())
        return left

    def _parse_not(self) -> Any:
        if self._peek() == "not":
            self._take()
            return ("not", self._parse_not())
        tok = self._take()
        if tok == "(":
            inner = self._parse_or()
            if self._take() != ")":
                raise ConfigError(f"-k {self.text!r}: missing ')'")
            return inner
        if tok in (")", "and", "or"):
            raise ConfigError(f"-k {self.text!r}: unexpected {tok!r}")
        return ("word", tok.lower())

    def matches(self, keywords: Iterable[str]) -> bool:
        """Whether the expression holds for a set of keywords."""
        words = [k.lower() for k in keywords]
        return bool(self._eval(self._tree, words))

    def _eval(self, node: Any, words: list[str]) -> bool:
        op = node[0]
        if op == "word":
            return any(node[1] in w for w in words)
        if op == "not":
            return not self._eval(node[1], words)
        if op == "and":
            return self._eval(node[1], words) and self._eval(node[2], words)
        return self._eval(node[1], words) or self._eval(node[2], words)
