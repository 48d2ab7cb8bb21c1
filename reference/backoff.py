"""Reconnect delays: jittered, capped, exponential, as an injectable iterator (websockets style).

The shell draws one delay per reconnect from the iterator and starts a fresh iterator after a healthy
session, so a flapping link backs off while a single drop after hours of streaming reconnects fast.
Delays are spec seconds (the shell scales them with STOCKMON_TIME_SCALE like every other duration).
None of these numbers is normative: the spec only fixes the in-use back-off, which the session core
passes as a minimum.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

INITIAL_DELAY_S = 0.5
FACTOR = 2.0
MAX_DELAY_S = 60.0
# A session that stayed open this long counts as healthy: the next drop starts the back-off over.
HEALTHY_SESSION_S = 60.0


def jittered_backoff(
    *,
    initial_s: float = INITIAL_DELAY_S,
    factor: float = FACTOR,
    max_s: float = MAX_DELAY_S,
    rng: random.Random | None = None,
) -> Iterator[float]:
    """Endless delays: "equal jitter" — each is half the capped exponential plus a random half."""
    draw = rng or random.Random()
    ceiling = initial_s
    while True:
        yield ceiling / 2 + draw.uniform(0.0, ceiling / 2)
        ceiling = min(max_s, ceiling * factor)


BackoffFactory = Callable[[], Iterator[float]]
