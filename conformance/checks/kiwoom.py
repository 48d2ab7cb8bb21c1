"""Kiwoom (KIWOOM-PROTOCOL, TOKEN-KIWOOM-SESSION, CRED-KIWOOM-SECRET) and the failover to it
(FAILOVER-KIWOOM), judged on the trace the KIS and Kiwoom mocks share and on what the target printed.

The judge reads Kiwoom's wire from the spec alone — trnm names, SYSTEM codes, FID layouts and their
roles — and shares no code with the reference client. Kiwoom records are the ones the mock tags
``broker: "kiwoom"``; a KIS subscription maps to the Kiwoom realtime type whose layout has the same
market and kind (the judge's own mapping, from ``spec.layouts`` and ``spec.kiwoom_layouts``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from stockmon.conformance.errors import HarnessError
from stockmon.conformance.evidence import Event, Evidence, Record, Socket, client_json
from stockmon.conformance.protocol import (
    data_events,
    number,
    protocol_clause,
    registered_on,
    slack,
    status_events,
)
from stockmon.conformance.registry import Verdict, check, failed, passed
from stockmon.schemas import errors as schema_errors
from stockmon.spec import KiwoomLayout, Spec, latest_version, load_spec

KIWOOM = "kiwoom"
_SIGNS = "+- "


# ------------------------------------------------------------------------------ reading the wire
def _proto(spec: Spec, key: str) -> Any:
    return protocol_clause(spec, "KIWOOM-PROTOCOL").value(key)


def _kiwoom_layouts(spec: Spec) -> Mapping[str, KiwoomLayout]:
    return spec.kiwoom_layouts or load_spec(latest_version()).kiwoom_layouts


def _token_path(spec: Spec) -> str:
    rest = spec.rest.get("kiwoom") or load_spec(latest_version()).rest["kiwoom"]
    return str(rest["token"]["path"])


def is_kiwoom(record: Record) -> bool:
    """Whether a trace record is the Kiwoom mock's."""
    return record.get("broker") == KIWOOM


def kiwoom_sockets(ev: Evidence) -> list[Socket]:
    """Kiwoom WebSocket sessions, in the order they opened."""
    return [s for s in ev.sockets() if is_kiwoom(s.open_record)]


def kis_sockets(ev: Evidence) -> list[Socket]:
    """KIS WebSocket sessions, in the order they opened."""
    return [s for s in ev.sockets() if not is_kiwoom(s.open_record)]


def _trnm(record: Record) -> str | None:
    obj = client_json(record)
    t = obj.get("trnm") if obj is not None else None
    return t if isinstance(t, str) else None


def kiwoom_type_of(spec: Spec, tr_id: str) -> str | None:
    """The Kiwoom realtime type serving a KIS TR (same market and kind), or None."""
    layout = spec.layouts.get(tr_id)
    if layout is None:
        return None
    for code, kl in _kiwoom_layouts(spec).items():
        if (kl.market, kl.kind) == (layout.market, layout.kind):
            return code
    return None


def served_pairs(ev: Evidence) -> set[tuple[str, str]]:
    """``(kiwoom type, item)`` of every subscription Kiwoom can serve."""
    out: set[tuple[str, str]] = set()
    for tr_id, key in ev.subscriptions:
        code = kiwoom_type_of(ev.spec, tr_id)
        if code is not None:
            out.add((code, key))
    return out


def unserved_keys(ev: Evidence) -> set[str]:
    """Keys of the subscriptions Kiwoom cannot serve (no Kiwoom layout for their market)."""
    return {key for tr_id, key in ev.subscriptions if kiwoom_type_of(ev.spec, tr_id) is None}


def _pairs(obj: Mapping[str, Any] | None) -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    data = obj.get("data") if obj is not None else None
    if not isinstance(data, list):
        return out
    for entry in data:
        if not isinstance(entry, Mapping):
            continue
        items, types = entry.get("item"), entry.get("type")
        if isinstance(items, list) and isinstance(types, list):
            out |= {
                (t, i) for t in types for i in items if isinstance(t, str) and isinstance(i, str)
            }
    return out


def _login_accepted(ev: Evidence, conn: str) -> Record | None:
    """The mock's successful LOGIN reply on a Kiwoom session."""
    login = _proto(ev.spec, "first_message")
    for r in ev.server_texts(conn):
        obj = client_json(r)
        if obj is not None and obj.get("trnm") == login and obj.get("return_code") == 0:
            return r
    return None


def registered_kiwoom(ev: Evidence, conn: str) -> set[tuple[str, str]]:
    """Pairs the client asked for in REG frames on ``conn`` that the mock accepted."""
    reg = _proto(ev.spec, "subscribe")
    asked: list[set[tuple[str, str]]] = [
        _pairs(client_json(r)) for r in ev.client_texts(conn) if _trnm(r) == reg
    ]
    replies = [client_json(r) for r in ev.server_texts(conn) if _trnm(r) == reg]
    out: set[tuple[str, str]] = set()
    for pairs, reply in zip(asked, replies, strict=False):
        if reply is not None and reply.get("return_code") == 0:
            out |= pairs
    return out


def _system_sent(ev: Evidence, name: str) -> list[Record]:
    code = _proto(ev.spec, "system_codes")[name]
    system = _proto(ev.spec, "system")
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


# ------------------------------------------------------------------------------ KIWOOM-PROTOCOL
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
    login, ping = _proto(p, "first_message"), _proto(p, "ping")
    regs = (_proto(p, "subscribe"), _proto(p, "unsubscribe"))
    for sock in socks:
        texts = [r for r in ev.client_texts(sock.conn) if _trnm(r) != ping]
        if not texts:
            continue
        if _trnm(texts[0]) != login:
            return failed(
                f"{sock.conn}: the first frame was {str(texts[0].get('text'))[:80]!r}, not {login}",
                expected=f"{login} first, then {regs[0]}/{regs[1]}",
                evidence=[sock.open_record, texts[0]],
            )
        accepted = _login_accepted(ev, sock.conn)
        early = [
            r
            for r in texts
            if _trnm(r) in regs and (accepted is None or int(r["seq"]) < int(accepted["seq"]))
        ]
        if early:
            return failed(
                f"{sock.conn}: {_trnm(early[0])} sent before the {login} was accepted",
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
        trnm = _trnm(r)
        schema = {_proto(p, "subscribe"): "kiwoom-reg", _proto(p, "unsubscribe"): "kiwoom-remove"}
        if trnm in schema:
            errs = schema_errors(schema[trnm], client_json(r))
            if errs:
                return failed(
                    f"{trnm} breaks schema {schema[trnm]}: {errs[0]}",
                    expected="REG/REMOVE with trnm, grp_no, refresh (REG) and data[{item, type}]",
                    evidence=[r],
                )
    best: tuple[int, Socket] | None = None
    for sock in kiwoom_sockets(ev):
        got = registered_kiwoom(ev, sock.conn) & wanted
        if best is None or len(got) > best[0]:
            best = (len(got), sock)
    if best is None:
        return failed("the target never opened a Kiwoom socket", expected="REG of every KR key")
    missing = wanted - registered_kiwoom(ev, best[1].conn)
    if missing:
        return failed(
            "never registered on one Kiwoom socket: "
            + ", ".join(f"{t}:{i}" for t, i in sorted(missing)),
            expected="REG of the Kiwoom type of every KR subscription, accepted with return_code 0",
            evidence=[best[1].open_record, *ev.client_texts(best[1].conn)[:4]],
        )
    return passed(f"{len(wanted)} registrations accepted on {best[1].conn}")


@check("KIWOOM-PROTOCOL")
def kiwoom_pings_echoed_verbatim(ev: Evidence) -> Verdict:
    """Every PING the server sends comes back byte for byte (no PONG, no re-serialisation), so the
    server never ends a session for a missing heartbeat; SYSTEM frames are never sent back."""
    ping, system = _proto(ev.spec, "ping"), _proto(ev.spec, "system")
    tol = slack(ev)
    end = ev.marks.get("end", ev.end_t_spec)
    seen = 0
    for sock in kiwoom_sockets(ev):
        pings = [r for r in ev.server_texts(sock.conn) if _trnm(r) == ping]
        client = ev.client_texts(sock.conn)
        sent_texts = {str(r.get("text")) for r in pings}
        for r in client:
            if _trnm(r) == ping and str(r.get("text")) not in sent_texts:
                return failed(
                    f"{sock.conn}: a PING answer that is not a verbatim echo: {str(r.get('text'))[:80]!r}",
                    expected="the received PING text sent back unchanged",
                    evidence=[*pings[-1:], r],
                )
            if _trnm(r) == system:
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
        return passed("no Kiwoom session lasted long enough to receive a PING")
    return passed(f"{seen} PINGs, each echoed verbatim")


def _abs(text: Any) -> Decimal | None:
    if not isinstance(text, str):
        return None
    return number(text.strip().lstrip(_SIGNS))


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def _entries(ev: Evidence) -> dict[tuple[str, str], list[tuple[float, int, Mapping[str, Any]]]]:
    """Every REAL entry the Kiwoom mock sent, by (type, item): (t_spec, seq, entry)."""
    layouts = _kiwoom_layouts(ev.spec)
    real = _proto(ev.spec, "data")
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
    return tr_id if tr_id in _kiwoom_layouts(spec) else kiwoom_type_of(spec, tr_id)


def _matches(layout: KiwoomLayout, event: Mapping[str, Any], entry: Mapping[str, Any]) -> bool:
    values = entry.get("values")
    if not isinstance(values, Mapping):
        return False
    roles = layout.roles
    t = event.get("time")
    if not isinstance(t, str) or _digits(str(values.get(roles["time"], ""))) not in _digits(t):
        return False
    if layout.kind == "tick":
        vol = number(event.get("volume"))
        return number(event.get("price")) == _abs(values.get(roles["price"])) and (
            vol is not None and abs(vol) == _abs(values.get(roles["volume"]))
        )
    for side, prices, qtys in (
        ("asks", "ask_prices", "ask_quantities"),
        ("bids", "bid_prices", "bid_quantities"),
    ):
        got = event.get(side)
        want = [
            (_abs(values.get(p)), _abs(values.get(q)))
            for p, q in zip(roles[prices], roles[qtys], strict=True)
        ]
        if not isinstance(got, list) or len(got) > len(want):
            return False
        meaningful = [w for w in want if (w[0] or 0) != 0]
        if not got and meaningful:
            return False
        for level, (wp, wq) in zip(got, want, strict=False):
            if not isinstance(level, list) or len(level) != 2:
                return False
            if number(level[0]) != wp or number(level[1]) != wq:
                return False
    return True


@check("KIWOOM-PROTOCOL")
def kiwoom_real_values_printed(ev: Evidence) -> Verdict:
    """Each entry of each REAL frame (several per frame) becomes one event of source kiwoom with
    its FID values by the layout's roles: time, absolute price, volume, the ten-level book."""
    spec = ev.spec
    layouts = _kiwoom_layouts(spec)
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
    cursor: dict[tuple[str, str], int] = defaultdict(int)
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for e in events:
        code = _event_type(spec, str(e.data.get("tr_id")))
        key = (str(code), str(e.data.get("key")))
        entries = streams.get(key, [])
        i = cursor[key]
        while i < len(entries) and not _matches(layouts[key[0]], e.data, entries[i][2]):
            i += 1
        if i == len(entries):
            near = entries[cursor[key]] if cursor[key] < len(entries) else None
            return failed(
                f"Kiwoom event on stdout line {e.line_no} matches no REAL entry sent: {dict(e.data)}",
                expected="the entry's values: "
                + (
                    str(dict(near[2].get("values", {})))
                    if near
                    else "no entry of that type and item"
                ),
                evidence=[r for r in ev.records if near is not None and r.get("seq") == near[1]],
            )
        cursor[key] = i + 1
        counts[key] += 1
    stop = (
        min((tr.end_t for tr in ev.targets), default=ev.end_t_spec / ev.time_scale) * ev.time_scale
    )
    cutoff = min(stop, ev.marks.get("end", stop)) - slack(ev)
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
    login = _proto(ev.spec, "first_message")
    issued = _kiwoom_tokens_issued(ev)
    logins = [r for r in ev.client_texts() if is_kiwoom(r) and _trnm(r) == login]
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


# ------------------------------------------------------------------------------ CRED-KIWOOM-SECRET
@check("CRED-KIWOOM-SECRET")
def kiwoom_token_requests_carry_the_secret(ev: Evidence) -> Verdict:
    """Every Kiwoom token request sends appkey and secretkey (schema kiwoom-token-request)."""
    path = _token_path(ev.spec)
    field = protocol_clause(ev.spec, "CRED-KIWOOM-SECRET").string("request_field")
    reqs = [r for r in ev.requests(path) if is_kiwoom(r)]
    for r in reqs:
        body = r.get("body")
        if not isinstance(body, Mapping) or not body.get(field):
            return failed(
                f"a Kiwoom token request without {field}",
                expected=f"appkey and {field} (KIWOOM_APP_SECRET) in every token request",
                evidence=[r],
            )
        errs = schema_errors("kiwoom-token-request", dict(body))
        if errs:
            return failed(
                f"Kiwoom token request breaks its schema: {errs[0]}",
                expected="kiwoom-token-request",
                evidence=[r],
            )
    return passed(f"{len(reqs)} Kiwoom token request(s), each with {field}")


@check("CRED-KIWOOM-SECRET")
def missing_kiwoom_secret_refused(ev: Evidence) -> Verdict:
    """With KIWOOM_APP_SECRET missing where a token is needed, the target exits with an error and
    never contacts Kiwoom."""
    contact = [
        r
        for r in ev.records
        if is_kiwoom(r) and (r.get("dir") == "in" or r.get("kind") == "ws_open")
    ]
    for tr in ev.targets:
        if not tr.exited_by_itself or tr.returncode == 0:
            return failed(
                "the target went on although KIWOOM_APP_SECRET was missing",
                expected="exit with an error naming KIWOOM_APP_SECRET",
                evidence=contact[:3],
            )
    if contact:
        return failed(
            "the target contacted Kiwoom although KIWOOM_APP_SECRET was missing",
            expected="no token request and no socket without the secret",
            evidence=contact[:3],
        )
    return passed("exited with an error before contacting Kiwoom")


# ------------------------------------------------------------------------------ FAILOVER-KIWOOM
def _refusal_faults(ev: Evidence) -> tuple[Record, Record | None]:
    """The KIS refuse_connections fault that killed KIS, and the one that restored it."""
    faults = [r for r in ev.faults("refuse_connections") if not is_kiwoom(r)]
    kill = next((r for r in faults if (r.get("params") or {}).get("on")), None)
    if kill is None:
        raise HarnessError("the scenario never made KIS refuse connections")
    restore = next(
        (
            r
            for r in faults
            if int(r["seq"]) > int(kill["seq"]) and not (r.get("params") or {}).get("on")
        ),
        None,
    )
    return kill, restore


def _kis_refusals(ev: Evidence, after: int, before: int | None = None) -> list[Record]:
    return [
        r
        for r in ev.records
        if r.get("kind") == "ws_refused"
        and not is_kiwoom(r)
        and int(r["seq"]) > after
        and (before is None or int(r["seq"]) < before)
    ]


def _first_backup(ev: Evidence, after: int) -> Socket | None:
    return next((s for s in kiwoom_sockets(ev) if int(s.open_record["seq"]) > after), None)


def _failover_value(spec: Spec, key: str) -> float:
    return protocol_clause(spec, "FAILOVER-KIWOOM").number(key)


@check("FAILOVER-KIWOOM")
def failover_after_the_reconnect_budget(ev: Evidence) -> Verdict:
    """Kiwoom opens only after reconnect_budget KIS connection attempts failed since KIS went
    down, and then it does open."""
    budget = int(_failover_value(ev.spec, "reconnect_budget"))
    kill, _ = _refusal_faults(ev)
    backup = _first_backup(ev, int(kill["seq"]))
    if backup is None:
        return failed(
            f"no Kiwoom socket after KIS went down at {float(kill['t_spec']):.0f} s",
            expected=f"the Kiwoom backup after {budget} failed KIS reconnects",
            evidence=[kill, *_kis_refusals(ev, int(kill["seq"]))[:3]],
        )
    tries = _kis_refusals(ev, int(kill["seq"]), int(backup.open_record["seq"]))
    if len(tries) < budget:
        return failed(
            f"Kiwoom opened after {len(tries)} failed KIS reconnect(s); the budget is {budget}",
            expected=f"{budget} failed KIS reconnects before failing over",
            evidence=[kill, *tries, backup.open_record],
        )
    return passed(
        f"failed over {backup.open_t - float(kill['t_spec']):.0f} s after KIS went down, after "
        f"{len(tries)} failed reconnects (budget {budget})"
    )


@check("FAILOVER-KIWOOM")
def backup_serves_kr_and_reports_us(ev: Evidence) -> Verdict:
    """On the backup every KR subscription is registered again and its data printed, and every US
    subscription Kiwoom cannot serve is reported by a status event naming its key."""
    kill, _ = _refusal_faults(ev)
    backup = _first_backup(ev, int(kill["seq"]))
    if backup is None:
        return failed(
            "no Kiwoom socket after KIS went down", expected="the Kiwoom backup", evidence=[kill]
        )
    wanted = served_pairs(ev)
    got = registered_kiwoom(ev, backup.conn)
    if not wanted <= got:
        return failed(
            f"{backup.conn} registered {sorted(got)}, not every KR subscription {sorted(wanted)}",
            expected="every subscription Kiwoom serves registered again on the backup",
            evidence=[backup.open_record, *ev.client_texts(backup.conn)[:4]],
        )
    t_kill = float(kill["t_spec"])
    _, restore = _refusal_faults(ev)
    t_back = float(restore["t_spec"]) if restore is not None else ev.end_t_spec
    data = [e for e in data_events(ev) if e.data.get("source") == KIWOOM and e.t_spec >= t_kill]
    if not data:
        return failed(
            "no Kiwoom data event after the failover", expected="the KR data from the backup"
        )
    missing = [k for k in sorted(unserved_keys(ev)) if not _reported(ev, k, t_kill, t_back)]
    if missing:
        return failed(
            "no status event for the subscriptions Kiwoom cannot serve: " + ", ".join(missing),
            expected="a status event naming each key the backup does not carry (e.g. US keys)",
        )
    return passed(
        f"{len(wanted)} KR subscriptions on {backup.conn}, {len(data)} Kiwoom events, "
        f"{len(unserved_keys(ev))} unserved key(s) reported"
    )


def _reported(ev: Evidence, key: str, since: float, until: float) -> bool:
    """Whether a status event printed while KIS was down names ``key``."""

    def mentions(e: Event) -> bool:
        return any(isinstance(v, str) and key in v for v in e.data.values())

    return any(since <= e.t_spec <= until and mentions(e) for e in status_events(ev))


@check("FAILOVER-KIWOOM")
def switches_back_to_kis(ev: Evidence) -> Verdict:
    """Once KIS answers again the client returns within probe_interval_s: a KIS socket registers
    every subscription again and the Kiwoom socket is closed."""
    _, restore = _refusal_faults(ev)
    if restore is None:
        raise HarnessError("the scenario never let KIS answer again")
    interval = _failover_value(ev.spec, "probe_interval_s")
    t_restore = float(restore["t_spec"])
    wanted = set(ev.subscriptions)
    back = next(
        (
            s
            for s in kis_sockets(ev)
            if int(s.open_record["seq"]) > int(restore["seq"])
            and wanted <= registered_on(ev, s.conn)
        ),
        None,
    )
    if back is None:
        return failed(
            f"no KIS socket with every subscription after KIS answered again at {t_restore:.0f} s",
            expected=f"back on KIS within {interval:g} s (probe_interval_s)",
            evidence=[restore],
        )
    late = back.open_t - t_restore
    if late > interval + slack(ev):
        return failed(
            f"back on KIS {late:.0f} s after it answered again",
            expected=f"a probe at least every {interval:g} s",
            evidence=[restore, back.open_record],
        )
    stuck = [s for s in kiwoom_sockets(ev) if s.open_t <= back.open_t and s.close_t is None]
    if stuck:
        return failed(
            f"{stuck[0].conn} stayed open after the switch back",
            expected="the Kiwoom socket closed when KIS streams again",
            evidence=[stuck[0].open_record, back.open_record],
        )
    return passed(f"back on KIS ({back.conn}) {late:.0f} s after it answered again")


@check("FAILOVER-KIWOOM")
def kis_probed_on_schedule(ev: Evidence) -> Verdict:
    """While on the backup, KIS is tried again every probe_interval_s: never more often (a
    probe costs the backup its socket), never forgotten."""
    interval = _failover_value(ev.spec, "probe_interval_s")
    attempts = int(_failover_value(ev.spec, "probe_attempts"))
    kill, restore = _refusal_faults(ev)
    backup = _first_backup(ev, int(kill["seq"]))
    if backup is None:
        return failed(
            "no Kiwoom socket after KIS went down", expected="the Kiwoom backup", evidence=[kill]
        )
    end_seq = int(restore["seq"]) if restore is not None else None
    end_t = float(restore["t_spec"]) if restore is not None else ev.end_t_spec
    tries = _kis_refusals(ev, int(backup.open_record["seq"]), end_seq)
    tol = slack(ev)
    probes: list[list[Record]] = []
    for r in tries:
        if probes and float(r["t_spec"]) - float(probes[-1][-1]["t_spec"]) < tol:
            probes[-1].append(r)
        else:
            probes.append([r])
    last = backup.open_t
    for group in probes:
        t = float(group[0]["t_spec"])
        if t - last < interval - tol:
            return failed(
                f"KIS tried {t - last:.0f} s after the previous probe (or the failover)",
                expected=f"a probe every {interval:g} s (probe_interval_s), no more often",
                evidence=group[:2],
            )
        if len(group) > attempts:
            return failed(
                f"{len(group)} KIS attempts in one probe",
                expected=f"at most {attempts} (probe_attempts)",
                evidence=group[:3],
            )
        last = t
    if end_t - last > interval + tol:
        return failed(
            f"no KIS probe for {end_t - last:.0f} s on the backup",
            expected=f"a probe every {interval:g} s (probe_interval_s)",
            evidence=[backup.open_record],
        )
    return passed(f"{len(probes)} probe(s) of KIS on the backup, {interval:g} s apart")


__all__ = [
    "backup_serves_kr_and_reports_us",
    "failover_after_the_reconnect_budget",
    "kis_probed_on_schedule",
    "kiwoom_login_carries_an_issued_token",
    "kiwoom_login_sent_first",
    "kiwoom_pings_echoed_verbatim",
    "kiwoom_real_values_printed",
    "kiwoom_registrations_cover_kr_subscriptions",
    "kiwoom_token_requests_carry_the_secret",
    "missing_kiwoom_secret_refused",
    "switches_back_to_kis",
]
