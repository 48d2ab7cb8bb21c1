"""Hypothesis fuzzing of the WebSocket inbound path: never a crash, always an answer or a close."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect

from stockmon.mockserver import MockConfig, MockThread

from ..support import PING, code, recv_control, sub

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
HEADERS = st.fixed_dictionaries(
    {},
    optional={
        "approval_key": JSON,
        "custtype": st.sampled_from(["P", "B", "", 1, None]),
        "tr_type": st.sampled_from(["1", "2", "0", 1, None]),
        "content-type": JSON,
        "tr_id": st.sampled_from(["PINGPONG", "H0STCNT0", None, 5]),
    },
)
PACKETS = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200),
    JSON.map(json.dumps),
    st.builds(
        lambda h, inp: json.dumps({"header": h, "body": {"input": inp}}),
        HEADERS,
        st.fixed_dictionaries(
            {},
            optional={
                "tr_id": st.one_of(st.sampled_from(["H0STCNT0", "HDFSCNT0", "XXXXXXXX"]), JSON),
                "tr_key": JSON,
            },
        ),
    ),
)


@pytest.fixture(scope="module")
def running() -> Any:
    """One mock for the whole module (Hypothesis runs many examples)."""
    thread = MockThread(MockConfig(server_pingpong_period_s=0, tick_rate_hz=5, ws_max_size=4096))
    mock = thread.start()
    yield thread, mock
    thread.stop()


async def _one(mock: Any, packets: list[str | bytes]) -> None:
    async with connect(mock.ws_url, max_size=None) as ws:
        for p in packets:
            await ws.send(p)
        # Every packet gets an answer (control, reflection) or the socket closes with a reason.
        try:
            async with asyncio.timeout(0.15):
                while True:
                    await ws.recv()
        except TimeoutError:
            pass
        except websockets.ConnectionClosed as exc:
            assert exc.rcvd is not None or exc.sent is not None


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(packets=st.lists(PACKETS, min_size=1, max_size=4))
def test_fuzzed_packets_never_crash_and_others_unaffected(
    running: Any, packets: list[str | bytes]
) -> None:
    """Random packets never take the server down and a healthy session keeps working alongside."""
    _thread, mock = running
    key, secret = mock.new_credentials()

    async def scenario() -> None:
        async with httpx.AsyncClient(base_url=mock.rest_url) as c:
            r = await c.post(
                mock.profile.approval_path,
                json={"grant_type": "client_credentials", "appkey": key, "secretkey": secret},
            )
            ak = r.json()["approval_key"]
        async with connect(mock.ws_url) as healthy:
            await healthy.send(sub(ak, "H0STCNT0", "005930"))
            assert (await recv_control(healthy))["body"]["msg_cd"] == code("subscribed")
            await _one(mock, packets)
            await healthy.send(sub(ak, "H0STCNT0", "000660"))
            assert (await recv_control(healthy))["body"]["msg_cd"] == code("subscribed")

    asyncio.run(scenario())


def test_huge_frame_closed_with_reason(running: Any) -> None:
    """A frame above the size limit is closed with 1009 (message too big), recorded in the trace."""
    _, mock = running

    async def go() -> None:
        async with connect(mock.ws_url, max_size=None) as ws:
            await ws.send("x" * 100_000)
            with pytest.raises(websockets.ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), 5)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1009

    asyncio.run(go())
    # The server records the close after the client has seen it: wait for the record, do not race it.
    mock.trace.wait_for_sync(lambda r: r["kind"] == "ws_close" and r["code"] == 1009, timeout_s=5)


def test_wrong_types_get_matching_codes(running: Any) -> None:
    """Wrong JSON types: a number as header, an unknown tr_id, a PINGPONG with a body."""
    _, mock = running

    async def go() -> None:
        async with connect(mock.ws_url) as ws:
            await ws.send(json.dumps({"header": 5}))
            assert (await recv_control(ws))["body"]["msg_cd"] == code("header_not_found")
            await ws.send(json.dumps({"header": {"tr_id": PING}, "body": {}}))
            await asyncio.wait_for(ws.recv(), 5)  # reflected (the profile reflects client pings)
        violations = [r for r in mock.trace.records() if r["kind"] == "violation"]
        assert any(v["schema"] == "kis-ws-client-pingpong" for v in violations)

    asyncio.run(go())
