"""The internal API, judged as browsers see it (spec 1.2): the key guards every route but health,
the stream delivers every record the mock sent, in order, values equal and in time, snapshots and
status tell the truth, a key added through the API reaches the broker once, and a tab that never
reads delays no other.

The evidence is the browsers' observations (:mod:`stockmon.conformance.browser`) beside the mock's
trace; both are timed on the mock's clock in spec seconds. The spec states no delivery bound, so
the suite's budget for "in time" is its timing tolerance (``REAL_SLACK_S`` real seconds, in spec
seconds): what a browser would call immediate, far above a loaded machine's noise.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from stockmon.conformance.checks import sockets
from stockmon.conformance.evidence import Evidence, Record, Socket
from stockmon.conformance.protocol import (
    SentRecord,
    client_packets,
    event_matches,
    kis_sockets,
    kiwoom_sockets,
    sent_records,
    slack,
)
from stockmon.conformance.registry import Verdict, check, failed, no_evidence, passed
from stockmon.schemas import errors as schema_errors

# The names scenario scripts give their browsers' streams (observations' ``client``).
READER = "reader"  # reads every message: judged for completeness, order and latency
INTRUDER = "intruder"  # offers no ticket or a bad one: must get nothing and the auth close code
# The ``purpose`` of REST calls the checks pick out.
ADD_ONE, FILL, OVER_LIMIT = "add-one", "fill", "over-limit"
STOP_MARK = "api-stop"  # set by a script just before its browsers close
STALL_MARK = "api-stall"
FAILOVER_MARK = "api-failover"  # KIS starts refusing connections


# ------------------------------------------------------------------------------ observations
def observed(ev: Evidence, kind: str, client: str | None = None) -> list[Record]:
    """Observations of one kind (of one stream client, or of every client starting with it)."""
    return [
        o
        for o in ev.observations
        if o.get("kind") == kind and (client is None or str(o.get("client", "")).startswith(client))
    ]


def calls(ev: Evidence, method: str | None = None, auth: str | None = None) -> list[Record]:
    """REST observations (optionally of one method and one kind of caller)."""
    return [
        o
        for o in observed(ev, "http")
        if (method is None or o.get("method") == method) and (auth is None or o.get("auth") == auth)
    ]


def by_client(ev: Evidence, prefix: str) -> dict[str, list[Record]]:
    """Stream observations per client whose name starts with ``prefix``, in the order seen."""
    out: dict[str, list[Record]] = defaultdict(list)
    for o in ev.observations:
        name = str(o.get("client", ""))
        if name.startswith(prefix) and str(o.get("kind", "")).startswith("ws_"):
            out[name].append(o)
    return dict(out)


def messages(obs: Sequence[Record]) -> list[Record]:
    """The messages a stream client received (observations ``ws_message``)."""
    return [o for o in obs if o.get("kind") == "ws_message"]


def _msg(o: Record) -> Mapping[str, Any]:
    m = o.get("message")
    return m if isinstance(m, Mapping) else {}


def budget(ev: Evidence) -> float:
    """Spec seconds within which a record the mock sent must reach a reading browser."""
    return slack(ev)


def _stop(ev: Evidence) -> float:
    return float(ev.marks.get(STOP_MARK, ev.marks.get("end", ev.end_t_spec)))


def _streams(ev: Evidence) -> dict[tuple[str, str], list[SentRecord]]:
    out: dict[tuple[str, str], list[SentRecord]] = defaultdict(list)
    for rec in sent_records(ev):
        out[(rec.tr_id, rec.key(ev.spec))].append(rec)
    return out


def _acked(obs: Sequence[Record]) -> tuple[float, set[str]] | None:
    """When a client's first subscribe was acknowledged and the keys it holds."""
    for o in messages(obs):
        m = _msg(o)
        if m.get("type") == "ack" and m.get("op") == "subscribe":
            keys = m.get("keys")
            return float(o["t_spec"]), {str(k) for k in keys} if isinstance(keys, list) else set()
    return None


def _data(o: Record) -> tuple[tuple[str, str], Mapping[str, Any]] | None:
    """``((tr_id, key), event)`` of a tick or order-book event message."""
    m = _msg(o)
    e = m.get("event")
    if m.get("type") != "event" or not isinstance(e, Mapping):
        return None
    if e.get("type") not in ("tick", "orderbook"):
        return None
    return (str(e.get("tr_id")), str(e.get("key"))), e


def paired(
    ev: Evidence, obs: Sequence[Record], streams: Mapping[tuple[str, str], Sequence[SentRecord]]
) -> Iterator[tuple[Record, tuple[str, str], Mapping[str, Any], int | None]]:
    """A client's tick and book messages, each with the index of the record it carries: the first
    matching record after the one matched before for that key (None when none matches)."""
    cursor: dict[tuple[str, str], int] = defaultdict(int)
    for o in messages(obs):
        d = _data(o)
        if d is None:
            continue
        sk, e = d
        recs = streams.get(sk, [])
        i = cursor[sk]
        while i < len(recs) and not event_matches(ev.spec, e, recs[i]):
            i += 1
        if i < len(recs):
            cursor[sk] = i + 1
        yield o, sk, e, (i if i < len(recs) else None)


def unanswered(probes: Sequence[Record]) -> Verdict | None:
    """No evidence when a call got no answer at all: the target's API was not there to judge."""
    for o in probes:
        if "error" in o:
            return no_evidence(
                f"{o['method']} {o['path']} got no answer ({o['error']})",
                expected="the internal API on STOCKMON_API_HOST:STOCKMON_API_PORT",
                evidence=[o],
            )
    return None


def answered_badly(o: Record, how: str, expected: str) -> Verdict:
    """The failure of one HTTP probe: the call, how it was made, what came back (the body cut
    short) and what the clause wants, with the probe as the evidence."""
    got = o.get("status", o.get("error"))
    return failed(
        f"{o['method']} {o['path']} {how} answered {got}: {str(o.get('body'))[:200]}",
        expected=expected,
        evidence=[o],
    )


def _redact(text: str, secret: str) -> str:
    return text.replace(secret, secret[:4] + "…")


# ------------------------------------------------------------------------------ API-AUTH
def _no_data(body: Any) -> bool:
    """An answer that is an api-error body and nothing else (no quote, list, ticket or status)."""
    return isinstance(body, Mapping) and not schema_errors("api-error", body)


@check("API-AUTH")
def guarded_routes_refuse_without_the_key(ev: Evidence) -> Verdict:
    """Every guarded route answers 401 with an api-error body and no data to no key and to a
    wrong one, and accepts the right key."""
    status = ev.spec.clause("API-AUTH").integer("rest_status")
    probes = [o for o in calls(ev) if o.get("purpose") == "auth-probe"]
    if not probes:
        return no_evidence("no REST call was made", expected="401 without the key")
    routes = {(o["method"], o["path"]) for o in probes}
    silent = unanswered(probes)
    if silent is not None:
        return silent
    for o in probes:
        if o["auth"] == "right":
            if o.get("status") == status:
                return failed(
                    f"{o['method']} {o['path']} with the right key answered {status}",
                    expected="the key of VITE_API_KEY accepted",
                    evidence=[o],
                )
        elif o.get("status") != status or not _no_data(o.get("body")):
            return answered_badly(
                o, f"with {o['auth']} key", f"{status} and an api-error body, no data"
            )
    return passed(f"{len(routes)} guarded routes: 401 without the key and with a wrong one")


@check("API-AUTH")
def stream_without_a_valid_ticket_gets_nothing(ev: Evidence) -> Verdict:
    """A stream offering no ticket, a made-up one or a used one receives no message and is closed
    with the clause's code; a fresh ticket is accepted."""
    auth = ev.spec.clause("API-AUTH")
    code = auth.integer("ws_close_code")
    intruders = by_client(ev, INTRUDER)
    readers = by_client(ev, READER)
    welcomed = [c for c, obs in readers.items() if messages(obs)]
    if not intruders or not welcomed:
        return no_evidence(
            "no stream connection was made with a valid ticket and without one",
            expected=f"close code {code} without a ticket, a welcome with one",
        )
    for client, obs in sorted(intruders.items()):
        got = messages(obs)
        if got:
            return failed(
                f"{client}: {len(got)} messages reached a stream without a valid ticket",
                expected=f"nothing streamed, close code {code}",
                evidence=got[:3],
            )
        closes = [o for o in obs if o.get("kind") in ("ws_closed", "ws_refused")]
        if not closes or closes[0].get("code") != code:
            return failed(
                f"{client}: ended with {closes[0] if closes else 'no close'}",
                expected=f"the WebSocket closed with code {code} ({auth.string('ws_close_reason')})",
                evidence=closes[:1],
            )
    return passed(
        f"{len(intruders)} streams without a valid ticket closed with {code}, nothing sent"
    )


@check("API-AUTH")
def key_never_in_output(ev: Evidence) -> Verdict:
    """The API key appears in no line the target printed (stdout, stderr) and in no answer."""
    key = ev.secrets.get(ev.spec.clause("API-AUTH").string("key_variable"))
    accepted = [o for o in calls(ev, auth="right") if 200 <= int(o.get("status") or 0) < 300]
    if not key or not accepted or not ev.targets:
        return no_evidence(
            "the key was never used on the target's API",
            expected="requests with the key, and the key in no log line",
        )
    for tr in ev.targets:
        for stream, text in (
            ("stderr", tr.stderr),
            ("stdout", "\n".join(x.text for x in tr.stdout)),
        ):
            for n, line in enumerate(text.splitlines(), 1):
                if key in line:
                    return failed(
                        f"target {tr.index} {stream} line {n} holds the key: {_redact(line, key)[:200]}",
                        expected="the key in no URL and no log line (key_in_logs: false)",
                    )
    for o in ev.observations:
        if key in str(o.get("body", "")) or key in str(o.get("headers", "")):
            return failed(
                f"an answer of {o.get('method')} {o.get('path')} holds the key",
                expected="the key in no answer",
            )
    return passed(f"{len(accepted)} requests with the key; it is in no output line or answer")


# ------------------------------------------------------------------------------ API-HEALTH
@check("API-HEALTH")
def health_answers_without_a_key(ev: Evidence) -> Verdict:
    """/healthz answers 200 and /readyz 200 or 503 without a key, with an api-health body."""
    health = ev.spec.clause("API-HEALTH")
    live, ready = health.string("liveness_path"), health.string("readiness_path")
    probes = [
        o
        for o in calls(ev, "GET", "none")
        if o.get("purpose") == "health" and o.get("path") in (live, ready) and "error" not in o
    ]
    if not probes:
        return no_evidence("no health route was called", expected=f"GET {live} and {ready}")
    allowed = {
        live: {health.integer("ok_status")},
        ready: {health.integer("ok_status"), health.integer("not_ready_status")},
    }
    for o in probes:
        body = o.get("body")
        if (
            o.get("status") not in allowed[str(o["path"])]
            or not isinstance(body, Mapping)
            or schema_errors("api-health", body)
        ):
            return answered_badly(
                o,
                "without a key",
                f"{sorted(allowed[str(o['path'])])} with an api-health body, no key needed",
            )
    return passed(f"{len(probes)} health calls answered without a key")


# ------------------------------------------------------------------------------ API-STREAM
@check("API-STREAM")
def messages_numbered_from_one_without_gaps(ev: Evidence) -> Verdict:
    """Each stream connection's messages start with welcome and carry seq 1, 2, 3 ... (no gap)."""
    stream = ev.spec.clause("API-STREAM")
    start, step = stream.integer("seq_start"), stream.integer("seq_step")
    clients = {c: messages(obs) for c, obs in by_client(ev, READER).items()}
    clients = {c: m for c, m in clients.items() if m}
    if not clients:
        return no_evidence("no stream message was received", expected="welcome, then seq 1, 2, ...")
    total = 0
    for client, got in sorted(clients.items()):
        first = _msg(got[0])
        if first.get("type") != stream.strings("on_connect")[0]:
            return failed(
                f"{client}: the first message is {first.get('type')!r}",
                expected="welcome first",
                evidence=got[:1],
            )
        for i, o in enumerate(got):
            want = start + i * step
            if _msg(o).get("seq") != want:
                return failed(
                    f"{client}: message {i + 1} has seq {_msg(o).get('seq')!r}, expected {want}",
                    expected=f"seq from {start}, step {step}, no gaps (per connection)",
                    evidence=got[max(0, i - 1) : i + 1],
                )
        total += len(got)
    return passed(f"{total} messages on {len(clients)} connections, seq without gaps")


@check("API-STREAM")
def every_record_reaches_the_subscriber_in_order(ev: Evidence) -> Verdict:
    """Every record the mock sent for a subscribed key after the ack reaches each reading browser
    once, in the order sent, with the values sent, within the suite's budget (spec seconds); a
    record replaced by a later one of its key counts only when that event states it (conflated)."""
    limit = budget(ev)
    stop = _stop(ev)
    streams = _streams(ev)
    judged = 0
    readers = by_client(ev, READER)
    for client, obs in sorted(readers.items()):
        acked = _acked(obs)
        if acked is None:
            continue
        t_ack, keys = acked
        after: dict[tuple[str, str], int] = defaultdict(int)  # the index after the last match
        matched: dict[tuple[str, str], dict[int, Record]] = defaultdict(dict)
        for o, sk, e, i in paired(ev, obs, streams):
            if i is None:
                return failed(
                    f"{client}: event {dict(e)} (seq {_msg(o).get('seq')}) matches no record "
                    f"the mock sent for {sk[0]}:{sk[1]} after the one delivered before it",
                    expected="each record once, in the order the mock sent it, values equal",
                    evidence=[o],
                )
            # an event may stand for the records it conflated (API-BACKPRESSURE: latest wins,
            # the number replaced stated), e.g. the records of one multi-record frame
            replaced = _msg(o).get("conflated")
            n = replaced if isinstance(replaced, int) and replaced > 0 else 0
            for j in range(max(after[sk], i - n), i + 1):
                matched[sk][j] = o
            after[sk] = i + 1
        for sk, recs in sorted(streams.items()):
            if sk[1] not in keys:
                continue
            for i, r in enumerate(recs):
                if not t_ack < r.t < stop - limit:
                    continue
                judged += 1
                got = matched[sk].get(i)
                if got is None:
                    early = next(
                        (
                            o
                            for o in messages(obs)
                            if (d := _data(o)) is not None
                            and d[0] == sk
                            and event_matches(ev.spec, d[1], r)
                        ),
                        None,
                    )
                    if early is not None:
                        return failed(
                            f"{client}: the {sk[0]}:{sk[1]} record the mock sent at t={r.t:.2f} "
                            f"spec s arrived out of order (seq {_msg(early).get('seq')}, after a "
                            "record sent later)",
                            expected="each key's records in the order the mock sent them",
                            evidence=[early],
                        )
                    return failed(
                        f"{client}: the record the mock sent at t={r.t:.2f} spec s for "
                        f"{sk[0]}:{sk[1]} never reached the subscriber (nor was it stated as "
                        "conflated into a later event)",
                        expected="every record sent after the ack delivered, or counted in the "
                        "conflated field of the event that replaced it",
                        evidence=[x for x in ev.records if x.get("seq") == r.seq],
                    )
                late = float(got["t_spec"]) - r.t
                if late > limit:
                    return failed(
                        f"{client}: {sk[0]}:{sk[1]} record sent at t={r.t:.2f} arrived "
                        f"{late:.2f} spec s later",
                        expected=f"within {limit:g} spec s (the suite's budget)",
                        evidence=[got],
                    )
    if not judged:
        return no_evidence(
            "no record was sent for a subscribed key while a browser read the stream",
            expected="subscribed keys' records delivered",
        )
    return passed(f"{judged} records delivered in order, values equal, within {limit:g} spec s")


# ------------------------------------------------------------------------------ API-SNAPSHOT
@check("API-SNAPSHOT")
def snapshots_equal_the_last_record(ev: Evidence) -> Verdict:
    """GET /v1/quotes/{key} and /v1/books/{key} return the latest tick and book the mock sent
    (or one sent while the request was under way)."""
    snap = ev.spec.clause("API-SNAPSHOT")
    kinds = {
        snap.string("quote_path").split("{", 1)[0]: ("tick", "tick"),
        snap.string("book_path").split("{", 1)[0]: ("orderbook", "book"),
    }
    limit = budget(ev)
    by_key: dict[tuple[str, str], list[SentRecord]] = defaultdict(list)
    for rec in sent_records(ev):
        by_key[(ev.spec.layout(rec.tr_id).kind, rec.key(ev.spec))].append(rec)
    judged = 0
    for o in calls(ev, "GET", "right"):
        path = str(o.get("path"))
        prefix = next((p for p in kinds if path.startswith(p)), None)
        if prefix is None or o.get("purpose") != "snapshot":
            continue
        kind, field_name = kinds[prefix]
        key = path[len(prefix) :]
        recs = by_key.get((kind, key), [])
        sent_t, done_t = float(o["sent_t"]), float(o["t_spec"])
        floor = max((i for i, r in enumerate(recs) if r.t <= sent_t - limit), default=None)
        if floor is None:
            continue  # nothing was sent for it long enough before: not judged
        judged += 1
        fresh = [r for r in recs[floor:] if r.t <= done_t]
        body = o.get("body")
        got = body.get(field_name) if isinstance(body, Mapping) else None
        if o.get("status") != snap.integer("ok_status") or not isinstance(got, Mapping):
            return failed(
                f"GET {path} answered {o.get('status', o.get('error'))} although the mock had "
                f"sent {floor + 1} {kind} records of {key}",
                expected=f"{snap.integer('ok_status')} with the latest {kind}",
                evidence=[o],
            )
        if not any(event_matches(ev.spec, got, r) for r in fresh):
            stale = any(event_matches(ev.spec, got, r) for r in recs[:floor])
            return failed(
                f"GET {path} returned {'an older' if stale else 'a'} {kind} that is not the latest "
                f"sent: {dict(got)}",
                expected=f"the {kind} the mock sent last (at t={recs[floor].t:.2f} spec s) or later",
                evidence=[o],
            )
    if not judged:
        return no_evidence(
            "no snapshot was asked for a key with data", expected="GET /v1/quotes/{key}"
        )
    return passed(f"{judged} snapshots, each the latest record sent")


# ------------------------------------------------------------------------------ API-STATUS
def _last_out_before(times: Sequence[float], t: float) -> float | None:
    last = None
    for x in times:
        if x > t:
            break
        last = x
    return last


@check("API-STATUS")
def status_shows_a_silent_broker(ev: Evidence) -> Verdict:
    """GET /v1/status is an api-status body whose last_inbound_age_s tracks the time since the
    broker last sent anything, so a stall shows while it happens."""
    limit = budget(ev)
    polls = [o for o in calls(ev, "GET", "right") if o.get("purpose") == "status"]
    if not polls:
        return no_evidence("GET /v1/status was never answered", expected="status polls")
    out_times = [
        float(r["t_spec"]) for r in ev.records if r.get("channel") == "ws" and r.get("dir") == "out"
    ]
    stall = ev.marks.get(STALL_MARK)
    stalled = 0
    for o in polls:
        body = o.get("body")
        problems = (
            schema_errors("api-status", body) if isinstance(body, Mapping) else ["no JSON body"]
        )
        if o.get("status") != 200 or problems:
            return failed(
                f"GET /v1/status answered {o.get('status', o.get('error'))}: "
                f"{problems[0] if problems else ''}",
                expected="200 and an api-status body",
                evidence=[o],
            )
        assert isinstance(body, Mapping)
        sent_t, done_t = float(o["sent_t"]), float(o["t_spec"])
        newest = _last_out_before(out_times, done_t)
        oldest = _last_out_before(out_times, sent_t - limit)
        if newest is None or oldest is None:
            continue
        lo, hi = max(0.0, sent_t - newest) - limit, done_t - oldest + limit
        age = body.get("last_inbound_age_s")
        if not isinstance(age, int | float) or not lo <= age <= hi:
            return failed(
                f"last_inbound_age_s {age!r} at t={sent_t:.2f} spec s; the broker last sent "
                f"at t={newest:.2f}",
                expected=f"between {max(0.0, lo):.1f} and {hi:.1f} spec s",
                evidence=[o],
            )
        if stall is not None and sent_t - newest >= 2 * limit:
            stalled += 1
    if not stalled:
        return no_evidence(
            "no status poll fell in a stall of the broker",
            expected="a poll while the broker sent nothing",
        )
    return passed(f"{len(polls)} status polls; {stalled} during the stall showed its age")


# ------------------------------------------------------------------------------ API-SUBSCRIPTIONS
def _item(o: Record) -> tuple[str, str] | None:
    body = o.get("request")
    if not isinstance(body, Mapping):
        return None
    return str(body.get("tr_id")), str(body.get("key"))


def _subscribe_packets(ev: Evidence, item: tuple[str, str]) -> list[Record]:
    return [
        p.record
        for p in client_packets(ev)
        if p.kind == "subscribe" and (p.tr_id, p.tr_key) == item
    ]


@check("API-SUBSCRIPTIONS")
def added_key_reaches_the_broker_once(ev: Evidence) -> Verdict:
    """A key added with POST /v1/subscriptions is answered 201 and reaches the broker as exactly
    one subscribe packet."""
    subs = ev.spec.clause("API-SUBSCRIPTIONS")
    adds = [o for o in calls(ev, "POST") if o.get("purpose") == ADD_ONE]
    item = _item(adds[0]) if adds else None
    if item is None:
        return no_evidence("no key was added through the API", expected="POST /v1/subscriptions")
    o = adds[0]
    if o.get("status") != subs.integer("created_status"):
        return failed(
            f"POST {o['path']} {item} answered {o.get('status', o.get('error'))}",
            expected=f"{subs.integer('created_status')} for a new subscription",
            evidence=[o],
        )
    packets = _subscribe_packets(ev, item)
    if len(packets) != 1:
        return failed(
            f"{len(packets)} subscribe packets for {item[0]}:{item[1]} reached the broker",
            expected="exactly one subscribe packet for a key added through the API",
            evidence=packets[:3] or [o],
        )
    return passed(f"{item[0]}:{item[1]} added: 201, one subscribe packet")


@check("API-SUBSCRIPTIONS")
def subscription_over_the_limit_is_refused(ev: Evidence) -> Verdict:
    """Up to the limit (WS-SESSION-LIMITS) POSTs are accepted; the next is 409 with the limit's
    error, names the clause, and never reaches the broker."""
    subs = ev.spec.clause("API-SUBSCRIPTIONS")
    clause = subs.string("limit_clause")
    fills = [o for o in calls(ev, "POST") if o.get("purpose") in (ADD_ONE, FILL)]
    over = [o for o in calls(ev, "POST") if o.get("purpose") == OVER_LIMIT]
    if not over:
        return no_evidence("the limit was never reached", expected="a POST over the limit")
    for o in fills:
        if o.get("status") != subs.integer("created_status"):
            return failed(
                f"POST {_item(o)} under the limit answered {o.get('status', o.get('error'))}",
                expected=f"{subs.integer('created_status')} up to the limit",
                evidence=[o],
            )
    o = over[0]
    body = o.get("body")
    ok = (
        o.get("status") == subs.integer("over_limit_status")
        and isinstance(body, Mapping)
        and body.get("error") == subs.string("over_limit_error")
        and body.get("clause") == clause
    )
    if not ok:
        return failed(
            f"the POST over the limit answered {o.get('status', o.get('error'))}: {str(body)[:200]}",
            expected=f"{subs.integer('over_limit_status')}, error "
            f"{subs.string('over_limit_error')}, clause {clause}",
            evidence=[o],
        )
    item = _item(o)
    leaked = _subscribe_packets(ev, item) if item is not None else []
    if leaked:
        return failed(
            f"the refused {item} reached the broker anyway",
            expected="no subscribe packet for a refused key",
            evidence=leaked[:1],
        )
    return passed(
        f"{len(fills)} accepted up to the limit; the next refused with 409 naming {clause}"
    )


# ------------------------------------------------------------------------------ API-BACKPRESSURE
@check("API-BACKPRESSURE")
def a_frozen_subscriber_delays_no_other(ev: Evidence) -> Verdict:
    """While one tab never reads, every record the mock sends reaches a reading tab in time (the
    record itself, or a later one of its key when conflated)."""
    limit = budget(ev)
    stalled = [o for o in observed(ev, "ws_stalled") if o.get("opened")]
    readers = by_client(ev, READER)
    if not stalled or not readers:
        return no_evidence(
            "no stalled subscriber beside a reading one", expected="a tab that never reads"
        )
    start = float(stalled[0]["t_spec"]) + limit
    stop = _stop(ev)
    streams = _streams(ev)
    judged = 0
    for client, obs in sorted(readers.items()):
        acked = _acked(obs)
        if acked is None:
            continue
        t_ack, keys = acked
        arrivals: dict[tuple[str, str], list[tuple[int, float, Record]]] = defaultdict(list)
        for o, sk, _, i in paired(ev, obs, streams):
            if i is not None:
                arrivals[sk].append((i, float(o["t_spec"]), o))
        for sk, recs in sorted(streams.items()):
            if sk[1] not in keys:
                continue
            got = arrivals[sk]
            for i, r in enumerate(recs):
                if not max(start, t_ack) < r.t < stop - limit:
                    continue
                judged += 1
                first = next(((t, o) for j, t, o in got if j >= i), None)
                if first is None or first[0] - r.t > limit:
                    delay = "never" if first is None else f"{first[0] - r.t:.2f} spec s later"
                    return failed(
                        f"{client}: with a stalled subscriber beside it, the {sk[0]}:{sk[1]} "
                        f"record sent at t={r.t:.2f} (or a later one) arrived {delay}",
                        expected=f"within {limit:g} spec s: fan-out never waits for a slow tab",
                        evidence=[first[1]] if first else stalled[:1],
                    )
    if not judged:
        return no_evidence(
            "no record was sent while a tab stalled and another read",
            expected="records delivered to the reading tab",
        )
    return passed(f"{judged} records reached the reading tab in time beside a stalled one")


# ------------------------------------------------------------------------------ API-STATUS (failover)
def _state_at(ev: Evidence, sockets: Sequence[Socket], sent_t: float, done_t: float) -> bool:
    """Whether one of ``sockets`` was open from well before a poll until after it."""
    limit = budget(ev)
    return any(
        s.open_t + limit <= sent_t and (s.close_t is None or done_t + limit <= s.close_t)
        for s in sockets
    )


@check("API-STATUS")
def status_shows_the_failover(ev: Evidence) -> Verdict:
    """While KIS serves, GET /v1/status says broker kis, failover primary; while the Kiwoom
    backup serves after a failover, broker kiwoom, failover backup."""
    states = ev.spec.clause("API-STATUS").strings("failover_states")
    primary, backup = states[1], states[2]
    polls = [
        o
        for o in calls(ev, "GET", "right")
        if o.get("purpose") == "status" and isinstance(o.get("body"), Mapping)
    ]
    fault = ev.marks.get(FAILOVER_MARK)
    kis = [s for s in kis_sockets(ev) if fault is None or s.open_t < fault]
    backup_socks = kiwoom_sockets(ev)
    judged = {primary: 0, backup: 0}
    for o in polls:
        body = o["body"]
        sent_t, done_t = float(o["sent_t"]), float(o["t_spec"])
        if fault is not None and done_t < fault and _state_at(ev, kis, sent_t, done_t):
            want = ("kis", primary)
        elif _state_at(ev, backup_socks, sent_t, done_t):
            want = ("kiwoom", backup)
        else:
            continue  # in between: connecting, failing over or probing
        judged[want[1]] += 1
        if (body.get("broker"), body.get("failover")) != want:
            return failed(
                f"at t={sent_t:.1f} spec s status says broker {body.get('broker')!r}, failover "
                f"{body.get('failover')!r}",
                expected=f"broker {want[0]!r}, failover {want[1]!r} while that broker serves",
                evidence=[o],
            )
    if not judged[backup] or not judged[primary]:
        return no_evidence(
            "no status poll while KIS served and while the Kiwoom backup served "
            f"({judged[primary]} and {judged[backup]})",
            expected="polls before and after a failover",
        )
    return passed(
        f"{judged[primary]} polls on KIS said primary, {judged[backup]} on Kiwoom said backup"
    )


# ------------------------------------------------------------------------------ API-FLEET
FLEET_READER = f"{READER}-replica"  # the fleet story's tabs: f"{FLEET_READER}{index}"
KILL = "fleet_kill"  # the observation a fleet script makes when it SIGKILLs the holder


def _event_id(value: Any) -> tuple[int, ...] | None:
    """A stream entry id ``<ms>-<seq>`` as a comparable tuple (None when it is not one)."""
    parts = str(value).split("-")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        return None
    return tuple(int(p) for p in parts)


def _kill(ev: Evidence) -> Record | None:
    return next((o for o in ev.observations if o.get("kind") == KILL), None)


@check("API-FLEET")
def survivor_is_told_of_the_takeover_gap(ev: Evidence) -> Verdict:
    """When the replica holding the broker socket is SIGKILLed, a tab on a surviving replica stays
    connected, receives a status event of state gap naming the event_ids around it (gap_fields),
    and then events again."""
    fleet = ev.spec.clause("API-FLEET")
    gap_state = fleet.string("gap_state")
    gap_fields = fleet.strings("gap_fields")
    expected = (
        f"a status event of state {gap_state} with {', '.join(gap_fields)} on the survivor's "
        "tab, then events again, the tab never closed"
    )
    kill = _kill(ev)
    if kill is None:
        return no_evidence("no replica was killed (the holder was never found)", expected=expected)
    t_kill = float(kill["t_spec"])
    survivor = str(kill["survivor"])
    obs = by_client(ev, survivor).get(survivor, [])
    if not messages(obs):
        return no_evidence(f"the survivor's tab {survivor} received nothing", expected=expected)
    closed = [o for o in obs if o.get("kind") in ("ws_closed", "ws_refused")]
    if closed and float(closed[0]["t_spec"]) < _stop(ev):
        return failed(
            f"the survivor's tab {survivor} was closed at {float(closed[0]['t_spec']):.1f} s "
            f"(the holder was killed at {t_kill:.1f} s)",
            expected=expected,
            evidence=closed[:1],
        )
    after = [o for o in messages(obs) if float(o["t_spec"]) >= t_kill]
    gap_at = next(
        (
            i
            for i, o in enumerate(after)
            if _msg(o).get("type") == "event"
            and isinstance(_msg(o).get("event"), Mapping)
            and _msg(o)["event"].get("type") == "status"
            and _msg(o)["event"].get("state") == gap_state
        ),
        None,
    )
    if gap_at is None:
        return failed(
            f"the survivor's tab got {len(after)} message(s) after the kill at {t_kill:.1f} s, "
            f"none a status of state {gap_state}",
            expected=expected,
            evidence=after[:3],
        )
    gap = _msg(after[gap_at])["event"]
    missing = [f for f in gap_fields if f not in gap]
    if missing:
        return failed(
            f"the gap status lacks {', '.join(missing)}",
            expected=expected,
            evidence=[after[gap_at]],
        )
    data = [o for o in after[gap_at + 1 :] if _data(o) is not None]
    if not data:
        return failed(
            "no tick or book reached the survivor's tab after the gap status",
            expected=expected,
            evidence=[after[gap_at]],
        )
    return passed(
        f"holder killed at {t_kill:.1f} s; gap status at {float(after[gap_at]['t_spec']):.1f} s "
        f"({gap_fields[0]}={gap.get(gap_fields[0])}, {gap_fields[1]}={gap.get(gap_fields[1])}); "
        f"{len(data)} event(s) after it, the tab still open"
    )


@check("API-FLEET")
def no_event_delivered_twice(ev: Evidence) -> Verdict:
    """On every stream connection of the fleet's tabs the event_ids strictly increase (the same
    event_id twice is a duplicate), through the takeover too."""
    expected = "event_ids (stream entry ids) strictly increasing on each connection"
    seen = 0
    for client, obs in sorted(by_client(ev, FLEET_READER).items()):
        last: tuple[Record, tuple[int, ...]] | None = None
        earlier: dict[tuple[int, ...], Record] = {}
        for o in messages(obs):
            raw = _msg(o).get("event_id")
            if raw is None:
                continue
            eid = _event_id(raw)
            if eid is None:
                return failed(
                    f"{client}: event_id {raw!r} is not a stream entry id",
                    expected=expected,
                    evidence=[o],
                )
            if last is not None and eid <= last[1]:
                first = earlier.get(eid)
                again = (
                    f"a duplicate: delivered already at {float(first['t_spec']):.1f} s"
                    if first is not None
                    else "a step back"
                )
                return failed(
                    f"{client}: event_id {raw} at {float(o['t_spec']):.1f} s after "
                    f"{_msg(last[0]).get('event_id')} ({again})",
                    expected=expected,
                    evidence=[x for x in (first, last[0], o) if x is not None],
                )
            last, seen, earlier[eid] = (o, eid), seen + 1, o
    if not seen:
        return no_evidence(
            "no tab of the fleet received an event with an event_id", expected=expected
        )
    return passed(f"{seen} event(s) with event_ids, strictly increasing on every connection")


@check("API-FLEET")
def fleet_holds_one_broker_socket(ev: Evidence) -> Verdict:
    """Through the holder's death and the takeover the fleet never has two broker sockets open."""
    if _kill(ev) is None:
        return no_evidence(
            "no replica was killed (the holder was never found)",
            expected="one broker socket at a time through a takeover",
        )
    return sockets.never_two_sockets_open(ev)
