"""The recorder: every request, response and frame both ways, as the evidence the checks judge.

Record shape (schemas/trace-record.json, contract in briefs/trace_contract.md): ``seq`` strictly
increasing, ``t`` real seconds since mock start, ``t_spec`` = t * time_scale, ``channel``, ``conn``,
``dir``, ``kind`` plus kind-specific keys. The caller passes the spec time of a record (the ``now``
its core step runs on), so one step is stamped with one clock; the trace never reads a clock to
stamp. Appending is thread-safe (a MockThread's owner reads
while the mock's loop writes); records are plain dicts and must not be mutated after recording.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

Record = dict[str, Any]
# How often wait_for looks at new records; short enough for tests, cheap for the loop.
_POLL_S = 0.002


class Trace:
    """An append-only list of trace records (optionally only the newest ``limit``)."""

    def __init__(
        self,
        time_scale: float = 1.0,
        limit: int | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.time_scale = time_scale
        self._monotonic = monotonic
        self._t0 = monotonic()
        self._lock = threading.Lock()
        self._records: deque[Record | tuple[Any, ...]] = deque(maxlen=limit)
        self._seq = 0

    def now(self) -> float:
        """Real seconds since the trace (the mock) started."""
        return self._monotonic() - self._t0

    def record(
        self, t_spec: float, channel: str, conn: str, dir_: str, kind: str, **extra: Any
    ) -> Record:
        """Append one record stamped at spec time ``t_spec`` and return it (with its seq)."""
        rec: Record = {
            "seq": 0,
            "t": t_spec / self.time_scale,
            "t_spec": t_spec,
            "channel": channel,
            "conn": conn,
            "dir": dir_,
            "kind": kind,
        }
        rec.update(extra)
        with self._lock:
            self._seq += 1
            rec["seq"] = self._seq
            self._records.append(rec)
        return rec

    def record_text_out(
        self,
        t_spec: float,
        channel: str,
        conn: str,
        text: str,
        json_: Any,
        tr_id: str | None,
        tr_key: str | None,
        msg_cd: str | None,
        frame: str,
        broker: str | None = None,
    ) -> None:
        """Fast path for outbound text frames (tens of thousands per second): stored compactly,
        turned into the same dict as :meth:`record` when read."""
        with self._lock:
            self._seq += 1
            self._records.append(
                (
                    self._seq,
                    t_spec,
                    channel,
                    conn,
                    text,
                    json_,
                    tr_id,
                    tr_key,
                    msg_cd,
                    frame,
                    broker,
                )
            )

    def _dict(self, entry: Record | tuple[Any, ...]) -> Record:
        if isinstance(entry, dict):
            return entry
        seq, t_spec, channel, conn, text, json_, tr_id, tr_key, msg_cd, frame, broker = entry
        rec: Record = {
            "seq": seq,
            "t": t_spec / self.time_scale,
            "t_spec": t_spec,
            "channel": channel,
            "conn": conn,
            "dir": "out",
            "kind": "text",
        }
        if broker is not None:
            rec["broker"] = broker
        rec.update(
            text=text,
            json=json_,
            tr_id=tr_id,
            tr_type=None,
            tr_key=tr_key,
            msg_cd=msg_cd,
            frame=frame,
        )
        if broker is not None:
            rec["trnm"] = tr_id  # a tagged broker's records name the frame type in its own word
        return rec

    def records(self, since_seq: int = 0) -> list[Record]:
        """A snapshot of the records with seq > since_seq, oldest first."""
        with self._lock:
            if since_seq <= 0:
                raw = list(self._records)
            else:
                raw = [r for r in self._records if _seq_of(r) > since_seq]
        return [self._dict(r) for r in raw]

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records())

    @property
    def last_seq(self) -> int:
        """Seq of the newest record (0 when empty); pass it as ``since_seq`` to see what follows."""
        with self._lock:
            return self._seq

    def to_jsonl(self, path: str | Path) -> int:
        """Write every record as one JSON line; returns the number written."""
        recs = self.records()
        with Path(path).open("w", encoding="utf-8") as fh:
            for rec in recs:
                fh.write(dumps(rec))
                fh.write("\n")
        return len(recs)

    def jsonl(self, since_seq: int = 0) -> str:
        """The records as JSONL text (for ``GET /_mock/trace``)."""
        return "".join(dumps(r) + "\n" for r in self.records(since_seq))

    def _scan(self, predicate: Callable[[Record], bool], cursor: int) -> tuple[Record | None, int]:
        for rec in self.records(cursor):
            cursor = rec["seq"]
            if predicate(rec):
                return rec, cursor
        return None, cursor

    def _attempts(
        self, predicate: Callable[[Record], bool], timeout_s: float, since_seq: int
    ) -> Iterator[Record | None]:
        """One scan per step (None: not yet), so the async and blocking waits share one deadline rule."""
        deadline = time.monotonic() + timeout_s
        while True:
            rec, since_seq = self._scan(predicate, since_seq)
            if rec is None and time.monotonic() >= deadline:
                raise TimeoutError(f"no matching trace record within {timeout_s} s")
            yield rec

    async def wait_for(
        self, predicate: Callable[[Record], bool], timeout_s: float = 5.0, since_seq: int = 0
    ) -> Record:
        """The first record (seq > since_seq) that satisfies ``predicate``; TimeoutError if none.

        Works from any event loop and thread: it polls the thread-safe snapshot.
        """
        attempts = self._attempts(predicate, timeout_s, since_seq)
        for rec in attempts:
            if rec is not None:
                return rec
            await asyncio.sleep(_POLL_S)
        raise AssertionError("attempts never ends")  # pragma: no cover

    def wait_for_sync(
        self, predicate: Callable[[Record], bool], timeout_s: float = 5.0, since_seq: int = 0
    ) -> Record:
        """Blocking twin of :meth:`wait_for` for synchronous callers (other threads only)."""
        attempts = self._attempts(predicate, timeout_s, since_seq)
        while (rec := next(attempts)) is None:
            time.sleep(_POLL_S)
        return rec


def _seq_of(entry: Record | tuple[Any, ...]) -> int:
    return int(entry["seq"] if isinstance(entry, dict) else entry[0])


def dumps(rec: Record) -> str:
    """One record as compact JSON (non-JSON values become strings rather than failing)."""
    return json.dumps(rec, ensure_ascii=False, separators=(",", ":"), default=str)
