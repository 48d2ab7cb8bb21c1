"""The REST client's HTTP layer on real loopback sockets: TLS verified, the CONNECT tunnel, kept-alive
connections, and hostile or broken answers turned into one-line errors with memory bounded."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import trustme
from aiohttp import web
from http_support import aiohttp_server

from stockmon.errors import SettingsError
from stockmon.redaction import Secret
from stockmon.reference.errors import NetworkError
from stockmon.reference.httpclient import MAX_HEAD_BYTES, HttpClient, InvalidUrl, parse_url
from stockmon.reference.rest import BrokerHttp, call_json

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_server(handle: Handler) -> AsyncIterator[int]:
    """A loopback TCP server running ``handle`` per connection; yields its port."""
    writers: list[asyncio.StreamWriter] = []

    async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        try:
            await handle(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(run, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        for writer in writers:
            writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2)


async def read_head(reader: asyncio.StreamReader) -> bytes:
    """One request head (up to the blank line)."""
    return await reader.readuntil(b"\r\n\r\n")


def answering(answer: bytes, then_close: bool = True) -> Handler:
    """A handler that reads one request and writes ``answer`` (raw bytes)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await read_head(reader)
            writer.write(answer)
            await writer.drain()
            if then_close:
                writer.close()

    return handle


async def get(port: int, budget: float = 5.0, scheme: str = "http") -> tuple[int, object]:
    async with HttpClient() as http:
        return await call_json(http, "GET", f"{scheme}://127.0.0.1:{port}/x", "GET /x", budget)


async def test_answers_split_anyhow_and_chunked_are_read() -> None:
    """A JSON answer sent byte by byte, chunked, is read whole."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        body = b'{"rt_cd":"0","output":{"stck_prpr":"71000"}}'
        data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        data += b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        for i in range(len(data)):
            writer.write(data[i : i + 1])
            await writer.drain()
        writer.close()

    async with raw_server(handle) as port:
        assert await get(port) == (200, {"rt_cd": "0", "output": {"stck_prpr": "71000"}})


async def test_a_broken_status_line_is_a_network_error() -> None:
    """An answer llhttp rejects is one NetworkError saying it is not valid HTTP."""
    async with raw_server(answering(b"HTTP/1.1 abc OK\r\n\r\n")) as port:
        with pytest.raises(NetworkError, match=r"GET /x failed: the answer is not valid HTTP"):
            await get(port)


async def test_an_endless_head_is_refused_at_the_bound() -> None:
    """Headers past MAX_HEAD_BYTES end the call (the server keeps sending; memory stays bounded)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n")
        with contextlib.suppress(ConnectionError):
            for i in range(20 * MAX_HEAD_BYTES // 1000):
                writer.write(b"X-Fill-%d: %s\r\n" % (i, b"a" * 1000))
                await writer.drain()

    async with raw_server(handle) as port:
        with pytest.raises(NetworkError, match=f"head is over {MAX_HEAD_BYTES} bytes"):
            await get(port)


async def test_a_body_flood_stops_at_the_json_bound() -> None:
    """A 200 with a body larger than any JSON the client takes: (200, None), read no further."""
    sent = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n")
        chunk = b"[" * 65536
        with contextlib.suppress(ConnectionError):
            while sent < 1_000_000_000:
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)

    async with raw_server(handle) as port:
        assert await get(port, budget=30) == (200, None)
    assert sent < 200_000_000  # the client closed the connection instead of draining a gigabyte


async def test_a_server_that_hangs_up_is_a_network_error() -> None:
    """The connection closed before any answer: NetworkError, not a hang."""
    async with raw_server(answering(b"")) as port:
        with pytest.raises(NetworkError, match="GET /x failed: the server closed the connection"):
            await get(port)


async def test_a_silent_server_times_out_and_sees_the_client_leave() -> None:
    """No answer within the budget: NetworkError naming it, and the connection is closed (the
    mock traces such a call as abandoned)."""
    left = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        await reader.read()  # returns at EOF: the client hung up
        left.set()

    async with raw_server(handle) as port:
        with pytest.raises(NetworkError, match=r"GET /x timed out after 0\.20 s"):
            await get(port, budget=0.2)
        await asyncio.wait_for(left.wait(), 5)


async def test_connections_are_kept_alive_and_a_closed_one_is_replaced() -> None:
    """Sequential calls share one connection; after the server closes it, the next call opens a
    new one instead of failing."""
    peers: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(writer.get_extra_info("peername")[1])
        for n in range(3):
            await read_head(reader)
            close = n == 2
            extra = b"Connection: close\r\n" if close else b""
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" + extra + b"\r\n{}")
            await writer.drain()
        writer.close()

    async with raw_server(handle) as port, HttpClient() as http:
        for _ in range(5):
            status, body = await call_json(http, "GET", f"http://127.0.0.1:{port}/x", "GET /x", 5)
            assert (status, body) == (200, {})
    assert len(peers) == 2  # three calls on the first connection, two on the second


async def test_a_body_that_ends_with_the_connection_is_read() -> None:
    """An answer with neither a length nor chunks (HTTP/1.0 style) ends at the close: read whole."""
    answer = b'HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{"rt_cd":"0"}'
    async with raw_server(answering(answer)) as port:
        assert await get(port) == (200, {"rt_cd": "0"})


async def test_an_answer_cut_short_is_a_network_error() -> None:
    """The connection closes before the Content-Length is complete: NetworkError, not a short
    body taken for the whole."""
    answer = b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"rt_cd":'
    async with raw_server(answering(answer)) as port:
        with pytest.raises(NetworkError, match="closed the connection in the middle of its answer"):
            await get(port)


def first_answer_only(posts: list[int]) -> Handler:
    """Answers the first request of each connection; on a second one it hangs up unanswered (a
    server closing a kept-alive connection as idle just as the request arrives)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await read_head(reader)
        if head.startswith(b"POST"):
            posts.append(1)
            await reader.readexactly(int(head.split(b"Content-Length: ")[1].split(b"\r")[0]))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()
        head = await read_head(reader)
        if head.startswith(b"POST"):
            posts.append(1)

    return handle


async def test_a_get_on_a_connection_closed_as_idle_is_sent_again() -> None:
    """A GET that meets a kept-alive connection closed under it is sent once more on a new one;
    a POST (a token issuance) never is: it fails, and the server saw it once."""
    posts: list[int] = []
    async with raw_server(first_answer_only(posts)) as port, HttpClient() as http:
        url = f"http://127.0.0.1:{port}/x"
        assert await call_json(http, "GET", url, "GET /x", 5) == (200, {})
        assert await call_json(http, "GET", url, "GET /x", 5) == (200, {})
        with pytest.raises(NetworkError, match="POST /x failed: the server closed the connection"):
            await call_json(http, "POST", url, "POST /x", 5, json={"a": 1})
    assert len(posts) == 1  # sent again, a new connection would have answered it


async def test_a_header_with_a_line_break_is_refused_not_sent() -> None:
    """A secret holding a line break (a pasted key) cannot inject a header: a SettingsError
    naming the header, never the value."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.read(1000))

    async with raw_server(handle) as port, HttpClient() as http:
        headers = {"appkey": "canary-key\r\nX-Injected: 1"}
        with pytest.raises(SettingsError, match="'appkey' holds a line break") as info:
            await call_json(http, "GET", f"http://127.0.0.1:{port}/", "GET /", 5, headers=headers)
        assert "canary-key" not in str(info.value)
    assert all(b"X-Injected" not in s for s in seen)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://broker.example/", "not http or https"),
        ("http:///path", "no host"),
        ("http://broker.example:99999/", "out of range"),
        ("http://broker.example/a b", "space or a control character"),
        ("http://broker.example/\u00e9", "non-ASCII"),
    ],
)
async def test_a_url_the_client_cannot_use_is_the_settings_fault(url: str, why: str) -> None:
    """A base URL that cannot be used: InvalidUrl from the parser, SettingsError naming the
    variable from the broker's client."""
    with pytest.raises(InvalidUrl, match=why):
        parse_url(url)
    async with HttpClient() as http:
        conn = BrokerHttp(http, url, Secret("k"), Secret("s"), "KIS_REST_URL")
        with pytest.raises(SettingsError, match="KIS_REST_URL does not make a valid URL"):
            await conn.call("GET", "/x", 5)


# TLS: a private CA (trustme), trusted through SSL_CERT_FILE as a user would trust their own.


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """A certificate authority of this test run only."""
    return trustme.CA()


@pytest.fixture
async def tls_server(ca: trustme.CA) -> AsyncIterator[tuple[int, list[dict[str, str]]]]:
    """An HTTPS JSON server on 127.0.0.1 (aiohttp, another HTTP implementation than ours)."""
    seen: list[dict[str, str]] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.json_response({"rt_cd": "0", "via": "tls"})

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    async with aiohttp_server(handle, ctx) as port:
        yield port, seen


def trust(ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``ca`` the trusted roots of new TLS contexts (OpenSSL reads SSL_CERT_FILE)."""
    pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    monkeypatch.setenv("SSL_CERT_FILE", str(pem))


async def test_https_with_a_trusted_certificate(
    tls_server: tuple[int, list[dict[str, str]]],
    ca: trustme.CA,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An https broker whose certificate chains to a trusted root answers over TLS."""
    trust(ca, tmp_path, monkeypatch)
    port, seen = tls_server
    assert await get(port, scheme="https") == (200, {"rt_cd": "0", "via": "tls"})
    assert len(seen) == 1


async def test_https_refuses_an_untrusted_certificate(
    tls_server: tuple[int, list[dict[str, str]]],
) -> None:
    """Certificates are verified: the test CA is not a system root, so the call fails and the
    server never sees a request."""
    port, seen = tls_server
    with pytest.raises(NetworkError, match="GET /x failed: SSLCertVerificationError"):
        await get(port, scheme="https")
    assert seen == []


async def test_https_through_the_environment_proxy_tunnels(
    tls_server: tuple[int, list[dict[str, str]]],
    ca: trustme.CA,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HTTPS_PROXY with credentials: the client sends CONNECT with them to the proxy, TLS runs
    end to end inside the tunnel, and the broker never sees the proxy's credentials."""
    trust(ca, tmp_path, monkeypatch)
    port, seen = tls_server
    connects: list[bytes] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await read_head(reader)
        connects.append(head)
        up_r, up_w = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))

    async with raw_server(proxy) as proxy_port:
        monkeypatch.setenv("HTTPS_PROXY", f"http://user:canary-proxy-pw@127.0.0.1:{proxy_port}")
        async with HttpClient() as http:
            conn = BrokerHttp(http, f"https://127.0.0.1:{port}", Secret("k"), Secret("s"))
            for _ in range(2):  # the second call reuses the tunnel
                assert await conn.call("GET", "/uapi/quote", 5.0) == (
                    200,
                    {"rt_cd": "0", "via": "tls"},
                )
    assert len(connects) == 1 and connects[0].startswith(f"CONNECT 127.0.0.1:{port} ".encode())
    auth = base64.b64encode(b"user:canary-proxy-pw")
    assert b"Proxy-Authorization: Basic " + auth in connects[0]
    assert len(seen) == 2 and all("Proxy-Authorization" not in h for h in seen)


async def test_a_refused_tunnel_is_a_network_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """The proxy answers CONNECT with 407: NetworkError naming the refusal and its status."""
    answer = b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n"
    async with raw_server(answering(answer)) as proxy_port:
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy_port}")
        async with HttpClient() as http:
            conn = BrokerHttp(http, "https://broker.example:9443", Secret("k"), Secret("s"))
            with pytest.raises(NetworkError, match=r"refused the tunnel .*\(407\)"):
                await conn.call("GET", "/uapi/quote", 5.0)
