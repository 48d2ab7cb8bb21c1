"""Seeded market simulator: plausible KR and US prices, ticks and 10-level books as KIS frames.

Every instrument has its own ``random.Random`` seeded from (seed, key), so its path depends only on
the seed and on how many steps were taken: two simulators with one seed give the same values for
the same calls. Invariants kept (and property-tested): KR prices sit on KRX tick-size bands inside
the daily limits (spec.markets KR); high >= last >= low; cumulative volume never decreases; best ask
> best bid. Records are laid out by the spec's field layouts, so a field added to the spec is sent
(with a neutral value) without a code change. Wall time is an input, never read here.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from stockmon.mockserver.errors import ReplayError
from stockmon.mockserver.profile import Profile
from stockmon.spec import Layout


def _zone(name: str, fallback_hours: int) -> tzinfo:
    """The IANA zone, or a fixed offset where the zone database is missing (slim images)."""
    try:
        return ZoneInfo(name)
    except Exception:
        return timezone(timedelta(hours=fallback_hours))


# Sign codes of PRDY_VRSS_SIGN / SIGN (KIS enum, layout meaning text): upper-limit, up, flat,
# lower-limit, down.
SIGN_UPPER, SIGN_UP, SIGN_FLAT, SIGN_LOWER, SIGN_DOWN = "1", "2", "3", "4", "5"
# Non-normative shape of the simulated market.
_MOVES = (-2, -1, -1, 0, 0, 0, 1, 1, 2)
_MEAN_TRADE = 120.0
_US_DEFAULT_ZDIV = 4
_BOOK_LEVELS_QTY = (50, 5000)


@dataclass
class Instrument:
    """The simulated state of one tr_key (prices in KRW for KR, in cents for US)."""

    key: str
    market: str
    rng: random.Random
    prev_close: int
    open: int
    high: int
    low: int
    last: int
    upper: int | None
    lower: int | None
    cum_vol: int = 0
    cum_value: int = 0
    sell_count: int = 0
    buy_count: int = 0
    sell_qty: int = 0
    buy_qty: int = 0
    last_vol: int = 0
    last_side: str = "1"
    open_hms: str = ""
    high_hms: str = ""
    low_hms: str = ""
    steps: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def symbol(self) -> str:
        """Exchange symbol (KR: the code itself; US: the key without D/R + exchange)."""
        return self.key if self.market == "KR" else self.key[4:]


class MarketSimulator:
    """Deterministic market: ``frame(tr_id, key, n, wall)`` advances the instrument n trades."""

    def __init__(self, profile: Profile, seed: int, symbols: Iterable[str] = ()) -> None:
        self.profile = profile
        self.seed = seed
        spec = profile.spec
        kr = spec.markets["KR"]
        self._tick_bands: list[tuple[float, int]] = [
            (math.inf if upper is None else float(upper), int(size))
            for upper, size in kr["tick_sizes"]
        ]
        self._limit_ratio = float(kr["daily_limit_ratio"])
        us = spec.markets["US"]
        self._us_decimals = int(us.get("price_decimals", _US_DEFAULT_ZDIV))
        self._kst = _zone(str(kr["timezone"]), 9)
        self._ny = _zone(str(us["timezone"]), -5)
        self._instruments: dict[str, Instrument] = {}
        self._time_sec = -1
        self._plans: dict[str, list[tuple[str, str]]] = {}
        self._time_cache = ("", "", "", "")
        for key in symbols:
            if profile.market_of_key(key) is not None:
                self.instrument(key)

    # --- KRX price grid -------------------------------------------------------------------
    def tick_size(self, price: int) -> int:
        """KRX tick size of the band holding ``price``."""
        for upper, size in self._tick_bands:
            if price < upper:
                return size
        return self._tick_bands[-1][1]

    def on_grid(self, price: int) -> bool:
        """Whether a KR price is a valid quote (multiple of its band's tick)."""
        return price > 0 and price % self.tick_size(price) == 0

    def up(self, price: int) -> int:
        """Next valid KR price above."""
        return price + self.tick_size(price)

    def down(self, price: int) -> int:
        """Next valid KR price below."""
        return price - self.tick_size(price - 1)

    def floor_grid(self, x: float) -> int:
        """Largest valid KR price <= x."""
        p = math.floor(x)
        return p - p % self.tick_size(p)

    def ceil_grid(self, x: float) -> int:
        """Smallest valid KR price >= x."""
        p = self.floor_grid(x)
        return p if p >= x else self.up(p)

    # --- instruments ----------------------------------------------------------------------
    def instrument(self, key: str) -> Instrument:
        """The instrument of a key, created on first use (any key matching a market pattern)."""
        inst = self._instruments.get(key)
        if inst is None:
            market = self.profile.market_of_key(key)
            if market is None:
                raise ValueError(f"{key!r} matches no market key pattern")
            rng = random.Random(f"{self.seed}:{key}")
            upper: int | None
            lower: int | None
            if market == "KR":
                prev = self.floor_grid(math.exp(rng.uniform(math.log(1500), math.log(700000))))
                upper = self.floor_grid(prev * (1 + self._limit_ratio))
                lower = self.ceil_grid(prev * (1 - self._limit_ratio))
                opening = prev
                for _ in range(rng.randint(0, 6)):
                    opening = self.up(opening) if rng.random() < 0.5 else self.down(opening)
                opening = min(max(opening, lower), upper)
            else:
                prev = int(math.exp(rng.uniform(math.log(800), math.log(60000))))  # cents
                upper = lower = None
                opening = max(1, prev + rng.randint(-prev // 50, prev // 50))
            inst = Instrument(
                key, market, rng, prev, opening, opening, opening, opening, upper, lower
            )
            self._instruments[key] = inst
        return inst

    def step(self, inst: Instrument, hms: str) -> None:
        """One trade: move the price, add volume, keep every invariant."""
        rng = inst.rng
        move = _MOVES[int(rng.random() * len(_MOVES))]
        price = inst.last
        if inst.market == "KR":
            assert inst.upper is not None and inst.lower is not None
            for _ in range(abs(move)):
                price = self.up(price) if move > 0 else self.down(price)
            price = min(max(price, inst.lower), inst.upper)
        else:
            price = max(1, price + move * max(1, price // 4000))
        vol = int(rng.expovariate(1.0 / _MEAN_TRADE)) + 1
        buy = rng.random() < 0.5
        inst.last = price
        inst.last_vol = vol
        inst.last_side = "1" if buy else "5"
        inst.cum_vol += vol
        inst.cum_value += vol * (price if inst.market == "KR" else price // 100)
        if buy:
            inst.buy_count += 1
            inst.buy_qty += vol
        else:
            inst.sell_count += 1
            inst.sell_qty += vol
        if not inst.open_hms:
            inst.open_hms = inst.high_hms = inst.low_hms = hms
        if price > inst.high:
            inst.high, inst.high_hms = price, hms
        if price < inst.low:
            inst.low, inst.low_hms = price, hms
        inst.steps += 1

    def level1(self, inst: Instrument) -> tuple[int, int]:
        """Best ask and best bid around the last price (best ask > best bid, inside the limits)."""
        last = inst.last
        if inst.market == "KR":
            assert inst.upper is not None
            ask1 = self.up(last)
            if ask1 > inst.upper:
                return inst.upper, self.down(inst.upper)
            return ask1, last
        tick = max(1, last // 4000)
        return last + tick, last

    def _qty(self, rng: random.Random) -> int:
        lo, hi = _BOOK_LEVELS_QTY
        return lo + int(rng.random() * (hi - lo))

    def book(self, inst: Instrument) -> tuple[list[int], list[int], list[int], list[int]]:
        """Ten ask and bid levels (prices, quantities), best first; 0 beyond the daily limits."""
        rng = inst.rng
        last = inst.last
        if inst.market == "KR":
            assert inst.upper is not None and inst.lower is not None
            ask1 = self.up(last)
            bid1 = last
            if ask1 > inst.upper:
                ask1, bid1 = inst.upper, self.down(inst.upper)
            asks, bids = [ask1], [bid1]
            for _ in range(9):
                asks.append(self.up(asks[-1]))
                bids.append(self.down(bids[-1]))
            asks = [p if p <= inst.upper else 0 for p in asks]
            bids = [p if p >= inst.lower else 0 for p in bids]
        else:
            tick = max(1, last // 4000)
            bid1 = max(1, last - tick * rng.randint(0, 1))
            asks = [bid1 + tick * (i + 1) for i in range(10)]
            bids = [bid1 - tick * i for i in range(10)]
            bids = [p if p > 0 else 0 for p in bids]
        qty = self._qty
        ask_q = [qty(rng) if p else 0 for p in asks]
        bid_q = [qty(rng) if p else 0 for p in bids]
        return asks, ask_q, bids, bid_q

    # --- records --------------------------------------------------------------------------
    def _times(self, wall: float) -> tuple[str, str, str, str]:
        """(KST date, KST HHMMSS, NY date, NY HHMMSS), cached per wall second."""
        sec = int(wall)
        if sec != self._time_sec:
            utc = datetime.fromtimestamp(sec, UTC)
            kst, ny = utc.astimezone(self._kst), utc.astimezone(self._ny)
            self._time_cache = (
                kst.strftime("%Y%m%d"),
                kst.strftime("%H%M%S"),
                ny.strftime("%Y%m%d"),
                ny.strftime("%H%M%S"),
            )
            self._time_sec = sec
        return self._time_cache

    def _usd(self, cents: int) -> str:
        return f"{cents / 100:.{self._us_decimals}f}"

    def _sign(self, inst: Instrument) -> str:
        if inst.upper is not None and inst.last >= inst.upper:
            return SIGN_UPPER
        if inst.lower is not None and inst.last <= inst.lower:
            return SIGN_LOWER
        if inst.last > inst.prev_close:
            return SIGN_UP
        return SIGN_DOWN if inst.last < inst.prev_close else SIGN_FLAT

    def tick_values(self, inst: Instrument, wall: float) -> dict[str, str]:
        """Values of one trade record by field name (after one step)."""
        kdate, hms, ndate, nhms = self._times(wall)
        self.step(inst, hms)
        ask1, bid1 = self.level1(inst)
        rng = inst.rng
        ask_q1, bid_q1 = self._qty(rng), self._qty(rng)
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
            return {
                "MKSC_SHRN_ISCD": inst.key,
                "STCK_CNTG_HOUR": hms,
                "STCK_PRPR": str(inst.last),
                "PRDY_VRSS_SIGN": self._sign(inst),
                "PRDY_VRSS": str(diff),
                "PRDY_CTRT": rate,
                "WGHN_AVRG_STCK_PRC": f"{avg:.2f}",
                "STCK_OPRC": str(inst.open),
                "STCK_HGPR": str(inst.high),
                "STCK_LWPR": str(inst.low),
                "ASKP1": str(asks[0]),
                "BIDP1": str(bids[0]),
                "CNTG_VOL": str(inst.last_vol),
                "ACML_VOL": str(inst.cum_vol),
                "ACML_TR_PBMN": str(inst.cum_value),
                "SELN_CNTG_CSNU": str(inst.sell_count),
                "SHNU_CNTG_CSNU": str(inst.buy_count),
                "NTBY_CNTG_CSNU": str(inst.buy_count - inst.sell_count),
                "CTTR": strength,
                "SELN_CNTG_SMTN": str(inst.sell_qty),
                "SHNU_CNTG_SMTN": str(inst.buy_qty),
                "CCLD_DVSN": inst.last_side,
                "SHNU_RATE": f"{inst.buy_qty * 100 / max(1, inst.cum_vol):.2f}",
                "PRDY_VOL_VRSS_ACML_VOL_RATE": "0.00",
                "OPRC_HOUR": inst.open_hms,
                "OPRC_VRSS_PRPR_SIGN": _cmp_sign(inst.last, inst.open),
                "OPRC_VRSS_PRPR": str(inst.last - inst.open),
                "HGPR_HOUR": inst.high_hms,
                "HGPR_VRSS_PRPR_SIGN": _cmp_sign(inst.last, inst.high),
                "HGPR_VRSS_PRPR": str(inst.last - inst.high),
                "LWPR_HOUR": inst.low_hms,
                "LWPR_VRSS_PRPR_SIGN": _cmp_sign(inst.last, inst.low),
                "LWPR_VRSS_PRPR": str(inst.last - inst.low),
                "BSOP_DATE": kdate,
                "NEW_MKOP_CLS_CODE": "20",
                "TRHT_YN": "N",
                "ASKP_RSQN1": str(ask_q[0]),
                "BIDP_RSQN1": str(bid_q[0]),
                "TOTAL_ASKP_RSQN": str(sum_ask),
                "TOTAL_BIDP_RSQN": str(sum_bid),
                "VOL_TNRT": "0.01",
                "PRDY_SMNS_HOUR_ACML_VOL": str(inst.cum_vol),
                "PRDY_SMNS_HOUR_ACML_VOL_RATE": "100.00",
                "HOUR_CLS_CODE": "0",
                "MRKT_TRTM_CLS_CODE": "",
                "VI_STND_PRC": str(inst.prev_close),
            }
        return {
            "RSYM": inst.key,
            "SYMB": inst.symbol,
            "ZDIV": str(self._us_decimals),
            "TYMD": ndate,
            "XYMD": ndate,
            "XHMS": nhms,
            "KYMD": kdate,
            "KHMS": hms,
            "OPEN": self._usd(inst.open),
            "HIGH": self._usd(inst.high),
            "LOW": self._usd(inst.low),
            "LAST": self._usd(inst.last),
            "SIGN": self._sign(inst),
            "DIFF": self._usd(abs(diff)),
            "RATE": rate,
            "PBID": self._usd(bids[0]),
            "PASK": self._usd(asks[0]),
            "VBID": str(bid_q[0]),
            "VASK": str(ask_q[0]),
            "EVOL": str(inst.last_vol),
            "TVOL": str(inst.cum_vol),
            "TAMT": str(inst.cum_value),
            "BIVL": str(inst.sell_qty),
            "ASVL": str(inst.buy_qty),
            "STRN": strength,
            "MTYP": "1",
        }

    def book_values(self, inst: Instrument, wall: float, layout: Layout) -> dict[str, str]:
        """Values of one order-book record by field name (the book moves one step too)."""
        kdate, hms, ndate, nhms = self._times(wall)
        self.step(inst, hms)
        asks, ask_q, bids, bid_q = self.book(inst)
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
                    "ANTC_CNTG_VRSS_SIGN": self._sign(inst),
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
                    "ZDIV": str(self._us_decimals),
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
        inst = self.instrument(key)
        if layout.kind == "tick":
            values = self.tick_values(inst, wall)
        else:
            values = self.book_values(inst, wall, layout)
        plan = self._plans.get(tr_id)
        if plan is None:
            plan = self._plans[tr_id] = [(f.name, _NEUTRAL[f.type]) for f in layout.fields]
        get = values.get
        return [get(name, neutral) for name, neutral in plan]

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
        inst = self.instrument(key)
        diff = inst.last - inst.prev_close
        rate = f"{diff * 100 / inst.prev_close:.2f}"
        price_field = str(self.profile.quotes[market]["price_field"])
        if market == "KR":
            assert inst.upper is not None and inst.lower is not None
            out = {
                "stck_prpr": str(inst.last),
                "prdy_vrss": str(diff),
                "prdy_vrss_sign": self._sign(inst),
                "prdy_ctrt": rate,
                "stck_oprc": str(inst.open),
                "stck_hgpr": str(inst.high),
                "stck_lwpr": str(inst.low),
                "stck_mxpr": str(inst.upper),
                "stck_llam": str(inst.lower),
                "stck_sdpr": str(inst.prev_close),
                "acml_vol": str(inst.cum_vol),
                "acml_tr_pbmn": str(inst.cum_value),
                "aspr_unit": str(self.tick_size(inst.last)),
            }
            out[price_field] = str(inst.last)
            return out
        out = {
            "rsym": inst.key,
            "zdiv": str(self._us_decimals),
            "base": self._usd(inst.prev_close),
            "pvol": "0",
            "last": self._usd(inst.last),
            "sign": self._sign(inst),
            "diff": self._usd(abs(diff)),
            "rate": rate,
            "tvol": str(inst.cum_vol),
            "tamt": str(inst.cum_value),
            "ordy": "Y",
        }
        out[price_field] = self._usd(inst.last)
        return out


_NEUTRAL = {"int": "0", "decimal": "0.00", "str": ""}


def _cmp_sign(a: int, b: int) -> str:
    return SIGN_UP if a > b else SIGN_DOWN if a < b else SIGN_FLAT


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
