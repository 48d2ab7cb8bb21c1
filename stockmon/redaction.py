"""Secrets that cannot leak by accident (clause CRED-ENV).

``Secret`` hides its value from ``repr``, ``str``, f-strings, ``%`` formatting, pickling and
equality-by-repr; code must call ``reveal()`` at the one place the value goes on the wire.
``RedactingFilter`` is the second line of defence: it replaces any registered secret value that
still reaches a log record.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, NoReturn

MASK = "***"

_registry_lock = threading.Lock()
_registered: set[str] = set()
# Values shorter than this are not scrubbed from logs: masking "1" everywhere would destroy logs.
_MIN_SCRUB_LEN = 6


class Secret:
    """A string that shows ``***`` everywhere except through :meth:`reveal`."""

    __slots__ = ("__value",)

    def __init__(self, value: str) -> None:
        self.__value = value
        register_secret(value)

    def reveal(self) -> str:
        """The secret itself; call only where it is put on the wire."""
        return self.__value

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return MASK

    def __bool__(self) -> bool:
        return bool(self.__value)

    def __len__(self) -> int:
        return len(self.__value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other.__value == self.__value

    def __hash__(self) -> int:
        return hash(("Secret", self.__value))

    def __reduce__(self) -> NoReturn:
        raise TypeError("Secret values cannot be pickled")


def register_secret(value: str) -> None:
    """Remember a value so the logging filter and :func:`scrub` mask it."""
    if len(value) >= _MIN_SCRUB_LEN:
        with _registry_lock:
            _registered.add(value)


def scrub(text: str) -> str:
    """Replace every registered secret value in ``text`` with ``***``."""
    with _registry_lock:
        values = sorted(_registered, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    return text


class RedactingFilter(logging.Filter):
    """Logging filter that scrubs registered secrets from the message and its arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record in place; never drops it."""
        try:
            message = record.getMessage()
        except Exception:  # a malformed log call must not kill the caller
            message = str(record.msg)
        clean = scrub(message)
        record.msg = clean
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = scrub(record.exc_text)
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Attach the redacting filter to every handler of ``logger`` (root by default)."""
    target = logger or logging.getLogger()
    flt = RedactingFilter()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(flt)
    if not any(isinstance(f, RedactingFilter) for f in target.filters):
        target.addFilter(flt)


def redact_mapping(data: dict[str, Any], secret_keys: set[str]) -> dict[str, Any]:
    """A shallow copy of ``data`` with the values of ``secret_keys`` masked (for traces and dumps)."""
    return {k: (MASK if k.lower() in secret_keys and v else v) for k, v in data.items()}
