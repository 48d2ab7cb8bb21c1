"""Hostile input against the mock: the trace keeps it, stays bounded, streams and never shows a
secret (issue 11, probes 2, 3, 5 and 8), over real loopback sockets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import websockets

from stockmon.mockserver import KisMock
from stockmon.mockserver.trace import Trace, dumps

from .support import KIS, get_approval, sub

SURROGATE_SUB = (
    '{"header":{"approval_key":"%s","custtype":"P","tr_type":"1","content-type":"utf-8"},'
    '"body":{"input":{"tr_id":"H0STCNT0","tr_key":"\\ud800"}}}'
)


def _lines(body: bytes) -> list[dict[str, object]]:
    return [json.loads(line) for line in body.decode("utf-8").splitlines()]


async def test_surrogate_and_deep_frames_leave_the_trace_readable(
    mock: KisMock, client: httpx.AsyncClient
) -> None:
    """A lone-surrogate subscribe and a 970-deep one: GET /_mock/trace answers 200, every line JSON."""
    approval = await get_approval(client, mock)
    async with websockets.connect(mock.ws_url) as ws:
        await ws.send(SURROGATE_SUB % approval)
        await ws.send('{"header":' + "[" * 970 + "]" * 970 + "}")
        await ws.send(sub(approval, "H0STCNT0", "005930"))
        await mock.trace.wait_for(lambda r: r.get("tr_key") == "005930" and r["dir"] == "in")
    resp = await client.get("/_mock/trace")
    assert resp.status_code == 200
    assert resp.headers.get("transfer-encoding") == "chunked"
    lines = _lines(resp.content)
    texts = [r.get("text") for r in lines if r.get("dir") == "in" and r.get("kind") == "text"]
    assert any("\\ud800" in str(t) for t in texts), "the hostile frame is kept as escaped text"
    assert len(lines) == len(mock.trace)


def test_dumps_never_fails_and_lone_surrogates_encode_as_escapes(tmp_path: Path) -> None:
    """A record with a lone surrogate, a NaN or a too-deep value is written, not raised (to_jsonl too)."""
    trace = Trace()
    trace.record(0.0, "ws", "c1", "in", "text", text="x\ud800y")
    deep: list[object] = []
    for _ in range(5000):
        deep = [deep]
    trace.record(0.0, "ws", "c1", "in", "text", text="deep", json=deep)
    trace.record(0.0, "rest", "c1", "in", "request", body={"n": float("nan")})
    path = tmp_path / "t.jsonl"
    assert trace.to_jsonl(path) == 3
    recs = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert recs[0]["text"] == "x\ud800y"  # the JSON escape decodes back to what was received
    assert "unencodable" in recs[1] and recs[1]["seq"] == 2
    assert "unencodable" in recs[2]
    assert json.loads(dumps({"a": 1})) == {"a": 1}


def test_ring_is_bounded_in_bytes_as_well_as_records() -> None:
    """3,000 frames of 63 KB keep the ring under its byte bound; the newest records stay."""
    trace = Trace(limit=200_000, max_bytes=2 * 1024 * 1024)
    text = "0|H0STCNT0|001|" + "9" * 63_000
    for _ in range(3000):
        trace.record_text_out(0.0, "ws", "c1", text, None, "H0STCNT0", "005930", None, "data")
    assert trace.bytes <= 2 * 1024 * 1024
    assert 0 < len(trace) < 40
    assert trace.dropped == 3000 - len(trace)
    assert trace.records()[-1]["seq"] == 3000


async def test_secrets_masked_in_every_body_format(
    mock: KisMock, client: httpx.AsyncClient
) -> None:
    """App key and secret never reach the trace: JSON, form-encoded, broken JSON bodies and headers."""
    key, secret = mock.app_key, mock.app_secret
    path = KIS["token"]["path"]
    await client.post(
        path, json={"grant_type": "client_credentials", "appkey": key, "appsecret": secret}
    )
    await client.post(
        path, data={"grant_type": "client_credentials", "appkey": key, "appsecret": secret}
    )
    broken = f'{{"grant_type":"client_credentials","appkey":"{key}","appsecret":"{secret}",}}'
    await client.post(path, content=broken.encode())
    await client.post(path, content=f"secret is {secret} and key {key}".encode())
    await client.get(KIS["quotes"]["KR"]["path"], headers={"appkey": key, "appsecret": secret})
    resp = await client.get("/_mock/trace")
    text = resp.content.decode("utf-8")
    assert text.count('"kind":"request"') >= 5
    assert key not in text
    assert secret not in text


def test_trace_file_is_opened_at_start() -> None:
    """--trace into a missing directory fails at once with one line and exit 2, before binding."""
    proc = subprocess.run(
        [sys.executable, "-m", "stockmon.cli", "mock", "--trace", "/nonexistent/dir/t.jsonl"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "--trace" in proc.stderr
    assert "KIS REST" not in proc.stdout  # nothing was bound


async def test_trace_export_streams_without_blocking_the_loop(
    mock: KisMock, client: httpx.AsyncClient
) -> None:
    """While an 80 MB trace streams out, GET /_mock/state keeps answering quickly (the loop is free)."""
    import asyncio
    import time

    text = "0|H0STCNT0|001|" + "7" * 4000
    for _ in range(20_000):
        mock.trace.record_text_out(0.0, "ws", "c9", text, None, "H0STCNT0", "005930", None, "data")
    got = 0

    async def export() -> None:
        nonlocal got
        async with (
            httpx.AsyncClient(base_url=mock.rest_url, timeout=30) as c2,
            c2.stream("GET", "/_mock/trace") as resp,
        ):
            async for chunk in resp.aiter_bytes():
                got += len(chunk)

    task = asyncio.create_task(export())
    worst = 0.0
    probes = 0
    while not task.done():
        started = time.perf_counter()
        assert (await client.get("/_mock/state")).status_code == 200
        worst = max(worst, time.perf_counter() - started)
        probes += 1
    await task
    assert got > 80_000_000
    assert probes >= 3
    assert worst < 0.3, f"a /_mock/state call waited {worst:.2f} s during the export"
