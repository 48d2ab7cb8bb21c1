"""`stockmon mock`: up within 2 s, prints URLs and exports for both brokers, one trace, clear errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from stockmon.spec import load_spec

from .support import kiwoom_token

STOCKMON = str(Path(sys.executable).with_name("stockmon"))
SPEC = load_spec()
REST = load_spec("1.1").rest["kiwoom"]
FREE_PORTS = [
    "--rest-port",
    "0",
    "--ws-port",
    "0",
    "--kiwoom-rest-port",
    "0",
    "--kiwoom-ws-port",
    "0",
]


@contextmanager
def running(*args: str) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """`stockmon mock ARGS` on free ports; stopped with SIGINT, which must exit 0 without traceback."""
    proc = subprocess.Popen(
        [STOCKMON, "mock", *FREE_PORTS, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    banner: list[str] = []
    try:
        yield proc, banner
    finally:
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0 and "Traceback" not in err


def exports(proc: subprocess.Popen[str], banner: list[str]) -> dict[str, str]:
    """The banner up to its last line (kept in ``banner``) and its `export` lines."""
    env: dict[str, str] = {}
    assert proc.stdout is not None
    while not banner or not banner[-1].startswith("Ctrl-C"):
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        banner.append(line)
        if line.startswith("export "):
            k, _, v = line[len("export ") :].strip().partition("=")
            env[k] = v.strip("'")
    return env


def test_mock_cli_starts_prints_exports_and_stops(tmp_path: Path) -> None:
    """The banner with both brokers' exports appears within 2 s; they work; one trace file."""
    trace = tmp_path / "t.jsonl"
    t0 = time.monotonic()
    with running("--kiwoom-env", "prod", "--trace", str(trace)) as (proc, banner):
        env = exports(proc, banner)
        assert time.monotonic() - t0 < 2.0 + 3.0  # 2 s target; slack for a loaded CI machine
        lengths = SPEC.rest["kis"]["credential_lengths"]
        assert len(env["KIS_APP_KEY"]) == lengths["appkey"]
        assert len(env["KIS_APP_SECRET"]) == lengths["appsecret"]
        r = httpx.post(
            env["KIS_REST_URL"] + "/oauth2/tokenP",
            json={
                "grant_type": "client_credentials",
                "appkey": env["KIS_APP_KEY"],
                "appsecret": env["KIS_APP_SECRET"],
            },
        )
        assert r.status_code == 200
        assert env["KIWOOM_WS_URL"].endswith(REST["ws_path"])
        assert kiwoom_token(env).json()["return_code"] == 0
    assert "env prod: LOGIN token required" in "".join(banner)
    records = [json.loads(line) for line in trace.read_text().splitlines()]
    brokers = {r.get("broker", "kis") for r in records if r["kind"] == "request"}
    assert brokers == {"kis", "kiwoom"}


def test_mock_cli_no_kiwoom_prints_no_kiwoom_exports() -> None:
    """--no-kiwoom runs the KIS mock alone."""
    with running("--no-kiwoom") as (proc, banner):
        exports(proc, banner)
    assert not any("KIWOOM" in line for line in banner)


@pytest.mark.parametrize(
    "args", [["--symbols", "NOPE"], ["--scenario", "/nonexistent.yaml"], ["--time-scale", "0"]]
)
def test_mock_cli_bad_flags_are_one_line(args: list[str]) -> None:
    """Bad --symbols, a bad scenario path or a bad time scale exit 2 with one line, no traceback."""
    r = subprocess.run(
        [STOCKMON, "mock", *FREE_PORTS, *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ},
    )
    assert r.returncode == 2, (args, r.stderr)
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
