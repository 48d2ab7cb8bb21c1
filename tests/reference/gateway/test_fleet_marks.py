"""How a fleet reader tells a gap from a continuation (API-FLEET marks), without I/O."""

from __future__ import annotations

import time

from redis.asyncio import Redis

from stockmon.reference.gateway.fleet import Entry, FleetBus
from stockmon.reference.gateway.hub import Hub
from stockmon.spec import load_spec

SPEC = load_spec("1.2")
FLEET = SPEC.clause("API-FLEET")
AFTER, BEFORE = FLEET.strings("gap_fields")


def bus() -> FleetBus:
    """A bus whose Redis client is never used (no connection is made)."""
    hub = Hub(SPEC, time.monotonic)
    return FleetBus(SPEC, hub, Redis(port=1), "stockmon:{t}", "r", lambda: None, "kis")


def entry(entry_id: str, epoch: int, acquisition: str, n: int) -> Entry:
    """A tick entry with the given mark."""
    return Entry(
        entry_id, {"type": "tick", "source": "kis", "key": "005930"}, "", (epoch, acquisition, n)
    )


def test_next_number_of_the_same_acquisition_is_no_gap() -> None:
    """(e, a, n) then (e, a, n + 1): a continuation, nothing announced."""
    assert bus().gap_before((3, "aa", 7), "1-0", entry("2-0", 3, "aa", 8)) is None


def test_a_new_acquisition_is_a_gap_even_with_the_same_epoch() -> None:
    """A Redis restarted empty hands out the same epoch: the acquisition name tells the seam."""
    gap = bus().gap_before((1, "aa", 7), "1-0", entry("2-0", 1, "bb", 8))
    assert gap is not None
    assert gap["state"] == FLEET.string("gap_state")
    assert gap["reason"] == FLEET.mapping("gap_reasons")["holder_changed"]
    assert (gap[AFTER], gap[BEFORE]) == ("1-0", "2-0")


def test_a_jump_in_n_is_a_gap_of_missing_entries() -> None:
    """(e, a, 7) then (e, a, 10): two entries trimmed or never published, and said so."""
    gap = bus().gap_before((3, "aa", 7), "1-0", entry("5-0", 3, "aa", 10))
    assert gap is not None
    assert gap["reason"] == FLEET.mapping("gap_reasons")["missing"]
    assert "2 event(s)" in gap["detail"]


def test_the_first_entry_read_is_no_gap() -> None:
    """A reader that has seen nothing yet announces nothing."""
    assert bus().gap_before(None, None, entry("5-0", 3, "aa", 10)) is None
