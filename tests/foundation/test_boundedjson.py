"""The one bounded JSON decoder every role uses for what it receives (issue 11, probes 1, 2, 6)."""

from __future__ import annotations

import time

import pytest

from stockmon.boundedjson import DEFAULT_MAX_DEPTH, check_depth, decode_text, loads
from stockmon.errors import InputRejected, StockmonError


def test_nesting_100000_deep_is_a_typed_error_fast() -> None:
    """A 200 KB array nested 100,000 deep is refused as InputRejected, not RecursionError, fast."""
    text = "[" * 100_000 + "]" * 100_000
    started = time.perf_counter()
    with pytest.raises(InputRejected, match="deeper"):
        loads(text)
    assert time.perf_counter() - started < 1.0


def test_depth_at_the_bound_is_taken_one_more_is_not() -> None:
    """Exactly DEFAULT_MAX_DEPTH levels parse; one more is refused; brackets in strings do not count."""
    assert loads("[" * DEFAULT_MAX_DEPTH + "]" * DEFAULT_MAX_DEPTH) is not None
    with pytest.raises(InputRejected):
        check_depth("{" * (DEFAULT_MAX_DEPTH + 1))
    assert loads('{"a":"' + "[" * 1000 + '"}') == {"a": "[" * 1000}


def test_lone_surrogate_escape_is_refused_a_pair_is_taken() -> None:
    """'\\ud800' alone is refused (no UTF-8 sink can write it); a valid pair decodes to one character."""
    with pytest.raises(InputRejected, match="surrogate"):
        loads('{"body":{"msg1":"\\ud800"}}')
    with pytest.raises(InputRejected, match="surrogate"):
        loads('{"a":"\\uDFFF x"}')
    assert loads('{"a":"\\ud83d\\ude00"}') == {"a": "\U0001f600"}


def test_not_utf8_nan_and_oversize_are_refused() -> None:
    """Non-UTF-8 bytes, NaN/Infinity and text over the size bound are each an InputRejected."""
    with pytest.raises(InputRejected, match="UTF-8"):
        loads(b'{"a":"\xff"}')
    with pytest.raises(InputRejected, match="UTF-8"):
        decode_text(b"\xc3", "frame")
    for bad in ("NaN", '{"seconds":NaN}', "[Infinity]", "-Infinity"):
        with pytest.raises(InputRejected):
            loads(bad)
    with pytest.raises(InputRejected, match="longer"):
        loads("[" + "1," * 100 + "1]", max_chars=50)
    with pytest.raises(InputRejected):
        loads("1" * 5000)  # beyond Python's int digit limit: a typed error too


def test_rejection_is_a_value_error_in_the_one_error_tree() -> None:
    """InputRejected is a StockmonError and a ValueError, so existing 'not JSON' paths survive it."""
    with pytest.raises(InputRejected) as info:
        loads("{", what="control frame")
    assert isinstance(info.value, StockmonError)
    assert isinstance(info.value, ValueError)
    assert "control frame" in str(info.value)
