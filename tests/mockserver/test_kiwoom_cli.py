"""`stockmon mock` also runs the Kiwoom mock: its URLs and KIWOOM_* exports work, one shared trace."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from stockmon.spec import load_spec

STOCKMON = str(Path(sys.executable).with_name("stockmon"))
REST = load_spec("1.1").rest["kiwoom"]


def _exports(proc: subprocess.Popen[str], seen: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    assert proc.stdout is not None
    while "KIWOOM_WS_URL" not in env:
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        seen.append(line)
        if line.startswith("export "):
            k, _, v = line[len("export ") :].strip().partition("=")
            env[k] = v.strip("'")
    return env


def test_mock_cli_runs_kiwoom_beside_kis(tmp_path: Path) -> None:
    """KIWOOM_* exports reach a working Kiwoom mock; --kiwoom-env prod is announced; one trace file."""
    trace = tmp_path / "t.jsonl"
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
            "--kiwoom-env",
            "prod",
            "--trace",
            str(trace),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    banner: list[str] = []
    try:
        env = _exports(proc, banner)
        assert env["KIWOOM_WS_URL"].endswith(REST["ws_path"])
        r = httpx.post(
            env["KIWOOM_REST_URL"] + REST["token"]["path"],
            json={
                "grant_type": REST["grant_type"],
                "appkey": env["KIWOOM_APP_KEY"],
                "secretkey": env["KIWOOM_APP_SECRET"],
            },
        )
        assert r.json()["return_code"] == 0
        httpx.post(env["KIS_REST_URL"] + "/oauth2/tokenP", json={})
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0 and "Traceback" not in err
    assert "env prod: LOGIN token required" in "".join(banner)
    records = [json.loads(line) for line in trace.read_text().splitlines()]
    brokers = {r.get("broker", "kis") for r in records if r["kind"] == "request"}
    assert brokers == {"kis", "kiwoom"}


def test_mock_cli_no_kiwoom_prints_no_kiwoom_exports() -> None:
    """--no-kiwoom runs the KIS mock alone."""
    proc = subprocess.Popen(
        [STOCKMON, "mock", "--rest-port", "0", "--ws-port", "0", "--no-kiwoom"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        while not (line := proc.stdout.readline()).startswith("Ctrl-C"):
            assert line
            lines.append(line)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=10)
    assert not any("KIWOOM" in line for line in lines)
