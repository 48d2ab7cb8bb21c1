"""The judge's own reading of the wire: classify client packets, parse data frames, match events.

Written from the spec alone (clauses, field layouts, schemas) and deliberately sharing no code with
the reference client: a parsing bug shared by the client and its judge would pass every check.
Protocol facts that version 1.0 does not state (the frame grammar, the release ``tr_type``, the
approval path) are facts of the broker, so they come from the newest spec version, exactly as the
mock does; normative judgements (intervals, limits, codes) always use the version under test.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from stockmon.conformance.errors import HarnessError
from stockmon.conformance.evidence import Event, Evidence, Record, Socket, client_json
from stockmon.spec import Spec, broker_clause, kiwoom_layouts, ws_answer_code

# Non-normative: real seconds of scheduling noise every timing tolerance allows for. Tolerances
# are stated in spec seconds as ``REAL_SLACK_S * time_scale`` so each scenario's time scale keeps
# them far above what a loaded 2-core machine adds.
REAL_SLACK_S = 1.0


def slack(ev: Evidence, real_s: float = REAL_SLACK_S) -> float:
    """Timing tolerance in spec seconds for this run's time scale."""
    return real_s * ev.time_scale


# ------------------------------------------------------------------------------ client packets
def _header(obj: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    h = obj.get("header") if obj is not None else None
    return h if isinstance(h, Mapping) else None


def _input(obj: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    body = obj.get("body") if obj is not None else None
    inp = body.get("input") if isinstance(body, Mapping) else None
    return inp if isinstance(inp, Mapping) else None


def subscribe_tr_type(spec: Spec) -> str:
    """The ``tr_type`` that registers (PKT-SUBSCRIBE)."""
    return str(spec.clause("PKT-SUBSCRIBE").mapping("header")["tr_type"])


def release_tr_type(spec: Spec) -> str:
    """The ``tr_type`` that releases (PKT-UNSUBSCRIBE; a broker fact for 1.0)."""
    return str(broker_clause(spec, "PKT-UNSUBSCRIBE").mapping("header")["tr_type"])


def ping_tr_id(spec: Spec) -> str:
    """The application ping's tr_id (KA-PING)."""
    return spec.clause("KA-PING").string("tr_id")


@dataclass(frozen=True, slots=True)
class Packet:
    """A client text frame classified: what it is and the fields the checks need."""

    record: Record
    kind: str  # subscribe | release | ping | ping_answer | other
    obj: Mapping[str, Any] | None
    tr_id: str | None = None
    tr_key: str | None = None
    approval_key: str | None = None
    datetime: str | None = None

    @property
    def t(self) -> float:
        """Spec time the mock received it."""
        return float(self.record["t_spec"])

    @property
    def conn(self) -> str:
        """WebSocket session id."""
        return str(self.record.get("conn"))


def _mentions(value: Any, needle: str) -> bool:
    if isinstance(value, str):
        return value == needle
    if isinstance(value, Mapping):
        return any(_mentions(v, needle) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_mentions(v, needle) for v in value)
    return False


def classify(spec: Spec, record: Record) -> Packet:
    """What a client text frame is, judged from its JSON (never from the mock's opinion)."""
    obj = client_json(record)
    header = _header(obj)
    inp = _input(obj)
    ping = ping_tr_id(spec)
    if inp is not None and header is not None:
        kind = "release" if header.get("tr_type") == release_tr_type(spec) else "subscribe"
        return Packet(
            record,
            kind,
            obj,
            tr_id=inp.get("tr_id") if isinstance(inp.get("tr_id"), str) else None,
            tr_key=inp.get("tr_key") if isinstance(inp.get("tr_key"), str) else None,
            approval_key=header.get("approval_key")
            if isinstance(header.get("approval_key"), str)
            else None,
        )
    if obj is not None and _mentions(obj, ping):
        dt = header.get("datetime") if header is not None else None
        if isinstance(dt, str):
            return Packet(record, "ping_answer", obj, tr_id=ping, datetime=dt)
        return Packet(record, "ping", obj, tr_id=ping)
    return Packet(record, "other", obj)


def client_packets(ev: Evidence, conn: str | None = None) -> list[Packet]:
    """Every client text frame, classified, in trace order."""
    key = f"packets:{conn}"
    cached = ev._cache.get(key)
    if cached is None:
        cached = [classify(ev.spec, r) for r in ev.client_texts(conn)]
        ev._cache[key] = cached
    return list(cached)


def _pingpongs(ev: Evidence, conn: str | None, own: bool) -> list[Record]:
    ping = ping_tr_id(ev.spec)
    out = []
    for r in ev.server_texts(conn):
        h = _header(client_json(r))
        if h is None or h.get("tr_id") != ping:
            continue
        if ("datetime" not in h) if own else isinstance(h.get("datetime"), str):
            out.append(r)
    return out


def server_pings(ev: Evidence, conn: str | None = None) -> list[Record]:
    """Server PINGPONG frames (with a datetime) the mock sent."""
    return _pingpongs(ev, conn, own=False)


def reflections(ev: Evidence, conn: str | None = None) -> list[Record]:
    """The mock's reflections of the client's own pings (PINGPONG without a datetime)."""
    return _pingpongs(ev, conn, own=True)


def ack_code(record: Record) -> str | None:
    """``msg_cd`` of a control answer."""
    obj = client_json(record)
    body = obj.get("body") if obj is not None else None
    return str(body["msg_cd"]) if isinstance(body, Mapping) and "msg_cd" in body else None


def acks(ev: Evidence, conn: str | None = None, code: str | None = None) -> list[Record]:
    """Control answers of the mock (optionally with one ``msg_cd``)."""
    out = [(r, ack_code(r)) for r in ev.server_texts(conn)]
    return [r for r, c in out if c is not None and (code is None or c == code)]


def best_socket(
    socks: Sequence[Socket], registered: Callable[[str], set[tuple[str, str]]], wanted: set[Any]
) -> Socket | None:
    """The socket on which most of ``wanted`` were registered (the first of equals)."""
    best: tuple[int, Socket] | None = None
    for sock in socks:
        got = len(registered(sock.conn) & wanted)
        if best is None or got > best[0]:
            best = (got, sock)
    return None if best is None else best[1]


def ack_target(record: Record) -> tuple[str | None, str | None]:
    """``(tr_id, tr_key)`` a control answer is about."""
    h = _header(client_json(record))
    if h is None:
        return None, None
    tr_id = h.get("tr_id")
    tr_key = h.get("tr_key")
    return (tr_id if isinstance(tr_id, str) else None, tr_key if isinstance(tr_key, str) else None)


def registered_on(ev: Evidence, conn: str) -> set[tuple[str, str]]:
    """Registrations the mock confirmed (subscribed code) on one session."""
    code = ws_answer_code(ev.spec, "subscribed")
    out: set[tuple[str, str]] = set()
    for r in acks(ev, conn, code):
        tr_id, tr_key = ack_target(r)
        if tr_id and tr_key:
            out.add((tr_id, tr_key))
    return out


def stalled_socket(ev: Evidence) -> tuple[float, Socket | None]:
    """The ``stall`` mark of an idle scenario and the socket open at that moment."""
    stall = ev.marks.get("stall")
    if stall is None:
        raise HarnessError("the idle scenario set no 'stall' mark")
    return stall, next((s for s in ev.sockets() if s.open_at(stall)), None)


# ------------------------------------------------------------------------------ REST
def rest_path(spec: Spec, name: str) -> str:
    """Path of a KIS REST endpoint (``token``, ``approval``, ``revoke``)."""
    return str(spec.rest["kis"][name]["path"])


def quote_paths(spec: Spec) -> set[str]:
    """Paths of the authenticated quote endpoints."""
    return {str(q["path"]) for q in spec.rest["kis"]["quotes"].values()}


def authorization_of(request: Record, spec: Spec) -> str | None:
    """The authorization header value of a traced request."""
    headers = request.get("headers")
    if not isinstance(headers, Mapping):
        return None
    name = str(spec.rest["kis"]["headers"]["authorization"]).lower()
    value = headers.get(name)
    return value if isinstance(value, str) else None


def response_code(response: Record | None) -> str | None:
    """``msg_cd`` (REST errors) or ``error_code`` (token endpoint errors) of a response."""
    if response is None:
        return None
    body = response.get("body")
    if not isinstance(body, Mapping):
        return None
    for key in ("msg_cd", "error_code"):
        if isinstance(body.get(key), str):
            return str(body[key])
    return None


def issued_token(response: Record | None) -> str | None:
    """The access token a token response carried."""
    if response is None or response.get("status") != 200:
        return None
    if isinstance(response.get("token"), str):
        return str(response["token"])
    body = response.get("body")
    if isinstance(body, Mapping) and isinstance(body.get("access_token"), str):
        return str(body["access_token"])
    return None


# ------------------------------------------------------------------------------ data frames
@dataclass(frozen=True, slots=True)
class SentRecord:
    """One record of a data frame the mock sent, decoded by the spec's layout."""

    t: float
    seq: int
    tr_id: str
    values: Mapping[str, str]
    frame_records: int

    def key(self, spec: Spec) -> str:
        """The record's tr_key (layout role ``key``)."""
        return self.values.get(spec.layout(self.tr_id).role("key"), "")


def parse_frame(spec: Spec, text: str) -> tuple[str, list[dict[str, str]]] | None:
    """``(tr_id, records)`` of a plain data frame, or None if it is not one (or malformed)."""
    grammar = broker_clause(spec, "PKT-DATA-FRAME")
    part = grammar.string("part_separator")
    fsep = grammar.string("field_separator")
    width = grammar.integer("count_digits")
    parts = text.split(part, 3)
    if len(parts) != 4 or parts[0] != grammar.string("plain_flag"):
        return None
    tr_id, count_s, payload = parts[1], parts[2], parts[3]
    if tr_id not in spec.layouts or len(count_s) != width or not count_s.isdigit():
        return None
    names = spec.layout(tr_id).names
    fields = payload.split(fsep)
    count = int(count_s)
    if count < 1 or len(fields) != count * len(names):
        return None
    return tr_id, [
        dict(zip(names, fields[i * len(names) : (i + 1) * len(names)], strict=True))
        for i in range(count)
    ]


def sent_records(ev: Evidence, conn: str | None = None) -> list[SentRecord]:
    """Every record of every well-formed data frame the mock sent, in order."""
    out: list[SentRecord] = []
    for r in ev.server_texts(conn):
        if r.get("frame") != "data":
            continue
        parsed = parse_frame(ev.spec, str(r.get("text", "")))
        if parsed is None:
            continue
        tr_id, recs = parsed
        for values in recs:
            out.append(SentRecord(float(r["t_spec"]), int(r["seq"]), tr_id, values, len(recs)))
    return out


def number(value: Any) -> Decimal | None:
    """A JSON number or numeric string as Decimal (None if it is not one)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return Decimal(str(value))
    if isinstance(value, str):
        try:
            return Decimal(value.strip())
        except InvalidOperation:
            return None
    return None


def digits(text: str) -> str:
    """The digits of a time text (``09:30:15`` -> ``093015``)."""
    return "".join(ch for ch in text if ch.isdigit())


def expected_event(spec: Spec, rec: SentRecord) -> dict[str, Any]:
    """What the event for a record must say, by the layout's roles."""
    layout = spec.layout(rec.tr_id)
    v = rec.values
    out: dict[str, Any] = {
        "type": layout.kind,
        "tr_id": rec.tr_id,
        "key": v[layout.role("key")],
        "time": v[layout.role("time")],
    }
    if layout.kind == "tick":
        out["price"] = v[layout.role("price")]
        out["volume"] = v[layout.role("volume")]
    else:
        out["asks"] = list(
            zip(
                (v[n] for n in layout.role_list("ask_prices")),
                (v[n] for n in layout.role_list("ask_quantities")),
                strict=True,
            )
        )
        out["bids"] = list(
            zip(
                (v[n] for n in layout.role_list("bid_prices")),
                (v[n] for n in layout.role_list("bid_quantities")),
                strict=True,
            )
        )
    return out


Level = tuple[Decimal | None, Decimal | None]


def levels_match(got: Any, want: Sequence[Level]) -> bool:
    """Whether an event's book side lists the sent ``(price, quantity)`` levels, best first
    (empty levels at the end may be left out)."""
    if not isinstance(got, list) or len(got) > len(want):
        return False
    if not got:
        return not [w for w in want if (w[0] or 0) != 0]
    return all(
        isinstance(level, list)
        and len(level) == 2
        and number(level[0]) == p
        and number(level[1]) == q
        for level, (p, q) in zip(got, want, strict=False)
    )


def _levels(pairs: Sequence[tuple[str, str]]) -> list[Level]:
    return [(number(p), number(q)) for p, q in pairs]


def event_matches(spec: Spec, event: Mapping[str, Any], rec: SentRecord) -> bool:
    """Whether an event line carries exactly the values of a sent record."""
    want = expected_event(spec, rec)
    if event.get("type") != want["type"] or event.get("tr_id") != want["tr_id"]:
        return False
    if event.get("key") != want["key"]:
        return False
    t = event.get("time")
    if not isinstance(t, str) or digits(str(want["time"])) not in digits(t):
        return False
    if want["type"] == "tick":
        return number(event.get("price")) == number(want["price"]) and number(
            event.get("volume")
        ) == number(want["volume"])
    return levels_match(event.get("asks"), _levels(want["asks"])) and levels_match(
        event.get("bids"), _levels(want["bids"])
    )


def output_stop(ev: Evidence) -> float:
    """Spec time the targets' output ends: the first target's end or the ``end`` mark."""
    stop = min((tr.end_t for tr in ev.targets), default=ev.end_t_spec / ev.time_scale)
    return min(stop * ev.time_scale, ev.marks.get("end", stop * ev.time_scale))


def match_in_order(
    events: Sequence[Event],
    streams: Mapping[Any, Sequence[Any]],
    key: Callable[[Event], Any],
    matches: Callable[[Event, Any], bool],
) -> tuple[dict[Any, int], tuple[Event, Any, int] | None]:
    """Match each event to the next sent item of its stream that it equals, in order: events
    matched per stream, and the first event that matched nothing (its key and stream position)."""
    cursor: dict[Any, int] = defaultdict(int)
    counts: dict[Any, int] = defaultdict(int)
    for e in events:
        k = key(e)
        items = streams.get(k, [])
        i = cursor[k]
        while i < len(items) and not matches(e, items[i]):
            i += 1
        if i == len(items):
            return counts, (e, k, cursor[k])
        cursor[k] = i + 1
        counts[k] += 1
    return counts, None


def data_events(ev: Evidence) -> list[Event]:
    """Tick and orderbook events of every target, in time order."""
    return [e for e in ev.all_events() if e.data.get("type") in ("tick", "orderbook")]


def status_events(ev: Evidence) -> list[Event]:
    """Status events of every target, in time order."""
    return [e for e in ev.all_events() if e.data.get("type") == "status"]


def mentions_code(event: Event, code: str) -> bool:
    """Whether a status event carries a broker code (in any field)."""

    def walk(v: Any) -> bool:
        if isinstance(v, str):
            return code in v
        if isinstance(v, Mapping):
            return any(walk(x) for x in v.values())
        if isinstance(v, list):
            return any(walk(x) for x in v)
        return False

    return walk(dict(event.data))


# ------------------------------------------------------------------------------ Kiwoom
# The Kiwoom mock tags its records ``broker: "kiwoom"`` (conn ids ``kiwoom-...``); its wire is read
# from the spec alone: trnm names, SYSTEM codes and FID layouts (KIWOOM-PROTOCOL).
KIWOOM = "kiwoom"


def kiwoom_value(spec: Spec, key: str) -> Any:
    """A value of KIWOOM-PROTOCOL (a broker fact: the newest version's where ``spec`` lacks it)."""
    return broker_clause(spec, "KIWOOM-PROTOCOL").value(key)


def is_kiwoom(record: Record) -> bool:
    """Whether a trace record is the Kiwoom mock's."""
    return record.get("broker") == KIWOOM


def kiwoom_sockets(ev: Evidence) -> list[Socket]:
    """Kiwoom WebSocket sessions, in the order they opened."""
    return [s for s in ev.sockets() if is_kiwoom(s.open_record)]


def kis_sockets(ev: Evidence) -> list[Socket]:
    """KIS WebSocket sessions, in the order they opened."""
    return [s for s in ev.sockets() if not is_kiwoom(s.open_record)]


def trnm(record: Record) -> str | None:
    """The ``trnm`` of a Kiwoom text frame."""
    obj = client_json(record)
    t = obj.get("trnm") if obj is not None else None
    return t if isinstance(t, str) else None


def kiwoom_type_of(spec: Spec, tr_id: str) -> str | None:
    """The Kiwoom realtime type serving a KIS TR (same market and kind), or None."""
    layout = spec.layouts.get(tr_id)
    if layout is None:
        return None
    for code, kl in kiwoom_layouts(spec).items():
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


def registered_kiwoom(ev: Evidence, conn: str) -> set[tuple[str, str]]:
    """Pairs the client asked for in REG frames on ``conn`` that the mock accepted."""
    reg = kiwoom_value(ev.spec, "subscribe")
    asked = [_pairs(client_json(r)) for r in ev.client_texts(conn) if trnm(r) == reg]
    replies = [client_json(r) for r in ev.server_texts(conn) if trnm(r) == reg]
    out: set[tuple[str, str]] = set()
    for pairs, reply in zip(asked, replies, strict=False):
        if reply is not None and reply.get("return_code") == 0:
            out |= pairs
    return out


def kiwoom_reg_accepted(spec: Spec) -> Callable[[Record], bool]:
    """Record predicate: the Kiwoom mock accepted a REG (for scenario scripts' waits)."""
    reg = kiwoom_value(spec, "subscribe")

    def match(r: Record) -> bool:
        obj = client_json(r) if r.get("kind") == "text" and r.get("dir") == "out" else None
        return (
            is_kiwoom(r)
            and obj is not None
            and obj.get("trnm") == reg
            and obj.get("return_code") == 0
        )

    return match


def kiwoom_level(text: Any) -> Decimal | None:
    """A Kiwoom FID value as an absolute number (Kiwoom signs prices with ``+``/``-``)."""
    if not isinstance(text, str):
        return None
    return number(text.strip().lstrip("+- "))
