"""Keep-alive stories: steady KIS streaming (packets, pings, server PINGPONG, data values), a
server that never reflects, and a quiet market where only keep-alive frames arrive."""

from __future__ import annotations

from stockmon.conformance import scenario as sc
from stockmon.conformance.checks import credentials, data, keepalive, packets, sockets, tokens
from stockmon.conformance.scenario import Driver, Scenario, story
from stockmon.spec import Spec


def _markets_and_kinds(spec: Spec) -> tuple[tuple[str, str], ...]:
    """One tick and one order-book subscription per market (KR and US), from the spec's layouts."""
    keys = {"KR": "005930", "US": "DNASAAPL"}
    out = []
    for tr_id, layout in sorted(spec.layouts.items(), key=lambda kv: (kv[1].market, kv[1].kind)):
        if layout.broker == "kis" and layout.market in keys:
            out.append((tr_id, keys[layout.market]))
    return tuple(out)


def _stream_for(d: Driver, spec_s: float) -> None:
    """Start, subscribe, and let ``spec_s`` spec seconds of streaming pass."""
    sc.start_and_subscribe(d)
    d.sleep(spec_s)


def _idle(spec: Spec) -> float:
    return spec.clause("POL-IDLE-RECONNECT").number("idle_timeout_s")


@story(
    "kis-steady",
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
    subscriptions=_markets_and_kinds,
    mock=lambda spec: {
        "tick_rate_hz": sc.frames(10.0, 2.0),
        "multi_record_probability": 0.5,
        # Several server PINGPONGs within the run (the profile's period is longer).
        **(
            {"server_pingpong_period_s": 1.5 * sc.ping_interval(spec)}
            if spec.has("KA-SERVER-PINGPONG")
            else {}
        ),
    },
    weight=15,
)
def kis_steady(d: Driver) -> None:
    """Steady streaming of a KR and a US tick and order book: packets, pings, server PINGPONG,
    data values, approval key, one socket, no secret printed."""
    _stream_for(d, 4 * sc.ping_interval(d.spec) + 5)


@story(
    "no-reflection",
    checks=(keepalive.missing_reflections_tolerated, sockets.never_two_sockets_open),
    mock=lambda spec: {
        "reflect_client_ping": False,
        "server_pingpong_period_s": 0,
        "tick_rate_hz": sc.frames(10.0, 2.0),
    },
    weight=11,
)
def no_reflection(d: Driver) -> None:
    """A server that neither reflects client pings nor sends its own: the client keeps its socket
    and its ping rhythm."""
    _stream_for(d, 3 * sc.ping_interval(d.spec) + 5)


@story(
    "quiet",
    checks=(keepalive.inbound_frames_reset_idle_timer, sockets.never_two_sockets_open),
    time_scale=100.0,
    mock=lambda spec: {"tick_rate_hz": 0, **sc.calm(spec, 100.0)},
    weight=11,
)
def quiet(d: Driver) -> None:
    """No market data at all, only reflections and server PINGPONGs for longer than the idle
    timeout: those frames count as inbound, so no idle reconnect."""
    _stream_for(d, _idle(d.spec) * 1.5)


SCENARIOS: tuple[Scenario, ...] = (kis_steady, no_reflection, quiet)
