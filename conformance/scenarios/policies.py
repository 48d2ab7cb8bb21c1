"""Error-policy stories: subscribe errors (already subscribed, an internal error), REST auth
failures once and for good, a non-auth REST error, and an invalid approval key on the socket."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from stockmon.conformance import scenario as sc
from stockmon.conformance.checks import credentials, packets, policies, sockets, tokens
from stockmon.conformance.evidence import Record
from stockmon.conformance.scenario import Driver, Scenario, story, ticking
from stockmon.spec import Spec, mock_profile_value, ws_answer_code


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


def _first_quote_fails(d: Driver, **fault: object) -> None:
    """Fail the next authenticated REST call(s), start, and wait for the failed answer."""
    d.fault("fail_rest", **fault)
    d.start()
    d.wait_until(
        _quote_response(d, 0, ok=False), 8 * d.time_scale, "a failed authenticated request"
    )


def _throttle(spec: Spec) -> float:
    """The token issuance throttle (spec s), 0 for a version without one."""
    has = spec.has("TOKEN-KIS-THROTTLE")
    return spec.clause("TOKEN-KIS-THROTTLE").number("min_interval_s") if has else 0.0


@story(
    "subscribe-errors",
    checks=(
        policies.already_subscribed_key_released_then_resubscribed,
        packets.unsubscribe_packets_match_schema,
        policies.ws_error_body_code_surfaced,
    ),
    mock=ticking(10.0),
    weight=6,
)
def subscribe_errors(d: Driver) -> None:
    """The first subscribe of one key is answered 'already subscribed', of another with an
    internal error: release-then-subscribe for the first, the second's code surfaced."""
    spec = d.spec
    already = spec.clause("POL-ALREADY-SUBSCRIBED").string("code")
    keys = [k for _, k in d.subscriptions]
    d.fault("next_subscribe_error", code=already, tr_key=keys[0])
    d.fault("next_subscribe_error", code=ws_answer_code(spec, "internal_error"), tr_key=keys[1])
    d.start()
    d.wait_until(
        sc.all_subscribed(d, exclude=[keys[1]]),
        6 * d.time_scale,
        "the already-subscribed key confirmed again",
    )
    d.sleep(2 * d.time_scale)


@story(
    "auth-failure",
    checks=(
        policies.auth_failure_refreshes_token_then_retries,
        tokens.throttled_token_request_waited_out,
        tokens.token_request_matches_schema,
        tokens.bearer_token_on_authenticated_requests,
        credentials.secrets_never_printed,
    ),
    mock=ticking(10.0),
    weight=12,
)
def auth_failure(d: Driver) -> None:
    """The first authenticated REST call fails with the version's auth code: token refresh
    (waiting out the issuance throttle where the version has one), then one retry."""
    _first_quote_fails(d, n=1)
    d.wait_until(
        _quote_response(d, sc.last_seq(d), ok=True),
        _throttle(d.spec) + 8 * d.time_scale,
        "the retried request answered",
    )
    sc.settle(d)


@story(
    "auth-persistent",
    checks=(policies.auth_failure_retried_at_most_once,),
    mock=ticking(10.0),
    weight=17,  # about its real seconds (17 s measured on two cores), so it starts first
)
def auth_persistent(d: Driver) -> None:
    """Every authenticated REST call fails with the auth code: one refresh and one retry, then
    the error surfaces; never a retry loop."""
    retries = d.spec.clause("POL-AUTH-FAILED").integer("max_retries")
    _first_quote_fails(d, n=1000)
    # Room for the one allowed retry (after a throttled refresh) and for a loop to show itself.
    d.sleep((retries + 1) * _throttle(d.spec) + 4 * d.time_scale)


@story("rest-error", checks=(policies.rest_error_body_code_surfaced,), mock=ticking(10.0), weight=5)
def rest_error(d: Driver) -> None:
    """The first authenticated REST call fails with a non-auth gateway code: it is read from the
    error body and surfaced."""
    _first_quote_fails(d, n=1, code=mock_profile_value(d.spec, "rest_rate_limit"))
    d.sleep(2 * d.time_scale)


@story(
    "approval-invalid",
    checks=(policies.invalid_approval_key_renewed_then_reconnected, sockets.never_two_sockets_open),
    mock=ticking(10.0),
    requires=("WS-APPROVAL-KEY",),
    weight=6,
)
def approval_invalid(d: Driver) -> None:
    """A subscribe is answered 'invalid approval key': new key, reconnect, resubscribe."""
    code = d.spec.clause("POL-AUTH-FAILED").strings("ws_codes")[0]
    keys = [k for _, k in d.subscriptions]
    d.fault("next_subscribe_error", code=code, tr_key=keys[-1])
    d.start()
    hit = sc.seen(lambda r: r.get("dir") == "out" and r.get("msg_cd") == code)
    if not d.wait_until(hit, 6 * d.time_scale, f"the {code} answer"):
        return
    seq = sc.last_seq(d)
    d.wait_until(
        sc.all_subscribed(d, after_seq=seq), 12 * d.time_scale, "reconnected and resubscribed"
    )
    sc.settle(d)


SCENARIOS: tuple[Scenario, ...] = (
    subscribe_errors,
    auth_failure,
    auth_persistent,
    rest_error,
    approval_invalid,
)
