"""What ``stockmon stream`` prints: JSON lines (schema ``event``) or a compact live table.

:class:`JsonLinesSink` is the implementation-under-test contract of DESIGN §5: one JSON object per
event, numbers as JSON numbers. Lines are written as they are produced; the shell flushes the sink
as soon as its event loop is idle (that is, before it waits for the next frame), so a reader sees
each event as soon as the client has nothing more urgent to do, without one system call per line
when frames queue up.

The encoder is hand-rolled for the hot path: the constant parts of a line are preformatted per TR,
strings go through the C JSON string encoder, an ``int`` prints as itself and a ``Decimal`` as its
exact digits (``str(Decimal)`` is always a valid JSON number for the finite values the parser lets
through), so the printed number is the number the broker sent.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from json.encoder import encode_basestring_ascii as _js
from typing import Any, Protocol, TextIO

from stockmon.reference.errors import FrameError
from stockmon.reference.events import (
    BrokerErrorReceived,
    DataReceived,
    Event,
    MalformedFrame,
    StatusChanged,
)
from stockmon.reference.frames import Frame, Level, OrderbookRecord, Record, TickRecord

log = logging.getLogger(__name__)

SOURCE = "kis"


class EventSink(Protocol):
    """Where the shell puts events; ``flush`` is called once per received frame."""

    def event(self, ev: Event) -> None:
        """Handle one event (may raise FrameError for a value that does not convert)."""
        ...

    def flush(self) -> None:
        """Make everything handled so far visible."""
        ...


def status_object(ev: StatusChanged | BrokerErrorReceived | MalformedFrame) -> dict[str, Any]:
    """The ``status`` event object of a report (schema ``event``)."""
    if isinstance(ev, StatusChanged):
        obj: dict[str, Any] = {
            "type": "status",
            "source": SOURCE,
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
            "source": SOURCE,
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
        "source": SOURCE,
        "state": "frame_dropped",
        "reason": str(ev.error),
    }


def _levels(levels: list[Level]) -> str:
    return "[" + ",".join([f"[{p},{q}]" for p, q in levels]) + "]"


_ENCODERS: dict[type[Record], Callable[[Frame], str]] = {}


def _encoder(record_type: type[Record]) -> Callable[[Frame], str]:
    """The line encoder of one TR: constant parts preformatted once."""
    head = (
        f'{{"type":"{record_type.kind}","source":"{SOURCE}","tr_id":{_js(record_type.tr_id)},"key":'
    )
    if record_type.kind == "tick":

        def ticks(frame: Frame) -> str:
            return "".join(
                [
                    f'{head}{_js(k)},"time":{_js(t)},"price":{p},"volume":{v}}}\n'
                    for k, t, p, v in frame.ticks()
                ]
            )

        return ticks

    def books(frame: Frame) -> str:
        return "".join(
            [
                f'{head}{_js(k)},"time":{_js(t)},"asks":{_levels(a)},"bids":{_levels(b)}}}\n'
                for k, t, a, b in frame.books()
            ]
        )

    return books


def frame_text(frame: Frame) -> str:
    """The JSON lines of every record of a frame, joined; FrameError if a value is bad."""
    enc = _ENCODERS.get(frame.record_type)
    if enc is None:
        enc = _ENCODERS[frame.record_type] = _encoder(frame.record_type)
    return enc(frame)


def frame_lines(frame: Frame) -> list[str]:
    """The JSON lines of a frame, one string per record (newline included)."""
    return frame_text(frame).splitlines(keepends=True)


class JsonLinesSink:
    """One JSON object per line on a text stream (the IUT contract)."""

    def __init__(self, stream: TextIO) -> None:
        self._write = stream.write
        self._flush = stream.flush
        self.lines = 0

    def event(self, ev: Event) -> None:
        """Write the line(s) of one event; a data frame is written whole or not at all."""
        if type(ev) is DataReceived:
            frame = ev.frame
            self._write(frame_text(frame))
            self.lines += frame.count
        elif isinstance(ev, StatusChanged | BrokerErrorReceived | MalformedFrame):
            self._write(
                json.dumps(status_object(ev), ensure_ascii=False, separators=(",", ":")) + "\n"
            )
            self.lines += 1

    def flush(self) -> None:
        """Flush the stream."""
        self._flush()


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
            for rec in ev.frame.records:
                self._rows[(rec.tr_id, rec.key)] = self._row(rec)
            self._dirty = True
        elif isinstance(ev, StatusChanged | BrokerErrorReceived | MalformedFrame):
            obj = status_object(ev)
            who = " ".join(str(obj[k]) for k in ("tr_id", "key") if k in obj)
            self._status = f"{obj['state']} {obj['reason']} {who}".strip()
            self._dirty = True

    @staticmethod
    def _row(rec: Record) -> str:
        if isinstance(rec, TickRecord):
            return f"{rec.time}  last {rec.price!s:>12}  vol {rec.volume!s:>8}"
        assert isinstance(rec, OrderbookRecord)
        (ap, aq), (bp, bq) = rec.asks[0], rec.bids[0]
        return f"{rec.time}  bid {bp!s:>12} x {bq!s:<8} ask {ap!s:>12} x {aq!s:<8}"

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


def safe_event(sink: EventSink, ev: Event) -> bool:
    """Hand an event to a sink; a bad value in a data frame is logged and reported, never raised."""
    try:
        sink.event(ev)
    except FrameError as exc:
        log.warning("dropped a data frame with a bad value: %s", exc)
        sink.event(MalformedFrame(exc))
        return False
    return True
