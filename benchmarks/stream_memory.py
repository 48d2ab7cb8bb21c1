"""Benchmark (c): resident memory of ``stockmon stream`` while it prints 1,000,000 records.

The client runs as a child process (stdout to /dev/null) against the mock in this process; the mock
sends multi-record frames as fast as the client takes them. Records delivered are counted from the
mock's trace (the record count of every data frame it sent); the client's RSS is sampled (psutil)
at checkpoints. Target: RSS after 1,000,000 records at most 10 MB above the RSS after the first
10,000 (no per-record leak). Prints one JSON object.

Usage: ``python benchmarks/stream_memory.py [--records 1000000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import psutil
from _support import flood_config, spawn_stream, stream_env

from stockmon.mockserver import KisMock

SUBSCRIPTIONS = "H0STCNT0:005930,HDFSCNT0:DNASAAPL,H0STASP0:000660"
MB = 1024 * 1024
LIMIT_MB = 10.0


async def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--baseline", type=int, default=10_000)
    args = ap.parse_args(argv)
    checkpoints = sorted(
        {args.baseline, *(n for n in (100_000, 250_000, 500_000, 750_000) if n < args.records)}
        | {args.records}
    )
    # the mock's own memory stays bounded (trace_limit); it is not what we measure
    config = flood_config(
        max_records_per_frame=4, multi_record_probability=0.5, trace_limit=400_000
    )
    samples: list[dict[str, float]] = []
    async with KisMock(config) as mock:
        proc = await spawn_stream(stream_env(mock, STOCKMON_SUBSCRIPTIONS=SUBSCRIPTIONS))
        child = psutil.Process(proc.pid)
        records, seq, t0 = 0, 0, time.perf_counter()
        pending = list(checkpoints)
        try:
            while pending:
                await asyncio.sleep(0.05)
                new = mock.trace.records(seq)
                if new and new[0]["seq"] > seq + 1 and seq:
                    raise RuntimeError("trace_limit too small: records were dropped unseen")
                for r in new:
                    seq = r["seq"]
                    if r["kind"] == "text" and r["dir"] == "out" and r.get("frame") == "data":
                        records += int(r["text"].split("|", 3)[2])
                while pending and records >= pending[0]:
                    samples.append(
                        {
                            "records": records,
                            "rss_mb": round(child.memory_info().rss / MB, 2),
                            "elapsed_s": round(time.perf_counter() - t0, 1),
                        }
                    )
                    pending.pop(0)
                if proc.returncode is not None:
                    raise RuntimeError("stockmon stream exited early")
        finally:
            proc.terminate()
            _, err = await proc.communicate()
    base = samples[0]["rss_mb"]
    last = samples[-1]["rss_mb"]
    result = {
        "benchmark": "stream_memory",
        "unit": "MB resident (client process)",
        "records": samples[-1]["records"],
        "rss_after_baseline_mb": base,
        "rss_after_all_mb": last,
        "growth_mb": round(last - base, 2),
        "limit_mb": LIMIT_MB,
        "target_met": last - base <= LIMIT_MB,
        "samples": samples,
        "client_exit": proc.returncode,
        "client_stderr_tail": err.decode()[-300:],
    }
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
