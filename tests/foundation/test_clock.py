"""Injected time: FakeClock for cores, ScaledClock for STOCKMON_TIME_SCALE."""

from __future__ import annotations

import pytest

from stockmon.clock import FakeClock, ScaledClock, SystemClock


def test_fake_clock_moves_only_forward() -> None:
    """advance/set move time; going backwards is refused."""
    c = FakeClock(10.0)
    assert c.advance(5) == 15.0
    c.set(20.0)
    assert c.monotonic() == 20.0
    with pytest.raises(ValueError):
        c.advance(-1)
    with pytest.raises(ValueError):
        c.set(19.0)


def test_fake_wall_clock_follows_monotonic() -> None:
    """Fake wall time moves in lockstep with monotonic time."""
    c = FakeClock(0.0, wall_start=1000.0)
    c.advance(30)
    assert c.wall() == 1030.0


def test_scaled_clock_runs_faster_than_its_base() -> None:
    """A scale of 100 turns one base second into 100 spec seconds, for both clocks."""
    base = FakeClock(0.0, wall_start=5000.0)
    scaled = ScaledClock(100.0, base=base)
    start_mono, start_wall = scaled.monotonic(), scaled.wall()
    base.advance(1.5)
    assert scaled.monotonic() - start_mono == pytest.approx(150.0)
    assert scaled.wall() - start_wall == pytest.approx(150.0)
    assert scaled.to_real(30.0) == pytest.approx(0.3)


def test_scaled_clock_rejects_non_positive_scale() -> None:
    """A zero or negative scale is a programming error."""
    with pytest.raises(ValueError):
        ScaledClock(0)


def test_system_clock_is_monotonic() -> None:
    """The system clock never goes backwards."""
    c = SystemClock()
    a = c.monotonic()
    assert c.monotonic() >= a
    assert c.wall() > 1_600_000_000
