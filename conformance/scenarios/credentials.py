"""Credential stories: a KIS credential missing from the environment (the Kiwoom secret's twin is
the ``kiwoom-missing-secret`` scenario, on the same script)."""

from __future__ import annotations

from stockmon.conformance.checks import credentials
from stockmon.conformance.scenario import Driver, Scenario, exits_on_its_own, story


@story(
    "missing-credential",
    checks=(
        credentials.missing_credential_exits_before_connecting,
        credentials.secrets_never_printed,
    ),
    drop_env=("KIS_APP_SECRET",),
    expect_exit=True,
    weight=3,
)
def missing_credential(d: Driver) -> None:
    """KIS_APP_SECRET is not set: the target exits with an error and contacts nobody."""
    exits_on_its_own(d)


SCENARIOS: tuple[Scenario, ...] = (missing_credential,)
