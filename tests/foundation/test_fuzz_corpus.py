"""Every input of the fuzz corpora (fuzz/corpus/<target>/, crashes found included) replays
through its target without a crash: the fuzzers' findings stay fixed (issue 11, Build: fuzzing)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parents[2] / "fuzz"
sys.path.insert(0, str(FUZZ))

from targets import TARGETS  # noqa: E402

CASES = sorted((name, path) for name in TARGETS for path in (FUZZ / "corpus" / name).iterdir())


def test_every_target_has_a_corpus() -> None:
    """Each fuzz target starts from at least three inputs kept in the repository."""
    for name in TARGETS:
        assert len(list((FUZZ / "corpus" / name).iterdir())) >= 3, name


@pytest.mark.parametrize(("name", "path"), CASES, ids=[f"{n}/{p.name}" for n, p in CASES])
def test_corpus_input_is_survived(name: str, path: Path) -> None:
    """The target takes the input and ends only in its documented typed errors."""
    TARGETS[name](path.read_bytes())
