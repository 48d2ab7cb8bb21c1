"""Token stories: a refresh inside the window of the announced expiry, and a fleet of two processes
sharing one Redis (one issuance at start and at the refresh, one socket between them)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from stockmon.conformance import scenario as sc
from stockmon.conformance.checks import credentials, sockets, tokens
from stockmon.conformance.evidence import Record
from stockmon.conformance.scenario import Driver, Scenario, story
from stockmon.spec import Spec

# The mock issues tokens valid this many refresh windows, so the window opens a little after start
# (a token valid 24 h would need hours of real time, or a time scale with no room for tolerances).
_TOKEN_VALIDITY_FACTOR = 4 / 3
# Real seconds the first token answers are held in the fleet scenario (longer than two Python
# processes take to start one after the other on a loaded 2-core machine).
_FLEET_HOLD_REAL_S = 2.0
# Real seconds allowed for the first token: start-up of every target process plus the held answers.
# Waiting ends at the first token, so a generous bound costs a conformant target nothing; 8 s was
# exceeded by two processes starting on a loaded 2-core machine (a harness timeout, not a verdict).
_FIRST_TOKEN_REAL_S = 20.0


def _issued(r: Record, other_than: object = None) -> bool:
    """A token answer carrying a token (other than ``other_than``)."""
    return (
        r.get("kind") == "response"
        and r.get("status") == 200
        and r.get("token") is not None
        and r.get("token") != other_than
    )


def _token_story(d: Driver, settle_s: float, through_refresh: bool = False) -> None:
    """Wait for the first token, then for its refresh (or the expiry), then a little more.

    ``through_refresh``: the refresh is a *new token issued*, not merely the next token request
    (a second process asking at start, throttled, is no refresh: the story must reach the real
    one to judge it)."""
    path = str(d.spec.rest["kis"]["token"]["path"])
    first = sc.seen(_issued)
    if not d.wait_until(first, _FIRST_TOKEN_REAL_S * d.time_scale, "a token issued"):
        return
    seq = sc.last_seq(d)
    validity = (
        float(d.spec.clause("TOKEN-KIS-REFRESH").number("refresh_before_expiry_s"))
        * _TOKEN_VALIDITY_FACTOR
    )
    if through_refresh:
        token = next(r.get("token") for r in d.records() if _issued(r))
        refresh = sc.seen(lambda r: _issued(r, other_than=token), after_seq=seq)
    else:
        refresh = sc.seen(
            lambda r: r.get("kind") == "request" and r.get("path") == path, after_seq=seq
        )
    d.wait_until(refresh, validity + 2 * d.time_scale, "the token refresh")
    d.sleep(settle_s)


def _token_mock(scale: float) -> Callable[[Spec], Mapping[str, Any]]:
    def cfg(spec: Spec) -> Mapping[str, Any]:
        window = spec.clause("TOKEN-KIS-REFRESH").number("refresh_before_expiry_s")
        validity = window * _TOKEN_VALIDITY_FACTOR
        # The server returns the same token when asked again within its reuse window; keep that
        # window shorter than the refresh point, so a refresh gets a new token as it would at 23.5 h.
        return {
            "token_validity_s": validity,
            "token_reuse_window_s": (validity - window) / 2,
            "tick_rate_hz": sc.frames(scale, 1.0),
            **sc.calm(spec, scale),
        }

    return cfg


@story(
    "token-refresh",
    checks=(
        tokens.token_refreshed_inside_window,
        tokens.expiry_taken_from_token_response,
        tokens.token_request_matches_schema,
    ),
    time_scale=100.0,
    mock=_token_mock(100.0),
    weight=20,
)
def token_refresh(d: Driver) -> None:
    """Tokens valid a little longer than the refresh window: the refresh comes inside the window
    of the announced expiry, not before it."""
    d.start()
    _token_story(d, sc.SETTLE_REAL_S * d.time_scale)


@story(
    "fleet",
    checks=(
        tokens.one_token_request_per_refresh_across_processes,
        sockets.fleet_streams_through_one_socket,
        credentials.secrets_never_printed,
    ),
    time_scale=100.0,
    mock=_token_mock(100.0),
    targets=2,
    redis=True,
    weight=22,
)
def fleet(d: Driver) -> None:
    """Two processes share one Redis: one token request at start and one at the refresh for both,
    and one socket between them."""
    # Hold the first REST answers a while so the processes' first token requests overlap: without
    # the lock both would ask, whatever the start-up order on a loaded machine. A correct fleet
    # waits on the lock and asks once; the delay costs it nothing but time.
    d.fault("delay_rest", seconds=_FLEET_HOLD_REAL_S * d.time_scale, n=4)
    d.start()
    _token_story(d, 2 * sc.SETTLE_REAL_S * d.time_scale, through_refresh=True)


SCENARIOS: tuple[Scenario, ...] = (token_refresh, fleet)
