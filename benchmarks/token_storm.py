"""Token storm at expiry: P processes x T tasks need a token at the same instant (TOKEN-KIS-LOCK).

Setup per round: the fleet's token (seeded through the same code path, Redis cache) expires; every
process already holds it in memory from a warm-up burst in which each of its T tasks made one call,
so every caller finds a pooled connection, as the baseline's one caller does. (A warm-up of one
call left T - 1 callers per process opening a connection inside the storm: 56 TCP handshakes in
the measured window, the pool's cold start, not the token wait.) At "go" every task of every
process calls ``quote`` once. Exactly one token request must reach the mock per round; the other
callers wait for it (in-process single flight; across processes they are told by Redis pub/sub
when the new token is stored, the notice carrying it, with the cache re-read on a jittered backoff
as the fallback). ``--calls token`` leaves the quotes out of the storm (a diagnostic of the wait
alone).

Baseline, same run, same procedure: one process with one task (its first call at expiry pays one
issuance plus the quote). Extra latency of the storm's callers = their latency minus the baseline
median. Also reported: a warm quote (valid token in memory), T at once per process, as the floor.

Time is compressed (mock time_scale = STOCKMON_TIME_SCALE) so a token expires within a second.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from typing import Any

from _support import stream_env

from stockmon.conformance.redis_server import PrivateRedis

EXTRA_P99_TARGET_MS = 10.0  # time to token over one caller's, per round (issue 13)

WORKER = r"""
import asyncio, json, sys, time
from stockmon.reference.errors import ClientError
from stockmon.reference.kis.quote import fetch_quote
from stockmon.reference.wiring import open_kis
from stockmon.settings import load_settings

async def main(tasks, storm_quotes):
    loop = asyncio.get_running_loop()
    async with open_kis(load_settings()) as kis:
        print("ready", flush=True)
        while True:
            cmd = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
            if cmd in ("", "quit"):
                return
            n = tasks  # warm with the storm's concurrency: every caller's connection is pooled
            t0 = time.perf_counter()
            async def one(i):
                token_ms = None
                try:
                    await kis.tokens.get()
                    token_ms = (time.perf_counter() - t0) * 1000
                    if cmd == "warm" or storm_quotes:
                        await fetch_quote(kis.rest, "005930" if i % 2 == 0 else "DNASAAPL")
                    return (time.perf_counter() - t0) * 1000, token_ms, None
                except ClientError as exc:
                    return (time.perf_counter() - t0) * 1000, token_ms, f"{type(exc).__name__}: {exc}"
            res = await asyncio.gather(*(one(i) for i in range(n)))
            print(json.dumps({"ms": [r[0] for r in res], "token_ms": [r[1] for r in res if r[1]],
                              "errors": [r[2] for r in res if r[2]],
                              "issued": kis.tokens.issued}), flush=True)

asyncio.run(main(int(sys.argv[1]), sys.argv[2] == "quote"))
"""


class Worker:
    """One fleet process speaking the line protocol of WORKER."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, env: dict[str, str], tasks: int, calls: str) -> Worker:
        """Spawn and wait for ``ready``; ``calls`` is what a storm's caller does (quote, token)."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            WORKER,
            str(tasks),
            calls,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        if line.strip() != b"ready":
            raise SystemExit(f"worker failed to start: {line!r}")
        return cls(proc)

    async def send(self, cmd: str) -> None:
        """Write one command."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(cmd.encode() + b"\n")
        await self.proc.stdin.drain()

    async def result(self) -> dict[str, Any]:
        """Read one JSON reply."""
        assert self.proc.stdout is not None
        return dict(json.loads(await asyncio.wait_for(self.proc.stdout.readline(), 120)))

    async def close(self) -> None:
        """Ask to quit, then make sure."""
        try:
            await self.send("quit")
            await asyncio.wait_for(self.proc.wait(), 10)
        except (TimeoutError, BrokenPipeError, ConnectionResetError):
            self.proc.kill()
            await self.proc.wait()


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def summary(values: list[float]) -> dict[str, float]:
    """p50/p99/max in ms, rounded."""
    return {
        "p50": round(pct(values, 0.5), 2),
        "p99": round(pct(values, 0.99), 2),
        "max": round(max(values), 2),
        "n": len(values),
    }


async def storm(
    mock: Any,
    env: dict[str, str],
    processes: int,
    tasks: int,
    rounds: int,
    calls: str = "quote",
) -> dict[str, Any]:
    """Run ``rounds`` storms with P x T callers; latencies and token requests per round."""
    from stockmon.reference.wiring import open_kis
    from stockmon.settings import load_settings

    settings = load_settings({k: v for k, v in env.items() if k in mock.env() or k == "REDIS_URL"})
    token_path = settings.spec.rest["kis"]["token"]["path"]
    workers = await asyncio.gather(*(Worker.start(env, tasks, calls) for _ in range(processes)))
    round_waits: list[list[float]] = []  # time to token of every caller, per measured round
    round_told: list[list[float]] = []  # each process's first caller: when the process knew
    round_spread: list[list[float]] = []  # each process: last caller's time to token - first's
    round_warm: list[list[float]] = []  # the warm burst before each measured round
    round_calls: list[list[float]] = []  # each storm caller's whole call (token and quote)
    per_round: list[int] = []
    throttled = 0
    errors: list[str] = []
    try:
        for n in range(rounds + 1):  # round 0 warms every process up (imports, connections)
            # Seed the fleet's token (the previous round's has expired), warm every process.
            async with open_kis(settings) as seed:
                cred = await seed.tokens.get()
            for w in workers:
                await w.send("warm")
            warm_round: list[float] = []
            for w in workers:
                r = await w.result()
                if n:
                    warm_round.extend(r["ms"])
                errors.extend(r["errors"])
            # Wait past the token's expiry (and the issuance throttle window).
            await asyncio.sleep(max(0.0, cred.expires_at - time.time()) + 0.05)
            mark = mock.trace.last_seq
            for w in workers:
                await w.send("go")
            this_round: list[float] = []
            calls: list[float] = []
            told: list[float] = []
            spread: list[float] = []
            for w in workers:
                r = await w.result()
                if n:
                    calls.extend(r["ms"])
                    this_round.extend(r["token_ms"])
                    told.extend([min(r["token_ms"])] if r["token_ms"] else [])
                    spread.extend(
                        [max(r["token_ms"]) - min(r["token_ms"])] if r["token_ms"] else []
                    )
                errors.extend(r["errors"])
            if n:
                round_waits.append(this_round)
                round_told.append(told)
                round_warm.append(warm_round)
                round_calls.append(calls)
                round_spread.append(spread)
            reqs = [
                r
                for r in mock.trace.records(mark)
                if r["kind"] == "request" and r["path"] == token_path
            ]
            per_round.append(len(reqs))
            seqs = {r["seq"] for r in reqs}
            throttled += sum(
                1
                for r in mock.trace.records(mark)
                if r["kind"] == "response" and r.get("request_seq") in seqs and r["status"] != 200
            )
    finally:
        await asyncio.gather(*(w.close() for w in workers))
    return {
        # every measured round's values in one list each (the rounds' lists are the data)
        "latencies": [ms for c in round_calls for ms in c],
        "token_waits": [ms for w in round_waits for ms in w],
        "round_waits": round_waits,
        "round_told": round_told,
        "round_warm": round_warm,
        "round_calls": round_calls,
        "round_spread": round_spread,
        "warm": [ms for w in round_warm for ms in w],
        "token_requests_per_round": per_round,
        "throttled_responses": throttled,
        "errors": errors,
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    """Baseline then storm, in one run against one mock and one Redis."""
    from stockmon.mockserver import KisMock, MockConfig
    from stockmon.spec import load_spec

    spec = load_spec()
    window = spec.clause("TOKEN-KIS-REFRESH").number("refresh_before_expiry_s")
    # FRESH for 1 s of real time (the warm-up calls), then STALE for the window (nobody calls),
    # then expired: the storm starts.
    validity = window + 1.0 * args.scale
    redis = PrivateRedis(password=False, prefix="token-storm-redis-")
    redis.start()
    try:
        config = MockConfig(
            time_scale=args.scale,
            token_validity_s=validity,
            token_reuse_window_s=0,
            symbols=("005930", "DNASAAPL"),
        )
        async with KisMock(config) as mock:
            env = stream_env(mock, REDIS_URL=redis.url)
            baseline = await storm(mock, env, 1, 1, args.baseline_rounds, args.calls)
            redis_flush(redis)
            fleet = await storm(mock, env, args.processes, args.tasks, args.rounds, args.calls)
    finally:
        redis.stop()
    base = summary(baseline["latencies"])
    st = summary(fleet["latencies"])
    base_tok = summary(baseline["token_waits"])
    st_tok = summary(fleet["token_waits"])
    round_extra = [round(pct(w, 0.99) - base_tok["p50"], 2) for w in fleet["round_waits"]]
    round_met = [
        x <= EXTRA_P99_TARGET_MS and n == 1
        for x, n in zip(round_extra, fleet["token_requests_per_round"][1:], strict=True)
    ]
    return {
        "benchmark": "token_storm",
        "processes": args.processes,
        "storm_calls": args.calls,
        "tasks_per_process": args.tasks,
        "rounds": args.rounds,
        "time_scale": args.scale,
        "warmup_rounds": 1,  # round 0 of token_requests_per_round; its latencies are discarded
        "token_requests_per_round": fleet["token_requests_per_round"],
        "token_requests_ok": all(n == 1 for n in fleet["token_requests_per_round"]),
        "throttled_responses": fleet["throttled_responses"] + baseline["throttled_responses"],
        "failed_calls": len(fleet["errors"]) + len(baseline["errors"]),
        "baseline_single_caller_ms": base,
        "storm_callers_ms": st,
        "extra_latency_of_waiting_callers_ms": {
            "p50": round(st["p50"] - base["p50"], 2),
            "p99": round(st["p99"] - base["p50"], 2),
        },
        "ratio_to_baseline": {
            "p50": round(st["p50"] / base["p50"], 2),
            "p99": round(st["p99"] / base["p50"], 2),
        },
        "time_to_token_ms": {
            "baseline_single_caller": base_tok,
            "storm_callers": st_tok,
            "extra_p50": round(st_tok["p50"] - base_tok["p50"], 2),
            "extra_p99": round(st_tok["p99"] - base_tok["p50"], 2),
        },
        "per_round": {
            "time_to_token_extra_p99_ms": round_extra,
            "ratio_p99_to_baseline": [
                round(pct(w, 0.99) / base_tok["p50"], 2) for w in fleet["round_waits"]
            ],
            "met": round_met,
            # Diagnostic, not the target: the slowest process's first caller, i.e. when every
            # process knew of the new token. The rest of a caller's time to token is its turn on
            # a shared core behind the callers resumed before it (each sends its quote first).
            "slowest_process_first_caller_extra_ms": [
                round(max(t) - base_tok["p50"], 2) for t in fleet["round_told"]
            ],
            # Diagnostic: inside one process, how much later its last caller resumed than its
            # first (all are woken at once; each resumed caller first spends its CPU on a quote).
            "widest_in_process_spread_ms": [round(max(s), 2) for s in fleet["round_spread"]],
            # Diagnostic: the same P x T burst of quotes with the token in memory, just before
            # the round (its p99), and what the token wait added to it: the storm callers' whole
            # call p99 minus that. On 2 cores the burst alone is most of a storm caller's time.
            "warm_burst_p99_ms": [round(pct(w, 0.99), 2) for w in fleet["round_warm"]],
            "storm_call_p99_over_warm_burst_p99_ms": [
                round(pct(c, 0.99) - pct(w, 0.99), 2)
                for c, w in zip(fleet["round_calls"], fleet["round_warm"], strict=True)
            ],
        },
        "target": f"every round: 1 token request, time-to-token p99 <= baseline p50 + "
        f"{EXTRA_P99_TARGET_MS} ms",
        "target_met": all(round_met),
        "warm_quote_ms": summary(fleet["warm"]),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "errors_sample": (fleet["errors"] + baseline["errors"])[:5],
    }


def redis_flush(redis: PrivateRedis) -> None:
    """Empty the server between baseline and storm (fresh versions, no leftover throttle)."""
    with socket.create_connection(("127.0.0.1", redis.port), 2) as s:
        s.sendall(b"FLUSHALL\r\n")
        s.recv(16)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline-rounds", type=int, default=10)
    parser.add_argument("--scale", type=float, default=5000.0, help="spec seconds per real second")
    parser.add_argument(
        "--calls",
        choices=("quote", "token"),
        default="quote",
        help="what each caller does at go: get the token and quote (the target), or only get the "
        "token (a diagnostic: the token wait without the quotes' CPU)",
    )
    ns = parser.parse_args()
    print(json.dumps(asyncio.run(main(ns)), indent=2))
