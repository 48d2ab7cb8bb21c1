"""The event fields a UI needs (clause API-EVENT): a full timestamp with its UTC offset, and on
ticks change, change_rate and cumulative_volume against the previous close.

Every value is read through the layout's roles and the spec's market table (zone, key pattern), so a
broker adding or moving a field is a spec change. A record that exposes no raw fields (``raw``)
gets the timestamp only; the dialects' JSON encoders stay as they are (the ``event`` schema).
KIS and Kiwoom records both expose their raw fields, so a tick of either carries every field.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from stockmon.spec import Clause, Spec, kiwoom_layouts


class RawRecord(Protocol):
    """A parsed record that can hand back a field's text (KIS records by field name, Kiwoom
    records by FID)."""

    def raw(self, name: str) -> str:
        """The text of one field as it arrived."""
        ...


class Enricher:
    """Adds the API-EVENT fields to event objects, one spec version's rules compiled once."""

    def __init__(self, spec: Spec) -> None:
        self._clause: Clause = spec.clause("API-EVENT")
        c = self._clause
        self._date_roles = c.strings("date_roles")
        self._time_roles = c.strings("time_roles")
        self._date_format = c.string("date_format")
        self._time_format = c.string("time_format")
        self._field = c.string("timestamp_field")
        self._roles = c.mapping("change_roles")
        self._negative = set(c.strings("negative_sign_codes"))
        self._zero = set(c.strings("zero_sign_codes"))
        self._spec = spec
        self._zones = {m: ZoneInfo(v["timezone"]) for m, v in spec.markets.items()}
        # both dialects' layouts: a Kiwoom record's roles name FIDs, a KIS one's field names
        self._layouts: dict[str, Mapping[str, Any]] = {
            tr: layout.roles for tr, layout in spec.layouts.items()
        }
        self._layouts.update((t, lay.roles) for t, lay in kiwoom_layouts(spec).items())

    def enrich(self, obj: dict[str, Any], record: RawRecord | None, received: datetime) -> None:
        """Add timestamp (and the tick fields when the record's raw fields are known) in place."""
        market = self._spec.market_of(str(obj.get("key", "")))
        if market is None:
            return
        zone = self._zones[market]
        roles = self._layouts.get(str(obj.get("tr_id")), {})
        local = received.astimezone(zone)
        date_text = self._role_text(record, roles, self._date_roles)
        time_text = self._role_text(record, roles, self._time_roles) or str(obj.get("time", ""))
        try:
            day = (
                datetime.strptime(date_text, self._date_format).date()
                if date_text
                else local.date()
            )
            clock = datetime.strptime(time_text, self._time_format).time()
            obj[self._field] = datetime.combine(day, clock, zone).isoformat()
        except ValueError:
            obj[self._field] = local.replace(microsecond=0).isoformat()
        if obj.get("type") != "tick" or record is None:
            return
        sign = self._role_text(record, roles, (self._roles["sign"],))
        factor = -1 if sign in self._negative else 0 if sign in self._zero else 1
        for out in ("change", "change_rate", "cumulative_volume"):
            text = self._role_text(record, roles, (self._roles[out],))
            if text is None:
                continue
            try:
                value = Decimal(text)
            except InvalidOperation:
                continue
            if out != "cumulative_volume":
                value = abs(value) * factor
            obj[out] = int(value) if value == value.to_integral_value() else float(value)

    @staticmethod
    def _role_text(
        record: RawRecord | None, roles: Mapping[str, Any], names: tuple[str, ...]
    ) -> str | None:
        if record is None:
            return None
        for role in names:
            field = roles.get(role)
            if isinstance(field, str):
                try:
                    return record.raw(field).strip()
                except (KeyError, AttributeError):
                    continue
        return None
