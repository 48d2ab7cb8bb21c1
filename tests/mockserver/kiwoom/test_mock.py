"""The Kiwoom mock over real loopback sockets: REST envelope, LOGIN/REG/REAL/PING, faults, sharing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from stockmon.mockserver import KisMock, KiwoomMock, KiwoomMockConfig, MockConfig, kiwoom_beside
from stockmon.schemas import errors as schema_errors
from stockmon.spec import load_spec

SPEC = load_spec("1.1")
REST = SPEC.rest["kiwoom"]
PROTO = SPEC.clause("KIWOOM-PROTOCOL")
MP = SPEC.mock_profile["kiwoom"]
ERR = MP["rest_errors"]


@pytest.fixture
async def kiwoom() -> AsyncIterator[KiwoomMock]:
    """A Kiwoom mock (prod profile: LOGIN needs a token) at time scale 20, in the test's loop."""
    async with KiwoomMock(KiwoomMockConfig(time_scale=20.0, env="prod")) as m:
        yield m


async def token_of(m: KiwoomMock, **body: Any) -> httpx.Response:
    """POST /oauth2/token (defaults: the mock's credentials)."""
    payload = {"grant_type": REST["grant_type"], "appkey": m.app_key, "secretkey": m.app_secret}
    payload.update(body)
    async with httpx.AsyncClient(base_url=m.rest_url) as c:
        return await c.post(REST["token"]["path"], json=payload)


async def recv_json(ws: ClientConnection, *, echo_pings: bool = True) -> dict[str, Any]:
    """The next non-PING frame (PINGs are echoed verbatim on the way)."""
    while True:
        text = await asyncio.wait_for(ws.recv(), 5)
        obj = json.loads(text)
        if obj.get("trnm") == PROTO.string("ping"):
            if echo_pings:
                await ws.send(text)
            continue
        return dict(obj)


async def logged_in(m: KiwoomMock) -> tuple[ClientConnection, str]:
    """A socket that sent LOGIN with a fresh token and got the ack."""
    token = (await token_of(m)).json()[REST["token_field"]]
    ws = await connect(m.ws_url)
    await ws.send(json.dumps({"trnm": "LOGIN", "token": token}))
    ack = await recv_json(ws)
    assert ack["return_code"] == 0 and schema_errors("kiwoom-login-ack", ack) == []
    return ws, token


# ---------------------------------------------------------------------------- REST
async def test_token_response_fields_and_kst_expiry(kiwoom: KiwoomMock) -> None:
    """TOKEN-KIWOOM-SESSION: token, token_type, expires_dt (KST YYYYMMDDHHMMSS), return_code 0."""
    r = await token_of(kiwoom)
    body = r.json()
    assert r.status_code == 200 and schema_errors("kiwoom-token-response", body) == []
    kst = timezone(timedelta(seconds=REST["utc_offset_s"]))
    expires = datetime.strptime(body["expires_dt"], REST["expires_format"]).replace(tzinfo=kst)
    validity = expires.timestamp() - kiwoom.world.wall(kiwoom.now())
    assert abs(validity - MP["token_validity_s"]) < 60
    assert datetime.now(UTC).tzinfo is not None


async def test_token_errors_use_the_envelope(kiwoom: KiwoomMock) -> None:
    """CRED-KIWOOM-SECRET: no secretkey -> HTTP 200, return_code and [8020:...]; wrong grant, wrong pair."""
    r = await token_of(kiwoom, secretkey="")
    assert r.status_code == ERR["missing_credentials"]["status"]
    assert r.json() == {
        "return_code": ERR["missing_credentials"]["return_code"],
        "return_msg": ERR["missing_credentials"]["message"],
    }
    assert f"[{ERR['missing_credentials']['code']}:" in r.json()["return_msg"]
    assert (await token_of(kiwoom, grant_type="password")).json()["return_msg"] == ERR["bad_grant"][
        "message"
    ]
    assert (await token_of(kiwoom, secretkey="x" * 43)).json()["return_msg"] == ERR[
        "bad_credentials"
    ]["message"]
    violations = [r for r in kiwoom.trace.records() if r["kind"] == "violation"]
    assert violations and kiwoom.app_secret not in json.dumps(
        kiwoom.trace.records(), ensure_ascii=False
    )


async def test_throttled_token_request_is_429(kiwoom: KiwoomMock) -> None:
    """The throttle fault answers HTTP 429 with return_code 5 and [1700:...]."""
    kiwoom.faults.throttle_tokens(True)
    r = await token_of(kiwoom)
    assert r.status_code == ERR["throttled"]["status"]
    assert r.json()["return_code"] == ERR["throttled"]["return_code"]


async def test_bad_token_on_a_data_call_is_http_200_with_8005(kiwoom: KiwoomMock) -> None:
    """ka10001 with an unknown token: HTTP 200, return_code 3, [8005:...]; a live token gets a price."""
    q = REST["quote"]
    token = (await token_of(kiwoom)).json()["token"]
    async with httpx.AsyncClient(base_url=kiwoom.rest_url) as c:
        hdr = {REST["headers"]["api_id"]: q["api_id"]}
        bad = await c.post(
            q["path"],
            json={q["key_field"]: "005930"},
            headers={**hdr, "authorization": "Bearer nope"},
        )
        assert bad.status_code == ERR["invalid_token"]["status"] == 200
        assert bad.json()["return_code"] == ERR["invalid_token"]["return_code"]
        assert "[8005:" in bad.json()["return_msg"]
        ok = await c.post(
            q["path"],
            json={q["key_field"]: "005930"},
            headers={**hdr, "authorization": f"Bearer {token}"},
        )
        assert ok.status_code == 200 and ok.json()["return_code"] == 0
        assert ok.json()[q["price_field"]].lstrip("+- ").isdigit()
        assert ok.headers[REST["headers"]["api_id"]] == q["api_id"]


async def test_revoke_then_the_token_is_dead(kiwoom: KiwoomMock) -> None:
    """/oauth2/revoke answers return_code 0; the revoked token no longer logs in."""
    token = (await token_of(kiwoom)).json()["token"]
    async with httpx.AsyncClient(base_url=kiwoom.rest_url) as c:
        r = await c.post(
            REST["revoke"]["path"],
            json={"appkey": kiwoom.app_key, "secretkey": kiwoom.app_secret, "token": token},
        )
    assert r.json()["return_code"] == 0
    async with connect(kiwoom.ws_url) as ws:
        await ws.send(json.dumps({"trnm": "LOGIN", "token": token}))
        assert (await recv_json(ws))["return_code"] == MP["login_failure"]["return_code"]


# ---------------------------------------------------------------------------- WebSocket
async def test_login_reg_real_values_keyed_by_fid(kiwoom: KiwoomMock) -> None:
    """KIWOOM-PROTOCOL: LOGIN, REG acked, REAL frames with FID-keyed string values, schema-valid."""
    ws, _ = await logged_in(kiwoom)
    async with ws:
        await ws.send(
            json.dumps(
                {
                    "trnm": "REG",
                    "grp_no": "1",
                    "refresh": "1",
                    "data": [{"item": ["005930"], "type": ["0B", "0D"]}],
                }
            )
        )
        assert await recv_json(ws) == {"trnm": "REG", "return_code": 0, "return_msg": ""}
        real = await recv_json(ws)
        assert schema_errors("kiwoom-real", real) == []
        assert {e["type"] for e in real["data"]} == {"0B", "0D"}


async def test_wrong_path_is_refused(kiwoom: KiwoomMock) -> None:
    """Only the spec's domestic path upgrades; another path is a traced 404."""
    with pytest.raises(InvalidStatus):
        await connect(kiwoom.ws_url.replace(PROTO.string("path"), "/nope"))
    refused = [r for r in kiwoom.trace.records() if r["kind"] == "ws_refused"]
    assert [(r["status"], r["broker"]) for r in refused] == [(404, "kiwoom")]


async def test_verbatim_ping_echo_keeps_the_session_and_silence_ends_it() -> None:
    """PINGs echoed verbatim keep the socket; unanswered ones end it with SYSTEM heartbeat_missed."""
    config = KiwoomMockConfig(
        time_scale=100.0, ping_period_s=5.0, max_missed_pings=2, tick_rate_hz=0
    )
    async with KiwoomMock(config) as m, connect(m.ws_url) as ws:
        await ws.send(json.dumps({"trnm": "LOGIN"}))
        assert (await recv_json(ws))["return_code"] == 0
        # 30 spec s of echoed pings: nothing else arrives. A flat deadline loop, not a wait_for
        # around recv_json: on Python 3.11 a nested wait_for can swallow the outer cancellation
        # when a PING lands at the timeout, and recv_json would then echo pings forever.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 0.3
        while (left := deadline - loop.time()) > 0:
            try:
                text = await asyncio.wait_for(ws.recv(), left)
            except TimeoutError:
                break
            frame = json.loads(text)
            assert frame.get("trnm") == PROTO.string("ping"), frame
            await ws.send(text)
        # now stop answering
        system: dict[str, Any] = {}
        with pytest.raises(ConnectionClosed):
            while True:
                obj = await recv_json(ws, echo_pings=False)
                system = obj
        assert system["code"] == PROTO.mapping("system_codes")["heartbeat_missed"]


async def test_second_session_with_same_key_evicts_first(kiwoom: KiwoomMock) -> None:
    """SYSTEM replaced_by_new_login to the older session when the same app key logs in again."""
    ws1, _ = await logged_in(kiwoom)
    ws2, _ = await logged_in(kiwoom)
    async with ws1, ws2:
        system = await recv_json(ws1)
        assert system["code"] == PROTO.mapping("system_codes")["replaced_by_new_login"]
        assert schema_errors("kiwoom-system", system) == []
        with pytest.raises(ConnectionClosed):
            await recv_json(ws1)


async def test_system_now_fault(kiwoom: KiwoomMock) -> None:
    """system_now sends a SYSTEM frame (close=False keeps the socket); traced with broker kiwoom."""
    ws, _ = await logged_in(kiwoom)
    async with ws:
        assert kiwoom.faults.system_now("R10001", close=False) == 1
        assert (await recv_json(ws))["code"] == "R10001"
        assert kiwoom.faults.system_now("replaced_by_new_login") == 1
        with pytest.raises(ConnectionClosed):
            while True:
                await recv_json(ws)
    faults = [r for r in kiwoom.trace.records() if r["kind"] == "fault"]
    assert [f["name"] for f in faults] == ["system_now", "system_now"]
    assert {f["broker"] for f in faults} == {"kiwoom"}


async def test_beside_a_kis_mock_shares_trace_and_prices() -> None:
    """kiwoom_beside: one trace orders both brokers; a KR code trades at the KIS simulator's prices."""
    async with KisMock(MockConfig(time_scale=20.0)) as kis:
        kw = kiwoom_beside(kis)
        await kw.start()
        try:
            assert kw.trace is kis.trace and kw.world.sim is kis.world.sim
            inst = kis.world.sim.instrument("005930")
            entry = kw.market.entry("0B", "005930", kw.world.wall(kw.now()))
            price = entry["values"][SPEC.kiwoom_layouts["0B"].roles["price"]]
            assert int(price.strip().lstrip("+-")) == inst.last
            async with connect(kw.ws_url) as ws:
                await ws.send(json.dumps({"trnm": "LOGIN"}))
                await recv_json(ws)
            opens = [r for r in kis.trace.records() if r["kind"] == "ws_open"]
            assert opens and opens[0]["conn"].startswith("kiwoom-ws-")
        finally:
            await kw.stop()


async def test_control_plane_knows_only_kiwoom_faults(kiwoom: KiwoomMock) -> None:
    """KIS-only faults are 404 on the Kiwoom control plane; its state names broker and env."""
    async with httpx.AsyncClient(base_url=kiwoom.rest_url) as c:
        assert (await c.post("/_mock/faults/revoke_approvals")).status_code == 404
        assert (await c.post("/_mock/faults/system_now", json={"code": "nope"})).status_code == 400
        state = (await c.get("/_mock/state")).json()
        assert state["broker"] == "kiwoom" and state["env"] == "prod"


async def test_scenario_steps_for_kiwoom_apply_to_the_kiwoom_mock() -> None:
    """A scenario step with broker: kiwoom fires on the Kiwoom mock; KIS steps are not its business."""
    scenario = {
        "steps": [
            {
                "on": {"event": "login"},
                "fault": "system_now",
                "params": {"code": "R10001", "close": False},
                "broker": "kiwoom",
            },
            {"at": 0, "fault": "stall", "params": {"seconds": 1}},
        ]
    }
    async with (
        KiwoomMock(KiwoomMockConfig(time_scale=20.0, scenario=scenario)) as m,
        connect(m.ws_url) as ws,
    ):
        await ws.send(json.dumps({"trnm": "LOGIN"}))
        frames = [await recv_json(ws), await recv_json(ws)]
        assert {f["trnm"] for f in frames} == {"LOGIN", "SYSTEM"}
        names = [r["name"] for r in m.trace.records() if r["kind"] == "fault"]
        assert names == ["system_now"]
