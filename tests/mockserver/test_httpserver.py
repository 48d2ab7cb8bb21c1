"""The mocks' HTTP/1.1 server (httptools) over real loopback sockets: framing, keep-alive, bounds,
and bytes that are not HTTP, each answered or refused without losing the requests before them."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest

from stockmon.mockserver.httpserver import (
    MAX_BODY,
    HttpRequest,
    HttpResponse,
    HttpServer,
    _head,
)


async def _echo(req: HttpRequest) -> HttpResponse:
    """What the server parsed, as the body; a path naming a header value puts it in the answer."""
    if req.path == "/header":
        return HttpResponse(200, {}, headers={"x-echo": req.query["v"]})
    if req.path == "/chunks":

        async def chunks() -> AsyncIterator[bytes]:
            for part in (b"one,", b"", b"two"):
                yield part

        return HttpResponse(200, None, chunks=chunks(), content_type="text/plain")
    body = {
        "method": req.method,
        "path": req.path,
        "query": req.query,
        "headers": req.headers,
        "body": req.body.decode(),
    }
    return HttpResponse(200, body)


@pytest.fixture
async def server() -> AsyncIterator[tuple[HttpServer, int]]:
    """An echoing server on a free loopback port."""
    count = iter(range(1, 1000))
    srv = HttpServer(_echo, lambda: f"rest-{next(count)}")
    srv.request_timeout_s = 0.5
    port = await srv.start("127.0.0.1", 0)
    try:
        yield srv, port
    finally:
        await srv.close()


async def _exchange(port: int, data: bytes, *, until_eof: bool = True) -> bytes:
    """Send ``data``, read until the server closes (bounded)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(5):
            return await reader.read(-1) if until_eof else await reader.read(65536)
    finally:
        writer.close()


def _responses(raw: bytes) -> list[tuple[str, dict[str, str], bytes]]:
    """Split a stream of content-length framed responses."""
    out = []
    while raw:
        head, _, raw = raw.partition(b"\r\n\r\n")
        status, *lines = head.decode().split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        n = int(headers.get("content-length", "0"))
        out.append((status, headers, raw[:n]))
        raw = raw[n:]
    return out


async def test_request_parts_reach_the_handler(server: tuple[HttpServer, int]) -> None:
    """Method, path, decoded query, lower-case headers (last one wins) and a chunked body arrive."""
    _, port = server
    raw = await _exchange(
        port,
        b"POST /p/q?a=1&b=&a=2 HTTP/1.1\r\nHost: m\r\nX-Twice: 1\r\nx-twice: 2\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    )
    ((status, headers, body),) = _responses(raw)
    assert status == "HTTP/1.1 200 OK"
    assert headers["connection"] == "close"
    got = json.loads(body)
    assert got["path"] == "/p/q"
    assert got["query"] == {"a": "2", "b": ""}
    assert got["headers"]["x-twice"] == "2"
    assert got["body"] == "abcde"


async def test_pipelined_requests_are_answered_in_order_then_garbage_gets_400(
    server: tuple[HttpServer, int],
) -> None:
    """Two requests and then bytes that are not HTTP, in one write: two answers, then a 400."""
    _, port = server
    raw = await _exchange(
        port,
        b"GET /1 HTTP/1.1\r\nHost: m\r\n\r\nGET /2 HTTP/1.1\r\nHost: m\r\n\r\nNOT HTTP\r\n\r\n",
    )
    answers = _responses(raw)
    assert [a[0].split()[1] for a in answers] == ["200", "200", "400"]
    assert [json.loads(a[2])["path"] for a in answers[:2]] == ["/1", "/2"]
    assert json.loads(answers[2][2])["msg_cd"] == "MOCK0400"
    assert answers[2][1]["connection"] == "close"


async def test_http10_and_connection_close_end_the_connection(
    server: tuple[HttpServer, int],
) -> None:
    """An HTTP/1.0 request (keep-alive or not) and one saying Connection: close get one answer
    and the close."""
    _, port = server
    for request in (
        b"GET /a HTTP/1.0\r\n\r\n",
        b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",  # one request, as h11 served
        b"GET /a HTTP/1.1\r\nConnection: close\r\n\r\n",
    ):
        answers = _responses(await _exchange(port, request + b"GET /b HTTP/1.1\r\n\r\n"))
        assert len(answers) == 1
        assert answers[0][1]["connection"] == "close"


async def test_head_gets_no_body(server: tuple[HttpServer, int]) -> None:
    """HEAD is answered with the headers of a GET and no body bytes."""
    _, port = server
    raw = await _exchange(port, b"HEAD /x HTTP/1.1\r\nConnection: close\r\n\r\n")
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"content-length: " in head
    assert rest == b""


async def test_an_upgrade_request_is_answered_then_closed(server: tuple[HttpServer, int]) -> None:
    """A WebSocket upgrade on the REST port gets an ordinary answer and the close: what follows
    it is not HTTP and is not parsed."""
    _, port = server
    raw = await _exchange(
        port,
        b"GET /ws HTTP/1.1\r\nHost: m\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x05hello",
    )
    ((status, headers, body),) = _responses(raw)
    assert status.startswith("HTTP/1.1 200") and headers["connection"] == "close"
    assert json.loads(body)["path"] == "/ws"


@pytest.mark.parametrize(
    ("request_bytes", "why"),
    [
        (b"GET / HTTP/1.1\r\nX-Big: " + b"a" * (MAX_BODY + 70_000), "request head too large"),
        (
            b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1)
            + b"b" * (MAX_BODY + 1),
            "request body too large",
        ),
        (b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n", "bad HTTP request"),
        # RFC 9110 §9.1: methods are case-sensitive (h11 took "get"; llhttp refuses it)
        (b"get / HTTP/1.1\r\n\r\n", "bad HTTP request"),
        # a bare LF after the version (llhttp requires CRLF there, even when lenient)
        (b"GET / HTTP/1.1\nHost: x\n\n", "bad HTTP request"),
        # a target the URL splitter refuses is named, not reported as a callback's failure
        (b"GET http://[::1/x HTTP/1.1\r\n\r\n", "bad HTTP request: Invalid IPv6 URL"),
    ],
)
async def test_oversized_or_malformed_requests_get_400(
    server: tuple[HttpServer, int], request_bytes: bytes, why: str
) -> None:
    """A head or body over the bound, a malformed header, a lower-case method or a bare LF
    gets 400 naming why, and a close."""
    _, port = server
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request_bytes)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        async with asyncio.timeout(5):
            raw = await reader.read(-1)
    finally:
        writer.close()
    ((status, _, body),) = _responses(raw)
    assert status.startswith("HTTP/1.1 400")
    assert json.loads(body)["msg1"].startswith(why)


async def test_a_head_without_its_body_in_time_gets_408(server: tuple[HttpServer, int]) -> None:
    """A complete head whose body never comes is answered 408 after the request timeout."""
    _, port = server
    raw = await _exchange(port, b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
    ((status, _, body),) = _responses(raw)
    assert status.startswith("HTTP/1.1 408")
    assert json.loads(body)["msg_cd"] == "MOCK0408"


async def test_a_streamed_body_is_chunked_for_11_and_close_delimited_for_10(
    server: tuple[HttpServer, int],
) -> None:
    """A streamed answer is chunked to an HTTP/1.1 client and raw bytes ended by the close to
    an HTTP/1.0 one (which cannot read chunks)."""
    _, port = server
    raw = await _exchange(port, b"GET /chunks HTTP/1.1\r\nConnection: close\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head
    assert body == b"4\r\none,\r\n3\r\ntwo\r\n0\r\n\r\n"
    raw = await _exchange(port, b"GET /chunks HTTP/1.0\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in head and b"connection: close" in head
    assert body == b"one,two"


async def test_a_header_value_that_would_split_the_response_is_never_sent(
    server: tuple[HttpServer, int],
) -> None:
    """An answer whose header holds CR/LF becomes a 500: no second response can be injected."""
    _, port = server
    raw = await _exchange(
        port, b"GET /header?v=a%0D%0Aset-cookie:%20x HTTP/1.1\r\nConnection: close\r\n\r\n"
    )
    ((status, headers, body),) = _responses(raw)
    assert status.startswith("HTTP/1.1 500")
    assert "set-cookie" not in headers
    assert json.loads(body)["msg_cd"] == "MOCK0500"
    with pytest.raises(ValueError, match="not sendable"):
        _head(200, [("bad name:", "v")], close=False)
