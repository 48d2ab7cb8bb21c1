"""WebSocket side of the KIS mock over real loopback sockets: acks, codes, limits, PINGPONG."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import websockets
from websockets.asyncio.client import connect

from stockmon.mockserver import KisMock, MockConfig
from stockmon.schemas import errors as schema_errors
from stockmon.spec import load_spec

from ..support import PING, code, get_approval, recv_control, recv_matching, sub

S11 = load_spec("1.1")
LIMITS = S11.clause("WS-SESSION-LIMITS")


# --- PKT-SUBSCRIBE / PKT-DATA-FRAME ------------------------------------------------------------
@pytest.mark.parametrize("mock_config", [MockConfig(tick_rate_hz=50)])
async def test_subscribe_ack_and_data_frames(client: httpx.AsyncClient, mock: KisMock) -> None:
    """Subscribe gets OPSP0000 with output.iv/key; data frames carry whole records of the layout."""
    ak = await get_approval(client, mock)
    async with connect(mock.ws_url + "/tryitout") as ws:
        for tr_id, key in (
            ("H0STCNT0", "005930"),
            ("HDFSCNT0", "DNASAAPL"),
            ("H0STASP0", "005930"),
            ("HDFSASP0", "DNASAAPL"),
        ):
            await ws.send(sub(ak, tr_id, key))
            ack = await recv_control(ws)
            assert schema_errors("kis-ws-control", ack) == []
            assert ack["body"]["msg_cd"] == code("subscribed")
            assert ack["header"]["tr_id"] == tr_id and ack["header"]["tr_key"] == key
            assert set(ack["body"]["output"]) == {"iv", "key"}
        seen: set[str] = set()
        while len(seen) < 4:
            frame = await recv_matching(ws, lambda m: m[:1] == "0")
            _enc, tr_id, count, payload = frame.split("|", 3)
            fields = payload.split("^")
            n = len(S11.layout(tr_id).fields)
            assert len(fields) == int(count) * n
            seen.add(tr_id)


async def test_duplicate_subscribe_gets_opsp0002(client: httpx.AsyncClient, mock: KisMock) -> None:
    """POL-ALREADY-SUBSCRIBED: a second subscribe of one registration answers OPSP0002 rt_cd 1."""
    ak = await get_approval(client, mock)
    async with connect(mock.ws_url) as ws:
        await ws.send(sub(ak, "H0STCNT0", "005930"))
        await recv_control(ws)
        await ws.send(sub(ak, "H0STCNT0", "005930"))
        ack = await recv_control(ws)
        assert ack["body"]["msg_cd"] == code("already_subscribed")
        assert ack["body"]["rt_cd"] == S11.ws_code(code("already_subscribed"))["rt_cd"]


async def test_unsubscribe_and_not_found(client: httpx.AsyncClient, mock: KisMock) -> None:
    """PKT-UNSUBSCRIBE: tr_type 2 answers OPSP0001; again (not registered) OPSP0003."""
    ak = await get_approval(client, mock)
    async with connect(mock.ws_url) as ws:
        await ws.send(sub(ak, "H0STCNT0", "005930"))
        await recv_control(ws)
        await ws.send(sub(ak, "H0STCNT0", "005930", tr_type="2"))
        assert (await recv_control(ws))["body"]["msg_cd"] == code("unsubscribed")
        await ws.send(sub(ak, "H0STCNT0", "005930", tr_type="2"))
        ack = await recv_control(ws)
        assert ack["body"]["msg_cd"] == code("not_subscribed")
        assert ack["body"]["msg1"] == S11.ws_code(code("not_subscribed"))["msg1"]


async def test_registration_cap(client: httpx.AsyncClient, mock: KisMock) -> None:
    """WS-SESSION-LIMITS: max_registrations succeed, the next one gets OPSP0008."""
    ak = await get_approval(client, mock)
    cap = LIMITS.integer("max_registrations")
    async with connect(mock.ws_url) as ws:
        for i in range(cap):
            await ws.send(sub(ak, "H0STCNT0", f"{i:06d}"))
        for _ in range(cap):
            assert (await recv_control(ws))["body"]["msg_cd"] == code("subscribed")
        await ws.send(sub(ak, "H0STCNT0", f"{cap:06d}"))
        ack = await recv_control(ws)
        assert ack["body"]["msg_cd"] == LIMITS.string("over_limit_code")


async def test_second_session_same_appkey_refused(client: httpx.AsyncClient, mock: KisMock) -> None:
    """WS-SESSION-LIMITS: a second session of one appkey gets OPSP8996 rt_cd 9 and is closed."""
    ak = await get_approval(client, mock)
    async with connect(mock.ws_url) as first:
        await first.send(sub(ak, "H0STCNT0", "005930"))
        await recv_control(first)
        async with connect(mock.ws_url) as second:
            await second.send(sub(ak, "H0STCNT0", "000660"))
            ack = await recv_control(second)
            assert ack["body"]["msg_cd"] == LIMITS.string("in_use_code")
            assert ack["body"]["rt_cd"] == LIMITS.string("in_use_rt_cd")
            assert schema_errors("kis-ws-control", ack) == []
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(second.recv(), 5)
        # The first session is unaffected.
        await first.send(sub(ak, "H0STCNT0", "000660"))
        assert (await recv_control(first))["body"]["msg_cd"] == code("subscribed")
    refused = [r for r in mock.trace.records() if r["kind"] == "session_refused"]
    assert len(refused) == 1


async def test_other_appkey_gets_its_own_session(client: httpx.AsyncClient, mock: KisMock) -> None:
    """One session per appkey, not per server: another credential pair may connect."""
    key2, secret2 = mock.new_credentials()
    ak1 = await get_approval(client, mock)
    ak2 = await get_approval(client, mock, key2, secret2)
    async with connect(mock.ws_url) as a, connect(mock.ws_url) as b:
        await a.send(sub(ak1, "H0STCNT0", "005930"))
        await b.send(sub(ak2, "H0STCNT0", "005930"))
        assert (await recv_control(a))["body"]["msg_cd"] == code("subscribed")
        assert (await recv_control(b))["body"]["msg_cd"] == code("subscribed")


async def test_slot_freed_after_close(client: httpx.AsyncClient, mock: KisMock) -> None:
    """After the first session closes, the appkey may open a new one (reconnect)."""
    ak = await get_approval(client, mock)
    async with connect(mock.ws_url) as ws:
        await ws.send(sub(ak, "H0STCNT0", "005930"))
        await recv_control(ws)
    await mock.trace.wait_for(lambda r: r["kind"] == "ws_close")
    async with connect(mock.ws_url) as ws:
        await ws.send(sub(ak, "H0STCNT0", "005930"))
        assert (await recv_control(ws))["body"]["msg_cd"] == code("subscribed")


@pytest.mark.parametrize(
    ("packet", "name"),
    [
        ("{not json", "invalid_json"),
        ("[1, 2]", "header_not_found"),
        (
            json.dumps(
                {
                    "header": {
                        "approval_key": "x",
                        "custtype": "P",
                        "tr_type": "1",
                        "content-type": "utf-8",
                    }
                }
            ),
            "body_not_found",
        ),
        (json.dumps({"header": {"tr_type": "1"}, "body": {}}), "input_not_found"),
        (
            json.dumps({"header": {"tr_type": "1"}, "body": {"input": {"tr_id": "H0STCNT0"}}}),
            "tr_key_not_found",
        ),
    ],
)
async def test_parse_errors_get_their_code(mock: KisMock, packet: str, name: str) -> None:
    """Bad packets get the matching OPSP99xx answer and the session stays usable."""
    async with connect(mock.ws_url) as ws:
        await ws.send(packet)
        ack = await recv_control(ws)
        assert ack["body"]["msg_cd"] == code(name)
        await ws.send("{still not json")
        assert (await recv_control(ws))["body"]["msg_cd"] == code("invalid_json")
    assert any(r["kind"] == "violation" for r in mock.trace.records())


@pytest.mark.parametrize(
    ("tr_id", "key", "custtype", "tr_type", "name"),
    [
        ("H0XXXXX0", "005930", "P", "1", "invalid_tr_id"),
        ("H0STCNT0", "DNASAAPL", "P", "1", "invalid_tr_key"),
        ("H0STCNT0", "005930\n", "P", "1", "invalid_tr_key"),  # the whole key, not `$`
        ("H0STCNT0", "005930", "Z", "1", "invalid_custtype"),
        ("H0STCNT0", "005930", "P", "7", "invalid_tr_type"),
    ],
)
async def test_semantic_errors_get_their_code(
    client: httpx.AsyncClient,
    mock: KisMock,
    tr_id: str,
    key: str,
    custtype: str,
    tr_type: str,
    name: str,
) -> None:
    """Unknown tr_id, a key of the wrong market (or with a newline after it), bad custtype or
    tr_type get their OPSP code."""
    ak = await get_approval(client, mock)
    async with connect(mock.ws_url) as ws:
        await ws.send(sub(ak, tr_id, key, tr_type=tr_type, custtype=custtype))
        assert (await recv_control(ws))["body"]["msg_cd"] == code(name)


async def test_unknown_approval_key_gets_opsp0011(mock: KisMock) -> None:
    """POL-AUTH-FAILED (WS): an approval key the gateway never issued gets OPSP0011."""
    async with connect(mock.ws_url) as ws:
        await ws.send(sub("00000000-0000-0000-0000-000000000000", "H0STCNT0", "005930"))
        assert (await recv_control(ws))["body"]["msg_cd"] == code("invalid_approval")


# --- KA-SERVER-PINGPONG / KA-HEARTBEAT ----------------------------------------------------------
@pytest.mark.parametrize("mock_config", [MockConfig(time_scale=500)])
async def test_server_pingpong_on_profile_period(mock: KisMock) -> None:
    """1.1: the server sends {"header":{"tr_id":"PINGPONG","datetime":...}} every period."""
    async with connect(mock.ws_url) as ws:
        msg = await recv_matching(ws, lambda m: PING in m, timeout_s=5)
        obj = json.loads(msg)
        assert schema_errors("kis-ws-server-pingpong", obj) == []
        await ws.send(msg)  # answer, so the session is kept


@pytest.mark.parametrize("mock_config", [MockConfig(time_scale=500)])
async def test_unanswered_pingpong_drops_session(mock: KisMock) -> None:
    """1.1: a session that leaves a PINGPONG unanswered past the grace is dropped."""
    async with connect(mock.ws_url) as ws:
        with pytest.raises(websockets.ConnectionClosed):
            async with asyncio.timeout(5):
                while True:
                    await ws.recv()
    close = await mock.trace.wait_for(lambda r: r["kind"] == "ws_close")
    assert close["by"] == "server"


@pytest.mark.parametrize("mock_config", [MockConfig(time_scale=500)])
async def test_answered_pingpong_keeps_session(mock: KisMock) -> None:
    """A client echoing every PINGPONG (re-serialised, as python-kis does) is never dropped."""
    period = S11.mock_profile["server_pingpong_period_s"]
    async with connect(mock.ws_url) as ws:
        pings = 0
        async with asyncio.timeout(10):
            while pings < 3:
                msg = await ws.recv()
                if PING in str(msg):
                    await ws.send(json.dumps(json.loads(msg)))
                    pings += 1
        assert mock.open_sockets() == 1
    assert pings * period > S11.mock_profile["unanswered_pingpong_grace_s"]


@pytest.mark.parametrize("mock_config", [MockConfig(spec_version="1.0", time_scale=1000)])
async def test_no_server_pingpong_in_1_0(mock: KisMock) -> None:
    """1.0: the server sends no PINGPONG of its own and drops nobody."""
    async with connect(mock.ws_url) as ws:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), 0.3)
        assert mock.open_sockets() == 1


@pytest.mark.parametrize(
    ("mock_config", "reflects"),
    [(MockConfig(reflect_client_ping=True), True), (MockConfig(reflect_client_ping=False), False)],
)
async def test_client_ping_reflected_or_ignored(mock: KisMock, reflects: bool) -> None:
    """KA-HEARTBEAT: the client's PINGPONG is reflected verbatim, or ignored (option)."""
    packet = json.dumps(S11.clause("KA-PING").value("packet"), default=dict)
    async with connect(mock.ws_url) as ws:
        await ws.send(packet)
        if reflects:
            assert await asyncio.wait_for(ws.recv(), 5) == packet
        else:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(ws.recv(), 0.3)


async def test_any_path_accepted(mock: KisMock) -> None:
    """Any WebSocket path is accepted (no path, /tryitout, /tryitout/H0STCNT0)."""
    for path in ("", "/tryitout", "/tryitout/H0STCNT0", "/x/y"):
        async with connect(mock.ws_url + path) as ws:
            await ws.send("{bad")
            assert (await recv_control(ws))["body"]["msg_cd"] == code("invalid_json")
    opens = [r["path"] for r in mock.trace.records() if r["kind"] == "ws_open"]
    assert "/tryitout/H0STCNT0" in opens
