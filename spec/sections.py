"""Sections of a spec version beyond its clauses, for ``stockmon spec show``: REST endpoints, the
field layouts (position, name, type, and the roles the suite reads, e.g. which time field it
compares), the mock profile and its clock, endpoints, markets, codes and the environment.

Everything printed is read from the loaded spec; nothing here restates a normative value.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from stockmon.spec.model import Layout, Spec, thaw

# Section name -> one-line description (what ``spec show SECTION`` prints).
SECTIONS: Mapping[str, str] = {
    "rest": "REST endpoints of each broker (token, approval, quotes: paths, methods, parameters)",
    "layouts": "field layouts of every realtime TR: positions, names, types, roles",
    "kiwoom_layouts": "FID layouts of every Kiwoom realtime type",
    "mock": "the mock profile (what the suite's mock does) and its clock",
    "endpoints": "WebSocket and REST base addresses of each broker",
    "markets": "markets: key patterns (how a US realtime key names its exchange), time zones, tick sizes",
    "codes": "answer codes of the socket and REST",
    "environment": "environment variables an implementation reads",
}
_ALIASES = {"mock_profile": "mock", "layout": "layouts", "env": "environment"}


def resolve(spec: Spec, name: str) -> tuple[str, str | None] | None:
    """``(section, item)`` for a section name or a layout's TR ID / Kiwoom type, else None."""
    key = _ALIASES.get(name.lower(), name.lower())
    if key in SECTIONS:
        return key, None
    for tr_id in spec.layouts:
        if tr_id.lower() == name.lower():
            return "layouts", tr_id
    for code in spec.kiwoom_layouts:
        if code.lower() == name.lower():
            return "kiwoom_layouts", code
    return None


def _layout(lay: Layout) -> dict[str, Any]:
    return {
        "tr_id": lay.tr_id,
        "broker": lay.broker,
        "market": lay.market,
        "kind": lay.kind,
        "source": lay.source,
        "roles": {
            role: {"field": thaw(f), "position": lay.index(f) if isinstance(f, str) else None}
            for role, f in lay.roles.items()
        },
        "fields": [
            {"position": i, "name": f.name, "type": f.type, "meaning": f.meaning}
            for i, f in enumerate(lay.fields)
        ],
    }


def _clock(spec: Spec) -> str:
    scale = next((e for e in spec.environment if e.name == "STOCKMON_TIME_SCALE"), None)
    what = scale.description if scale is not None else "spec seconds per real second"
    return (
        f"the mock runs on spec seconds: STOCKMON_TIME_SCALE = {what}; every duration of the "
        "mock profile, the token expiry it announces and the trace's t_spec are on that clock. "
        "The clock starts at the real time the mock starts (before your program) and runs "
        "STOCKMON_TIME_SCALE times faster, so a wall-clock time the mock announces "
        "(access_token_token_expired, a KST time) is on its clock, not yours: measure expires_in "
        "from the token response instead (expires_in / STOCKMON_TIME_SCALE real seconds); at the "
        "response both name the same instant"
    )


def section_data(spec: Spec, section: str, item: str | None = None) -> Any:
    """The section as plain JSON-able data."""
    if section == "layouts":
        lays = [spec.layouts[item]] if item else list(spec.layouts.values())
        return [_layout(lay) for lay in lays]
    if section == "kiwoom_layouts":
        codes = [item] if item else list(spec.kiwoom_layouts)
        return [
            {
                "type": spec.kiwoom_layouts[c].type_code,
                "market": spec.kiwoom_layouts[c].market,
                "kind": spec.kiwoom_layouts[c].kind,
                "source": spec.kiwoom_layouts[c].source,
                "roles": thaw(spec.kiwoom_layouts[c].roles),
                "fields": [
                    {"fid": f.fid, "name": f.name, "type": f.type, "meaning": f.meaning}
                    for f in spec.kiwoom_layouts[c].fields
                ],
            }
            for c in codes
        ]
    if section == "mock":
        return {"profile": thaw(spec.mock_profile), "clock": _clock(spec)}
    if section == "environment":
        return [
            {
                "name": e.name,
                "secret": e.secret,
                "required": e.required,
                "description": e.description,
            }
            for e in spec.environment
        ]
    return thaw(
        {
            "rest": spec.rest,
            "endpoints": spec.endpoints,
            "markets": spec.markets,
            "codes": spec.codes,
        }[section]
    )


def _lines(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(value, Mapping):
        out: list[str] = []
        for k, v in value.items():
            if isinstance(v, Mapping | list) and v:
                out.append(f"{pad}{k}:")
                out.extend(_lines(v, indent + 2))
            else:
                out.append(f"{pad}{k}: {json.dumps(v, ensure_ascii=False)}")
        return out
    if isinstance(value, list):
        return [f"{pad}- {json.dumps(v, ensure_ascii=False)}" for v in value]
    return [f"{pad}{json.dumps(value, ensure_ascii=False)}"]


def _field_rows(fields: list[dict[str, Any]], key: str, label: str) -> list[str]:
    """A header and one row per field: its position (or FID), name, type and meaning."""
    rows = [f"  {label:>5}  {'name':<14} {'type':<8} meaning"]
    rows += [f"  {f[key]:>5}  {f['name']:<14} {f['type']:<8} {f['meaning']}" for f in fields]
    return rows


def format_section(spec: Spec, section: str, item: str | None = None) -> str:
    """The section as text (layouts as position / name / type tables)."""
    out = [f"{item or section} (spec {spec.version}): {SECTIONS[section]}"]
    data = section_data(spec, section, item)
    if section == "layouts":
        for lay in data:
            out.append(
                f"{lay['tr_id']} ({lay['broker']}, {lay['market']} {lay['kind']}; {lay['source']})"
            )
            roles = ", ".join(
                f"{r}={v['field']}" + (f" @{v['position']}" if v["position"] is not None else "")
                for r, v in lay["roles"].items()
            )
            out.append(f"  roles the suite reads: {roles}")
            out.extend(_field_rows(lay["fields"], "position", "pos"))
    elif section == "kiwoom_layouts":
        for lay in data:
            out.append(f"{lay['type']} ({lay['market']} {lay['kind']}; {lay['source']})")
            out.append(f"  roles: {json.dumps(lay['roles'], ensure_ascii=False)}")
            out.extend(_field_rows(lay["fields"], "fid", "FID"))
    elif section == "mock":
        out.append(f"clock: {data['clock']}")
        out.append("profile:")
        out.extend(_lines(data["profile"], 2))
    else:
        out.extend(_lines(data, 2))
    return "\n".join(out) + "\n"
