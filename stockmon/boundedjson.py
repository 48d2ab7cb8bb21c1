"""The one JSON decoder of everything stockmon receives: bounded in size and depth, UTF-8 only.

Every role parses what a peer sent through :func:`loads` (client control frames and REST bodies,
the mock's WebSocket and REST entry points, the judge's reading of a target's output), so one
hostile input is one :class:`~stockmon.errors.InputRejected` (a ``ValueError``) that the caller
counts and survives, never a ``RecursionError`` or a ``UnicodeEncodeError`` further down.

Refused: more than ``max_chars`` characters, nesting deeper than ``max_depth``, bytes that are not
UTF-8, lone surrogates (``"\\ud800"``: valid JSON that no UTF-8 sink can write), ``NaN`` and
``Infinity`` (not JSON), integers longer than Python's digit limit.
"""

from __future__ import annotations

import json
import re
from typing import Any

from stockmon.errors import InputRejected

# Not normative: sanity bounds of a decoder, far above anything the broker or the mock sends
# (KIS control frames nest 3 deep; 4 MiB is the client's WebSocket message cap).
DEFAULT_MAX_DEPTH = 64
DEFAULT_MAX_CHARS = 4 * 1024 * 1024

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_EMPTY_PAIR = re.compile(r"\[\]|\{\}")


def _no_constant(name: str) -> Any:
    raise InputRejected(f"{name} is not a JSON value")


_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def decode_text(data: bytes | bytearray | memoryview, what: str = "input") -> str:
    """Strict UTF-8 text of received bytes; :class:`InputRejected` naming ``what`` otherwise."""
    try:
        return bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputRejected(f"{what} is not valid UTF-8 (byte {exc.start})") from None


def check_depth(text: str, max_depth: int = DEFAULT_MAX_DEPTH, what: str = "JSON") -> None:
    """Refuse JSON text nested deeper than ``max_depth``, without recursion.

    Cheap when it cannot matter (fewer brackets than the bound: two C-level counts); otherwise the
    strings are blanked and innermost empty pairs removed ``max_depth`` times, all in C.
    """
    if text.count("[") + text.count("{") <= max_depth:
        return
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    for _ in range(max_depth):
        if not brackets:
            return
        brackets = _EMPTY_PAIR.sub("", brackets)
    if brackets:
        raise InputRejected(f"{what} is nested deeper than {max_depth} levels (or unbalanced)")


def loads(
    data: str | bytes | bytearray | memoryview,
    *,
    what: str = "JSON",
    max_chars: int = DEFAULT_MAX_CHARS,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> Any:
    """Parse received JSON within the bounds; :class:`InputRejected` says why it was refused."""
    text = data if isinstance(data, str) else decode_text(data, what)
    if len(text) > max_chars:
        raise InputRejected(f"{what} is longer than {max_chars} characters")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InputRejected(f"{what} holds a lone surrogate") from None
    check_depth(text, max_depth, what)
    try:
        value = _DECODER.decode(text)
    except InputRejected:
        raise
    except (ValueError, RecursionError) as exc:
        raise InputRejected(f"{what} is not JSON: {str(exc)[:80]}") from None
    if "\\u" in text and ("\\ud" in text.lower()):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise InputRejected(f"{what} holds a lone surrogate escape (\\ud800-\\udfff)") from None
    return value


__all__ = ["DEFAULT_MAX_CHARS", "DEFAULT_MAX_DEPTH", "check_depth", "decode_text", "loads"]
