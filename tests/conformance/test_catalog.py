"""The scenario catalogue and the clause index ``stockmon spec check`` reads."""

from __future__ import annotations

import re

from stockmon.conformance import catalog
from stockmon.conformance.registry import KeywordExpression, all_checks
from stockmon.conformance.scenario import PROFILES
from stockmon.conformance.scenarios import SCENARIOS
from stockmon.spec import available_versions, load_spec


def test_catalog_covers_every_breakable_clause_or_says_why_not() -> None:
    """Every breakable clause of every version has a check, or a pending reason; never both."""
    covered = {c for ids in catalog.clause_index().values() for c in ids}
    pending = catalog.pending_clauses()
    for version in available_versions():
        for clause in load_spec(version).clauses:
            if clause.testability.breakable:
                assert (clause.id in covered) != (clause.id in pending), clause.id
    assert all(re.search(r"\bissue [0-9]+", reason) for reason in pending.values()), pending


def test_every_check_in_a_scenario_is_registered_and_tagged() -> None:
    """Scenario checks are registered functions citing clauses of some spec version."""
    ids = {c for v in available_versions() for c in load_spec(v).clause_ids}
    for sc in SCENARIOS:
        for chk in sc.check_objects():
            assert all_checks()[chk.name] is chk
            assert chk.clauses and set(chk.clauses) <= ids
            assert chk.doc and chk.doc != chk.name


def test_scenario_names_do_not_select_each_other() -> None:
    """-k on a scenario's name selects no other scenario's checks by their names in any profile it
    is in (names are distinct words; -k fleet in profile full is the token fleet, api-fleet is
    profile api's). A clause ID may still share the word (-k fleet also picks FLEET-REDIS-OUTAGE's
    checks, by design: -k matches clause IDs)."""
    for sc in catalog.SCENARIOS:
        expr = KeywordExpression(sc.name)
        others = [
            o.name
            for o in catalog.SCENARIOS
            if o is not sc
            and any(sc.in_profile(p) and o.in_profile(p) for p in PROFILES)
            and any(expr.matches((c.name, o.name)) for c in o.check_objects())
        ]
        assert not others, (sc.name, others)
