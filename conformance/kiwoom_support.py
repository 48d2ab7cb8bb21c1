"""The Kiwoom side of a scenario run: a Kiwoom mock beside the KIS mock, its faults and facts.

A scenario with ``kiwoom`` set gets a Kiwoom mock started on the KIS mock's event loop and sharing
its trace (``kiwoom_beside``): one trace then orders every socket of both brokers, which is what
"never two sockets, across brokers" is judged on. Kiwoom records carry ``broker: "kiwoom"`` and
conn ids ``kiwoom-...``. The runner calls the three functions here; nothing else in it knows Kiwoom.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stockmon.conformance.errors import HarnessError, ResourceError
from stockmon.conformance.scenario import Scenario
from stockmon.spec import Spec


def start_kiwoom(thread: Any, scenario: Scenario, spec: Spec, time_scale: float, seed: int) -> Any:
    """Start the scenario's Kiwoom mock beside the KIS mock of ``thread`` (a MockThread)."""
    from stockmon.mockserver import KiwoomMockConfig, kiwoom_beside

    assert scenario.kiwoom is not None
    overrides = dict(scenario.kiwoom(spec))
    overrides.setdefault("seed", seed)
    try:
        config = KiwoomMockConfig(spec_version=spec.version, time_scale=time_scale, **overrides)
    except Exception as exc:
        raise HarnessError(
            f"scenario {scenario.name}: bad Kiwoom mock configuration: {exc}"
        ) from exc
    mock = kiwoom_beside(thread.mock, config)
    try:
        thread.call(mock.start())
    except OSError as exc:
        raise ResourceError(f"the Kiwoom mock could not start: {exc}") from exc
    return mock


def stop_kiwoom(thread: Any, mock: Any) -> None:
    """Stop a Kiwoom mock started by :func:`start_kiwoom` (before its thread stops)."""
    if mock is not None:
        thread.call(mock.stop())


def kiwoom_facts(mock: Any) -> Mapping[str, Any]:
    """What checks may need to know about the Kiwoom mock (keys prefixed ``kiwoom_``)."""
    if mock is None:
        return {}
    s = mock.world.settings
    return {
        "kiwoom_app_key": mock.app_key,
        "kiwoom_ws_url": mock.ws_url,
        "kiwoom_rest_url": mock.rest_url,
        "kiwoom_env": s.env,
        "kiwoom_token_required": s.token_required,
        "kiwoom_ping_period_s": s.ping_period_s,
        "kiwoom_max_missed_pings": s.max_missed_pings,
    }


__all__ = ["kiwoom_facts", "start_kiwoom", "stop_kiwoom"]
