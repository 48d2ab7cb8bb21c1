"""Seeded market simulator: plausible KR and US prices, trades and 10-level books, for any broker.

Every instrument has its own ``random.Random`` seeded from (seed, key), so its path depends only on
the seed and on how many steps were taken: two simulators with one seed give the same values for
the same calls. Invariants kept (and property-tested): KR prices sit on KRX tick-size bands inside
the daily limits (spec.markets KR); high >= last >= low; cumulative volume never decreases; best ask
> best bid. Each dialect's ``market`` module lays these numbers out in its own frames; a KIS and a
Kiwoom mock beside it share one simulator, so a KR code trades at the same prices on both.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from stockmon.spec import Spec


def _zone(name: str, fallback_hours: int) -> tzinfo:
    """The IANA zone, or a fixed offset where the zone database is missing (slim images)."""
    try:
        return ZoneInfo(name)
    except Exception:
        return timezone(timedelta(hours=fallback_hours))


# KRX direction codes against the previous close (KIS PRDY_VRSS_SIGN / SIGN and Kiwoom's
# 전일대비기호, layout meaning texts): upper-limit, up, flat, lower-limit, down.
SIGN_UPPER, SIGN_UP, SIGN_FLAT, SIGN_LOWER, SIGN_DOWN = "1", "2", "3", "4", "5"
# Non-normative shape of the simulated market.
_MOVES = (-2, -1, -1, 0, 0, 0, 1, 1, 2)
_MEAN_TRADE = 120.0
_TRADE_RATE = 1.0 / _MEAN_TRADE  # random.expovariate's lambda, inlined in step (same draws)
_US_DEFAULT_ZDIV = 4
_BOOK_LEVELS_QTY = (50, 5000)
_QTY_LOW, _QTY_SPAN = _BOOK_LEVELS_QTY[0], _BOOK_LEVELS_QTY[1] - _BOOK_LEVELS_QTY[0]


@dataclass(slots=True)
class Instrument:
    """The simulated state of one tr_key (prices in KRW for KR, in cents for US).

    Slotted: a data frame reads some forty of these fields, tens of thousands of times a second.
    """

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
    lot: int = 1
    # Book totals a dialect's trade records carry (drifting, not summed per trade); -1: none yet.
    book_ask_total: int = -1
    book_bid_total: int = -1

    @property
    def symbol(self) -> str:
        """Exchange symbol (KR: the code itself; US: the key without D/R + exchange)."""
        return self.key if self.market == "KR" else self.key[4:]


class MarketSimulator:
    """Deterministic market: ``step(instrument, hms)`` is one trade of that instrument."""

    def __init__(
        self, spec: Spec, seed: int, symbols: Iterable[str] = (), *, market_hours: bool = False
    ) -> None:
        self.spec = spec
        self.seed = seed
        self.market_hours = market_hours
        profile = spec.mock_profile or {}
        # Starting levels of well-known keys (mock_profile.instruments; absent before 1.2).
        self._known: dict[str, dict[str, Any]] = dict(profile.get("instruments") or {})
        self._sessions: dict[str, dict[str, str]] = dict(profile.get("sessions") or {})
        kr = spec.markets["KR"]
        self._tick_bands: list[tuple[float, int]] = [
            (math.inf if upper is None else float(upper), int(size))
            for upper, size in kr["tick_sizes"]
        ]
        # The bands' upper bounds and sizes apart, for a bisect per price (the hot path).
        self._band_uppers = [upper for upper, _ in self._tick_bands]
        self._band_sizes = [size for _, size in self._tick_bands]
        self._limit_ratio = float(kr["daily_limit_ratio"])
        us = spec.markets["US"]
        self.us_decimals = int(us.get("price_decimals", _US_DEFAULT_ZDIV))
        self.kst = _zone(str(kr["timezone"]), 9)
        self.ny = _zone(str(us["timezone"]), -5)
        self._instruments: dict[str, Instrument] = {}
        for key in symbols:
            if spec.market_of(key) is not None:
                self.instrument(key)

    def zone(self, market: str) -> tzinfo:
        """The exchange zone of a market."""
        return self.kst if market == "KR" else self.ny

    def is_open(self, market: str, wall: float) -> bool:
        """Whether ``market`` trades at real wall time ``wall`` (always, unless market hours)."""
        session = self._sessions.get(market)
        if not self.market_hours or session is None:
            return True
        local = datetime.fromtimestamp(wall, self.zone(market))
        hm = f"{local:%H:%M}"
        return local.weekday() < 5 and session["open"] <= hm < session["close"]

    def market_states(self, wall: float) -> dict[str, str]:
        """``open`` or ``closed`` per market (for /_mock/state)."""
        return {m: "open" if self.is_open(m, wall) else "closed" for m in self.spec.key_patterns}

    def lot(self, key: str) -> int:
        """The lot a key's trades come in (mock_profile.instruments, else 1)."""
        return max(1, int(self._known.get(key, {}).get("lot", 1)))

    # --- KRX price grid -------------------------------------------------------------------
    def tick_size(self, price: int) -> int:
        """KRX tick size of the band holding ``price`` (the first band whose upper bound exceeds it)."""
        sizes = self._band_sizes
        i = bisect_right(self._band_uppers, price)
        return sizes[i] if i < len(sizes) else sizes[-1]

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
            market = self.spec.market_of(key)
            if market is None:
                raise ValueError(f"{key!r} matches no market key pattern")
            rng = random.Random(f"{self.seed}:{key}")
            upper: int | None
            lower: int | None
            known = self._known.get(key)
            if market == "KR":
                level = (
                    float(known["price"])
                    if known
                    else math.exp(rng.uniform(math.log(1500), math.log(700000)))
                )
                prev = self.floor_grid(level)
                upper = self.floor_grid(prev * (1 + self._limit_ratio))
                lower = self.ceil_grid(prev * (1 - self._limit_ratio))
                opening = prev
                for _ in range(rng.randint(0, 6)):
                    opening = self.up(opening) if rng.random() < 0.5 else self.down(opening)
                opening = min(max(opening, lower), upper)
            else:
                level = (
                    float(known["price"]) * 100
                    if known
                    else math.exp(rng.uniform(math.log(800), math.log(60000)))
                )
                prev = int(level)  # cents
                upper = lower = None
                opening = max(1, prev + rng.randint(-prev // 50, prev // 50))
            inst = Instrument(
                key, market, rng, prev, opening, opening, opening, opening, upper, lower
            )
            inst.lot = self.lot(key)
            self._instruments[key] = inst
        return inst

    def step(self, inst: Instrument, hms: str) -> None:
        """One trade: move the price, add volume, keep every invariant."""
        rng = inst.rng
        random_ = rng.random
        move = _MOVES[int(random_() * len(_MOVES))]
        price = inst.last
        kr = inst.market == "KR"
        if kr:
            upper, lower = inst.upper, inst.lower
            assert upper is not None and lower is not None
            if move > 0:
                for _ in range(move):
                    price = self.up(price)
            elif move < 0:
                for _ in range(-move):
                    price = self.down(price)
            price = min(max(price, lower), upper)
        else:
            price = max(1, price + move * max(1, price // 4000))
        # random.expovariate(_TRADE_RATE), inlined: the same draw, without the call.
        vol = (int(-math.log(1.0 - random_()) / _TRADE_RATE) + 1) * inst.lot
        buy = random_() < 0.5
        inst.last = price
        inst.last_vol = vol
        inst.cum_vol += vol
        inst.cum_value += vol * (price if kr else price // 100)
        if buy:
            inst.last_side = "1"
            inst.buy_count += 1
            inst.buy_qty += vol
        else:
            inst.last_side = "5"
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

    def qty(self, rng: random.Random) -> int:
        """A plausible quantity at one book level."""
        return _QTY_LOW + int(rng.random() * _QTY_SPAN)

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
        qty = self.qty
        ask_q = [qty(rng) if p else 0 for p in asks]
        bid_q = [qty(rng) if p else 0 for p in bids]
        return asks, ask_q, bids, bid_q

    def direction_code(self, inst: Instrument) -> str:
        """The KRX direction code of the instrument now (limits first, then against prev close)."""
        if inst.upper is not None and inst.last >= inst.upper:
            return SIGN_UPPER
        if inst.lower is not None and inst.last <= inst.lower:
            return SIGN_LOWER
        if inst.last > inst.prev_close:
            return SIGN_UP
        return SIGN_DOWN if inst.last < inst.prev_close else SIGN_FLAT


def compare_sign(a: int, b: int) -> str:
    """The KRX direction code of ``a`` against ``b`` (up, down or flat)."""
    return SIGN_UP if a > b else SIGN_DOWN if a < b else SIGN_FLAT
