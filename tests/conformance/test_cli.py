"""`stockmon conformance` as a CI gate: exit 0 conformant, 1 non-conformant, 2 not judged (one line)."""

from __future__ import annotations

import shlex
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from stockmon.cli import main

MINIMAL = shlex.join(
    [sys.executable, str(Path(__file__).resolve().parent / "targets" / "minimal_client.py")]
)


def _last_error_line(err: str) -> str:
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--spec", "9.9"], "unknown"),
        (["--target", "/nonexistent/iut"], "does not exist"),
        (["--target", "no-such-command-anywhere"], "not found on PATH"),
        (["--target", "'unbalanced"], "--target"),
        (["--target", MINIMAL, "-k", "no-such-check"], "selects no check"),
        (["--time-scale", "0", "--target", MINIMAL], "--time-scale"),
    ],
)
def test_configuration_errors_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    """Bad flags, versions, commands and selections are harness errors: exit 2, one line, no run."""
    assert main(["conformance", *args]) == 2
    err = capsys.readouterr().err
    assert message in _last_error_line(err)
    assert "Traceback" not in err


@pytest.mark.slow
def test_target_that_cannot_start_is_a_harness_error(capsys: pytest.CaptureFixture[str]) -> None:
    """A target dying before it talks to the mock is not judged: exit 2 with its stderr tail."""
    target = shlex.join(
        [sys.executable, "-c", "import sys; print('boom: no config', file=sys.stderr); sys.exit(3)"]
    )
    assert main(["conformance", "--target", target, "-k", "socket-loss"]) == 2
    line = _last_error_line(capsys.readouterr().err)
    assert "status 3 before contacting the mock" in line and "boom: no config" in line


@pytest.mark.slow
def test_conformant_target_exits_0_and_writes_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A target passing the selected checks exits 0; JUnit and Markdown reports are written."""
    junit, report = tmp_path / "j.xml", tmp_path / "r.md"
    code = main(
        [
            "conformance",
            "--target",
            MINIMAL,
            "-k",
            "missing-credential",
            "--junit",
            str(junit),
            "--report",
            str(report),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "CONFORMANT (exit 0)" in out
    assert ET.parse(junit).getroot().find(".//testcase") is not None  # noqa: S314 - our own file
    assert "| CRED-ENV |" in report.read_text(encoding="utf-8")


@pytest.mark.slow
def test_non_conformant_target_exits_1_naming_the_clause(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A target breaking a clause exits 1 and the last line names the clause."""
    code = main(
        [
            "conformance",
            "--target",
            MINIMAL + " --mutant no-credential-check",
            "-k",
            "missing-credential",
        ]
    )
    captured = capsys.readouterr()
    assert code == 1, captured.out
    assert _last_error_line(captured.err) == "stockmon conformance: non-conformant: CRED-ENV"
    assert "FAIL CRED-ENV — missing_credential_exits_before_connecting" in captured.out
