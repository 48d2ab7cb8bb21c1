"""The trace: every frame both ways, valid against schemas/trace-record.json, no secrets."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from stockmon.mockserver import KisMock, MockConfig
from stockmon.mockserver.trace import TextOut, Trace
from stockmon.schemas import errors as schema_errors

from .support import PING, get_approval, get_token, kr_quote, recv_control, recv_matching, sub

CANARY_SECRET = "CANARY" + "s" * 174


@pytest.mark.parametrize(
    "mock_config", [MockConfig(tick_rate_hz=20, time_scale=200, app_secret=CANARY_SECRET)]
)
async def test_session_trace_is_complete_valid_and_secret_free(
    client: httpx.AsyncClient, mock: KisMock, tmp_path: Path
) -> None:
    """A full session shows requests, responses, both directions of frames; JSONL validates."""
    token = (await get_token(client, mock)).json()["access_token"]
    await kr_quote(client, mock, token)
    ak = await get_approval(client, mock)
    async with connect(mock.ws_url) as ws:
        await ws.send(sub(ak, "H0STCNT0", "005930"))
        await recv_control(ws)
        await recv_matching(ws, lambda m: m[:1] == "0")
        ping = await recv_matching(ws, lambda m: PING in m)
        await ws.send(ping)
        await ws.send(b"\x00binary")
        await recv_control(ws)
    await mock.trace.wait_for(lambda r: r["kind"] == "ws_close")
    path = tmp_path / "trace.jsonl"
    n = mock.trace.to_jsonl(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert n == len(lines) > 0
    records = [json.loads(x) for x in lines]
    for rec in records:
        assert schema_errors("trace-record", rec) == [], rec
    seqs = [r["seq"] for r in records]
    assert seqs == sorted(set(seqs))
    kinds = {(r["kind"], r["dir"]) for r in records}
    for expected in [
        ("request", "in"),
        ("response", "out"),
        ("token_issued", "event"),
        ("ws_open", "event"),
        ("text", "in"),
        ("text", "out"),
        ("binary", "in"),
        ("violation", "in"),
        ("ws_close", "event"),
    ]:
        assert expected in kinds
    frames = {r["frame"] for r in records if r["kind"] == "text" and r["dir"] == "out"}
    assert {"data", "control", "pingpong"} <= frames
    responses = [r for r in records if r["kind"] == "response"]
    assert any(r.get("token") == token for r in responses)
    requests = [r for r in records if r["kind"] == "request"]
    assert any(r["headers"].get("authorization") == f"Bearer {token}" for r in requests)
    assert CANARY_SECRET not in path.read_text(encoding="utf-8")
    assert CANARY_SECRET not in repr(mock.config)


async def test_trace_wait_for_times_out(mock: KisMock) -> None:
    """wait_for raises TimeoutError when nothing matches."""
    with pytest.raises(TimeoutError):
        await mock.trace.wait_for(lambda r: r["kind"] == "never", timeout_s=0.05)


def test_trace_limit_keeps_newest() -> None:
    """A bounded trace keeps the newest records; seq keeps counting."""
    from stockmon.mockserver.trace import Trace

    t = Trace(limit=3)
    for i in range(5):
        t.record(float(i), "mock", "mock", "event", "x", i=i)
    assert [r["seq"] for r in t.records()] == [3, 4, 5]
    assert [r["seq"] for r in t.records(since_seq=4)] == [5]


def test_a_batch_of_frames_reads_as_single_records() -> None:
    """record_texts_out stores a batch as the records record_text_out would, within the limit."""
    one, batch = Trace(time_scale=2.0, limit=3), Trace(time_scale=2.0, limit=3)
    sends = [TextOut(f"0|H0STCNT0|001|{i}", "data", None, "H0STCNT0", "005930") for i in range(5)]
    for s in sends:
        one.record_text_out(1.0, "ws", "c1", s.text, s.json, s.tr_id, s.tr_key, s.msg_cd, s.frame)
    batch.record_texts_out(1.0, "ws", "c1", sends)
    assert batch.records() == one.records()
    assert [r["seq"] for r in batch.records()] == [3, 4, 5] and batch.dropped == 2
