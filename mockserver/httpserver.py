"""The REST side of every mock: a small asyncio HTTP/1.1 server on h11, and the REST app base.

One connection task per TCP connection feeds bytes to h11, hands each complete request
(:class:`HttpRequest`) to an async handler and writes its :class:`HttpResponse`; malformed HTTP
gets 400 and a close, never a crash. A dialect's REST app (:class:`RestAppBase`) registers its
routes and answers in its broker's envelope; :func:`traced_call` is the shell's side of a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

import h11

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


# Non-normative limits: KIS requests are tiny.
MAX_BODY = 1024 * 1024
READ_CHUNK = 65536


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
        conn = self.conn_id()
        h = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_BODY)
        served = False
        # The read that watches the connection while a request is answered. It is never
        # cancelled: what it reads (the next request, or b"" when the client has gone) is the
        # next request's first read, so no byte is lost and no two reads ever overlap.
        watch: asyncio.Future[bytes] | None = None
        try:
            while True:
                req = await self._read_request(h, reader, writer, conn, served, watch)
                if req is None:
                    break
                served = True
                watch = asyncio.ensure_future(reader.read(READ_CHUNK))
                watch.add_done_callback(functools.partial(_gone_if_eof, req=req))
                try:
                    resp = await self.handler(req)
                except Exception:
                    log.exception("REST handler failed on %s %s", req.method, req.path)
                    resp = HttpResponse(
                        500, {"rt_cd": "1", "msg_cd": "MOCK0500", "msg1": "mock internal error"}
                    )
                if watch.done():
                    early = watch.result()  # the next request, pipelined, or b"" (gone)
                    watch = None
                    if not early:
                        break
                    h.receive_data(early)
                await self._write(h, writer, resp)
                if h.our_state is h11.MUST_CLOSE or h.their_state is h11.MUST_CLOSE:
                    break
                try:
                    h.start_next_cycle()
                except h11.LocalProtocolError:
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            if watch is not None and not watch.done():
                watch.cancel()  # the connection is done with: nothing more is read from it
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _read_request(
        self,
        h: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        conn: str,
        served: bool = False,
        pending: asyncio.Future[bytes] | None = None,
    ) -> HttpRequest | None:
        head: h11.Request | None = None
        body = bytearray()
        while True:
            try:
                event = h.next_event()
            except h11.RemoteProtocolError as exc:
                await self._bad_request(h, writer, f"bad HTTP request: {exc}")
                return None
            if event is h11.NEED_DATA:
                # idle keep-alive between requests may last; a request once begun must be quick
                idle = head is None and not body and h.their_state is h11.IDLE and served
                try:
                    async with asyncio.timeout(
                        self.idle_timeout_s if idle else self.request_timeout_s
                    ):
                        data = await (reader.read(READ_CHUNK) if pending is None else pending)
                    pending = None
                except TimeoutError:
                    if head is not None:  # a head without its body: say why before closing
                        await self._bad_request(h, writer, "request not complete in time", 408)
                    return None
                try:
                    h.receive_data(data)
                except h11.RemoteProtocolError as exc:
                    await self._bad_request(h, writer, f"bad HTTP request: {exc}")
                    return None
                if not data and h.their_state is h11.IDLE:
                    return None
                continue
            if isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_BODY:
                    await self._bad_request(h, writer, "request body too large")
                    return None
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                target = head.target.decode("latin-1")
                parts = urlsplit(target)
                headers: dict[str, str] = {}
                for name, value in head.headers:
                    headers[name.decode("latin-1").lower()] = value.decode("utf-8", "replace")
                return HttpRequest(
                    method=head.method.decode("latin-1").upper(),
                    path=parts.path,
                    query=dict(parse_qsl(parts.query, keep_blank_values=True)),
                    headers=headers,
                    body=bytes(body),
                    conn=conn,
                )
            elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None

    async def _bad_request(
        self, h: h11.Connection, writer: asyncio.StreamWriter, msg: str, status: int = 400
    ) -> None:
        if h.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            resp = HttpResponse(status, {"rt_cd": "1", "msg_cd": f"MOCK0{status}", "msg1": msg})
            with contextlib.suppress(h11.LocalProtocolError, ConnectionError):
                await self._write(h, writer, resp)

    async def _write(
        self, h: h11.Connection, writer: asyncio.StreamWriter, resp: HttpResponse
    ) -> None:
        if resp.chunks is not None:
            await self._write_chunked(h, writer, resp, resp.chunks)
            return
        payload = resp.encode()
        headers = [
            ("content-type", resp.content_type),
            ("content-length", str(len(payload))),
            *resp.headers.items(),
        ]
        data = h.send(h11.Response(status_code=resp.status, headers=headers))
        data = (
            (data or b"")
            + (h.send(h11.Data(data=payload)) or b"")
            + (h.send(h11.EndOfMessage()) or b"")
        )
        writer.write(data)
        await writer.drain()

    async def _write_chunked(
        self,
        h: h11.Connection,
        writer: asyncio.StreamWriter,
        resp: HttpResponse,
        chunks: AsyncIterator[bytes],
    ) -> None:
        """Send a streamed body chunk by chunk, draining between chunks (bounded memory)."""
        headers = [
            ("content-type", resp.content_type),
            ("transfer-encoding", "chunked"),
            *resp.headers.items(),
        ]
        writer.write(h.send(h11.Response(status_code=resp.status, headers=headers)) or b"")
        async for chunk in chunks:
            if chunk:
                writer.write(h.send(h11.Data(data=chunk)) or b"")
                await writer.drain()
        writer.write(h.send(h11.EndOfMessage()) or b"")
        await writer.drain()


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
