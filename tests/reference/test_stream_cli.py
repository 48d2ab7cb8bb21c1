"""``stockmon stream`` as a subprocess: the IUT contract of DESIGN §5 end to end."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import subprocess
import sys
from decimal import Decimal
from typing import Any

import pytest
from stream_support import STOCKMON, cli_env

from stockmon.mockserver import KisMock, MockConfig
from stockmon.reference.registry import DEFAULT_SUBSCRIPTIONS, checked_settings
from stockmon.reference.wiring import TOKEN_RENEWED
from stockmon.schemas import errors as schema_errors

SUBS = "H0STCNT0:005930,HDFSCNT0:DNASAAPL,H0STASP0:000660"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


async def _spawn_stream(env: dict[str, str]) -> asyncio.subprocess.Process:
    """``stockmon stream`` as a child with piped stdout and stderr."""
    return await asyncio.create_subprocess_exec(
        STOCKMON, "stream", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )


async def _stream_until(
    mock: KisMock, sig: int, *, min_data: int = 6, subs: str | None = SUBS
) -> tuple[int, list[str], str]:
    env = cli_env({**mock.env(), **({"STOCKMON_SUBSCRIPTIONS": subs} if subs is not None else {})})
    proc = await _spawn_stream(env)
    assert proc.stdout is not None and proc.stderr is not None
    lines: list[str] = []
    data = 0
    try:
        while data < min_data:
            raw = await asyncio.wait_for(proc.stdout.readline(), 20)
            assert raw, "stdout closed early"
            line = raw.decode()
            lines.append(line)
            if json.loads(line)["type"] != "status":
                data += 1
    finally:
        proc.send_signal(sig)
    rest, err = await asyncio.wait_for(proc.communicate(), 20)
    lines += rest.decode().splitlines(keepends=True)
    assert proc.returncode is not None
    return proc.returncode, lines, err.decode()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_streams_json_lines_and_exits_cleanly_on_signal(sig: int) -> None:
    """JSON lines valid against schema event, flushed live; the signal gives exit 0, no traceback."""
    async with KisMock(MockConfig(time_scale=50.0, tick_rate_hz=2.0)) as mock:
        code, lines, err = await _stream_until(mock, sig)
        assert code == 0, err
        assert "Traceback" not in err
        events = [json.loads(line, parse_float=Decimal) for line in lines]
        for e in events:
            assert schema_errors("event", json.loads(json.dumps(e, default=float))) == [], e
        assert {e["tr_id"] for e in events if e["type"] == "tick"} >= {"H0STCNT0", "HDFSCNT0"}
        assert any(e["type"] == "orderbook" for e in events)
        socket_states = [
            e["state"] for e in events if e["type"] == "status" and e["state"] != TOKEN_RENEWED
        ]
        assert socket_states[:2] == ["connecting", "connected"]
        assert any(e.get("state") == TOKEN_RENEWED and e.get("expires_at") for e in events)
        # the socket was closed by the client, cleanly
        await mock.trace.wait_for(lambda r: r["kind"] == "ws_close", timeout_s=5)
        closes = [r for r in mock.trace.records() if r["kind"] == "ws_close"]
        assert closes and closes[0]["by"] == "client"


async def test_without_subscriptions_a_kr_and_a_us_tick_are_streamed() -> None:
    """With only the mock's exports, ticks for a KR and a US key are printed; a piped stderr stays clean."""
    async with KisMock(MockConfig(time_scale=50.0, tick_rate_hz=2.0)) as mock:
        code, lines, err = await _stream_until(mock, signal.SIGINT, subs=None)
        assert code == 0
        assert "STOCKMON_SUBSCRIPTIONS" not in err
        ticks = {json.loads(line)["key"] for line in lines if json.loads(line)["type"] == "tick"}
        assert ticks == {"005930", "DNASAAPL"}


async def test_secrets_never_reach_stdout_or_stderr() -> None:
    """The app key, the app secret and the approval key appear in no output line (canaries)."""
    async with KisMock(MockConfig(time_scale=50.0, tick_rate_hz=2.0)) as mock:
        _, lines, err = await _stream_until(mock, signal.SIGTERM)
        approval_keys = [
            r["body"]["approval_key"]
            for r in mock.trace.records()
            if r["kind"] == "response"
            and isinstance(r.get("body"), dict)
            and "approval_key" in r["body"]
        ]
        assert approval_keys
        text = "".join(lines) + err
        for secret in (mock.app_key, mock.app_secret, *approval_keys):
            assert secret not in text


async def test_printed_prices_equal_the_mock_frames() -> None:
    """Every printed tick price/volume is exactly the number in a data frame the mock sent."""
    async with KisMock(MockConfig(time_scale=50.0, tick_rate_hz=2.0)) as mock:
        _, lines, _ = await _stream_until(mock, signal.SIGTERM, min_data=10)
        sent: set[tuple[str, str, Any, Any]] = set()
        spec = mock.profile.spec
        for r in mock.trace.records():
            if r["kind"] != "text" or r["dir"] != "out" or r.get("frame") != "data":
                continue
            _, tr_id, count, payload = r["text"].split("|", 3)
            layout = spec.layout(tr_id)
            if layout.kind != "tick":
                continue
            fields = payload.split("^")
            width = len(layout.fields)
            for i in range(int(count)):
                rec = fields[i * width : (i + 1) * width]
                sent.add(
                    (
                        tr_id,
                        rec[layout.index(layout.role("key"))],
                        Decimal(rec[layout.index(layout.role("price"))]),
                        int(rec[layout.index(layout.role("volume"))]),
                    )
                )
        ticks = [json.loads(line, parse_float=Decimal) for line in lines]
        printed = [
            (e["tr_id"], e["key"], Decimal(e["price"]), e["volume"])
            for e in ticks
            if e["type"] == "tick"
        ]
        assert printed
        assert set(printed) <= sent


async def test_missing_variable_is_one_line_and_connects_nowhere() -> None:
    """Without KIS_APP_KEY: exit 2, one line on stderr naming it, and the mock sees nothing."""
    async with KisMock(MockConfig(time_scale=50.0)) as mock:
        env = cli_env({**mock.env(), "STOCKMON_SUBSCRIPTIONS": SUBS})
        del env["KIS_APP_KEY"]
        proc = await _spawn_stream(env)
        out, err = await asyncio.wait_for(proc.communicate(), 20)
        assert proc.returncode == 2
        assert out == b""
        text = err.decode()
        assert len(text.strip().splitlines()) == 1 and "KIS_APP_KEY" in text
        await asyncio.sleep(0.2)
        assert not [r for r in mock.trace.records() if r["kind"] in ("request", "ws_open")]


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"STOCKMON_SUBSCRIPTIONS": "H0STCNT0:nope!"}, "STOCKMON_SUBSCRIPTIONS"),
        ({"STOCKMON_TIME_SCALE": "fast"}, "STOCKMON_TIME_SCALE"),
        ({"STOCKMON_BROKER": "ls"}, "STOCKMON_BROKER"),
        ({"KIS_WS_URL": "ws://host:notaport"}, "KIS_WS_URL"),
        ({"KIS_WS_URL": "ws://:99999"}, "KIS_WS_URL"),
    ],
)
def test_bad_settings_are_one_line_errors(change: dict[str, str], needle: str) -> None:
    """A malformed or unusable variable: exit 2 with one line naming it, no traceback."""
    env = cli_env(
        {
            "KIS_APP_KEY": "k" * 36,
            "KIS_APP_SECRET": "s" * 180,
            "KIS_WS_URL": "ws://127.0.0.1:9",
            "KIS_REST_URL": "http://127.0.0.1:9",
            "STOCKMON_SUBSCRIPTIONS": SUBS,
            **change,
        }
    )
    proc = subprocess.run(
        [STOCKMON, "stream"], env=env, capture_output=True, timeout=30, check=False
    )
    assert proc.returncode == 2
    err = proc.stderr.decode()
    assert len(err.strip().splitlines()) == 1 and needle in err and "Traceback" not in err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_default_subscriptions_are_announced_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A person at a terminal is told which keys are streamed when STOCKMON_SUBSCRIPTIONS is unset."""
    for name, value in KisMock(MockConfig()).env().items():  # the exports; nothing is contacted
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("STOCKMON_BROKER", "kis")
    err = _Terminal()
    monkeypatch.setattr(sys, "stderr", err)
    _, settings = checked_settings("stream")
    assert settings.subscriptions
    assert f"streaming {DEFAULT_SUBSCRIPTIONS}" in err.getvalue()
