"""Broker facts a spec version may lack: borrowed from the newest version that states them.

Version 1.0 (the sheet) leaves out parts of the protocol that every client needs to speak to the
broker at all — the data-frame grammar beyond the pipe, the approval-key endpoint, the shape of a
release packet. Version 1.1 wrote them down as clauses (PKT-DATA-FRAME, WS-APPROVAL-KEY,
PKT-UNSUBSCRIBE). They describe the broker, not a policy, so a client following an older version
takes them from the newest version that has them; the policies themselves (which clause applies,
what to do when) always come from the version in use.
"""

from __future__ import annotations

from stockmon.spec import Clause, Spec, available_versions, load_spec, version_key


def clause_or_newest(spec: Spec, clause_id: str) -> Clause:
    """``spec``'s clause if it has it, else the same clause of the newest version that does."""
    if spec.has(clause_id):
        return spec.clause(clause_id)
    for version in sorted(available_versions(), key=version_key, reverse=True):
        other = load_spec(version)
        if other.has(clause_id):
            return other.clause(clause_id)
    return spec.clause(clause_id)  # raises SpecError naming the clause
