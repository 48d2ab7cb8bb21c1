"""The scenario catalogue, one module a subject: which target run feeds which checks, for every
breakable clause.

Each scenario picks its own time scale (spec seconds per real second) so that its tolerances,
``REAL_SLACK_S`` real seconds expressed in spec seconds, stay far above the scheduling noise of a
loaded 2-core machine, while its spec-time story (a 600 s idle timeout, a token refresh window)
fits in a few real seconds. Market data is thinned out at high time scales
(:func:`~stockmon.conformance.scenario.frames`) so the mock and the target are never the
bottleneck. Every number of the story comes from the spec.
"""

from __future__ import annotations

from stockmon.conformance.scenario import Scenario
from stockmon.conformance.scenarios import (
    api,
    credentials,
    failover,
    keepalive,
    kiwoom,
    outage,
    policies,
    sockets,
    timeouts,
    tokens,
)

# Catalogue order (``--list``, reports): the KIS stories, then the Kiwoom backup's (kiwoom-...),
# then the internal API's (api-..., profile api).
SCENARIOS: tuple[Scenario, ...] = (
    *keepalive.SCENARIOS,
    *sockets.RECONNECTS,
    *policies.SCENARIOS,
    *tokens.SCENARIOS,
    *outage.SCENARIOS,
    *timeouts.SCENARIOS,
    *sockets.LIMITS,
    *credentials.SCENARIOS,
    *kiwoom.SCENARIOS,
    *failover.SCENARIOS,
    *api.SCENARIOS,
)


def scenario(name: str) -> Scenario:
    """A scenario by name."""
    for sc in SCENARIOS:
        if sc.name == name:
            return sc
    raise KeyError(name)


__all__ = ["SCENARIOS", "scenario"]
