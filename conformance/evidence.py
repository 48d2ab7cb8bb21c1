"""What a check judges: the mock's trace, the target's output, and the scenario's timeline marks.

Everything here is read-only data plus small queries over the trace records of
``schemas/trace-record.json`` (see the mock's trace contract): which sockets were open when, what the
client sent, what the mock answered. Times are *spec seconds since the mock started* (``t_spec``),
so tolerances in checks are spec seconds too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stockmon.boundedjson import loads as bounded_json
from stockmon.spec import Spec

Record = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Line:
    """One line the target printed, with the (real, mock-relative) time it was read."""

    t: float
    text: str


@dataclass(frozen=True, slots=True)
class Event:
    """One JSON event line of the target (schema ``event``), with its mock-relative time."""

    t: float
    t_spec: float
    data: Mapping[str, Any]
    line_no: int


@dataclass(frozen=True, slots=True)
class TargetRun:
    """One target process of a scenario: how it ran, what it printed, how it ended."""

    index: int
    argv: tuple[str, ...]
    start_t: float
    end_t: float
    returncode: int | None
    exited_by_itself: bool
    clean_exit_on_sigterm: bool | None
    stdout: tuple[Line, ...]
    events: tuple[Event, ...]
    bad_lines: tuple[tuple[int, str, str], ...]
    stderr: str

    def stderr_tail(self, lines: int = 8) -> str:
        """The last few lines of stderr, for reports."""
        return "\n".join(self.stderr.splitlines()[-lines:])


@dataclass(frozen=True, slots=True)
class Socket:
    """One WebSocket session seen by the mock, from its open record to its close record."""

    conn: str
    open_t: float
    close_t: float | None
    closed_by: str | None
    open_record: Record
    close_record: Record | None

    def open_at(self, t: float) -> bool:
        """Whether the session was open at spec time ``t``."""
        return self.open_t <= t and (self.close_t is None or t < self.close_t)


@dataclass(frozen=True)
class Evidence:
    """Everything one scenario produced; checks read it and never change it."""

    scenario: str
    spec: Spec
    time_scale: float
    records: tuple[Record, ...]
    targets: tuple[TargetRun, ...]
    subscriptions: tuple[tuple[str, str], ...]
    secrets: Mapping[str, str]
    marks: Mapping[str, float]
    mock: Mapping[str, Any]
    end_t_spec: float
    notes: tuple[str, ...] = ()
    # What the suite's browsers saw on the target's internal API (scenarios with ``api`` set):
    # REST answers and stream messages, each timed in spec seconds on the mock's clock.
    observations: tuple[Record, ...] = ()
    _cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    # ------------------------------------------------------------------ basic selections
    def select(
        self,
        *,
        channel: str | None = None,
        kind: str | None = None,
        dir: str | None = None,
        conn: str | None = None,
        where: Callable[[Record], bool] | None = None,
    ) -> list[Record]:
        """Records matching every given key (None = any), in trace order."""
        keys = {"channel": channel, "kind": kind, "dir": dir, "conn": conn}
        wanted = [(k, v) for k, v in keys.items() if v is not None]
        return [
            r
            for r in self.records
            if all(r.get(k) == v for k, v in wanted) and (where is None or where(r))
        ]

    def client_texts(self, conn: str | None = None) -> list[Record]:
        """Text frames the client sent on the WebSocket."""
        return self.select(channel="ws", kind="text", dir="in", conn=conn)

    def server_texts(self, conn: str | None = None) -> list[Record]:
        """Text frames the mock sent on the WebSocket."""
        return self.select(channel="ws", kind="text", dir="out", conn=conn)

    def requests(self, path: str | None = None) -> list[Record]:
        """REST requests the client made (optionally to one path)."""
        return self.select(
            channel="rest",
            kind="request",
            where=None if path is None else (lambda r: r.get("path") == path),
        )

    def response_to(self, request: Record) -> Record | None:
        """The mock's response record to a request record (one index for the trace: judging
        stays linear in the trace however many requests a check looks up)."""
        index = self._cache.get("responses")
        if index is None:
            index = {}
            for r in self.records:
                if r.get("kind") == "response":
                    index.setdefault(r.get("request_seq"), r)
            self._cache["responses"] = index
        found: Record | None = index.get(request.get("seq"))
        return found

    def faults(self, name: str | None = None) -> list[Record]:
        """Fault records (what the harness injected, when)."""
        return self.select(
            kind="fault", where=None if name is None else lambda r: r.get("name") == name
        )

    # ------------------------------------------------------------------ sockets
    def sockets(self) -> list[Socket]:
        """Every WebSocket session, in the order it opened."""
        cached = self._cache.get("sockets")
        if cached is not None:
            return list(cached)
        opens: dict[str, Record] = {}
        closes: dict[str, Record] = {}
        order: list[str] = []
        for r in self.records:
            if r.get("channel") != "ws":
                continue
            conn = str(r.get("conn"))
            if r.get("kind") == "ws_open" and conn not in opens:
                opens[conn] = r
                order.append(conn)
            elif r.get("kind") == "ws_close" and conn not in closes:
                closes[conn] = r
        out = []
        for conn in order:
            o = opens[conn]
            c = closes.get(conn)
            out.append(
                Socket(
                    conn=conn,
                    open_t=float(o["t_spec"]),
                    close_t=None if c is None else float(c["t_spec"]),
                    closed_by=None if c is None else str(c.get("by")),
                    open_record=o,
                    close_record=c,
                )
            )
        self._cache["sockets"] = tuple(out)
        return out

    def overlapping_sockets(self) -> list[tuple[Socket, Socket]]:
        """Pairs of sessions that were open at the same moment (by trace order, not by clock)."""
        pairs: list[tuple[Socket, Socket]] = []
        open_now: dict[str, Socket] = {}
        by_conn = {s.conn: s for s in self.sockets()}
        for r in self.records:
            if r.get("channel") != "ws":
                continue
            conn = str(r.get("conn"))
            if r.get("kind") == "ws_open" and conn in by_conn:
                for other in open_now.values():
                    pairs.append((other, by_conn[conn]))
                open_now[conn] = by_conn[conn]
            elif r.get("kind") == "ws_close":
                open_now.pop(conn, None)
        return pairs

    def last_inbound_before(self, conn: str, t: float) -> float | None:
        """Spec time of the last frame the mock sent to the client on ``conn`` before ``t``."""
        last = None
        for r in self.records:
            if r.get("conn") != conn or r.get("dir") != "out" or r.get("channel") != "ws":
                continue
            rt = float(r["t_spec"])
            if rt >= t:
                break
            last = rt
        return last

    # ------------------------------------------------------------------ output
    def all_events(self) -> list[Event]:
        """Every event line of every target, in time order."""
        return sorted((e for tr in self.targets for e in tr.events), key=lambda e: e.t)


def client_json(record: Record) -> Mapping[str, Any] | None:
    """The parsed JSON object of a text record, parsing ``text`` when the mock gave no ``json``."""
    j = record.get("json")
    if isinstance(j, Mapping):
        return j
    text = record.get("text")
    if not isinstance(text, str):
        return None
    try:
        parsed = bounded_json(text, what="trace record")
    except ValueError:
        return None
    return parsed if isinstance(parsed, Mapping) else None


_COMMON = ("seq", "t", "t_spec", "channel", "conn", "dir", "kind")


def _compact(value: Any) -> str:
    if isinstance(value, Mapping):
        header = value.get("header")
        if isinstance(header, Mapping) and isinstance(header.get("approval_key"), str):
            # Shortened: enough to tell keys apart, and credentials do not belong in reports.
            value = {
                **value,
                "header": {**header, "approval_key": header["approval_key"][:8] + "…"},
            }
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def brief(record: Record, width: int = 160) -> str:
    """One line describing a trace record, for reports."""
    t = record.get("t_spec")
    head = (
        f"#{record.get('seq')} t={t:.2f}s"
        if isinstance(t, int | float)
        else f"#{record.get('seq')}"
    )
    kind = record.get("kind")
    detail: str
    if kind == "text":
        j = client_json(record)
        detail = _compact(j) if j is not None else str(record.get("text"))
    elif kind == "request":
        query = record.get("query") or {}
        q = "?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else ""
        detail = (
            f"{record.get('method')} {record.get('path')}{q} body={_compact(record.get('body'))}"
        )
    elif kind == "response":
        detail = f"status={record.get('status')} body={_compact(record.get('body'))}"
    else:
        detail = _compact({k: v for k, v in record.items() if k not in _COMMON})
    line = f"{head} {record.get('conn')} {record.get('dir')} {kind} {detail}"
    return line if len(line) <= width else line[: width - 1] + "…"


def trace_slice(
    records: Sequence[Record], cited: Sequence[Record], *, context: int = 3, limit: int = 24
) -> list[tuple[bool, Record]]:
    """The trace around the cited records, only what bears on them: records of the connections
    the cited ones are on and records of no connection (faults, marks), data frames left out
    (they drown the story). ``context`` records before the first and after the last cited one,
    each flagged as cited or not; long spans keep the cited records and their neighbours only."""
    seqs = {r.get("seq") for r in cited}
    conns = {r.get("conn") for r in cited}
    pool = [
        r
        for r in records
        if r.get("seq") in seqs or (not_data(r) and r.get("conn") in conns | {None})
    ]
    idx = [i for i, r in enumerate(pool) if r.get("seq") in seqs]
    if not idx:
        return [(True, r) for r in cited]
    lo, hi = max(0, idx[0] - context), min(len(pool), idx[-1] + context + 1)
    if hi - lo > limit:
        keep = sorted({j for i in idx for j in range(max(lo, i - 1), min(hi, i + 2))})
        return [(pool[j].get("seq") in seqs, pool[j]) for j in keep][:limit]
    return [(pool[j].get("seq") in seqs, pool[j]) for j in range(lo, hi)]


def not_data(record: Record) -> bool:
    """True for every record that is not a market-data frame (slices stay readable)."""
    return not (record.get("kind") == "text" and record.get("frame") == "data")
