#!/usr/bin/env python3
"""The reference client with one fleet behaviour changed, then ``stockmon stream``.

``fleet_mutant.py NAME`` patches the fleet layer's wiring so one behaviour leaves the spec; the
conformance suite must fail it on exactly that behaviour's clauses.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from stockmon.cli import main as stockmon_main
from stockmon.reference import wiring


def no_keep() -> None:
    """A holder that loses Redis closes its socket before its lease could lapse (the 1.1 rule):
    no keep through the outage, and so no quarantine when Redis returns."""
    wiring.outage_keep_s = lambda spec, scale=1.0: 0.0


MUTANTS: dict[str, Callable[[], None]] = {"no-keep": no_keep}


def main() -> int:
    """Patch the fleet wiring, then run ``stockmon stream``."""
    if len(sys.argv) != 2 or sys.argv[1] not in MUTANTS:
        print(f"usage: fleet_mutant.py {{{','.join(MUTANTS)}}}", file=sys.stderr)
        return 2
    MUTANTS[sys.argv[1]]()
    return stockmon_main(["stream"])


if __name__ == "__main__":
    sys.exit(main())
