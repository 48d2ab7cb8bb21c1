"""The REST client: the environment's proxy applies (looked up once per broker) and NO_PROXY
bypasses it, ~/.netrc is never read, and a call makes no thread-pool hop (real loopback sockets)."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from http_support import aiohttp_server

from stockmon.redaction import Secret
from stockmon.reference.errors import NetworkError
from stockmon.reference.rest import BrokerHttp, env_proxy, new_http

Seen = list[dict[str, str]]


@pytest.fixture
async def server() -> AsyncIterator[tuple[int, Seen]]:
    """A loopback HTTP server answering every request with JSON, recording what it got."""
    seen: Seen = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(
            {
                "path": request.raw_path,
                "host": request.headers.get("Host", ""),
                "auth": request.headers.get("Authorization", ""),
                "proxy_auth": request.headers.get("Proxy-Authorization", ""),
            }
        )
        return web.json_response({"ok": True})

    async with aiohttp_server(handle) as port:
        yield port, seen


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _call(base_url: str, budget: float = 5.0) -> tuple[int, Any]:
    async with new_http() as http:
        conn = BrokerHttp(http, base_url, Secret("app-key"), Secret("app-secret"))
        return await conn.call("GET", "/uapi/quote", budget)


async def test_environment_proxy_carries_the_call(
    server: tuple[int, Seen], monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY set: the call goes to the proxy, naming the broker's host (which is not even up);
    the proxy's password is in no repr."""
    port, seen = server
    broker = f"127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("HTTP_PROXY", f"http://user:canary-proxy-pw@127.0.0.1:{port}")
    async with new_http() as http:
        conn = BrokerHttp(http, f"http://{broker}", Secret("app-key"), Secret("app-secret"))
        assert await conn.call("GET", "/uapi/quote", 5.0) == (200, {"ok": True})
        assert "canary-proxy-pw" not in repr(conn)
    assert seen and seen[0]["host"] == broker and seen[0]["path"].endswith("/uapi/quote")
    assert base64.b64decode(seen[0]["proxy_auth"].removeprefix("Basic ")) == b"user:canary-proxy-pw"


async def test_no_proxy_bypasses_the_proxy(
    server: tuple[int, Seen], monkeypatch: pytest.MonkeyPatch
) -> None:
    """NO_PROXY naming the broker: the call goes direct (here refused), the proxy sees nothing."""
    port, seen = server
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with pytest.raises(NetworkError, match="failed"):
        await _call(f"http://127.0.0.1:{_closed_port()}")
    assert seen == []


async def test_netrc_credentials_are_never_sent(
    server: tuple[int, Seen], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A ~/.netrc entry for the broker's host is not read: no Authorization header goes out."""
    port, seen = server
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login user password canary-netrc-password\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    assert (await _call(f"http://127.0.0.1:{port}"))[0] == 200
    assert seen[0]["auth"] == ""


class CountingExecutor(concurrent.futures.ThreadPoolExecutor):
    """A thread pool that counts what is submitted to it."""

    submitted = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        CountingExecutor.submitted += 1
        return super().submit(fn, *args, **kwargs)


async def test_a_call_makes_no_thread_pool_hop(
    server: tuple[int, Seen], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Warm calls submit nothing to the loop's executor (trust_env did, twice per call)."""
    port, _ = server
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # looked up once, bypassed below
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    executor = CountingExecutor(max_workers=1)
    asyncio.get_running_loop().set_default_executor(executor)
    CountingExecutor.submitted = 0
    async with new_http() as http:
        conn = BrokerHttp(http, f"http://127.0.0.1:{port}", Secret("k"), Secret("s"))
        for _ in range(5):
            assert (await conn.call("GET", "/x", 5.0))[0] == 200
    assert CountingExecutor.submitted == 0


def test_proxy_credentials_go_to_the_proxy_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """For https the proxy's credentials go on the CONNECT request, never into the tunnel; for
    http on the request the proxy reads; neither repr shows them."""
    monkeypatch.setenv("HTTP_PROXY", "http://user:canary-proxy-pw@127.0.0.1:3128")
    monkeypatch.setenv("HTTPS_PROXY", "http://user:canary-proxy-pw@127.0.0.1:3128")
    tls, plain = env_proxy("https://broker.example:9443"), env_proxy("http://broker.example:80")
    assert tls is not None and plain is not None
    assert tls.request_headers is None and tls.tunnel_headers is not None
    assert plain.tunnel_headers is None and plain.request_headers is not None
    assert plain.request_headers["Proxy-Authorization"].startswith("Basic ")
    assert all("canary-proxy-pw" not in repr(p) for p in (tls, plain))
    monkeypatch.setenv("NO_PROXY", "broker.example")
    assert env_proxy("https://broker.example:9443") is None
