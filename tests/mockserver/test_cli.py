"""`stockmon mock`: up within 2 s, prints URLs and exports, clean exit on Ctrl-C, clear errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from stockmon.spec import load_spec

STOCKMON = str(Path(sys.executable).with_name("stockmon"))


def test_mock_cli_starts_prints_exports_and_stops(tmp_path: Path) -> None:
    """The banner with the export block appears within 2 s; the exports work; SIGINT exits 0."""
    trace = tmp_path / "t.jsonl"
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [
            STOCKMON,
            "mock",
            "--rest-port",
            "0",
            "--ws-port",
            "0",
            "--kiwoom-rest-port",
            "0",
            "--kiwoom-ws-port",
            "0",
            "--trace",
            str(trace),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        env: dict[str, str] = {}
        assert proc.stdout is not None
        while "STOCKMON_TIME_SCALE" not in env:
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else ""
            if line.startswith("export "):
                k, _, v = line[len("export ") :].strip().partition("=")
                env[k] = v.strip("'")
        assert time.monotonic() - t0 < 2.0 + 3.0  # 2 s target; slack for a loaded CI machine
        lengths = load_spec().rest["kis"]["credential_lengths"]
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
    finally:
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "Traceback" not in err
    assert trace.exists()


def test_mock_cli_bad_flags_are_one_line() -> None:
    """Bad --symbols or a bad scenario path exit 2 with one line, no traceback."""
    for args in (["--symbols", "NOPE"], ["--scenario", "/nonexistent.yaml"], ["--time-scale", "0"]):
        r = subprocess.run(
            [STOCKMON, "mock", "--rest-port", "0", "--ws-port", "0", *args],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ},
        )
        assert r.returncode == 2, (args, r.stderr)
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
