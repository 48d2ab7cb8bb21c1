"""The stockmon CLI: subcommands, one-line usage errors, spec diff/show output."""

from __future__ import annotations

import subprocess
import sys

import pytest

from stockmon.cli import main
from stockmon.spec import load_spec


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a subprocess, the way a user does."""
    return subprocess.run(
        [sys.executable, "-m", "stockmon.cli", *args], capture_output=True, text=True, check=False
    )


def test_help_lists_subcommands() -> None:
    """--help lists the subcommands that exist."""
    out = run("--help")
    assert out.returncode == 0
    assert "spec" in out.stdout


def test_unknown_command_is_one_line_exit_2() -> None:
    """A wrong subcommand is a one-line error, exit 2, no traceback."""
    out = run("bogus")
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0
    assert "invalid choice" in out.stderr and "Traceback" not in out.stderr


def test_wrong_flag_is_one_line_exit_2() -> None:
    """A wrong flag of a subcommand is a one-line error too."""
    out = run("spec", "check", "--nope")
    assert out.returncode == 2
    assert "unrecognized arguments: --nope" in out.stderr and "Traceback" not in out.stderr


def test_spec_diff_lists_every_erratum() -> None:
    """'spec diff 1.0 1.1' lists every clause 1.1 adds and the amended auth clause."""
    out = run("spec", "diff", "1.0", "1.1")
    assert out.returncode == 0
    added = set(load_spec("1.1").clause_ids) - set(load_spec("1.0").clause_ids)
    assert added
    for cid in added:
        assert f"+ {cid}" in out.stdout
    assert "~ POL-AUTH-FAILED" in out.stdout and "EGW00123" in out.stdout


def test_spec_diff_lists_the_internal_api() -> None:
    """'spec diff 1.1 1.2' lists every API clause 1.2 adds, with its values, and changes nothing else."""
    out = run("spec", "diff", "1.1", "1.2")
    assert out.returncode == 0
    added = set(load_spec("1.2").clause_ids) - set(load_spec("1.1").clause_ids)
    assert {"API-AUTH", "API-STREAM", "API-SNAPSHOT", "API-STATUS", "API-SUBSCRIPTIONS"} <= added
    for cid in added:
        assert f"+ {cid}" in out.stdout
    assert "ws_close_code = 4401" in out.stdout
    for cid in load_spec("1.1").clause_ids:  # the broker clauses are 1.1's, unchanged
        assert f"~ {cid}" not in out.stdout and f"- {cid}" not in out.stdout


def test_spec_show_prints_values() -> None:
    """'spec show KA-PING' prints the clause with its values in both languages."""
    out = run("spec", "show", "KA-PING")
    assert out.returncode == 0
    interval = load_spec().clause("KA-PING").integer("interval_s")
    assert f"interval_s: {interval}" in out.stdout
    assert "en:" in out.stdout and "ko:" in out.stdout


def test_spec_show_unknown_clause_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown clause ID is exit 2 with a hint."""
    assert main(["spec", "show", "NOPE-1"]) == 2
    assert "spec list" in capsys.readouterr().err


def test_spec_show_json_is_machine_readable() -> None:
    """--json output parses and carries the values."""
    import json

    out = run("spec", "show", "POL-IDLE-RECONNECT", "--spec", "1.0", "--json")
    data = json.loads(out.stdout)
    assert data["values"]["actions"] == ["close", "open"]
