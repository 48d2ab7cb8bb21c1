"""``stockmon stream`` with STOCKMON_BROKER=kiwoom and auto, as a subprocess against the mocks."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from stream_support import STOCKMON, cli_env, kis_and_kiwoom, most_open_sockets

from stockmon.mockserver import (
    KisMock,
    KiwoomMock,
    KiwoomMockConfig,
    KiwoomMockThread,
)
from stockmon.schemas import errors as schema_errors

SUBS = "H0STCNT0:005930,H0STASP0:000660,HDFSCNT0:DNASAAPL"
pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]


class Reader:
    """Reads a process's stdout lines in a thread; waits for lines matching a predicate."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._proc = proc
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self.raw.append(line)
            self.lines.append(json.loads(line))

    def wait(self, pred: Any, timeout_s: float = 20.0) -> dict[str, Any]:
        """The first line satisfying ``pred`` (AssertionError after the timeout)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if pred(line):
                    return line
            time.sleep(0.02)
        raise AssertionError(f"no matching line; last: {self.raw[-5:]}")

    def join(self) -> None:
        self._thread.join(10)


@pytest.fixture
def both() -> Iterator[tuple[KisMock, KiwoomMock]]:
    """KIS and Kiwoom mocks on one loop (one trace), time scale 100."""
    with kis_and_kiwoom(100.0, 0.05) as pair:
        yield pair


def _stop(proc: subprocess.Popen[str], reader: Reader) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    reader.join()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    return err


def test_broker_kiwoom_streams_from_the_kiwoom_mock() -> None:
    """STOCKMON_BROKER=kiwoom: schema-valid events with source kiwoom; US reported unserved."""
    thread = KiwoomMockThread(KiwoomMockConfig(time_scale=20.0, env="prod"))
    kw = thread.start()
    try:
        env = cli_env(
            {
                **kw.env(),
                "STOCKMON_ENV": "mock",
                "STOCKMON_BROKER": "kiwoom",
                "STOCKMON_TIME_SCALE": "20",
                "STOCKMON_SUBSCRIPTIONS": SUBS,
            }
        )
        proc = subprocess.Popen(
            [STOCKMON, "stream"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        reader = Reader(proc)
        reader.wait(lambda e: e["type"] == "tick")
        reader.wait(lambda e: e["type"] == "orderbook")
        err = _stop(proc, reader)
    finally:
        thread.stop()
    assert all(schema_errors("event", e) == [] for e in reader.lines)
    assert {e["source"] for e in reader.lines} == {"kiwoom"}
    assert any(e.get("state") == "unserved" and e.get("key") == "DNASAAPL" for e in reader.lines)
    assert kw.app_secret not in err + "".join(reader.raw)


def test_auto_fails_over_to_kiwoom_and_back_with_one_socket(
    both: tuple[KisMock, KiwoomMock],
) -> None:
    """The default stream (Kiwoom configured: auto) with KIS killed longer than the reconnect
    budget: Kiwoom serves KR, then KIS again; never two sockets."""
    kis, kw = both
    env = cli_env({**kis.env(), **kw.env(), "STOCKMON_SUBSCRIPTIONS": SUBS})  # no STOCKMON_BROKER
    proc = subprocess.Popen(
        [STOCKMON, "stream"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    reader = Reader(proc)
    reader.wait(lambda e: e["source"] == "kis" and e["type"] != "status")
    kis.faults.refuse_connections(True)
    kis.faults.drop_socket()
    reader.wait(lambda e: e["source"] == "kiwoom" and e["type"] == "tick")
    kis.faults.refuse_connections(False)
    back = reader.wait(lambda e: e.get("state") == "switched_back", 20.0)
    reader.wait(
        lambda e: (
            e["source"] == "kis"
            and e["type"] != "status"
            and reader.lines.index(e) > reader.lines.index(back)
        )
    )
    _stop(proc, reader)
    assert most_open_sockets(kis.trace.records()) == 1
    assert [
        e.get("state") for e in reader.lines if e.get("state") in ("failover", "switched_back")
    ] == ["failover", "switched_back"]
    assert any(e.get("state") == "unserved" and e.get("key") == "DNASAAPL" for e in reader.lines)


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"STOCKMON_BROKER": "kiwoom", "KIWOOM_APP_KEY": "k" * 43}, "KIWOOM_APP_SECRET"),
        ({"STOCKMON_BROKER": "kiwoom", "STOCKMON_ENV": "prod"}, "KIWOOM_APP_KEY"),
        (
            {
                "STOCKMON_BROKER": "kiwoom",
                "STOCKMON_ENV": "prod",
                "KIWOOM_APP_KEY": "k" * 43,
                "KIWOOM_APP_SECRET": "s" * 43,
            },
            "REDIS_URL",
        ),
        (
            {"STOCKMON_BROKER": "auto", "KIWOOM_APP_KEY": "k" * 43, "KIWOOM_APP_SECRET": "s" * 43},
            "KIS_APP_KEY",
        ),
    ],
)
def test_unusable_backup_settings_are_one_line_errors(env: dict[str, str], needle: str) -> None:
    """CRED-KIWOOM-SECRET / TOKEN-KIWOOM-SESSION: exit 2, one line naming the variable, nothing contacted."""
    out = subprocess.run(
        [STOCKMON, "stream"],
        env=cli_env({"STOCKMON_ENV": "mock", "STOCKMON_SUBSCRIPTIONS": SUBS, **env}),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], out.stderr
    assert "s" * 43 not in out.stderr
