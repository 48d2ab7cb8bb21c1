"""A fleet through a Redis outage (FLEET-REDIS-OUTAGE, spec 1.2): two processes on one Redis; once
one streams, Redis is killed for part of keep_s and started again, empty.

The story runs near real time: the lease TTL is the fleet's own choice, not the spec's, so a holder
that closes on a Redis error (no keep) would still hold a scaled-down outage out on its lease
alone; at this scale the outage is longer than any lease a fleet closes within, and still shorter
than keep_s.
"""

from __future__ import annotations

from stockmon.conformance import scenario as sc
from stockmon.conformance.checks import outage, sockets
from stockmon.conformance.scenario import Driver, Scenario, story

SCALE = 2.0
# Non-normative: the outage as a share of keep_s, the real seconds a fresh Redis's quarantine
# and the first subscriptions may take, and the share of keep_s watched after the return.
OUTAGE_SHARE = 0.6
START_REAL_S = 40.0


@story(
    "redis-outage",
    checks=(
        outage.holder_keeps_its_socket_through_a_short_outage,
        outage.nobody_opens_a_socket_while_redis_is_down_or_in_quarantine,
        sockets.never_two_sockets_open,
    ),
    time_scale=SCALE,
    mock=sc.ticking(SCALE),
    targets=2,
    redis=True,
    requires=("FLEET-REDIS-OUTAGE",),
    weight=30,
)
def fleet_redis_outage(d: Driver) -> None:
    """Two processes on one Redis; once one streams, Redis dies for part of keep_s and comes back
    empty: the holder keeps its socket, nobody else opens one, never two at once."""
    keep = d.spec.clause("FLEET-REDIS-OUTAGE").number("keep_s")
    if not sc.start_and_subscribe(d, timeout_s=START_REAL_S * d.time_scale):
        return
    d.sleep(sc.SETTLE_REAL_S * d.time_scale)
    d.redis_kill(outage.DOWN)
    d.sleep(OUTAGE_SHARE * keep)
    d.redis_start(outage.UP)
    d.sleep(keep + sc.SETTLE_REAL_S * d.time_scale)


SCENARIOS: tuple[Scenario, ...] = (fleet_redis_outage,)
