"""Typed, immutable view of one spec version (built by :mod:`stockmon.spec.loader`).

Consumers read normative values through :class:`Clause` getters (``clause.integer("interval_s")``),
which fail loudly with :class:`~stockmon.errors.SpecError` when the data has the wrong type, so a
bad spec edit never becomes a silent default in the client, the mock or the checks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from stockmon.errors import SpecError

FieldType = Literal["int", "decimal", "str"]


def freeze(value: Any) -> Any:
    """Deep-freeze parsed YAML: dicts become read-only mappings, lists become tuples."""
    if isinstance(value, dict):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """Inverse of :func:`freeze`, for JSON output and diffs."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class Text:
    """A statement in both languages of the sheet."""

    ko: str
    en: str


@dataclass(frozen=True, slots=True)
class Source:
    """Where a clause comes from and how trustworthy that source is."""

    doc: str
    ref: str
    grade: str


@dataclass(frozen=True, slots=True)
class Testability:
    """Whether a client's behaviour can break the clause; if not, why (shown in coverage reports)."""

    breakable: bool
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Clause:
    """One normative statement with a stable ID and its values."""

    id: str
    section: str
    title: Text
    text: Text
    values: Mapping[str, Any]
    schemas: tuple[str, ...]
    source: Source
    testability: Testability
    amends: str | None = None

    def _get(self, key: str) -> Any:
        try:
            return self.values[key]
        except KeyError:
            raise SpecError(f"clause {self.id} has no value {key!r}") from None

    def value(self, key: str) -> Any:
        """A raw (frozen) value; prefer the typed getters."""
        return self._get(key)

    def integer(self, key: str) -> int:
        """An integer value (bool is rejected)."""
        v = self._get(key)
        if isinstance(v, bool) or not isinstance(v, int):
            raise SpecError(f"clause {self.id}: value {key!r} must be an integer, got {v!r}")
        return v

    def number(self, key: str) -> float:
        """A number value as float."""
        v = self._get(key)
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise SpecError(f"clause {self.id}: value {key!r} must be a number, got {v!r}")
        return float(v)

    def string(self, key: str) -> str:
        """A string value."""
        v = self._get(key)
        if not isinstance(v, str):
            raise SpecError(f"clause {self.id}: value {key!r} must be a string, got {v!r}")
        return v

    def flag(self, key: str) -> bool:
        """A boolean value."""
        v = self._get(key)
        if not isinstance(v, bool):
            raise SpecError(f"clause {self.id}: value {key!r} must be a boolean, got {v!r}")
        return v

    def strings(self, key: str) -> tuple[str, ...]:
        """A list of strings."""
        v = self._get(key)
        if not isinstance(v, tuple) or not all(isinstance(x, str) for x in v):
            raise SpecError(f"clause {self.id}: value {key!r} must be a list of strings, got {v!r}")
        return v

    def mapping(self, key: str) -> Mapping[str, Any]:
        """A mapping value (read-only)."""
        v = self._get(key)
        if not isinstance(v, Mapping):
            raise SpecError(f"clause {self.id}: value {key!r} must be a mapping, got {v!r}")
        return v


@dataclass(frozen=True, slots=True)
class LayoutField:
    """One field of a data record: position is its index in :attr:`Layout.fields`."""

    name: str
    type: FieldType
    meaning: str = ""


@dataclass(frozen=True, slots=True)
class RecordLayout:
    """What every broker's record layout states: broker, market, kind, source and field roles."""

    broker: str
    market: str
    kind: Literal["tick", "orderbook"]
    source: str
    roles: Mapping[str, Any]

    @property
    def label(self) -> str:
        """How errors name this layout (its TR ID or type code)."""
        raise NotImplementedError

    def role(self, role: str) -> str:
        """Name of the field that plays a role (key, time, price, volume ...)."""
        v = self.roles.get(role)
        if not isinstance(v, str):
            raise SpecError(f"layout {self.label} has no single-field role {role!r}")
        return v

    def role_list(self, role: str) -> tuple[str, ...]:
        """Names of the fields that play a list role (ask_prices, bid_quantities ...)."""
        v = self.roles.get(role)
        if not isinstance(v, tuple):
            raise SpecError(f"layout {self.label} has no list role {role!r}")
        return v


@dataclass(frozen=True, slots=True)
class Layout(RecordLayout):
    """Field layout of one KIS realtime TR (``^``-joined record)."""

    tr_id: str
    fields: tuple[LayoutField, ...]
    _index: Mapping[str, int] = field(
        repr=False, compare=False, default_factory=lambda: MappingProxyType({})
    )

    @property
    def label(self) -> str:
        """The TR ID."""
        return self.tr_id

    @property
    def names(self) -> tuple[str, ...]:
        """Field names in wire order."""
        return tuple(f.name for f in self.fields)

    def index(self, name: str) -> int:
        """Position of a field in the record."""
        try:
            return self._index[name]
        except KeyError:
            raise SpecError(f"layout {self.tr_id} has no field {name!r}") from None


@dataclass(frozen=True, slots=True)
class KiwoomField:
    """One FID of a Kiwoom REAL entry."""

    fid: str
    name: str
    type: FieldType
    meaning: str = ""
    signed: bool = False


@dataclass(frozen=True, slots=True)
class KiwoomLayout(RecordLayout):
    """FID layout of one Kiwoom realtime type (0B, 0D ...)."""

    type_code: str
    fields: tuple[KiwoomField, ...]

    @property
    def label(self) -> str:
        """The Kiwoom type code."""
        return self.type_code


@dataclass(frozen=True, slots=True)
class EnvVar:
    """One environment variable an implementation reads (clause CRED-ENV)."""

    name: str
    secret: bool
    required: bool
    description: str


@dataclass(frozen=True, slots=True)
class Spec:
    """One complete spec version."""

    version: str
    status: Literal["released", "draft"]
    title: Text
    based_on: str | None
    source: str
    clauses: tuple[Clause, ...]
    environment: tuple[EnvVar, ...]
    endpoints: Mapping[str, Any]
    rest: Mapping[str, Any]
    markets: Mapping[str, Any]
    codes: Mapping[str, Any]
    layouts: Mapping[str, Layout]
    kiwoom_layouts: Mapping[str, KiwoomLayout]
    mock_profile: Mapping[str, Any]
    digest: str
    raw: Mapping[str, Any] = field(repr=False, compare=False)
    # markets.<market>.key_pattern compiled once, in the spec's market order: what every part
    # that tells a key's market (mock, client, gateway, settings) matches against
    key_patterns: Mapping[str, re.Pattern[str]] = field(repr=False, compare=False)

    def key_match(self, key: str, market: str | None = None) -> tuple[str, re.Match[str]] | None:
        """The market whose key pattern the whole of ``key`` matches, and the match (the first
        in the spec's order; only ``market``'s when given); None when none does.

        The whole key: a pattern's ``$`` alone would let a trailing newline through.
        """
        if market is not None:
            pattern = self.key_patterns.get(market)
            m = pattern.fullmatch(key) if pattern is not None else None
            return (market, m) if m is not None else None
        for name, pattern in self.key_patterns.items():
            m = pattern.fullmatch(key)
            if m is not None:
                return name, m
        return None

    def market_of(self, key: str) -> str | None:
        """The market a key belongs to by the key patterns (KR, US), or None."""
        found = self.key_match(key)
        return found[0] if found is not None else None

    @property
    def clause_ids(self) -> tuple[str, ...]:
        """Every clause ID in document order."""
        return tuple(c.id for c in self.clauses)

    def has(self, clause_id: str) -> bool:
        """Whether this version contains the clause."""
        return any(c.id == clause_id for c in self.clauses)

    def clause(self, clause_id: str) -> Clause:
        """The clause with this ID, or SpecError naming the version."""
        for c in self.clauses:
            if c.id == clause_id:
                return c
        raise SpecError(f"spec {self.version} has no clause {clause_id!r}")

    def layout(self, tr_id: str) -> Layout:
        """The KIS field layout of a TR."""
        try:
            return self.layouts[tr_id]
        except KeyError:
            raise SpecError(f"spec {self.version} has no field layout for {tr_id!r}") from None

    def env(self, name: str) -> EnvVar:
        """The declaration of one environment variable."""
        for e in self.environment:
            if e.name == name:
                return e
        raise SpecError(f"spec {self.version} declares no environment variable {name!r}")

    @property
    def secret_variables(self) -> tuple[str, ...]:
        """Names of the variables that hold secrets."""
        return tuple(e.name for e in self.environment if e.secret)

    def ws_code(self, code: str) -> Mapping[str, Any]:
        """The ``msg1``/``rt_cd`` of a WebSocket control code (OPSP...)."""
        try:
            entry = self.codes["ws"][code]
        except KeyError:
            raise SpecError(f"spec {self.version} has no WebSocket code {code!r}") from None
        assert isinstance(entry, Mapping)
        return entry

    def rest_code(self, code: str) -> Mapping[str, Any]:
        """The ``msg1`` of a REST gateway code (EGW..., IGW...)."""
        try:
            entry = self.codes["rest"][code]
        except KeyError:
            raise SpecError(f"spec {self.version} has no REST code {code!r}") from None
        assert isinstance(entry, Mapping)
        return entry
