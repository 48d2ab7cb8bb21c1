"""REST time limits (REST-TIMEOUT, spec 1.2): the mock holds the answer to the target's first REST
call far past request_timeout_s; the target must give up on it in time, then stream as usual."""

from __future__ import annotations

from stockmon.conformance import scenario as sc
from stockmon.conformance.checks import timeouts
from stockmon.conformance.scenario import Driver, Scenario, story

SCALE = 10.0
# Non-normative: how many request_timeout_s the held answer lasts (the target gives up first),
# and the real seconds the retry, the token and the subscriptions may take afterwards.
HOLD_FACTOR = 4.0
AFTER_REAL_S = 30.0


@story(
    "rest-timeout",
    checks=(timeouts.a_held_rest_call_is_given_up_in_time,),
    time_scale=SCALE,
    mock=sc.ticking(SCALE),
    requires=("REST-TIMEOUT",),
    weight=12,
)
def rest_timeout(d: Driver) -> None:
    """The mock holds its answer to the first REST call for four request timeouts: the target
    gives up on it within request_timeout_s (real seconds), retries and streams."""
    limit_real = d.spec.clause("REST-TIMEOUT").number("request_timeout_s")
    d.mark(timeouts.HELD)
    d.fault("delay_rest", seconds=HOLD_FACTOR * limit_real * d.time_scale, n=1)
    d.start()
    d.wait_until(sc.all_subscribed(d), AFTER_REAL_S * d.time_scale, "streaming after the retry")
    sc.settle(d)


SCENARIOS: tuple[Scenario, ...] = (rest_timeout,)
