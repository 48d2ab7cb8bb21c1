"""Kiwoom REAL entries and the ka10001 quote, drawn from the shared market simulator.

Values are laid out by the spec's FID layouts (``spec.kiwoom_layouts``): the roles (time, price,
volume, cumulative volume, the ten ask/bid levels) place the simulator's numbers, and a FID the spec
adds later is sent with a neutral value, without a code change. Sign conventions
(protocol/kiwoom.md §2.3): a price carries its direction against the previous close (``+``, ``-``,
or a leading space when unchanged), FID 15's sign is the aggressor side, counts are unsigned.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from stockmon.mockserver.kiwoom.profile import KiwoomProfile
from stockmon.mockserver.simulator import Instrument, MarketSimulator
from stockmon.spec import KiwoomLayout

UP, DOWN, FLAT = "+", "-", " "
# 누적거래대금 is in million KRW (layout meaning of the cumulative-value FID).
_MILLION = 1_000_000
# Non-normative constants of the simulated session: regular session, KRX.
_REGULAR_SESSION = "2"
_KRX = "1"
_NEUTRAL = {"int": "0", "decimal": "0.00", "str": ""}


def _dir(value: int, reference: int) -> str:
    return UP if value > reference else DOWN if value < reference else FLAT


class KiwoomMarket:
    """Builds REAL entries (``{type, name, item, values}``) for registered items."""

    def __init__(self, profile: KiwoomProfile, sim: MarketSimulator) -> None:
        self.profile = profile
        self.sim = sim
        self._tz = timezone(timedelta(seconds=profile.utc_offset_s))
        self._sec = -1
        self._hms = ""

    def hms(self, wall: float) -> str:
        """KST ``HHMMSS`` of a spec wall time (cached per second)."""
        sec = int(wall)
        if sec != self._sec:
            self._sec = sec
            self._hms = datetime.fromtimestamp(sec, UTC).astimezone(self._tz).strftime("%H%M%S")
        return self._hms

    def serves(self, type_code: str, item: str) -> bool:
        """Whether a registration can produce data (a layout for the type, a KR code)."""
        return (
            type_code in self.profile.layouts
            and self.profile.spec.key_match(item, "KR") is not None
        )

    def signed(self, inst: Instrument, price: int) -> str:
        """A price with its direction sign against the previous close (0 stays ``0``)."""
        if price == 0:
            return "0"
        return f"{_dir(price, inst.prev_close)}{price}"

    def entry(self, type_code: str, item: str, wall: float) -> dict[str, Any]:
        """One REAL entry; the instrument trades one step (as a KIS record does)."""
        layout = self.profile.layouts[type_code]
        inst = self.sim.instrument(item)
        hms = self.hms(wall)
        self.sim.step(inst, hms)
        if layout.kind == "tick":
            values = self._tick(layout, inst, hms)
        else:
            values = self._book(layout, inst, hms)
        for f in layout.fields:
            values.setdefault(f.fid, _NEUTRAL[f.type])
        return {
            "type": type_code,
            "name": self.profile.type_names.get(type_code, type_code),
            "item": item,
            "values": values,
        }

    def _tick(self, layout: KiwoomLayout, inst: Instrument, hms: str) -> dict[str, str]:
        roles = layout.roles
        by_name = {f.name: f.fid for f in layout.fields}
        ask1, bid1 = self.sim.level1(inst)
        diff = inst.last - inst.prev_close
        sign = _dir(inst.last, inst.prev_close)
        values = {
            str(roles["time"]): hms,
            str(roles["price"]): self.signed(inst, inst.last),
            str(roles["volume"]): f"{UP if inst.last_side == '1' else DOWN}{inst.last_vol}",
            str(roles["cumulative_volume"]): str(inst.cum_vol),
        }
        named = {
            "PRED_PRE": f"{sign}{abs(diff)}",
            "FLU_RT": f"{sign}{abs(diff) * 100 / inst.prev_close:.2f}",
            "SEL_BID": self.signed(inst, ask1),
            "BUY_BID": self.signed(inst, bid1),
            "ACC_TRDE_PRICA": str(inst.cum_value // _MILLION),
            "OPEN_PRIC": self.signed(inst, inst.open),
            "HIGH_PRIC": self.signed(inst, inst.high),
            "LOW_PRIC": self.signed(inst, inst.low),
            "PRED_PRE_SIG": self.sim.direction_code(inst),
            "CNTG_STR": f"{inst.buy_qty * 100 / max(1, inst.sell_qty):.2f}",
            "MRKT_OPER_DIV": _REGULAR_SESSION,
            "STEX_TP": _KRX,
        }
        for name, value in named.items():
            fid = by_name.get(name)
            if fid is not None:
                values.setdefault(fid, value)
        return values

    def _book(self, layout: KiwoomLayout, inst: Instrument, hms: str) -> dict[str, str]:
        roles = layout.roles
        asks, ask_q, bids, bid_q = self.sim.book(inst)
        values: dict[str, str] = {str(roles["time"]): hms}
        for fids, nums, price in (
            (roles["ask_prices"], asks, True),
            (roles["bid_prices"], bids, True),
            (roles["ask_quantities"], ask_q, False),
            (roles["bid_quantities"], bid_q, False),
        ):
            for fid, num in zip(fids, nums, strict=False):
                values[str(fid)] = self.signed(inst, num) if price else str(num)
        by_name = {f.name: f.fid for f in layout.fields}
        named = {
            "TOT_SEL_REQ": str(sum(ask_q)),
            "TOT_BUY_REQ": str(sum(bid_q)),
            "ACC_TRDE_QTY": str(inst.cum_vol),
            "EXP_CNTR_PRIC": self.signed(inst, inst.last),
        }
        for name, value in named.items():
            fid = by_name.get(name)
            if fid is not None:
                values.setdefault(fid, value)
        return values

    def quote(self, item: str) -> dict[str, str]:
        """The ka10001 answer fields for a KR code (price field name from the spec)."""
        inst = self.sim.instrument(item)
        diff = inst.last - inst.prev_close
        sign = _dir(inst.last, inst.prev_close)
        out = {
            "pred_pre": f"{sign}{abs(diff)}",
            "flu_rt": f"{sign}{abs(diff) * 100 / inst.prev_close:.2f}",
            "trde_qty": str(inst.cum_vol),
            "open_pric": self.signed(inst, inst.open),
            "high_pric": self.signed(inst, inst.high),
            "low_pric": self.signed(inst, inst.low),
            "upl_pric": self.signed(inst, inst.upper or 0),
            "lst_pric": self.signed(inst, inst.lower or 0),
            "base_pric": str(inst.prev_close),
        }
        out[str(self.profile.quote["key_field"])] = item
        out[str(self.profile.quote["price_field"])] = self.signed(inst, inst.last)
        return out
