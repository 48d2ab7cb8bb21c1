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
import reprlib
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

Record = dict[str, Any]
# How often wait_for looks at new records; short enough for tests, cheap for the loop.
_POLL_S = 0.002
# Records encoded per chunk of a streamed export; the loop gets control back between chunks.
_CHUNK_RECORDS = 256
# Estimated bytes of a record's fixed keys (seq, t, channel, ...), added to its texts' length.
_RECORD_OVERHEAD = 200


class OutText(Protocol):
    """An outbound text frame as the trace keeps it (the session core's ``Send`` is one)."""

    text: str
    frame: str
    json: Any
    tr_id: str | None
    tr_key: str | None
    msg_cd: str | None


@dataclass(slots=True)
class TextOut:
    """An :class:`OutText` for a caller without a ``Send`` at hand."""

    text: str
    frame: str
    json: Any = None
    tr_id: str | None = None
    tr_key: str | None = None
    msg_cd: str | None = None


class Trace:
    """An append-only list of trace records: only the newest ``limit`` records and at most about
    ``max_bytes`` of them (estimated from their texts) are kept, the oldest dropped first."""

    def __init__(
        self,
        time_scale: float = 1.0,
        limit: int | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        max_bytes: int | None = None,
    ) -> None:
        self.time_scale = time_scale
        self._monotonic = monotonic
        self._t0 = monotonic()
        self._lock = threading.Lock()
        self._records: deque[Record | tuple[Any, ...]] = deque()
        self._sizes: deque[int] = deque()
        self._limit = limit
        self._max_bytes = max_bytes
        self.bytes = 0
        self.dropped = 0
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
        size = _RECORD_OVERHEAD + _text_size(rec)
        with self._lock:
            self._seq += 1
            rec["seq"] = self._seq
            self._append(rec, size)
        return rec

    def _append(self, entry: Record | tuple[Any, ...], size: int) -> None:
        """Append under the lock, then drop the oldest while over either bound."""
        self._records.append(entry)
        self._sizes.append(size)
        self.bytes += size
        self._trim()

    def _trim(self) -> None:
        """Under the lock: drop the oldest records while over either bound."""
        limit, max_bytes = self._limit, self._max_bytes
        while len(self._records) > 1 and (
            (limit is not None and len(self._records) > limit)
            or (max_bytes is not None and self.bytes > max_bytes)
        ):
            self._records.popleft()
            self.bytes -= self._sizes.popleft()
            self.dropped += 1

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
        """One outbound text frame (see :meth:`record_texts_out`)."""
        out = TextOut(text, frame, json_, tr_id, tr_key, msg_cd)
        self.record_texts_out(t_spec, channel, conn, (out,), broker)

    def record_texts_out(
        self,
        t_spec: float,
        channel: str,
        conn: str,
        sends: Sequence[OutText],
        broker: str | None = None,
    ) -> None:
        """Fast path for a batch of outbound text frames (tens of thousands per second): one lock,
        each stored as a tuple of its fields, turned into the same dict as :meth:`record` only
        when read. A tuple of strings is untracked by the garbage collector, so a long trace costs
        no collection time (holding the frame object itself would: a fifth of the mock's CPU)."""
        with self._lock:
            records, sizes = self._records, self._sizes
            seq, added = self._seq, 0
            for out in sends:
                seq += 1
                size = _RECORD_OVERHEAD + 2 * len(out.text)  # the text and (roughly) its json
                records.append(
                    (
                        seq,
                        t_spec,
                        channel,
                        conn,
                        out.text,
                        out.json,
                        out.tr_id,
                        out.tr_key,
                        out.msg_cd,
                        out.frame,
                        broker,
                    )
                )
                sizes.append(size)
                added += size
            self._seq = seq
            self.bytes += added
            self._trim()

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

    def _raw(self, since_seq: int) -> list[Record | tuple[Any, ...]]:
        with self._lock:
            if since_seq <= 0:
                return list(self._records)
            return [r for r in self._records if _seq_of(r) > since_seq]

    def records(self, since_seq: int = 0) -> list[Record]:
        """A snapshot of the records with seq > since_seq, oldest first."""
        return [self._dict(r) for r in self._raw(since_seq)]

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

    def to_jsonl(self, path: str | Path | IO[str]) -> int:
        """Write every record as one JSON line (to a path or an open text file); the count written."""
        raw = self._raw(0)
        if isinstance(path, str | Path):
            with Path(path).open("w", encoding="utf-8", errors="backslashreplace") as fh:
                return self._write_lines(fh, raw)
        return self._write_lines(path, raw)

    def _write_lines(self, fh: IO[str], raw: list[Record | tuple[Any, ...]]) -> int:
        for entry in raw:
            fh.write(dumps(self._dict(entry)))
            fh.write("\n")
        fh.flush()
        return len(raw)

    def jsonl(self, since_seq: int = 0) -> str:
        """The records as JSONL text."""
        return "".join(dumps(r) + "\n" for r in self.records(since_seq))

    async def jsonl_chunks(self, since_seq: int = 0) -> AsyncIterator[bytes]:
        """The records as UTF-8 JSONL in chunks, yielding to the loop between chunks (for a
        streamed ``GET /_mock/trace``: never the whole export in memory, never the loop blocked)."""
        raw = self._raw(since_seq)  # references only: the records are immutable once recorded
        for start in range(0, len(raw), _CHUNK_RECORDS):
            batch = raw[start : start + _CHUNK_RECORDS]
            yield "".join(dumps(self._dict(e)) + "\n" for e in batch).encode(
                "utf-8", "backslashreplace"
            )
            await asyncio.sleep(0)

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


def _text_size(rec: Record) -> int:
    """Estimated bytes of a record's payload: its texts, and a parsed body or JSON counted as its text."""
    size = 0
    for key in ("text", "body", "json", "errors"):
        value = rec.get(key)
        if isinstance(value, str):
            size += len(value)
        elif value is not None:
            size += len(rec["text"]) if isinstance(rec.get("text"), str) else 256
    return size


def dumps(rec: Record) -> str:
    """One record as compact JSON that never fails: non-JSON values become strings, and a record
    that cannot be encoded at all (too deep, NaN) is kept as its seq, kind and escaped repr.

    Lone surrogates stay in the returned text; encode it with ``errors="backslashreplace"``, which
    turns them into the JSON escape they came from."""
    try:
        return json.dumps(
            rec, ensure_ascii=False, separators=(",", ":"), default=str, allow_nan=False
        )
    except (ValueError, RecursionError, TypeError) as exc:
        stub = {k: rec.get(k) for k in _STUB_KEYS if k in rec}
        if isinstance(rec.get("text"), str):
            stub["text"] = rec["text"]
        stub["unencodable"] = f"{type(exc).__name__}: {reprlib.repr(rec)}"
        return json.dumps(stub, ensure_ascii=True, separators=(",", ":"), default=str)


_STUB_KEYS = ("seq", "t", "t_spec", "channel", "conn", "dir", "kind", "frame")
