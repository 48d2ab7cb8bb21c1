"""Socket stories: the idle reconnect (a stall), a dropped socket, the appkey held "in use" after a
drop, and more subscriptions than one session may hold."""

from __future__ import annotations

from collections.abc import Sequence

from stockmon.conformance import scenario as sc
from stockmon.conformance.checks import keepalive, sockets
from stockmon.conformance.evidence import Record
from stockmon.conformance.scenario import Driver, Scenario, story, ticking
from stockmon.spec import Spec, ws_answer_code


def _over_the_limit(spec: Spec) -> tuple[tuple[str, str], ...]:
    """More KR tick subscriptions than one session may hold (limit + 4)."""
    cap = spec.clause("WS-SESSION-LIMITS").integer("max_registrations")
    kr = next(
        t for t, lay in sorted(spec.layouts.items()) if lay.market == "KR" and lay.kind == "tick"
    )
    return tuple((kr, f"{100000 + i:06d}") for i in range(cap + 4))


@story(
    "stall",
    checks=(
        sockets.idle_socket_closed_then_reopened,
        sockets.subscriptions_restored_after_reconnect,
        keepalive.idle_measured_from_last_inbound,
        sockets.never_two_sockets_open,
    ),
    time_scale=60.0,
    mock=lambda spec: {"tick_rate_hz": sc.frames(60.0), **sc.calm(spec, 60.0)},
    weight=13,
)
def stall(d: Driver) -> None:
    """The mock goes silent (pings and reflections included) for longer than the idle
    timeout: close, then open, then every subscription again."""
    idle = d.spec.clause("POL-IDLE-RECONNECT").number("idle_timeout_s")
    if not sc.start_and_subscribe(d):
        return
    d.sleep(sc.ping_interval(d.spec))
    d.mark("stall")
    seq = sc.last_seq(d)
    tol = 1.0 * d.time_scale
    d.fault("stall", seconds=idle + 2.5 * tol)

    def reopened(records: Sequence[Record]) -> bool:
        conns = {
            str(r["conn"]) for r in records if r.get("kind") == "ws_open" and int(r["seq"]) > seq
        }
        subs = {
            (r.get("tr_id"), r.get("tr_key"))
            for r in records
            if r.get("kind") == "text" and r.get("dir") == "in" and str(r.get("conn")) in conns
        }
        return set(d.subscriptions) <= subs

    d.wait_until(reopened, idle + 5 * tol, "a new socket with every subscription sent again")
    sc.settle(d)


def _drop_script(spec_s: float, timeout_s: float, label: str, d: Driver) -> None:
    """Drop the subscribed socket after ``spec_s``; wait up to ``timeout_s`` for ``label``."""
    if not sc.start_and_subscribe(d):
        return
    d.sleep(spec_s)
    seq = sc.last_seq(d)
    d.fault("drop_socket")
    d.wait_until(sc.all_subscribed(d, after_seq=seq), timeout_s, label)
    sc.settle(d)


@story(
    "socket-loss",
    checks=(sockets.reconnects_after_socket_loss, sockets.never_two_sockets_open),
    mock=ticking(10.0),
    weight=5,
)
def socket_loss(d: Driver) -> None:
    """The mock drops the TCP connection: the client reconnects, and never holds two
    sockets."""
    _drop_script(sc.ping_interval(d.spec) / 2, 12 * d.time_scale, "reconnected and resubscribed", d)


@story(
    "in-use",
    checks=(sockets.in_use_refusal_backs_off_before_reconnecting, sockets.never_two_sockets_open),
    time_scale=20.0,
    mock=lambda spec: {
        "appkey_slot_hold_s": 1.5 * spec.clause("WS-SESSION-LIMITS").number("in_use_backoff_s"),
        "tick_rate_hz": sc.frames(20.0),
        **sc.calm(spec, 20.0),
    },
    requires=("WS-SESSION-LIMITS",),
    weight=12,
)
def in_use(d: Driver) -> None:
    """After a drop the broker keeps the appkey's session slot a while: 'appkey in use'
    is waited out with the spec's back-off, never with a second socket."""
    backoff = d.spec.clause("WS-SESSION-LIMITS").number("in_use_backoff_s")
    _drop_script(0, 4 * backoff + 4 * d.time_scale, "back on a socket", d)


@story(
    "registration-limit",
    checks=(sockets.at_most_max_registrations_per_session,),
    subscriptions=_over_the_limit,
    mock=ticking(10.0, 0.2),
    requires=("WS-SESSION-LIMITS",),
    weight=6,
)
def registration_limit(d: Driver) -> None:
    """More subscriptions than one session may hold: never more registrations than the limit."""
    d.start()
    over = d.spec.clause("WS-SESSION-LIMITS").string("over_limit_code")
    cap = d.spec.clause("WS-SESSION-LIMITS").integer("max_registrations")
    code = ws_answer_code(d.spec, "subscribed")
    count = [0]
    cursor = [0]

    def full(records: Sequence[Record]) -> bool:
        for r in records[cursor[0] :]:
            if r.get("dir") == "out" and r.get("msg_cd") in (code, over):
                count[0] += 1
        cursor[0] = len(records)
        return count[0] >= cap

    d.wait_until(full, 8 * d.time_scale, f"{cap} registrations answered")
    d.sleep(2 * d.time_scale)


RECONNECTS: tuple[Scenario, ...] = (stall, socket_loss)
LIMITS: tuple[Scenario, ...] = (in_use, registration_limit)
