"""The fields a UI needs on the internal API's events (API-EVENT, spec 1.2), judged against the
records the mock sent: the exchange-local timestamp with its offset, and a tick's change, change
rate and cumulative volume with the sign the record's sign code gives.

Each tick or book a reading browser got is paired with the record it carries (the same pairing as
API-STREAM's completeness check), so every expected value is read from the mock's own record
through the layout's roles, never from the target.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from stockmon.conformance.checks.api import READER, _streams, by_client, paired
from stockmon.conformance.evidence import Evidence
from stockmon.conformance.protocol import SentRecord, number
from stockmon.conformance.registry import Verdict, check, failed, no_evidence, passed
from stockmon.spec import Spec


def _first_role(spec: Spec, tr_id: str, roles: tuple[str, ...]) -> str | None:
    """The field of the first of ``roles`` the layout has."""
    layout = spec.layout(tr_id)
    return next((str(layout.roles[r]) for r in roles if r in layout.roles), None)


def _timestamp_wrong(spec: Spec, e: Mapping[str, Any], rec: SentRecord) -> str | None:
    """Why the event's timestamp is not the record's exchange-local moment, or None."""
    clause = spec.clause("API-EVENT")
    raw = e.get(clause.string("timestamp_field"))
    try:
        ts = dt.datetime.fromisoformat(str(raw))
    except ValueError:
        return f"timestamp {raw!r} is not RFC 3339"
    zone = ZoneInfo(str(spec.markets[spec.layout(rec.tr_id).market]["timezone"]))
    if ts.tzinfo is None:
        return f"timestamp {raw!r} has no UTC offset"
    want_offset = zone.utcoffset(ts.replace(tzinfo=None))
    if ts.utcoffset() != want_offset:
        return f"timestamp {raw!r} has offset {ts.utcoffset()}, the exchange's is {want_offset}"
    time_field = _first_role(spec, rec.tr_id, clause.strings("time_roles"))
    if time_field is not None and ts.strftime(clause.string("time_format")) != rec.values.get(
        time_field
    ):
        return f"timestamp {raw!r} is not the record's {time_field}={rec.values.get(time_field)}"
    date_field = _first_role(spec, rec.tr_id, clause.strings("date_roles"))
    if date_field is not None:
        if ts.strftime(clause.string("date_format")) != rec.values.get(date_field):
            return (
                f"timestamp {raw!r} is not the record's {date_field}={rec.values.get(date_field)}"
            )
    elif abs((ts.date() - dt.datetime.now(zone).date()).days) > 1:
        return f"timestamp {raw!r} is not the exchange-local date at receipt"
    return None


def _tick_wrong(spec: Spec, e: Mapping[str, Any], rec: SentRecord) -> str | None:
    """Why a tick's change, change rate or cumulative volume is not the record's, or None."""
    clause = spec.clause("API-EVENT")
    missing = [f for f in clause.strings("tick_fields") if f not in e]
    if missing:
        return f"tick lacks {missing}"
    roles = clause.mapping("change_roles")
    layout = spec.layout(rec.tr_id)
    code = rec.values.get(layout.roles.get(str(roles["sign"]), ""), "")
    sign = (
        Decimal(-1)
        if code in clause.strings("negative_sign_codes")
        else Decimal(0)
        if code in clause.strings("zero_sign_codes")
        else Decimal(1)
    )
    for field in ("change", "change_rate", "cumulative_volume"):
        source = layout.roles.get(str(roles[field]))
        if source is None:
            continue
        sent = number(rec.values.get(str(source)))
        if sent is None:
            continue
        want = sent if field == "cumulative_volume" else sign * abs(sent)
        got = number(e.get(field))
        if got != want:
            return f"{field} {e.get(field)!r}, the record's {source}={rec.values.get(str(source))} with sign code {code!r} gives {want}"
    return None


@check("API-EVENT")
def events_carry_what_a_ui_needs(ev: Evidence) -> Verdict:
    """Every tick and book a browser got carries the record's exchange-local timestamp with the
    market's UTC offset; a tick also its change and change rate signed by the record's sign code,
    and its cumulative volume."""
    spec = ev.spec
    streams = _streams(ev)
    judged = 0
    for client, obs in sorted(by_client(ev, READER).items()):
        for o, sk, e, i in paired(ev, obs, streams):
            if i is None:
                continue  # unpaired events are API-STREAM's to judge
            recs = streams[sk]
            why = _timestamp_wrong(spec, e, recs[i])
            if why is None and e.get("type") == "tick":
                why = _tick_wrong(spec, e, recs[i])
            if why is not None:
                return failed(
                    f"{client}: {sk[0]}:{sk[1]} event (seq {o['message'].get('seq')}): {why}",
                    expected="the fields of API-EVENT, read from the record through its roles",
                    evidence=[o, *(x for x in ev.records if x.get("seq") == recs[i].seq)],
                )
            judged += 1
    if not judged:
        return no_evidence(
            "no browser got a tick or book the mock had sent",
            expected="events of subscribed keys",
        )
    return passed(f"{judged} events carry the exchange-local timestamp and the UI fields")
