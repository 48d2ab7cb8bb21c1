"""Behaviour every broker shares, pinned for each: settings errors, flush policy, a closed stdout."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest
from stream_support import APPROVAL, STOCKMON, cli_env, data_frame, kis_and_kiwoom, sample_fields

from stockmon.clock import ScaledClock
from stockmon.reference.events import Event
from stockmon.reference.registry import BROKERS, MODES
from stockmon.reference.seams import OpenGate, SharedCredentialSource
from stockmon.reference.shell import StreamClient
from stockmon.settings import Subscription, load_settings
from stockmon.spec import load_spec

SUBS = "H0STCNT0:005930,H0STASP0:005930"
SPEC = load_spec("1.1")
BROKER_NAMES = sorted(BROKERS)


# ---------------------------------------------------------------------- malformed URLs


def _url_cases() -> list[tuple[str, str, str]]:
    cases = []
    for name in BROKER_NAMES:
        b = BROKERS[name]
        for value in ("ws://host:notaport", "ws://:99999"):
            cases.append((name, b.ws_url_variable, value))
        cases.append((name, b.rest_url_variable, "http://host:notaport"))
    return cases


@pytest.mark.parametrize(("broker", "variable", "value"), _url_cases())
def test_a_malformed_url_is_a_one_line_settings_error(
    broker: str, variable: str, value: str
) -> None:
    """A URL the client cannot use: exit 2, one line naming the variable, no traceback."""
    env = cli_env(
        {
            "KIS_APP_KEY": "k" * 36,
            "KIS_APP_SECRET": "s" * 180,
            "KIS_WS_URL": "ws://127.0.0.1:9",
            "KIS_REST_URL": "http://127.0.0.1:9",
            "KIWOOM_WS_URL": "ws://127.0.0.1:9",
            "KIWOOM_REST_URL": "http://127.0.0.1:9",
            "STOCKMON_ENV": "mock",
            "STOCKMON_BROKER": broker,
            "STOCKMON_SUBSCRIPTIONS": SUBS,
            variable: value,
        }
    )
    proc = subprocess.run(
        [STOCKMON, "stream"], env=env, capture_output=True, timeout=30, check=False
    )
    assert proc.returncode == 2
    err = proc.stderr.decode()
    assert len(err.strip().splitlines()) == 1 and variable in err and "Traceback" not in err


# ---------------------------------------------------------------------- flush policy


class CountingSink:
    """Counts events and flushes."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.flushes = 0

    def event(self, ev: Event) -> None:
        self.events.append(ev)

    def flush(self) -> None:
        self.flushes += 1


def _open_kis(client: StreamClient) -> Callable[[int], str]:
    core = client.core
    core.set_credential(APPROVAL)
    core.connected(0.0)
    layout = SPEC.layout("H0STCNT0")
    return lambda n: data_frame(SPEC, "H0STCNT0", [sample_fields(layout, "005930", n)])


def _open_kiwoom(client: StreamClient) -> Callable[[int], str]:
    core = client.core
    core.connected(0.0)
    core.text_received(json.dumps({"trnm": "LOGIN", "return_code": 0, "return_msg": ""}), 0.0)
    tick = SPEC.kiwoom_layouts["0B"].roles
    values = {tick["time"]: "093015", tick["price"]: "+70000", tick["volume"]: "+5"}
    entry = {"type": "0B", "name": "tick", "item": "005930", "values": values}
    return lambda n: json.dumps({"trnm": "REAL", "data": [entry]})


OPENERS = {"kis": _open_kis, "kiwoom": _open_kiwoom}


@pytest.mark.parametrize("broker", BROKER_NAMES)
async def test_the_sink_is_flushed_once_the_loop_is_idle(broker: str) -> None:
    """A burst of frames is flushed once, when the loop is idle, not once per frame."""
    sink = CountingSink()
    settings = load_settings(
        {"STOCKMON_ENV": "mock", "KIS_APP_KEY": "k" * 36, "KIS_APP_SECRET": "s" * 180}
    )
    client = BROKERS[broker].client(
        settings, ScaledClock(1.0), SharedCredentialSource(None), OpenGate(), sink
    )
    client._loop = asyncio.get_running_loop()
    core = client.core
    core.subscribe(Subscription("H0STCNT0", "005930"), 0.0)
    core.start(0.0)
    frame = OPENERS[broker](client)
    client._pump()
    await asyncio.sleep(0)
    before = sink.flushes
    for n in range(5):
        core.text_received(frame(n), 1.0)
        client._pump()
    assert sink.flushes == before  # nothing flushed while frames keep coming
    await asyncio.sleep(0)
    assert sink.flushes == before + 1
    client._cancel_timer()


# ---------------------------------------------------------------------- a closed stdout


@pytest.fixture
def mocks() -> Iterator[dict[str, str]]:
    """KIS and Kiwoom mocks on one loop; their exports merged."""
    with kis_and_kiwoom(20.0, 2.0) as (kis, kw):
        yield {**kis.env(), **kw.env()}


@pytest.mark.slow
@pytest.mark.parametrize("fleet", [False, True], ids=["mock-exports-only", "fleet"])
@pytest.mark.parametrize("mode", sorted(MODES))
def test_a_closed_stdout_ends_the_stream_quietly(
    mode: str, fleet: bool, mocks: dict[str, str], redis_url: str
) -> None:
    """``stockmon stream | head -n 3``: exit 0 within 2 s of the reader leaving, stderr empty.

    Once with nothing but the mock's exports (the README's first run: default subscriptions, no
    Redis), once as a fleet member (Redis, explicit subscriptions).
    """
    extra = {"STOCKMON_SUBSCRIPTIONS": SUBS, "REDIS_URL": redis_url} if fleet else {}
    env = cli_env({**mocks, "STOCKMON_BROKER": mode, **extra})
    proc = subprocess.Popen(
        [STOCKMON, "stream"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    lines = [proc.stdout.readline() for _ in range(3)]
    proc.stdout.close()  # what head does after its third line
    closed_at = time.monotonic()
    try:
        code = proc.wait(timeout=10)
    finally:
        proc.kill()
    took = time.monotonic() - closed_at
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert all(json.loads(line)["type"] == "status" for line in lines)
    assert code == 0 and err == ""
    assert took < 2.0, f"{took:.2f} s to exit after stdout closed"
