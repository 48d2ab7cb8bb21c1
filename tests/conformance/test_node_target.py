"""The contract alone suffices: a KIS client in Node.js, written from the README and ``stockmon spec
show`` only (targets/node_client/, no stockmon code), passes the suite under ``--profile kis``; the
same client with its pings switched off fails on KA-PING, so the pass is not a rubber stamp.

The suite is driven through its CLI, exactly as an implementer's CI would call it. Both runs start
at once (they mostly sleep in spec time), so the file costs one run's wall time. Without node and npm
the tests are skipped on a developer's machine and fail where ``.ci/run`` says they are installed
(STOCKMON_TEST_REQUIRE_NODE=1).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

NODE_CLIENT = Path(__file__).resolve().parent / "targets" / "node_client"
SPEC = "1.1"
# One scenario per main behaviour: packets, pings, server PINGPONG, data values and the frame
# grammar (kis-steady); release-then-subscribe and error bodies (subscribe-errors); refresh, retry
# and the throttle (auth-failure); idle reconnect (stall); the fleet's Redis lock (fleet).
SELECTION = "kis-steady or subscribe-errors or auth-failure or stall or fleet"
COVERED = {
    "PKT-SUBSCRIBE",
    "PKT-DATA",
    "PKT-DATA-FRAME",
    "KA-PING",
    "KA-HEARTBEAT",
    "KA-SERVER-PINGPONG",
    "WS-APPROVAL-KEY",
    "WS-SINGLE-SOCKET",
    "TOKEN-KIS-BEARER",
    "CRED-ENV",
    "POL-ALREADY-SUBSCRIBED",
    "PKT-UNSUBSCRIBE",
    "ERR-WS-BODY",
    "POL-AUTH-FAILED",
    "TOKEN-KIS-THROTTLE",
    "POL-IDLE-RECONNECT",
    "KA-TIMERS",
    "TOKEN-KIS-LOCK",
}


def node_missing(which: Any = shutil.which) -> str | None:
    """Why the Node target cannot run here (no node or npm on PATH), else None."""
    absent = [tool for tool in ("node", "npm") if which(tool) is None]
    if absent:
        return f"{' and '.join(absent)} not on PATH (apt-get install -y nodejs npm; .ci/run installs them)"
    return None


def require_node(which: Any = shutil.which) -> None:
    """Skip without node/npm, but fail when STOCKMON_TEST_REQUIRE_NODE=1 says they are installed."""
    why = node_missing(which)
    if why is None:
        return
    if os.environ.get("STOCKMON_TEST_REQUIRE_NODE") == "1":
        pytest.fail(why)
    pytest.skip(why)


@dataclass(frozen=True)
class Run:
    """One ``stockmon conformance`` run: its exit status, JSON report and terminal output."""

    exit_code: int
    report: dict[str, Any]
    output: str

    def clauses(self, outcome: str) -> set[str]:
        """Clauses of the checks that ran with this outcome."""
        return {
            c
            for check in self.report["checks"]
            if check["outcome"] == outcome
            for c in check["clauses"]
        }


def _start(tmp: Path, name: str, target: str, select: str) -> tuple[subprocess.Popen[str], Path]:
    report = tmp / f"{name}.json"
    argv = [
        *(sys.executable, "-m", "stockmon.cli", "conformance"),
        *("--target", target, "--profile", "kis", "--spec", SPEC, "-k", select),
        *("--report", str(report)),
    ]
    proc = subprocess.Popen(
        argv, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    return proc, report


def _finish(proc: subprocess.Popen[str], report: Path) -> Run:
    output, _ = proc.communicate(timeout=180)
    data = json.loads(report.read_text(encoding="utf-8")) if report.exists() else {"checks": []}
    return Run(proc.returncode, data, output)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Run]]:
    """npm ci, then the conforming client and its no-ping mutant judged at once."""
    require_node()
    npm = shutil.which("npm")
    assert npm is not None
    installed = subprocess.run(
        [npm, "ci", "--prefix", str(NODE_CLIENT), "--no-audit", "--no-fund"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    tmp = tmp_path_factory.mktemp("node-target")
    client = f"node {NODE_CLIENT / 'client.mjs'}"
    started = {
        "client": _start(tmp, "client", client, SELECTION),
        "no-ping": _start(tmp, "no-ping", f"{client} --mutant no-ping", "KA-PING"),
    }
    yield {name: _finish(*pair) for name, pair in started.items()}


def test_node_client_is_conformant(runs: dict[str, Run]) -> None:
    """The Node client passes every selected check, and the selection covers the main clauses."""
    run = runs["client"]
    assert run.exit_code == 0, run.output[-3000:]
    assert run.report["verdict"] == "CONFORMANT"
    assert run.clauses("fail") == set() and run.clauses("error") == set()
    assert run.clauses("pass") >= COVERED, COVERED - run.clauses("pass")


def test_node_client_without_pings_fails_on_ka_ping(runs: dict[str, Run]) -> None:
    """The same client with no application ping is exit 1, failing exactly KA-PING."""
    run = runs["no-ping"]
    assert run.exit_code == 1, run.output[-3000:]
    assert run.clauses("fail") == {"KA-PING"}
    assert "KA-PING" in run.output.splitlines()[-1]


def test_missing_node_fails_when_required(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without node, STOCKMON_TEST_REQUIRE_NODE=1 turns the skip into a failure naming the tool."""
    monkeypatch.setenv("STOCKMON_TEST_REQUIRE_NODE", "1")
    with pytest.raises(pytest.fail.Exception, match="node and npm not on PATH"):
        require_node(which=lambda tool: None)
    monkeypatch.delenv("STOCKMON_TEST_REQUIRE_NODE")
    with pytest.raises(pytest.skip.Exception, match="npm not on PATH"):
        require_node(which=lambda tool: None if tool == "npm" else "/usr/bin/node")
