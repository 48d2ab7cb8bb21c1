"""Sockets: one market-data socket at a time (WS-SINGLE-SOCKET), the primary channel carrying every
KR/US tick and book subscription (WS-PRIMARY-CHANNEL), the idle reconnect (POL-IDLE-RECONNECT) and
the session limits (WS-SESSION-LIMITS, 1.1)."""

from __future__ import annotations

from stockmon.conformance.errors import HarnessError
from stockmon.conformance.evidence import Evidence, Record, Socket
from stockmon.conformance.protocol import (
    ack_code,
    acks,
    best_socket,
    client_packets,
    data_events,
    registered_on,
    slack,
    stalled_socket,
)
from stockmon.conformance.registry import Verdict, check, failed, no_evidence, passed


def _closes(sock: Socket) -> list[Record]:
    return [sock.close_record] if sock.close_record is not None else []


def _two_open(ev: Evidence, expected: str) -> Verdict | None:
    """The failure when two sockets were ever open at once (the first such pair), else None."""
    pairs = ev.overlapping_sockets()
    if not pairs:
        return None
    a, b = pairs[0]
    return failed(
        f"{b.conn} opened at {b.open_t:.1f} s while {a.conn} (opened at {a.open_t:.1f} s) was "
        f"still open{'' if a.close_t is None else f' until {a.close_t:.1f} s'}",
        expected=expected,
        evidence=[a.open_record, b.open_record, *_closes(a)],
    )


@check("WS-SINGLE-SOCKET")
def never_two_sockets_open(ev: Evidence) -> Verdict:
    """At no moment of the trace are two market-data sockets open at once."""
    both = _two_open(ev, "one socket at a time: a new socket only after the old one is closed")
    if both is not None:
        return both
    n = len(ev.sockets())
    if n == 0:
        return no_evidence(
            "the target opened no socket", expected="one market-data socket at a time"
        )
    return passed(f"{n} socket(s), never two open at once")


@check("WS-SINGLE-SOCKET")
def reconnects_after_socket_loss(ev: Evidence) -> Verdict:
    """After the socket is lost the client reconnects (and does nothing else: one socket)."""
    drops = ev.faults("drop_socket")
    if not drops:
        raise HarnessError("the scenario dropped no socket")
    t_drop = float(drops[0]["t_spec"])
    lost = [
        s for s in ev.sockets() if s.open_t <= t_drop and (s.close_t is None or s.close_t >= t_drop)
    ]
    if not lost:
        return failed(
            "no socket was open when the mock dropped it",
            expected="an open socket to lose",
            evidence=drops,
        )
    after = [s for s in ev.sockets() if s.open_t > t_drop]
    if not after:
        return failed(
            f"no new socket within {ev.marks.get('end', ev.end_t_spec) - t_drop:.0f} s of the loss",
            expected="on loss the client reconnects",
            evidence=[*drops, *_closes(lost[0])],
        )
    return passed(f"reconnected {after[0].open_t - t_drop:.1f} s after the loss")


@check("WS-SINGLE-SOCKET")
def fleet_streams_through_one_socket(ev: Evidence) -> Verdict:
    """Several processes of one deployment hold one socket between them, and it streams."""
    both = _two_open(ev, "one socket for the whole fleet (a shared lease decides who holds it)")
    if both is not None:
        return both
    wanted = set(ev.subscriptions)
    for sock in ev.sockets():
        if wanted <= registered_on(ev, sock.conn):
            return passed(f"one socket at a time; {sock.conn} carried every subscription")
    return failed(
        "no socket of the fleet registered every subscription",
        expected=f"one socket streaming {len(wanted)} subscriptions",
        evidence=[s.open_record for s in ev.sockets()][:4],
    )


@check("WS-PRIMARY-CHANNEL")
def every_subscription_streamed_on_the_primary_socket(ev: Evidence) -> Verdict:
    """KR and US ticks and order books all go through the one WebSocket at KIS_WS_URL."""
    wanted = set(ev.subscriptions)
    socks = ev.sockets()
    if not socks:
        return failed(
            "the target never opened a WebSocket to KIS_WS_URL",
            expected="every subscription registered on the primary WebSocket channel",
        )
    best = best_socket(socks, lambda conn: registered_on(ev, conn), wanted)
    assert best is not None
    missing = wanted - registered_on(ev, best.conn)
    if missing:
        return failed(
            f"{len(missing)} of {len(wanted)} subscriptions never registered on one socket: "
            + ", ".join(f"{t}:{k}" for t, k in sorted(missing)),
            expected="every KR/US tick and order-book subscription on the primary channel",
            evidence=[best.open_record, *acks(ev, best.conn)[:6]],
        )
    seen = {(str(e.data.get("tr_id")), str(e.data.get("key"))) for e in data_events(ev)}
    silent = wanted - seen
    if silent:
        return failed(
            "no event on stdout for " + ", ".join(f"{t}:{k}" for t, k in sorted(silent)),
            expected="the data of every subscription delivered as event lines",
        )
    return passed(f"{len(wanted)} subscriptions registered on {best.conn}, each with events")


@check("POL-IDLE-RECONNECT")
def idle_socket_closed_then_reopened(ev: Evidence) -> Verdict:
    """A socket idle for the timeout is closed by the client, then a new one is opened."""
    idle = ev.spec.clause("POL-IDLE-RECONNECT").number("idle_timeout_s")
    tol = slack(ev)
    stall, sock = stalled_socket(ev)
    if sock is None:
        return failed("no socket was open when the mock went silent", expected="an open socket")
    if sock.close_t is None:
        return failed(
            f"the socket stayed open through {ev.marks.get('end', ev.end_t_spec) - stall:.0f} s of silence",
            expected=f"close after {idle:g} s without inbound frames, then open a new socket",
            evidence=ev.faults("stall"),
        )
    if sock.closed_by == "server":
        return failed(
            "the server closed the idle socket; the client never did",
            expected=f"the client closes after {idle:g} s idle",
            evidence=[*ev.faults("stall"), *_closes(sock)],
        )
    last_in = ev.last_inbound_before(sock.conn, sock.close_t)
    base = last_in if last_in is not None else sock.open_t
    idle_for = sock.close_t - base
    if abs(idle_for - idle) > tol:
        return failed(
            f"the client closed the socket after {idle_for:.0f} s without inbound frames",
            expected=f"close after {idle:g} s (±{tol:g} s) idle",
            evidence=[*ev.faults("stall"), *_closes(sock)],
        )
    close_seq = int(sock.close_record["seq"]) if sock.close_record else 0
    early = [
        s
        for s in ev.sockets()
        if s.conn != sock.conn and s.open_t >= stall and int(s.open_record["seq"]) < close_seq
    ]
    if early:
        return failed(
            f"{early[0].conn} was opened before the idle {sock.conn} was closed",
            expected="close, then open (the order the clause states)",
            evidence=[early[0].open_record, *_closes(sock)],
        )
    later = [s for s in ev.sockets() if int(s.open_record["seq"]) > close_seq]
    if not later:
        return failed(
            "the idle socket was closed but no new socket was opened",
            expected="close, then open",
            evidence=_closes(sock),
        )
    return passed(
        f"closed after {idle_for:.0f} s idle, reopened {later[0].open_t - sock.close_t:.1f} s later"
    )


@check("POL-IDLE-RECONNECT")
def subscriptions_restored_after_reconnect(ev: Evidence) -> Verdict:
    """The new socket after an idle reconnect carries every subscription again."""
    _, first = stalled_socket(ev)
    if first is None or first.close_record is None:
        return no_evidence(
            "no reconnect happened", expected="every subscription restored on the new socket"
        )
    later = [s for s in ev.sockets() if int(s.open_record["seq"]) > int(first.close_record["seq"])]
    if not later:
        return no_evidence(
            "no new socket after the idle close",
            expected="every subscription restored on the new socket",
        )
    sock = later[0]
    wanted = set(ev.subscriptions)
    sent = {
        (p.tr_id, p.tr_key)
        for p in client_packets(ev, sock.conn)
        if p.kind == "subscribe" and p.tr_id and p.tr_key
    }
    missing = wanted - sent
    if missing:
        return failed(
            f"after the reconnect {len(missing)} of {len(wanted)} subscriptions were not sent again: "
            + ", ".join(f"{t}:{k}" for t, k in sorted(missing)),
            expected="every subscription restored on the new socket",
            evidence=[sock.open_record, *(p.record for p in client_packets(ev, sock.conn)[:6])],
        )
    return passed(f"all {len(wanted)} subscriptions sent again on {sock.conn}")


@check("WS-SESSION-LIMITS")
def at_most_max_registrations_per_session(ev: Evidence) -> Verdict:
    """No session ever holds more registrations than the limit (no OPSP0008 provoked)."""
    limits = ev.spec.clause("WS-SESSION-LIMITS")
    cap = limits.integer("max_registrations")
    over = limits.string("over_limit_code")
    refused = acks(ev, code=over)
    if refused:
        return failed(
            f"the target went over the limit: {len(refused)} registration(s) refused with {over}",
            expected=f"at most {cap} registrations per session",
            evidence=refused[:3],
        )
    best = 0
    for sock in ev.sockets():
        active: set[tuple[str | None, str | None]] = set()
        for p in client_packets(ev, sock.conn):
            if p.kind == "subscribe":
                active.add((p.tr_id, p.tr_key))
            elif p.kind == "release" and p.obj is not None:
                active.discard((p.tr_id, p.tr_key))
            if len(active) > cap:
                return failed(
                    f"{len(active)} registrations requested on {sock.conn}",
                    expected=f"at most {cap} registrations per session",
                    evidence=[p.record],
                )
        best = max(best, len(active))
    if best == 0:
        return failed(
            f"the target registered nothing ({len(ev.subscriptions)} subscriptions asked)",
            expected=f"up to {cap} registrations on the session",
        )
    return passed(f"at most {best} registrations per session (limit {cap})")


@check("WS-SESSION-LIMITS")
def in_use_refusal_backs_off_before_reconnecting(ev: Evidence) -> Verdict:
    """After 'appkey in use' the client closes, backs off for the spec's delay, then reconnects;
    it never opens a second socket."""
    limits = ev.spec.clause("WS-SESSION-LIMITS")
    code = limits.string("in_use_code")
    backoff = limits.number("in_use_backoff_s")
    tol = slack(ev)
    refusals = acks(ev, code=code)
    if not refusals:
        return no_evidence(
            f"the target was never refused with {code} (it subscribed on no socket)",
            expected=f"back off {backoff:g} s after {code}, then reconnect",
        )
    for r in refusals:
        t = float(r["t_spec"])
        nxt = [s for s in ev.sockets() if int(s.open_record["seq"]) > int(r["seq"])]
        if nxt and nxt[0].open_t < t + backoff - tol:
            return failed(
                f"after {code} at {t:.1f} s the target reconnected {nxt[0].open_t - t:.1f} s later",
                expected=f"back off {backoff:g} s (±{tol:g}) before reconnecting",
                evidence=[r, nxt[0].open_record],
            )
    last = refusals[-1]
    stop = ev.marks.get("end", ev.end_t_spec)
    nxt = [s for s in ev.sockets() if int(s.open_record["seq"]) > int(last["seq"])]
    if not nxt and stop - float(last["t_spec"]) > 2 * backoff + tol:
        return failed(
            f"no reconnect in the {stop - float(last['t_spec']):.0f} s after the last {code}",
            expected=f"back off {backoff:g} s, then reconnect",
            evidence=[last],
        )
    codes = {ack_code(r) for r in refusals}
    return passed(
        f"{len(refusals)} refusal(s) ({', '.join(sorted(c for c in codes if c))}), each waited out"
    )
