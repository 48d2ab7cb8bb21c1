"""The failover story: ``STOCKMON_BROKER=auto`` with KIS refusing connections for two probe
intervals, on the trace the KIS and Kiwoom mocks share."""

from __future__ import annotations

from stockmon.conformance import scenario as sc
from stockmon.conformance.checks import credentials, failover, sockets
from stockmon.conformance.protocol import kiwoom_reg_accepted
from stockmon.conformance.scenario import Driver, Scenario, story
from stockmon.spec import broker_clause


@story(
    "kiwoom-failover",
    checks=(
        sockets.never_two_sockets_open,
        failover.failover_after_the_reconnect_budget,
        failover.backup_serves_kr_and_reports_us,
        failover.switches_back_to_kis,
        failover.kis_probed_on_schedule,
        credentials.secrets_never_printed,
    ),
    subscriptions=sc.kiwoom_subscriptions,
    time_scale=100.0,
    mock=lambda spec: {"tick_rate_hz": sc.frames(100.0, 2.0), **sc.calm(spec, 100.0)},
    kiwoom=lambda spec: {"env": "mock", "tick_rate_hz": sc.frames(100.0, 2.0)},
    broker="auto",
    requires=("FAILOVER-KIWOOM",),
    weight=16,
)
def kiwoom_failover(d: Driver) -> None:
    """STOCKMON_BROKER=auto: KIS refuses connections for two probe intervals. After the reconnect
    budget, KIS closed then Kiwoom opened for the KR keys (US reported), KIS probed on schedule,
    then back on KIS; never two sockets across both brokers."""
    interval = broker_clause(d.spec, "FAILOVER-KIWOOM").number("probe_interval_s")
    d.start()
    if not d.wait_until(sc.all_subscribed(d), 10 * d.time_scale, "every subscription on KIS"):
        return
    d.sleep(sc.SETTLE_REAL_S * d.time_scale)
    seq = sc.last_seq(d)
    d.fault("refuse_connections", on=True)
    d.fault("drop_socket")
    backup = sc.seen(kiwoom_reg_accepted(d.spec), seq)
    if not d.wait_until(backup, 10 * d.time_scale, "the Kiwoom backup registered"):
        return
    # Down long enough for two probes, then up: the next probe switches back.
    d.sleep(2.2 * interval)
    seq = sc.last_seq(d)
    d.fault("refuse_connections", on=False)
    d.wait_until(sc.all_subscribed(d, seq), interval + 5 * d.time_scale, "back on KIS")
    sc.settle(d)


SCENARIOS: tuple[Scenario, ...] = (kiwoom_failover,)
