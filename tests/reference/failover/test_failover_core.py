"""FAILOVER-KIWOOM's state machine, sans-I/O: which client runs, in which order, when."""

from __future__ import annotations

from typing import Any

import pytest

from stockmon.reference.errors import LocalProtocolError
from stockmon.reference.events import StatusChanged
from stockmon.reference.failover.core import (
    FAILOVER_TRANSITIONS,
    FailoverCore,
    Mode,
    RunKis,
    RunKiwoom,
    StopKis,
    StopKiwoom,
)
from stockmon.spec import load_spec

SPEC = load_spec("1.1")
CLAUSE = SPEC.clause("FAILOVER-KIWOOM")
BUDGET = CLAUSE.integer("reconnect_budget")
PROBE = CLAUSE.number("probe_interval_s")


def drain(c: FailoverCore) -> list[Any]:
    """Every event queued so far."""
    out = []
    while (ev := c.next_event()) is not None:
        out.append(ev)
    return out


def commands(c: FailoverCore) -> list[Any]:
    """The commands queued so far (statuses dropped)."""
    return [e for e in drain(c) if not isinstance(e, StatusChanged)]


def on_backup(now: float = 10.0) -> FailoverCore:
    """A core that failed over at ``now``."""
    c = FailoverCore(SPEC)
    c.start(0.0)
    drain(c)
    for i in range(BUDGET):
        c.kis_failed(1.0 + i)
    drain(c)
    c.kis_stopped(now)
    drain(c)
    return c


def test_starts_with_kis() -> None:
    """start -> RunKis."""
    c = FailoverCore(SPEC)
    c.start(0.0)
    assert commands(c) == [RunKis()] and c.mode is Mode.KIS


def test_fewer_failures_than_the_budget_keep_kis() -> None:
    """budget - 1 failures, then a connect: the count starts over, no failover."""
    c = FailoverCore(SPEC)
    c.start(0.0)
    drain(c)
    for i in range(BUDGET - 1):
        c.kis_failed(float(i))
    c.kis_connected(9.0)
    for i in range(BUDGET - 1):
        c.kis_failed(10.0 + i)
    assert commands(c) == [] and c.mode is Mode.KIS


def test_budget_spent_closes_kis_before_opening_kiwoom() -> None:
    """The budget-th failure stops KIS; Kiwoom runs only after KIS reported stopped."""
    c = FailoverCore(SPEC)
    c.start(0.0)
    drain(c)
    for i in range(BUDGET):
        c.kis_failed(float(i))
    evs = drain(c)
    assert [e for e in evs if not isinstance(e, StatusChanged)] == [StopKis()]
    assert RunKiwoom() not in evs
    c.kis_stopped(7.0)
    evs = drain(c)
    assert RunKiwoom() in evs and c.mode is Mode.BACKUP
    assert any(
        isinstance(e, StatusChanged) and e.state == "failover" and e.source == "kiwoom" for e in evs
    )


def test_probe_closes_kiwoom_then_tries_kis_and_switches_back() -> None:
    """After probe_interval_s: stop Kiwoom; once stopped run KIS; connected -> back on KIS."""
    c = on_backup(10.0)
    assert c.get_timer() == 10.0 + PROBE
    c.handle_timer(10.0 + PROBE - 1)
    assert commands(c) == []
    c.handle_timer(10.0 + PROBE)
    assert commands(c) == [StopKiwoom()]
    c.kiwoom_stopped(10.0 + PROBE + 1)
    assert commands(c) == [RunKis(probe=True)]
    c.kis_connected(10.0 + PROBE + 2)
    assert c.mode is Mode.KIS and c.switchbacks == 1
    assert any(isinstance(e, StatusChanged) and e.state == "switched_back" for e in drain(c))


def test_failed_probe_returns_to_kiwoom_and_schedules_the_next() -> None:
    """A probe that fails probe_attempts times: stop KIS, then Kiwoom again, next probe later."""
    c = on_backup(0.0)
    c.handle_timer(PROBE)
    c.kiwoom_stopped(PROBE)
    drain(c)
    for _ in range(CLAUSE.integer("probe_attempts")):
        c.kis_failed(PROBE + 1)
    assert commands(c) == [StopKis()]
    c.kis_stopped(PROBE + 2)
    assert commands(c) == [RunKiwoom()]
    assert c.get_timer() == PROBE + 2 + PROBE and c.failovers == 1


def test_never_two_clients_at_once() -> None:
    """Asking for a second client while one runs is a bug of the runner, refused."""
    c = FailoverCore(SPEC)
    c.start(0.0)
    with pytest.raises(LocalProtocolError):
        c.kiwoom_stopped(1.0)
    c.running = "kis"
    with pytest.raises(LocalProtocolError):
        c._run(RunKiwoom())


def test_stop_stops_the_running_client() -> None:
    """stop on the backup: StopKiwoom, then STOPPED once it reported."""
    c = on_backup()
    c.stop(20.0)
    assert commands(c) == [StopKiwoom()]
    c.kiwoom_stopped(21.0)
    assert c.mode is Mode.STOPPED


def test_table_starts_a_client_only_after_a_stopped_report() -> None:
    """Every mode that starts a client is entered on START or on the other client's stopped report."""
    starters = {Mode.BACKUP, Mode.PROBING, Mode.KIS}
    for (mode, event), target in FAILOVER_TRANSITIONS.items():
        if target in starters and target is not mode:
            assert event.value in ("start", "kis_stopped", "kiwoom_stopped", "kis_connected"), (
                mode,
                event,
            )


def test_failover_is_the_default_once_a_kiwoom_key_is_set() -> None:
    """STOCKMON_BROKER unset: auto (KIS with the Kiwoom failover) with KIWOOM_APP_KEY, else kis."""
    from stockmon.settings import load_settings

    assert load_settings({"KIWOOM_APP_KEY": "k" * 43}).broker == "auto"
    assert load_settings({}).broker == "kis"
    assert load_settings({"KIWOOM_APP_KEY": "k" * 43, "STOCKMON_BROKER": "kis"}).broker == "kis"
