"""The pooled HTTP/1.1 client of the reference client's REST calls: llhttp (httptools) on asyncio.

Why not aiohttp, which it replaces: a warm quote against the mock took 225-254 us of client CPU
with aiohttp 3.14 and 133-153 us with this client (the same calls, one machine, 2026-12-04); what
is left is mostly the kernel's and the event loop's. That CPU is what a fleet's callers queue
behind when they all resume at once after a token refresh (benchmarks/token_storm.py).

What a broker's REST side needs is small and fixed: JSON requests to one base URL, kept alive,
over TLS, maybe through the environment's proxy (a CONNECT tunnel for https), each bounded in time
and in bytes; that is all this does. The HTTP parsing is llhttp (C, Node's parser), as in the
mocks' server (mockserver/httpserver.py); a response is never trusted: its head and body are
bounded, and anything llhttp rejects ends the connection with a :class:`HttpError`.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import re
import ssl
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from urllib.parse import unquote, urlencode, urlsplit
from urllib.request import getproxies, proxy_bypass

import httptools

# A response head larger than this is refused (a hostile or broken server; KIS answers use < 2 KiB).
MAX_HEAD_BYTES = 64 * 1024
# Idle connections kept per origin (a fleet process makes a few calls at once at most).
_MAX_IDLE = 32
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Methods sent once more when a kept-alive connection turns out closed (RFC 9110 §9.2.1 safe).
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


class InvalidUrl(ValueError):
    """A URL the client cannot use: malformed, without a host, or not http/https."""


class InvalidHeader(ValueError):
    """A request header that would break the request (a line break, a non-Latin-1 character);
    the message names the header, never its value (which may be a secret)."""


class HttpError(OSError):
    """The server's answer broke HTTP (bad syntax, a head over the bound, a refused tunnel)."""


class ClosedBeforeAnswer(HttpError):
    """The server closed the connection before one byte of the answer (on a kept-alive
    connection: most likely it closed it as idle while the request was on its way)."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where one request goes: scheme, host, port, and the request target (path and query)."""

    scheme: str
    host: str
    port: int
    path: str

    @property
    def authority(self) -> str:
        """``host:port`` as the Host header and a CONNECT request name it (IPv6 bracketed)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """The absolute URL (the request target sent to a plain-HTTP proxy)."""
        return f"{self.scheme}://{self.authority}{self.path}"


def parse_url(url: str, params: Mapping[str, str] | None = None) -> Target:
    """``url`` (plus query ``params``) as a :class:`Target`; InvalidUrl if it cannot be used."""
    scheme, host, port, path, query = _split(url)
    if params:
        extra = urlencode(params)
        query = f"{query}&{extra}" if query else extra
    return Target(scheme, host, port, f"{path}?{query}" if query else path)


@functools.lru_cache(maxsize=256)
def _split(url: str) -> tuple[str, str, int, str, str]:
    """The checked parts of one URL (a broker's few URLs are split once each, not per call)."""
    if not url.isascii():
        raise InvalidUrl("it holds a non-ASCII character (percent-encode it)")
    # urlsplit drops tabs and line breaks without a word (bpo-43882): refuse them before it does
    if " " in url or not url.isprintable():
        raise InvalidUrl("it holds a space or a control character")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # a bad port, an unbalanced IPv6 bracket
        raise InvalidUrl(f"{exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise InvalidUrl(f"the scheme is {scheme or 'missing'}, not http or https")
    if not parts.hostname:
        raise InvalidUrl("it has no host")
    return scheme, parts.hostname, port or _DEFAULT_PORTS[scheme], parts.path or "/", parts.query


@dataclass(frozen=True, slots=True)
class EnvProxy:
    """The environment's proxy for one base URL, and where its credentials go: on the request
    itself for an ``http`` target (the proxy reads it), on the CONNECT request for ``https`` (so
    they never travel inside the tunnel to the broker)."""

    url: Target
    request_headers: Mapping[str, str] | None = None
    tunnel_headers: Mapping[str, str] | None = None

    def __repr__(self) -> str:  # the credentials are a secret
        return f"EnvProxy('http://{self.url.authority}')"


def env_proxy(url: str) -> EnvProxy | None:
    """The proxy the environment names for ``url`` (``HTTP_PROXY``/``HTTPS_PROXY`` and their lower
    case, ``NO_PROXY``), as curl and Python's urllib read them; None for none, or for a URL or a
    proxy that does not parse (the request itself then reports the URL)."""
    try:
        target = parse_url(url)
    except InvalidUrl:
        return None
    proxy = getproxies().get(target.scheme)
    if not proxy or proxy_bypass(target.host):
        return None
    if "://" not in proxy:
        proxy = f"http://{proxy}"
    try:
        parts = urlsplit(proxy)
        where = parse_url(proxy)
    except (InvalidUrl, ValueError):
        return None
    if where.scheme != "http":  # a TLS proxy is not supported: go direct rather than fail
        return None
    if parts.username is None:
        return EnvProxy(where)
    pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    headers = {"Proxy-Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}
    if target.scheme == "https":
        return EnvProxy(where, tunnel_headers=headers)
    return EnvProxy(where, request_headers=headers)


# RFC 9110's token: what a header name may be made of.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _header_lines(headers: Mapping[str, str]) -> str:
    """``Name: value`` lines; InvalidHeader naming the header (never its value, which may be a
    secret) when a name or value would break the request."""
    lines = []
    for name, value in headers.items():
        if _TOKEN.fullmatch(name) is None or "\r" in value or "\n" in value:
            raise InvalidHeader(f"header {name[:40]!r} holds a line break or is not a header name")
        lines.append(f"{name}: {value}\r\n")
    return "".join(lines)


def _encode_head(head: str, headers: Mapping[str, str]) -> bytes:
    """The request head as bytes; InvalidHeader naming the header that is not Latin-1."""
    try:
        return head.encode("latin-1")
    except UnicodeEncodeError:
        bad = next((k for k, v in headers.items() if not all(ord(c) < 256 for c in v)), "?")
        raise InvalidHeader(f"header {bad[:40]!r} holds a character outside Latin-1") from None


@dataclass(slots=True)
class Response:
    """What one response left: status, body (at most the caller's bound + 1 bytes)."""

    status: int = 0
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0

    @property
    def body(self) -> bytes:
        """The body read (up to the bound + 1 bytes: enough to know it was too long)."""
        return b"".join(self.chunks)


class _Connection(asyncio.Protocol):
    """One kept-alive connection: feeds llhttp, resolves the waiting request's future."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[Response] | None = None
        self.response = Response()
        self.limit = 0
        self.head_size = 0
        self.closed = False
        self.reusable = False
        self.received = 0  # bytes of the current answer so far
        self.framed = False  # the answer says where its body ends (length or chunked)
        self.headed = False  # the answer's head is complete

    # asyncio's side
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.headed and not self.framed:  # a body that ends with the connection: it has
            self._finish()
        elif self.received:
            self._fail(HttpError("the server closed the connection in the middle of its answer"))
        else:
            self._fail(ClosedBeforeAnswer("the server closed the connection before answering"))

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:  # bytes nobody asked for: the connection cannot be trusted
            self.close()
            return
        self.received += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            # a callback's own refusal (the head bound) comes back as the exception's context
            own = exc.__context__
            self._fail(own if isinstance(own, HttpError) else HttpError(_invalid(exc)))
            self.close()

    # llhttp's callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_size += len(name) + len(value) + 4
        if self.head_size > MAX_HEAD_BYTES:
            raise HttpError(f"the answer's head is over {MAX_HEAD_BYTES} bytes")
        if name.lower() in (b"content-length", b"transfer-encoding"):
            self.framed = True

    def on_headers_complete(self) -> None:
        self.response.status = self.parser.get_status_code()
        self.headed = True

    def on_body(self, body: bytes) -> None:
        r = self.response
        room = self.limit + 1 - r.size
        if room > 0:
            r.chunks.append(body[:room])
        r.size += len(body)
        if r.size > self.limit:  # enough to know it is too long: stop reading a flood
            self.reusable = False
            self._finish()
            self.close()

    def on_message_complete(self) -> None:
        if self.response.status < 200:  # an interim answer (100 Continue): the real one follows
            self.response, self.head_size, self.headed, self.framed = Response(), 0, False, False
            return
        self.reusable = self.parser.should_keep_alive() and not self.closed
        self._finish()

    # the client's side
    async def exchange(self, head: bytes, body: bytes, limit: int) -> Response:
        """Send one request and wait for its answer."""
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self.waiter, self.response, self.limit = loop.create_future(), Response(), limit
        self.head_size, self.received, self.headed, self.framed = 0, 0, False, False
        self.reusable = False
        self.transport.write(head + body if body else head)
        return await self.waiter

    def _finish(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(self.response)

    def _fail(self, exc: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def close(self) -> None:
        """Close the transport (once); a waiting request fails."""
        self.reusable = False
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()


def _invalid(exc: Exception) -> str:
    """llhttp's reason in a few words (its message names the offending byte, never a secret)."""
    reason = str(exc).split(":", 1)[-1].strip()[:80] or type(exc).__name__
    return f"the answer is not valid HTTP ({reason})"


class _TunnelReply(asyncio.Protocol):
    """The proxy's answer to CONNECT: its head only (a tunnel's 2xx carries no body)."""

    def __init__(self) -> None:
        self.done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEAD_BYTES and not self.done.done():
                self.done.set_exception(HttpError("the proxy's answer to CONNECT is too long"))
            return
        if self.done.done():
            return
        line = self.buffer.split(b"\r\n", 1)[0].split()
        status = int(line[1]) if len(line) > 1 and line[1].isdigit() else 0
        if 200 <= status < 300 and end + 4 != len(self.buffer):
            self.done.set_exception(HttpError("the proxy sent bytes after its CONNECT answer"))
            return
        self.done.set_result(status)  # a refusal's body, if any, is not read

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionResetError("the proxy closed the connection"))


class HttpClient:
    """Connections kept alive per origin (and proxy); one request at a time on each.

    Use as ``async with HttpClient() as http`` or call :meth:`close`. No cookies, no redirects, no
    compression, no ``~/.netrc``: a broker's REST API needs none, and each is a way for something
    other than the caller to decide what is sent.
    """

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._ssl = ssl_context
        self._idle: dict[tuple[str, str, int, str], deque[_Connection]] = {}
        self._busy: set[_Connection] = set()
        self.closed = False

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _tls(self) -> ssl.SSLContext:
        if self._ssl is None:  # made on first https use: the system's CAs (SSL_CERT_FILE honoured)
            self._ssl = ssl.create_default_context()
        return self._ssl

    async def request(
        self,
        method: str,
        target: Target,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        limit: int,
        proxy: EnvProxy | None = None,
    ) -> Response:
        """One request, its response read up to ``limit`` + 1 body bytes.

        The caller bounds the time (a cancel closes the connection: the server sees the client
        give up). OSError (HttpError included) for a connection or protocol failure.
        """
        if self.closed:
            raise RuntimeError("the HTTP client is closed")
        if proxy is not None and target.scheme == "http":
            line = f"{method} {target.url} HTTP/1.1\r\n"
            fixed = {"Host": target.authority, **(proxy.request_headers or {})}
        else:
            line = f"{method} {target.path} HTTP/1.1\r\n"
            fixed = {"Host": target.authority}
        if body:
            fixed["Content-Length"] = str(len(body))
        sent = {**(headers or {}), **fixed}
        head = _encode_head(line + _header_lines(sent) + "\r\n", sent)
        key = (target.scheme, target.host, target.port, proxy.url.authority if proxy else "")
        conn = self._take(key)
        if conn is not None and method in _SAFE:
            # A kept-alive connection the server closed as idle while this request was on its
            # way: a safe request is sent once more on a new connection (a POST never is).
            try:
                return await self._exchange(key, conn, head, body, limit)
            except ClosedBeforeAnswer:
                conn = None
        if conn is None:
            conn = await self._connect(target, proxy)
        return await self._exchange(key, conn, head, body, limit)

    async def _exchange(
        self,
        key: tuple[str, str, int, str],
        conn: _Connection,
        head: bytes,
        body: bytes,
        limit: int,
    ) -> Response:
        self._busy.add(conn)
        try:
            response = await conn.exchange(head, body, limit)
        except BaseException:
            conn.close()
            raise
        finally:
            self._busy.discard(conn)
        if conn.reusable and not self.closed:
            idle = self._idle.setdefault(key, deque())
            if len(idle) < _MAX_IDLE:
                idle.append(conn)
                return response
        conn.close()
        return response

    def _take(self, key: tuple[str, str, int, str]) -> _Connection | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        return None

    async def _connect(self, target: Target, proxy: EnvProxy | None) -> _Connection:
        loop = asyncio.get_running_loop()
        tls = self._tls() if target.scheme == "https" else None
        if proxy is None:
            _, conn = await loop.create_connection(
                _Connection,
                target.host,
                target.port,
                ssl=tls,
                server_hostname=target.host if tls else None,
            )
            return conn
        if tls is None:
            _, conn = await loop.create_connection(_Connection, proxy.url.host, proxy.url.port)
            return conn
        transport, reply = await loop.create_connection(
            _TunnelReply, proxy.url.host, proxy.url.port
        )
        try:
            head = f"CONNECT {target.authority} HTTP/1.1\r\n" + _header_lines(
                {"Host": target.authority, **(proxy.tunnel_headers or {})}
            )
            transport.write(_encode_head(head + "\r\n", proxy.tunnel_headers or {}))
            status = await reply.done
            if not 200 <= status < 300:
                raise HttpError(f"the proxy refused the tunnel to {target.authority} ({status})")
            conn = _Connection()
            tunnelled = await loop.start_tls(transport, conn, tls, server_hostname=target.host)
            if tunnelled is None:
                raise HttpError("TLS over the proxy's tunnel did not start")
            conn.connection_made(tunnelled)
            return conn
        except BaseException:
            transport.close()
            raise

    async def close(self) -> None:
        """Close every connection (idle and in use); later requests raise RuntimeError."""
        self.closed = True
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
        for conn in list(self._busy):
            conn.close()
        await asyncio.sleep(0)  # let the transports' close callbacks run


__all__ = [
    "ClosedBeforeAnswer",
    "EnvProxy",
    "HttpClient",
    "HttpError",
    "InvalidHeader",
    "InvalidUrl",
    "Response",
    "Target",
    "env_proxy",
    "parse_url",
]
