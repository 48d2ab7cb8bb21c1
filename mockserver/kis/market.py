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
from stockmon.spec import Layout, LayoutField

_NEUTRAL = {"int": "0", "decimal": "0.00", "str": ""}

# The trade record's fields KisMarket computes, each with its %-format ("usd": a US price, with
# the spec's decimals), in two groups: the price group depends only on the price state (last,
# open, high, low and their times, the date), the trade group changes with every trade. A record is
# laid out by the spec from these (fields the spec adds get a neutral value) with a template
# compiled once per layout: the price group is formatted once per price state and cached, the
# trade group once per record. No str() per field: the frame is the mock's hot path.
_KR_PRICE = (
    ("MKSC_SHRN_ISCD", "%s"),
    ("STCK_PRPR", "%d"),
    ("PRDY_VRSS_SIGN", "%s"),
    ("PRDY_VRSS", "%d"),
    ("PRDY_CTRT", "%.2f"),
    ("STCK_OPRC", "%d"),
    ("STCK_HGPR", "%d"),
    ("STCK_LWPR", "%d"),
    ("ASKP1", "%d"),
    ("BIDP1", "%d"),
    ("OPRC_HOUR", "%s"),
    ("OPRC_VRSS_PRPR_SIGN", "%s"),
    ("OPRC_VRSS_PRPR", "%d"),
    ("HGPR_HOUR", "%s"),
    ("HGPR_VRSS_PRPR_SIGN", "%s"),
    ("HGPR_VRSS_PRPR", "%d"),
    ("LWPR_HOUR", "%s"),
    ("LWPR_VRSS_PRPR_SIGN", "%s"),
    ("LWPR_VRSS_PRPR", "%d"),
    ("BSOP_DATE", "%s"),
    ("VI_STND_PRC", "%d"),
)
_KR_TRADE = (
    ("STCK_CNTG_HOUR", "%s"),
    ("WGHN_AVRG_STCK_PRC", "%.2f"),
    ("CNTG_VOL", "%d"),
    ("ACML_VOL", "%d"),
    ("ACML_TR_PBMN", "%d"),
    ("SELN_CNTG_CSNU", "%d"),
    ("SHNU_CNTG_CSNU", "%d"),
    ("NTBY_CNTG_CSNU", "%d"),
    ("CTTR", "%.2f"),
    ("SELN_CNTG_SMTN", "%d"),
    ("SHNU_CNTG_SMTN", "%d"),
    ("CCLD_DVSN", "%s"),
    ("SHNU_RATE", "%.2f"),
    ("ASKP_RSQN1", "%d"),
    ("BIDP_RSQN1", "%d"),
    ("TOTAL_ASKP_RSQN", "%d"),
    ("TOTAL_BIDP_RSQN", "%d"),
    ("PRDY_SMNS_HOUR_ACML_VOL", "%d"),
)
# Trade-record fields whose value never changes (written into the template as text).
_KR_FIXED = {
    "PRDY_VOL_VRSS_ACML_VOL_RATE": "0.00",
    "NEW_MKOP_CLS_CODE": "20",
    "TRHT_YN": "N",
    "VOL_TNRT": "0.01",
    "PRDY_SMNS_HOUR_ACML_VOL_RATE": "100.00",
    "HOUR_CLS_CODE": "0",
    "MRKT_TRTM_CLS_CODE": "",
}
_US_PRICE = (
    ("RSYM", "%s"),
    ("SYMB", "%s"),
    ("TYMD", "%s"),
    ("XYMD", "%s"),
    ("KYMD", "%s"),
    ("OPEN", "usd"),
    ("HIGH", "usd"),
    ("LOW", "usd"),
    ("LAST", "usd"),
    ("SIGN", "%s"),
    ("DIFF", "usd"),
    ("RATE", "%.2f"),
    ("PBID", "usd"),
    ("PASK", "usd"),
)
_US_TRADE = (
    ("XHMS", "%s"),
    ("KHMS", "%s"),
    ("VBID", "%d"),
    ("VASK", "%d"),
    ("EVOL", "%d"),
    ("TVOL", "%d"),
    ("TAMT", "%d"),
    ("BIVL", "%d"),
    ("ASVL", "%d"),
    ("STRN", "%.2f"),
)
_US_FIXED = {"MTYP": "1"}  # and ZDIV, the simulator's decimals (KisMarket._formats)
# Price-group texts cached per instrument and layout (a price walk revisits a few levels).
_PRICE_CACHE_MAX = 512

Slots = tuple[tuple[str, str], ...]
RecordText = Callable[[Instrument, float], str]


class KisMarket:
    """Builds KIS data records and quote outputs from the shared simulator."""

    def __init__(self, profile: Profile, sim: MarketSimulator) -> None:
        self.profile = profile
        self.sim = sim
        self._time_sec = -1
        self._time_cache = ("", "", "", "")
        self._plans: dict[str, list[tuple[str, str]]] = {}
        self._text_plans: dict[tuple[str, str], RecordText] = {}
        self._heads: dict[tuple[str, int], str] = {}

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

    def _formats(self, market: str) -> tuple[Slots, Slots, dict[str, str]]:
        """The trade record's price group and trade group with their %-formats, and its fixed
        fields (US prices formatted with the simulator's decimals)."""
        if market == "KR":
            return _KR_PRICE, _KR_TRADE, _KR_FIXED
        usd = f"%.{self.sim.us_decimals}f"
        price = tuple((name, usd if fmt == "usd" else fmt) for name, fmt in _US_PRICE)
        return price, _US_TRADE, {**_US_FIXED, "ZDIV": str(self.sim.us_decimals)}

    def tick_values(self, inst: Instrument, wall: float) -> dict[str, str]:
        """Values of one trade record by field name (after one step)."""
        price, trade, fixed = self._formats(inst.market)
        kdate, hms, ndate, nhms = self._times(wall)
        trade_values = self._trade(inst, hms, nhms)
        values = zip(price + trade, self._price(inst, kdate, ndate) + trade_values, strict=True)
        return {**{name: fmt % v for (name, fmt), v in values}, **fixed}

    def _trade(self, inst: Instrument, hms: str, nhms: str) -> tuple[object, ...]:
        """One trade of the instrument (a step), then the raw values of the record's trade group,
        in the order of _KR_TRADE or _US_TRADE."""
        sim = self.sim
        sim.step(inst, hms)
        rng = inst.rng
        ask_q1, bid_q1 = sim.qty(rng), sim.qty(rng)
        # Book totals drift slowly instead of summing ten levels on every trade.
        ask_total, bid_total = inst.book_ask_total, inst.book_bid_total
        ask_total = (ask_q1 * 10 if ask_total < 0 else ask_total) + int((rng.random() - 0.5) * 200)
        bid_total = (bid_q1 * 10 if bid_total < 0 else bid_total) + int((rng.random() - 0.5) * 200)
        inst.book_ask_total = sum_ask = max(ask_q1, ask_total)
        inst.book_bid_total = sum_bid = max(bid_q1, bid_total)
        buy_qty, sell_qty, cum_vol = inst.buy_qty, inst.sell_qty, inst.cum_vol
        strength = buy_qty * 100 / max(1, sell_qty)
        if inst.market == "KR":
            return (
                hms,  # STCK_CNTG_HOUR
                inst.cum_value / max(1, cum_vol),  # WGHN_AVRG_STCK_PRC
                inst.last_vol,  # CNTG_VOL
                cum_vol,  # ACML_VOL
                inst.cum_value,  # ACML_TR_PBMN
                inst.sell_count,  # SELN_CNTG_CSNU
                inst.buy_count,  # SHNU_CNTG_CSNU
                inst.buy_count - inst.sell_count,  # NTBY_CNTG_CSNU
                strength,  # CTTR
                sell_qty,  # SELN_CNTG_SMTN
                buy_qty,  # SHNU_CNTG_SMTN
                inst.last_side,  # CCLD_DVSN
                buy_qty * 100 / max(1, cum_vol),  # SHNU_RATE
                ask_q1,  # ASKP_RSQN1
                bid_q1,  # BIDP_RSQN1
                sum_ask,  # TOTAL_ASKP_RSQN
                sum_bid,  # TOTAL_BIDP_RSQN
                cum_vol,  # PRDY_SMNS_HOUR_ACML_VOL
            )
        return (
            nhms,  # XHMS
            hms,  # KHMS
            bid_q1,  # VBID
            ask_q1,  # VASK
            inst.last_vol,  # EVOL
            cum_vol,  # TVOL
            inst.cum_value,  # TAMT
            sell_qty,  # BIVL
            buy_qty,  # ASVL
            strength,  # STRN
        )

    def _price(self, inst: Instrument, kdate: str, ndate: str) -> tuple[object, ...]:
        """Raw values of the record's price group, in the order of _KR_PRICE or _US_PRICE; they
        depend only on the price state (:func:`_price_state`) and the last price."""
        sim = self.sim
        ask1, bid1 = sim.level1(inst)
        last, prev = inst.last, inst.prev_close
        diff = last - prev
        if inst.market == "KR":
            open_, high, low = inst.open, inst.high, inst.low
            return (
                inst.key,  # MKSC_SHRN_ISCD
                last,  # STCK_PRPR
                sim.direction_code(inst),  # PRDY_VRSS_SIGN
                diff,  # PRDY_VRSS
                diff * 100 / prev,  # PRDY_CTRT
                open_,  # STCK_OPRC
                high,  # STCK_HGPR
                low,  # STCK_LWPR
                ask1,  # ASKP1
                bid1,  # BIDP1
                inst.open_hms,  # OPRC_HOUR
                compare_sign(last, open_),  # OPRC_VRSS_PRPR_SIGN
                last - open_,  # OPRC_VRSS_PRPR
                inst.high_hms,  # HGPR_HOUR
                compare_sign(last, high),  # HGPR_VRSS_PRPR_SIGN
                last - high,  # HGPR_VRSS_PRPR
                inst.low_hms,  # LWPR_HOUR
                compare_sign(last, low),  # LWPR_VRSS_PRPR_SIGN
                last - low,  # LWPR_VRSS_PRPR
                kdate,  # BSOP_DATE
                prev,  # VI_STND_PRC
            )
        return (
            inst.key,  # RSYM
            inst.symbol,  # SYMB
            ndate,  # TYMD
            ndate,  # XYMD
            kdate,  # KYMD
            inst.open / 100,  # OPEN
            inst.high / 100,  # HIGH
            inst.low / 100,  # LOW
            last / 100,  # LAST
            sim.direction_code(inst),  # SIGN
            abs(diff) / 100,  # DIFF
            diff * 100 / prev,  # RATE
            bid1 / 100,  # PBID
            ask1 / 100,  # PASK
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
            # No computed value holds the field separator (keys match a market pattern).
            return self.record_text(tr_id, key, wall).split(self.profile.field_separator)
        values = self.book_values(inst, wall, layout)
        plan = self._plans.get(tr_id)
        if plan is None:
            plan = self._plans[tr_id] = [(f.name, _NEUTRAL[f.type]) for f in layout.fields]
        get = values.get
        return [get(name, neutral) for name, neutral in plan]

    def record_text(self, tr_id: str, key: str, wall: float) -> str:
        """One record of a TR for a key as frame text (fields joined in the layout's order)."""
        inst = self.sim.instrument(key)
        plan = self._text_plans.get((tr_id, inst.market))
        if plan is None:
            plan = self._text_plan(tr_id, inst.market)
        return plan(inst, wall)

    def _text_plan(self, tr_id: str, market: str) -> RecordText:
        """How a TR's record text is made for a market: a trade record fills a template compiled
        from the layout (fixed and neutral fields written in); a book record joins its fields."""
        layout = self.profile.spec.layout(tr_id)
        sep = self.profile.field_separator
        plan: RecordText
        if layout.kind != "tick":

            def plan(inst: Instrument, wall: float) -> str:
                return sep.join(self.record(tr_id, inst.key, wall))

        else:
            plan = self._tick_plan(layout.fields, market)
        self._text_plans[(tr_id, market)] = plan
        return plan

    def _tick_plan(self, fields: Sequence[LayoutField], market: str) -> RecordText:
        """A trade record's text in two %-formats of one template: the first writes the price
        group (``%%`` keeps the trade group's formats and the fixed texts for the second), cached
        per price state and last price; the second writes the trade group."""
        sep = self.profile.field_separator
        price, trade, fixed = self._formats(market)
        price_at = {name: i for i, (name, _) in enumerate(price)}
        trade_at = {name: i for i, (name, _) in enumerate(trade)}
        parts: list[str] = []
        price_index: list[int] = []
        trade_index: list[int] = []
        for f in fields:
            if f.name in price_at:
                price_index.append(price_at[f.name])
                parts.append(price[price_at[f.name]][1])
            elif f.name in trade_at:
                trade_index.append(trade_at[f.name])
                parts.append(trade[trade_at[f.name]][1].replace("%", "%%"))
            else:
                parts.append(fixed.get(f.name, _NEUTRAL[f.type]).replace("%", "%%%%"))
        template = sep.join(parts)
        pick_price, pick_trade = _picker(price_index, len(price)), _picker(trade_index, len(trade))
        trade_whole = pick_trade is _same
        times, trade_values, price_values = self._times, self._trade, self._price
        # By instrument key: (price state, {last price: the template with the price group}).
        cache: dict[str, tuple[tuple[object, ...], dict[int, str]]] = {}

        def plan(inst: Instrument, wall: float) -> str:
            kdate, hms, ndate, nhms = times(wall)
            values = trade_values(inst, hms, nhms)
            state = (inst.high, inst.low, inst.high_hms, inst.low_hms, kdate, ndate)
            entry = cache.get(inst.key)
            if entry is None or entry[0] != state:
                entry = cache[inst.key] = (state, {})
            by_last = entry[1]
            filled = by_last.get(inst.last)
            if filled is None:
                if len(by_last) >= _PRICE_CACHE_MAX:
                    by_last.clear()
                filled = by_last[inst.last] = template % pick_price(
                    price_values(inst, kdate, ndate)
                )
            return filled % (values if trade_whole else pick_trade(values))

        return plan

    def frame(self, tr_id: str, key: str, n_records: int, wall: float) -> str:
        """A plain data frame ``0|TR|NNN|f^f^...`` holding ``n_records`` records of one key."""
        head = self._heads.get((tr_id, n_records))
        if head is None:
            p = self.profile
            head = self._heads[(tr_id, n_records)] = (
                f"{p.plain_flag}{p.part_separator}{tr_id}{p.part_separator}"
                f"{n_records:0{p.count_digits}d}{p.part_separator}"
            )
        if n_records == 1:
            return head + self.record_text(tr_id, key, wall)
        records = [self.record_text(tr_id, key, wall) for _ in range(n_records)]
        return head + self.profile.field_separator.join(records)

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


def _picker(index: list[int], size: int) -> Callable[[tuple[object, ...]], tuple[object, ...]]:
    """The values at ``index``, in that order, as a tuple (itemgetter returns one value bare);
    ``size`` values in their own order are taken as they are, without a copy."""
    if index == list(range(size)):
        return _same
    if len(index) == 1:
        (only,) = index
        return lambda values: (values[only],)
    if not index:
        return lambda values: ()
    return operator.itemgetter(*index)


def _same(values: tuple[object, ...]) -> tuple[object, ...]:
    return values


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
