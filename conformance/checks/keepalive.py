"""Keep-alive: the application ping (KA-PING), the heartbeat timer (KA-HEARTBEAT), the two timers
(KA-TIMERS) and, from 1.1, answering the server's own PINGPONG (KA-SERVER-PINGPONG)."""

from __future__ import annotations

import bisect
import json

from stockmon.conformance.errors import HarnessError
from stockmon.conformance.evidence import Evidence, Record, Socket, not_data
from stockmon.conformance.protocol import (
    Packet,
    client_packets,
    reflections,
    server_pings,
    slack,
    stalled_socket,
)
from stockmon.conformance.registry import Verdict, check, failed, no_evidence, passed
from stockmon.schemas import errors as schema_errors
from stockmon.spec.model import thaw

# Non-normative: a client ping sent sooner than this fraction of the ping interval after a
# reflection of its own ping is an answer to that reflection (a timer ping comes a whole interval
# after the previous one, and the reflection follows a ping within milliseconds).
_ANSWER_FRACTION = 0.25


def _interval(ev: Evidence) -> float:
    return ev.spec.clause("KA-PING").number("interval_s")


def _end(ev: Evidence, sock: Socket) -> float:
    stop = ev.marks.get("end", ev.end_t_spec)
    return stop if sock.close_t is None else min(sock.close_t, stop)


def _own_pings(ev: Evidence, conn: str) -> list[Packet]:
    return [p for p in client_packets(ev, conn) if p.kind == "ping"]


def _client_closed(ev: Evidence, sock: Socket) -> bool:
    """Closed by the client of its own accord (a close frame, or a TCP drop the harness did not
    inject), before the harness asked it to stop."""
    if sock.close_t is not None and sock.close_t >= ev.marks.get("end", ev.end_t_spec):
        return False
    if sock.closed_by == "client":
        return True
    if sock.closed_by == "abrupt" and sock.close_t is not None:
        dropped = [f for f in ev.faults("drop_socket") if float(f["t_spec"]) <= sock.close_t]
        return not dropped
    return False


@check("KA-PING")
def pings_match_the_spec_packet(ev: Evidence) -> Verdict:
    """Every application ping is exactly the spec's packet, sent as a text frame."""
    packet = thaw(ev.spec.clause("KA-PING").value("packet"))
    pings = [p for p in client_packets(ev) if p.kind == "ping"]
    if not pings:
        return failed(
            "the target sent no application ping at all",
            expected=f"the text frame {json.dumps(packet)} every {_interval(ev):g} s",
            evidence=[s.open_record for s in ev.sockets()][:3],
        )
    for p in pings:
        if p.obj != packet or schema_errors("kis-ws-client-pingpong", p.obj):
            return failed(
                f"a ping was {p.record.get('text')!r}",
                expected=f"exactly {json.dumps(packet)}",
                evidence=[p.record],
            )
    return passed(f"{len(pings)} pings, each exactly {json.dumps(packet)}")


@check("KA-PING")
def pings_sent_every_interval(ev: Evidence) -> Verdict:
    """Pings follow each other (and the socket's opening) every interval, never faster or slower."""
    interval = _interval(ev)
    tol = slack(ev)
    judged = 0
    for sock in ev.sockets():
        end = _end(ev, sock)
        if end - sock.open_t < interval + tol:
            continue
        judged += 1
        prev, prev_rec = sock.open_t, sock.open_record
        pings = _own_pings(ev, sock.conn)
        for i, p in enumerate(pings):
            gap = p.t - prev
            if i > 0 and gap < interval - tol:
                return failed(
                    f"on {sock.conn} a ping came {gap:.1f} s after the previous one",
                    expected=f"one ping every {interval:g} s (±{tol:g} s)",
                    evidence=[prev_rec, p.record],
                )
            if gap > interval + tol:
                return failed(
                    f"on {sock.conn} {gap:.1f} s passed without a ping "
                    f"({'after the socket opened' if i == 0 else 'after the previous ping'})",
                    expected=f"one ping every {interval:g} s (±{tol:g} s)",
                    evidence=[prev_rec, p.record],
                )
            prev, prev_rec = p.t, p.record
        if end - prev > interval + tol:
            return failed(
                f"on {sock.conn} no ping during the last {end - prev:.1f} s the socket was open",
                expected=f"one ping every {interval:g} s (±{tol:g} s)",
                evidence=[prev_rec, *([sock.close_record] if sock.close_record else [])],
            )
    if judged == 0:
        return _short_sockets(ev, interval + tol, "the ping interval")
    return passed(f"pings every {interval:g} s (±{tol:g} s) on {judged} socket(s)")


def _short_sockets(ev: Evidence, needed_s: float, what: str) -> Verdict:
    """No socket lived ``needed_s``: the target's doing (it lost or closed every socket on its own)
    unless the scenario injected a fault, in which case the harness did not make its situation."""
    socks = ev.sockets()
    if ev.faults() or not socks:
        raise HarnessError(f"no socket stayed open long enough to judge {what}")
    longest = max(_end(ev, s) - s.open_t for s in socks)
    closed = [s.close_record for s in socks if s.close_record is not None]
    return no_evidence(
        f"none of the target's {len(socks)} socket(s) stayed open long enough to judge {what} "
        f"(the longest {longest:.1f} s, {needed_s:g} s needed; no fault was injected)",
        expected="a socket kept open for the whole scenario",
        evidence=closed[:3],
    )


def _reflection_answers(ev: Evidence) -> tuple[int, list[tuple[Record, Record]]]:
    window = _interval(ev) * _ANSWER_FRACTION
    found: list[tuple[Record, Record]] = []
    refl = reflections(ev)
    pings: dict[str, tuple[list[Packet], list[int]]] = {}
    for r in refl:
        t = float(r["t_spec"])
        conn = str(r["conn"])
        if conn not in pings:
            own = _own_pings(ev, conn)
            pings[conn] = (own, [int(p.record["seq"]) for p in own])
        own, seqs = pings[conn]
        # The first own ping after the reflection in trace order (binary search: a ping storm
        # has as many reflections as pings, and judging must stay linear in the trace).
        i = bisect.bisect_right(seqs, int(r["seq"]))
        while i < len(own) and own[i].t <= t:
            i += 1
        if i < len(own) and own[i].t <= t + window:
            found.append((r, own[i].record))
    return len(refl), found


def _reflection_verdict(ev: Evidence, clause_text: str) -> Verdict:
    n, answered = _reflection_answers(ev)
    if answered:
        r, p = answered[0]
        return failed(
            f"{len(answered)} of {n} reflections of the target's own ping were answered with "
            f"another ping (the first {p['t_spec'] - r['t_spec']:.2f} s later): a ping storm",
            expected=clause_text,
            evidence=[r, p],
        )
    if n == 0:
        return no_evidence(
            "the target sent no ping the mock reflected, so no reflection to judge",
            expected=clause_text,
        )
    return passed(f"none of {n} reflections was answered")


@check("KA-HEARTBEAT")
def reflected_pings_not_answered(ev: Evidence) -> Verdict:
    """A server reflecting the client's ping gets no answer: only the timer sends pings."""
    return _reflection_verdict(
        ev,
        "the server may reflect a ping; the client's heartbeat timer alone schedules the next one "
        f"{_interval(ev):g} s after the last send",
    )


@check("KA-SERVER-PINGPONG")
def own_ping_reflection_never_answered(ev: Evidence) -> Verdict:
    """A reflection of the client's own ping is never answered (no ping storm)."""
    return _reflection_verdict(
        ev, "server PINGPONG (with datetime) answered; reflections of our own ping never answered"
    )


@check("KA-HEARTBEAT")
def missing_reflections_tolerated(ev: Evidence) -> Verdict:
    """With a server that never reflects pings, the client keeps its socket and its ping rhythm."""
    interval = _interval(ev)
    tol = slack(ev)
    if not any(_own_pings(ev, s.conn) for s in ev.sockets()):
        return no_evidence(
            "the target opened no socket or sent no ping on it",
            expected=f"one ping every {interval:g} s whether or not the server reflects it",
        )
    for sock in ev.sockets():
        if (
            _client_closed(ev, sock)
            and sock.close_t is not None
            and sock.close_t < ev.marks.get("end", ev.end_t_spec)
        ):
            return failed(
                f"the target closed {sock.conn} {sock.close_t - sock.open_t:.1f} s after opening it, "
                "although data kept flowing and the server simply did not reflect pings",
                expected="the server may ignore pings: no reconnect because no reflection came",
                evidence=[sock.open_record, *([sock.close_record] if sock.close_record else [])],
            )
        pings = _own_pings(ev, sock.conn)
        if not pings:
            continue
        prev = pings[0].t
        for p in pings[1:]:
            if p.t - prev > interval + tol:
                return failed(
                    f"pings stopped for {p.t - prev:.1f} s on {sock.conn} when no reflection came",
                    expected=f"one ping every {interval:g} s whether or not the server reflects it",
                    evidence=[p.record],
                )
            prev = p.t
        if _end(ev, sock) - prev > interval + tol:
            return failed(
                f"the target stopped pinging on {sock.conn} {_end(ev, sock) - prev:.1f} s before the end",
                expected=f"one ping every {interval:g} s whether or not the server reflects it",
                evidence=[pings[-1].record],
            )
    return passed("no reflection came and the target kept its socket and its ping rhythm")


@check("KA-SERVER-PINGPONG")
def server_pingpong_answered_by_text_echo(ev: Evidence) -> Verdict:
    """Every server PINGPONG is answered once, as a text frame echoing its datetime, within grace."""
    grace = ev.mock.get("unanswered_pingpong_grace_s")
    if not grace:
        raise HarnessError("the scenario ran the mock without an unanswered-PINGPONG grace")
    stop = ev.marks.get("end", ev.end_t_spec)
    tol = slack(ev)
    sent = server_pings(ev)
    if not sent:
        period = ev.mock.get("server_pingpong_period_s")
        if isinstance(period, int | float) and period > 0:
            longest = max((_end(ev, s) - s.open_t for s in ev.sockets()), default=0.0)
            if longest < period:
                return _short_sockets(ev, period, "the answer to a server PINGPONG")
        raise HarnessError("the mock sent no server PINGPONG during the scenario")
    judged = 0
    for sp in sent:
        t = float(sp["t_spec"])
        conn = str(sp["conn"])
        header = (sp.get("json") or {}).get("header", {})
        dt = header.get("datetime")
        sock = next((s for s in ev.sockets() if s.conn == conn), None)
        answers = [
            p
            for p in client_packets(ev, conn)
            if p.kind == "ping_answer" and p.datetime == dt and p.t >= t
        ]
        if len(answers) > 1:
            return failed(
                f"the server PINGPONG {dt} was answered {len(answers)} times",
                expected="exactly one text echo per server PINGPONG",
                evidence=[sp, *(a.record for a in answers[:3])],
            )
        if answers:
            a = answers[0]
            errs = schema_errors("kis-ws-client-pingpong", a.obj)
            if errs:
                return failed(
                    f"the answer {a.record.get('text')!r} does not validate: {errs[0]}",
                    expected="a text echo of the server PINGPONG (schema kis-ws-client-pingpong)",
                    evidence=[sp, a.record],
                )
            if a.t > t + grace + tol:
                return failed(
                    f"the server PINGPONG {dt} was answered {a.t - t:.1f} s later",
                    expected=f"a text echo within the {grace:g} s the server waits",
                    evidence=[sp, a.record],
                )
            judged += 1
            continue
        open_until = stop if sock is None or sock.close_t is None else min(sock.close_t, stop)
        dropped_for_it = (
            sock is not None and sock.closed_by == "server" and sock.close_t is not None
        )
        if open_until < t + grace and not dropped_for_it:
            continue  # the scenario ended (or the client closed) before the answer was due
        pongs = [
            r
            for r in ev.select(channel="ws", kind="pong", dir="in", conn=conn)
            if float(r["t_spec"]) >= t
        ]
        how = " (it sent an RFC 6455 pong frame instead of a text echo)" if pongs else ""
        evidence = [sp, *pongs[:1]]
        if sock is not None and sock.close_record is not None:
            evidence.append(sock.close_record)
        return failed(
            f"the server PINGPONG {dt} on {conn} was never answered{how}",
            expected=f"a text echo of the PINGPONG (same datetime) within {grace:g} s",
            evidence=evidence,
        )
    return passed(f"{judged} server PINGPONGs answered once each by a text echo")


@check("KA-TIMERS")
def idle_measured_from_last_inbound(ev: Evidence) -> Verdict:
    """While nothing arrives, the client's own pings do not keep the socket 'alive': it closes at
    idle timeout after the last *inbound* frame. (On the wire, a client whose sends reset the idle
    timer is indistinguishable from one without an idle timer: both keep a silent socket forever.)"""
    idle = ev.spec.clause("POL-IDLE-RECONNECT").number("idle_timeout_s")
    tol = slack(ev)
    stall, sock = stalled_socket(ev)
    if sock is None:
        return failed(
            "no socket was open when the mock went silent",
            expected="an open, subscribed socket",
            evidence=ev.faults("stall"),
        )
    end = _end(ev, sock)
    sends = [p for p in client_packets(ev, sock.conn) if stall < p.t < end]
    if not sends:
        return no_evidence(
            "the target sent nothing while the mock was silent",
            expected=f"pings go on while silent; close {idle:g} s after the last inbound frame",
        )
    if sock.close_t is None or not _client_closed(ev, sock):
        return failed(
            f"the target kept sending ({len(sends)} packets) on a socket that received nothing "
            f"for {end - stall:.0f} s and never closed it",
            expected=f"sending never resets last-inbound: close {idle:g} s after the last inbound frame",
            evidence=[*ev.faults("stall"), sends[0].record, sends[-1].record],
        )
    last_in = ev.last_inbound_before(sock.conn, sock.close_t)
    base = last_in if last_in is not None else sock.open_t
    if sock.close_t > base + idle + tol:
        return failed(
            f"the target closed {sock.close_t - base:.0f} s after the last inbound frame "
            "although it kept sending meanwhile",
            expected=f"close {idle:g} s (±{tol:g}) after the last inbound frame, whatever was sent",
            evidence=[sends[-1].record, *([sock.close_record] if sock.close_record else [])],
        )
    return passed(
        f"closed {sock.close_t - base:.0f} s after the last inbound frame despite sending"
    )


@check("KA-TIMERS")
def inbound_frames_reset_idle_timer(ev: Evidence) -> Verdict:
    """Any inbound frame (reflection, server PINGPONG, ack) resets last-inbound: no idle reconnect
    while such frames keep arriving, even without market data."""
    idle = ev.spec.clause("POL-IDLE-RECONNECT").number("idle_timeout_s")
    tol = slack(ev)
    longest = 0.0
    if not ev.sockets():
        return no_evidence(
            "the target opened no socket",
            expected=f"an open socket kept past {idle:g} s of no data while other frames arrive",
        )
    for sock in ev.sockets():
        if not _client_closed(ev, sock) or sock.close_t is None:
            continue
        last_in = ev.last_inbound_before(sock.conn, sock.close_t)
        base = last_in if last_in is not None else sock.open_t
        if sock.close_t - base < idle - tol:
            frames = ev.select(channel="ws", dir="out", conn=sock.conn, where=not_data)[-3:]
            return failed(
                f"the target closed {sock.conn} only {sock.close_t - base:.0f} s after the last inbound "
                f"frame ({sock.close_t - sock.open_t:.0f} s after opening it)",
                expected=f"last-inbound is reset by every received frame; idle means {idle:g} s "
                "without any frame",
                evidence=[*frames, *([sock.close_record] if sock.close_record else [])],
            )
        longest = max(longest, sock.close_t - base)
    return passed("no idle reconnect while reflections, server pings or acks kept arriving")
