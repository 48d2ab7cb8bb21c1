"""The Kiwoom client and the failover runner against the mocks, over real loopback sockets."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from stream_support import direct_approval, kis_client, kiwoom_client, most_open_sockets

from stockmon.clock import ScaledClock
from stockmon.mockserver import KisMock, KiwoomMock, KiwoomMockConfig, MockConfig, kiwoom_beside
from stockmon.redaction import Secret
from stockmon.reference.errors import AuthError, BrokerError, TokenThrottledError
from stockmon.reference.events import DataReceived, Event, StatusChanged
from stockmon.reference.failover.runner import FailoverStream
from stockmon.reference.fleet.token_manager import token_manager
from stockmon.reference.fleet.token_state import TokenPolicy
from stockmon.reference.fleet.token_store import LocalCredentialStore
from stockmon.reference.kiwoom.auth import REMAINING_FIELD, KiwoomAuthClient
from stockmon.reference.kiwoom.frames import KiwoomFrame, KiwoomTick
from stockmon.reference.output import EventSink
from stockmon.reference.seams import SharedCredentialSource
from stockmon.reference.shell import StreamClient
from stockmon.settings import Subscription
from stockmon.spec import load_spec

SPEC = load_spec("1.1")
SUBS = (
    Subscription("H0STCNT0", "005930"),
    Subscription("H0STASP0", "000660"),
    Subscription("HDFSCNT0", "DNASAAPL"),
)
SCALE = 20.0
pytestmark = pytest.mark.timeout(60)


class ListSink:
    """Collects events (both brokers), counts flushes."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def event(self, ev: Event) -> None:
        self.events.append(ev)

    def flush(self) -> None:
        pass

    def statuses(self, state: str | None = None) -> list[Any]:
        """Status events (of one state)."""
        return [
            e for e in self.events if hasattr(e, "state") and (state is None or e.state == state)
        ]  # type: ignore[attr-defined]

    def ticks(self) -> list[KiwoomTick]:
        """Kiwoom tick records received."""
        return [
            r
            for e in self.events
            if isinstance(e, DataReceived) and isinstance(e.records, KiwoomFrame)
            for r in e.records.records
            if isinstance(r, KiwoomTick)
        ]


async def until(pred: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Wait (polling) until ``pred()`` holds."""
    async with asyncio.timeout(timeout_s):
        while not pred():  # noqa: ASYNC110 - polls state changed by other tasks
            await asyncio.sleep(0.01)


def tokens_for(
    m: KiwoomMock, http: httpx.AsyncClient, clock: ScaledClock
) -> SharedCredentialSource:
    """A token source issuing from the mock through the shared token manager (local store)."""
    auth = KiwoomAuthClient(
        http,
        m.rest_url,
        Secret(m.app_key),
        Secret(m.app_secret),
        SPEC,
        wall=clock.wall,
        scale=SCALE,
    )
    return SharedCredentialSource(
        token_manager(
            LocalCredentialStore(), auth.issue_token, TokenPolicy.for_kiwoom_token(SPEC, SCALE)
        )
    )


@contextlib.asynccontextmanager
async def running(client: Any) -> AsyncIterator[asyncio.Task[None]]:
    """Run a client in a task; stop it and wait on exit."""
    task = asyncio.create_task(client.run())
    try:
        yield task
    finally:
        client.stop()
        await asyncio.wait_for(task, 10)


# ---------------------------------------------------------------------- tokens
async def test_token_expiry_read_from_expires_dt_in_kst() -> None:
    """TOKEN-KIWOOM-SESSION: the remaining validity comes from expires_dt (KST), not assumed."""
    async with (
        KiwoomMock(KiwoomMockConfig(time_scale=SCALE, token_validity_s=5000)) as m,
        httpx.AsyncClient() as http,
    ):
        # the client's spec wall clock, here the mock's own (at scale 1 both are the real clock)
        auth = KiwoomAuthClient(
            http,
            m.rest_url,
            Secret(m.app_key),
            Secret(m.app_secret),
            SPEC,
            wall=lambda: m.world.wall(m.now()),
            scale=SCALE,
        )
        token, body = await auth.issue_token(5.0)
        assert token and abs(body[REMAINING_FIELD] - 5000) < 60  # second resolution + scheduling
        assert auth.token_requests == 1


async def test_kiwoom_error_envelope_becomes_typed_errors() -> None:
    """[8001:...] -> AuthError (no retry helps); 429 -> TokenThrottledError; [8005:...] -> retryable."""
    async with KiwoomMock(KiwoomMockConfig(time_scale=SCALE)) as m, httpx.AsyncClient() as http:
        bad = KiwoomAuthClient(
            http, m.rest_url, Secret(m.app_key), Secret("x" * 43), SPEC, wall=lambda: 0.0
        )
        with pytest.raises(AuthError) as e1:
            await bad.issue_token(5.0)
        assert e1.value.code == "8001" and not e1.value.retryable
        m.faults.throttle_tokens(True)
        good = KiwoomAuthClient(
            http, m.rest_url, Secret(m.app_key), Secret(m.app_secret), SPEC, wall=lambda: 0.0
        )
        with pytest.raises(TokenThrottledError):
            await good.issue_token(5.0)
        err = good.error_of(
            200,
            {"return_code": 3, "return_msg": "인증에 실패했습니다[8005:Token이 유효하지 않습니다]"},
        )
        assert isinstance(err, AuthError) and err.retryable and err.code == "8005"
        assert isinstance(
            good.error_of(200, {"return_code": 2, "return_msg": "[1501:x]"}), BrokerError
        )
        assert m.app_secret not in repr(good) + str(e1.value)


# ---------------------------------------------------------------------- the Kiwoom client
async def test_streams_kr_reports_us_and_values_equal_what_was_sent() -> None:
    """KIWOOM-PROTOCOL end to end: LOGIN (prod token), REG, REAL values equal the FIDs sent."""
    async with (
        KiwoomMock(KiwoomMockConfig(time_scale=SCALE, env="prod", tick_rate_hz=2.0)) as m,
        httpx.AsyncClient() as http,
    ):
        clock, sink = ScaledClock(SCALE), ListSink()
        client = kiwoom_client(
            spec=SPEC,
            ws_url=m.ws_url,
            subscriptions=SUBS,
            tokens=tokens_for(m, http, clock),
            env="prod",
            clock=clock,
            sink=sink,
        )
        async with running(client):
            await until(lambda: len(sink.ticks()) >= 6)
        sent_prices = [
            int(e["values"]["10"].strip().lstrip("+-"))
            for r in m.trace.records()
            if r["kind"] == "text" and r["dir"] == "out" and r["frame"] == "data"
            for e in r["json"]["data"]
            if e["type"] == "0B"
        ]
        got = [t.price for t in sink.ticks()]
        assert got == sent_prices[: len(got)]
        assert [(s.tr_id, s.key) for s in sink.statuses("unserved")] == [("HDFSCNT0", "DNASAAPL")]
        assert all(isinstance(s, StatusChanged) for s in sink.statuses())
        logins = [r for r in m.trace.records() if r["kind"] == "login_accepted"]
        assert logins and logins[0]["token_id"] is not None
        assert client.max_open_sockets == 1


async def test_pings_echoed_keep_the_session_past_the_miss_limit() -> None:
    """The server's PINGs are echoed verbatim: no SYSTEM heartbeat_missed however long it runs."""
    cfg = KiwoomMockConfig(time_scale=100.0, ping_period_s=5.0, max_missed_pings=2, tick_rate_hz=0)
    async with KiwoomMock(cfg) as m:
        clock, sink = ScaledClock(100.0), ListSink()
        client = kiwoom_client(
            spec=SPEC,
            ws_url=m.ws_url,
            subscriptions=SUBS[:1],
            tokens=SharedCredentialSource(None),
            env="mock",
            clock=clock,
            sink=sink,
        )
        async with running(client):
            await asyncio.sleep(0.4)  # 40 spec s: 8 pings
        assert client.sockets_opened == 1
        assert not [r for r in m.trace.records() if r["kind"] == "violation"]
        assert client.core.stats.pings_echoed >= 6


async def test_drop_then_relogin_and_reregister() -> None:
    """After a drop: a new socket, LOGIN again, REG again (registrations do not survive)."""
    async with KiwoomMock(KiwoomMockConfig(time_scale=SCALE, tick_rate_hz=2.0)) as m:
        clock, sink = ScaledClock(SCALE), ListSink()
        client = kiwoom_client(
            spec=SPEC,
            ws_url=m.ws_url,
            subscriptions=SUBS,
            tokens=SharedCredentialSource(None),
            env="mock",
            clock=clock,
            sink=sink,
        )
        async with running(client):
            await until(lambda: len(sink.statuses("subscribed")) == 2)
            m.faults.drop_socket()
            await until(lambda: len(sink.statuses("subscribed")) == 4)
        regs = [
            r
            for r in m.trace.records()
            if r["kind"] == "text" and r["dir"] == "in" and r["trnm"] == "REG"
        ]
        assert len({r["conn"] for r in regs}) == 2
        assert client.max_open_sockets == 1


async def test_rejected_token_gets_a_new_one_then_logs_in() -> None:
    """Expired token at LOGIN (CODE=8005): a new token is issued, then LOGIN succeeds."""
    async with (
        KiwoomMock(KiwoomMockConfig(time_scale=SCALE, env="prod", tick_rate_hz=1.0)) as m,
        httpx.AsyncClient() as http,
    ):
        clock, sink = ScaledClock(SCALE), ListSink()
        client = kiwoom_client(
            spec=SPEC,
            ws_url=m.ws_url,
            subscriptions=SUBS[:1],
            tokens=tokens_for(m, http, clock),
            env="prod",
            clock=clock,
            sink=sink,
        )
        async with running(client):
            await until(lambda: len(sink.statuses("connected")) == 1)
            m.faults.expire_tokens()
            m.faults.drop_socket()
            await until(lambda: len(sink.statuses("connected")) == 2)
        assert m.world.auth.issued_count == 2
        refused = [r for r in m.trace.records() if r["kind"] == "login_refused"]
        assert len(refused) == 1


# ---------------------------------------------------------------------- failover
async def test_failover_to_kiwoom_and_back_never_two_sockets() -> None:
    """FAILOVER-KIWOOM: KIS refused past the budget -> Kiwoom (KR only); KIS back -> switch back."""
    scale = 100.0
    async with (
        KisMock(MockConfig(time_scale=scale, tick_rate_hz=0.05)) as kis,
        httpx.AsyncClient() as http,
    ):
        kw = kiwoom_beside(kis, tick_rate_hz=0.05)
        await kw.start()
        try:
            clock, sink = ScaledClock(scale), ListSink()
            approval = direct_approval(kis, http, SPEC)

            def make_kis(s: EventSink, o: Any = None) -> StreamClient:
                return kis_client(
                    spec=SPEC,
                    ws_url=kis.ws_url,
                    subscriptions=SUBS,
                    approval=approval,
                    clock=clock,
                    sink=s,
                    on_outcome=o,
                )

            def make_kiwoom(s: EventSink, o: Any = None) -> StreamClient:
                return kiwoom_client(
                    spec=SPEC,
                    ws_url=kw.ws_url,
                    subscriptions=SUBS,
                    tokens=SharedCredentialSource(None),
                    env="mock",
                    clock=clock,
                    sink=s,
                    on_outcome=o,
                )

            runner = FailoverStream(
                spec=SPEC, clock=clock, sink=sink, make_kis=make_kis, make_kiwoom=make_kiwoom
            )
            async with running(runner):
                await until(lambda: len(sink.statuses("subscribed")) == 3)
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
        }
        assert [(s.tr_id, s.key) for s in sink.statuses("unserved")] == [("HDFSCNT0", "DNASAAPL")]


async def test_a_configuration_error_ends_the_failover_runner() -> None:
    """A malformed WebSocket URL is a settings error: the runner ends with it, no broker loop."""
    from stockmon.errors import SettingsError

    clock, sink = ScaledClock(SCALE), ListSink()

    def make_kiwoom(s: EventSink, o: Any = None) -> StreamClient:
        return kiwoom_client(
            spec=SPEC,
            ws_url="nonsense",
            subscriptions=SUBS,
            tokens=SharedCredentialSource(None),
            env="mock",
            clock=clock,
            sink=s,
            on_outcome=o,
        )

    def make_kis(s: EventSink, o: Any = None) -> Any:
        return make_kiwoom(s, o)  # a client that fails the same way

    runner = FailoverStream(
        spec=SPEC, clock=clock, sink=sink, make_kis=make_kis, make_kiwoom=make_kiwoom
    )
    with pytest.raises(SettingsError, match="KIWOOM_WS_URL"):
        await asyncio.wait_for(runner.run(), 10)


# ---------------------------------------------------------------------- fleet
async def test_a_fleet_issues_one_kiwoom_token_under_the_lock(redis_url: str) -> None:
    """Token manager reuse (TOKEN-KIS-LOCK's machinery): four processes, one Kiwoom issuance."""
    from stockmon.reference.fleet.redis_conn import connect_redis
    from stockmon.reference.fleet.token_store import RedisCredentialStore, key_prefix

    async with KiwoomMock(KiwoomMockConfig(time_scale=SCALE)) as m, httpx.AsyncClient() as http:
        clock = ScaledClock(SCALE)
        auth = KiwoomAuthClient(
            http,
            m.rest_url,
            Secret(m.app_key),
            Secret(m.app_secret),
            SPEC,
            wall=clock.wall,
            scale=SCALE,
        )
        prefix = key_prefix("mock", Secret(m.app_key), "kiwoom")
        redises = [connect_redis(Secret(redis_url)) for _ in range(4)]
        try:
            sources = [
                SharedCredentialSource(
                    token_manager(
                        RedisCredentialStore(r, prefix),
                        auth.issue_token,
                        TokenPolicy.for_kiwoom_token(SPEC, SCALE),
                        holder=f"replica-{i}",
                    )
                )
                for i, r in enumerate(redises)
            ]
            tokens = await asyncio.gather(*(s.credential() for s in sources))
            assert len(set(tokens)) == 1 and m.world.auth.issued_count == 1
            assert m.app_key not in prefix
        finally:
            for r in redises:
                await r.aclose()


async def test_two_replicas_fail_over_with_one_lease_for_both_brokers(redis_url: str) -> None:
    """Across replicas and brokers: two auto replicas sharing the socket lease never hold two sockets."""
    from stockmon.reference.fleet.lease_gate import RedisConnectGate
    from stockmon.reference.fleet.redis_conn import connect_redis

    scale = 50.0
    async with (
        KisMock(MockConfig(time_scale=scale, tick_rate_hz=0.1)) as kis,
        httpx.AsyncClient() as http,
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

                def make_kis(
                    s: EventSink,
                    o: Any = None,
                    gate: RedisConnectGate = gate,
                    clock: ScaledClock = clock,
                ) -> StreamClient:
                    return kis_client(
                        spec=SPEC,
                        ws_url=kis.ws_url,
                        subscriptions=SUBS,
                        approval=approval,
                        clock=clock,
                        sink=s,
                        on_outcome=o,
                        gate=gate,
                    )

                def make_kiwoom(
                    s: EventSink,
                    o: Any = None,
                    gate: RedisConnectGate = gate,
                    clock: ScaledClock = clock,
                ) -> StreamClient:
                    return kiwoom_client(
                        spec=SPEC,
                        ws_url=kw.ws_url,
                        subscriptions=SUBS,
                        tokens=SharedCredentialSource(None),
                        env="mock",
                        clock=clock,
                        sink=s,
                        on_outcome=o,
                        gate=gate,
                    )

                runners.append(
                    FailoverStream(
                        spec=SPEC,
                        clock=clock,
                        sink=sink,
                        make_kis=make_kis,
                        make_kiwoom=make_kiwoom,
                    )
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
