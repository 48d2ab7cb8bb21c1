"""The one shell around the Kiwoom core against the Kiwoom mock, over real loopback sockets."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from backup_support import SCALE, SPEC, SUBS, ListSink, running, tokens_for, until
from stream_support import kiwoom_client

from stockmon.clock import ScaledClock
from stockmon.mockserver import KiwoomMock, KiwoomMockConfig
from stockmon.reference.events import StatusChanged
from stockmon.reference.rest import new_http
from stockmon.reference.shell import StreamClient
from stockmon.settings import Subscription

pytestmark = pytest.mark.timeout(60)


@contextlib.asynccontextmanager
async def prod_client(
    tick_rate_hz: float, subs: tuple[Subscription, ...]
) -> AsyncIterator[tuple[KiwoomMock, StreamClient, ListSink]]:
    """A prod-environment Kiwoom mock and a client of it with a real token provider (not run)."""
    async with (
        KiwoomMock(KiwoomMockConfig(time_scale=SCALE, env="prod", tick_rate_hz=tick_rate_hz)) as m,
        new_http() as http,
    ):
        clock, sink = ScaledClock(SCALE), ListSink()
        tokens = tokens_for(m, http, clock)
        client = kiwoom_client(
            spec=SPEC,
            ws_url=m.ws_url,
            subscriptions=subs,
            tokens=tokens,
            env="prod",
            clock=clock,
            sink=sink,
        )
        yield m, client, sink


# ---------------------------------------------------------------------- the Kiwoom client
async def test_streams_kr_reports_us_and_values_equal_what_was_sent() -> None:
    """KIWOOM-PROTOCOL end to end: LOGIN (prod token), REG, REAL values equal the FIDs sent."""
    async with prod_client(2.0, SUBS) as (m, client, sink):
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
    async with prod_client(1.0, SUBS[:1]) as (m, client, sink):
        async with running(client):
            await until(lambda: len(sink.statuses("connected")) == 1)
            m.faults.expire_tokens()
            m.faults.drop_socket()
            await until(lambda: len(sink.statuses("connected")) == 2)
        assert m.world.auth.issued_count == 2
        refused = [r for r in m.trace.records() if r["kind"] == "login_refused"]
        assert len(refused) == 1
