"""Plausible starting levels from the mock profile and market sessions (issue 12 point 7)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import httpx

from stockmon.mockserver import KisMock, MockConfig
from stockmon.mockserver.simulator import MarketSimulator
from stockmon.spec import load_spec

SPEC = load_spec("1.2")
TABLE = SPEC.mock_profile["instruments"]
SEOUL = ZoneInfo("Asia/Seoul")


def test_well_known_keys_start_at_their_table_level() -> None:
    """005930 starts near the table's price (KRW, on the tick grid); a US key near its USD."""
    for seed in (1, 2, 3):
        sim = MarketSimulator(SPEC, seed)
        kr = sim.instrument("005930")
        assert kr.prev_close == TABLE["005930"]["price"] and sim.on_grid(kr.open)
        assert abs(kr.open - kr.prev_close) <= 6 * sim.tick_size(kr.prev_close)
        us = sim.instrument("DNASAAPL")
        assert abs(us.open / 100 - TABLE["DNASAAPL"]["price"]) <= TABLE["DNASAAPL"]["price"] / 50


def test_trades_come_in_the_table_lot() -> None:
    """A key with a lot of 10 trades in multiples of 10."""
    lot = int(TABLE["069500"]["lot"])
    assert lot > 1
    sim = MarketSimulator(SPEC, 1)
    inst = sim.instrument("069500")
    for n in range(50):
        sim.step(inst, f"0900{n % 60:02d}")
        assert inst.last_vol % lot == 0 and sim.on_grid(inst.last)


def test_sessions_follow_krx_and_us_hours() -> None:
    """Under market hours KRX trades 10:00 Wednesday Seoul time, US does not; Saturday nothing."""
    hours = MarketSimulator(SPEC, 1, market_hours=True)
    wednesday_10 = datetime(2026, 12, 2, 10, 0, tzinfo=SEOUL).timestamp()
    assert hours.market_states(wednesday_10) == {"KR": "open", "US": "closed"}
    wednesday_late = datetime(2026, 12, 3, 0, 30, tzinfo=SEOUL).timestamp()  # 10:30 in New York
    assert hours.market_states(wednesday_late) == {"KR": "closed", "US": "open"}
    saturday = datetime(2026, 12, 5, 10, 0, tzinfo=SEOUL).timestamp()
    assert set(hours.market_states(saturday).values()) == {"closed"}
    always = MarketSimulator(SPEC, 1)
    assert set(always.market_states(saturday).values()) == {"open"}


async def test_mock_state_shows_the_market() -> None:
    """/_mock/state names each market's state; --market hours is a config choice."""
    async with KisMock(MockConfig(market="hours")) as mock, httpx.AsyncClient() as http:
        state = (await http.get(f"{mock.rest_url}/_mock/state")).json()
    assert set(state["market"]) == {"KR", "US"}
    assert set(state["market"].values()) <= {"open", "closed"}
