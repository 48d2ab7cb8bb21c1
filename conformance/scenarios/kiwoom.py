"""Kiwoom stories: its protocol, its session token in prod, and its secret missing.

Every scenario here runs a Kiwoom mock beside the KIS mock on one trace (``Scenario.kiwoom``) and is
named ``kiwoom-...``, so ``-k "not kiwoom"`` runs the KIS suite alone (a KIS-only target).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from stockmon.conformance import scenario as sc
from stockmon.conformance.checks import credentials, kiwoom, sockets, tokens
from stockmon.conformance.evidence import Record
from stockmon.conformance.protocol import is_kiwoom, kiwoom_reg_accepted
from stockmon.conformance.scenario import Driver, Scenario, story

# The steady story's PING period (spec s): several PINGs within a few real seconds.
_STEADY_PING_S = 20.0
# What every Kiwoom story shares: the target's broker and the subscriptions Kiwoom can serve.
_KIWOOM: dict[str, Any] = {"broker": "kiwoom", "subscriptions": sc.kiwoom_subscriptions}


def _login(after_seq: int = 0) -> Callable[[Sequence[Record]], bool]:
    return sc.seen(lambda r: is_kiwoom(r) and r.get("kind") == "login_accepted", after_seq)


@story(
    "kiwoom-steady",
    checks=(
        kiwoom.kiwoom_login_sent_first,
        kiwoom.kiwoom_registrations_cover_kr_subscriptions,
        kiwoom.kiwoom_pings_echoed_verbatim,
        kiwoom.kiwoom_real_values_printed,
        tokens.kiwoom_token_requests_carry_the_secret,
        sockets.never_two_sockets_open,
        credentials.secrets_never_printed,
    ),
    time_scale=20.0,
    kiwoom=lambda spec: {
        "env": "mock",
        "ping_period_s": _STEADY_PING_S,
        "tick_rate_hz": sc.frames(20.0, 2.0),
        "repeat_entry_probability": 0.3,
    },
    requires=("KIWOOM-PROTOCOL",),
    weight=8,
    **_KIWOOM,
)
def kiwoom_steady(d: Driver) -> None:
    """STOCKMON_BROKER=kiwoom: LOGIN first, REG of the KR subscriptions, REAL values printed, PINGs
    echoed verbatim, the token request with the secret, one socket."""
    d.start()
    accepted = sc.seen(kiwoom_reg_accepted(d.spec))
    if not d.wait_until(accepted, 10 * d.time_scale, "a Kiwoom REG accepted"):
        return
    d.sleep(4 * _STEADY_PING_S)


@story(
    "kiwoom-prod",
    checks=(kiwoom.kiwoom_login_carries_an_issued_token, credentials.secrets_never_printed),
    time_scale=20.0,
    kiwoom=lambda spec: {"env": "prod", "tick_rate_hz": sc.frames(20.0, 0.5)},
    env="prod",
    redis=True,
    weight=7,
    **_KIWOOM,
)
def kiwoom_prod(d: Driver) -> None:
    """A prod Kiwoom environment: every LOGIN carries an issued session token; after the token
    expires a new one is issued, never the refused one offered again."""
    d.start()
    if not d.wait_until(_login(), 10 * d.time_scale, "a Kiwoom LOGIN accepted"):
        return
    seq = sc.last_seq(d)
    d.kiwoom_fault("expire_tokens")
    d.kiwoom_fault("drop_socket")
    d.wait_until(_login(seq), 10 * d.time_scale, "a LOGIN accepted with a new token")
    sc.settle(d)


@story(
    "kiwoom-missing-secret",
    checks=(credentials.missing_kiwoom_secret_refused, credentials.secrets_never_printed),
    kiwoom=lambda spec: {"env": "prod"},
    env="prod",
    drop_env=("KIWOOM_APP_SECRET",),
    # prod makes the lock mandatory: with Redis there, only the missing secret can stop it
    redis=True,
    expect_exit=True,
    requires=("CRED-KIWOOM-SECRET",),
    weight=3,
    **_KIWOOM,
)
def kiwoom_missing_secret(d: Driver) -> None:
    """STOCKMON_ENV=prod with KIWOOM_APP_SECRET unset: exit with an error, contact nobody."""
    sc.exits_on_its_own(d)


SCENARIOS: tuple[Scenario, ...] = (kiwoom_steady, kiwoom_prod, kiwoom_missing_secret)
