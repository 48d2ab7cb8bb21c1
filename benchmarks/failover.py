#!/usr/bin/env python3
"""The Kiwoom backup measured: failover timings over loopback and the REAL parse path, as JSON.

1. Failover (FAILOVER-KIWOOM), ``--runs`` times at ``--scale``: KIS and Kiwoom mocks on one loop and
   one trace, the reference's FailoverStream (KIS client + Kiwoom client, one at a time). KIS is made
   to refuse connections and dropped; later it answers again. Reported in spec seconds (medians):
   KIS down -> Kiwoom socket open, -> first Kiwoom data event; KIS back -> KIS socket open; and in
   real milliseconds the socket gaps of the two switches (the price of never holding two sockets);
   plus the most sockets ever open at once across both brokers (must be 1).
2. REAL parse path: REAL frames of four entries through KiwoomSessionCore.text_received and the
   JSON-lines sink, against a naive baseline (json.loads, then json.dumps of every entry) in the same
   run; ``ratio`` = reference throughput / baseline throughput.

    .venv/bin/python benchmarks/failover.py [--runs 3] [--scale 50] [--frames 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from stockmon.clock import ScaledClock
from stockmon.mockserver import KisMock, MockConfig, kiwoom_beside
from stockmon.redaction import Secret
from stockmon.reference.events import DataReceived, Event
from stockmon.reference.failover.runner import FailoverStream
from stockmon.reference.kis.auth import DirectApprovalKeyProvider, KisAuthClient
from stockmon.reference.kis.session import SessionCore
from stockmon.reference.kiwoom.session import KiwoomSessionCore
from stockmon.reference.output import EventSink, JsonLinesSink
from stockmon.reference.rest import BrokerHttp, new_http
from stockmon.reference.seams import SharedCredentialSource
from stockmon.reference.shell import Outcome, StreamClient
from stockmon.settings import Subscription
from stockmon.spec import latest_version, load_spec

SUBS = (
    Subscription("H0STCNT0", "005930"),
    Subscription("H0STASP0", "000660"),
    Subscription("HDFSCNT0", "DNASAAPL"),
)


class _Sink:
    def __init__(self) -> None:
        self.events: list[tuple[float, Event]] = []

    def event(self, ev: Event) -> None:
        self.events.append((time.monotonic(), ev))

    def flush(self) -> None:
        pass

    def first(self, pred: Any) -> float | None:
        return next((t for t, e in self.events if pred(e)), None)


async def _until(pred: Any, timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while not pred():  # noqa: ASYNC110 - polls state other tasks change
            await asyncio.sleep(0.005)


async def failover_once(scale: float) -> dict[str, float]:
    """One failover and switch back; timings from the shared trace and the sink."""
    spec = load_spec(latest_version())
    async with (
        KisMock(MockConfig(time_scale=scale, tick_rate_hz=5.0 / scale)) as kis,
        new_http() as http,
    ):
        kw = kiwoom_beside(kis, tick_rate_hz=5.0 / scale)
        await kw.start()
        clock, sink = ScaledClock(scale), _Sink()
        conn = BrokerHttp(http, kis.rest_url, Secret(kis.app_key), Secret(kis.app_secret))
        approval = DirectApprovalKeyProvider(KisAuthClient(conn, spec))

        def make_kis(
            s: EventSink, on_outcome: Callable[[Outcome], None], subs: Sequence[Subscription]
        ) -> StreamClient:
            return StreamClient(
                core=SessionCore(spec),
                ws_url=kis.ws_url,
                url_variable="KIS_WS_URL",
                subscriptions=subs,
                credentials=approval,
                clock=clock,
                sink=s,
                on_outcome=on_outcome,
            )

        def make_kiwoom(
            s: EventSink, on_outcome: Callable[[Outcome], None], subs: Sequence[Subscription]
        ) -> StreamClient:
            return StreamClient(
                core=KiwoomSessionCore(spec, env="mock", login_timeout_s=10.0 / clock.to_real(1.0)),
                ws_url=kw.ws_url,
                url_variable="KIWOOM_WS_URL",
                subscriptions=subs,
                credentials=SharedCredentialSource(None),
                clock=clock,
                sink=s,
                on_outcome=on_outcome,
            )

        runner = FailoverStream(
            spec=spec,
            clock=clock,
            sink=sink,
            make_kis=make_kis,
            make_kiwoom=make_kiwoom,
            subscriptions=SUBS,
        )
        task = asyncio.create_task(runner.run())
        try:
            await _until(
                lambda: (
                    len([e for _, e in sink.events if getattr(e, "state", "") == "subscribed"]) >= 3
                ),
                20,
            )
            t_down = time.monotonic()
            down_t = kis.trace.now()
            kis.faults.refuse_connections(True)
            kis.faults.drop_socket()
            await _until(
                lambda: (
                    sink.first(lambda e: isinstance(e, DataReceived) and e.source == "kiwoom")
                    is not None
                ),
                60,
            )
            up_t = kis.trace.now()
            kis.faults.refuse_connections(False)
            await _until(lambda: runner.core.switchbacks == 1, 600 / scale + 30)
            await asyncio.sleep(0.2)
        finally:
            runner.stop()
            await asyncio.wait_for(task, 20)
            await kw.stop()
        recs = kis.trace.records()
    open_now: set[str] = set()
    most = 0
    opens: list[tuple[float, str]] = []
    closes: list[tuple[float, str]] = []
    for r in recs:
        if r["kind"] == "ws_open":
            open_now.add(r["conn"])
            most = max(most, len(open_now))
            opens.append((r["t"], r["conn"]))
        elif r["kind"] == "ws_close":
            open_now.discard(r["conn"])
            closes.append((r["t"], r["conn"]))
    kw_open = next(t for t, c in opens if c.startswith("kiwoom") and t > down_t)
    kis_close = max(t for t, c in closes if not c.startswith("kiwoom") and t <= kw_open)
    back_open = next(t for t, c in opens if not c.startswith("kiwoom") and t > up_t)
    kw_close = max(t for t, c in closes if c.startswith("kiwoom") and t <= back_open)
    first_data = sink.first(lambda e: isinstance(e, DataReceived) and e.source == "kiwoom")
    assert first_data is not None
    return {
        "down_to_kiwoom_socket_spec_s": (kw_open - down_t) * scale,
        "down_to_kiwoom_data_spec_s": (first_data - t_down) * scale,
        "up_to_kis_socket_spec_s": (back_open - up_t) * scale,
        "failover_socket_gap_ms": (kw_open - kis_close) * 1000,
        "switchback_socket_gap_ms": (back_open - kw_close) * 1000,
        "max_open_sockets": float(most),
    }


def _real_frames(n: int) -> list[str]:
    spec = load_spec(latest_version())
    tick = spec.kiwoom_layouts["0B"]
    frames = []
    for i in range(n):
        entries = []
        for j, item in enumerate(("005930", "000660", "035720", "005380")):
            values = {f.fid: "0" for f in tick.fields}
            values.update(
                {
                    tick.roles["time"]: "093015",
                    tick.roles["price"]: f"+{70000 + i % 50 * 100 + j}",
                    tick.roles["volume"]: f"-{i % 300 + 1}",
                }
            )
            entries.append({"type": "0B", "name": "주식체결", "item": item, "values": values})
        frames.append(
            json.dumps({"trnm": "REAL", "data": entries}, ensure_ascii=False, separators=(",", ":"))
        )
    return frames


def parse_path(n: int) -> dict[str, float]:
    """Frames per second: reference core + JSON-lines sink vs json.loads + json.dumps per entry."""
    spec = load_spec(latest_version())
    frames = _real_frames(n)
    out = io.StringIO()
    sink = JsonLinesSink(out)
    core = KiwoomSessionCore(spec, env="mock", login_timeout_s=10.0)
    for s in SUBS:
        core.subscribe(s, 0.0)
    core.start(0.0)
    core.connected(0.0)
    core.text_received(json.dumps({"trnm": "LOGIN", "return_code": 0, "return_msg": ""}), 0.0)
    core.data_to_send()
    while core.next_event() is not None:
        pass
    t = time.perf_counter()
    for f in frames:
        core.text_received(f, 1.0)
        while (ev := core.next_event()) is not None:
            sink.event(ev)
    ref = n / (time.perf_counter() - t)
    base_out = io.StringIO()
    t = time.perf_counter()
    for f in frames:
        for e in json.loads(f)["data"]:
            base_out.write(json.dumps(e, ensure_ascii=False) + "\n")
    base = n / (time.perf_counter() - t)
    return {"reference_frames_per_s": ref, "baseline_frames_per_s": base, "ratio": ref / base}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scale", type=float, default=50.0)
    parser.add_argument("--frames", type=int, default=20000)
    args = parser.parse_args()
    runs = [asyncio.run(failover_once(args.scale)) for _ in range(args.runs)]
    failover = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    failover["max_open_sockets"] = max(r["max_open_sockets"] for r in runs)
    result = {
        "failover": {
            "runs": args.runs,
            "time_scale": args.scale,
            **{k: round(v, 2) for k, v in failover.items()},
        },
        "real_parse": {k: round(v, 2) for k, v in parse_path(args.frames).items()},
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
