"""Credential stories: a KIS credential missing from the environment (the Kiwoom secret's twin is
the ``kiwoom-missing-secret`` scenario, on the same script)."""

from __future__ import annotations

from stockmon.conformance.checks import credentials
from stockmon.conformance.scenario import Scenario, exits_on_its_own

SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        name="missing-credential",
        doc="KIS_APP_SECRET is not set: the target exits with an error and contacts nobody.",
        checks=(
            credentials.missing_credential_exits_before_connecting,
            credentials.secrets_never_printed,
        ),
        script=exits_on_its_own,
        drop_env=("KIS_APP_SECRET",),
        expect_exit=True,
        weight=3,
    ),
)
