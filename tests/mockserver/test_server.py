"""The mock-server base, the same for both brokers: batched writes, CLOSING mark, faults, control plane.

Every test runs against the KIS and the Kiwoom mock (``broker`` parameter): what the base does
once must behave the same in each dialect.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.frames import Frame, Opcode

from stockmon.mockserver import KisMock, KiwoomMock, KiwoomMockConfig, MockConfig, MockServer
from stockmon.mockserver.config import CommonConfig
from stockmon.mockserver.core import CoreBase, Send
from stockmon.mockserver.kis.profile import load_profile
from stockmon.mockserver.kis.session import ServerSession
from stockmon.mockserver.kis.state import World
from stockmon.mockserver.kiwoom.market import KiwoomMarket
from stockmon.mockserver.kiwoom.profile import load_kiwoom_profile
from stockmon.mockserver.kiwoom.session import KiwoomServerSession
from stockmon.mockserver.kiwoom.state import KiwoomWorld
from stockmon.mockserver.server import text_frames
from stockmon.mockserver.simulator import MarketSimulator
from stockmon.mockserver.trace import Trace
from stockmon.spec import latest_version, load_spec

BROKERS = ["kis", "kiwoom"]
SPEC = load_spec("1.1")
LOGIN = SPEC.clause("KIWOOM-PROTOCOL").string("first_message")


def build(broker: str, **fields: Any) -> MockServer[Any]:
    """A mock of ``broker`` without its own keep-alive pings (time scale 20)."""
    if broker == "kis":
        return KisMock(MockConfig(time_scale=20, server_pingpong_period_s=0, **fields))
    return KiwoomMock(KiwoomMockConfig(time_scale=20, ping_period_s=0, env="mock", **fields))


@pytest.fixture(params=BROKERS)
async def any_mock(request: pytest.FixtureRequest) -> AsyncIterator[MockServer[Any]]:
    """A running KIS or Kiwoom mock in the test's loop."""
    async with build(request.param) as m:
        yield m


async def open_session(m: MockServer[Any]) -> ClientConnection:
    """A connected socket whose session is open (Kiwoom: after an accepted LOGIN)."""
    ws = await connect(m.ws_url)
    if isinstance(m, KiwoomMock):
        await ws.send(json.dumps({"trnm": LOGIN}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["return_code"] == 0
    await m.trace.wait_for(lambda r: r["kind"] == "ws_open")
    return ws


async def closed(ws: ClientConnection) -> websockets.ConnectionClosed:
    """Read until the socket closes; the closing exception."""
    with pytest.raises(websockets.ConnectionClosed) as info:
        async with asyncio.timeout(5):
            while True:
                await ws.recv()
    return info.value


async def test_frames_of_one_step_go_out_in_one_socket_write(
    any_mock: MockServer[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batched writes: three frames queued in one step reach the socket with one write."""
    ws = await open_session(any_mock)
    async with ws:
        [live] = any_mock._live.values()
        transport = live.ws.transport
        writes: list[bytes] = []
        write = transport.write

        def counting(data: bytes | bytearray | memoryview) -> None:
            writes.append(bytes(data))
            write(data)

        monkeypatch.setattr(transport, "write", counting)
        now = any_mock.now()
        for _ in range(3):
            live.session.server_ping_now(now)
        live.wake.set()
        frames = [await asyncio.wait_for(ws.recv(), 5) for _ in range(3)]
        assert len(set(frames)) == 3
        assert len(writes) == 1


async def test_close_socket_marks_the_session_closing(any_mock: MockServer[Any]) -> None:
    """CLOSING mark: a session the mock closes is CLOSING at once, then closed with the code."""
    ws = await open_session(any_mock)
    async with ws:
        assert any_mock.faults.close_socket(code=4001, reason="maintenance") == 1
        assert [s["state"] for s in any_mock.sessions()] == ["closing"]
        exc = await closed(ws)
        assert exc.rcvd is not None and exc.rcvd.code == 4001
    close = await any_mock.trace.wait_for(lambda r: r["kind"] == "ws_close")
    assert (close["by"], close["code"], close["reason"]) == ("server", 4001, "maintenance")


async def test_drop_socket_is_abrupt(any_mock: MockServer[Any]) -> None:
    """drop_socket closes TCP without a close frame; the trace says abrupt; the fault is traced."""
    ws = await open_session(any_mock)
    async with ws:
        assert any_mock.faults.drop_socket() == 1
        await closed(ws)
    close = await any_mock.trace.wait_for(lambda r: r["kind"] == "ws_close")
    assert close["by"] == "abrupt" and close["code"] is None
    [fault] = [r for r in any_mock.trace.records() if r["kind"] == "fault"]
    assert fault["name"] == "drop_socket" and fault["conn"] == any_mock.world.mock_conn


async def test_refuse_connections_until_switched_off(any_mock: MockServer[Any]) -> None:
    """refuse_connections answers handshakes with HTTP 503 (traced) until switched off."""
    any_mock.faults.refuse_connections(True)
    with pytest.raises(websockets.InvalidStatus):
        await connect(any_mock.ws_url)
    any_mock.faults.refuse_connections(False)
    ws = await open_session(any_mock)
    await ws.close()
    refused = [r for r in any_mock.trace.records() if r["kind"] == "ws_refused"]
    assert [r["status"] for r in refused] == [503]


async def test_server_ping_now_reaches_every_session(any_mock: MockServer[Any]) -> None:
    """server_ping_now queues the dialect's ping on each open session, even with pings off."""
    ws = await open_session(any_mock)
    async with ws:
        assert any_mock.faults.server_ping_now() == 1
        frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert frame.get("trnm") == "PING" or frame["header"]["tr_id"] == "PINGPONG"


async def test_control_plane(any_mock: MockServer[Any]) -> None:
    """/_mock/state, /_mock/trace (since), /_mock/env and /_mock/faults/<name> on the REST port."""
    async with httpx.AsyncClient(base_url=any_mock.rest_url) as c:
        r = await c.post("/_mock/faults/refuse_connections", json={"on": True})
        assert r.json()["ok"] is True and any_mock.world.faults.refuse_connections
        assert (await c.post("/_mock/faults/explode", json={})).status_code == 404
        assert (await c.post("/_mock/faults/stall", content=b"[1]")).status_code == 400
        state = (await c.get("/_mock/state")).json()
        assert state["spec_version"] == latest_version() and state["open_sockets"] == 0
        assert state["faults"]["refuse_connections"] is True
        lines = (await c.get("/_mock/trace")).text.splitlines()
        assert any(json.loads(x)["kind"] == "fault" for x in lines)
        since = json.loads(lines[-1])["seq"]
        assert (await c.get("/_mock/trace", params={"since": since})).text == ""
        assert (await c.get("/_mock/trace", params={"since": "x"})).status_code == 400
        assert (await c.get("/_mock/env")).json() == any_mock.env()


def core(broker: str, config: CommonConfig | None = None) -> CoreBase:
    """A sans-I/O session core of ``broker`` opened at t=0, on a trace at time scale 10."""
    trace = Trace(time_scale=10)
    if broker == "kis":
        kconf = MockConfig(time_scale=10)
        return ServerSession(World(kconf, load_profile(), trace), "ws-1", 0.0)
    wconf = KiwoomMockConfig(time_scale=10)
    sim = MarketSimulator(SPEC, 1)
    profile = load_kiwoom_profile()
    world = KiwoomWorld(wconf, profile, trace, sim, 0.0)
    return KiwoomServerSession(world, KiwoomMarket(profile, sim), "kiwoom-ws-1", 0.0)


@pytest.mark.parametrize("broker", BROKERS)
def test_core_records_carry_the_callers_time(broker: str) -> None:
    """One core step, one clock: every record of an input is stamped with that input's ``now``."""
    session = core(broker)
    session.receive_text("{not json", 12.5)
    session.receive_binary(b"\x00", 13.0)
    records = session.world.trace.records()
    assert [r["kind"] for r in records][:2] == ["text", "violation"]
    assert {r["t_spec"] for r in records} == {12.5, 13.0}
    assert all(r["t"] == r["t_spec"] / 10 for r in records)


def test_run_facts_the_judge_reads_are_public_properties() -> None:
    """The grace of an unanswered PINGPONG and Kiwoom's token rule are read without internals."""
    assert KisMock(MockConfig(unanswered_pingpong_grace_s=7.0)).unanswered_pingpong_grace_s == 7.0
    assert KiwoomMock(KiwoomMockConfig(env="prod")).token_required is True
    assert KiwoomMock(KiwoomMockConfig(env="mock")).token_required is False


@pytest.mark.parametrize("size", [0, 125, 126, 300, 65535, 65536])
def test_batched_text_frames_are_what_websockets_writes(size: int) -> None:
    """The writer's own text-frame encoding is byte for byte websockets' server frame."""
    text = "\u00e9" * (size // 2) + "a" * (size % 2)  # UTF-8 bytes: size
    expected = Frame(Opcode.TEXT, text.encode()).serialize(mask=False, extensions=[])
    assert b"".join(text_frames([Send(text, "data")])) == expected
