"""A small asyncio HTTP/1.1 server on h11: in-process, keep-alive, never crashes on bad input.

One connection task per TCP connection feeds bytes to h11, hands each complete request
(:class:`HttpRequest`) to an async handler and writes its :class:`HttpResponse`. Malformed HTTP
gets 400 and a close. The dialects' REST apps answer with these types.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import h11

log = logging.getLogger(__name__)

SECRET_KEYS = frozenset({"appsecret", "secretkey"})
MASK = "***"


@dataclass
class HttpRequest:
    """A parsed HTTP request (header names lower-case)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    conn: str = ""


@dataclass
class HttpResponse:
    """An answer of the app; ``delay_s`` (spec seconds) is applied by the shell."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    token: str | None = None
    raw: bytes | None = None  # pre-encoded body (JSONL trace export)
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


def parse_body(body: bytes) -> tuple[Any, bool]:
    """(parsed JSON, True) or (raw text, False)."""
    text = body.decode("utf-8", "replace")
    if not text:
        return None, False
    try:
        return json.loads(text), True
    except ValueError:
        return text, False


Handler = Callable[[HttpRequest], Awaitable[HttpResponse]]
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
        try:
            while True:
                req = await self._read_request(h, reader, writer, conn)
                if req is None:
                    break
                try:
                    resp = await self.handler(req)
                except Exception:
                    log.exception("REST handler failed on %s %s", req.method, req.path)
                    resp = HttpResponse(
                        500, {"rt_cd": "1", "msg_cd": "MOCK0500", "msg1": "mock internal error"}
                    )
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
                data = await reader.read(READ_CHUNK)
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

    async def _bad_request(self, h: h11.Connection, writer: asyncio.StreamWriter, msg: str) -> None:
        if h.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            resp = HttpResponse(400, {"rt_cd": "1", "msg_cd": "MOCK0400", "msg1": msg})
            with contextlib.suppress(h11.LocalProtocolError, ConnectionError):
                await self._write(h, writer, resp)

    async def _write(
        self, h: h11.Connection, writer: asyncio.StreamWriter, resp: HttpResponse
    ) -> None:
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
