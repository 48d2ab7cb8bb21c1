"""A real KIS client library (python-kis, from PyPI) against the mock, only its base URLs changed."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from stockmon.mockserver import KisMock
from stockmon.spec import load_spec

# python-kis is a dev dependency: a missing install must fail this module, not skip it silently.
pykis = importlib.import_module("pykis")
PYKIS_KIS = importlib.import_module("pykis.kis")
PYKIS_WS = importlib.import_module("pykis.client.websocket")

KIS = load_spec("1.1").rest["kis"]


@pytest.fixture
def kis(kis_mock: KisMock, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A PyKis pointed at the mock: the two base-URL constants are the only change."""
    monkeypatch.setattr(PYKIS_KIS, "REAL_DOMAIN", kis_mock.rest_url)
    monkeypatch.setattr(PYKIS_WS, "WEBSOCKET_REAL_DOMAIN", kis_mock.ws_url)
    client = pykis.PyKis(
        id="mockuser",
        account="00000000-01",
        appkey=kis_mock.app_key,
        secretkey=kis_mock.app_secret,
        keep_token=False,
    )
    yield client
    client.websocket.disconnect()


def test_python_kis_token_and_rest_fetch(kis: Any, kis_mock: KisMock) -> None:
    """python-kis issues a token (expiry parsed from our KST field) and fetches inquire-price."""
    q = KIS["quotes"]["KR"]
    res = kis.fetch(
        q["path"],
        api=q["tr_id"],
        params={q["market_param"]: q["market_value"], q["key_param"]: "005930"},
    )
    assert (
        int(getattr(res.output, q["price_field"])) == kis_mock.world.sim.instrument("005930").last
    )
    assert kis.token.expired_at is not None
    issued = [r for r in kis_mock.trace.records() if r["kind"] == "token_issued"]
    assert len(issued) == 1


def test_python_kis_websocket_subscribe_and_pingpong(kis: Any, kis_mock: KisMock) -> None:
    """python-kis connects, subscribes (approval key per message), gets data, echoes PINGPONG."""
    kis.websocket.subscribe("H0STCNT0", "005930")
    trace = kis_mock.trace
    ack = trace.wait_for_sync(
        lambda r: r["kind"] == "text" and r["dir"] == "out" and r["frame"] == "control", 10
    )
    assert ack["msg_cd"] == load_spec("1.1").mock_profile["ws_codes"]["subscribed"]
    trace.wait_for_sync(
        lambda r: r["kind"] == "text" and r["dir"] == "out" and r["frame"] == "data", 10
    )
    kis_mock.faults.server_ping_now()
    echo = trace.wait_for_sync(
        lambda r: r["kind"] == "text" and r["dir"] == "in" and r["frame"] == "pingpong", 10
    )
    assert echo["json"]["header"]["datetime"]
    assert not [r for r in trace.records() if r["kind"] == "violation"]
