"""The scenario catalogue: which target run feeds which checks, for every breakable KIS clause.

Each scenario picks its own time scale (spec seconds per real second) so that its tolerances,
``REAL_SLACK_S`` real seconds expressed in spec seconds, stay far above the scheduling noise of a
loaded 2-core machine, while its spec-time story (a 600 s idle timeout, a token refresh window)
fits in a few real seconds. Market data is thinned out at high time scales (``_frames``) so the
mock and the target are never the bottleneck. Every number of the story comes from the spec.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from stockmon.conformance.checks import (
    credentials,
    data,
    keepalive,
    packets,
    policies,
    sockets,
    tokens,
)
from stockmon.conformance.evidence import Record
from stockmon.conformance.protocol import broker_code, subscribed_code
from stockmon.conformance.scenario import Driver, Scenario
from stockmon.spec import Spec

# Non-normative pacing of the simulated market: data frames per real second per registration.
_REAL_FRAMES_PER_S = 5.0
# Non-normative: spec seconds a script lets pass after the situation it waited for, so late
# misbehaviour (a second request, a storm) still lands in the trace.
_SETTLE_REAL_S = 1.5


def _frames(scale: float, per_real_s: float = _REAL_FRAMES_PER_S) -> float:
    """``tick_rate_hz`` (per spec second) giving ``per_real_s`` frames per real second."""
    return per_real_s / scale


def _calm(spec: Spec, scale: float) -> dict[str, Any]:
    """Mock settings for scenarios that do not judge keep-alive: the server's grace for an
    unanswered PINGPONG (30 spec s) would be a fraction of a real second at a high time scale, and
    a late answer on a loaded machine would close the socket in the middle of another story."""
    return {"unanswered_pingpong_grace_s": 3.0 * scale} if spec.has("KA-SERVER-PINGPONG") else {}


def _settle(d: Driver) -> None:
    d.sleep(_SETTLE_REAL_S * d.time_scale)


def _ping_interval(spec: Spec) -> float:
    return spec.clause("KA-PING").number("interval_s")


def _idle(spec: Spec) -> float:
    return spec.clause("POL-IDLE-RECONNECT").number("idle_timeout_s")


# ------------------------------------------------------------------------------ subscriptions
def _markets_and_kinds(spec: Spec) -> tuple[tuple[str, str], ...]:
    """One tick and one order-book subscription per market (KR and US), from the spec's layouts."""
    keys = {"KR": "005930", "US": "DNASAAPL"}
    out = []
    for tr_id, layout in sorted(spec.layouts.items(), key=lambda kv: (kv[1].market, kv[1].kind)):
        if layout.broker == "kis" and layout.market in keys:
            out.append((tr_id, keys[layout.market]))
    return tuple(out)


def _three_ticks(spec: Spec) -> tuple[tuple[str, str], ...]:
    """Three tick subscriptions with distinct keys (faults are injected per key)."""
    kr = next(
        t for t, lay in sorted(spec.layouts.items()) if lay.market == "KR" and lay.kind == "tick"
    )
    us = next(
        t for t, lay in sorted(spec.layouts.items()) if lay.market == "US" and lay.kind == "tick"
    )
    return ((kr, "005930"), (kr, "000660"), (us, "DNASAAPL"))


def _over_the_limit(spec: Spec) -> tuple[tuple[str, str], ...]:
    """More KR tick subscriptions than one session may hold (limit + 4)."""
    cap = spec.clause("WS-SESSION-LIMITS").integer("max_registrations")
    kr = next(
        t for t, lay in sorted(spec.layouts.items()) if lay.market == "KR" and lay.kind == "tick"
    )
    return tuple((kr, f"{100000 + i:06d}") for i in range(cap + 4))


# ------------------------------------------------------------------------------ trace watchers
def _all_subscribed(
    d: Driver, after_seq: int = 0, exclude: Sequence[str] = ()
) -> Callable[[Sequence[Record]], bool]:
    """Predicate: one session has confirmed every subscription (but ``exclude``d keys)."""
    code = subscribed_code(d.spec)
    wanted = {s for s in d.subscriptions if s[1] not in exclude}
    state: dict[str, set[tuple[Any, Any]]] = {}
    cursor = [0]

    def pred(records: Sequence[Record]) -> bool:
        for r in records[cursor[0] :]:
            if (
                r.get("kind") == "text"
                and r.get("dir") == "out"
                and r.get("msg_cd") == code
                and int(r["seq"]) > after_seq
            ):
                state.setdefault(str(r["conn"]), set()).add((r.get("tr_id"), r.get("tr_key")))
        cursor[0] = len(records)
        return any(wanted <= s for s in state.values())

    return pred


def _seen(
    match: Callable[[Record], bool], after_seq: int = 0
) -> Callable[[Sequence[Record]], bool]:
    """Predicate: some record after ``after_seq`` matches."""
    cursor = [0]
    hit = [False]

    def pred(records: Sequence[Record]) -> bool:
        for r in records[cursor[0] :]:
            if int(r["seq"]) > after_seq and match(r):
                hit[0] = True
        cursor[0] = len(records)
        return hit[0]

    return pred


def _last_seq(d: Driver) -> int:
    recs = d.records()
    return int(recs[-1]["seq"]) if recs else 0


def _start_and_subscribe(
    d: Driver, timeout_s: float | None = None, exclude: Sequence[str] = ()
) -> bool:
    d.start()
    return d.wait_until(
        _all_subscribed(d, exclude=exclude),
        timeout_s if timeout_s is not None else 60 * d.time_scale / 10,
        "every subscription confirmed on one socket",
    )


def _quote_response(d: Driver, after_seq: int, ok: bool) -> Callable[[Sequence[Record]], bool]:
    paths = {str(q["path"]) for q in d.spec.rest["kis"]["quotes"].values()}
    requests: set[int] = set()
    cursor = [0]
    hit = [False]

    def pred(records: Sequence[Record]) -> bool:
        for r in records[cursor[0] :]:
            if r.get("kind") == "request" and r.get("path") in paths:
                requests.add(int(r["seq"]))
            elif (
                r.get("kind") == "response"
                and r.get("request_seq") in requests
                and int(r["seq"]) > after_seq
                and (r.get("status") == 200) == ok
            ):
                hit[0] = True
        cursor[0] = len(records)
        return hit[0]

    return pred


# ------------------------------------------------------------------------------ scripts
def _run_for(spec_s: Callable[[Spec], float]) -> Callable[[Driver], None]:
    def script(d: Driver) -> None:
        if _start_and_subscribe(d):
            d.mark("subscribed")
        d.sleep(spec_s(d.spec))

    return script


def _stall_script(d: Driver) -> None:
    idle = _idle(d.spec)
    if not _start_and_subscribe(d):
        return
    d.sleep(_ping_interval(d.spec))
    d.mark("stall")
    seq = _last_seq(d)
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
    _settle(d)


def _socket_loss_script(d: Driver) -> None:
    if not _start_and_subscribe(d):
        return
    d.sleep(_ping_interval(d.spec) / 2)
    seq = _last_seq(d)
    d.mark("drop")
    d.fault("drop_socket")
    d.wait_until(
        _all_subscribed(d, after_seq=seq), 12 * d.time_scale, "reconnected and resubscribed"
    )
    _settle(d)


def _subscribe_errors_script(d: Driver) -> None:
    spec = d.spec
    already = spec.clause("POL-ALREADY-SUBSCRIBED").string("code")
    keys = [k for _, k in d.subscriptions]
    d.fault("next_subscribe_error", code=already, tr_key=keys[0])
    d.fault("next_subscribe_error", code=broker_code(spec, "internal_error"), tr_key=keys[1])
    d.start()
    d.wait_until(
        _all_subscribed(d, exclude=[keys[1]]),
        6 * d.time_scale,
        "the already-subscribed key confirmed again",
    )
    d.sleep(2 * d.time_scale)


def _auth_failure_script(d: Driver) -> None:
    d.fault("fail_rest", n=1)
    d.start()
    throttle = (
        d.spec.clause("TOKEN-KIS-THROTTLE").number("min_interval_s")
        if d.spec.has("TOKEN-KIS-THROTTLE")
        else 0.0
    )
    d.wait_until(
        _quote_response(d, 0, ok=False), 8 * d.time_scale, "a failed authenticated request"
    )
    d.wait_until(
        _quote_response(d, _last_seq(d), ok=True),
        throttle + 8 * d.time_scale,
        "the retried request answered",
    )
    _settle(d)


def _auth_persistent_script(d: Driver) -> None:
    retries = d.spec.clause("POL-AUTH-FAILED").integer("max_retries")
    d.fault("fail_rest", n=1000)
    d.start()
    throttle = (
        d.spec.clause("TOKEN-KIS-THROTTLE").number("min_interval_s")
        if d.spec.has("TOKEN-KIS-THROTTLE")
        else 0.0
    )
    d.wait_until(
        _quote_response(d, 0, ok=False), 8 * d.time_scale, "a failed authenticated request"
    )
    # Room for the one allowed retry (after a throttled refresh) and for a loop to show itself.
    d.sleep((retries + 1) * throttle + 4 * d.time_scale)


def _rest_error_script(d: Driver) -> None:
    from stockmon.spec import latest_version, load_spec

    code = d.spec.mock_profile.get("rest_rate_limit") or load_spec(
        latest_version()
    ).mock_profile.get("rest_rate_limit")
    d.fault("fail_rest", n=1, code=code)
    d.start()
    d.wait_until(
        _quote_response(d, 0, ok=False), 8 * d.time_scale, "a failed authenticated request"
    )
    d.sleep(2 * d.time_scale)


def _approval_invalid_script(d: Driver) -> None:
    code = d.spec.clause("POL-AUTH-FAILED").strings("ws_codes")[0]
    keys = [k for _, k in d.subscriptions]
    d.fault("next_subscribe_error", code=code, tr_key=keys[-1])
    d.start()
    hit = _seen(lambda r: r.get("dir") == "out" and r.get("msg_cd") == code)
    if not d.wait_until(hit, 6 * d.time_scale, f"the {code} answer"):
        return
    seq = _last_seq(d)
    d.wait_until(
        _all_subscribed(d, after_seq=seq), 12 * d.time_scale, "reconnected and resubscribed"
    )
    _settle(d)


def _token_story(d: Driver, settle_s: float) -> None:
    """Wait for the first token, then for its refresh (or the expiry), then a little more."""
    path = str(d.spec.rest["kis"]["token"]["path"])
    first = _seen(
        lambda r: (
            r.get("kind") == "response" and r.get("status") == 200 and r.get("token") is not None
        )
    )
    if not d.wait_until(first, 8 * d.time_scale, "a token issued"):
        return
    seq = _last_seq(d)
    validity = (
        float(d.spec.clause("TOKEN-KIS-REFRESH").number("refresh_before_expiry_s"))
        * _TOKEN_VALIDITY_FACTOR
    )
    refresh = _seen(lambda r: r.get("kind") == "request" and r.get("path") == path, after_seq=seq)
    d.wait_until(refresh, validity + 2 * d.time_scale, "the token refresh")
    d.sleep(settle_s)


# The mock issues tokens valid this many refresh windows, so the window opens a little after start
# (a token valid 24 h would need hours of real time, or a time scale with no room for tolerances).
_TOKEN_VALIDITY_FACTOR = 4 / 3


def _token_mock(scale: float) -> Callable[[Spec], Mapping[str, Any]]:
    def cfg(spec: Spec) -> Mapping[str, Any]:
        window = spec.clause("TOKEN-KIS-REFRESH").number("refresh_before_expiry_s")
        validity = window * _TOKEN_VALIDITY_FACTOR
        # The server returns the same token when asked again within its reuse window; keep that
        # window shorter than the refresh point, so a refresh gets a new token as it would at 23.5 h.
        return {
            "token_validity_s": validity,
            "token_reuse_window_s": (validity - window) / 2,
            "tick_rate_hz": _frames(scale, 1.0),
            **_calm(spec, scale),
        }

    return cfg


def _token_refresh_script(d: Driver) -> None:
    d.start()
    _token_story(d, _SETTLE_REAL_S * d.time_scale)


def _fleet_script(d: Driver) -> None:
    # Hold the first REST answers a while so the processes' first token requests overlap: without
    # the lock both would ask, whatever the start-up order on a loaded machine. A correct fleet
    # waits on the lock and asks once; the delay costs it nothing but time.
    d.fault("delay_rest", seconds=_FLEET_HOLD_REAL_S * d.time_scale, n=4)
    d.start()
    _token_story(d, 2 * _SETTLE_REAL_S * d.time_scale)


# Real seconds the first token answers are held in the fleet scenario (longer than two Python
# processes take to start one after the other on a loaded 2-core machine).
_FLEET_HOLD_REAL_S = 2.0


def _in_use_script(d: Driver) -> None:
    backoff = d.spec.clause("WS-SESSION-LIMITS").number("in_use_backoff_s")
    if not _start_and_subscribe(d):
        return
    seq = _last_seq(d)
    d.mark("drop")
    d.fault("drop_socket")
    d.wait_until(
        _all_subscribed(d, after_seq=seq), 4 * backoff + 4 * d.time_scale, "back on a socket"
    )
    _settle(d)


def _limit_script(d: Driver) -> None:
    d.start()
    over = d.spec.clause("WS-SESSION-LIMITS").string("over_limit_code")
    cap = d.spec.clause("WS-SESSION-LIMITS").integer("max_registrations")
    code = subscribed_code(d.spec)
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


def _missing_credential_script(d: Driver) -> None:
    d.start()
    contact = _seen(lambda r: r.get("dir") == "in" or r.get("kind") == "ws_open")
    deadline = d.now() + 8 * d.time_scale
    while d.alive() and d.now() < deadline and not contact(d.records()):
        d.sleep(0.05 * d.time_scale)
    _settle(d)


# ------------------------------------------------------------------------------ the catalogue
SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        name="kis-steady",
        doc="Steady streaming of a KR and a US tick and order book: packets, pings, server "
        "PINGPONG, data values, approval key, one socket, no secret printed.",
        checks=(
            packets.subscribe_packets_match_schema,
            packets.approval_key_requested_and_used,
            keepalive.pings_match_the_spec_packet,
            keepalive.pings_sent_every_interval,
            keepalive.reflected_pings_not_answered,
            keepalive.own_ping_reflection_never_answered,
            keepalive.server_pingpong_answered_by_text_echo,
            data.event_values_equal_values_sent,
            data.every_record_of_a_frame_becomes_an_event,
            sockets.every_subscription_streamed_on_the_primary_socket,
            sockets.never_two_sockets_open,
            tokens.token_request_matches_schema,
            tokens.bearer_token_on_authenticated_requests,
            credentials.secrets_never_printed,
        ),
        script=_run_for(lambda spec: 4 * _ping_interval(spec) + 5),
        subscriptions=_markets_and_kinds,
        time_scale=10.0,
        mock=lambda spec: {
            "tick_rate_hz": _frames(10.0, 2.0),
            "multi_record_probability": 0.5,
            # Several server PINGPONGs within the run (the profile's period is longer).
            **(
                {"server_pingpong_period_s": 1.5 * _ping_interval(spec)}
                if spec.has("KA-SERVER-PINGPONG")
                else {}
            ),
        },
        weight=15,
    ),
    Scenario(
        name="no-reflection",
        doc="A server that neither reflects client pings nor sends its own: the client keeps its "
        "socket and its ping rhythm.",
        checks=(keepalive.missing_reflections_tolerated, sockets.never_two_sockets_open),
        script=_run_for(lambda spec: 3 * _ping_interval(spec) + 5),
        subscriptions=_three_ticks,
        time_scale=10.0,
        mock=lambda spec: {
            "reflect_client_ping": False,
            "server_pingpong_period_s": 0,
            "tick_rate_hz": _frames(10.0, 2.0),
        },
        weight=11,
    ),
    Scenario(
        name="quiet",
        doc="No market data at all, only reflections and server PINGPONGs for longer than the idle "
        "timeout: those frames count as inbound, so no idle reconnect.",
        checks=(keepalive.inbound_frames_reset_idle_timer, sockets.never_two_sockets_open),
        script=_run_for(lambda spec: _idle(spec) * 1.5),
        subscriptions=_three_ticks,
        time_scale=100.0,
        mock=lambda spec: {"tick_rate_hz": 0, **_calm(spec, 100.0)},
        weight=11,
    ),
    Scenario(
        name="stall",
        doc="The mock goes silent (pings and reflections included) for longer than the idle "
        "timeout: close, then open, then every subscription again.",
        checks=(
            sockets.idle_socket_closed_then_reopened,
            sockets.subscriptions_restored_after_reconnect,
            keepalive.idle_measured_from_last_inbound,
            sockets.never_two_sockets_open,
        ),
        script=_stall_script,
        subscriptions=_three_ticks,
        time_scale=60.0,
        mock=lambda spec: {"tick_rate_hz": _frames(60.0), **_calm(spec, 60.0)},
        weight=13,
    ),
    Scenario(
        name="socket-loss",
        doc="The mock drops the TCP connection: the client reconnects, and never holds two sockets.",
        checks=(sockets.reconnects_after_socket_loss, sockets.never_two_sockets_open),
        script=_socket_loss_script,
        subscriptions=_three_ticks,
        time_scale=10.0,
        mock=lambda spec: {"tick_rate_hz": _frames(10.0)},
        weight=5,
    ),
    Scenario(
        name="subscribe-errors",
        doc="The first subscribe of one key is answered 'already subscribed', of another with an "
        "internal error: release-then-subscribe for the first, the second's code surfaced.",
        checks=(
            policies.already_subscribed_key_released_then_resubscribed,
            packets.unsubscribe_packets_match_schema,
            policies.ws_error_body_code_surfaced,
        ),
        script=_subscribe_errors_script,
        subscriptions=_three_ticks,
        time_scale=10.0,
        mock=lambda spec: {"tick_rate_hz": _frames(10.0)},
        weight=6,
    ),
    Scenario(
        name="auth-failure",
        doc="The first authenticated REST call fails with the version's auth code: token refresh "
        "(waiting out the issuance throttle where the version has one), then one retry.",
        checks=(
            policies.auth_failure_refreshes_token_then_retries,
            tokens.throttled_token_request_waited_out,
            tokens.token_request_matches_schema,
            tokens.bearer_token_on_authenticated_requests,
            credentials.secrets_never_printed,
        ),
        script=_auth_failure_script,
        subscriptions=_three_ticks,
        time_scale=10.0,
        mock=lambda spec: {"tick_rate_hz": _frames(10.0)},
        weight=12,
    ),
    Scenario(
        name="auth-persistent",
        doc="Every authenticated REST call fails with the auth code: one refresh and one retry, "
        "then the error surfaces; never a retry loop.",
        checks=(policies.auth_failure_retried_at_most_once,),
        script=_auth_persistent_script,
        subscriptions=_three_ticks,
        time_scale=10.0,
        mock=lambda spec: {"tick_rate_hz": _frames(10.0)},
        weight=12,
    ),
    Scenario(
        name="rest-error",
        doc="The first authenticated REST call fails with a non-auth gateway code: it is read from "
        "the error body and surfaced.",
        checks=(policies.rest_error_body_code_surfaced,),
        script=_rest_error_script,
        subscriptions=_three_ticks,
        time_scale=10.0,
        mock=lambda spec: {"tick_rate_hz": _frames(10.0)},
        weight=5,
    ),
    Scenario(
        name="approval-invalid",
        doc="A subscribe is answered 'invalid approval key': new key, reconnect, resubscribe.",
        checks=(
            policies.invalid_approval_key_renewed_then_reconnected,
            sockets.never_two_sockets_open,
        ),
        script=_approval_invalid_script,
        subscriptions=_three_ticks,
        time_scale=10.0,
        mock=lambda spec: {"tick_rate_hz": _frames(10.0)},
        requires=("WS-APPROVAL-KEY",),
        weight=6,
    ),
    Scenario(
        name="token-refresh",
        doc="Tokens valid a little longer than the refresh window: the refresh comes inside the "
        "window of the announced expiry, not before it.",
        checks=(
            tokens.token_refreshed_inside_window,
            tokens.expiry_taken_from_token_response,
            tokens.token_request_matches_schema,
        ),
        script=_token_refresh_script,
        subscriptions=_three_ticks,
        time_scale=100.0,
        mock=_token_mock(100.0),
        weight=20,
    ),
    Scenario(
        name="fleet",
        doc="Two processes share one Redis: one token request at start and one at the refresh "
        "for both, and one socket between them.",
        checks=(
            tokens.one_token_request_per_refresh_across_processes,
            sockets.fleet_streams_through_one_socket,
            credentials.secrets_never_printed,
        ),
        script=_fleet_script,
        subscriptions=_three_ticks,
        time_scale=100.0,
        mock=_token_mock(100.0),
        targets=2,
        redis=True,
        weight=22,
    ),
    Scenario(
        name="in-use",
        doc="After a drop the broker keeps the appkey's session slot a while: 'appkey in use' is "
        "waited out with the spec's back-off, never with a second socket.",
        checks=(
            sockets.in_use_refusal_backs_off_before_reconnecting,
            sockets.never_two_sockets_open,
        ),
        script=_in_use_script,
        subscriptions=_three_ticks,
        time_scale=20.0,
        mock=lambda spec: {
            "appkey_slot_hold_s": 1.5 * spec.clause("WS-SESSION-LIMITS").number("in_use_backoff_s"),
            "tick_rate_hz": _frames(20.0),
            **_calm(spec, 20.0),
        },
        requires=("WS-SESSION-LIMITS",),
        weight=12,
    ),
    Scenario(
        name="registration-limit",
        doc="More subscriptions than one session may hold: never more registrations than the limit.",
        checks=(sockets.at_most_max_registrations_per_session,),
        script=_limit_script,
        subscriptions=_over_the_limit,
        time_scale=10.0,
        mock=lambda spec: {"tick_rate_hz": _frames(10.0, 0.2)},
        requires=("WS-SESSION-LIMITS",),
        weight=6,
    ),
    Scenario(
        name="missing-credential",
        doc="KIS_APP_SECRET is not set: the target exits with an error and contacts nobody.",
        checks=(
            credentials.missing_credential_exits_before_connecting,
            credentials.secrets_never_printed,
        ),
        script=_missing_credential_script,
        subscriptions=_three_ticks,
        time_scale=10.0,
        drop_env=("KIS_APP_SECRET",),
        expect_exit=True,
        weight=3,
    ),
)


def scenario(name: str) -> Scenario:
    """A scenario by name."""
    for sc in SCENARIOS:
        if sc.name == name:
            return sc
    raise KeyError(name)
