"""Hand-made traces for the conformance self-tests: records shaped the way the mock writes them."""

from __future__ import annotations

import json
from typing import Any

from stockmon.conformance.evidence import Evidence, TargetRun
from stockmon.spec import load_spec

SPEC = load_spec("1.1")
PING = {"header": {"tr_id": "PINGPONG"}}


class Trace:
    """Builds trace records the way the mock writes them (seq, t_spec, channel, conn, dir, kind)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def add(self, t: float, conn: str, dir_: str, kind: str, **extra: Any) -> dict[str, Any]:
        rec = {
            "seq": len(self.records) + 1,
            "t": t / 10,
            "t_spec": t,
            "channel": "ws",
            "conn": conn,
            "dir": dir_,
            "kind": kind,
            **extra,
        }
        self.records.append(rec)
        return rec

    def open(self, t: float, conn: str) -> None:
        self.add(t, conn, "event", "ws_open", path="/", peer="127.0.0.1")

    def close(self, t: float, conn: str, by: str = "client") -> None:
        self.add(t, conn, "event", "ws_close", code=1000, reason="", by=by)

    def text(self, t: float, conn: str, dir_: str, obj: Any) -> None:
        self.add(t, conn, dir_, "text", text=json.dumps(obj), json=obj)

    def evidence(self, end: float, **marks: float) -> Evidence:
        run = TargetRun(0, ("t",), 0.0, end / 10, None, False, True, (), (), (), "")
        return Evidence(
            scenario="unit",
            spec=SPEC,
            time_scale=10.0,
            records=tuple(self.records),
            targets=(run,),
            subscriptions=(("H0STCNT0", "005930"),),
            secrets={},
            marks={"end": end, **marks},
            mock={},
            end_t_spec=end,
        )


PING = {"header": {"tr_id": "PINGPONG"}}
