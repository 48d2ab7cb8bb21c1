"""Helpers for the reference streaming tests: frames, acks and a tiny in-memory shell for the core."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from stockmon.clock import ScaledClock
from stockmon.mockserver import KisMock, KiwoomMock, MockConfig, MockThread, kiwoom_beside
from stockmon.redaction import Secret
from stockmon.reference.events import (
    CloseSocket,
    DataReceived,
    Event,
    MalformedFrame,
    OpenSocket,
    StatusChanged,
)
from stockmon.reference.httpclient import HttpClient
from stockmon.reference.kis.auth import DirectApprovalKeyProvider, KisAuthClient
from stockmon.reference.kis.session import SessionCore
from stockmon.reference.kiwoom.session import KiwoomSessionCore
from stockmon.reference.registry import LOGIN_TIMEOUT_REAL_S
from stockmon.reference.rest import BrokerHttp
from stockmon.reference.seams import CredentialSource, SharedCredentialSource
from stockmon.reference.shell import StreamClient
from stockmon.spec import Layout, Spec

APPROVAL = "a" * 36


def sample_fields(layout: Layout, key: str, n: int = 0) -> list[str]:
    """One record's fields as text: numbers vary with ``n`` so records differ."""
    out: list[str] = []
    for i, f in enumerate(layout.fields):
        if i == layout.index(layout.role("key")):
            out.append(key)
        elif i == layout.index(layout.role("time")):
            out.append(f"0930{n % 60:02d}")
        elif f.type == "int":
            out.append(str(1000 + 7 * i + n))
        elif f.type == "decimal":
            out.append(f"{100 + i}.{(n * 13) % 10000:04d}")
        else:
            out.append(f"S{i}")
    return out


def data_frame(spec: Spec, tr_id: str, records: list[list[str]]) -> str:
    """``0|TR|NNN|f^f^...`` with the spec's grammar."""
    g = spec.clause("PKT-DATA-FRAME") if spec.has("PKT-DATA-FRAME") else None
    sep = g.string("part_separator") if g else "|"
    fsep = g.string("field_separator") if g else "^"
    flag = g.string("plain_flag") if g else "0"
    payload = fsep.join(f for rec in records for f in rec)
    return sep.join([flag, tr_id, f"{len(records):03d}", payload])


def ack(spec: Spec, tr_id: str, tr_key: str, code: str) -> str:
    """A control answer with the code's msg1/rt_cd from the spec."""
    c = spec.ws_code(code)
    return json.dumps(
        {
            "header": {"tr_id": tr_id, "tr_key": tr_key, "encrypt": "N"},
            "body": {"rt_cd": c["rt_cd"], "msg_cd": code, "msg1": c["msg1"]},
        }
    )


def server_ping(spec: Spec, stamp: str = "20260826093015") -> str:
    """A server PINGPONG (with the server-only datetime field)."""
    tr_id = spec.clause("KA-PING").string("tr_id")
    return json.dumps({"header": {"tr_id": tr_id, "datetime": stamp}})


def code(spec: Spec, clause: str, key: str) -> str:
    """A code named by a clause value (so tests, too, take codes from the spec)."""
    return spec.clause(clause).string(key)


@dataclass
class Wire:
    """Stands in for the shell: applies the core's socket requests and records everything."""

    core: SessionCore
    sent: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    open: bool = False
    want_open: OpenSocket | None = None
    want_close: CloseSocket | None = None

    def drain(self) -> list[Event]:
        """Collect outputs; returns the new events."""
        new: list[Event] = []
        self.sent.extend(self.core.data_to_send())
        while (ev := self.core.next_event()) is not None:
            new.append(ev)
            if isinstance(ev, OpenSocket):
                assert not self.open, "core asked for a second socket"
                self.want_open = ev
            elif isinstance(ev, CloseSocket):
                self.want_close = ev
        self.events.extend(new)
        return new

    def start(self, now: float = 0.0) -> None:
        """start() and open the first socket at ``now``."""
        self.core.set_credential(APPROVAL)
        self.core.start(now)
        self.drain()
        self.connect(now)

    def connect(self, now: float) -> None:
        """Honour a pending OpenSocket."""
        assert self.want_open is not None
        assert not self.open
        self.want_open = None
        self.open = True
        self.core.connected(now)
        self.drain()

    def close(self, now: float, code: int | None = 1000) -> None:
        """The socket finished closing (requested or not)."""
        assert self.open
        self.open = False
        self.want_close = None
        self.core.closed(now, code)
        self.drain()

    def recv(self, text: str, now: float) -> list[Event]:
        """Deliver one frame."""
        self.core.text_received(text, now)
        return self.drain()

    def tick(self, now: float) -> list[Event]:
        """Fire the timer at ``now``."""
        self.core.handle_timer(now)
        return self.drain()

    def take_sent(self) -> list[dict[str, Any]]:
        """Parsed frames sent since the last call."""
        out = [json.loads(t) for t in self.sent]
        self.sent.clear()
        return out

    def statuses(self) -> list[StatusChanged]:
        """Every status event so far."""
        return [e for e in self.events if isinstance(e, StatusChanged)]

    def data(self) -> list[DataReceived]:
        """Every data event so far."""
        return [e for e in self.events if isinstance(e, DataReceived)]

    def malformed(self) -> list[MalformedFrame]:
        """Every malformed-frame event so far."""
        return [e for e in self.events if isinstance(e, MalformedFrame)]


def packet_kind(spec: Spec, pkt: dict[str, Any]) -> str:
    """'ping', 'echo', 'subscribe' or 'unsubscribe' for a packet the client sent."""
    header = pkt.get("header", {})
    if header.get("tr_id") == spec.clause("KA-PING").string("tr_id"):
        return "echo" if "datetime" in header else "ping"
    tr_type = header.get("tr_type")
    if tr_type == spec.clause("PKT-SUBSCRIBE").mapping("header")["tr_type"]:
        return "subscribe"
    return "unsubscribe"


def key_of(pkt: dict[str, Any]) -> tuple[str, str]:
    """(tr_id, tr_key) of a subscribe/unsubscribe packet."""
    inp = pkt["body"]["input"]
    return inp["tr_id"], inp["tr_key"]


def as_number(text: str) -> int | Decimal:
    """How a field's text reads as a number."""
    return Decimal(text) if "." in text else int(text)


def kis_client(*, spec: Spec, approval: CredentialSource, ws_url: str, **kw: Any) -> StreamClient:
    """The one shell around a KIS core (what the registry's KIS entry builds)."""
    return StreamClient(
        core=SessionCore(spec),
        ws_url=ws_url,
        url_variable="KIS_WS_URL",
        credentials=approval,
        **kw,
    )


def kiwoom_client(
    *,
    spec: Spec,
    clock: ScaledClock,
    ws_url: str,
    tokens: CredentialSource | None = None,
    env: str = "mock",
    **kw: Any,
) -> StreamClient:
    """The one shell around a Kiwoom core (what the registry's Kiwoom entry builds).

    Without ``tokens`` it logs in tokenless, as the mock environment allows.
    """
    tokens = SharedCredentialSource(None) if tokens is None else tokens
    login_timeout = LOGIN_TIMEOUT_REAL_S / clock.to_real(1.0)
    return StreamClient(
        core=KiwoomSessionCore(spec, env=env, login_timeout_s=login_timeout),
        ws_url=ws_url,
        url_variable="KIWOOM_WS_URL",
        credentials=tokens,
        clock=clock,
        **kw,
    )


STOCKMON = str(Path(sys.executable).with_name("stockmon"))


def cli_env(extra: dict[str, str]) -> dict[str, str]:
    """A subprocess environment: the essentials of ours plus ``extra`` (nothing else leaks in)."""
    # STOCKMON_CACHE_DIR: the test's own token cache (tests/conftest.py), never the user's
    names = ("PATH", "HOME", "LANG", "SYSTEMROOT", "STOCKMON_CACHE_DIR")
    keep = {k: v for k, v in os.environ.items() if k in names}
    return {**keep, **extra}


def most_open_sockets(records: list[dict[str, Any]]) -> int:
    """The most WebSocket connections a mock trace ever had open at once (WS-SINGLE-SOCKET)."""
    open_now: set[str] = set()
    most = 0
    for r in records:
        if r["kind"] == "ws_open":
            open_now.add(r["conn"])
            most = max(most, len(open_now))
        elif r["kind"] == "ws_close":
            open_now.discard(r["conn"])
    return most


def direct_approval(mock: Any, http: HttpClient, spec: Spec) -> DirectApprovalKeyProvider:
    """The single-process approval-key source against a KIS mock."""
    conn = BrokerHttp(http, mock.rest_url, Secret(mock.app_key), Secret(mock.app_secret))
    return DirectApprovalKeyProvider(KisAuthClient(conn, spec))


@contextlib.contextmanager
def kis_and_kiwoom(time_scale: float, tick_rate_hz: float) -> Iterator[tuple[KisMock, KiwoomMock]]:
    """KIS and Kiwoom mocks on one loop in a thread (one trace)."""
    thread = MockThread(MockConfig(time_scale=time_scale, tick_rate_hz=tick_rate_hz))
    kis = thread.start()
    kw = kiwoom_beside(kis, tick_rate_hz=tick_rate_hz)
    thread.call(kw.start())
    try:
        yield kis, kw
    finally:
        thread.call(kw.stop())
        thread.stop()
