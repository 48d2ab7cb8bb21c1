"""Hostile frames against the client over a real loopback WebSocket: counted, survived (issue 11, probe 1)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import Callable

import pytest
from stream_support import APPROVAL, data_frame, kis_client, sample_fields
from websockets.asyncio.server import ServerConnection, serve

from stockmon.clock import ScaledClock
from stockmon.reference.errors import RemoteProtocolError
from stockmon.reference.events import MalformedFrame
from stockmon.reference.kis.session import SessionCore
from stockmon.reference.output import JsonLinesSink
from stockmon.settings import Subscription
from stockmon.spec import load_spec

SPEC = load_spec("1.1")
SUB = Subscription("H0STCNT0", "005930")
DEEP = "[" * 100_000 + "]" * 100_000  # 200 KB, far under the 4 MiB message cap
SURROGATE = '{"header":{"tr_id":"H0STCNT0","tr_key":"005930"},"body":{"rt_cd":"1","msg_cd":"X","msg1":"\\ud800"}}'

pytestmark = pytest.mark.timeout(30)


class FixedApproval:
    """A credential source that always has the same approval key (no REST in these tests)."""

    async def credential(self, *, force_new: bool = False) -> str | None:
        """The fixed key."""
        return APPROVAL


async def until(cond: Callable[[], bool], what: str, within: float = 10.0) -> None:
    """Wait for ``cond`` (real seconds)."""
    deadline = asyncio.get_running_loop().time() + within
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_deep_surrogate_and_binary_frames_are_dropped_and_the_stream_goes_on() -> None:
    """A 100,000-deep control frame, a lone-surrogate msg1 and non-UTF-8 binary: 3 drops, no crash, data after."""
    good = data_frame(SPEC, "H0STCNT0", [sample_fields(SPEC.layout("H0STCNT0"), "005930")])
    sockets = 0

    async def hostile(ws: ServerConnection) -> None:
        nonlocal sockets
        sockets += 1
        await ws.recv()  # the subscribe
        for frame in (DEEP, SURROGATE, b"\xff\xfe\x00garbage", good):
            await ws.send(frame)
        await ws.wait_closed()

    raw = io.BytesIO()
    stdout = io.TextIOWrapper(raw, encoding="utf-8", errors="strict", write_through=True)
    async with serve(hostile, "127.0.0.1", 0, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        client = kis_client(
            spec=SPEC,
            ws_url=f"ws://127.0.0.1:{port}",
            subscriptions=[SUB],
            approval=FixedApproval(),
            clock=ScaledClock(1.0),
            sink=JsonLinesSink(stdout),
        )
        task = asyncio.create_task(client.run())
        await until(lambda: client.core.stats.frames >= 1, "the good frame after the hostile ones")
        assert not task.done(), "the stream ended"
        assert client.malformed == 3
        assert sockets == 1, "a hostile frame must not cost the socket"
        client.stop()
        await asyncio.wait_for(task, 5)
    lines = [json.loads(line) for line in raw.getvalue().decode("utf-8").splitlines()]
    assert sum(1 for line in lines if line.get("state") == "frame_dropped") == 3
    assert any(line.get("type") == "tick" for line in lines)


def test_core_counts_each_hostile_control_frame_as_malformed() -> None:
    """The sans-I/O core turns each hostile control frame into one MalformedFrame, typed and counted."""
    core = SessionCore(SPEC)
    core.set_credential(APPROVAL)
    core.start(0.0)
    core.connected(0.0)
    for text in (DEEP, SURROGATE, '{"a":NaN}', "[" * 5000):
        core.text_received(text, 1.0)
    core.bytes_received(b"\xc3(", 1.0)
    events = []
    while (ev := core.next_event()) is not None:
        events.append(ev)
    dropped = [e for e in events if isinstance(e, MalformedFrame)]
    assert len(dropped) == 5
    assert core.stats.malformed == 5
    assert "UTF-8" in str(dropped[-1].error)


def test_sink_never_dies_on_a_lone_surrogate() -> None:
    """A status carrying a lone surrogate is written as escaped, valid JSON to a strict UTF-8 stream."""
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="utf-8", errors="strict", write_through=True)
    sink = JsonLinesSink(stream)
    sink.event(MalformedFrame(RemoteProtocolError("bad \ud800 msg"), "x", source="kis"))
    sink.flush()
    (line,) = raw.getvalue().decode("utf-8").splitlines()
    assert "\\ud800" in line
    assert json.loads(line)["state"] == "frame_dropped"
    assert not sink.broken


def test_full_disk_stops_the_sink_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """Writing to /dev/full (ENOSPC) marks the sink broken and says so in one line, no traceback."""
    called: list[bool] = []
    with open("/dev/full", "w", encoding="utf-8") as full:
        sink = JsonLinesSink(full, on_broken=lambda: called.append(True))
        sink.event(MalformedFrame(RemoteProtocolError("x"), "x", source="kis"))
        sink.flush()
        assert sink.broken
        assert called == [True]
        with contextlib.suppress(OSError):  # the buffered line cannot be flushed on close either
            full.close()
    err = capsys.readouterr().err
    assert "cannot write the output" in err
    assert "Traceback" not in err
