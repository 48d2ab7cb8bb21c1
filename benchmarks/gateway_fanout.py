#!/usr/bin/env python3
"""Fan-out of ``stockmon serve`` against a bare ``websockets`` broadcast() ceiling, as JSON.

The same paced stream of tick events (4 keys, ``--rate`` per second for ``--seconds``) goes to
``--subscribers`` WebSocket clients in a separate process on loopback: once through the gateway's
app (the Hub, its per-subscriber queues and the /v1/stream endpoint, under uvicorn, no broker) and
once through a bare ``websockets`` server calling ``broadcast()`` with the same messages. Reported:
deliveries per second and p50/p99 latency (producer's send to the client's receive) of each, and
the ratios gateway / ceiling measured in this run. Small N by default; the issue's N = 100 and
1,000 are ``--subscribers 100`` / ``--subscribers 1000``.

    .venv/bin/python benchmarks/gateway_fanout.py [--subscribers 20] [--rate 500] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

import httpx
import uvicorn
import websockets
from websockets.asyncio.server import broadcast, serve

from stockmon.redaction import Secret
from stockmon.reference.gateway.app import Gateway, build_app
from stockmon.reference.gateway.hub import Hub
from stockmon.settings import Subscription
from stockmon.spec import load_spec

KEYS = ("005930", "000660", "035420", "DNASAAPL")
BENCH_KEY = "benchmark-key-not-a-secret"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _event(i: int) -> dict[str, Any]:
    key = KEYS[i % len(KEYS)]
    return {
        "type": "tick",
        "source": "kis",
        "tr_id": "HDFSCNT0" if key.startswith("D") else "H0STCNT0",
        "key": key,
        "time": "093015",
        "price": 71000 + i % 100,
        "volume": 5,
        "timestamp": "2026-12-01T09:30:15+09:00",
        "change": -500,
        "change_rate": -0.7,
        "cumulative_volume": 1523400 + i,
        "sent_at": time.time(),
    }


async def _produce(rate: float, seconds: float, send: Any) -> int:
    """Paced: every millisecond, the events due by then."""
    start = time.monotonic()
    sent = 0
    while (elapsed := time.monotonic() - start) < seconds:
        due = int(elapsed * rate)
        while sent < due:
            send(_event(sent))
            sent += 1
        await asyncio.sleep(0.001)
    return sent


def _clients(args: argparse.Namespace, url: str, protocols: list[list[str]] | None) -> list[Any]:
    """``--procs`` subscriber processes sharing the ``--subscribers`` connections."""
    procs = []
    per = [
        args.subscribers // args.procs + (i < args.subscribers % args.procs)
        for i in range(args.procs)
    ]
    start = 0
    for n in per:
        if n == 0:
            continue
        cmd = [
            sys.executable,
            __file__,
            "--client",
            url,
            "--seconds",
            str(args.seconds),
            "--subscribers",
            str(n),
        ]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert proc.stdin is not None
        mine = protocols[start : start + n] if protocols else None
        proc.stdin.write(json.dumps(mine) + "\n")
        proc.stdin.flush()
        procs.append(proc)
        start += n
    return procs


async def _wait_ready(procs: list[Any]) -> None:
    for proc in procs:
        line = await asyncio.to_thread(proc.stdout.readline)
        assert line.strip() == "ready", line


async def _result(procs: list[Any]) -> dict[str, Any]:
    """The subscriber processes' figures merged: deliveries summed, latencies pooled."""
    parts = []
    for proc in procs:
        out, _ = await asyncio.to_thread(proc.communicate)
        parts.append(json.loads(out.strip().splitlines()[-1]))
    latencies = sorted(x for p in parts for x in p.pop("latencies_ms"))
    count = sum(int(p["deliveries"]) for p in parts)

    def pct(q: float) -> float | None:
        return latencies[int(q * (len(latencies) - 1))] if latencies else None

    return {
        "deliveries": count,
        "deliveries_per_s": round(count / parts[0]["seconds"], 1) if parts else 0.0,
        "latency_p50_ms": pct(0.5),
        "latency_p99_ms": pct(0.99),
        "latency_mean_ms": round(statistics.fmean(latencies), 2) if latencies else None,
    }


def _rss_mb() -> float:
    """This process's resident set (Linux /proc), in MiB."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def _frozen(url: str, protocol: list[str]) -> Any:
    """A subscriber that subscribes to every key and then never reads again (a frozen tab)."""
    ws = await websockets.connect(url, subprotocols=protocol, max_queue=1)  # type: ignore[arg-type]
    await ws.recv()  # welcome
    await ws.send(json.dumps({"type": "subscribe", "keys": list(KEYS)}))
    return ws


async def _gateway_run(args: argparse.Namespace, frozen: bool, rss: int = 0) -> dict[str, Any]:
    """The paced stream through the gateway to the subscriber processes; with ``frozen`` one more
    subscriber never reads; with ``rss`` > 0, afterwards that many events are pushed as fast as
    the loop takes them and the process's RSS is read at 10,000 and at the end."""
    spec = load_spec("1.2")
    hub = Hub(spec, time.monotonic)
    gw = Gateway(
        spec=spec,
        hub=hub,
        key=Secret(BENCH_KEY),
        origins=(),
        subscriptions=[],
        broker="kis",
        failover=False,
        monotonic=time.monotonic,
        ingest_clock=time.monotonic,
    )
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(build_app(gw), host="127.0.0.1", port=port, log_level="warning")
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn exposes a flag, not an event)
        await asyncio.sleep(0.02)
    auth = spec.clause("API-AUTH")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        tickets = [
            (
                await http.post(
                    auth.string("ticket_path"),
                    headers={
                        auth.string("rest_header"): f"{auth.string('rest_scheme')} {BENCH_KEY}"
                    },
                )
            ).json()["ticket"]
            for _ in range(args.subscribers + 1)
        ]
    gw.subscriptions.extend(Subscription("H0STCNT0", k) for k in KEYS)
    protocols = [
        [auth.string("ws_subprotocol"), auth.string("ws_ticket_subprotocol_prefix") + t]
        for t in tickets
    ]
    url = f"ws://127.0.0.1:{port}{spec.clause('API-STREAM').string('path')}"
    stuck = await _frozen(url, protocols.pop()) if frozen else None
    procs = _clients(args, url, protocols)
    await _wait_ready(procs)
    sent = await _produce(args.rate, args.seconds, hub.publish)
    result = await _result(procs)
    memory: dict[str, Any] = {}
    if rss:
        base_at = 10_000
        for i in range(rss):
            hub.publish(_event(i))
            if i % 500 == 0:
                await asyncio.sleep(0)  # the writers run, as between ingest frames
            if i + 1 == base_at:
                memory["rss_mb_after_10k"] = round(_rss_mb(), 1)
        await asyncio.sleep(0.5)
        memory["rss_mb_after_all"] = round(_rss_mb(), 1)
        memory["events_pushed"] = rss
        memory["rss_growth_mb"] = round(memory["rss_mb_after_all"] - memory["rss_mb_after_10k"], 1)
    if stuck is not None:
        await stuck.close()
    server.should_exit = True
    await serving
    conflated = sum(
        s.value
        for m in hub.metrics.drops.collect()
        for s in m.samples
        if s.name.endswith("_total") and s.labels.get("reason") == hub.drop_conflated
    )
    return {**result, "events_sent": sent, "conflated": conflated, **memory}


async def _ceiling_run(args: argparse.Namespace) -> dict[str, Any]:
    port = _free_port()

    async def handler(ws: Any) -> None:
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", port) as server:
        url = f"ws://127.0.0.1:{port}"
        procs = _clients(args, url, None)
        await _wait_ready(procs)

        def send(obj: dict[str, Any]) -> None:
            body = json.dumps({"type": "event", "seq": 0, "event": obj}, separators=(",", ":"))
            broadcast(server.connections, body)

        sent = await _produce(args.rate, args.seconds, send)
        result = await _result(procs)
    return {**result, "events_sent": sent}


async def _client_main(args: argparse.Namespace) -> None:
    protocols = json.loads(sys.stdin.readline())
    latencies: list[float] = []
    count = 0

    async def one(i: int) -> None:
        nonlocal count
        offer = protocols[i] if protocols else None
        async with websockets.connect(args.client, subprotocols=offer, max_size=None) as ws:
            if protocols:
                await ws.recv()  # welcome
                await ws.send(json.dumps({"type": "subscribe", "keys": list(KEYS)}))
            ready.append(i)
            if len(ready) == args.subscribers:
                all_ready.set()
            end = time.monotonic() + args.seconds + 3
            while (left := end - time.monotonic()) > 0:
                try:
                    raw = await asyncio.wait_for(ws.recv(), left)
                except TimeoutError:
                    break
                msg = json.loads(raw)
                if msg.get("type") == "event":
                    count += 1
                    latencies.append(time.time() - msg["event"]["sent_at"])

    ready: list[int] = []
    all_ready = asyncio.Event()
    tasks = [asyncio.create_task(one(i)) for i in range(args.subscribers)]
    await all_ready.wait()
    await asyncio.sleep(0.3)  # the acks and snapshots are through
    print("ready", flush=True)
    await asyncio.gather(*tasks)
    print(
        json.dumps(
            {
                "deliveries": count,
                "seconds": args.seconds,
                "latencies_ms": [round(x * 1000, 2) for x in latencies],
            }
        ),
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=20)
    parser.add_argument("--procs", type=int, default=2, help="subscriber processes (default 2)")
    parser.add_argument("--rate", type=float, default=500.0, help="events per second produced")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument(
        "--rss-events",
        type=int,
        default=1_000_000,
        help="events pushed after the frozen-tab run to read the RSS growth (0: skip)",
    )
    parser.add_argument("--client", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        asyncio.run(_client_main(args))
        return 0
    gateway = asyncio.run(_gateway_run(args, frozen=False))
    with_frozen = asyncio.run(_gateway_run(args, frozen=True, rss=args.rss_events))
    ceiling = asyncio.run(_ceiling_run(args))

    def ratio(a: Any, b: Any) -> float | None:
        return round(a / b, 3) if a and b else None

    deliveries = ratio(gateway["deliveries_per_s"], ceiling["deliveries_per_s"])
    frozen_p99 = ratio(with_frozen["latency_p99_ms"], gateway["latency_p99_ms"])
    growth = with_frozen.get("rss_growth_mb")
    print(
        json.dumps(
            {
                "benchmark": "gateway_fanout",
                "subscribers": args.subscribers,
                "subscriber_processes": args.procs,
                "keys_per_subscriber": len(KEYS),
                "rate_events_per_s": args.rate,
                "seconds": args.seconds,
                "gateway": gateway,
                "gateway_with_a_frozen_subscriber": with_frozen,
                "ceiling_bare_broadcast": ceiling,
                "deliveries_ratio": deliveries,
                "p99_latency_ratio": ratio(gateway["latency_p99_ms"], ceiling["latency_p99_ms"]),
                "frozen_subscriber_p99_ratio": frozen_p99,
                "targets": {
                    "deliveries_ratio_at_least_0_6": deliveries is not None and deliveries >= 0.6,
                    "frozen_p99_within_10_percent": frozen_p99 is not None and frozen_p99 <= 1.1,
                    "rss_growth_at_most_20_mb": growth is None or growth <= 20,
                },
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
