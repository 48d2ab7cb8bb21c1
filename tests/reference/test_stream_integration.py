"""The streaming client against the KIS mock over real loopback sockets (time compressed by scale).

Every judgement reads the mock's trace: what the mock sent and what the client sent back.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
from collections.abc import AsyncIterator, Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
import websockets
from stream_support import code, direct_approval, kis_client

from stockmon.clock import ScaledClock
from stockmon.mockserver import KisMock, MockConfig
from stockmon.reference.backoff import BackoffFactory, jittered_backoff
from stockmon.reference.httpclient import HttpClient
from stockmon.reference.output import JsonLinesSink
from stockmon.reference.rest import new_http
from stockmon.reference.seams import ConnectGate
from stockmon.reference.shell import StreamClient
from stockmon.schemas import errors as schema_errors
from stockmon.settings import Subscription
from stockmon.spec import Layout, Spec, load_spec

SCALE = 200.0  # spec seconds per real second: 600 s of idle take 3 s
SUBS = (
    Subscription("H0STCNT0", "005930"),
    Subscription("HDFSCNT0", "DNASAAPL"),
    Subscription("H0STASP0", "000660"),
    Subscription("HDFSASP0", "DNASMSFT"),
)

pytestmark = pytest.mark.timeout(60)


class Run:
    """A mock and a client streaming from it in this event loop."""

    def __init__(self, mock: KisMock, client: StreamClient, out: io.StringIO, http: HttpClient):
        self.mock, self.client, self.out, self.http = mock, client, out, http
        self.task: asyncio.Task[None] | None = None

    @property
    def spec(self) -> Spec:
        return self.client.core.spec

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line, parse_float=Decimal) for line in self.out.getvalue().splitlines()]

    def statuses(self) -> list[dict[str, Any]]:
        return [e for e in self.events() if e["type"] == "status"]

    async def until(
        self, pred: Callable[[], bool], timeout_s: float = 10.0, what: str = ""
    ) -> None:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not pred():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting for {what or pred}")
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        self.client.stop()
        assert self.task is not None
        await asyncio.wait_for(self.task, 10)

    def trace(self, kind: str | None = None, dir_: str | None = None) -> list[dict[str, Any]]:
        return [
            r
            for r in self.mock.trace.records()
            if (kind is None or r["kind"] == kind) and (dir_ is None or r["dir"] == dir_)
        ]

    def client_packets(self) -> list[dict[str, Any]]:
        """Client -> mock text frames with a parsed JSON body."""
        return [r for r in self.trace("text", "in") if isinstance(r.get("json"), dict)]


def max_open_sockets(records: list[dict[str, Any]]) -> int:
    """Largest number of WS sessions open at once, from ws_open / ws_close records."""
    open_, worst = 0, 0
    for r in records:
        if r["kind"] == "ws_open":
            open_ += 1
            worst = max(worst, open_)
        elif r["kind"] == "ws_close":
            open_ -= 1
    return worst


def expected_events(spec: Spec, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the client should print for the data frames the mock sent (read straight from text)."""
    out: list[dict[str, Any]] = []
    g = spec.clause("PKT-DATA-FRAME")
    for r in records:
        if r["kind"] != "text" or r["dir"] != "out" or r.get("frame") != "data":
            continue
        _, tr_id, count, payload = r["text"].split(g.string("part_separator"), 3)
        fields = payload.split(g.string("field_separator"))
        layout = spec.layout(tr_id)
        width = len(layout.fields)

        def num(rec: list[str], name: str, layout: Layout = layout) -> int | Decimal:
            text = rec[layout.index(name)]
            decimal = layout.fields[layout.index(name)].type == "decimal"
            return Decimal(text) if decimal else int(text)

        for i in range(int(count)):
            rec = fields[i * width : (i + 1) * width]
            ev: dict[str, Any] = {
                "type": layout.kind,
                "source": "kis",
                "tr_id": tr_id,
                "key": rec[layout.index(layout.role("key"))],
                "time": rec[layout.index(layout.role("time"))],
            }
            if layout.kind == "tick":
                ev["price"] = num(rec, layout.role("price"))
                ev["volume"] = num(rec, layout.role("volume"))
            else:
                for side in ("ask", "bid"):
                    ev[f"{side}s"] = [
                        [num(rec, p), num(rec, q)]
                        for p, q in zip(
                            layout.role_list(f"{side}_prices"),
                            layout.role_list(f"{side}_quantities"),
                            strict=True,
                        )
                    ]
            out.append(ev)
    return out


async def start_run(
    mock: KisMock,
    subs: tuple[Subscription, ...] = SUBS,
    *,
    spec_version: str = "1.1",
    gate: ConnectGate | None = None,
    backoff: BackoffFactory | None = None,
    healthy_after_s: float = 60.0,
) -> Run:
    http = new_http()
    out = io.StringIO()
    spec = load_spec(spec_version)
    client = kis_client(
        spec=spec,
        ws_url=mock.ws_url,
        subscriptions=subs,
        approval=direct_approval(mock, http, spec),
        clock=ScaledClock(mock.config.time_scale),
        sink=JsonLinesSink(out),
        backoff=backoff or (lambda: jittered_backoff(initial_s=0.2, max_s=2.0)),
        gate=gate,
        healthy_after_s=healthy_after_s,
    )
    run = Run(mock, client, out, http)
    run.task = asyncio.create_task(client.run())
    return run


@pytest.fixture
async def run(request: pytest.FixtureRequest) -> AsyncIterator[Run]:
    """A 1.1 mock at SCALE and a client subscribed to SUBS (indirect parameters override MockConfig)."""
    overrides = dict(getattr(request, "param", {}))
    config = MockConfig(**{"time_scale": SCALE, "tick_rate_hz": 0.5, **overrides})
    async with KisMock(config) as mock:
        r = await start_run(mock)
        try:
            yield r
        finally:
            if r.task is not None and not r.task.done():
                await r.stop()
            await r.http.close()
            assert max_open_sockets(mock.trace.records()) <= 1, "two sockets were open at once"


def subscribes(run: Run, conn: str | None = None) -> list[tuple[str, str, str]]:
    """(kind, tr_id, tr_key) of every subscribe/unsubscribe the client sent (on ``conn``)."""
    sub_type = run.spec.clause("PKT-SUBSCRIBE").mapping("header")["tr_type"]
    out = []
    for r in run.client_packets():
        body = r["json"].get("body")
        if not isinstance(body, dict) or (conn and r["conn"] != conn):
            continue
        inp = body["input"]
        kind = "subscribe" if r["json"]["header"]["tr_type"] == sub_type else "unsubscribe"
        out.append((kind, inp["tr_id"], inp["tr_key"]))
    return out


# ---------------------------------------------------------------- PKT-DATA / PKT-DATA-FRAME


async def test_streams_kr_and_us_and_prints_the_values_sent(run: Run) -> None:
    """Ticks and books for KR and US keys; every printed value equals what the mock sent, in order."""

    def data() -> list[dict[str, Any]]:
        return [e for e in run.events() if e["type"] != "status"]

    await run.until(
        lambda: len(data()) >= 8 and {e["tr_id"] for e in data()} >= {s.tr_id for s in SUBS},
        what="data for every TR",
    )
    await run.stop()
    printed = [e for e in run.events() if e["type"] != "status"]
    expected = expected_events(run.spec, run.mock.trace.records())
    assert len(printed) >= 8
    assert printed == expected[: len(printed)]
    assert len(expected) - len(printed) <= 10, "frames the mock sent were not printed"
    for e in run.events():
        assert schema_errors("event", json.loads(json.dumps(e, default=float))) == []


async def test_packets_validate_against_their_schemas(run: Run) -> None:
    """Every client packet the mock saw validates (the mock records a violation otherwise)."""
    await run.until(lambda: run.client.core.stats.frames > 5, what="data")
    await run.stop()
    assert run.trace("violation") == []
    assert {(t, k) for _, t, k in subscribes(run)} == {(s.tr_id, s.tr_key) for s in SUBS}


# ---------------------------------------------------------------- KA-SERVER-PINGPONG / KA-PING


async def test_server_pingpong_answered_once_with_a_text_echo(run: Run) -> None:
    """A server PINGPONG comes back once, byte for byte, as a text frame."""
    await run.until(lambda: run.client.core.stats.sessions == 1)
    await run.until(lambda: bool(subscribes(run)))
    run.mock.faults.server_ping_now()
    ping_tr = run.spec.clause("KA-PING").string("tr_id")

    def pings_out() -> list[dict[str, Any]]:
        return [
            r
            for r in run.trace("text", "out")
            if r.get("frame") == "pingpong"
            and "datetime" in (r.get("json") or {}).get("header", {})
        ]

    await run.until(lambda: bool(pings_out()), what="a server ping")
    sent = pings_out()[0]["text"]
    await run.until(lambda: any(r["text"] == sent for r in run.trace("text", "in")), what="echo")
    await asyncio.sleep(0.2)
    echoes = [r for r in run.trace("text", "in") if r["text"] == sent]
    assert len(echoes) == 1
    assert json.loads(sent)["header"]["tr_id"] == ping_tr


@pytest.mark.parametrize("run", [{"time_scale": 400.0}], indirect=True)
async def test_client_pings_every_interval_and_survives_server_pings(run: Run) -> None:
    """Over several intervals the client pings at the KA-PING spacing and the mock never drops it."""
    interval = run.spec.clause("KA-PING").number("interval_s")
    ping = run.spec.clause("KA-PING").mapping("packet")
    await run.until(lambda: run.client.core.stats.pings_sent >= 4, timeout_s=15, what="4 pings")
    pings = [
        r
        for r in run.trace("text", "in")
        if r.get("json") == dict(ping) or r.get("json") == {"header": dict(ping["header"])}
    ]
    gaps = [b["t_spec"] - a["t_spec"] for a, b in itertools.pairwise(pings)]
    assert gaps and all(g >= interval - 2 for g in gaps), gaps
    assert len(run.trace("ws_open")) == 1


# ---------------------------------------------------------------- POL-IDLE-RECONNECT


async def test_stall_closes_then_opens_and_resubscribes(run: Run) -> None:
    """A stall longer than idle_timeout_s: client closes, then opens one new socket, resubscribes all."""
    idle = run.spec.clause("POL-IDLE-RECONNECT").number("idle_timeout_s")
    await run.until(lambda: len(subscribes(run)) == len(SUBS), what="first subscribes")
    run.mock.faults.stall(idle + 200)
    await run.until(lambda: len(run.trace("ws_open")) >= 2, timeout_s=15, what="a second socket")
    closes = run.trace("ws_close")
    opens = run.trace("ws_open")
    assert closes[0]["by"] == "client"
    assert closes[0]["seq"] < opens[1]["seq"], "opened before the old socket closed"
    # the last frame before the close arrived at least idle_timeout_s earlier
    last_out = max(
        r["t_spec"]
        for r in run.trace(dir_="out")
        if r["seq"] < closes[0]["seq"] and r["kind"] == "text"
    )
    assert closes[0]["t_spec"] - last_out >= idle - 5
    await run.until(lambda: len(subscribes(run, opens[1]["conn"])) == len(SUBS), what="resubscribe")
    assert any(
        s["state"] == "reconnecting" and s["reason"] == "idle_timeout" for s in run.statuses()
    )


# ---------------------------------------------------------------- WS-SINGLE-SOCKET


async def test_drop_reconnects_and_resubscribes(run: Run) -> None:
    """An abrupt drop: one new socket, every subscription sent again, data flows again."""
    await run.until(lambda: len(subscribes(run)) == len(SUBS))
    run.mock.faults.drop_socket()
    await run.until(lambda: len(run.trace("ws_open")) >= 2, what="reconnect")
    second = run.trace("ws_open")[1]["conn"]
    await run.until(lambda: len(subscribes(run, second)) == len(SUBS), what="resubscribe")
    frames = run.client.core.stats.frames
    await run.until(lambda: run.client.core.stats.frames > frames, what="data after reconnect")
    assert any(s["reason"] == "socket_closed" for s in run.statuses())


async def test_malformed_frames_are_counted_and_the_stream_goes_on(run: Run) -> None:
    """Malformed frames are dropped, counted and reported; good frames keep coming."""
    await run.until(lambda: run.client.core.stats.frames > 2)
    run.mock.faults.malformed_frames(n=3, kind="garbage")
    await run.until(lambda: run.client.malformed >= 3, what="3 malformed")
    frames = run.client.core.stats.frames
    await run.until(lambda: run.client.core.stats.frames > frames + 2, what="more data")
    assert sum(1 for s in run.statuses() if s["state"] == "frame_dropped") >= 3
    assert len(run.trace("ws_open")) == 1


# ---------------------------------------------------------------- POL-ALREADY-SUBSCRIBED


async def test_already_subscribed_on_cue(run: Run) -> None:
    """The already-subscribed code for one key: unsubscribe then subscribe that key, nothing else."""
    await run.until(lambda: len(subscribes(run)) == len(SUBS))
    already = code(run.spec, "POL-ALREADY-SUBSCRIBED", "code")
    run.mock.faults.next_subscribe_error(code=already, tr_key="DNASAAPL")
    run.mock.faults.drop_socket()  # the next session's subscribe of that key gets the code
    await run.until(lambda: len(run.trace("ws_open")) >= 2)
    second = run.trace("ws_open")[1]["conn"]
    await run.until(lambda: len(subscribes(run, second)) >= len(SUBS) + 2, what="recovery packets")
    await asyncio.sleep(0.2)
    packets = subscribes(run, second)
    aapl = [(k, t) for k, t, key in packets if key == "DNASAAPL"]
    assert aapl == [
        ("subscribe", "HDFSCNT0"),
        ("unsubscribe", "HDFSCNT0"),
        ("subscribe", "HDFSCNT0"),
    ]
    others = [p for p in packets if p[2] != "DNASAAPL"]
    assert sorted(others) == sorted(
        ("subscribe", s.tr_id, s.tr_key) for s in SUBS if s.tr_key != "DNASAAPL"
    )
    await run.until(
        lambda: any(
            s["state"] == "subscribed" and s.get("key") == "DNASAAPL" for s in run.statuses()[6:]
        ),
        what="re-registered",
    )


# ---------------------------------------------------------------- POL-AUTH-FAILED (ws) / WS-APPROVAL-KEY


async def test_invalid_approval_key_new_key_reconnect_resubscribe(run: Run) -> None:
    """The mock forgets approval keys: the client fetches a new one, reconnects and resubscribes."""
    await run.until(lambda: len(subscribes(run)) == len(SUBS))
    approvals_before = len([r for r in run.trace("request") if r["path"].endswith("/Approval")])
    run.mock.faults.revoke_approvals()
    run.mock.faults.drop_socket()
    await run.until(
        lambda: any(s["reason"] == "auth_refresh" for s in run.statuses()), what="auth_refresh"
    )
    await run.until(
        lambda: (
            len([r for r in run.trace("request") if r["path"].endswith("/Approval")])
            > approvals_before
        ),
        what="a new approval key request",
    )
    await run.until(lambda: len(run.trace("ws_open")) >= 3, what="third socket")
    third = run.trace("ws_open")[2]["conn"]
    await run.until(lambda: len(subscribes(run, third)) == len(SUBS), what="resubscribe")
    frames = run.client.core.stats.frames
    await run.until(lambda: run.client.core.stats.frames > frames, what="data again")


# ---------------------------------------------------------------- WS-SESSION-LIMITS (in use)


async def test_appkey_in_use_backs_off_and_never_opens_a_second_socket() -> None:
    """Another session holds the appkey: close, wait in_use_backoff_s, retry; one socket at a time."""
    spec = load_spec("1.1")
    limits = spec.clause("WS-SESSION-LIMITS")
    async with KisMock(MockConfig(time_scale=SCALE, tick_rate_hz=0.5)) as mock:
        http = new_http()
        approval = direct_approval(mock, http, spec)
        key = await approval.credential()
        sub = spec.clause("PKT-SUBSCRIBE").mapping("header")
        squatter = await websockets.connect(mock.ws_url)
        await squatter.send(
            json.dumps(
                {
                    "header": {"approval_key": key, **sub},
                    "body": {"input": {"tr_id": "H0STCNT0", "tr_key": "000660"}},
                }
            )
        )
        await squatter.recv()
        r = await start_run(mock)
        try:
            await r.until(
                lambda: any(s["reason"] == "session_in_use" for s in r.statuses()), what="in use"
            )
            client_opens_before = len(r.trace("ws_open"))
            await squatter.close()
            await r.until(
                lambda: r.client.core.stats.sessions >= 2 and len(subscribes(r)) > len(SUBS),
                timeout_s=15,
                what="retry",
            )
            status = next(s for s in r.statuses() if s["reason"] == "session_in_use")
            assert status["code"] == limits.string("in_use_code")
            assert Decimal(status["backoff_s"]) == Decimal(str(limits.number("in_use_backoff_s")))
            closes = [c for c in r.trace("ws_close")]
            opens = r.trace("ws_open")
            refused_close = next(c for c in closes if c["conn"] == opens[1]["conn"])
            retry_open = opens[client_opens_before]
            assert (
                retry_open["t_spec"] - refused_close["t_spec"]
                >= limits.number("in_use_backoff_s") - 1
            )
        finally:
            await r.stop()
            await r.http.close()
            await http.close()


# ---------------------------------------------------------------- seams: ConnectGate, back-off


class RecordingGate:
    """A ConnectGate the test opens, closes and revokes by hand; it logs every call."""

    def __init__(self) -> None:
        self.allow = asyncio.Event()
        self.allow.set()
        self._lost = asyncio.Event()
        self.log: list[str] = []

    async def acquire(self) -> None:
        await self.allow.wait()
        self._lost.clear()
        self.log.append("acquire")

    def lost(self) -> asyncio.Event:
        return self._lost

    async def release(self) -> None:
        self.log.append("release")


async def test_connect_gate_loss_closes_waits_and_reopens() -> None:
    """Permission lost: the socket closes at once, is released, and no socket opens until re-granted."""
    gate = RecordingGate()
    async with KisMock(MockConfig(time_scale=SCALE, tick_rate_hz=0.5)) as mock:
        r = await start_run(mock, gate=gate)
        try:
            await r.until(lambda: len(subscribes(r)) == len(SUBS))
            gate.allow.clear()
            gate.lost().set()
            await r.until(lambda: len(r.trace("ws_close")) == 1, what="close on loss")
            assert r.trace("ws_close")[0]["by"] == "client"
            await r.until(lambda: gate.log == ["acquire", "release"], what="release after close")
            await asyncio.sleep(0.5)
            assert len(r.trace("ws_open")) == 1, "a socket opened without permission"
            gate.allow.set()
            await r.until(lambda: len(r.trace("ws_open")) == 2, what="reopen after grant")
            second = r.trace("ws_open")[1]["conn"]
            await r.until(lambda: len(subscribes(r, second)) == len(SUBS), what="resubscribe")
            assert gate.log == ["acquire", "release", "acquire"]
            assert any(s["reason"] == "connect_gate_lost" for s in r.statuses())
        finally:
            await r.stop()
            await r.http.close()
        assert gate.log[-1] == "release"


async def test_backoff_starts_over_only_after_a_healthy_session() -> None:
    """A session that lasted healthy_after_s resets the back-off; a short one does not."""
    made: list[int] = []

    def factory() -> Iterator[float]:
        made.append(1)
        return jittered_backoff(initial_s=0.2, max_s=2.0)

    async with KisMock(MockConfig(time_scale=SCALE, tick_rate_hz=0.5)) as mock:
        # healthy after 100 spec s = 0.5 real s at SCALE
        r = await start_run(mock, backoff=factory, healthy_after_s=100.0)
        try:
            await r.until(lambda: len(subscribes(r)) == len(SUBS))
            await asyncio.sleep(0.8)
            mock.faults.drop_socket()
            await r.until(lambda: len(r.trace("ws_open")) == 2, what="reconnect")
            assert len(made) == 2, "the long session did not reset the back-off"
            mock.faults.drop_socket()
            await r.until(lambda: len(r.trace("ws_open")) == 3, what="second reconnect")
            assert len(made) == 2, "a short session reset the back-off"
        finally:
            await r.stop()
            await r.http.close()


# ---------------------------------------------------------------- spec 1.0


async def test_spec_1_0_streams_and_resubscribes_without_a_release_packet() -> None:
    """Under 1.0: values stream; already-subscribed releases (borrowed packet) then resubscribes."""
    async with KisMock(MockConfig(spec_version="1.0", time_scale=SCALE, tick_rate_hz=0.5)) as mock:
        r = await start_run(mock, spec_version="1.0")
        try:
            await r.until(lambda: len(subscribes(r)) == len(SUBS))
            already = code(r.spec, "POL-ALREADY-SUBSCRIBED", "code")
            mock.faults.next_subscribe_error(code=already, tr_key="005930")
            mock.faults.drop_socket()
            await r.until(lambda: len(r.trace("ws_open")) == 2)
            second = r.trace("ws_open")[1]["conn"]
            await r.until(lambda: len(subscribes(r, second)) >= len(SUBS) + 2, what="recovery")
            await asyncio.sleep(0.2)
            kr = [k for k, _, key in subscribes(r, second) if key == "005930"]
            assert kr == ["subscribe", "unsubscribe", "subscribe"]
            await r.until(lambda: r.client.core.stats.frames > 4, what="data")
        finally:
            await r.stop()
            await r.http.close()
        printed = [e for e in r.events() if e["type"] != "status"]
        spec = r.spec if r.spec.has("PKT-DATA-FRAME") else load_spec("1.1")
        records = mock.trace.records()
        first, then = (
            expected_events(spec, [x for x in records if x.get("conn") == conn])
            for conn in (r.trace("ws_open")[0]["conn"], second)
        )
        # Frames the mock sent on the first socket as it dropped it may never arrive: what was
        # printed is a prefix of the first socket's frames, then a prefix of the second's.
        k = next(
            (i for i, (a, b) in enumerate(zip(printed, first, strict=False)) if a != b),
            min(len(first), len(printed)),
        )
        assert printed and then, "no data printed, or none sent on the second socket"
        assert printed[:k] == first[:k]
        assert printed[k:] == then[: len(printed) - k]
