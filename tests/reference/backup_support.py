"""Helpers of the backup-broker tests: an event list sink, polling, a Kiwoom token source."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from stockmon.clock import ScaledClock
from stockmon.mockserver import KiwoomMock
from stockmon.redaction import Secret
from stockmon.reference.events import DataReceived, Event
from stockmon.reference.fleet.token_manager import token_manager
from stockmon.reference.fleet.token_state import TokenPolicy
from stockmon.reference.fleet.token_store import LocalCredentialStore
from stockmon.reference.httpclient import HttpClient
from stockmon.reference.kiwoom.auth import KiwoomAuthClient
from stockmon.reference.kiwoom.frames import KiwoomFrame, KiwoomTick
from stockmon.reference.rest import BrokerHttp
from stockmon.reference.seams import SharedCredentialSource
from stockmon.settings import Subscription
from stockmon.spec import load_spec

SPEC = load_spec("1.1")
SUBS = (
    Subscription("H0STCNT0", "005930"),
    Subscription("H0STASP0", "000660"),
    Subscription("HDFSCNT0", "DNASAAPL"),
)
SCALE = 20.0


class ListSink:
    """Collects events (both brokers), counts flushes."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def event(self, ev: Event) -> None:
        self.events.append(ev)

    def flush(self) -> None:
        pass

    def statuses(self, state: str | None = None) -> list[Any]:
        """Status events (of one state)."""
        return [
            e for e in self.events if hasattr(e, "state") and (state is None or e.state == state)
        ]  # type: ignore[attr-defined]

    def ticks(self) -> list[KiwoomTick]:
        """Kiwoom tick records received."""
        return [
            r
            for e in self.events
            if isinstance(e, DataReceived) and isinstance(e.records, KiwoomFrame)
            for r in e.records.records
            if isinstance(r, KiwoomTick)
        ]


async def until(pred: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Wait (polling) until ``pred()`` holds."""
    async with asyncio.timeout(timeout_s):
        while not pred():  # noqa: ASYNC110 - polls state changed by other tasks
            await asyncio.sleep(0.01)


def auth_for(
    m: KiwoomMock,
    http: HttpClient,
    *,
    wall: Callable[[], float],
    scale: float = SCALE,
    app_secret: str | None = None,
) -> KiwoomAuthClient:
    """A Kiwoom auth client for the mock's credentials (or a wrong ``app_secret``)."""
    secret = Secret(m.app_secret if app_secret is None else app_secret)
    conn = BrokerHttp(http, m.rest_url, Secret(m.app_key), secret)
    return KiwoomAuthClient(conn, SPEC, wall=wall, scale=scale)


def tokens_for(m: KiwoomMock, http: HttpClient, clock: ScaledClock) -> SharedCredentialSource:
    """A token source issuing from the mock through the shared token manager (local store)."""
    auth = auth_for(m, http, wall=clock.wall)
    return SharedCredentialSource(
        token_manager(
            LocalCredentialStore(), auth.issue_token, TokenPolicy.for_kiwoom_token(SPEC, SCALE)
        )
    )


@contextlib.asynccontextmanager
async def running(client: Any) -> AsyncIterator[asyncio.Task[None]]:
    """Run a client in a task; stop it and wait on exit."""
    task = asyncio.create_task(client.run())
    try:
        yield task
    finally:
        client.stop()
        await asyncio.wait_for(task, 10)
