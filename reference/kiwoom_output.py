"""Output for STOCKMON_BROKER=kiwoom|auto: the KIS sinks, extended to Kiwoom events and sources.

:class:`BrokerJsonLines` writes exactly what :class:`~stockmon.reference.output.JsonLinesSink` writes
for KIS events, plus one line per Kiwoom REAL entry (schema ``event``, ``source: "kiwoom"``,
``tr_id`` the Kiwoom type such as ``0B``, ``kis_tr_id`` the KIS TR the entry stands in for, the
absolute ``price`` and ``volume`` and the aggressor ``side``) and status lines carrying the source of
the event that produced them. :class:`BrokerTable` is the live table for both brokers.
"""

from __future__ import annotations

import json
from typing import Any

from stockmon.reference.events import BrokerErrorReceived, MalformedFrame, StatusChanged
from stockmon.reference.kiwoom_events import KiwoomData, KiwoomEvent
from stockmon.reference.kiwoom_frames import KiwoomRecord, KiwoomTick
from stockmon.reference.output import JsonLinesSink, LiveTable, status_object


def _dumps(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n"


def record_object(rec: KiwoomRecord, source: str, kis_tr_id: str | None) -> dict[str, Any]:
    """The event object of one Kiwoom record (schema ``event``)."""
    if isinstance(rec, KiwoomTick):
        obj: dict[str, Any] = {
            "type": "tick",
            "source": source,
            "tr_id": rec.type_code,
            "key": rec.item,
            "time": rec.time,
            "price": rec.price,
            "volume": rec.volume,
        }
        if rec.side is not None:
            obj["side"] = rec.side
    else:
        obj = {
            "type": "orderbook",
            "source": source,
            "tr_id": rec.type_code,
            "key": rec.item,
            "time": rec.time,
            "asks": [list(level) for level in rec.asks],
            "bids": [list(level) for level in rec.bids],
        }
    if kis_tr_id is not None:
        obj["kis_tr_id"] = kis_tr_id
    return obj


def sourced_status(ev: StatusChanged | BrokerErrorReceived | MalformedFrame) -> dict[str, Any]:
    """The status object of a report, with the event's own source when it names one."""
    obj = status_object(ev)
    source = getattr(ev, "source", None)
    if isinstance(source, str):
        obj["source"] = source
    return obj


class BrokerJsonLines(JsonLinesSink):
    """JSON lines for both brokers (the IUT contract of DESIGN §5)."""

    def event(self, ev: KiwoomEvent) -> None:
        """Write the line(s) of one event."""
        if isinstance(ev, KiwoomData):
            text = "".join(
                _dumps(record_object(r, ev.source, k))
                for r, k in zip(ev.records, ev.kis_tr_ids, strict=True)
            )
            self._write(text)
            self.lines += len(ev.records)
            return
        if isinstance(ev, StatusChanged | BrokerErrorReceived | MalformedFrame) and hasattr(
            ev, "source"
        ):
            self._write(_dumps(sourced_status(ev)))
            self.lines += 1
            return
        super().event(ev)


class BrokerTable(LiveTable):
    """The live table for both brokers: Kiwoom rows beside KIS rows, statuses with their source."""

    def event(self, ev: KiwoomEvent) -> None:
        """Update the rows (the table's own bookkeeping, extended to Kiwoom records)."""
        if isinstance(ev, KiwoomData):
            for rec in ev.records:
                if isinstance(rec, KiwoomTick):
                    row = f"{rec.time}  last {rec.price!s:>12}  vol {rec.volume!s:>8}"
                else:
                    (ap, aq), (bp, bq) = rec.asks[0], rec.bids[0]
                    row = f"{rec.time}  bid {bp!s:>12} x {bq!s:<8} ask {ap!s:>12} x {aq!s:<8}"
                self._rows[(rec.type_code, rec.item)] = row
            self._dirty = True
            return
        if isinstance(ev, StatusChanged | BrokerErrorReceived | MalformedFrame):
            obj = sourced_status(ev)
            who = " ".join(str(obj[k]) for k in ("tr_id", "key") if k in obj)
            self._status = f"[{obj['source']}] {obj['state']} {obj['reason']} {who}".strip()
            self._dirty = True
            return
        super().event(ev)


__all__ = ["BrokerJsonLines", "BrokerTable", "record_object", "sourced_status"]
