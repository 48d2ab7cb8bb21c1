"""Credential checks on hand-made runs: one judge for a missing KIS credential and a missing
Kiwoom secret (CRED-ENV, CRED-KIWOOM-SECRET), pinned for both brokers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from stockmon.conformance.checks import credentials
from stockmon.conformance.evidence import Evidence
from stockmon.conformance.registry import Outcome, Verdict

from ..traces import Trace

BROKERS = [
    pytest.param(credentials.missing_credential_exits_before_connecting, "", id="kis"),
    pytest.param(credentials.missing_kiwoom_secret_refused, "kiwoom", id="kiwoom"),
]


def _exited(tr: Trace, returncode: int | None, by_itself: bool) -> Evidence:
    ev = tr.evidence(5)
    run = replace(ev.targets[0], returncode=returncode, exited_by_itself=by_itself)
    return replace(ev, targets=(run,))


def _contact(tr: Trace, broker: str) -> None:
    rec = tr.add(1, f"{broker or 'ws'}-1", "event", "ws_open", path="/", peer="127.0.0.1")
    if broker:
        rec["broker"] = broker


@pytest.mark.parametrize(("check", "broker"), BROKERS)
def test_exit_with_an_error_and_no_contact_passes(
    check: Callable[[Evidence], Verdict], broker: str
) -> None:
    """A target that exits non-zero before contacting the broker meets the clause."""
    assert check(_exited(Trace(), 2, True)).outcome is Outcome.PASS


@pytest.mark.parametrize(("check", "broker"), BROKERS)
@pytest.mark.parametrize(("returncode", "by_itself"), [(None, False), (0, True)])
def test_running_on_or_exiting_zero_fails(
    check: Callable[[Evidence], Verdict], broker: str, returncode: int | None, by_itself: bool
) -> None:
    """Going on, or exiting with status 0, without the credential breaks the clause."""
    assert check(_exited(Trace(), returncode, by_itself)).outcome is Outcome.FAIL


@pytest.mark.parametrize(("check", "broker"), BROKERS)
def test_contacting_the_broker_fails_with_the_contact_as_evidence(
    check: Callable[[Evidence], Verdict], broker: str
) -> None:
    """A socket opened to the broker without the credential fails, citing that socket."""
    tr = Trace()
    _contact(tr, broker)
    verdict = check(_exited(tr, 2, True))
    assert verdict.outcome is Outcome.FAIL
    assert [r["kind"] for r in verdict.evidence] == ["ws_open"]
