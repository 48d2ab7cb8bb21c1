"""The runner's fleet tools for profile api: each target serves on a port of its own, and
``Driver.kill(index)`` SIGKILLs one target while the others run on (real subprocesses, sockets)."""

from __future__ import annotations

import socket
import sys
import time
from typing import Any

from stockmon.conformance.runner import ScenarioRun, SuiteOptions
from stockmon.conformance.scenario import Driver, Scenario
from stockmon.spec import load_spec

# A target that only listens on its STOCKMON_API_PORT (the variable the spec names) until killed.
LISTENER = (
    sys.executable,
    "-c",
    "import os, socket, time\n"
    "s = socket.socket()\n"
    "s.bind(('127.0.0.1', int(os.environ['STOCKMON_API_PORT'])))\n"
    "s.listen()\n"
    "time.sleep(60)\n",
)


def _accepts(url: str) -> bool:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1.0):
            return True
    except OSError:
        return False


def _until(pred: Any, real_s: float = 10.0) -> bool:
    end = time.monotonic() + real_s
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_each_api_target_has_its_own_port_and_one_can_be_killed() -> None:
    """Two api targets listen on distinct ports; kill(0) ends target 0 only, not as its own exit."""
    seen: dict[str, Any] = {}

    def script(d: Driver) -> None:
        d.start()
        seen["urls"] = d.api_urls
        seen["both_up"] = _until(lambda: all(_accepts(u) for u in d.api_urls))
        d.kill(0)
        seen["alive_after_kill"] = d.alive()
        seen["first_gone"] = _until(lambda: not _accepts(d.api_urls[0]))
        seen["second_up"] = _accepts(d.api_urls[1])

    scenario = Scenario("fleet-driver", "two listeners", (), script, targets=2, api=True)
    spec = load_spec("1.2")
    run = ScenarioRun(scenario, (), spec, SuiteOptions(target=LISTENER, spec_version="1.2"))
    result = run.execute()
    assert result.error is None, result.error
    assert len(set(seen["urls"])) == 2 and seen["both_up"]
    assert seen["alive_after_kill"] == 1 and seen["first_gone"] and seen["second_up"]
    assert result.evidence is not None and "kill0" in result.evidence.marks
    assert not any(t.exited_by_itself for t in result.evidence.targets)
