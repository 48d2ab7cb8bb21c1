"""Kiwoom's own protocol (KIWOOM-PROTOCOL) and its session token (TOKEN-KIWOOM-SESSION), judged on
the Kiwoom records of the shared trace and on what the target printed.

The judge reads Kiwoom's wire from the spec alone (trnm names, SYSTEM codes, FID layouts and their
roles, see :mod:`~stockmon.conformance.protocol`) and shares no code with the reference client.
The failover to Kiwoom is judged in :mod:`~stockmon.conformance.checks.failover`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from stockmon.conformance.errors import HarnessError
from stockmon.conformance.evidence import Evidence, Record, client_json
from stockmon.conformance.protocol import (
    KIWOOM,
    best_socket,
    data_events,
    digits,
    is_kiwoom,
    kiwoom_level,
    kiwoom_sockets,
    kiwoom_type_of,
    kiwoom_value,
    levels_match,
    match_in_order,
    number,
    output_stop,
    registered_kiwoom,
    served_pairs,
    slack,
    trnm,
)
from stockmon.conformance.registry import Verdict, check, failed, no_evidence, passed
from stockmon.schemas import errors as schema_errors
from stockmon.spec import KiwoomLayout, Spec, kiwoom_layouts


def _login_accepted(ev: Evidence, conn: str) -> Record | None:
    """The mock's successful LOGIN reply on a Kiwoom session."""
    login = kiwoom_value(ev.spec, "first_message")
    for r in ev.server_texts(conn):
        obj = client_json(r)
        if obj is not None and obj.get("trnm") == login and obj.get("return_code") == 0:
            return r
    return None


def _system_sent(ev: Evidence, name: str) -> list[Record]:
    code = kiwoom_value(ev.spec, "system_codes")[name]
    system = kiwoom_value(ev.spec, "system")
    out = []
    for r in ev.server_texts():
        obj = client_json(r)
        if (
            is_kiwoom(r)
            and obj is not None
            and obj.get("trnm") == system
            and obj.get("code") == code
        ):
            out.append(r)
    return out


@check("KIWOOM-PROTOCOL")
def kiwoom_login_sent_first(ev: Evidence) -> Verdict:
    """On every Kiwoom socket the client's first frame is LOGIN and no REG or REMOVE goes out
    before the LOGIN is accepted."""
    socks = kiwoom_sockets(ev)
    if not socks:
        return failed(
            "the target never opened a Kiwoom socket",
            expected="a Kiwoom WebSocket session that starts with LOGIN",
        )
    p = ev.spec
    login, ping = kiwoom_value(p, "first_message"), kiwoom_value(p, "ping")
    regs = (kiwoom_value(p, "subscribe"), kiwoom_value(p, "unsubscribe"))
    for sock in socks:
        texts = [r for r in ev.client_texts(sock.conn) if trnm(r) != ping]
        if not texts:
            continue
        if trnm(texts[0]) != login:
            return failed(
                f"{sock.conn}: the first frame was {str(texts[0].get('text'))[:80]!r}, not {login}",
                expected=f"{login} first, then {regs[0]}/{regs[1]}",
                evidence=[sock.open_record, texts[0]],
            )
        accepted = _login_accepted(ev, sock.conn)
        early = [
            r
            for r in texts
            if trnm(r) in regs and (accepted is None or int(r["seq"]) < int(accepted["seq"]))
        ]
        if early:
            return failed(
                f"{sock.conn}: {trnm(early[0])} sent before the {login} was accepted",
                expected=f"nothing but {login} until its reply with return_code 0",
                evidence=[texts[0], early[0]],
            )
    kicked = _system_sent(ev, "no_login")
    if kicked:
        return failed(
            f"Kiwoom closed a session for a missing {login} ({kicked[0].get('conn')})",
            expected=f"{login} as the first frame of every session",
            evidence=kicked[:2],
        )
    return passed(f"{len(socks)} Kiwoom socket(s), each opened with {login}")


@check("KIWOOM-PROTOCOL")
def kiwoom_registrations_cover_kr_subscriptions(ev: Evidence) -> Verdict:
    """After LOGIN every subscription Kiwoom serves is registered with REG (grp_no, refresh, the
    Kiwoom type of its layout) and Kiwoom accepts it; every REG/REMOVE matches its schema."""
    wanted = served_pairs(ev)
    if not wanted:
        raise HarnessError("the scenario subscribes nothing Kiwoom serves")
    p = ev.spec
    for r in ev.client_texts():
        if not is_kiwoom(r):
            continue
        name = trnm(r)
        schema = {
            kiwoom_value(p, "subscribe"): "kiwoom-reg",
            kiwoom_value(p, "unsubscribe"): "kiwoom-remove",
        }
        if name in schema:
            errs = schema_errors(schema[name], client_json(r))
            if errs:
                return failed(
                    f"{name} breaks schema {schema[name]}: {errs[0]}",
                    expected="REG/REMOVE with trnm, grp_no, refresh (REG) and data[{item, type}]",
                    evidence=[r],
                )
    best = best_socket(kiwoom_sockets(ev), lambda conn: registered_kiwoom(ev, conn), wanted)
    if best is None:
        return failed("the target never opened a Kiwoom socket", expected="REG of every KR key")
    missing = wanted - registered_kiwoom(ev, best.conn)
    if missing:
        return failed(
            "never registered on one Kiwoom socket: "
            + ", ".join(f"{t}:{i}" for t, i in sorted(missing)),
            expected="REG of the Kiwoom type of every KR subscription, accepted with return_code 0",
            evidence=[best.open_record, *ev.client_texts(best.conn)[:4]],
        )
    return passed(f"{len(wanted)} registrations accepted on {best.conn}")


@check("KIWOOM-PROTOCOL")
def kiwoom_pings_echoed_verbatim(ev: Evidence) -> Verdict:
    """Every PING the server sends comes back byte for byte (no PONG, no re-serialisation), so the
    server never ends a session for a missing heartbeat; SYSTEM frames are never sent back."""
    ping, system = kiwoom_value(ev.spec, "ping"), kiwoom_value(ev.spec, "system")
    tol = slack(ev)
    end = ev.marks.get("end", ev.end_t_spec)
    seen = 0
    for sock in kiwoom_sockets(ev):
        pings = [r for r in ev.server_texts(sock.conn) if trnm(r) == ping]
        client = ev.client_texts(sock.conn)
        sent_texts = {str(r.get("text")) for r in pings}
        for r in client:
            if trnm(r) == ping and str(r.get("text")) not in sent_texts:
                return failed(
                    f"{sock.conn}: a PING answer that is not a verbatim echo: {str(r.get('text'))[:80]!r}",
                    expected="the received PING text sent back unchanged",
                    evidence=[*pings[-1:], r],
                )
            if trnm(r) == system:
                return failed(
                    f"{sock.conn}: the client sent a SYSTEM frame back",
                    expected="SYSTEM frames are never echoed",
                    evidence=[r],
                )
        stop = min(end, sock.close_t if sock.close_t is not None else end)
        for pr in pings:
            t = float(pr["t_spec"])
            if t > stop - tol:
                continue
            seen += 1
            if not any(
                str(c.get("text")) == pr.get("text") and int(c["seq"]) > int(pr["seq"])
                for c in client
            ):
                return failed(
                    f"{sock.conn}: the PING sent at {t:.1f} s was never echoed",
                    expected="every PING echoed verbatim",
                    evidence=[pr],
                )
    dropped = _system_sent(ev, "heartbeat_missed")
    if dropped:
        return failed(
            f"Kiwoom ended {dropped[0].get('conn')} for missed heartbeats",
            expected="every PING echoed verbatim, in time",
            evidence=dropped[:2],
        )
    if seen == 0:
        # No session lived a PING period (a target that fails elsewhere): nothing to answer.
        return no_evidence(
            "no Kiwoom session lasted long enough to receive a PING",
            expected="a Kiwoom session that receives PINGs and echoes each verbatim",
        )
    return passed(f"{seen} PINGs, each echoed verbatim")


def _entries(ev: Evidence) -> dict[tuple[str, str], list[tuple[float, int, Mapping[str, Any]]]]:
    """Every REAL entry the Kiwoom mock sent, by (type, item): (t_spec, seq, entry)."""
    layouts = kiwoom_layouts(ev.spec)
    real = kiwoom_value(ev.spec, "data")
    out: dict[tuple[str, str], list[tuple[float, int, Mapping[str, Any]]]] = defaultdict(list)
    for r in ev.server_texts():
        if not is_kiwoom(r) or r.get("frame") != "data":
            continue
        obj = client_json(r)
        if obj is None or obj.get("trnm") != real or not isinstance(obj.get("data"), list):
            continue
        for entry in obj["data"]:
            if isinstance(entry, Mapping) and entry.get("type") in layouts:
                out[(str(entry["type"]), str(entry.get("item")))].append(
                    (float(r["t_spec"]), int(r["seq"]), entry)
                )
    return out


def _event_type(spec: Spec, tr_id: str) -> str | None:
    """The Kiwoom type an event's tr_id names (a Kiwoom type, or the KIS TR it stands in for)."""
    return tr_id if tr_id in kiwoom_layouts(spec) else kiwoom_type_of(spec, tr_id)


def _matches(layout: KiwoomLayout, event: Mapping[str, Any], entry: Mapping[str, Any]) -> bool:
    values = entry.get("values")
    if not isinstance(values, Mapping):
        return False
    roles = layout.roles
    t = event.get("time")
    if not isinstance(t, str) or digits(str(values.get(roles["time"], ""))) not in digits(t):
        return False
    if layout.kind == "tick":
        vol = number(event.get("volume"))
        return number(event.get("price")) == kiwoom_level(values.get(roles["price"])) and (
            vol is not None and abs(vol) == kiwoom_level(values.get(roles["volume"]))
        )
    return all(
        levels_match(
            event.get(side),
            [
                (kiwoom_level(values.get(p)), kiwoom_level(values.get(q)))
                for p, q in zip(roles[prices], roles[qtys], strict=True)
            ],
        )
        for side, prices, qtys in (
            ("asks", "ask_prices", "ask_quantities"),
            ("bids", "bid_prices", "bid_quantities"),
        )
    )


@check("KIWOOM-PROTOCOL")
def kiwoom_real_values_printed(ev: Evidence) -> Verdict:
    """Each entry of each REAL frame (several per frame) becomes one event of source kiwoom with
    its FID values by the layout's roles: time, absolute price, volume, the ten-level book."""
    spec = ev.spec
    layouts = kiwoom_layouts(spec)
    streams = _entries(ev)
    if not streams:
        return failed(
            "the Kiwoom mock sent no REAL frame (nothing registered?)", expected="REAL frames"
        )
    events = [e for e in data_events(ev) if e.data.get("source") == KIWOOM]
    if not events:
        return failed(
            "the target printed no Kiwoom tick or order-book event",
            expected="one event per REAL entry",
        )
    counts, miss = match_in_order(
        events,
        streams,
        lambda e: (str(_event_type(spec, str(e.data.get("tr_id")))), str(e.data.get("key"))),
        lambda e, item: _matches(layouts[item[2]["type"]], e.data, item[2]),
    )
    if miss is not None:
        e, key, at = miss
        entries = streams.get(key, [])
        near = entries[at] if at < len(entries) else None
        return failed(
            f"Kiwoom event on stdout line {e.line_no} matches no REAL entry sent: {dict(e.data)}",
            expected="the entry's values: "
            + (str(dict(near[2].get("values", {}))) if near else "no entry of that type and item"),
            evidence=[r for r in ev.records if near is not None and r.get("seq") == near[1]],
        )
    cutoff = output_stop(ev) - slack(ev)
    multi = 0
    for key, entries in sorted(streams.items()):
        due = sum(1 for t, _, _ in entries if t < cutoff)
        if counts.get(key, 0) < due:
            return failed(
                f"{key[0]}:{key[1]}: {counts.get(key, 0)} events for {due} REAL entries sent",
                expected="one event per entry, every entry of a multi-entry frame included",
                evidence=[r for r in ev.records if r.get("seq") == entries[0][1]],
            )
        multi += len(entries)
    return passed(
        f"{len(events)} Kiwoom events for {multi} REAL entries, each with the values sent"
    )


# ------------------------------------------------------------------------------ TOKEN-KIWOOM-SESSION
def _kiwoom_tokens_issued(ev: Evidence) -> list[tuple[int, str]]:
    return [
        (int(r["seq"]), str(r["token"]))
        for r in ev.records
        if is_kiwoom(r) and r.get("kind") == "response" and isinstance(r.get("token"), str)
    ]


@check("TOKEN-KIWOOM-SESSION")
def kiwoom_login_carries_an_issued_token(ev: Evidence) -> Verdict:
    """Where the Kiwoom environment requires a session token (prod), every LOGIN carries a token
    the broker issued (raw, no Bearer prefix), a refused token is never offered again, and the
    session is accepted."""
    if not ev.mock.get("kiwoom_token_required"):
        raise HarnessError("the scenario's Kiwoom mock does not require a session token")
    login = kiwoom_value(ev.spec, "first_message")
    issued = _kiwoom_tokens_issued(ev)
    logins = [r for r in ev.client_texts() if is_kiwoom(r) and trnm(r) == login]
    if not logins:
        return failed(f"the target never sent {login}", expected=f"{login} with a session token")
    refused: set[str] = set()
    for r in logins:
        obj = client_json(r) or {}
        token = obj.get("token")
        if not isinstance(token, str) or not token:
            return failed(
                f"{r.get('conn')}: {login} without a session token in a prod environment",
                expected=f"{login} carrying the token from /oauth2/token (TOKEN-KIWOOM-SESSION)",
                evidence=[r],
            )
        errs = schema_errors("kiwoom-login", obj)
        if errs:
            return failed(
                f"{login} breaks schema kiwoom-login: {errs[0]}",
                expected="the raw token",
                evidence=[r],
            )
        if not any(seq < int(r["seq"]) and value == token for seq, value in issued):
            return failed(
                f"{r.get('conn')}: {login} with a token the broker never issued",
                expected="a token issued by the Kiwoom token endpoint",
                evidence=[r],
            )
        if token in refused:
            return failed(
                f"{r.get('conn')}: {login} again with a token the broker had refused",
                expected="a new token after a refused LOGIN (no LOGIN loop on a dead token)",
                evidence=[r],
            )
        accepted = _login_accepted(ev, str(r.get("conn")))
        if accepted is None:
            refused.add(token)
    if not any(_login_accepted(ev, s.conn) for s in kiwoom_sockets(ev)):
        return failed(
            f"no {login} was accepted",
            expected="a session logged in with a live token",
            evidence=logins[:2],
        )
    return passed(f"{len(logins)} LOGIN(s), each with an issued token ({len(issued)} issued)")
