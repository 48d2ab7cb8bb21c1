"""The KIS market view: the shared simulator's trades as KIS records, frames and REST quotes.

Records are laid out by the spec's field layouts, so a field added to the spec is sent (with a
neutral value) without a code change; the frame grammar (``0|TR|NNN|f^f^...``) comes from the
profile. Wall time is an input, never read here. :class:`ReplaySource` serves recorded frames.
"""

from __future__ import annotations

import json
import operator
import random
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from stockmon.mockserver.errors import ReplayError
from stockmon.mockserver.kis.profile import Profile
from stockmon.mockserver.simulator import Instrument, MarketSimulator, compare_sign
from stockmon.spec import Layout

_NEUTRAL = {"int": "0", "decimal": "0.00", "str": ""}

# Field names of the trade records KisMarket._tick builds, in the order it builds them; a record
# is laid out by the spec from these (fields the spec adds get a neutral value).
_KR_TICK = (
    "MKSC_SHRN_ISCD",
    "STCK_CNTG_HOUR",
    "STCK_PRPR",
    "PRDY_VRSS_SIGN",
    "PRDY_VRSS",
    "PRDY_CTRT",
    "WGHN_AVRG_STCK_PRC",
    "STCK_OPRC",
    "STCK_HGPR",
    "STCK_LWPR",
    "ASKP1",
    "BIDP1",
    "CNTG_VOL",
    "ACML_VOL",
    "ACML_TR_PBMN",
    "SELN_CNTG_CSNU",
    "SHNU_CNTG_CSNU",
    "NTBY_CNTG_CSNU",
    "CTTR",
    "SELN_CNTG_SMTN",
    "SHNU_CNTG_SMTN",
    "CCLD_DVSN",
    "SHNU_RATE",
    "PRDY_VOL_VRSS_ACML_VOL_RATE",
    "OPRC_HOUR",
    "OPRC_VRSS_PRPR_SIGN",
    "OPRC_VRSS_PRPR",
    "HGPR_HOUR",
    "HGPR_VRSS_PRPR_SIGN",
    "HGPR_VRSS_PRPR",
    "LWPR_HOUR",
    "LWPR_VRSS_PRPR_SIGN",
    "LWPR_VRSS_PRPR",
    "BSOP_DATE",
    "NEW_MKOP_CLS_CODE",
    "TRHT_YN",
    "ASKP_RSQN1",
    "BIDP_RSQN1",
    "TOTAL_ASKP_RSQN",
    "TOTAL_BIDP_RSQN",
    "VOL_TNRT",
    "PRDY_SMNS_HOUR_ACML_VOL",
    "PRDY_SMNS_HOUR_ACML_VOL_RATE",
    "HOUR_CLS_CODE",
    "MRKT_TRTM_CLS_CODE",
    "VI_STND_PRC",
)
_US_TICK = (
    "RSYM",
    "SYMB",
    "ZDIV",
    "TYMD",
    "XYMD",
    "XHMS",
    "KYMD",
    "KHMS",
    "OPEN",
    "HIGH",
    "LOW",
    "LAST",
    "SIGN",
    "DIFF",
    "RATE",
    "PBID",
    "PASK",
    "VBID",
    "VASK",
    "EVOL",
    "TVOL",
    "TAMT",
    "BIVL",
    "ASVL",
    "STRN",
    "MTYP",
)


class KisMarket:
    """Builds KIS data records and quote outputs from the shared simulator."""

    def __init__(self, profile: Profile, sim: MarketSimulator) -> None:
        self.profile = profile
        self.sim = sim
        self._time_sec = -1
        self._time_cache = ("", "", "", "")
        self._plans: dict[str, list[tuple[str, str]]] = {}
        self._tick_plans: dict[tuple[str, str], Callable[[tuple[str, ...]], tuple[str, ...]]] = {}

    def _times(self, wall: float) -> tuple[str, str, str, str]:
        """(KST date, KST HHMMSS, NY date, NY HHMMSS), cached per wall second."""
        sec = int(wall)
        if sec != self._time_sec:
            utc = datetime.fromtimestamp(sec, UTC)
            kst, ny = utc.astimezone(self.sim.kst), utc.astimezone(self.sim.ny)
            self._time_cache = (
                kst.strftime("%Y%m%d"),
                kst.strftime("%H%M%S"),
                ny.strftime("%Y%m%d"),
                ny.strftime("%H%M%S"),
            )
            self._time_sec = sec
        return self._time_cache

    def _usd(self, cents: int) -> str:
        return f"{cents / 100:.{self.sim.us_decimals}f}"

    def tick_values(self, inst: Instrument, wall: float) -> dict[str, str]:
        """Values of one trade record by field name (after one step)."""
        names = _KR_TICK if inst.market == "KR" else _US_TICK
        return dict(zip(names, self._tick(inst, wall), strict=True))

    def _tick(self, inst: Instrument, wall: float) -> tuple[str, ...]:
        """Values of one trade record (after one step), in the order of _KR_TICK or _US_TICK."""
        kdate, hms, ndate, nhms = self._times(wall)
        self.sim.step(inst, hms)
        ask1, bid1 = self.sim.level1(inst)
        rng = inst.rng
        ask_q1, bid_q1 = self.sim.qty(rng), self.sim.qty(rng)
        # Book totals drift slowly instead of summing ten levels on every trade.
        tot_ask = inst.extra.get("tot_ask", ask_q1 * 10) + int((rng.random() - 0.5) * 200)
        tot_bid = inst.extra.get("tot_bid", bid_q1 * 10) + int((rng.random() - 0.5) * 200)
        inst.extra["tot_ask"], inst.extra["tot_bid"] = max(ask_q1, tot_ask), max(bid_q1, tot_bid)
        asks, ask_q, bids, bid_q = [ask1], [ask_q1], [bid1], [bid_q1]
        sum_ask, sum_bid = inst.extra["tot_ask"], inst.extra["tot_bid"]
        diff = inst.last - inst.prev_close
        rate = f"{diff * 100 / inst.prev_close:.2f}"
        strength = f"{inst.buy_qty * 100 / max(1, inst.sell_qty):.2f}"
        if inst.market == "KR":
            avg = inst.cum_value / max(1, inst.cum_vol)
            return (
                inst.key,  # MKSC_SHRN_ISCD
                hms,  # STCK_CNTG_HOUR
                str(inst.last),  # STCK_PRPR
                self.sim.direction_code(inst),  # PRDY_VRSS_SIGN
                str(diff),  # PRDY_VRSS
                rate,  # PRDY_CTRT
                f"{avg:.2f}",  # WGHN_AVRG_STCK_PRC
                str(inst.open),  # STCK_OPRC
                str(inst.high),  # STCK_HGPR
                str(inst.low),  # STCK_LWPR
                str(asks[0]),  # ASKP1
                str(bids[0]),  # BIDP1
                str(inst.last_vol),  # CNTG_VOL
                str(inst.cum_vol),  # ACML_VOL
                str(inst.cum_value),  # ACML_TR_PBMN
                str(inst.sell_count),  # SELN_CNTG_CSNU
                str(inst.buy_count),  # SHNU_CNTG_CSNU
                str(inst.buy_count - inst.sell_count),  # NTBY_CNTG_CSNU
                strength,  # CTTR
                str(inst.sell_qty),  # SELN_CNTG_SMTN
                str(inst.buy_qty),  # SHNU_CNTG_SMTN
                inst.last_side,  # CCLD_DVSN
                f"{inst.buy_qty * 100 / max(1, inst.cum_vol):.2f}",  # SHNU_RATE
                "0.00",  # PRDY_VOL_VRSS_ACML_VOL_RATE
                inst.open_hms,  # OPRC_HOUR
                compare_sign(inst.last, inst.open),  # OPRC_VRSS_PRPR_SIGN
                str(inst.last - inst.open),  # OPRC_VRSS_PRPR
                inst.high_hms,  # HGPR_HOUR
                compare_sign(inst.last, inst.high),  # HGPR_VRSS_PRPR_SIGN
                str(inst.last - inst.high),  # HGPR_VRSS_PRPR
                inst.low_hms,  # LWPR_HOUR
                compare_sign(inst.last, inst.low),  # LWPR_VRSS_PRPR_SIGN
                str(inst.last - inst.low),  # LWPR_VRSS_PRPR
                kdate,  # BSOP_DATE
                "20",  # NEW_MKOP_CLS_CODE
                "N",  # TRHT_YN
                str(ask_q[0]),  # ASKP_RSQN1
                str(bid_q[0]),  # BIDP_RSQN1
                str(sum_ask),  # TOTAL_ASKP_RSQN
                str(sum_bid),  # TOTAL_BIDP_RSQN
                "0.01",  # VOL_TNRT
                str(inst.cum_vol),  # PRDY_SMNS_HOUR_ACML_VOL
                "100.00",  # PRDY_SMNS_HOUR_ACML_VOL_RATE
                "0",  # HOUR_CLS_CODE
                "",  # MRKT_TRTM_CLS_CODE
                str(inst.prev_close),  # VI_STND_PRC
            )
        return (
            inst.key,  # RSYM
            inst.symbol,  # SYMB
            str(self.sim.us_decimals),  # ZDIV
            ndate,  # TYMD
            ndate,  # XYMD
            nhms,  # XHMS
            kdate,  # KYMD
            hms,  # KHMS
            self._usd(inst.open),  # OPEN
            self._usd(inst.high),  # HIGH
            self._usd(inst.low),  # LOW
            self._usd(inst.last),  # LAST
            self.sim.direction_code(inst),  # SIGN
            self._usd(abs(diff)),  # DIFF
            rate,  # RATE
            self._usd(bids[0]),  # PBID
            self._usd(asks[0]),  # PASK
            str(bid_q[0]),  # VBID
            str(ask_q[0]),  # VASK
            str(inst.last_vol),  # EVOL
            str(inst.cum_vol),  # TVOL
            str(inst.cum_value),  # TAMT
            str(inst.sell_qty),  # BIVL
            str(inst.buy_qty),  # ASVL
            strength,  # STRN
            "1",  # MTYP
        )

    def book_values(self, inst: Instrument, wall: float, layout: Layout) -> dict[str, str]:
        """Values of one order-book record by field name (the book moves one step too)."""
        kdate, hms, ndate, nhms = self._times(wall)
        self.sim.step(inst, hms)
        asks, ask_q, bids, bid_q = self.sim.book(inst)
        fmt = str if inst.market == "KR" else self._usd
        values: dict[str, str] = {}
        for names, nums, f in (
            (layout.role_list("ask_prices"), asks, fmt),
            (layout.role_list("bid_prices"), bids, fmt),
            (layout.role_list("ask_quantities"), ask_q, str),
            (layout.role_list("bid_quantities"), bid_q, str),
        ):
            for name, num in zip(names, nums, strict=False):
                values[name] = f(num)
        values[layout.role("key")] = inst.key
        values[layout.role("time")] = hms
        if inst.market == "KR":
            values.update(
                {
                    "HOUR_CLS_CODE": "0",
                    "TOTAL_ASKP_RSQN": str(sum(ask_q)),
                    "TOTAL_BIDP_RSQN": str(sum(bid_q)),
                    "ANTC_CNPR": str(inst.last),
                    "ANTC_CNTG_VRSS_SIGN": self.sim.direction_code(inst),
                    "ANTC_CNTG_PRDY_CTRT": f"{(inst.last - inst.prev_close) * 100 / inst.prev_close:.2f}",
                    "ANTC_CNTG_VRSS": str(inst.last - inst.prev_close),
                    "ACML_VOL": str(inst.cum_vol),
                    "STCK_DEAL_CLS_CODE": "0",
                }
            )
        else:
            values.update(
                {
                    "SYMB": inst.symbol,
                    "ZDIV": str(self.sim.us_decimals),
                    "XYMD": ndate,
                    "XHMS": nhms,
                    "KYMD": kdate,
                    "BVOL": str(sum(bid_q)),
                    "AVOL": str(sum(ask_q)),
                }
            )
        return values

    def record(self, tr_id: str, key: str, wall: float) -> list[str]:
        """One record of a TR for a key, fields in the spec layout's order."""
        layout = self.profile.spec.layout(tr_id)
        inst = self.sim.instrument(key)
        if layout.kind == "tick":
            pick = self._tick_plans.get((tr_id, inst.market))
            if pick is None:
                pick = self._tick_plan(tr_id, inst.market, layout)
            return list(pick(self._tick(inst, wall)))
        values = self.book_values(inst, wall, layout)
        plan = self._plans.get(tr_id)
        if plan is None:
            plan = self._plans[tr_id] = [(f.name, _NEUTRAL[f.type]) for f in layout.fields]
        get = values.get
        return [get(name, neutral) for name, neutral in plan]

    def _tick_plan(
        self, tr_id: str, market: str, layout: Layout
    ) -> Callable[[tuple[str, ...]], tuple[str, ...]]:
        """Reorders a _tick tuple into the layout (neutral values appended for unknown fields)."""
        names = _KR_TICK if market == "KR" else _US_TICK
        where = {name: i for i, name in enumerate(names)}
        extra: list[str] = []
        index: list[int] = []
        for f in layout.fields:
            if f.name in where:
                index.append(where[f.name])
            else:
                index.append(len(names) + len(extra))
                extra.append(_NEUTRAL[f.type])
        neutral = tuple(extra)
        getter = operator.itemgetter(*index)

        def pick(values: tuple[str, ...]) -> tuple[str, ...]:
            got = getter(values + neutral) if neutral else getter(values)
            return got if isinstance(got, tuple) else (got,)

        self._tick_plans[(tr_id, market)] = pick
        return pick

    def frame(self, tr_id: str, key: str, n_records: int, wall: float) -> str:
        """A plain data frame ``0|TR|NNN|f^f^...`` holding ``n_records`` records of one key."""
        p = self.profile
        fields: list[str] = []
        for _ in range(n_records):
            fields.extend(self.record(tr_id, key, wall))
        return (
            f"{p.plain_flag}{p.part_separator}{tr_id}{p.part_separator}"
            f"{n_records:0{p.count_digits}d}{p.part_separator}{p.field_separator.join(fields)}"
        )

    def records_in_frame(self, rng: random.Random, max_records: int, probability: float) -> int:
        """How many records the next frame carries (multi-record frames are real, kis.md §2.4)."""
        if max_records > 1 and rng.random() < probability:
            return rng.randint(2, max_records)
        return 1

    def quote(self, market: str, key: str, wall: float) -> dict[str, str]:
        """REST quote output (inquire-price / overseas price) for a key, lower-case KIS names."""
        inst = self.sim.instrument(key)
        diff = inst.last - inst.prev_close
        rate = f"{diff * 100 / inst.prev_close:.2f}"
        price_field = str(self.profile.quotes[market]["price_field"])
        if market == "KR":
            assert inst.upper is not None and inst.lower is not None
            out = {
                "stck_prpr": str(inst.last),
                "prdy_vrss": str(diff),
                "prdy_vrss_sign": self.sim.direction_code(inst),
                "prdy_ctrt": rate,
                "stck_oprc": str(inst.open),
                "stck_hgpr": str(inst.high),
                "stck_lwpr": str(inst.low),
                "stck_mxpr": str(inst.upper),
                "stck_llam": str(inst.lower),
                "stck_sdpr": str(inst.prev_close),
                "acml_vol": str(inst.cum_vol),
                "acml_tr_pbmn": str(inst.cum_value),
                "aspr_unit": str(self.sim.tick_size(inst.last)),
            }
            out[price_field] = str(inst.last)
            return out
        out = {
            "rsym": inst.key,
            "zdiv": str(self.sim.us_decimals),
            "base": self._usd(inst.prev_close),
            "pvol": "0",
            "last": self._usd(inst.last),
            "sign": self.sim.direction_code(inst),
            "diff": self._usd(abs(diff)),
            "rate": rate,
            "tvol": str(inst.cum_vol),
            "tamt": str(inst.cum_value),
            "ordy": "Y",
        }
        out[price_field] = self._usd(inst.last)
        return out


class ReplaySource:
    """Recorded data frames by (tr_id, key), served in order (and again from the start if looped).

    Accepts JSONL whose lines are objects with the raw frame under ``text`` (a mock trace: only
    outbound ``text`` records whose frame is data are used) or ``frame``. Content is replayed at the
    configured rate; the key of a frame is field 0 of its first record.
    """

    def __init__(self, frames: Mapping[tuple[str, str], Sequence[str]], loop: bool = True) -> None:
        self._frames = {k: list(v) for k, v in frames.items()}
        self._cursor: dict[tuple[str, str], int] = {}
        self.loop = loop

    @classmethod
    def from_jsonl(cls, path: str | Path, profile: Profile, loop: bool = True) -> ReplaySource:
        """Load a JSONL recording; ReplayError if unreadable or without data frames."""
        frames: dict[tuple[str, str], list[str]] = {}
        sep = profile.part_separator
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ReplayError(f"cannot read replay file {path}: {exc}") from None
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                raise ReplayError(f"{path}:{n}: not a JSON line") from None
            if not isinstance(obj, dict) or obj.get("dir", "out") != "out":
                continue
            text = obj.get("text", obj.get("frame"))
            if not isinstance(text, str) or not text[:1].isdigit():
                continue
            parts = text.split(sep, 3)
            if len(parts) != 4:
                continue
            key = parts[3].split(profile.field_separator, 1)[0]
            frames.setdefault((parts[1], key), []).append(text)
        if not frames:
            raise ReplayError(f"{path}: no data frames found")
        return cls(frames, loop)

    def has(self, tr_id: str, key: str) -> bool:
        """Whether the recording holds frames for this registration."""
        return (tr_id, key) in self._frames

    def next_frame(self, tr_id: str, key: str) -> str | None:
        """The next recorded frame for a registration, or None when exhausted."""
        frames = self._frames.get((tr_id, key))
        if not frames:
            return None
        i = self._cursor.get((tr_id, key), 0)
        if i >= len(frames):
            if not self.loop:
                return None
            i = 0
        self._cursor[(tr_id, key)] = i + 1
        return frames[i]
