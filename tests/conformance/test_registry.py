"""The ``-k`` selection of checks and scenarios (registry.KeywordExpression)."""

from __future__ import annotations

import pytest

from stockmon.conformance.errors import ConfigError
from stockmon.conformance.registry import KeywordExpression


@pytest.mark.parametrize(
    ("expr", "words", "expected"),
    [
        ("KA-PING", ["pings_sent_every_interval", "KA-PING", "steady"], True),
        ("ka-ping", ["x", "KA-PING"], True),
        ("KA-PING and not steady", ["x", "KA-PING", "steady"], False),
        ("stall or quiet", ["x", "quiet"], True),
        ("not (stall or quiet)", ["x", "quiet"], False),
        ("TOKEN and LOCK", ["one_token", "TOKEN-KIS-LOCK"], True),
    ],
)
def test_keyword_expression_matches_like_pytest(
    expr: str, words: list[str], expected: bool
) -> None:
    """-k words are case-insensitive substrings combined with and/or/not and parentheses."""
    assert KeywordExpression(expr).matches(words) is expected


@pytest.mark.parametrize("expr", ["", "a and", "(a or b", "or a", "a b"])
def test_keyword_expression_rejects_bad_syntax_with_one_line(expr: str) -> None:
    """A malformed -k expression is a configuration error, not a traceback."""
    with pytest.raises(ConfigError, match="-k"):
        KeywordExpression(expr)
