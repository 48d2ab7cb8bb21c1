"""Data frames per second the KIS mock delivers to one loopback client, against a ceiling.

The ceiling is a bare ``websockets`` server sending one pre-built H0STCNT0 frame in a loop, measured
in the same run with the same client. Each server runs in this process; the client runs in a child
process (its own core), subscribes, discards a warm-up and counts data frames for ``--seconds``.
The mock runs as shipped: simulator generating every frame, every frame recorded in the trace.

Prints one JSON object. Targets: >= 20,000 frames/s (issue 3) and >= 60 % of the ceiling in every
round (issue 13); ``per_round.met`` says which rounds met both.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time

import httpx
from _support import flood_config
from websockets.asyncio.server import ServerConnection, serve

from stockmon.mockserver import KisMock

FPS_TARGET = 20000
RATIO_TARGET = 0.6  # of the ceiling, in every round (issue 13)

CLIENT = r"""
import asyncio, json, sys, time
from websockets.asyncio.client import connect

async def main(url, packet, warmup, seconds):
    async with connect(url, compression=None, max_queue=None) as ws:
        if packet:
            await ws.send(packet)
        end_warm = time.perf_counter() + warmup
        while time.perf_counter() < end_warm:
            await ws.recv()
        n = 0
        t0 = time.perf_counter()
        end = t0 + seconds
        while True:
            msg = await ws.recv()
            if msg[:2] == "0|":
                n += 1
            if (n & 255) == 0 and time.perf_counter() >= end:
                break
        print(json.dumps({"frames": n, "elapsed": time.perf_counter() - t0}))

asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])))
"""


async def run_client(url: str, packet: str, warmup: float, seconds: float) -> float:
    """Start the counting client in a child process; frames per second it saw."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CLIENT,
        url,
        packet,
        str(warmup),
        str(seconds),
        stdout=subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    result = json.loads(out)
    return float(result["frames"]) / float(result["elapsed"])


async def ceiling(frame: str, warmup: float, seconds: float) -> float:
    """Frames/s of a bare websockets server sending a pre-built frame as fast as it can."""

    async def handler(ws: ServerConnection) -> None:
        try:
            while True:
                await ws.send(frame)
        except Exception:
            return

    async with serve(handler, "127.0.0.1", 0, compression=None, ping_interval=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        return await run_client(f"ws://127.0.0.1:{port}", "", warmup, seconds)


async def mock_rate(warmup: float, seconds: float) -> tuple[float, str, int]:
    """Frames/s delivered by the mock for one H0STCNT0 registration at an unbounded tick rate."""
    config = flood_config(max_records_per_frame=1, trace_limit=2_000_000)
    async with KisMock(config) as mock:
        async with httpx.AsyncClient(base_url=mock.rest_url) as c:
            r = await c.post(
                mock.profile.approval_path,
                json={
                    "grant_type": mock.profile.grant_type,
                    "appkey": mock.app_key,
                    mock.profile.approval_secret_field: mock.app_secret,
                },
            )
            approval = r.json()[mock.profile.approval_response_field]
        packet = json.dumps(
            {
                "header": {
                    "approval_key": approval,
                    "custtype": "P",
                    "tr_type": mock.profile.subscribe_tr_type,
                    "content-type": "utf-8",
                },
                "body": {"input": {"tr_id": "H0STCNT0", "tr_key": "005930"}},
            }
        )
        rate = await run_client(mock.ws_url, packet, warmup, seconds)
        frame = mock.world.market.frame("H0STCNT0", "005930", 1, time.time())
        return rate, frame, len(mock.trace)


async def main() -> None:
    """Measure both in alternating rounds (the machine may be shared), print JSON with medians."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=2.0, help="counting time per round")
    ap.add_argument("--warmup", type=float, default=0.5)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    mock_runs: list[float] = []
    ceil_runs: list[float] = []
    ratios: list[float] = []
    frame, records = "", 0
    for _ in range(args.rounds):
        mock_fps, frame, records = await mock_rate(args.warmup, args.seconds)
        ceil_fps = await ceiling(frame, args.warmup, args.seconds)
        mock_runs.append(mock_fps)
        ceil_runs.append(ceil_fps)
        ratios.append(mock_fps / ceil_fps if ceil_fps else 0.0)
    mock_fps, ceil_fps, ratio = (statistics.median(x) for x in (mock_runs, ceil_runs, ratios))
    met = [m >= FPS_TARGET and r >= RATIO_TARGET for m, r in zip(mock_runs, ratios, strict=True)]
    print(
        json.dumps(
            {
                "benchmark": "mock_throughput",
                "rounds": args.rounds,
                "seconds_per_round": args.seconds,
                "frame_bytes": len(frame),
                "mock_frames_per_s": round(mock_fps),
                "ceiling_frames_per_s": round(ceil_fps),
                "ratio_to_ceiling": round(ratio, 3),
                "per_round": {
                    "mock": [round(x) for x in mock_runs],
                    "ceiling": [round(x) for x in ceil_runs],
                    "ratio": [round(x, 3) for x in ratios],
                    "met": met,
                },
                "trace_records_last_round": records,
                "targets": {"frames_per_s": FPS_TARGET, "ratio_to_ceiling": RATIO_TARGET},
                "meets_targets": all(met),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
