"""The internal API's stories (spec 1.2, profile api): the target serves STOCKMON_API_HOST:PORT
behind a fresh VITE_API_KEY while it streams from the mock, and the script acts as browsers.

``api-auth`` knocks on every guarded route without the key and with a wrong one; ``api-http``
asks from an allowed and an unknown origin (CORS) and scrapes the metrics; ``api-stream``
reads the live stream on two tabs and asks for snapshots; ``api-silent-broker`` polls the status through
a stall of the broker and ``api-failover`` through a failover to Kiwoom; ``api-subscriptions`` adds keys through the API up to the limit and one
more; ``api-slow-consumer`` freezes one tab while another reads; ``api-fleet`` runs two replicas
on one Redis, a tab on each, and SIGKILLs the one holding the broker socket.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Callable, Iterator, Sequence

from stockmon.conformance import scenario as sc
from stockmon.conformance.browser import (
    ALLOWED_ORIGIN,
    DENIED_ORIGIN,
    NONE,
    RIGHT,
    TIMEOUT_S,
    WRONG,
    Browser,
)
from stockmon.conformance.checks import api, api_events, api_http
from stockmon.conformance.protocol import kiwoom_reg_accepted
from stockmon.conformance.scenario import Driver, Scenario, story
from stockmon.spec import Spec

SCALE = 10.0
# Non-normative: real seconds the scripts let the stream run, and between two polls.
RUN_REAL_S = 3.0
POLL_REAL_S = 0.25
# Non-normative: unsubscribe/subscribe pairs the frozen tab sends every 50 ms, and for how long
# (real s): a loopback socket takes a few megabytes before its writer has to wait.
NAGS = 60
SLOW_RUN_REAL_S = 6.0
# The fleet story's pace: FLEET-REDIS-OUTAGE makes a fresh Redis quarantine the first lease and a
# killed holder wait TTL + keep_s spec seconds for its successor; at this scale that is seconds.
FLEET_SCALE = 50.0
# Non-normative: real seconds the fleet story waits for the takeover (the new holder's socket
# confirming every subscription) and lets the stream run after it.
TAKEOVER_REAL_S = 20.0


def api_subscriptions(spec: Spec) -> tuple[tuple[str, str], ...]:
    """A KR tick and the KR book of the same key, and a US tick (from the layouts)."""

    def tr(market: str, kind: str) -> str:
        return next(
            t for t, lay in sorted(spec.layouts.items()) if (lay.market, lay.kind) == (market, kind)
        )

    return (
        (tr("KR", "tick"), "005930"),
        (tr("KR", "orderbook"), "005930"),
        (tr("US", "tick"), "DNASAAPL"),
    )


# What every API story shares: the subscriptions, the pace, the gateway as the target (``api``).
api_story = functools.partial(
    story,
    subscriptions=api_subscriptions,
    time_scale=SCALE,
    mock=lambda spec: {"tick_rate_hz": sc.frames(SCALE), **sc.calm(spec, SCALE)},
    requires=("API-SERVICE",),
    api=True,
    weight=8.0,
)


def keys_of(d: Driver) -> list[str]:
    """The subscribed keys, each once."""
    return list(dict.fromkeys(k for _, k in d.subscriptions))


@contextlib.contextmanager
def browser(d: Driver) -> Iterator[Browser | None]:
    """Start the target, wait for its subscriptions and its API, and hand out a browser (None
    when the target never got there); the browser is closed after the story."""
    b = Browser(d.spec, d.api_url, d.api_key, d.now, d.observe)
    try:
        up = sc.start_and_subscribe(d) and _api_up(d, b)
        yield b if up else None
        d.mark(api.STOP_MARK)
        d.sleep(1.0 * d.time_scale)  # what was sent just before the stop still arrives
    finally:
        b.close()


def _api_up(d: Driver, b: Browser) -> bool:
    live = d.spec.clause("API-HEALTH").string("liveness_path")
    deadline = d.now() + 10 * d.time_scale
    while d.now() < deadline and d.alive():
        if b.request("GET", live, auth=NONE, purpose="wait").get("status") is not None:
            return True
        time.sleep(0.1)
    b.record({"kind": "api_down", "waited_spec_s": 10 * d.time_scale})
    return False


def every_real(d: Driver, seconds: float, each: Callable[[], None]) -> None:
    """Call ``each`` every POLL_REAL_S for ``seconds`` real seconds."""
    end = d.now() + seconds * d.time_scale
    while d.now() < end and d.alive():
        each()
        d.sleep(POLL_REAL_S * d.time_scale)


def _path(spec: Spec, clause: str, value: str, key: str = "") -> str:
    return spec.clause(clause).string(value).replace("{key}", key)


# ------------------------------------------------------------------------------ scripts
@api_story(
    "api-auth",
    checks=(
        api.guarded_routes_refuse_without_the_key,
        api.stream_without_a_valid_ticket_gets_nothing,
        api.key_never_in_output,
        api.health_answers_without_a_key,
    ),
)
def api_auth(d: Driver) -> None:
    """Every guarded route without the key and with a wrong one, the stream without a valid
    ticket, the health routes without a key; the key never printed."""
    spec = d.spec
    with browser(d) as b:
        if b is None:
            return
        d.sleep(1.0 * d.time_scale)
        key = keys_of(d)[0]
        tr_id = d.subscriptions[0][0]
        auth = spec.clause("API-AUTH")
        routes = [
            ("GET", _path(spec, "API-SNAPSHOT", "quote_path", key), None),
            ("GET", _path(spec, "API-SNAPSHOT", "book_path", key), None),
            ("GET", _path(spec, "API-STATUS", "path"), None),
            ("GET", _path(spec, "API-SUBSCRIPTIONS", "path"), None),
            ("POST", _path(spec, "API-SUBSCRIPTIONS", "path"), {"tr_id": tr_id, "key": key}),
            ("GET", _path(spec, "API-METRICS", "path"), None),
            (auth.string("ticket_method"), auth.string("ticket_path"), None),
        ]
        for method, path, body in routes:
            for who in (NONE, WRONG, RIGHT):
                b.request(method, path, auth=who, body=body, purpose="auth-probe")
        for clause_value in ("liveness_path", "readiness_path"):
            b.request("GET", _path(spec, "API-HEALTH", clause_value), auth=NONE, purpose="health")
        ticket = b.ticket()
        reader = b.stream(f"{api.READER}-1", ticket)
        reader.send({"type": "subscribe", "keys": [key]})
        intruders = [
            b.stream(f"{api.INTRUDER}-no-ticket", None),
            b.stream(f"{api.INTRUDER}-made-up", "x" * len(ticket or "x" * 43)),
            b.stream(f"{api.INTRUDER}-used", ticket),
        ]
        for s in intruders:
            s.wait_closed(3.0)
        d.sleep(0.5 * d.time_scale)


def _snapshots(d: Driver, b: Browser) -> None:
    for key in keys_of(d):
        for value in ("quote_path", "book_path"):
            kinds = {d.spec.layout(t).kind for t, k in d.subscriptions if k == key}
            if ("tick" if value == "quote_path" else "orderbook") in kinds:
                b.request("GET", _path(d.spec, "API-SNAPSHOT", value, key), purpose="snapshot")


@api_story(
    "api-stream",
    checks=(
        api.messages_numbered_from_one_without_gaps,
        api.every_record_reaches_the_subscriber_in_order,
        api.snapshots_equal_the_last_record,
        api_events.events_carry_what_a_ui_needs,
    ),
)
def api_stream(d: Driver) -> None:
    """Two tabs read the live stream (every key, one key) while snapshots are asked for: every
    record sent reaches them in order and in time; snapshots are the latest."""
    with browser(d) as b:
        if b is None:
            return
        keys = keys_of(d)
        everything = b.stream(f"{api.READER}-all", b.ticket())
        one = b.stream(f"{api.READER}-one", b.ticket())
        everything.send({"type": "subscribe", "keys": keys})
        one.send({"type": "subscribe", "keys": keys[:1]})
        every_real(d, RUN_REAL_S, lambda: _snapshots(d, b))


@api_story(
    "api-http",
    checks=(
        api_http.cors_answers_the_allowed_origin_only,
        api_http.stream_from_an_unknown_origin_is_closed,
        api_http.metrics_expose_the_declared_series,
    ),
)
def api_http_surface(d: Driver) -> None:
    """A page on the configured origin and one elsewhere: preflights without a key, calls with
    it and stream handshakes from both; then the metrics scraped while a tab reads the stream."""
    spec = d.spec
    status = _path(spec, "API-STATUS", "path")
    subs = _path(spec, "API-SUBSCRIPTIONS", "path")
    origins = {api_http.ALLOWED: ALLOWED_ORIGIN, api_http.DENIED: DENIED_ORIGIN}
    with browser(d) as b:
        if b is None:
            return
        tab = b.stream(api_http.TAB, b.ticket())
        tab.send({"type": "subscribe", "keys": keys_of(d)})
        for side, origin in origins.items():
            preflight = {
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": ", ".join(
                    spec.clause("API-CORS").strings("allow_headers")
                ),
            }
            b.request(
                "OPTIONS",
                subs,
                auth=NONE,
                headers=preflight,
                purpose=f"{api_http.PREFLIGHT}-{side}",
            )
            b.request(
                "GET", status, headers={"Origin": origin}, purpose=f"{api_http.SIMPLE}-{side}"
            )
            b.stream(f"{api_http.ORIGIN_STREAM}-{side}", b.ticket(), origin=origin)
        d.sleep(RUN_REAL_S * d.time_scale)
        b.request("GET", _path(spec, "API-METRICS", "path"), purpose=api_http.METRICS)


SERVICE_SCALE = 2.0  # shutdown_grace_s is seconds of the target's wall clock: run near real time


@api_story(
    "api-service",
    checks=(
        api_http.answers_are_json_and_errors_carry_an_api_error,
        api_http.sigterm_closes_streams_and_exits_within_the_grace,
    ),
    time_scale=SERVICE_SCALE,
    mock=lambda spec: {"tick_rate_hz": sc.frames(SERVICE_SCALE), **sc.calm(spec, SERVICE_SCALE)},
)
def api_service(d: Driver) -> None:
    """JSON answers and api-error refusals (an unknown route, a malformed body), then SIGTERM
    while a stream is open: the stream gets the shutdown code and the process exits in time."""
    spec = d.spec
    base = spec.clause("API-SERVICE").string("base_path")
    with browser(d) as b:
        if b is None:
            return
        drained = b.stream(api_http.DRAINED, b.ticket())
        drained.send({"type": "subscribe", "keys": keys_of(d)})
        b.request("GET", _path(spec, "API-STATUS", "path"), purpose=api_http.SERVICE_OK)
        b.request("GET", f"{base}/no-such-route", purpose=f"{api_http.SERVICE_ERROR}-route")
        b.request(
            "POST",
            _path(spec, "API-SUBSCRIPTIONS", "path"),
            body={"tr_id": 5},
            purpose=f"{api_http.SERVICE_ERROR}-body",
        )
        d.sleep(1.0 * d.time_scale)
        d.terminate(0)
        drained.wait_closed(TIMEOUT_S)


@api_story(
    "api-silent-broker",
    checks=(api.status_shows_a_silent_broker,),
    weight=9.0,
)
def api_status(d: Driver) -> None:
    """GET /v1/status polled before and through a stall of the broker: the inbound age shows the
    stall while it happens."""
    status = _path(d.spec, "API-STATUS", "path")
    with browser(d) as b:
        if b is None:
            return

        def poll() -> None:
            b.request("GET", status, purpose="status")

        every_real(d, 1.0, poll)
        d.mark(api.STALL_MARK)
        d.fault("stall", seconds=4.0 * d.time_scale)
        every_real(d, 5.0, poll)


@api_story(
    "api-failover",
    checks=(api.status_shows_the_failover,),
    subscriptions=sc.kiwoom_subscriptions,
    time_scale=100.0,
    mock=lambda spec: {"tick_rate_hz": sc.frames(100.0, 2.0), **sc.calm(spec, 100.0)},
    kiwoom=lambda spec: {"env": "mock", "tick_rate_hz": sc.frames(100.0, 2.0)},
    broker="auto",
    requires=("API-SERVICE", "FAILOVER-KIWOOM"),
    weight=12.0,
)
def api_failover(d: Driver) -> None:
    """STOCKMON_BROKER=auto: KIS refuses connections until the client fails over to the Kiwoom
    backup; GET /v1/status polled throughout says which broker serves."""
    status = _path(d.spec, "API-STATUS", "path")
    with browser(d) as b:
        if b is None:
            return
        stop = threading.Event()

        def poll() -> None:
            while not stop.is_set() and d.alive():
                b.request("GET", status, purpose="status")
                time.sleep(POLL_REAL_S)

        poller = threading.Thread(target=poll, name="status-poller", daemon=True)
        poller.start()
        try:
            d.sleep(3.0 * d.time_scale)
            seq = sc.last_seq(d)
            d.mark(api.FAILOVER_MARK)
            d.fault("refuse_connections", on=True)
            d.fault("drop_socket")
            if d.wait_until(
                sc.seen(kiwoom_reg_accepted(d.spec), seq),
                10 * d.time_scale,
                "the Kiwoom backup registered",
            ):
                d.sleep(2.0 * d.time_scale)
        finally:
            stop.set()
            poller.join(TIMEOUT_S)


@api_story(
    "api-subscriptions",
    checks=(
        api.added_key_reaches_the_broker_once,
        api.subscription_over_the_limit_is_refused,
    ),
    mock=lambda spec: {"tick_rate_hz": sc.frames(SCALE, 0.2), **sc.calm(spec, SCALE)},
    weight=6.0,
)
def api_subscription_changes(d: Driver) -> None:
    """Keys added through the API reach the broker as one subscribe packet each, up to the session
    limit; the next is refused with the limit's code."""
    spec = d.spec
    path = _path(spec, "API-SUBSCRIPTIONS", "path")
    subs = spec.clause("API-SUBSCRIPTIONS")
    limit = spec.clause(subs.string("limit_clause")).integer(subs.string("limit_value"))
    tr_id = d.subscriptions[0][0]
    with browser(d) as b:
        if b is None:
            return
        have = len(d.subscriptions)
        listing = b.request("GET", path, purpose="list").get("body")
        if isinstance(listing, dict) and isinstance(listing.get("subscriptions"), list):
            have = len(listing["subscriptions"])
        items = [{"tr_id": tr_id, "key": f"{100100 + i:06d}"} for i in range(limit - have + 1)]
        first = items[0]
        b.request("POST", path, body=first, purpose=api.ADD_ONE)
        d.wait_until(
            sc.seen(
                lambda r: (
                    r.get("dir") == "in"
                    and r.get("tr_id") == first["tr_id"]
                    and r.get("tr_key") == first["key"]
                )
            ),
            3 * d.time_scale,
            "the added key's subscribe packet",
        )
        for item in items[1:-1]:
            b.request("POST", path, body=item, purpose=api.FILL)
        b.request("POST", path, body=items[-1], purpose=api.OVER_LIMIT)
        sc.settle(d)


@api_story(
    "api-slow-consumer",
    checks=(api.a_frozen_subscriber_delays_no_other,),
    mock=lambda spec: {"tick_rate_hz": sc.frames(SCALE, 100.0), **sc.calm(spec, SCALE)},
)
def api_slow_consumer(d: Driver) -> None:
    """One tab subscribes and never reads again while another reads a busy stream: the reading tab
    gets every record in time."""
    with browser(d) as b:
        if b is None:
            return
        keys = keys_of(d)
        tab = b.stalled("stalled", keys)
        if tab is None:
            return
        reader = b.stream(f"{api.READER}-beside", b.ticket())
        reader.send({"type": "subscribe", "keys": keys})
        # The frozen tab keeps asking for snapshots (acks and snapshots are never conflated),
        # so what the target writes to it fills the socket's buffers within a second or two.
        end = d.now() + SLOW_RUN_REAL_S * d.time_scale
        pairs, taking = 0, True
        while taking and d.now() < end and d.alive():
            for _ in range(NAGS):
                taking = tab.send({"type": "unsubscribe", "keys": keys}) and tab.send(
                    {"type": "subscribe", "keys": keys}
                )
                if not taking:
                    break
                pairs += 1
            time.sleep(0.05)
        b.record({"kind": "ws_stalled_end", "client": "stalled", "pairs": pairs, "taking": taking})
        d.sleep(max(0.0, end - d.now()))


def _holder(d: Driver, browsers: Sequence[Browser]) -> int | None:
    """The index of the replica whose GET /v1/status says fleet.role is holder (None if none)."""
    status = _path(d.spec, "API-STATUS", "path")
    deadline = d.now() + 5 * d.time_scale
    while d.now() < deadline and d.alive():
        for i, b in enumerate(browsers):
            body = b.request("GET", status, purpose="fleet-role").get("body")
            fleet = body.get("fleet") if isinstance(body, dict) else None
            if isinstance(fleet, dict) and fleet.get("role") == "holder":
                return i
        d.sleep(POLL_REAL_S * d.time_scale)
    return None


@api_story(
    "api-fleet",
    checks=(
        api.survivor_is_told_of_the_takeover_gap,
        api.no_event_delivered_twice,
        api.fleet_holds_one_broker_socket,
    ),
    time_scale=FLEET_SCALE,
    mock=lambda spec: {"tick_rate_hz": sc.frames(FLEET_SCALE, 10.0), **sc.calm(spec, FLEET_SCALE)},
    targets=2,
    redis=True,
    requires=("API-SERVICE", "API-FLEET"),
    weight=14.0,
)
def api_fleet(d: Driver) -> None:
    """Two replicas share one Redis and one broker socket, a tab on each; the replica holding the
    socket is SIGKILLed: the survivor's tab stays open, is told of the gap, then gets events again,
    never one twice, and the fleet never opens two sockets."""
    browsers = [Browser(d.spec, url, d.api_key, d.now, d.observe) for url in d.api_urls]
    try:
        if not (
            sc.start_and_subscribe(d, 30 * d.time_scale) and all(_api_up(d, b) for b in browsers)
        ):
            return
        keys = keys_of(d)
        for i, b in enumerate(browsers):
            b.stream(f"{api.FLEET_READER}{i}", b.ticket()).send({"type": "subscribe", "keys": keys})
        d.sleep(1.5 * d.time_scale)  # ticks reach both tabs
        holder = _holder(d, browsers)
        if holder is None:
            return  # nobody killed: the checks say there is no evidence
        survivor = 1 - holder
        seq = sc.last_seq(d)
        browsers[survivor].record(
            {"kind": api.KILL, "killed": holder, "survivor": f"{api.FLEET_READER}{survivor}"}
        )
        d.kill(holder)
        if d.wait_until(
            sc.all_subscribed(d, after_seq=seq),
            TAKEOVER_REAL_S * d.time_scale,
            "the survivor's socket confirming every subscription",
        ):
            d.sleep(2.0 * d.time_scale)
        d.mark(api.STOP_MARK)
        d.sleep(0.5 * d.time_scale)
    finally:
        for b in browsers:
            b.close()


SCENARIOS: tuple[Scenario, ...] = (
    api_auth,
    api_stream,
    api_http_surface,
    api_service,
    api_status,
    api_failover,
    api_subscription_changes,
    api_slow_consumer,
    api_fleet,
)
