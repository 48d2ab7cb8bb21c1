"""Helpers of the gateway fleet tests and benchmark: ``stockmon serve`` replicas sharing one
redis-server and one KIS mock, and stream clients (browsers) on each of them.

Everything is real: subprocesses of the CLI, loopback sockets, the mock in the test's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import websockets
from fleet_support import client_env, stop_processes, subprocess_env
from serve_support import CANARY_KEY

from stockmon.conformance.redis_server import free_port
from stockmon.mockserver import KisMock
from stockmon.spec import Spec, load_spec

HERE = Path(__file__).resolve().parent
SPEC = load_spec("1.2")


@dataclass
class Replica:
    """One ``stockmon serve`` process: its URL and log."""

    proc: asyncio.subprocess.Process
    url: str
    log: Path
    spec: Spec = SPEC

    def auth(self) -> dict[str, str]:
        """The authorization header with the right key."""
        c = self.spec.clause("API-AUTH")
        return {c.string("rest_header"): f"{c.string('rest_scheme')} {CANARY_KEY}"}

    async def get(self, path: str) -> httpx.Response:
        """GET with the key (a short timeout: a replica may be dead)."""
        async with httpx.AsyncClient(timeout=2.0) as http:
            return await http.get(self.url + path, headers=self.auth())

    async def post(self, path: str, body: Any) -> httpx.Response:
        """POST JSON with the key."""
        async with httpx.AsyncClient(timeout=3.0) as http:
            return await http.post(self.url + path, headers=self.auth(), json=body)

    async def status(self) -> dict[str, Any]:
        """GET /v1/status."""
        r = await self.get(self.spec.clause("API-STATUS").string("path"))
        r.raise_for_status()
        return dict(r.json())

    async def ready(self) -> tuple[int, dict[str, Any]]:
        """GET /readyz: status code and body."""
        r = await self.get(self.spec.clause("API-HEALTH").string("readiness_path"))
        return r.status_code, dict(r.json())

    @property
    def alive(self) -> bool:
        """The process has not exited."""
        return self.proc.returncode is None


async def start_replica(env: dict[str, str], log: Path) -> Replica:
    """One ``stockmon serve`` on a free port with ``env`` (stdout+stderr to ``log``)."""
    port = free_port()
    out = log.open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "stockmon.cli",
        "serve",
        "--port",
        str(port),
        env=subprocess_env(env),
        stdout=out,
        stderr=asyncio.subprocess.STDOUT,
    )
    out.close()
    return Replica(proc, f"http://127.0.0.1:{port}", log)


@dataclass
class Fleet:
    """Running replicas and the browsers opened on them (closed with the fleet)."""

    replicas: list[Replica]
    env: dict[str, str]
    browsers: list[Browser] = field(default_factory=list)


@contextlib.asynccontextmanager
async def running_fleet(
    mock: KisMock,
    redis_url: str | None,
    tmp: Path,
    n: int,
    subscriptions: str = "H0STCNT0:005930",
) -> AsyncIterator[Fleet]:
    """``n`` replicas of ``stockmon serve`` on ``mock`` and ``redis_url`` (None: no fleet, one
    replica alone), every one ready."""
    env = client_env(mock, redis_url, VITE_API_KEY=CANARY_KEY, STOCKMON_SUBSCRIPTIONS=subscriptions)
    fleet = Fleet([await start_replica(env, tmp / f"replica-{i}.log") for i in range(n)], env)
    try:
        await ready_all(fleet.replicas)
        yield fleet
    finally:
        for b in fleet.browsers:
            await b.close()
        await stop_processes([r.proc for r in fleet.replicas])
    for r in fleet.replicas:
        assert CANARY_KEY not in r.log.read_text(), "the API key never reaches a log"


async def until(predicate: Callable[[], Any], limit_s: float, what: str) -> None:
    """Poll ``predicate`` (sync or async) every 20 ms; AssertionError naming ``what``."""
    deadline = time.monotonic() + limit_s
    while True:
        got = predicate()
        if asyncio.iscoroutine(got):
            got = await got
        if got:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit_s} s waiting for {what}")
        await asyncio.sleep(0.02)


async def ready_all(replicas: list[Replica], limit_s: float = 30) -> None:
    """Every replica answers /readyz 200 (it reads the fleet's bus)."""

    async def check() -> bool:
        for r in replicas:
            assert r.alive, r.log.read_text()
            try:
                code, _ = await r.ready()
            except httpx.TransportError:
                return False
            if code != 200:
                return False
        return True

    await until(check, limit_s, "every replica ready")


@dataclass
class Browser:
    """A stream client on one replica, collecting every message it receives (in order)."""

    replica: Replica
    keys: list[str]
    after: str | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)
    received_at: list[float] = field(default_factory=list)
    closed: int | None = None
    task: asyncio.Task[None] | None = None

    async def start(self) -> Browser:
        """Connect (ticket, subprotocols), subscribe, read in the background."""
        auth = self.replica.spec.clause("API-AUTH")
        r = await self.replica.post(auth.string("ticket_path"), {})
        r.raise_for_status()
        ticket = r.json()["ticket"]
        protocols = [
            auth.string("ws_subprotocol"),
            auth.string("ws_ticket_subprotocol_prefix") + ticket,
        ]
        path = self.replica.spec.clause("API-STREAM").string("path")
        ws = await websockets.connect(
            self.replica.url.replace("http://", "ws://") + path,
            subprotocols=protocols,  # type: ignore[arg-type]
        )
        request: dict[str, Any] = {"type": "subscribe", "keys": self.keys}
        if self.after is not None:
            request["after"] = self.after
        await ws.send(json.dumps(request))

        async def read() -> None:
            try:
                async for text in ws:
                    self.received_at.append(time.monotonic())
                    self.messages.append(json.loads(text))
            except websockets.ConnectionClosed:
                pass
            finally:
                self.closed = ws.close_code if ws.close_code is not None else -1

        self.task = asyncio.create_task(read())
        self._ws = ws
        return self

    async def close(self) -> None:
        """Close the socket and stop reading."""
        with contextlib.suppress(Exception):
            await self._ws.close()
        if self.task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.task, 5)

    def events(self) -> list[dict[str, Any]]:
        """The event messages received so far."""
        return [m for m in self.messages if m.get("type") == "event"]

    def ticks(self) -> list[dict[str, Any]]:
        """The tick event messages (with their event_id)."""
        return [m for m in self.events() if m["event"]["type"] == "tick"]

    def gaps(self) -> list[dict[str, Any]]:
        """The gap status events received."""
        state = SPEC.clause("API-FLEET").string("gap_state")
        return [
            m["event"]
            for m in self.events()
            if m["event"]["type"] == "status" and m["event"]["state"] == state
        ]

    def bus_ids(self) -> list[str]:
        """The event_ids received, in order."""
        return [m["event_id"] for m in self.events() if "event_id" in m]


def stream_id(text: str) -> tuple[int, int]:
    """A stream id as a comparable pair."""
    ms, _, seq = text.partition("-")
    return int(ms), int(seq)


async def holder_among(replicas: list[Replica]) -> Replica | None:
    """The live replica whose /v1/status says it holds the socket lease (None: nobody yet)."""
    found = None
    for r in replicas:
        if not r.alive:
            continue
        try:
            if (await r.status())["fleet"]["role"] == "holder":
                found = r
        except (httpx.TransportError, httpx.HTTPStatusError):
            continue
    return found


def subscribe_frames(mock: KisMock, key: str, since: int = 0) -> list[dict[str, Any]]:
    """Registration frames the mock received for ``key`` (tr_type 1)."""
    out = []
    for rec in mock.trace.records(since):
        if rec["channel"] != "ws" or rec["dir"] != "in" or rec["kind"] != "text":
            continue
        text = str(rec.get("text") or "")
        if key in text and '"tr_type":"1"' in text.replace(" ", ""):
            out.append(rec)
    return out


__all__ = [
    "Browser",
    "Fleet",
    "Replica",
    "holder_among",
    "ready_all",
    "running_fleet",
    "start_replica",
    "stream_id",
    "subscribe_frames",
    "until",
]
