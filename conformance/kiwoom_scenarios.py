"""Scenarios of the Kiwoom backup: its protocol, its session token, its secret, and the failover.

Every scenario here runs a Kiwoom mock beside the KIS mock on one trace (``Scenario.kiwoom``) and is
named ``kiwoom-...``, so ``-k "not kiwoom"`` runs the KIS suite alone (a KIS-only target). Pacing
follows the KIS catalogue: each scenario's time scale keeps ``REAL_SLACK_S`` real seconds far above
scheduling noise, every number of the story comes from the spec.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from stockmon.conformance.checks import credentials, kiwoom, sockets
from stockmon.conformance.evidence import Record, client_json
from stockmon.conformance.protocol import protocol_clause
from stockmon.conformance.scenario import Driver, Scenario
from stockmon.spec import Spec

# Non-normative pacing: data rounds per real second per registration, and the settle time.
_REAL_ROUNDS_PER_S = 2.0
_SETTLE_REAL_S = 1.5
# Real seconds a target that must exit at once (a missing secret) is given before it is stopped.
_EXIT_WAIT_REAL_S = 5.0


def _rounds(scale: float, per_real_s: float = _REAL_ROUNDS_PER_S) -> float:
    return per_real_s / scale


def _kis_calm(spec: Spec, scale: float) -> dict[str, Any]:
    """KIS mock settings for stories that do not judge KIS keep-alive: its unanswered-PINGPONG
    grace would be a fraction of a real second at a high time scale."""
    return {"unanswered_pingpong_grace_s": 3.0 * scale} if spec.has("KA-SERVER-PINGPONG") else {}


def _kiwoom_subscriptions(spec: Spec) -> tuple[tuple[str, str], ...]:
    """A KR tick, a KR book (Kiwoom serves both) and a US tick (it serves none), from the layouts."""
    keys = {"KR": ("005930", "000660"), "US": ("DNASAAPL",)}
    out: list[tuple[str, str]] = []
    used: dict[str, int] = {}
    for tr_id, layout in sorted(spec.layouts.items(), key=lambda kv: (kv[1].market, kv[1].kind)):
        if layout.market not in keys or (layout.market == "US" and layout.kind != "tick"):
            continue
        i = used.get(layout.market, 0)
        if i < len(keys[layout.market]):
            out.append((tr_id, keys[layout.market][i]))
            used[layout.market] = i + 1
    return tuple(out)


def _extra(broker: str, env: str = "mock") -> Callable[[Spec], Mapping[str, str]]:
    def extra(spec: Spec) -> Mapping[str, str]:
        return {"STOCKMON_BROKER": broker, "STOCKMON_ENV": env}

    return extra


def _proto(d: Driver, key: str) -> Any:
    return protocol_clause(d.spec, "KIWOOM-PROTOCOL").value(key)


def _seen(
    match: Callable[[Record], bool], after_seq: int = 0, count: int = 1
) -> Callable[[Sequence[Record]], bool]:
    """Predicate: ``count`` records after ``after_seq`` match."""
    state = {"cursor": 0, "hits": 0}

    def pred(records: Sequence[Record]) -> bool:
        for r in records[state["cursor"] :]:
            if int(r["seq"]) > after_seq and match(r):
                state["hits"] += 1
        state["cursor"] = len(records)
        return state["hits"] >= count

    return pred


def _last_seq(d: Driver) -> int:
    recs = d.records()
    return int(recs[-1]["seq"]) if recs else 0


def _settle(d: Driver) -> None:
    d.sleep(_SETTLE_REAL_S * d.time_scale)


def _kiwoom_reg_accepted(d: Driver) -> Callable[[Record], bool]:
    reg = _proto(d, "subscribe")

    def match(r: Record) -> bool:
        obj = client_json(r) if r.get("kind") == "text" and r.get("dir") == "out" else None
        return (
            r.get("broker") == "kiwoom"
            and obj is not None
            and obj.get("trnm") == reg
            and obj.get("return_code") == 0
        )

    return match


def _kis_all_subscribed(d: Driver, after_seq: int) -> Callable[[Sequence[Record]], bool]:
    """Predicate: one KIS session opened after ``after_seq`` confirmed every subscription."""
    from stockmon.conformance.protocol import subscribed_code

    code = subscribed_code(d.spec)
    wanted = set(d.subscriptions)
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


# ------------------------------------------------------------------------------ scripts
def _steady_script(d: Driver) -> None:
    d.start()
    if not d.wait_until(_seen(_kiwoom_reg_accepted(d)), 10 * d.time_scale, "a Kiwoom REG accepted"):
        return
    d.mark("registered")
    d.sleep(4 * _STEADY_PING_S)


# The steady story's PING period (spec s): several PINGs within a few real seconds.
_STEADY_PING_S = 20.0


def _prod_script(d: Driver) -> None:
    d.start()
    accepted = _seen(lambda r: r.get("broker") == "kiwoom" and r.get("kind") == "login_accepted")
    if not d.wait_until(accepted, 10 * d.time_scale, "a Kiwoom LOGIN accepted"):
        return
    seq = _last_seq(d)
    d.mark("expire")
    d.kiwoom_fault("expire_tokens")
    d.kiwoom_fault("drop_socket")
    again = _seen(lambda r: r.get("broker") == "kiwoom" and r.get("kind") == "login_accepted", seq)
    d.wait_until(again, 10 * d.time_scale, "a LOGIN accepted with a new token")
    _settle(d)


def _missing_secret_script(d: Driver) -> None:
    d.start()
    deadline = d.now() + _EXIT_WAIT_REAL_S * d.time_scale
    while d.alive() and d.now() < deadline:
        d.sleep(0.1 * d.time_scale)


def _failover_script(d: Driver) -> None:
    interval = protocol_clause(d.spec, "FAILOVER-KIWOOM").number("probe_interval_s")
    d.start()
    if not d.wait_until(_kis_all_subscribed(d, 0), 10 * d.time_scale, "every subscription on KIS"):
        return
    d.sleep(_SETTLE_REAL_S * d.time_scale)
    seq = _last_seq(d)
    d.mark("kis_down")
    d.fault("refuse_connections", on=True)
    d.fault("drop_socket")
    if not d.wait_until(
        _seen(_kiwoom_reg_accepted(d), seq),
        10 * d.time_scale,
        "the Kiwoom backup registered",
    ):
        return
    # Down long enough for two probes, then up: the next probe switches back.
    d.sleep(2.2 * interval)
    seq = _last_seq(d)
    d.mark("kis_up")
    d.fault("refuse_connections", on=False)
    d.wait_until(_kis_all_subscribed(d, seq), interval + 5 * d.time_scale, "back on KIS")
    _settle(d)


# ------------------------------------------------------------------------------ the catalogue
KIWOOM_SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        name="kiwoom-steady",
        doc="STOCKMON_BROKER=kiwoom: LOGIN first, REG of the KR subscriptions, REAL values printed, "
        "PINGs echoed verbatim, the token request with the secret, one socket.",
        checks=(
            kiwoom.kiwoom_login_sent_first,
            kiwoom.kiwoom_registrations_cover_kr_subscriptions,
            kiwoom.kiwoom_pings_echoed_verbatim,
            kiwoom.kiwoom_real_values_printed,
            kiwoom.kiwoom_token_requests_carry_the_secret,
            sockets.never_two_sockets_open,
            credentials.secrets_never_printed,
        ),
        script=_steady_script,
        subscriptions=_kiwoom_subscriptions,
        time_scale=20.0,
        kiwoom=lambda spec: {
            "env": "mock",
            "ping_period_s": _STEADY_PING_S,
            "tick_rate_hz": _rounds(20.0),
            "repeat_entry_probability": 0.3,
        },
        extra_env=_extra("kiwoom"),
        requires=("KIWOOM-PROTOCOL",),
        weight=8,
    ),
    Scenario(
        name="kiwoom-prod",
        doc="A prod Kiwoom environment: every LOGIN carries an issued session token; after the "
        "token expires a new one is issued, never the refused one offered again.",
        checks=(kiwoom.kiwoom_login_carries_an_issued_token, credentials.secrets_never_printed),
        script=_prod_script,
        subscriptions=_kiwoom_subscriptions,
        time_scale=20.0,
        kiwoom=lambda spec: {"env": "prod", "tick_rate_hz": _rounds(20.0, 0.5)},
        extra_env=_extra("kiwoom", "prod"),
        redis=True,
        weight=7,
    ),
    Scenario(
        name="kiwoom-missing-secret",
        doc="STOCKMON_ENV=prod with KIWOOM_APP_SECRET unset: exit with an error, contact nobody.",
        checks=(kiwoom.missing_kiwoom_secret_refused, credentials.secrets_never_printed),
        script=_missing_secret_script,
        subscriptions=_kiwoom_subscriptions,
        time_scale=10.0,
        kiwoom=lambda spec: {"env": "prod"},
        extra_env=_extra("kiwoom", "prod"),
        drop_env=("KIWOOM_APP_SECRET",),
        # prod makes the lock mandatory: with Redis there, only the missing secret can stop it
        redis=True,
        expect_exit=True,
        requires=("CRED-KIWOOM-SECRET",),
        weight=3,
    ),
    Scenario(
        name="kiwoom-failover",
        doc="STOCKMON_BROKER=auto: KIS refuses connections for two probe intervals. After the "
        "reconnect budget, KIS closed then Kiwoom opened for the KR keys (US reported), KIS probed "
        "on schedule, then back on KIS; never two sockets across both brokers.",
        checks=(
            sockets.never_two_sockets_open,
            kiwoom.failover_after_the_reconnect_budget,
            kiwoom.backup_serves_kr_and_reports_us,
            kiwoom.switches_back_to_kis,
            kiwoom.kis_probed_on_schedule,
            credentials.secrets_never_printed,
        ),
        script=_failover_script,
        subscriptions=_kiwoom_subscriptions,
        time_scale=100.0,
        mock=lambda spec: {"tick_rate_hz": _rounds(100.0), **_kis_calm(spec, 100.0)},
        kiwoom=lambda spec: {"env": "mock", "tick_rate_hz": _rounds(100.0)},
        extra_env=_extra("auto"),
        requires=("FAILOVER-KIWOOM",),
        weight=16,
    ),
)

__all__ = ["KIWOOM_SCENARIOS"]
