"""Market simulator: determinism for a seed and the invariants of a plausible market (Hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from stockmon.mockserver.kis.market import KisMarket
from stockmon.mockserver.kis.profile import load_profile
from stockmon.mockserver.simulator import MarketSimulator
from stockmon.spec import load_spec

PROFILE = load_profile("1.1")
SPEC = load_spec("1.1")
WALL = 1_780_000_000.0
KR_KEYS = st.from_regex(r"\A[0-9]{6}\Z")
US_KEYS = st.from_regex(r"\AD(NAS|NYS|AMS)[A-Z]{1,5}\Z")


def kis(seed: int) -> KisMarket:
    """The KIS market view of a fresh simulator (its frames show the simulated values)."""
    return KisMarket(PROFILE, MarketSimulator(SPEC, seed))


def fields(frame: str) -> tuple[str, int, list[str]]:
    """(tr_id, count, fields) of a data frame."""
    _enc, tr_id, count, payload = frame.split("|", 3)
    return tr_id, int(count), payload.split("^")


def test_same_seed_same_frames() -> None:
    """Two simulators with one seed produce identical frames for the same calls."""
    a, b = kis(7), kis(7)
    for tr_id, key in (("H0STCNT0", "005930"), ("HDFSASP0", "DNASAAPL"), ("H0STASP0", "000660")):
        for _ in range(20):
            assert a.frame(tr_id, key, 2, WALL) == b.frame(tr_id, key, 2, WALL)
    assert kis(8).frame("H0STCNT0", "005930", 1, WALL) != kis(7).frame(
        "H0STCNT0", "005930", 1, WALL
    )


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32), key=KR_KEYS, n=st.integers(1, 4))
def test_kr_tick_invariants(seed: int, key: str, n: int) -> None:
    """KR ticks: layout field count, price on the KRX grid within +-30 %, high>=last>=low, volume grows."""
    market = kis(seed)
    sim = market.sim
    layout = SPEC.layout("H0STCNT0")
    ix = layout.index
    ratio = SPEC.markets["KR"]["daily_limit_ratio"]
    last_cum = 0
    for _ in range(60):
        tr_id, count, f = fields(market.frame("H0STCNT0", key, n, WALL))
        assert tr_id == "H0STCNT0" and count == n and len(f) == n * len(layout.fields)
        for r in range(n):
            rec = f[r * len(layout.fields) : (r + 1) * len(layout.fields)]
            price, high, low = (
                int(rec[ix("STCK_PRPR")]),
                int(rec[ix("STCK_HGPR")]),
                int(rec[ix("STCK_LWPR")]),
            )
            prev = sim.instrument(key).prev_close
            assert sim.on_grid(price)
            assert prev * (1 - ratio) <= price <= prev * (1 + ratio)
            assert high >= price >= low
            cum = int(rec[ix(layout.role("cumulative_volume"))])
            assert cum >= last_cum
            last_cum = cum
            assert int(rec[ix("ASKP1")]) > int(rec[ix("BIDP1")])
            assert rec[ix(layout.role("key"))] == key


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32), key=st.one_of(KR_KEYS, US_KEYS))
def test_orderbook_invariants(seed: int, key: str) -> None:
    """Books: 10 levels, asks rising, bids falling, best ask > best bid, KR levels on the grid."""
    market = kis(seed)
    sim = market.sim
    tr_id = "H0STASP0" if key[0].isdigit() else "HDFSASP0"
    layout = SPEC.layout(tr_id)
    for _ in range(30):
        _, count, f = fields(market.frame(tr_id, key, 1, WALL))
        assert len(f) == count * len(layout.fields)
        asks = [float(f[layout.index(n)]) for n in layout.role_list("ask_prices")]
        bids = [float(f[layout.index(n)]) for n in layout.role_list("bid_prices")]
        live_asks = [p for p in asks if p > 0]
        live_bids = [p for p in bids if p > 0]
        assert live_asks and live_bids
        assert live_asks[0] > live_bids[0]
        assert live_asks == sorted(live_asks) and live_bids == sorted(live_bids, reverse=True)
        if tr_id == "H0STASP0":
            assert all(sim.on_grid(int(p)) for p in live_asks + live_bids)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32), key=US_KEYS)
def test_us_tick_invariants(seed: int, key: str) -> None:
    """US ticks: 26 fields, decimals per ZDIV, high>=last>=low, ask > bid, volume grows."""
    market = kis(seed)
    layout = SPEC.layout("HDFSCNT0")
    ix = layout.index
    last_cum = 0
    for _ in range(40):
        _, _, f = fields(market.frame("HDFSCNT0", key, 1, WALL))
        assert len(f) == len(layout.fields)
        zdiv = int(f[ix("ZDIV")])
        last = f[ix("LAST")]
        assert len(last.split(".")[1]) == zdiv
        assert float(f[ix("HIGH")]) >= float(last) >= float(f[ix("LOW")])
        assert float(f[ix("PASK")]) > float(f[ix("PBID")])
        cum = int(f[ix("TVOL")])
        assert cum >= last_cum
        last_cum = cum


def test_tick_sizes_follow_spec_bands() -> None:
    """Tick sizes come from spec.markets KR tick_sizes, bands included."""
    sim = MarketSimulator(SPEC, 1)
    for upper, size in SPEC.markets["KR"]["tick_sizes"]:
        if upper is not None:
            assert sim.tick_size(upper - 1) == size
    assert sim.down(2000) == 1999
    assert sim.up(1999) == 2000


def test_limit_prices_hold_at_the_limit() -> None:
    """At the upper limit the book still has best ask > best bid, both within the limits."""
    sim = MarketSimulator(SPEC, 3)
    inst = sim.instrument("005930")
    assert inst.upper is not None
    inst.last = inst.upper
    ask, bid = sim.level1(inst)
    assert ask == inst.upper > bid


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32), us=st.booleans(), version=st.sampled_from(["1.0", "1.1", "1.2"]))
def test_trade_frames_match_the_values_by_name(seed: int, us: bool, version: str) -> None:
    """A trade frame (compiled template, cached price group) holds, field by field in the spec
    layout's order, what tick_values gives by name for the same trade (neutral for the rest)."""
    profile, spec = load_profile(version), load_spec(version)
    framed = KisMarket(profile, MarketSimulator(spec, seed))
    named = KisMarket(profile, MarketSimulator(spec, seed))
    tr_id, key = ("HDFSCNT0", "DNASAAPL") if us else ("H0STCNT0", "005930")
    layout = spec.layout(tr_id)
    neutral = {"int": "0", "decimal": "0.00", "str": ""}
    for i in range(300):  # long enough for new highs and lows (the cache's price state moves)
        wall = WALL + i * 0.4
        _, _, got = fields(framed.frame(tr_id, key, 1, wall))
        values = named.tick_values(named.sim.instrument(key), wall)
        assert got == [values.get(f.name, neutral[f.type]) for f in layout.fields]
