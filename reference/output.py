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
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from typing import Any, Protocol, TextIO
from zoneinfo import ZoneInfo

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from stockmon.reference.errors import FrameError
from stockmon.reference.events import (
    BrokerErrorReceived,
    DataReceived,
    Event,
    MalformedFrame,
    Report,
    Row,
    StatusChanged,
)
from stockmon.spec import Spec

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
        for name in ("tr_id", "key", "code", "backoff_s", "expires_at"):
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
            records = ev.records
            text = records.json_lines(ev.source)
            if not self.broken:
                try:  # _out inline: this runs once per data frame
                    self._write(text)
                except (UnicodeEncodeError, OSError, ValueError) as exc:
                    self._write_failed(text, exc)
            self.lines += records.count
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
        if self.broken:
            return
        try:
            self._write(text)
        except (UnicodeEncodeError, OSError, ValueError) as exc:
            self._write_failed(text, exc)

    def _write_failed(self, text: str, exc: OSError | ValueError) -> None:
        if isinstance(exc, UnicodeEncodeError):  # a lone surrogate or a narrow stream encoding
            self._guard(lambda: self._write(_ascii_lines(text)))  # escape, never die
        else:
            self._broke(exc)

    def _guard(self, call: Callable[[], object]) -> None:
        try:
            call()
        except (OSError, ValueError) as exc:
            self._broke(exc)

    def _broke(self, exc: OSError | ValueError) -> None:
        """The reader is gone (pipe, closed stream) or the disk is full: stop writing."""
        self.broken = True
        if not isinstance(exc, BrokenPipeError | ValueError):
            print(
                f"stockmon stream: cannot write the output ({exc.strerror}); stopping",
                file=sys.stderr,
            )
        if self.on_broken is not None:
            self.on_broken()


def tick_row(time_: str, price: object, volume: object) -> Row:
    """The live-table row of a trade (every dialect's)."""
    return Row(time_, price=price, volume=volume)


def book_row(time_: str, best_ask: tuple[object, object], best_bid: tuple[object, object]) -> Row:
    """The live-table row of an order book (every dialect's)."""
    return Row(time_, bid=best_bid, ask=best_ask)


# Lines of the screen that are not data rows: title, table header and rule, status line, margin.
_CHROME_LINES = 5
_COLUMNS = (
    ("TR", "left"),
    ("key", "left"),
    ("time", "left"),
    ("last", "right"),
    ("volume", "right"),
    ("bid", "right"),
    ("ask", "right"),
)
_KEPT_COLUMNS = 5  # TR, key, time, last, volume: kept whole; bid and ask shrink when they must


class LiveTable:
    """The terminal view on rich: title, one row per (TR, key), the status line pinned below.

    Rows never wrap (cells end in an ellipsis), so the screen holds as many rows as the terminal
    is high; the title then says "N of M keys". Exchange times are shown in the viewer's local
    zone, dated in the title (and in a row when its date differs). A price up on the previous one
    of its key is green, down red.
    """

    def __init__(
        self,
        console: Console | TextIO,
        *,
        spec: Spec | None = None,
        min_interval_s: float = 0.2,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        local_zone: tzinfo | None = None,
    ) -> None:
        self.console = console if isinstance(console, Console) else Console(file=console)
        # a key's market (the spec's key patterns) -> its exchange zone (markets.<m>.timezone)
        self._market_of: Callable[[str], str | None] = (
            spec.market_of if spec is not None else lambda key: None
        )
        markets = spec.markets if spec is not None else {}
        self._zones = {m: ZoneInfo(str(v["timezone"])) for m, v in markets.items()}
        self._rows: dict[tuple[str, str], tuple[Row, int]] = {}  # row, direction (-1, 0, 1)
        self._status = "starting"
        self._interval = min_interval_s
        self._monotonic = monotonic
        self._wall = wall
        self._local = local_zone
        self._last_draw = float("-inf")
        self._dirty = False
        self._live: Live | None = None

    def event(self, ev: Event) -> None:
        """Update the rows; data values are converted here, like in the JSON sink."""
        if isinstance(ev, DataReceived):
            for tr_id, key, row in ev.records.table_rows():
                old = self._rows.get((tr_id, key))
                move = 0
                if old is not None:
                    before, move = old
                    new_p, old_p = _price(row), _price(before)
                    if new_p is not None and old_p is not None and new_p != old_p:
                        move = 1 if new_p > old_p else -1
                self._rows[(tr_id, key)] = (row, move)
            self._dirty = True
        elif isinstance(ev, StatusChanged | BrokerErrorReceived | MalformedFrame):
            obj = status_object(ev)
            who = " ".join(str(obj[k]) for k in ("tr_id", "key") if k in obj)
            self._status = f"[{obj['source']}] {obj['state']} {obj['reason']} {who}".strip()
            self._dirty = True

    def render(self) -> RenderableType:
        """The whole screen: title, the rows that fit, the status line."""
        now = datetime.fromtimestamp(self._wall(), tz=UTC).astimezone(self._local)
        capacity = max(1, self.console.size.height - _CHROME_LINES)
        keys = sorted(self._rows)
        shown = keys[:capacity]
        zone = now.strftime("%Z") or now.strftime("UTC%z")
        title = Text(f"stockmon stream — {now:%Y-%m-%d}, times in {zone}", style="bold")
        title.no_wrap, title.overflow = True, "ellipsis"
        if len(shown) < len(keys):
            title.append(f" — {len(shown)} of {len(keys)} keys")
        cells: list[tuple[Text, ...]] = []
        for tr_id, key in shown:
            row, move = self._rows[(tr_id, key)]
            style = {1: "green", -1: "red"}.get(move, "")
            cells.append(
                (
                    Text(tr_id),
                    Text(key),
                    Text(self._time(row.time, key, now)),
                    Text(_text(row.price), style=style),
                    Text(_text(row.volume)),
                    Text(_level(row.bid), style=style if row.bid else ""),
                    Text(_level(row.ask)),
                )
            )
        # What names a row and its price is never cut; only the book levels give way, sharing
        # what the terminal has left (between columns: a pad on each side and the box's divider).
        widths = [
            max([len(name), *(c[i].cell_len for c in cells)])
            for i, (name, _) in enumerate(_COLUMNS)
        ]
        left = self.console.size.width - 3 * (len(_COLUMNS) - 1) - sum(widths[:_KEPT_COLUMNS])
        share = max(1, left // (len(_COLUMNS) - _KEPT_COLUMNS))
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, padding=(0, 1))
        for i, (name, justify) in enumerate(_COLUMNS):
            width = widths[i] if i < _KEPT_COLUMNS else min(widths[i], share)
            table.add_column(
                name,
                justify=justify,  # type: ignore[arg-type]
                no_wrap=True,
                overflow="ellipsis",
                width=width,
            )
        for row_cells in cells:
            table.add_row(*row_cells)
        status = Text(self._status, no_wrap=True, overflow="ellipsis", style="reverse")
        return Group(title, table, status)

    def _time(self, hhmmss: str, key: str, now: datetime) -> str:
        """``HHMMSS`` of the key's exchange, in the local zone (dated when not today)."""
        zone = self._zones.get(self._market_of(key) or "")
        if zone is None or len(hhmmss) < 6 or not hhmmss[:6].isdigit():
            return hhmmss
        at = (
            now.astimezone(zone)
            .replace(
                hour=int(hhmmss[:2]) % 24,
                minute=int(hhmmss[2:4]) % 60,
                second=int(hhmmss[4:6]) % 60,
                microsecond=0,
            )
            .astimezone(now.tzinfo)
        )
        return f"{at:%H:%M:%S}" if at.date() == now.date() else f"{at:%m-%d %H:%M:%S}"

    def flush(self) -> None:
        """Redraw at most every ``min_interval_s`` seconds."""
        now = self._monotonic()
        if not self._dirty or now - self._last_draw < self._interval:
            return
        self._last_draw = now
        self._dirty = False
        if self._live is None:
            self._live = Live(console=self.console, auto_refresh=False, vertical_overflow="crop")
            self._live.start()
        self._live.update(self.render(), refresh=True)

    def close(self) -> None:
        """Leave the last screen in place and give the cursor back."""
        if self._live is not None:
            self._live.stop()
            self._live = None


def _price(row: Row) -> Decimal | None:
    value = row.price if row.price is not None else (row.bid[0] if row.bid else None)
    try:
        return None if value is None else Decimal(str(value))
    except ArithmeticError:
        return None


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _level(level: tuple[object, object] | None) -> str:
    return "" if level is None else f"{level[0]} x {level[1]}"


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
