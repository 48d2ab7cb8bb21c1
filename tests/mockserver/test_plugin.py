"""The pytest plugin: kis_mock / kiwoom_mock work for sync and async tests and take a marker config."""

from __future__ import annotations

import json

import httpx
import pytest
from websockets.asyncio.client import connect

from stockmon.mockserver import KisMock, KiwoomMock
from stockmon.spec import load_spec

from .support import KIS, code, get_approval, kiwoom_token, recv_control, sub

REST = load_spec("1.1").rest["kiwoom"]


def test_kis_mock_sync(kis_mock: KisMock) -> None:
    """A synchronous test gets a running mock on free ports; faults work from this thread."""
    r = httpx.post(
        kis_mock.rest_url + KIS["token"]["path"],
        json={
            "grant_type": "client_credentials",
            "appkey": kis_mock.app_key,
            "appsecret": kis_mock.app_secret,
        },
    )
    assert r.status_code == 200
    kis_mock.faults.revoke_tokens()
    assert (
        kis_mock.trace.wait_for_sync(lambda rec: rec["kind"] == "fault")["name"] == "revoke_tokens"
    )
    assert kis_mock.env()["KIS_REST_URL"] == kis_mock.rest_url


async def test_kis_mock_async(kis_mock: KisMock) -> None:
    """An async test can use the same fixture (the mock runs on its own loop thread)."""
    async with httpx.AsyncClient(base_url=kis_mock.rest_url) as c:
        ak = await get_approval(c, kis_mock)
    async with connect(kis_mock.ws_url) as ws:
        await ws.send(sub(ak, "H0STCNT0", "005930"))
        assert (await recv_control(ws))["body"]["msg_cd"] == code("subscribed")
    await kis_mock.trace.wait_for(lambda rec: rec["kind"] == "ws_close")


@pytest.mark.kis_mock(spec_version="1.0", time_scale=5)
def test_kis_mock_marker(kis_mock: KisMock) -> None:
    """@pytest.mark.kis_mock(...) configures the fixture."""
    assert kis_mock.config.spec_version == "1.0" and kis_mock.config.time_scale == 5


def test_kiwoom_mock_fixture(kiwoom_mock: KiwoomMock) -> None:
    """The pytest plugin's kiwoom_mock fixture runs a mock on free ports with KIWOOM_* exports."""
    env = kiwoom_mock.env()
    assert env["KIWOOM_WS_URL"].endswith(REST["ws_path"])
    assert kiwoom_token(env).json()["return_code"] == 0
    assert env["KIWOOM_APP_SECRET"] not in "".join(
        json.dumps(r) for r in kiwoom_mock.trace.records()
    )


@pytest.mark.kiwoom_mock(env="prod", time_scale=5)
def test_kiwoom_mock_marker(kiwoom_mock: KiwoomMock) -> None:
    """@pytest.mark.kiwoom_mock(...) configures the fixture with KiwoomMockConfig fields."""
    assert kiwoom_mock.env_name == "prod" and kiwoom_mock.config.time_scale == 5
