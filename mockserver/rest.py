"""What both REST apps share, without I/O: routing, schema violations, injected delays, tracing.

A dialect's app (``kis.rest.RestApp``, ``kiwoom.rest.KiwoomRestApp``) registers its routes and
answers in its broker's envelope; :func:`traced_call` is the shell's side of one request.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, Protocol

from stockmon.mockserver.httpserver import MASK, SECRET_KEYS, HttpRequest, HttpResponse, mask
from stockmon.mockserver.httpserver import parse_body as parse_body
from stockmon.mockserver.world import Token, WorldBase

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
            known = any(path == req.path for _, path in self._routes)
            return self._no_route(req, 405 if known else 404)
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
                errors=errs,
                text=json.dumps(mask(parsed), ensure_ascii=False) if parsed is not None else None,
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
        body=mask(parsed) if is_json else parsed,
    )
    resp = handle(req, now)
    if resp.delay_s > 0:
        await asyncio.sleep(resp.delay_s / time_scale)
        now = clock()
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
