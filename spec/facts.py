"""Broker facts for a spec version: its own statement, else the newest version's.

Version 1.0 (the sheet) leaves out parts of the protocol that every party needs to speak to the
broker at all: the data-frame grammar, the approval-key endpoint, the release packet, the Kiwoom
protocol, the mock's answer codes. Later versions wrote them down. They describe the broker, not a
policy, so the client, the mock and the judge of an older version all take them from the newest
version that states them; policies (which clause applies, what to do when) always come from the
version in use. This module is the one place that rule is written.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

from stockmon.errors import SpecError
from stockmon.spec.loader import available_versions, load_spec, version_key
from stockmon.spec.model import Clause, KiwoomLayout, Spec

V = TypeVar("V")


def need(values: Mapping[str, V], key: str, where: str) -> V:
    """``values[key]``, or a SpecError naming the part of the spec that lacks it."""
    try:
        return values[key]
    except KeyError:
        raise SpecError(f"{where} has no {key!r}") from None


def endpoint_port(url: str, where: str) -> int:
    """The port of an endpoint URL of the spec (a mock listens there by default)."""
    port = urlsplit(url).port
    if port is None:
        raise SpecError(f"{where} {url!r} has no port")
    return port


@functools.cache
def _newest_first() -> tuple[Spec, ...]:
    versions = sorted(available_versions(), key=version_key, reverse=True)
    return tuple(load_spec(v) for v in versions)


def newest_spec() -> Spec:
    """The newest spec version (released or draft), loaded once."""
    specs = _newest_first()
    if not specs:
        raise SpecError("no spec versions found")
    return specs[0]


def broker_clause(spec: Spec, clause_id: str) -> Clause:
    """``spec``'s clause if it has it, else the same clause of the newest version that does."""
    if spec.has(clause_id):
        return spec.clause(clause_id)
    for other in _newest_first():
        if other.has(clause_id):
            return other.clause(clause_id)
    return spec.clause(clause_id)  # raises SpecError naming the clause and the version


def broker_data(spec: Spec, *path: str) -> Mapping[str, Any]:
    """A protocol-data mapping (``"rest", "kiwoom"`` ...): the newest version's keys under ``spec``'s."""
    out: dict[str, Any] = {}
    for s in (newest_spec(), spec):
        node: Any = s.raw
        for key in path:
            node = node.get(key) if isinstance(node, Mapping) else None
        if isinstance(node, Mapping):
            out.update(node)
    if not out:
        raise SpecError(f"spec {spec.version}: no {'.'.join(path)!r} (nor has the newest version)")
    return out


def mock_profile_value(spec: Spec, key: str) -> Any:
    """A ``mock_profile`` value of ``spec``, else of the newest version that has it."""
    if key in spec.mock_profile:
        return spec.mock_profile[key]
    for other in _newest_first():
        if key in other.mock_profile:
            return other.mock_profile[key]
    raise SpecError(f"spec {spec.version}: mock_profile has no {key!r} (nor has any newer version)")


def ws_answer_code(spec: Spec, name: str) -> str:
    """A named WebSocket answer code of the mock profile (``subscribed``, ``appkey_in_use`` ...)."""
    codes = mock_profile_value(spec, "ws_codes")
    try:
        return str(codes[name])
    except KeyError:
        raise SpecError(f"spec {spec.version}: mock_profile.ws_codes has no {name!r}") from None


def kiwoom_layouts(spec: Spec) -> Mapping[str, KiwoomLayout]:
    """The Kiwoom REAL-frame layouts of ``spec``, else of the newest version that has them."""
    if spec.kiwoom_layouts:
        return spec.kiwoom_layouts
    for other in _newest_first():
        if other.kiwoom_layouts:
            return other.kiwoom_layouts
    raise SpecError(f"spec {spec.version}: no Kiwoom layouts (nor has any newer version)")


__all__ = [
    "broker_clause",
    "broker_data",
    "endpoint_port",
    "kiwoom_layouts",
    "mock_profile_value",
    "need",
    "newest_spec",
    "ws_answer_code",
]
