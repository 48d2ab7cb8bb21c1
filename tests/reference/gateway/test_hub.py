"""The fan-out bus without sockets (API-BACKPRESSURE): conflation, the slow-subscriber close, bounds."""

from __future__ import annotations

from stockmon.reference.events import StatusChanged
from stockmon.reference.gateway.hub import Hub
from stockmon.spec import load_spec

SPEC = load_spec("1.2")


class FakeTime:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _tick(price: int) -> dict[str, object]:
    return {"type": "tick", "source": "kis", "tr_id": "H0STCNT0", "key": "005930", "price": price}


def test_ticks_of_a_key_conflate_latest_wins() -> None:
    """A subscriber that does not drain keeps one tick per key: the latest, with the count replaced."""
    hub = Hub(SPEC, FakeTime())
    sub = hub.attach()
    sub.keys.add("005930")
    for price in range(1000):
        hub.publish(_tick(price))
    assert len(sub.queue) == 1
    pending = sub.take()
    assert pending is not None
    assert pending.body["event"]["price"] == 999
    assert pending.conflated == 999


def test_a_subscriber_behind_too_long_is_closed_with_the_clause_code() -> None:
    """Still behind after behind_max_s: closed with API-BACKPRESSURE close_code; the others go on."""
    clock = FakeTime()
    hub = Hub(SPEC, clock)
    slow, fast = hub.attach(), hub.attach()
    slow.keys.add("005930")
    fast.keys.add("005930")
    bp = SPEC.clause("API-BACKPRESSURE")
    hub.publish(_tick(1))
    hub.publish(_tick(2))
    assert fast.take() is not None
    clock.now += bp.number("behind_max_s") + 1
    hub.publish(_tick(3))
    assert slow.closed_code == bp.integer("close_code")
    assert fast.closed_code is None
    assert fast.take() is not None


def test_never_conflated_messages_are_bounded() -> None:
    """Status events are never merged: a full queue of them closes the subscriber, memory stays bounded."""
    hub = Hub(SPEC, FakeTime())
    sub = hub.attach()
    bp = SPEC.clause("API-BACKPRESSURE")
    for _ in range(bp.integer("queue_max_messages") * 2):
        hub.event(StatusChanged("connected", source="kis"))
    assert sub.closed_code == bp.integer("close_code")
    assert len(sub.queue) <= bp.integer("queue_max_messages")
