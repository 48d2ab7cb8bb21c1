#!/usr/bin/env python3
"""The gateway fleet (API-FLEET) against one replica, as JSON: the Redis hop, takeover, loss.

Real parts: ``stockmon serve`` subprocesses, a private redis-server, the KIS mock in this process,
one stream client (browser) per replica, all on loopback.

1. Latency: the mock's send of a tick frame (its trace) to a browser's receipt, matched per tick by
   (key, cumulative volume); one replica without Redis (the baseline, measured in this run), one
   replica on the bus (the Redis hop alone) and three replicas sharing it, at the same mock rate.
   Reported: p50/p99 of each and the added p50/p99 of the fleet (target: p99 at most 10 ms more).
2. Takeover: ``--runs`` times SIGKILL the holder and time, on the mock's trace, the kill to the next
   broker socket, and on the browsers the kill to the first tick after the gap status; against
   the socket lease TTL. The killed replica is replaced before the next run.
3. Loss: per browser, stream entries of its keys between its first and last event_id that it did
   not receive (less what conflation replaced, each stated in ``conflated``), and event_ids
   delivered twice; both over every browser of part 2. Ticks the mock sent to a holder that died
   before publishing them are counted apart (they never reached the bus).

    .venv/bin/python benchmarks/gateway_fleet.py [--rate 25] [--seconds 5] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parent.parent
# the fleet harness of the tests (serve_fleet.py): one way to run replicas and browsers
sys.path[:0] = [str(ROOT / "tests" / "reference"), str(ROOT / "tests" / "reference" / "gateway")]

from fleet_support import open_intervals  # noqa: E402
from serve_fleet import (  # noqa: E402
    SPEC,
    Browser,
    Fleet,
    holder_among,
    ready_all,
    running_fleet,
    start_replica,
    until,
)

from stockmon.conformance.redis_server import PrivateRedis  # noqa: E402
from stockmon.mockserver import KisMock, MockConfig  # noqa: E402
from stockmon.redaction import Secret  # noqa: E402
from stockmon.reference.fleet.lease_gate import SOCKET_LEASE_TTL_S  # noqa: E402
from stockmon.reference.fleet.token_store import key_prefix  # noqa: E402

KEYS = ("005930", "000660", "035420", "051910")
TR_ID = "H0STCNT0"
SUBSCRIPTIONS = ",".join(f"{TR_ID}:{k}" for k in KEYS)


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank, in ms rounded to 0.01."""
    ordered = sorted(values)
    i = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return round(ordered[i] * 1000, 2)


def sent_ticks(mock: KisMock) -> dict[tuple[str, float], tuple[float, str]]:
    """(key, cumulative volume) -> (trace t, conn) of every tick record the mock sent."""
    layout = SPEC.layouts[TR_ID]
    size = len(layout.fields)
    i_key = layout.index(layout.roles["key"])
    i_cum = layout.index(layout.roles["cumulative_volume"])
    out: dict[tuple[str, float], tuple[float, str]] = {}
    for rec in mock.trace.records():
        if rec["channel"] != "ws" or rec["dir"] != "out" or rec.get("tr_id") != TR_ID:
            continue
        parts = str(rec.get("text") or "").split("|")
        if len(parts) != 4 or parts[0] not in ("0", "1"):
            continue
        fields = parts[3].split("^")
        for n in range(int(parts[2])):
            record = fields[n * size : (n + 1) * size]
            out.setdefault((record[i_key], float(record[i_cum])), (float(rec["t"]), rec["conn"]))
    return out


async def latency(
    n: int, redis: PrivateRedis | None, rate: float, seconds: float, tmp: Path
) -> dict[str, Any]:
    """Mock-to-browser latency of ``n`` replicas (a fleet when ``redis`` is given)."""
    config = MockConfig(symbols=KEYS, tick_rate_hz=rate)
    async with KisMock(config) as mock:
        t0 = time.monotonic() - mock.trace.now()
        url = redis.url if redis is not None else None
        async with running_fleet(mock, url, tmp, n, SUBSCRIPTIONS) as fleet:
            fleet.browsers += [await Browser(r, list(KEYS)).start() for r in fleet.replicas]
            await until(lambda: all(b.ticks() for b in fleet.browsers), 20, "ticks")
            await asyncio.sleep(1.0)  # warm-up
            marks = [len(b.messages) for b in fleet.browsers]
            await asyncio.sleep(seconds)
            sent = sent_ticks(mock)
            lat: list[float] = []
            unmatched = 0
            for b, mark in zip(fleet.browsers, marks, strict=True):
                for m, at in zip(b.messages[mark:], b.received_at[mark:], strict=False):
                    if m.get("type") != "event" or m["event"]["type"] != "tick":
                        continue
                    ev = m["event"]
                    hit = sent.get((ev["key"], float(ev["cumulative_volume"])))
                    if hit is None:
                        unmatched += 1
                        continue
                    lat.append((at - t0) - hit[0])
    return {
        "replicas": n,
        "bus": "redis" if redis is not None else "in-process",
        "ticks_measured": len(lat),
        "unmatched": unmatched,
        "p50_ms": percentile(lat, 0.50),
        "p99_ms": percentile(lat, 0.99),
    }


def loss(browser: Browser, entries: list[tuple[str, dict[str, Any]]]) -> tuple[int, int]:
    """(entries missed, event_ids repeated) of one browser against the stream's entries."""
    ids = browser.bus_ids()
    dup = len(ids) - len(set(ids))
    if not ids:
        return 0, dup
    first, last = _sid(ids[0]), _sid(ids[-1])
    keys = set(browser.keys)
    want = {
        i
        for i, ev in entries
        if first <= _sid(i) <= last and (ev["type"] == "status" or ev.get("key") in keys)
    }
    conflated = sum(int(m.get("conflated", 0)) for m in browser.events())
    return max(0, len(want - set(ids)) - conflated), dup


def _sid(text: str) -> tuple[int, int]:
    ms, _, seq = text.partition("-")
    return int(ms), int(seq)


async def takeover(redis: PrivateRedis, rate: float, runs: int, tmp: Path) -> dict[str, Any]:
    """SIGKILL the holder ``runs`` times; takeover times, loss and duplicates."""
    config = MockConfig(symbols=KEYS, tick_rate_hz=rate)
    socket_s: list[float] = []
    tick_s: list[float] = []
    async with (
        KisMock(config) as mock,
        running_fleet(mock, redis.url, tmp, 3, SUBSCRIPTIONS) as fleet,
    ):
        fleet.browsers += [await Browser(r, list(KEYS)).start() for r in fleet.replicas]
        env = fleet.env
        killed_conns: list[str] = []
        for run in range(runs):
            await until(lambda: all(_live_ticks(b) for b in _live(fleet)), 20, "ticks")
            holder = await holder_among(fleet.replicas)
            assert holder is not None, "a holder"
            await asyncio.sleep(1.0)
            conns = [c for _, c, _ in _open_now(mock)]
            killed_conns += conns
            survivors = [b for b in _live(fleet) if b.replica is not holder]
            before = {id(b): len(b.messages) for b in survivors}
            kill_mono, kill_t = time.monotonic(), mock.trace.now()
            holder.proc.send_signal(signal.SIGKILL)
            await holder.proc.wait()
            await until(
                lambda kill_t=kill_t: any(t > kill_t for t, _, _ in open_intervals(mock)),
                SOCKET_LEASE_TTL_S + 10,
                "a new socket",
            )
            socket_s.append(min(t for t, _, _ in open_intervals(mock) if t > kill_t) - kill_t)
            await until(
                lambda s=survivors, i=before: all(_tick_after(b, i[id(b)]) for b in s),
                15,
                "a tick",
            )
            firsts = [_tick_after(b, before[id(b)]) for b in survivors]
            tick_s.append(min(f for f in firsts if f is not None) - kill_mono)
            # replace the killed replica, with a browser of its own
            fresh = await start_replica(env, tmp / f"replacement-{run}.log")
            fleet.replicas.append(fresh)
            await ready_all([r for r in fleet.replicas if r.alive])
            fleet.browsers.append(await Browser(fresh, list(KEYS)).start())
        await asyncio.sleep(1.0)
        client = Redis.from_url(redis.url)
        try:
            prefix = key_prefix("mock", Secret(mock.env()["KIS_APP_KEY"]))
            events_key = f"{prefix}:{SPEC.clause('API-FLEET').string('events_key')}"
            raw = await client.xrange(events_key)
        finally:
            await client.aclose()
        entries = [(i.decode(), json.loads(f[b"event"])) for i, f in raw]
        missed = dup = 0
        for b in fleet.browsers:
            m, d = loss(b, entries)
            missed += m
            dup += d
        published = {
            (ev["key"], float(ev["cumulative_volume"])) for _, ev in entries if ev["type"] == "tick"
        }
        never = sum(
            1
            for k, (_, conn) in sent_ticks(mock).items()
            if conn in killed_conns and k not in published
        )
    return {
        "runs": runs,
        "lease_ttl_s": SOCKET_LEASE_TTL_S,
        "socket_takeover_s": _spread(socket_s),
        "first_tick_after_kill_s": _spread(tick_s),
        "events_lost": missed,
        "events_duplicated": dup,
        "ticks_sent_to_killed_holders_never_published": never,
        "browsers": len(fleet.browsers),
    }


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "min": round(min(values), 3),
        "median": round(statistics.median(values), 3),
        "max": round(max(values), 3),
    }


def _live(fleet: Fleet) -> list[Browser]:
    return [b for b in fleet.browsers if b.replica.alive and b.closed is None]


def _live_ticks(b: Browser) -> bool:
    return bool(b.ticks())


def _tick_after(b: Browser, index: int) -> float | None:
    """When the first tick after the first gap status past ``index`` arrived (None: not yet)."""
    gap_state = SPEC.clause("API-FLEET").string("gap_state")
    gapped = False
    for m, at in zip(b.messages[index:], b.received_at[index:], strict=False):
        if m.get("type") != "event":
            continue
        ev = m["event"]
        if ev["type"] == "status" and ev["state"] == gap_state:
            gapped = True
        elif gapped and ev["type"] == "tick":
            return at
    return None


def _open_now(mock: KisMock) -> list[tuple[float, float | None, str]]:
    return [i for i in open_intervals(mock) if i[1] is None]


async def main(args: argparse.Namespace) -> dict[str, Any]:
    """Every part, in one run."""
    with tempfile.TemporaryDirectory(prefix="gateway-fleet-") as tmp_s:
        tmp = Path(tmp_s)
        with PrivateRedis(password=False, prefix="gateway-fleet-redis-") as redis:
            one = await latency(1, None, args.rate, args.seconds, tmp)
            one_bus = await latency(1, redis, args.rate, args.seconds, tmp)
            await _flush(redis)
            three = await latency(3, redis, args.rate, args.seconds, tmp)
            await _flush(redis)
            takeovers = await takeover(redis, args.rate, args.runs, tmp)
    added_p50 = round(three["p50_ms"] - one["p50_ms"], 2)
    added_p99 = round(three["p99_ms"] - one["p99_ms"], 2)
    return {
        "benchmark": "gateway_fleet",
        "load_average_1m": round(os.getloadavg()[0], 2),
        "rate_per_key_hz": args.rate,
        "keys": len(KEYS),
        "one_replica": one,
        "one_replica_on_the_bus": one_bus,
        "three_replicas": three,
        "added_p50_ms": added_p50,
        "added_p99_ms": added_p99,
        "added_p99_target_ms": 10.0,
        "added_p99_within_target": added_p99 <= 10.0,
        "p99_ratio": round(three["p99_ms"] / one["p99_ms"], 2) if one["p99_ms"] else None,
        "added_p99_ms_by_the_hop_alone": round(one_bus["p99_ms"] - one["p99_ms"], 2),
        "takeover": takeovers,
    }


async def _flush(redis: PrivateRedis) -> None:
    client = Redis.from_url(redis.url)
    try:
        await client.flushall()
    finally:
        await client.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=25.0, help="mock ticks per second per key")
    parser.add_argument("--seconds", type=float, default=5.0, help="latency window per setup")
    parser.add_argument("--runs", type=int, default=5, help="holder kills")
    print(json.dumps(asyncio.run(main(parser.parse_args())), indent=2))
