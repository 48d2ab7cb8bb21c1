"""The failover runner against both mocks: one socket between the brokers, and across replicas."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

import pytest
from backup_support import SCALE, SPEC, SUBS, ListSink, running, until
from stream_support import direct_approval, kis_client, kiwoom_client, most_open_sockets

from stockmon.clock import ScaledClock
from stockmon.mockserver import KisMock, MockConfig, kiwoom_beside
from stockmon.redaction import Secret
from stockmon.reference.events import DataReceived
from stockmon.reference.failover.runner import FailoverStream
from stockmon.reference.output import EventSink
from stockmon.reference.rest import new_http
from stockmon.reference.shell import StreamClient
from stockmon.settings import Subscription

pytestmark = pytest.mark.timeout(60)


def failover_stream(
    kis_url: str,
    kiwoom_url: str,
    approval: Any,
    clock: ScaledClock,
    sink: ListSink,
    **shell: Any,
) -> FailoverStream:
    """A failover runner over the two mocks; ``shell`` goes to both clients (e.g. a gate)."""
    common = {"spec": SPEC, "subscriptions": SUBS, "clock": clock, **shell}
    kis = partial(kis_client, ws_url=kis_url, approval=approval, **common)
    kiwoom = partial(kiwoom_client, ws_url=kiwoom_url, **common)
    return FailoverStream(
        spec=SPEC,
        clock=clock,
        sink=sink,
        make_kis=lambda s, o, subs: kis(sink=s, on_outcome=o, subscriptions=subs),
        make_kiwoom=lambda s, o, subs: kiwoom(sink=s, on_outcome=o, subscriptions=subs),
        subscriptions=SUBS,
    )


# ---------------------------------------------------------------------- failover
async def test_failover_to_kiwoom_and_back_never_two_sockets() -> None:
    """FAILOVER-KIWOOM: KIS refused past the budget -> Kiwoom (KR only, a key added while running
    included); KIS back -> switch back."""
    scale = 100.0
    async with (
        KisMock(MockConfig(time_scale=scale, tick_rate_hz=0.05)) as kis,
        new_http() as http,
    ):
        kw = kiwoom_beside(kis, tick_rate_hz=0.05)
        await kw.start()
        try:
            clock, sink = ScaledClock(scale), ListSink()
            approval = direct_approval(kis, http, SPEC)

            runner = failover_stream(kis.ws_url, kw.ws_url, approval, clock, sink)
            async with running(runner):
                await until(lambda: len(sink.statuses("subscribed")) == 3)
                # added while running (POST /v1/subscriptions): the backup starts with it too
                kr_tick = next(s.tr_id for s in SUBS if s.tr_key == "005930")
                runner.subscribe(Subscription(kr_tick, "035420"))
                await until(lambda: len(sink.statuses("subscribed")) == 4)
                kis.faults.refuse_connections(True)
                kis.faults.drop_socket()
                await until(lambda: bool(sink.statuses("failover")))
                await until(
                    lambda: any(
                        getattr(s, "source", "") == "kiwoom" and s.state == "subscribed"
                        for s in sink.statuses()
                    )
                )
                kis.faults.refuse_connections(False)
                await until(lambda: bool(sink.statuses("switched_back")), 10.0)
            assert runner.core.failovers == 1 and runner.core.switchbacks == 1
        finally:
            await kw.stop()
        assert most_open_sockets(kis.trace.records()) == 1
        refused = [
            r for r in kis.trace.records() if r["kind"] == "ws_refused" and "broker" not in r
        ]
        first_kiwoom = next(
            r["seq"]
            for r in kis.trace.records()
            if r["kind"] == "ws_open" and r["conn"].startswith("kiwoom")
        )
        budget = SPEC.clause("FAILOVER-KIWOOM").integer("reconnect_budget")
        assert len([r for r in refused if r["seq"] < first_kiwoom]) >= budget
        kw_regs = [
            r["json"]
            for r in kis.trace.records()
            if r["kind"] == "text" and r["dir"] == "in" and r.get("trnm") == "REG"
        ]
        assert {i for reg in kw_regs for d in reg["data"] for i in d["item"]} == {
            "005930",
            "000660",
            "035420",
        }
        assert [(s.tr_id, s.key) for s in sink.statuses("unserved")] == [("HDFSCNT0", "DNASAAPL")]


async def test_a_configuration_error_ends_the_failover_runner() -> None:
    """A malformed WebSocket URL is a settings error: the runner ends with it, no broker loop."""
    from stockmon.errors import SettingsError

    clock, sink = ScaledClock(SCALE), ListSink()

    def make_kiwoom(s: EventSink, o: Any, subs: Any) -> StreamClient:
        return kiwoom_client(
            spec=SPEC,
            ws_url="nonsense",
            subscriptions=subs,
            clock=clock,
            sink=s,
            on_outcome=o,
        )

    def make_kis(s: EventSink, o: Any, subs: Any) -> Any:
        return make_kiwoom(s, o, subs)  # a client that fails the same way

    runner = FailoverStream(
        spec=SPEC,
        clock=clock,
        sink=sink,
        make_kis=make_kis,
        make_kiwoom=make_kiwoom,
        subscriptions=SUBS,
    )
    with pytest.raises(SettingsError, match="KIWOOM_WS_URL"):
        await asyncio.wait_for(runner.run(), 10)


async def test_two_replicas_fail_over_with_one_lease_for_both_brokers(redis_url: str) -> None:
    """Across replicas and brokers: two auto replicas sharing the socket lease never hold two sockets."""
    from stockmon.reference.fleet.lease_gate import RedisConnectGate
    from stockmon.reference.fleet.redis_conn import connect_redis

    scale = 50.0
    async with (
        KisMock(MockConfig(time_scale=scale, tick_rate_hz=0.1)) as kis,
        new_http() as http,
    ):
        kw = kiwoom_beside(kis, tick_rate_hz=0.1)
        await kw.start()
        redises = [connect_redis(Secret(redis_url)) for _ in range(2)]
        runners: list[FailoverStream] = []
        sinks: list[ListSink] = []
        tasks: list[asyncio.Task[None]] = []
        try:
            approval = direct_approval(kis, http, SPEC)
            for i, redis in enumerate(redises):
                clock, sink = ScaledClock(scale), ListSink()
                gate = RedisConnectGate(
                    redis,
                    "test:socket:lease",
                    f"replica-{i}",
                    ttl=3.0,
                    close_budget=1.5,
                    renew_every=0.3,
                    poll=0.1,
                )
                runners.append(
                    failover_stream(kis.ws_url, kw.ws_url, approval, clock, sink, gate=gate)
                )
                sinks.append(sink)
            tasks += [asyncio.create_task(r.run()) for r in runners]
            await until(lambda: kis.open_sockets() == 1, 10)
            kis.faults.refuse_connections(True)
            kis.faults.drop_socket()
            await until(lambda: any(r.core.failovers for r in runners), 20)
            await until(
                lambda: any(
                    (isinstance(e, DataReceived) and e.source == "kiwoom")
                    for s in sinks
                    for e in s.events
                ),
                10,
            )
            kis.faults.refuse_connections(False)
            await until(lambda: any(r.core.switchbacks for r in runners), 20)
        finally:
            for r in runners:
                r.stop()
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 20)
            await kw.stop()
            for redis in redises:
                await redis.aclose()
        assert most_open_sockets(kis.trace.records()) == 1
