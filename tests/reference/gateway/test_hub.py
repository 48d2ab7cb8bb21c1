"""The fan-out bus without sockets (API-BACKPRESSURE): conflation, the slow-subscriber close, bounds."""

from __future__ import annotations

from stockmon.reference.events import DataReceived, StatusChanged
from stockmon.reference.gateway.hub import Hub
from stockmon.reference.kiwoom.frames import KiwoomFrame, KiwoomParser
from stockmon.spec import kiwoom_layouts, load_spec

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


def test_kiwoom_ticks_carry_change_rate_and_cumulative_volume() -> None:
    """A Kiwoom 0B tick gets change, change_rate (signed by FID 25) and cumulative_volume (API-EVENT)."""
    layouts = kiwoom_layouts(SPEC)
    tick_layout = next(lay for lay in layouts.values() if lay.kind == "tick")
    roles = tick_layout.roles
    values = {str(f.fid): "0" for f in tick_layout.fields}
    values.update(
        {
            str(roles["time"]): "093015",
            str(roles["price"]): "-20800",
            str(roles["volume"]): "+82",
            str(roles["change"]): "-350",
            str(roles["change_rate"]): "-1.65",
            str(roles["change_sign"]): "5",
            str(roles["cumulative_volume"]): "1234567",
        }
    )
    entry = {"type": tick_layout.type_code, "name": "n", "item": "005930", "values": values}
    record = KiwoomParser(layouts).entry(entry)
    assert record is not None
    hub = Hub(SPEC, FakeTime())
    sub = hub.attach()
    sub.keys.add("005930")
    hub.event(DataReceived(KiwoomFrame((record,), ("H0STCNT0",)), "kiwoom"))
    pending = sub.take()
    assert pending is not None
    event = pending.body["event"]
    assert (event["change"], event["change_rate"], event["cumulative_volume"]) == (
        -350,
        -1.65,
        1234567,
    )
    assert event["timestamp"].endswith("+09:00")
