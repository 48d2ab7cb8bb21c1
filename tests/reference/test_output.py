"""What ``stockmon stream`` prints (schema event) and the reconnect back-off iterator."""

from __future__ import annotations

import io
import itertools
import json
import random
from datetime import UTC
from decimal import Decimal

import pytest
from rich.console import Console
from stream_support import data_frame, sample_fields

from stockmon.reference.backoff import jittered_backoff
from stockmon.reference.errors import AuthError, FrameError
from stockmon.reference.events import (
    BrokerErrorReceived,
    DataReceived,
    MalformedFrame,
    StatusChanged,
)
from stockmon.reference.kis.frames import FrameParser
from stockmon.reference.output import JsonLinesSink, LiveTable, safe_event
from stockmon.schemas import errors as schema_errors
from stockmon.spec import load_spec

SPEC = load_spec("1.1")
PARSER = FrameParser(SPEC)


def lines_of(*events: object) -> list[dict[str, object]]:
    out = io.StringIO()
    sink = JsonLinesSink(out)
    for ev in events:
        safe_event(sink, ev)  # type: ignore[arg-type]
    sink.flush()
    return [json.loads(line, parse_float=Decimal) for line in out.getvalue().splitlines()]


def schema_ok(obj: dict[str, object]) -> bool:
    return schema_errors("event", json.loads(json.dumps(obj, default=float))) == []


class TestJsonLines:
    def test_tick_line_numbers_are_json_numbers(self) -> None:
        """A tick line has tr_id, key, time and price/volume as JSON numbers (KR int, US exact)."""
        kr = SPEC.layout("H0STCNT0")
        us = SPEC.layout("HDFSCNT0")
        kr_f = sample_fields(kr, "005930")
        us_f = sample_fields(us, "DNASAAPL")
        us_f[us.index("LAST")] = "187.2300"
        out = lines_of(
            DataReceived(PARSER.parse(data_frame(SPEC, "H0STCNT0", [kr_f])), "kis"),
            DataReceived(PARSER.parse(data_frame(SPEC, "HDFSCNT0", [us_f])), "kis"),
        )
        assert out[0] == {
            "type": "tick",
            "source": "kis",
            "tr_id": "H0STCNT0",
            "key": "005930",
            "time": kr_f[kr.index("STCK_CNTG_HOUR")],
            "price": int(kr_f[kr.index("STCK_PRPR")]),
            "volume": int(kr_f[kr.index("CNTG_VOL")]),
        }
        assert out[1]["price"] == Decimal("187.23") and isinstance(out[1]["price"], Decimal)
        assert all(schema_ok(o) for o in out)

    def test_us_price_digits_are_printed_as_sent(self) -> None:
        """The printed text of a US price is the broker's digits (no float rounding)."""
        us = SPEC.layout("HDFSCNT0")
        f = sample_fields(us, "DNASAAPL")
        f[us.index("LAST")] = "0.1000"
        (line,) = PARSER.parse(data_frame(SPEC, "HDFSCNT0", [f])).json_lines("kis").splitlines()
        assert '"price":0.1000,' in line

    @pytest.mark.parametrize("tr_id", ["H0STASP0", "HDFSASP0"])
    def test_orderbook_levels_best_first(self, tr_id: str) -> None:
        """asks and bids are [price, quantity] pairs in role order (L1 first), every level."""
        layout = SPEC.layout(tr_id)
        f = sample_fields(layout, "000660" if tr_id == "H0STASP0" else "DNASMSFT")
        (obj,) = lines_of(DataReceived(PARSER.parse(data_frame(SPEC, tr_id, [f])), "kis"))
        asks = obj["asks"]
        assert isinstance(asks, list) and len(asks) == len(layout.role_list("ask_prices"))
        p1, q1 = layout.role_list("ask_prices")[0], layout.role_list("ask_quantities")[0]
        assert asks[0] == [
            Decimal(f[layout.index(p1)])
            if "." in f[layout.index(p1)]
            else int(f[layout.index(p1)]),
            int(f[layout.index(q1)]),
        ]
        assert schema_ok(obj)

    def test_multi_record_frame_is_one_line_per_record(self) -> None:
        """Four records in one frame: four lines, in wire order."""
        layout = SPEC.layout("H0STCNT0")
        recs = [sample_fields(layout, f"{i:06d}", i) for i in range(4)]
        out = lines_of(DataReceived(PARSER.parse(data_frame(SPEC, "H0STCNT0", recs)), "kis"))
        assert [o["key"] for o in out] == [f"{i:06d}" for i in range(4)]

    def test_bad_value_drops_the_whole_frame_and_reports_it(self) -> None:
        """A frame with a bad price prints no data line, only a frame_dropped status."""
        layout = SPEC.layout("H0STCNT0")
        good = sample_fields(layout, "005930")
        bad = sample_fields(layout, "000660")
        bad[layout.index("STCK_PRPR")] = "12x"
        out = lines_of(DataReceived(PARSER.parse(data_frame(SPEC, "H0STCNT0", [good, bad])), "kis"))
        assert [o["type"] for o in out] == ["status"]
        assert out[0]["state"] == "frame_dropped" and "STCK_PRPR" in str(out[0]["reason"])

    def test_status_events_are_informative_and_valid(self) -> None:
        """Status, broker error and malformed-frame events all print as valid status lines."""
        out = lines_of(
            StatusChanged(
                "reconnecting",
                "session_in_use",
                code="OPSP8996",
                backoff_s=60.0,
                detail="x",
                source="kis",
            ),
            StatusChanged(
                "subscribed", "ack", tr_id="H0STCNT0", key="005930", code="OPSP0000", source="kis"
            ),
            BrokerErrorReceived(
                AuthError("OPSP0011", "invalid approval", retryable=True),
                "H0STCNT0",
                "005930",
                source="kis",
            ),
            MalformedFrame(FrameError("data frame has 2 of 4 parts"), "0|x", source="kis"),
        )
        assert [o["state"] for o in out] == [
            "reconnecting",
            "subscribed",
            "broker_error",
            "frame_dropped",
        ]
        assert out[0]["backoff_s"] == Decimal("60.0") and out[0]["code"] == "OPSP8996"
        assert out[1]["key"] == "005930" and out[1]["tr_id"] == "H0STCNT0"
        assert out[2]["code"] == "OPSP0011" and "invalid approval" in str(out[2]["reason"])
        assert all(schema_ok(o) for o in out)


# 2026-12-02 01:00:00 UTC: 10:00 in Seoul, 20:00 the day before in New York.
WALL = 1796173200.0


def live(height: int = 24, width: int = 80) -> tuple[LiveTable, Console]:
    """A table on a recording console of a given size, viewed from UTC."""
    console = Console(width=width, height=height, record=True, color_system="truecolor")
    table = LiveTable(
        console,
        spec=SPEC,
        monotonic=itertools.count(0.0, 1.0).__next__,
        wall=lambda: WALL,
        local_zone=UTC,
    )
    return table, console


def feed(table: LiveTable, tr_id: str, key: str, n: int) -> None:
    """One data frame of sample values for ``key``."""
    f = sample_fields(SPEC.layout(tr_id), key, n)
    table.event(DataReceived(PARSER.parse(data_frame(SPEC, tr_id, [f])), "kis"))


def screen(table: LiveTable, console: Console) -> list[str]:
    """The rendered screen, line by line."""
    console.print(table.render())
    return console.export_text(styles=False).splitlines()


class TestLiveTable:
    def test_header_rows_and_status_line(self) -> None:
        """A title with date and zone, a header row, one row per (TR, key), the status last."""
        table, console = live()
        table.event(StatusChanged("connected", "session_open", source="kis"))
        for n in range(3):
            feed(table, "H0STCNT0", "005930", n)
        lines = screen(table, console)
        assert "2026-12-02" in lines[0] and "UTC" in lines[0]
        assert lines[1].split() == ["TR", "key", "time", "last", "volume", "bid", "ask"]
        assert sum("005930" in ln for ln in lines) == 1
        layout = SPEC.layout("H0STCNT0")
        assert str(int(sample_fields(layout, "005930", 2)[layout.index("STCK_PRPR")])) in "".join(
            lines
        )
        assert "connected session_open" in lines[-1]

    def test_32_keys_fit_80x24_with_the_status_pinned(self) -> None:
        """At 80x24, 32 keys and a US book: no line wider than 80, N of M keys, status last."""
        table, console = live()
        keys = [f"{n:06d}" for n in range(100, 132)]
        for n, key in enumerate(keys):
            feed(table, "H0STCNT0", key, n)
        feed(table, "HDFSASP0", "DNASAAPL", 1)
        table.event(StatusChanged("subscribed", "ack", source="kis"))
        lines = screen(table, console)
        assert len(lines) <= 24 and all(len(ln) <= 80 for ln in lines)
        assert f"of {len(keys) + 1} keys" in lines[0]
        assert "subscribed ack" in lines[-1]

    def test_at_80_columns_keys_and_prices_are_whole_and_only_book_levels_give_way(self) -> None:
        """A US tick and book at 80 columns: TR, key and last price in full; bid/ask may be cut."""
        table, console = live()
        feed(table, "HDFSCNT0", "DNASAAPL", 1)
        feed(table, "HDFSASP0", "DNASAAPL", 1)
        lines = screen(table, console)
        assert all(len(ln) <= 80 for ln in lines)
        tick = next(ln for ln in lines if ln.startswith("HDFSCNT0"))
        layout = SPEC.layout("HDFSCNT0")
        last = sample_fields(layout, "DNASAAPL", 1)[layout.index(layout.role("price"))]
        assert tick.split()[1] == "DNASAAPL" and last.strip() in tick and "…" not in tick
        assert any(ln.startswith("HDFSASP0   DNASAAPL") for ln in lines)

    def test_times_are_local_with_the_date_when_it_differs(self) -> None:
        """An exchange time shows in the viewer's zone; a US row of yesterday carries its date."""
        table, console = live()
        feed(table, "HDFSCNT0", "DNASAAPL", 1)
        text = "\n".join(screen(table, console))
        assert "12-02 " in text or "12-01 " in text  # the US row is dated: not today in UTC

    def test_up_and_down_are_coloured(self) -> None:
        """A price above the previous one of its key is green, below it red."""
        table, console = live()
        feed(table, "H0STCNT0", "005930", 1)
        feed(table, "H0STCNT0", "005930", 2)
        feed(table, "H0STCNT0", "000660", 2)
        feed(table, "H0STCNT0", "000660", 1)
        console.print(table.render())
        html = console.export_html(inline_styles=True)
        assert "#008000" in html or "color: #00" in html
        assert "#800000" in html or "#ff0000" in html.lower()

    def test_redraws_are_rate_limited(self) -> None:
        """Two flushes within the minimum interval draw once."""
        out = io.StringIO()
        table = LiveTable(out, min_interval_s=10.0, monotonic=lambda: 100.0)
        table.event(StatusChanged("connected", "session_open", source="kis"))
        table.flush()
        table.event(StatusChanged("subscribed", "ack", source="kis"))
        table.flush()
        table.close()
        assert out.getvalue().count("stockmon stream") == 1
        assert "subscribed" not in out.getvalue()


class TestBackoff:
    def test_jittered_capped_exponential(self) -> None:
        """Each delay lies in [ceiling/2, ceiling]; the ceiling doubles up to the cap."""
        delays = list(
            itertools.islice(
                jittered_backoff(initial_s=1.0, factor=2.0, max_s=8.0, rng=random.Random(3)), 8
            )
        )
        ceilings = [1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0, 8.0]
        assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
        assert len(set(delays)) == len(delays), "jitter makes delays differ"

    def test_fresh_iterator_starts_over(self) -> None:
        """A new iterator (what the shell makes after a healthy session) starts at the initial delay."""
        first = next(jittered_backoff(initial_s=1.0, rng=random.Random(1)))
        assert 0.5 <= first <= 1.0
