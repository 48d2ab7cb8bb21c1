"""What ``stockmon stream`` prints, for every broker: JSON lines (schema ``event``) or a live table.

:class:`JsonLinesSink` is the implementation-under-test contract of DESIGN §5: one JSON object per
event, numbers as JSON numbers, ``source`` taken from the event. Data lines are encoded by the
dialect that parsed them (:class:`~stockmon.reference.events.Records`); status lines here. Lines are
written as they are produced and the shell flushes the sink once its event loop is idle, so a reader
sees each event before the client waits for the next frame, without one system call per line.

A closed stdout (``stockmon stream | head``) is not an error of the client: the sink stops writing,
remembers it (``broken``) and calls ``on_broken`` once, so the CLI stops the stream and exits 0.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any, Protocol, TextIO

from stockmon.reference.errors import FrameError
from stockmon.reference.events import (
    BrokerErrorReceived,
    DataReceived,
    Event,
    MalformedFrame,
    Report,
    StatusChanged,
)

log = logging.getLogger(__name__)


class EventSink(Protocol):
    """Where shells and the failover runner put events; ``flush`` when the loop is idle."""

    def event(self, ev: Event) -> None:
        """Handle one event (may raise FrameError for a value that does not convert)."""
        ...

    def flush(self) -> None:
        """Make everything handled so far visible."""
        ...


def status_object(ev: Report) -> dict[str, Any]:
    """The ``status`` event object of a report (schema ``event``)."""
    if isinstance(ev, StatusChanged):
        obj: dict[str, Any] = {
            "type": "status",
            "source": ev.source,
            "state": ev.state,
            "reason": ev.reason,
        }
        for name in ("tr_id", "key", "code", "backoff_s"):
            value = getattr(ev, name)
            if value is not None:
                obj[name] = value
        if ev.detail:
            obj["detail"] = ev.detail
        return obj
    if isinstance(ev, BrokerErrorReceived):
        obj = {
            "type": "status",
            "source": ev.source,
            "state": "broker_error",
            "reason": f"{ev.error.code} {ev.error.message}".strip(),
            "code": ev.error.code,
        }
        if ev.tr_id:
            obj["tr_id"] = ev.tr_id
        if ev.key:
            obj["key"] = ev.key
        return obj
    return {
        "type": "status",
        "source": ev.source,
        "state": "frame_dropped",
        "reason": str(ev.error),
    }


def _ascii_lines(text: str) -> str:
    """The same JSON lines with every non-ASCII character escaped (valid JSON, any encoding)."""
    return "".join(
        json.dumps(json.loads(line), separators=(",", ":")) + "\n" for line in text.splitlines()
    )


class JsonLinesSink:
    """One JSON object per line on a text stream (the IUT contract)."""

    def __init__(self, stream: TextIO, *, on_broken: Callable[[], None] | None = None) -> None:
        self._write = stream.write
        self._flush = stream.flush
        self.on_broken = on_broken
        self.broken = False
        self.lines = 0

    def event(self, ev: Event) -> None:
        """Write the line(s) of one event; a data frame is written whole or not at all."""
        if type(ev) is DataReceived:
            text = ev.records.json_lines(ev.source)
            self._out(text)
            self.lines += ev.records.count
        elif isinstance(ev, StatusChanged | BrokerErrorReceived | MalformedFrame):
            self._out(
                json.dumps(status_object(ev), ensure_ascii=False, separators=(",", ":")) + "\n"
            )
            self.lines += 1

    def flush(self) -> None:
        """Flush the stream."""
        if not self.broken:
            self._guard(self._flush)

    def _out(self, text: str) -> None:
        if not self.broken:
            self._guard(lambda: self._write_text(text))

    def _write_text(self, text: str) -> None:
        try:
            self._write(text)
        except (
            UnicodeEncodeError
        ):  # a lone surrogate or a narrow stream encoding: escape, never die
            self._write(_ascii_lines(text))

    def _guard(self, call: Callable[[], object]) -> None:
        try:
            call()
        except (OSError, ValueError) as exc:  # reader gone (pipe, closed stream) or disk full
            self.broken = True
            if not isinstance(exc, BrokenPipeError | ValueError):
                print(
                    f"stockmon stream: cannot write the output ({exc.strerror}); stopping",
                    file=sys.stderr,
                )
            if self.on_broken is not None:
                self.on_broken()


class LiveTable:
    """A compact terminal view: last tick / best quote per key, plus the latest status."""

    def __init__(
        self,
        stream: TextIO,
        *,
        min_interval_s: float = 0.2,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._rows: dict[tuple[str, str], str] = {}
        self._status = "starting"
        self._interval = min_interval_s
        self._monotonic = monotonic
        self._last_draw = float("-inf")
        self._dirty = False

    def event(self, ev: Event) -> None:
        """Update the rows; data values are converted here, like in the JSON sink."""
        if isinstance(ev, DataReceived):
            for tr_id, key, row in ev.records.table_rows():
                self._rows[(tr_id, key)] = row
            self._dirty = True
        elif isinstance(ev, StatusChanged | BrokerErrorReceived | MalformedFrame):
            obj = status_object(ev)
            who = " ".join(str(obj[k]) for k in ("tr_id", "key") if k in obj)
            self._status = f"[{obj['source']}] {obj['state']} {obj['reason']} {who}".strip()
            self._dirty = True

    def flush(self) -> None:
        """Redraw at most every ``min_interval_s`` seconds."""
        now = self._monotonic()
        if not self._dirty or now - self._last_draw < self._interval:
            return
        self._last_draw = now
        self._dirty = False
        lines = ["\x1b[H\x1b[J" + f"stockmon stream — {self._status}"]
        lines += [f"{tr:<9} {key:<12} {row}" for (tr, key), row in sorted(self._rows.items())]
        self._stream.write("\n".join(lines) + "\n")
        self._stream.flush()


def tick_row(time_: str, price: object, volume: object) -> str:
    """The live-table row of a trade (every dialect's)."""
    return f"{time_}  last {price!s:>12}  vol {volume!s:>8}"


def book_row(time_: str, best_ask: tuple[object, object], best_bid: tuple[object, object]) -> str:
    """The live-table row of an order book (every dialect's)."""
    (ap, aq), (bp, bq) = best_ask, best_bid
    return f"{time_}  bid {bp!s:>12} x {bq!s:<8} ask {ap!s:>12} x {aq!s:<8}"


def safe_event(sink: EventSink, ev: DataReceived | Report) -> bool:
    """Hand an event to a sink; a bad value in a data frame is logged and reported, never raised."""
    try:
        sink.event(ev)
    except FrameError as exc:
        log.warning("dropped a data frame with a bad value: %s", exc)
        sink.event(MalformedFrame(exc, source=ev.source))
        return False
    return True


def status_reporter(sink: EventSink) -> Callable[[StatusChanged], None]:
    """Print a status event now (lease changes, REST snapshot results)."""

    def report(event: StatusChanged) -> None:
        safe_event(sink, event)
        sink.flush()

    return report


def silence_stdout() -> None:
    """The reader went away (``| head``): point stdout at /dev/null so the exit flush is quiet."""
    with contextlib.suppress(OSError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
