"""Every fault, by Python API, by the HTTP control plane and by scenario file."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest
import websockets
from websockets.asyncio.client import connect

from stockmon.mockserver import KisMock, MockConfig, MockConfigError, ScenarioError
from stockmon.mockserver.scenario import load_scenario
from stockmon.spec import load_spec

from ..support import (
    KIS,
    PING,
    code,
    get_approval,
    get_token,
    kr_quote,
    recv_control,
    recv_matching,
    sub,
)

S11 = load_spec("1.1")


async def subscribed(
    client: httpx.AsyncClient, mock: KisMock, ws: websockets.ClientConnection, key: str = "005930"
) -> str:
    """Subscribe H0STCNT0:key on ws and wait for the ack; returns the approval key."""
    ak = await get_approval(client, mock)
    await ws.send(sub(ak, "H0STCNT0", key))
    assert (await recv_control(ws))["body"]["msg_cd"] == code("subscribed")
    return ak


def faults_in_trace(mock: KisMock) -> list[str]:
    """Names of the faults recorded so far."""
    return [r["name"] for r in mock.trace.records() if r["kind"] == "fault"]


@pytest.mark.parametrize("mock_config", [MockConfig(tick_rate_hz=50, time_scale=10)])
async def test_stall_sends_nothing(client: httpx.AsyncClient, mock: KisMock) -> None:
    """stall: no data and no pings for the stall, then data again."""
    async with connect(mock.ws_url) as ws:
        await subscribed(client, mock, ws)
        await recv_matching(ws, lambda m: m[:1] == "0")
        mock.faults.stall(3.0)  # 0.3 s real at scale 10
        while True:  # frames already in flight may still arrive
            try:
                await asyncio.wait_for(ws.recv(), 0.1)
            except TimeoutError:
                break
        t0 = time.monotonic()
        await recv_matching(ws, lambda m: m[:1] == "0")
        assert time.monotonic() - t0 > 0.1


async def test_next_subscribe_error(client: httpx.AsyncClient, mock: KisMock) -> None:
    """next_subscribe_error answers the next subscribe of that key with the code, once."""
    mock.faults.next_subscribe_error(code("max_subscriptions"), tr_key="000660")
    ak = await get_approval(client, mock)
    async with connect(mock.ws_url) as ws:
        await ws.send(sub(ak, "H0STCNT0", "005930"))
        assert (await recv_control(ws))["body"]["msg_cd"] == code("subscribed")
        await ws.send(sub(ak, "H0STCNT0", "000660"))
        assert (await recv_control(ws))["body"]["msg_cd"] == code("max_subscriptions")
        await ws.send(sub(ak, "H0STCNT0", "000660"))
        assert (await recv_control(ws))["body"]["msg_cd"] == code("subscribed")


async def test_fail_rest(client: httpx.AsyncClient, mock: KisMock) -> None:
    """fail_rest(n) fails the next n authenticated calls with the profile's auth code."""
    token = (await get_token(client, mock)).json()["access_token"]
    mock.faults.fail_rest(2)
    for _ in range(2):
        r = await kr_quote(client, mock, token)
        assert r.json()["msg_cd"] == S11.mock_profile["rest_auth_failure"]["invalid"]
    assert (await kr_quote(client, mock, token)).status_code == 200


async def test_revoke_tokens(client: httpx.AsyncClient, mock: KisMock) -> None:
    """revoke_tokens makes every issued token invalid."""
    token = (await get_token(client, mock)).json()["access_token"]
    assert mock.faults.revoke_tokens() == 1
    assert (await kr_quote(client, mock, token)).json()["msg_cd"] == S11.mock_profile[
        "rest_auth_failure"
    ]["invalid"]


async def test_revoke_approvals(client: httpx.AsyncClient, mock: KisMock) -> None:
    """revoke_approvals: the next subscribe with an old approval key gets OPSP0011."""
    ak = await get_approval(client, mock)
    mock.faults.revoke_approvals()
    async with connect(mock.ws_url) as ws:
        await ws.send(sub(ak, "H0STCNT0", "005930"))
        assert (await recv_control(ws))["body"]["msg_cd"] == code("invalid_approval")


@pytest.mark.parametrize("mock_config", [MockConfig(spec_version="1.0")])
async def test_throttle_tokens_forced_on(client: httpx.AsyncClient, mock: KisMock) -> None:
    """throttle_tokens(True) throttles even in the 1.0 profile; False lifts it."""
    mock.faults.throttle_tokens(True)
    assert (await get_token(client, mock)).status_code == 200
    assert (await get_token(client, mock)).status_code == S11.clause("TOKEN-KIS-THROTTLE").integer(
        "http_status"
    )
    mock.faults.throttle_tokens(False)
    assert (await get_token(client, mock)).status_code == 200


@pytest.mark.parametrize("mock_config", [MockConfig(time_scale=10)])
async def test_delay_rest(client: httpx.AsyncClient, mock: KisMock) -> None:
    """delay_rest holds responses for the spec delay (scaled), n times."""
    mock.faults.delay_rest(3.0, n=1)  # 0.3 s real
    t0 = time.monotonic()
    await get_token(client, mock)
    assert time.monotonic() - t0 >= 0.25
    t0 = time.monotonic()
    await client.get("/nope")
    assert time.monotonic() - t0 < 0.25


@pytest.mark.parametrize("mock_config", [MockConfig(time_scale=10)])
async def test_a_held_answer_the_client_gave_up_on_is_traced_abandoned(
    client: httpx.AsyncClient, mock: KisMock
) -> None:
    """A client closing its connection during delay_rest is traced as abandoned at once, and the
    mock keeps serving."""
    mock.faults.delay_rest(600.0, n=1)  # 60 s real: far longer than the client waits
    t0 = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        await client.post(KIS["token"]["path"], json={}, timeout=0.3)
    await asyncio.sleep(0.3)
    abandoned = [r for r in mock.trace.records() if r.get("kind") == "abandoned"]
    assert len(abandoned) == 1, abandoned
    request = next(r for r in mock.trace.records() if r["seq"] == abandoned[0]["request_seq"])
    assert request["kind"] == "request" and request["path"] == KIS["token"]["path"]
    assert time.monotonic() - t0 < 2.0
    assert (await get_token(client, mock)).status_code == 200


@pytest.mark.parametrize("mock_config", [MockConfig(tick_rate_hz=50, max_records_per_frame=1)])
async def test_malformed_frames(client: httpx.AsyncClient, mock: KisMock) -> None:
    """malformed_frames(garbage) corrupts the next data frame, then frames are whole again."""
    n = len(S11.layout("H0STCNT0").fields)
    async with connect(mock.ws_url) as ws:
        await subscribed(client, mock, ws)
        mock.faults.malformed_frames(1, kind="garbage")
        bad = await recv_matching(ws, lambda m: m[:1] == "0")
        assert len(bad.split("|")) < 4 or len(bad.split("^")) != n
        good = await recv_matching(ws, lambda m: m[:1] == "0")
        assert len(good.split("^")) == n


@pytest.mark.parametrize("mock_config", [MockConfig(spec_version="1.0")])
async def test_server_ping_now(mock: KisMock) -> None:
    """server_ping_now sends a PINGPONG on every session, even where the profile sends none."""
    async with connect(mock.ws_url) as ws:
        await mock.trace.wait_for(lambda r: r["kind"] == "ws_open")
        assert mock.faults.server_ping_now() == 1
        msg = await asyncio.wait_for(ws.recv(), 5)
        assert json.loads(msg)["header"]["tr_id"] == PING


async def test_bad_fault_parameters_are_clear(mock: KisMock) -> None:
    """Bad fault parameters raise MockConfigError with a one-line message."""
    with pytest.raises(MockConfigError, match="kind"):
        mock.faults.malformed_frames(1, kind="explode")
    with pytest.raises(MockConfigError, match="unknown fault"):
        mock.faults.apply("explode")


# --- control plane ----------------------------------------------------------------------------
async def test_control_plane_kis_faults(client: httpx.AsyncClient, mock: KisMock) -> None:
    """POST /_mock/faults/fail_rest fails the next quote; bad parameters do not crash the mock."""
    r = await client.post("/_mock/faults/fail_rest", json={"n": 1})
    assert r.status_code == 200 and r.json()["ok"] is True
    token = (await get_token(client, mock)).json()["access_token"]
    assert (await kr_quote(client, mock, token)).status_code != 200
    r = await client.post("/_mock/faults/delay_rest", json={"seconds": "x"})
    assert r.status_code in (400, 500) or r.json().get("ok")
    state = (await client.get("/_mock/state")).json()
    assert state["faults"]["subscribe_errors"] == [] and state["trace_records"] > 0


# --- scenario files ---------------------------------------------------------------------------
SCENARIO = """
name: second subscribe of 005930 is refused, then a drop
steps:
  - on: {event: subscribe, tr_key: "005930", nth: 2}
    fault: next_subscribe_error
    params: {code: OPSP0002}
  - on: {event: ws_open, nth: 2}
    delay_s: 1
    fault: drop_socket
"""


async def test_scenario_event_triggers(tmp_path: Path) -> None:
    """'on the 2nd subscribe of 005930' answers that very subscribe; delayed steps fire later."""
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO)
    async with KisMock(MockConfig(scenario=str(path), time_scale=10)) as mock:
        async with httpx.AsyncClient(base_url=mock.rest_url) as client:
            ak = await get_approval(client, mock)
            async with connect(mock.ws_url) as ws:
                await ws.send(sub(ak, "H0STCNT0", "005930"))
                assert (await recv_control(ws))["body"]["msg_cd"] == code("subscribed")
                await ws.send(sub(ak, "H0STCNT0", "005930", tr_type="2"))
                await recv_control(ws)
                await ws.send(sub(ak, "H0STCNT0", "005930"))
                assert (await recv_control(ws))["body"]["msg_cd"] == code("already_subscribed")
            async with connect(mock.ws_url) as ws2:
                with pytest.raises(websockets.ConnectionClosedError):
                    async with asyncio.timeout(5):
                        while True:
                            await ws2.recv()
        assert faults_in_trace(mock) == ["next_subscribe_error", "drop_socket"]


async def test_scenario_timed_step() -> None:
    """A step 'at' a spec time fires then (scaled)."""
    scenario = {"steps": [{"at": 2, "fault": "refuse_connections", "params": {"on": True}}]}
    async with KisMock(MockConfig(scenario=scenario, time_scale=20)) as mock:
        rec = await mock.trace.wait_for(lambda r: r["kind"] == "fault", timeout_s=5)
        assert rec["t_spec"] >= 2
        assert mock.world.faults.refuse_connections


def test_bad_scenarios_are_one_line_errors(tmp_path: Path) -> None:
    """Unreadable, non-YAML and schema-breaking scenarios raise ScenarioError."""
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [\n")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load_scenario(bad)
    with pytest.raises(ScenarioError, match=r"schemas/scenario\.json"):
        load_scenario({"steps": [{"fault": "stall"}]})
