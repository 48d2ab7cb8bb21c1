"""spec.facts: a broker fact an older version omits comes from the newest version; a policy never does."""

from __future__ import annotations

import pytest

from stockmon.errors import SpecError
from stockmon.spec import (
    broker_clause,
    broker_data,
    kiwoom_layouts,
    load_spec,
    mock_profile_value,
    newest_spec,
    ws_answer_code,
)


def test_own_clause_wins() -> None:
    """A version that states a clause gets its own statement, not the newest one's."""
    old = load_spec("1.0")
    assert broker_clause(old, "KA-PING") is old.clause("KA-PING")


def test_missing_clause_borrowed_from_newest() -> None:
    """1.0 lacks PKT-DATA-FRAME; the resolver returns the newest version's clause."""
    old = load_spec("1.0")
    assert not old.has("PKT-DATA-FRAME")
    assert broker_clause(old, "PKT-DATA-FRAME") == newest_spec().clause("PKT-DATA-FRAME")


def test_unknown_clause_is_a_spec_error() -> None:
    """A clause no version states is a SpecError naming it."""
    with pytest.raises(SpecError, match="NO-SUCH-CLAUSE"):
        broker_clause(load_spec("1.0"), "NO-SUCH-CLAUSE")


def test_mock_profile_own_value_wins() -> None:
    """1.0's mock_profile switches the token throttle off; the newest version's does not override it."""
    old = load_spec("1.0")
    assert "token_throttle" in old.mock_profile
    assert mock_profile_value(old, "token_throttle") == old.mock_profile["token_throttle"]
    with pytest.raises(SpecError, match="no-such-key"):
        mock_profile_value(old, "no-such-key")


def test_ws_answer_code_and_layouts_fall_back() -> None:
    """Answer codes and Kiwoom layouts an older version omits come from the newest version."""
    old = load_spec("1.0")
    assert ws_answer_code(old, "subscribed") == ws_answer_code(newest_spec(), "subscribed")
    assert set(kiwoom_layouts(old)) == set(newest_spec().kiwoom_layouts)
    assert broker_data(old, "rest", "kiwoom")["token"] == newest_spec().rest["kiwoom"]["token"]
    with pytest.raises(SpecError, match="kiwoom"):
        broker_data(old, "no", "kiwoom")
