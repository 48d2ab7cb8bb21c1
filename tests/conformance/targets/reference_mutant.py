#!/usr/bin/env python3
"""The reference client with one rule of its session core changed, then ``stockmon stream``.

``reference_mutant.py NAME`` patches ``SessionRules.from_spec`` (the one place the reference's
session core reads spec values) so one behaviour leaves the spec, and runs the stream command
unchanged otherwise. The conformance suite must fail it on exactly that behaviour's clauses.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable

from stockmon.cli import main as stockmon_main
from stockmon.reference.kis import session
from stockmon.reference.kis.session import SessionRules

Patch = Callable[[SessionRules], SessionRules]

MUTANTS: dict[str, Patch] = {
    # pings twice as often as the spec says
    "ping-period": lambda r: dataclasses.replace(r, ping_interval_s=r.ping_interval_s / 2),
    # no idle timeout at all
    "no-idle-reconnect": lambda r: dataclasses.replace(r, idle_timeout_s=1e12),
    # treats the server's PINGPONG like a reflection (never answers it)
    "ignore-server-ping": lambda r: dataclasses.replace(r, answer_server_ping=False),
    # corporate customer type in every packet
    "custtype-b": lambda r: dataclasses.replace(
        r,
        subscribe_header={**r.subscribe_header, "custtype": "B"},
        unsubscribe_header=(
            None if r.unsubscribe_header is None else {**r.unsubscribe_header, "custtype": "B"}
        ),
    ),
    # no per-session registration limit
    "no-limit": lambda r: dataclasses.replace(r, max_registrations=None),
}


def main() -> int:
    """Patch the rules, then run ``stockmon stream``."""
    if len(sys.argv) != 2 or sys.argv[1] not in MUTANTS:
        print(f"usage: reference_mutant.py {{{','.join(MUTANTS)}}}", file=sys.stderr)
        return 2
    patch = MUTANTS[sys.argv[1]]
    original = SessionRules.from_spec

    def from_spec(spec: object) -> SessionRules:
        return patch(original(spec))  # type: ignore[arg-type]

    session.SessionRules.from_spec = from_spec  # type: ignore[assignment, method-assign]
    return stockmon_main(["stream"])


if __name__ == "__main__":
    sys.exit(main())
