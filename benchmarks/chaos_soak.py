#!/usr/bin/env python3
"""Chaos soak: a fleet of three ``stockmon stream`` processes under random faults, as JSON.

Three real replicas share one private redis-server and one KIS mock (spec 1.2, compressed time).
``--faults`` random faults are injected one after the other: socket drops, close codes, stalls,
OPSP subscribe errors, REST auth failures and delays, token expiry and throttling, malformed
frames, refused handshakes, Redis killed and restarted empty (short and long outages), SIGKILL of
the socket holder (a new replica replaces it). After each fault the soak waits (``--recover-s``)
until the mock has sent data for every subscribed key on the one open socket again.

Reported: faults injected and survived (data restored for every key), moments with two sockets
open (from the mock's trace, judged with the conformance suite's own Evidence; target 0),
subscriptions restored (target 100 %), crashes (a replica exiting by itself or printing a
traceback; target 0), restore times, how many Redis outages the open socket streamed through
(FLEET-REDIS-OUTAGE keep_s, scaled), and as the baseline measured in the same run the data frames
per second of a fault-free warm-up: ``throughput_ratio`` = frames/s under faults / warm-up frames/s.

    .venv/bin/python benchmarks/chaos_soak.py [--faults 60] [--scale 20] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from _support import spawn_stream, stream_env
from redis import Redis as SyncRedis
from redis.exceptions import RedisError

from stockmon.conformance.evidence import Evidence
from stockmon.conformance.redis_server import PrivateRedis
from stockmon.mockserver import KisMock, MockConfig
from stockmon.reference.fleet.lease import parse_lease_value
from stockmon.reference.fleet.redis_conn import outage_keep_s
from stockmon.spec import load_spec

SPEC_VERSION = "1.2"
SUBSCRIPTIONS = (("H0STCNT0", "005930"), ("H0STCNT0", "000660"), ("H0STASP0", "005930"))
REPLICAS = 3


@dataclass
class Replica:
    """One ``stockmon stream`` process; its stderr is kept to look for tracebacks."""

    proc: asyncio.subprocess.Process
    killed: bool = False
    stderr: bytearray = field(default_factory=bytearray)
    readers: list[asyncio.Task[None]] = field(default_factory=list)


async def start_replica(env: dict[str, str]) -> Replica:
    """Start one replica; drain its stdout (the events) and keep its stderr."""
    proc = await spawn_stream(env, stdout=asyncio.subprocess.PIPE)
    rep = Replica(proc)

    async def drain_out() -> None:
        assert proc.stdout is not None
        while await proc.stdout.read(65536):
            pass

    async def keep_err() -> None:
        assert proc.stderr is not None
        while chunk := await proc.stderr.read(65536):
            rep.stderr.extend(chunk)

    rep.readers = [asyncio.create_task(drain_out()), asyncio.create_task(keep_err())]
    return rep


class Soak:
    """The fleet, the mock, Redis, and the fault catalogue."""

    def __init__(self, mock: KisMock, redis: PrivateRedis, env: dict[str, str], seed: int) -> None:
        self.mock = mock
        self.redis = redis
        self.env = env
        self.rng = random.Random(seed)
        self.replicas: list[Replica] = []
        self.scale = mock.config.time_scale
        self.redis_down = False
        self.outages: list[dict[str, Any]] = []

    # ----------------------------------------------------------------- observations
    def data_keys_since(self, seq: int) -> set[tuple[str, str]]:
        """(tr_id, tr_key) of data frames the mock sent after trace seq ``seq`` on a live socket."""
        live = {s["conn"] for s in self.mock.sessions()}
        return {
            (str(r.get("tr_id")), str(r.get("tr_key")))
            for r in self.mock.trace.records(seq)
            if r["channel"] == "ws" and r["dir"] == "out" and r["conn"] in live and r.get("tr_key")
        }

    def last_seq(self) -> int:
        """The newest trace seq."""
        return int(self.mock.trace.last_seq)

    async def restored(self, since: int, limit_s: float) -> float | None:
        """Real seconds until data for every subscription flowed after ``since``; None if not."""
        start = time.monotonic()
        want = set(SUBSCRIPTIONS)
        while time.monotonic() - start < limit_s:
            if want <= self.data_keys_since(since):
                return time.monotonic() - start
            await asyncio.sleep(0.1)
        return None

    def holder(self) -> Replica | None:
        """The replica holding the socket lease (its value names ``host:pid``); a random live one
        when Redis cannot tell (down, or nobody holds it)."""
        live = [r for r in self.replicas if r.proc.returncode is None]
        if not self.redis_down:
            client = SyncRedis.from_url(self.redis.url, socket_timeout=1.0)
            try:
                for key in client.keys("*:socket:lease"):
                    raw = client.get(key)
                    info = parse_lease_value(raw.decode()) if isinstance(raw, bytes) else None
                    pid = info.holder.rpartition(":")[2] if info else ""
                    found = [r for r in live if str(r.proc.pid) == pid]
                    if found:
                        return found[0]
            except RedisError:
                pass
            finally:
                client.close()
        return self.rng.choice(live) if live else None

    # ----------------------------------------------------------------- faults
    def catalogue(self) -> list[tuple[str, Callable[[], Awaitable[None]]]]:
        """Name and action of every fault kind (each action undoes what it must itself)."""
        f = self.mock.faults
        s = self.scale

        async def hold(seconds: float, undo: Callable[[], None]) -> None:
            await asyncio.sleep(seconds)
            undo()

        async def drop() -> None:
            f.drop_socket()

        async def close() -> None:
            f.close_socket(code=self.rng.choice([1000, 1001, 1011, 1012, 4000]), reason="soak")

        async def stall() -> None:
            f.stall(self.rng.uniform(0.5, 3.0) * s)  # spec seconds: 0.5..3 s real
            await asyncio.sleep(3.0)

        async def opsp() -> None:
            f.next_subscribe_error(count=1)
            f.drop_socket()

        async def auth() -> None:
            f.fail_rest(n=2)
            f.expire_tokens()

        async def delay() -> None:
            f.delay_rest(0.5 * s, n=3)

        async def throttle() -> None:
            f.throttle_tokens(True)
            f.expire_tokens()
            await hold(1.0, lambda: f.throttle_tokens(None))

        async def malformed() -> None:
            f.malformed_frames(n=self.rng.randint(1, 20), kind=self.rng.choice(f.MALFORMED_KINDS))

        async def refuse() -> None:
            f.refuse_connections(True)
            f.drop_socket()
            await hold(self.rng.uniform(0.5, 2.0), lambda: f.refuse_connections(False))

        async def redis_blip() -> None:
            await self.redis_outage(self.rng.uniform(0.2, 2.0))

        async def redis_long() -> None:
            await self.redis_outage(self.rng.uniform(4.0, 8.0))

        async def kill_holder() -> None:
            victim = self.holder()  # sync Redis calls: a few ms, between two faults
            if victim is None:
                return
            victim.killed = True
            victim.proc.send_signal(signal.SIGKILL)
            await victim.proc.wait()
            self.replicas.append(await start_replica(self.env))

        return [
            ("drop_socket", drop),
            ("close_socket", close),
            ("stall", stall),
            ("opsp_subscribe_error", opsp),
            ("auth_failure", auth),
            ("delay_rest", delay),
            ("throttle", throttle),
            ("malformed_frames", malformed),
            ("refuse_connections", refuse),
            ("redis_blip", redis_blip),
            ("redis_long_outage", redis_long),
            ("sigkill_replica", kill_holder),
        ]

    async def redis_outage(self, seconds: float) -> None:
        """SIGKILL redis-server, wait, start it again (empty: it has no persistence); note whether
        the socket open before it was still open and streaming after it (FLEET-REDIS-OUTAGE)."""
        before = {s["conn"] for s in self.mock.sessions()}
        since = self.last_seq()
        self.redis.kill()
        self.redis_down = True
        await asyncio.sleep(seconds)
        during = self.data_keys_since(since)
        await asyncio.get_running_loop().run_in_executor(None, self.redis.start)
        self.redis_down = False
        kept = bool(before) and before == {s["conn"] for s in self.mock.sessions()}
        self.outages.append(
            {"down_s": round(seconds, 2), "socket_kept": kept, "data_during": bool(during)}
        )


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    """Run the soak and return the report."""
    spec = load_spec(SPEC_VERSION)
    subs = ",".join(f"{tr}:{key}" for tr, key in SUBSCRIPTIONS)
    config = MockConfig(
        spec_version=SPEC_VERSION,
        time_scale=args.scale,
        symbols=tuple(sorted({k for _, k in SUBSCRIPTIONS})),
        seed=args.seed,
    )
    with (
        tempfile.TemporaryDirectory(prefix="stockmon-soak-") as cache,
        PrivateRedis(password=False, prefix="stockmon-soak-redis-") as redis,
    ):
        async with KisMock(config) as mock:
            env = stream_env(
                mock,
                REDIS_URL=redis.url,
                STOCKMON_SUBSCRIPTIONS=subs,
                STOCKMON_CACHE_DIR=cache,
                PYTHONUNBUFFERED="1",
            )
            run = Soak(mock, redis, env, args.seed)
            run.replicas = [await start_replica(env) for _ in range(REPLICAS)]
            try:
                return await _drive(run, args, spec.version)
            finally:
                for r in run.replicas:
                    if r.proc.returncode is None:
                        r.proc.send_signal(signal.SIGTERM)
                for r in run.replicas:
                    try:
                        await asyncio.wait_for(r.proc.wait(), 15)
                    except TimeoutError:
                        r.proc.kill()
                        await r.proc.wait()
                    await asyncio.gather(*r.readers, return_exceptions=True)


async def _drive(run: Soak, args: argparse.Namespace, version: str) -> dict[str, Any]:
    mock = run.mock
    first = await run.restored(0, args.recover_s + 30)
    if first is None:
        raise SystemExit("the fleet never streamed every subscription")
    # Baseline in the same run: data frames per second with no fault at all.
    seq0, t0 = run.last_seq(), time.monotonic()
    await asyncio.sleep(args.warmup_s)
    warm_frames = _data_frames(mock, seq0)
    warm_rate = warm_frames / (time.monotonic() - t0)

    catalogue = run.catalogue()
    results: list[dict[str, Any]] = []
    seq1, t1 = run.last_seq(), time.monotonic()
    for i in range(args.faults):
        name, action = run.rng.choice(catalogue)
        since = run.last_seq()
        await action()
        took = await run.restored(since, args.recover_s)
        mock.faults.clear()
        results.append({"i": i, "fault": name, "restored_s": took})
        if took is None:  # give the fleet a clean slate before the next fault
            await run.restored(run.last_seq(), args.recover_s)
    fault_rate = _data_frames(mock, seq1) / (time.monotonic() - t1)

    records = mock.trace.records()
    evidence = Evidence(
        scenario="chaos-soak",
        spec=load_spec(version),
        time_scale=run.scale,
        records=tuple(records),
        targets=(),
        subscriptions=SUBSCRIPTIONS,
        secrets={},
        marks={},
        mock={},
        end_t_spec=mock.now(),
    )
    overlaps = evidence.overlapping_sockets()
    crashes = [
        r.proc.returncode
        for r in run.replicas
        if not r.killed and r.proc.returncode is not None and r.proc.returncode != 0
    ]
    tracebacks = sum(1 for r in run.replicas if b"Traceback" in r.stderr)
    restored = [r["restored_s"] for r in results if r["restored_s"] is not None]
    by_kind: dict[str, dict[str, int]] = {}
    for r in results:
        k = by_kind.setdefault(r["fault"], {"injected": 0, "restored": 0})
        k["injected"] += 1
        k["restored"] += r["restored_s"] is not None
    return {
        "benchmark": "chaos_soak",
        "spec_version": version,
        "replicas": REPLICAS,
        "time_scale": run.scale,
        "seed": args.seed,
        "faults_injected": len(results),
        "faults_survived": len(restored),
        "subscriptions_restored_pct": round(100 * len(restored) / max(1, len(results)), 1),
        "two_socket_moments": len(overlaps),
        "sockets_opened": len(evidence.sockets()),
        "crashes": len(crashes) + tracebacks,
        "replicas_sigkilled": sum(1 for r in run.replicas if r.killed),
        "restore_s_median": round(statistics.median(restored), 2) if restored else None,
        "restore_s_max": round(max(restored), 2) if restored else None,
        "by_fault": by_kind,
        "not_restored": [r for r in results if r["restored_s"] is None],
        "baseline_frames_per_s": round(warm_rate, 1),
        "faults_frames_per_s": round(fault_rate, 1),
        "throughput_ratio": round(fault_rate / warm_rate, 3) if warm_rate else None,
        "redis_outages": len(run.outages),
        "redis_outages_socket_kept": sum(o["socket_kept"] for o in run.outages),
        "redis_outages_with_data": sum(o["data_during"] for o in run.outages),
        "redis_outage_detail": run.outages,
        "keep_s_real": spec_keep(version, run.scale),
        "trace_records_dropped": mock.trace.dropped,
    }


def spec_keep(version: str, scale: float) -> float:
    """FLEET-REDIS-OUTAGE keep_s in real seconds at this scale (0 without the clause)."""
    return round(outage_keep_s(load_spec(version), scale), 3)


def _data_frames(mock: KisMock, since: int) -> int:
    """Data frames (those carrying a tr_key) the mock sent after trace seq ``since``."""
    return sum(
        1
        for r in mock.trace.records(since)
        if r["channel"] == "ws" and r["dir"] == "out" and r.get("tr_key")
    )


def main() -> None:
    """Parse the arguments, run, print one JSON object."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--faults", type=int, default=60, help="random faults to inject (issue: 1000)")
    ap.add_argument("--scale", type=float, default=20.0, help="spec seconds per real second")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--recover-s", type=float, default=25.0, help="real seconds to restore data")
    ap.add_argument("--warmup-s", type=float, default=5.0, help="fault-free baseline, real s")
    args = ap.parse_args()
    print(json.dumps(asyncio.run(soak(args)), indent=2))


if __name__ == "__main__":
    main()
