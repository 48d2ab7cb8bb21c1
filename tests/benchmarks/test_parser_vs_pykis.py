"""The parser-vs-python-kis benchmark compares like with like: on the mock's frames both parsers
take every frame and read the same key, time and price of each record (issue 13); a frame
python-kis rejects stops the benchmark. Correctness only: the speed is the benchmark's to print."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from parser_throughput import make_frames  # noqa: E402
from parser_vs_pykis import TARGET_RATIO, check_frames, main, mock_frames, paired_ticks  # noqa: E402

from stockmon.reference.kis.frames import FrameParser  # noqa: E402
from stockmon.spec import load_spec  # noqa: E402

PARSER = FrameParser(load_spec())


def test_both_parsers_read_the_same_ticks() -> None:
    """Every record of a handful of mock frames has one key, time and price in both parsers."""
    frames = mock_frames(9, 3)
    pairs = paired_ticks(frames, PARSER)
    assert len(pairs) == 9 * 3
    assert [ours for ours, _ in pairs] == [theirs for _, theirs in pairs]
    assert len({price for (_, _, price), _ in pairs}) > 1  # the prices move: not one value twice


def test_a_frame_pykis_rejects_stops_the_check() -> None:
    """A frame with implausible values (the random builder's) raises, naming python-kis."""
    with pytest.raises(ValueError, match="python-kis rejects frame 0"):
        check_frames(make_frames(1, 2), PARSER)


def test_benchmark_prints_both_rates_and_the_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    """A tiny run prints per-round rates of both parsers, the ratio, the target and its verdict."""
    assert main(["--frames", "6", "--records-per-frame", "2", "--repeats", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["records_read_each"] == out["records_checked_alike"] == 12
    assert len(out["rounds"]) == 2
    assert {"stockmon_parse_tick_roles", "pykis_parse_tick_roles"} <= set(out["best"])
    assert isinstance(out["target_met"], bool) and out["ratio_best"] > 0
    every = all(r["ratio"] >= TARGET_RATIO for r in out["rounds"])
    assert out["target_met_every_round"] is every
