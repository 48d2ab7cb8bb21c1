"""Time, injected: the sans-I/O cores never read the clock, their shells pass ``now`` in.

``monotonic()`` is in *spec seconds* (the unit of every duration in spec/); ``wall()`` is a POSIX
timestamp used only for values that leave the process (token expiry, datetime fields).
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """What a component needs to know about time."""

    def monotonic(self) -> float:
        """Seconds of spec time on a clock that never goes backwards."""
        ...

    def wall(self) -> float:
        """Wall-clock POSIX timestamp (seconds)."""
        ...


class SystemClock:
    """The real clock: one spec second is one real second."""

    def monotonic(self) -> float:
        """Return ``time.monotonic()``."""
        return time.monotonic()

    def wall(self) -> float:
        """Return ``time.time()``."""
        return time.time()


class ScaledClock:
    """Spec time that runs ``scale`` times faster than real time (STOCKMON_TIME_SCALE).

    Both monotonic and wall time are scaled from the moment of creation, so a 24 h token expires
    after 24 h / scale of real time, exactly as a spec-conformant peer would expect.
    """

    def __init__(self, scale: float, base: Clock | None = None) -> None:
        if not scale > 0:
            raise ValueError(f"time scale must be > 0, got {scale!r}")
        self.scale = scale
        self._base = base or SystemClock()
        # the real clock read directly: the stream reads the time once per received frame
        self._base_monotonic = (
            time.monotonic if type(self._base) is SystemClock else self._base.monotonic
        )
        self._mono0 = self._base.monotonic()
        self._wall0 = self._base.wall()

    def monotonic(self) -> float:
        """Spec seconds elapsed, scaled, on the base monotonic clock."""
        return self._mono0 + (self._base_monotonic() - self._mono0) * self.scale

    def wall(self) -> float:
        """Wall time that advances ``scale`` spec seconds per real second."""
        return self._wall0 + (self._base_monotonic() - self._mono0) * self.scale

    def to_real(self, spec_seconds: float) -> float:
        """Real seconds that correspond to a spec duration (for sleeps and timers)."""
        return spec_seconds / self.scale


class FakeClock:
    """A clock that moves only when told; for unit tests of sans-I/O cores."""

    def __init__(self, start: float = 0.0, wall_start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall_start - start

    def monotonic(self) -> float:
        """The current fake time."""
        return self._now

    def wall(self) -> float:
        """Fake wall time, moving in lockstep with monotonic time."""
        return self._now + self._wall_offset

    def advance(self, seconds: float) -> float:
        """Move time forward (never backwards) and return the new time."""
        if seconds < 0:
            raise ValueError("FakeClock cannot go backwards")
        self._now += seconds
        return self._now

    def set(self, now: float) -> None:
        """Jump to an absolute time that is not in the past."""
        if now < self._now:
            raise ValueError("FakeClock cannot go backwards")
        self._now = now
