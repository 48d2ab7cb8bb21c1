"""Kiwoom REAL frames parsed against the spec's FID layouts (``spec.kiwoom_layouts``).

A REAL frame is ``{"trnm":"REAL","data":[{type, name, item, values}, ...]}``: several entries (items
and types mixed) per frame, key order not fixed, ``values`` keyed by FID strings, every value a string
(protocol/kiwoom.md §2.3). The layouts' roles say which FID is the time, the price, the volume, the
ten ask/bid levels, so the parser holds no FID number.

Signs: a price carries its direction against the previous close (``+``, ``-`` or a space); the price
itself is the absolute value (the event schema forbids a negative price). FID 15's sign is the
aggressor side: the volume is kept absolute and the side reported as ``buy``/``sell``.

Every entry is parsed on its own: a bad entry raises :class:`FrameError` for that entry only (the
caller reports it and keeps the others); an entry of a type without a layout is skipped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from stockmon.reference.errors import FrameError
from stockmon.reference.events import Row
from stockmon.reference.output import book_row, tick_row
from stockmon.spec import KiwoomLayout

_SIGNS = "+- "
BUY, SELL = "buy", "sell"


@dataclass(frozen=True, slots=True)
class KiwoomTick:
    """One trade of a REAL entry (type 0B): absolute price, absolute volume, aggressor side."""

    type_code: str
    item: str
    time: str
    price: int
    volume: int
    side: str | None
    # the entry's FID texts as they arrived: what the gateway reads change, change rate and
    # cumulative volume from (``raw``), through the layout's roles
    values: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def raw(self, fid: str) -> str:
        """The text of one FID as it arrived (KeyError if the entry has none)."""
        return str(self.values[fid])


@dataclass(frozen=True, slots=True)
class KiwoomBook:
    """One order book of a REAL entry (type 0D): ``(price, quantity)`` levels, best first."""

    type_code: str
    item: str
    time: str
    asks: list[tuple[int, int]]
    bids: list[tuple[int, int]]
    values: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def raw(self, fid: str) -> str:
        """The text of one FID as it arrived (KeyError if the entry has none)."""
        return str(self.values[fid])


KiwoomRecord: TypeAlias = KiwoomTick | KiwoomBook


def record_object(rec: KiwoomRecord, source: str, kis_tr_id: str | None) -> dict[str, Any]:
    """The event object of one Kiwoom record (schema ``event``): ``tr_id`` the Kiwoom type (``0B``),
    ``kis_tr_id`` the KIS TR it stands in for, absolute ``price``/``volume``, the aggressor ``side``."""
    obj: dict[str, Any] = {
        "type": "tick" if isinstance(rec, KiwoomTick) else "orderbook",
        "source": source,
        "tr_id": rec.type_code,
        "key": rec.item,
        "time": rec.time,
    }
    if isinstance(rec, KiwoomTick):
        obj["price"], obj["volume"] = rec.price, rec.volume
        if rec.side is not None:
            obj["side"] = rec.side
    else:
        obj["asks"] = [list(level) for level in rec.asks]
        obj["bids"] = [list(level) for level in rec.bids]
    if kis_tr_id is not None:
        obj["kis_tr_id"] = kis_tr_id
    return obj


@dataclass(frozen=True, slots=True)
class KiwoomFrame:
    """The parsed entries of one REAL frame, with the KIS subscription each one serves."""

    records: tuple[KiwoomRecord, ...]
    kis_tr_ids: tuple[str | None, ...]

    @property
    def count(self) -> int:
        """How many entries."""
        return len(self.records)

    def json_lines(self, source: str) -> str:
        """One JSON line per entry (schema ``event``)."""
        return "".join(
            json.dumps(record_object(r, source, k), ensure_ascii=False, separators=(",", ":"))
            + "\n"
            for r, k in zip(self.records, self.kis_tr_ids, strict=True)
        )

    def table_rows(self) -> list[tuple[str, str, Row]]:
        """Live-table rows, keyed by the Kiwoom type and item."""
        return [
            (
                r.type_code,
                r.item,
                tick_row(r.time, r.price, r.volume)
                if isinstance(r, KiwoomTick)
                else book_row(r.time, r.asks[0], r.bids[0]),
            )
            for r in self.records
        ]


def unsigned(text: str, fid: str, type_code: str) -> int:
    """The absolute integer of a signed FID string (``"+20800"``, ``"-0"``, ``" 67300"``)."""
    digits = text.strip().lstrip(_SIGNS)
    if not (digits.isdigit() and digits.isascii()):
        raise FrameError(f"{type_code} FID {fid} is not a signed integer: {text[:40]!r}")
    return int(digits)


class KiwoomParser:
    """Parses REAL entries of one set of FID layouts."""

    def __init__(self, layouts: Mapping[str, KiwoomLayout]) -> None:
        self.layouts = layouts

    def entry(self, raw: Any) -> KiwoomRecord | None:
        """One entry as a typed record; None for a type without a layout; FrameError if bad."""
        if not isinstance(raw, Mapping):
            raise FrameError("REAL entry is not an object")
        type_code, item, values = raw.get("type"), raw.get("item"), raw.get("values")
        if not isinstance(type_code, str) or not isinstance(item, str):
            raise FrameError("REAL entry without a string type and item")
        layout = self.layouts.get(type_code)
        if layout is None:
            return None
        if not isinstance(values, Mapping):
            raise FrameError(f"{type_code} {item}: values is not an object")
        roles = layout.roles

        def get(fid: str) -> str:
            v = values.get(fid)
            if not isinstance(v, str):
                raise FrameError(f"{type_code} {item}: FID {fid} missing or not a string")
            return v

        time = get(str(roles["time"]))
        if layout.kind == "tick":
            vol_fid = str(roles["volume"])
            vol_text = get(vol_fid).strip()
            side = BUY if vol_text.startswith("+") else SELL if vol_text.startswith("-") else None
            return KiwoomTick(
                type_code,
                item,
                time,
                unsigned(get(str(roles["price"])), str(roles["price"]), type_code),
                unsigned(vol_text, vol_fid, type_code),
                side,
                values,
            )
        return KiwoomBook(
            type_code,
            item,
            time,
            self._levels(get, roles["ask_prices"], roles["ask_quantities"], type_code),
            self._levels(get, roles["bid_prices"], roles["bid_quantities"], type_code),
            values,
        )

    @staticmethod
    def _levels(
        get: Any, prices: Sequence[str], quantities: Sequence[str], type_code: str
    ) -> list[tuple[int, int]]:
        return [
            (unsigned(get(str(p)), str(p), type_code), unsigned(get(str(q)), str(q), type_code))
            for p, q in zip(prices, quantities, strict=True)
        ]


__all__ = [
    "BUY",
    "SELL",
    "KiwoomBook",
    "KiwoomFrame",
    "KiwoomParser",
    "KiwoomRecord",
    "KiwoomTick",
    "record_object",
    "unsigned",
]
