"""The mock's control plane trusts nothing (issue 11, probes 4 and 6), over real loopback sockets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from stockmon.mockserver import KisMock, KiwoomMock, KiwoomMockConfig, MockConfig
from stockmon.mockserver.config import is_loopback
from stockmon.mockserver.faults import MAX_FAULT_COUNT

from .support import KIS, get_token

BAD = [
    ("delay_rest", '{"seconds":1,"n":"abc"}', "n"),
    ("close_socket", '{"code":1005}', "code"),
    ("close_socket", '{"code":1000,"reason":"' + "é" * 70 + '"}', "reason"),
    ("refuse_connections", '{"on":"false"}', "on"),
    ("throttle_tokens", '{"on":"yes"}', "on"),
    ("stall", '{"seconds":NaN}', "JSON object"),
    ("stall", '{"seconds":1e400}', "seconds"),
    ("stall", '{"seconds":"5"}', "seconds"),
    ("malformed_frames", '{"n":5000000}', "n"),
    ("malformed_frames", '{"n":-1}', "n"),
    ("fail_rest", '{"n":1.5}', "n"),
    ("next_subscribe_error", '{"count":0}', "count"),
    ("drop_socket", '{"conn":[1]}', "conn"),
    ("stall", '{"secs":1}', "secs"),
    ("stall", "[" * 5000, "JSON object"),
]


@pytest.mark.parametrize(("name", "body", "field"), BAD)
async def test_bad_fault_parameters_are_400_naming_the_field(
    mock: KisMock, client: httpx.AsyncClient, name: str, body: str, field: str
) -> None:
    """Each malformed parameter is a 400 naming the field (and its range), never a 500 or a 200."""
    resp = await client.post(f"/_mock/faults/{name}", content=body.encode())
    assert resp.status_code == 400, resp.text
    assert field in resp.json()["error"]


async def test_a_rejected_fault_leaves_rest_working(
    mock: KisMock, client: httpx.AsyncClient
) -> None:
    """After a refused delay_rest the REST side still answers (the fault was not half-applied)."""
    assert (
        await client.post("/_mock/faults/delay_rest", json={"seconds": 1, "n": "abc"})
    ).status_code == 400
    assert (await get_token(client, mock)).status_code == 200
    state = await client.get("/_mock/state")
    assert state.status_code == 200
    assert "NaN" not in state.text


async def test_range_is_in_the_message(mock: KisMock, client: httpx.AsyncClient) -> None:
    """The 400 says the allowed range, so the caller can fix the call."""
    resp = await client.post("/_mock/faults/malformed_frames", json={"n": MAX_FAULT_COUNT + 1})
    assert f"0..{MAX_FAULT_COUNT}" in resp.json()["error"]
    ok = await client.post("/_mock/faults/close_socket", json={"code": 4000, "reason": "fine"})
    assert ok.status_code == 200


@pytest.fixture
async def guarded() -> AsyncIterator[KisMock]:
    """A loopback mock with a control token and quick REST timeouts."""
    config = MockConfig(
        control_token="tok-123", rest_request_timeout_s=0.3, rest_idle_timeout_s=0.6
    )
    async with KisMock(config) as m:
        yield m


async def test_control_plane_needs_the_token(guarded: KisMock) -> None:
    """With a token set, /_mock/env and faults answer 401 without it and 200 with it."""
    async with httpx.AsyncClient(base_url=guarded.rest_url) as client:
        await _guarded_checks(guarded, client)


async def _guarded_checks(mock: KisMock, client: httpx.AsyncClient) -> None:
    assert (await client.get("/_mock/env")).status_code == 401
    assert (await client.post("/_mock/faults/stall", json={"seconds": 0})).status_code == 401
    env = await client.get("/_mock/env", headers={"authorization": "Bearer tok-123"})
    assert env.status_code == 200
    assert mock.app_secret not in (await client.get("/_mock/env")).text
    assert (await get_token(client, mock)).status_code == 200  # the broker side needs no token


async def test_non_loopback_host_gets_a_token_by_itself() -> None:
    """A mock on 0.0.0.0 makes up a control token; /_mock/env never answers without it."""
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("")  # noqa: S104
    async with KisMock(MockConfig(host="0.0.0.0")) as m:  # noqa: S104 - the probe itself
        assert m.control_token
        async with httpx.AsyncClient(base_url=m.rest_url) as c:
            assert (await c.get("/_mock/env")).status_code == 401
            ok = await c.get("/_mock/env", headers={"authorization": f"Bearer {m.control_token}"})
            assert ok.status_code == 200


async def test_half_open_connections_are_closed(guarded: KisMock) -> None:
    """Connections that send nothing or half a request are closed after the request timeout."""
    port = guarded.rest_port
    started = time.monotonic()
    pairs = [await asyncio.open_connection("127.0.0.1", port) for _ in range(20)]
    for i, (_, w) in enumerate(pairs):
        if i % 2:
            w.write(b"POST " + KIS["token"]["path"].encode() + b" HTTP/1.1\r\nhost: x\r\n")
    for r, _ in pairs:
        async with asyncio.timeout(5):
            assert await r.read() == b""  # EOF: the mock closed it
    assert time.monotonic() - started < 3
    for _, w in pairs:
        w.close()


async def test_ipv6_any_address_prints_a_reachable_ipv6_url() -> None:
    """--host :: binds IPv6 only, so the exports name [::1], never 127.0.0.1."""
    try:
        m = KisMock(MockConfig(host="::"))
        await m.start()
    except OSError as exc:  # a host without IPv6 cannot bind ::; nothing to judge there
        pytest.skip(f"no IPv6 listener here: {exc}")
    try:
        assert m.rest_url.startswith("http://[::1]:")
        assert m.env()["KIS_WS_URL"].startswith("ws://[::1]:")
        async with httpx.AsyncClient(base_url=m.rest_url) as c:
            assert (await c.get("/_mock/env")).status_code == 401  # :: is not loopback
    finally:
        await m.stop()


@pytest.mark.parametrize("dialect", ["kis", "kiwoom"])
async def test_websocket_listeners_drop_a_handshake_never_sent(dialect: str) -> None:
    """Both WebSocket listeners close TCP connections that never send (or never end) the upgrade."""
    bound = 0.5
    mock: KisMock | KiwoomMock = (
        KisMock(MockConfig(ws_open_timeout_s=bound))
        if dialect == "kis"
        else KiwoomMock(KiwoomMockConfig(ws_open_timeout_s=bound))
    )
    async with mock:
        started = time.monotonic()
        pairs = [await asyncio.open_connection("127.0.0.1", mock.ws_port) for _ in range(10)]
        for i, (_, w) in enumerate(pairs):
            if i % 2:  # half an upgrade request, never finished
                w.write(b"GET / HTTP/1.1\r\nhost: 127.0.0.1\r\nupgrade: websocket\r\n")
        for r, _ in pairs:
            async with asyncio.timeout(5):
                answer = await r.read()  # until EOF: the mock closed it
            assert b"101" not in answer.split(b"\r\n", 1)[0]
        took = time.monotonic() - started
        assert bound <= took < bound + 2.0, f"{took:.2f} s"
        for _, w in pairs:
            w.close()
