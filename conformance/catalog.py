"""The suite's clause index, read by ``stockmon spec check`` (clause coverage, DEV-SPEC-FIRST).

``clause_index()`` maps every check that some scenario runs to the clause IDs it judges;
``pending_clauses()`` lists the breakable clauses that have no check yet, each with the reason.
The gate fails on a breakable clause that is neither covered nor pending, on a check citing an
unknown clause, and on a pending clause that has a check after all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from stockmon.conformance.scenarios import SCENARIOS

__all__ = ["SCENARIOS", "clause_index", "pending_clauses"]

# Breakable clauses without a wire check yet, each with the reason.
PENDING: Mapping[str, str] = {}


def clause_index() -> Mapping[str, Sequence[str]]:
    """Check name -> clause IDs, for every check some scenario runs."""
    index: dict[str, Sequence[str]] = {}
    for sc in SCENARIOS:
        for chk in sc.check_objects():
            index[chk.name] = chk.clauses
    return index


def pending_clauses() -> Mapping[str, str]:
    """Breakable clauses without a check yet, with the reason (an issue reference)."""
    return dict(PENDING)
