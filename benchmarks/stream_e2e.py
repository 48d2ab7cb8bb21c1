"""Benchmark (b): end to end, mock -> ``stockmon stream`` -> JSON lines to /dev/null, in frames/s.

Beside it, in the same run and against the same mock configuration, the ceiling: a bare
``websockets`` client that subscribes the same key and only receives (no parsing, no output). Both
consumers run as child processes (their own core); the mock runs in this process with an unbounded
tick rate, so the consumer is the bottleneck and TCP back-pressure paces the mock to it. Both rates
are measured identically, from the mock's trace: data frames sent per second during the measuring
window (after a warm-up), so the ratio compares like with like.

The mock can be the bottleneck for both (then the wall-clock ratio is ~1 and says little), so each
consumer's CPU time over the window is measured too (psutil): CPU microseconds per frame, and the
ratio of those (bare / stream) — the throughput ratio the two would show if the consumer were the
bottleneck, and a figure that a shared, loaded machine disturbs much less than wall-clock rates.

With ``--source fast`` the stream comes from a bare websockets server that blasts frames the mock's
simulator built beforehand (REST still from the mock), so the consumers are the bottleneck and the
wall-clock ratio shows it directly; rates are then counted by that server.

Rounds alternate between the two consumers (the machine is shared); medians are reported.
Usage: ``python benchmarks/stream_e2e.py [--seconds 3] [--rounds 3] [--records-per-frame 1]``.
Prints one JSON object. Targets: stockmon stream >= 60 % of the ceiling's frames/s, and the CPU-bound
ratio (bare CPU per frame / stream CPU per frame) >= 0.7, in every round (issue 13).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

import psutil
from websockets.asyncio.server import ServerConnection, serve

from stockmon.mockserver import KisMock, MockConfig

STOCKMON = str(Path(sys.executable).with_name("stockmon"))
SUBSCRIPTION = ("H0STCNT0", "005930")
RATIO_TARGET = 0.6  # stream frames/s over the bare client's
CPU_TARGET = 0.7  # bare CPU per frame over stream CPU per frame (issue 13)

BARE_CLIENT = r"""
import asyncio, json, sys
import httpx
from websockets.asyncio.client import connect

async def main(rest, ws_url, appkey, secret):
    async with httpx.AsyncClient() as c:
        r = await c.post(rest + "/oauth2/Approval", json={"grant_type": "client_credentials", "appkey": appkey, "secretkey": secret})
        key = r.json()["approval_key"]
    packet = json.dumps({"header": {"approval_key": key, "custtype": "P", "tr_type": "1", "content-type": "utf-8"},
                         "body": {"input": {"tr_id": sys.argv[5], "tr_key": sys.argv[6]}}})
    async with connect(ws_url, compression=None, ping_interval=None, max_size=None) as ws:
        await ws.send(packet)
        async for _ in ws:
            pass

asyncio.run(main(*sys.argv[1:5]))
"""


class FastSource:
    """A bare websockets server with the mock's frames pre-built: acks the subscribe, then blasts.

    Used with ``--source fast`` so that the consumer, not the mock, is the bottleneck. REST (the
    approval key) is still the mock's; only the stream comes from here. It counts what it sends.
    """

    def __init__(self, mock: KisMock, records_per_frame: int) -> None:
        sim, now = mock.world.market, time.time()
        self.frames = [
            sim.frame(SUBSCRIPTION[0], SUBSCRIPTION[1], records_per_frame, now) for _ in range(512)
        ]
        self.ack = json.dumps(
            {
                "header": {"tr_id": SUBSCRIPTION[0], "tr_key": SUBSCRIPTION[1], "encrypt": "N"},
                "body": {"rt_cd": "0", "msg_cd": "OPSP0000", "msg1": "SUBSCRIBE SUCCESS"},
            }
        )
        self.sent = 0
        self.started = asyncio.Event()

    async def handler(self, ws: ServerConnection) -> None:
        with contextlib.suppress(Exception):
            await ws.recv()
            await ws.send(self.ack)
            self.started.set()
            frames = self.frames
            while True:
                for i, frame in enumerate(frames):
                    await ws.send(frame)
                    self.sent += 1
                    if i % 64 == 0:  # send() may never suspend: let the loop (timers) run
                        await asyncio.sleep(0)


async def measure(
    kind: str, records_per_frame: int, warmup: float, seconds: float, source: str = "mock"
) -> tuple[float, float]:
    """(data frames/s delivered to one consumer, its CPU µs per frame) for ``stream`` or ``bare``."""
    config = MockConfig(
        tick_rate_hz=1e9 if source == "mock" else 0.001,
        max_records_per_frame=records_per_frame,
        multi_record_probability=1.0 if records_per_frame > 1 else 0.0,
        server_pingpong_period_s=0,
        unanswered_pingpong_grace_s=0,
        trace_limit=5_000_000,
    )
    async with KisMock(config) as mock, contextlib.AsyncExitStack() as stack:
        fast: FastSource | None = None
        ws_url = mock.ws_url
        if source == "fast":
            fast = FastSource(mock, records_per_frame)
            server = await stack.enter_async_context(
                serve(fast.handler, "127.0.0.1", 0, compression=None, ping_interval=None)
            )
            ws_url = f"ws://127.0.0.1:{next(iter(server.sockets)).getsockname()[1]}"

        def delivered() -> tuple[int, float]:
            if fast is not None:
                return fast.sent, time.perf_counter()
            return mock.trace.last_seq, mock.trace.now()

        if kind == "stream":
            env = {
                **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")},
                **mock.env(),
                "KIS_WS_URL": ws_url,
                "STOCKMON_SUBSCRIPTIONS": ":".join(SUBSCRIPTION),
            }
            argv = [STOCKMON, "stream", "--format", "json"]
        else:
            env = dict(os.environ)
            argv = [sys.executable, "-c", BARE_CLIENT, mock.rest_url, ws_url, mock.app_key]
            argv += [mock.app_secret, *SUBSCRIPTION]
        proc = await asyncio.create_subprocess_exec(
            *argv,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            # warm-up: process start, approval key, subscription, buffers filled
            if fast is not None:
                await asyncio.wait_for(fast.started.wait(), 30)
            else:
                await mock.trace.wait_for(
                    lambda r: r["kind"] == "text" and r.get("frame") == "data", timeout_s=30
                )
            await asyncio.sleep(warmup)
            child = psutil.Process(proc.pid)
            cpu0 = sum(child.cpu_times()[:2])
            mark0, t0 = delivered()
            await asyncio.sleep(seconds)
            mark1, t1 = delivered()
            cpu1 = sum(child.cpu_times()[:2])
        finally:
            proc.terminate()
            _, err = await proc.communicate()
        if proc.returncode not in (0, -15):
            raise RuntimeError(f"{kind} consumer failed ({proc.returncode}): {err.decode()[-500:]}")
        if fast is not None:
            frames = mark1 - mark0
        else:
            frames = sum(
                1
                for r in mock.trace.records(mark0)
                if r["seq"] <= mark1
                and r["kind"] == "text"
                and r["dir"] == "out"
                and r.get("frame") == "data"
            )
        return frames / (t1 - t0), (cpu1 - cpu0) / max(frames, 1) * 1e6


async def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--records-per-frame", type=int, default=1)
    ap.add_argument(
        "--source",
        choices=("mock", "fast"),
        default="mock",
        help="mock: the KIS mock streams; fast: a bare server blasts pre-built mock frames",
    )
    args = ap.parse_args(argv)
    stream_runs: list[tuple[float, float]] = []
    bare_runs: list[tuple[float, float]] = []
    for _ in range(args.rounds):
        bare_runs.append(
            await measure("bare", args.records_per_frame, args.warmup, args.seconds, args.source)
        )
        stream_runs.append(
            await measure("stream", args.records_per_frame, args.warmup, args.seconds, args.source)
        )
    ratios = [s[0] / b[0] for s, b in zip(stream_runs, bare_runs, strict=True)]
    cpu_ratios = [b[1] / s[1] for s, b in zip(stream_runs, bare_runs, strict=True)]
    med = statistics.median
    met = [r >= RATIO_TARGET and c >= CPU_TARGET for r, c in zip(ratios, cpu_ratios, strict=True)]
    result = {
        "benchmark": "stream_e2e",
        "unit": "data frames/s delivered by the mock; consumer CPU us per frame",
        "source": args.source,
        "records_per_frame": args.records_per_frame,
        "rounds": args.rounds,
        "seconds_per_round": args.seconds,
        "stockmon_stream_frames_per_s": round(med(r[0] for r in stream_runs)),
        "bare_websockets_ceiling_frames_per_s": round(med(r[0] for r in bare_runs)),
        "ratio_to_ceiling": round(med(ratios), 3),
        "stockmon_stream_cpu_us_per_frame": round(med(r[1] for r in stream_runs), 2),
        "bare_websockets_cpu_us_per_frame": round(med(r[1] for r in bare_runs), 2),
        "cpu_bound_ratio_to_ceiling": round(med(cpu_ratios), 3),
        "per_round": {
            "ratio_to_ceiling": [round(x, 3) for x in ratios],
            "cpu_bound_ratio_to_ceiling": [round(x, 3) for x in cpu_ratios],
            "met": met,
            "stream_frames_per_s": [round(x[0]) for x in stream_runs],
            "ceiling_frames_per_s": [round(x[0]) for x in bare_runs],
            "stream_cpu_us_per_frame": [round(x[1], 2) for x in stream_runs],
            "ceiling_cpu_us_per_frame": [round(x[1], 2) for x in bare_runs],
        },
        "target": f"every round: ratio_to_ceiling >= {RATIO_TARGET}, cpu_bound >= {CPU_TARGET}",
        "target_met": all(met),
    }
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
