"""The REST side of every mock: a small asyncio HTTP/1.1 server on httptools, and the REST app
base.

One connection task per TCP connection feeds bytes to httptools (llhttp, in C), hands each
complete request (:class:`HttpRequest`) to an async handler and writes its :class:`HttpResponse`;
malformed HTTP gets 400 and a close, never a crash. A dialect's REST app (:class:`RestAppBase`)
registers its routes and answers in its broker's envelope; :func:`traced_call` is the shell's side
of a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import re
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

import httptools

from stockmon.boundedjson import loads as bounded_json
from stockmon.mockserver.world import Token, WorldBase
from stockmon.redaction import MASK, scrub

log = logging.getLogger(__name__)

# Body fields and headers holding a secret of CRED-ENV (KIS_APP_KEY, KIS_APP_SECRET, KIWOOM_APP_KEY,
# KIWOOM_APP_SECRET): the names of the spec's REST layouts (rest.headers, WS-APPROVAL-KEY secret_field,
# CRED-KIWOOM-SECRET request_field). Values registered as secrets are scrubbed from any text as well.
SECRET_KEYS = frozenset({"appkey", "appsecret", "secretkey"})
_SECRET_TEXT = re.compile(
    r"""(?P<k>(?:"|\b)(?:appkey|appsecret|secretkey)"?\s*[:=]\s*"?)(?P<v>[^"&,}\s]*)""",
    re.IGNORECASE,
)


@dataclass
class HttpRequest:
    """A parsed HTTP request (header names lower-case)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    conn: str = ""
    # Set by the server when the client closes its connection before the answer (REST-TIMEOUT:
    # a delayed answer the client gave up on is traced as ``abandoned``).
    gone: asyncio.Event = field(default_factory=asyncio.Event, compare=False, repr=False)


@dataclass
class HttpResponse:
    """An answer of the app; ``delay_s`` (spec seconds) is applied by the shell."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    token: str | None = None
    raw: bytes | None = None  # pre-encoded body
    chunks: AsyncIterator[bytes] | None = None  # streamed body (JSONL trace export), chunked
    content_type: str = "application/json; charset=utf-8"

    def encode(self) -> bytes:
        """The body as bytes."""
        if self.raw is not None:
            return self.raw
        return json.dumps(self.body, ensure_ascii=False).encode()


def mask(value: Any) -> Any:
    """A copy of a parsed body with appsecret/secretkey values masked (for the trace)."""
    if isinstance(value, dict):
        return {k: (MASK if k.lower() in SECRET_KEYS and v else mask(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v) for v in value]
    return value


def mask_text(text: str) -> str:
    """A body that is not JSON (form-encoded, broken JSON) with every secret field and every
    registered secret value masked."""
    return scrub(_SECRET_TEXT.sub(lambda m: m["k"] + (MASK if m["v"] else ""), text))


def traced_body(parsed: Any, is_json: bool) -> Any:
    """What the trace keeps of a request body: JSON masked by field, anything else as masked text."""
    if is_json:
        return mask(parsed)
    return mask_text(parsed) if isinstance(parsed, str) else parsed


def parse_body(body: bytes) -> tuple[Any, bool]:
    """(parsed JSON, True) or (raw text, False); bounded in depth, non-UTF-8 bytes escaped."""
    text = body.decode("utf-8", "backslashreplace")
    if not text:
        return None, False
    try:
        return bounded_json(text, what="request body"), True
    except ValueError:
        return text, False


Handler = Callable[[HttpRequest], Awaitable[HttpResponse]]


def _gone_if_eof(watch: asyncio.Future[bytes], *, req: HttpRequest) -> None:
    """The client closed its side while its request was being answered."""
    if not watch.cancelled() and (watch.exception() is not None or not watch.result()):
        req.gone.set()


# Non-normative limits: KIS requests are tiny. A request head (line and headers) and a body are
# each bounded by MAX_BODY; the head is checked after every read, so at most one READ_CHUNK more
# is ever held.
MAX_BODY = 1024 * 1024
READ_CHUNK = 65536
_BAD_VALUE = re.compile(r"[\r\n\0]")


class _BadRequest(Exception):
    """Bytes that are not an acceptable request: answered with ``status`` and a close."""

    def __init__(self, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.status = status


@dataclass(slots=True)
class _Incoming:
    request: HttpRequest
    keep_alive: bool
    http10: bool


class _Requests:
    """One connection's parser: the callbacks of httptools (llhttp, in C) collecting each
    complete request in order, so pipelined requests are answered one after the other."""

    def __init__(self, conn: str) -> None:
        self.conn = conn
        self.parser = httptools.HttpRequestParser(self)
        self.ready: deque[_Incoming] = deque()
        self.begun = False  # a request's first byte is in
        self.head_done = False  # ... and its request line and headers
        self.head_bytes = 0
        self.closed = False  # nothing after this point is HTTP (an upgrade) or acceptable
        self.error: _BadRequest | None = None  # answered once the requests before it are
        self.reading: asyncio.Future[bytes] | None = None  # the read in flight, if any
        self._url = bytearray()
        self._headers: dict[str, str] = {}
        self._body = bytearray()

    def feed(self, data: bytes) -> None:
        """Parse ``data``: complete requests go to ``ready``, bad bytes to ``error``."""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.closed = True  # the upgrade request is answered as any other, then the close
        except httptools.HttpParserCallbackError as exc:
            # a bound of ours, or a target urlsplit refuses (``http://[::1/``): say which
            cause = exc.__context__
            if not isinstance(cause, _BadRequest):
                cause = _BadRequest(f"bad HTTP request: {cause or exc}")
            self._fail(cause)
        except httptools.HttpParserError as exc:
            self._fail(_BadRequest(f"bad HTTP request: {exc}"))
        if self.begun and not self.head_done:
            self.head_bytes += len(data)
            if self.head_bytes > MAX_BODY:
                self._fail(_BadRequest("request head too large"))

    def _fail(self, error: _BadRequest) -> None:
        self.closed = True
        if self.error is None:
            self.error = error

    # httptools callbacks
    def on_message_begin(self) -> None:
        """A request starts."""
        self.begun, self.head_done, self.head_bytes = True, False, 0
        self._url = bytearray()
        self._headers = {}
        self._body = bytearray()

    def on_url(self, url: bytes) -> None:
        """A piece of the request target."""
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        """One header (names lower-case; a repeated name keeps its last value)."""
        self._headers[name.decode("latin-1").lower()] = value.decode("utf-8", "replace")

    def on_headers_complete(self) -> None:
        """The head is in: from here a request is late, not idle."""
        self.head_done = True

    def on_body(self, body: bytes) -> None:
        """A piece of the body, bounded."""
        self._body += body
        if len(self._body) > MAX_BODY:
            raise _BadRequest("request body too large")

    def on_message_complete(self) -> None:
        """A whole request: queued for the handler."""
        parts = urlsplit(self._url.decode("latin-1"))
        parser = self.parser
        req = HttpRequest(
            method=parser.get_method().decode("latin-1").upper(),
            path=parts.path,
            query=dict(parse_qsl(parts.query, keep_blank_values=True)),
            headers=self._headers,
            body=bytes(self._body),
            conn=self.conn,
        )
        # an HTTP/1.0 connection serves one request, as with h11 (and a streamed answer to it
        # is ended by the close)
        http10 = parser.get_http_version() == "1.0"
        self.ready.append(_Incoming(req, parser.should_keep_alive() and not http10, http10))
        self.begun = self.head_done = False


def _head(status: int, headers: list[tuple[str, str]], close: bool) -> bytes:
    """A response's status line and headers; a header that could split the response is refused."""
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = ""
    lines = [f"HTTP/1.1 {status} {reason}"]
    for name, value in headers:
        if _BAD_VALUE.search(name) or _BAD_VALUE.search(value) or ":" in name or not name:
            raise ValueError(f"response header {name!r} is not sendable")
        lines.append(f"{name}: {value}")
    if close:
        lines.append("connection: close")
    lines.append("\r\n")
    return "\r\n".join(lines).encode()


class HttpServer:
    """Listens on host:port and serves every connection with ``handler``."""

    def __init__(self, handler: Handler, conn_id: Callable[[], str]) -> None:
        self.handler = handler
        self.conn_id = conn_id
        self.server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # real seconds: to send a whole request (half-open connections end), and idle between requests
        self.request_timeout_s = 10.0
        self.idle_timeout_s = 120.0

    async def start(self, host: str, port: int) -> int:
        """Bind and return the port."""
        self.server = await asyncio.start_server(self._serve, host, port)
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening and end open connections."""
        if self.server is not None:
            self.server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.server is not None:
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        incoming = _Requests(self.conn_id())
        served = False
        try:
            while True:
                item = await self._next_request(incoming, reader, writer, served)
                if item is None:
                    break
                served = True
                req = item.request
                # The read that watches the connection while a request is answered. It is never
                # cancelled: what it reads (the next request, or b"" when the client has gone) is
                # the next request's first read, so no byte is lost and no two reads overlap.
                if incoming.reading is None:
                    incoming.reading = asyncio.ensure_future(reader.read(READ_CHUNK))
                watch = incoming.reading
                watch.add_done_callback(functools.partial(_gone_if_eof, req=req))
                try:
                    resp = await self.handler(req)
                except Exception:
                    log.exception("REST handler failed on %s %s", req.method, req.path)
                    resp = _mock_error(500, "mock internal error")
                if watch.done() and not watch.result():
                    break  # the client has gone: nobody to answer
                # the last request before an upgrade ends the connection; the requests before
                # bytes that are not HTTP are answered on it, then the 400 ends it
                close = not item.keep_alive or (
                    incoming.closed and not incoming.ready and incoming.error is None
                )
                await self._write(writer, resp, close, item)
                if close:
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            if incoming.reading is not None and not incoming.reading.done():
                incoming.reading.cancel()  # the connection is done with: nothing more is read
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _next_request(
        self,
        incoming: _Requests,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        served: bool,
    ) -> _Incoming | None:
        """The next complete request, or None when the connection is to end (after saying why)."""
        while not incoming.ready:
            if incoming.error is not None:
                await self._bad_request(writer, str(incoming.error), incoming.error.status)
                return None
            if incoming.closed:
                return None
            # idle keep-alive between requests may last; a request once begun must be quick
            idle = served and not incoming.begun
            try:
                async with asyncio.timeout(self.idle_timeout_s if idle else self.request_timeout_s):
                    data = await (
                        reader.read(READ_CHUNK) if incoming.reading is None else incoming.reading
                    )
                incoming.reading = None
            except TimeoutError:
                if incoming.head_done:  # a head without its body: say why before closing
                    await self._bad_request(writer, "request not complete in time", 408)
                return None
            if not data:
                return None
            incoming.feed(data)
        return incoming.ready.popleft()

    async def _bad_request(self, writer: asyncio.StreamWriter, msg: str, status: int = 400) -> None:
        with contextlib.suppress(ConnectionError):
            await self._write(writer, _mock_error(status, msg), True, None)

    async def _write(
        self,
        writer: asyncio.StreamWriter,
        resp: HttpResponse,
        close: bool,
        item: _Incoming | None,
    ) -> None:
        """Send ``resp`` (to the request ``item``; None for an answer to bytes that were not
        one); a HEAD gets the head only. A streamed body goes chunk by chunk, draining between
        chunks (bounded memory); to an HTTP/1.0 client, which cannot read chunks, as bytes that
        the close ends."""
        head_only = item is not None and item.request.method == "HEAD"
        chunked = resp.chunks is not None and not (item is not None and item.http10)
        payload = b"" if resp.chunks is not None else resp.encode()
        fields = [("content-type", resp.content_type)]
        if resp.chunks is None:
            fields.append(("content-length", str(len(payload))))
        elif chunked:
            fields.append(("transfer-encoding", "chunked"))
        try:
            head = _head(resp.status, [*fields, *resp.headers.items()], close)
        except ValueError:
            log.exception("REST answer not sendable")
            await self._write(writer, _mock_error(500, "mock internal error"), close, item)
            return
        writer.write(head if head_only else head + payload)
        await writer.drain()
        if resp.chunks is None or head_only:
            return
        async for chunk in resp.chunks:
            if chunk:
                writer.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
                await writer.drain()
        if chunked:
            writer.write(b"0\r\n\r\n")
            await writer.drain()


def _mock_error(status: int, msg: str) -> HttpResponse:
    """The mock's own answer to what no route handles: the KIS envelope, ``MOCK0<status>``."""
    return HttpResponse(status, {"rt_cd": "1", "msg_cd": f"MOCK0{status}", "msg1": msg})


Route = Callable[[HttpRequest, Any, float], HttpResponse]


class RestAppBase:
    """Routes ``(method, path)`` to handlers; never raises for bad input."""

    def __init__(self, world: WorldBase) -> None:
        self._base_world = world
        self._routes: dict[tuple[str, str], Route] = {}
        self._now = 0.0

    def handle(self, req: HttpRequest, now: float) -> HttpResponse:
        """Answer one request at spec time ``now``."""
        self._now = now
        route = self._routes.get((req.method, req.path))
        if route is None:
            allowed = sorted(method for method, path in self._routes if path == req.path)
            if not allowed:
                return self._no_route(req, 404)
            resp = self._no_route(req, 405)
            resp.headers["allow"] = ", ".join(allowed)  # RFC 9110 §15.5.6: a 405 lists them
            return resp
        parsed, _ = parse_body(req.body)
        resp = route(req, parsed, now)
        resp.delay_s = self._base_world.faults.take_rest_delay()
        return resp

    def _no_route(self, req: HttpRequest, status: int) -> HttpResponse:
        return HttpResponse(status, {"error": f"no {req.method} {req.path} here"})

    def _violations(self, schema: str, parsed: Any, conn: str) -> None:
        errs = self._base_world.validate(schema, parsed)
        if errs:
            self._base_world.record(
                self._now,
                "rest",
                conn,
                "in",
                "violation",
                schema=schema,
                errors=[mask_text(e) for e in errs],
                text=(
                    json.dumps(traced_body(parsed, not isinstance(parsed, str)), ensure_ascii=False)
                    if parsed is not None
                    else None
                ),
            )

    def _issued(self, token: Token, now: float, reused: bool) -> float:
        """Record and announce an issued token; returns its expiry in spec wall time."""
        world = self._base_world
        expires_wall = world.wall(token.expires_at)
        world.record(
            now,
            "rest",
            "mock",
            "event",
            "token_issued",
            token_id=token.token_id,
            expires_at_wall=expires_wall,
            reused=reused,
        )
        world.emit("token_issued", token_id=token.token_id, reused=reused)
        return expires_wall


class RecordFn(Protocol):
    """A world's ``record(now, channel, conn, dir, kind, **fields)``."""

    def __call__(
        self, now: float, channel: str, conn: str, dir_: str, kind: str, **extra: Any
    ) -> dict[str, Any]:
        """Append one record and return it."""
        ...


async def traced_call(
    record: RecordFn,
    handle: Callable[[HttpRequest, float], HttpResponse],
    req: HttpRequest,
    clock: Callable[[], float],
    time_scale: float,
) -> HttpResponse:
    """Answer one REST request with ``handle``, recording request and response in the trace.

    Secrets in headers and JSON bodies are masked in the trace, an injected delay (spec seconds)
    is slept in real time, an issued token is recorded. The request and its handling share one
    ``now``; the response is stamped when it leaves, after the delay.
    """
    now = clock()
    parsed, is_json = parse_body(req.body)
    headers = {k: (MASK if k in SECRET_KEYS and v else v) for k, v in req.headers.items()}
    rec = record(
        now,
        "rest",
        req.conn,
        "in",
        "request",
        method=req.method,
        path=req.path,
        query=req.query,
        headers=headers,
        body=traced_body(parsed, is_json),
    )
    resp = handle(req, now)
    if resp.delay_s > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(req.gone.wait(), resp.delay_s / time_scale)
        now = clock()
        if req.gone.is_set():
            record(now, "rest", req.conn, "in", "abandoned", request_seq=rec["seq"])
            return resp
    extra: dict[str, Any] = {}
    if resp.token is not None:
        extra["token"] = resp.token
    record(
        now,
        "rest",
        req.conn,
        "out",
        "response",
        status=resp.status,
        body=resp.body,
        request_seq=rec["seq"],
        **extra,
    )
    return resp
