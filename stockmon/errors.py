"""Root of the glue package's errors.

    StockmonError                    every error stockmon raises on purpose
    ├── UsageError                   the user's input is wrong (CLI flag, env var, file); exit 2, no traceback
    │   └── SettingsError            a variable of the environment is missing or malformed
    ├── SpecError                    the spec data itself is wrong (meta-schema, unknown clause, bad value)
    └── InputRejected (ValueError)   inbound bytes/text too large, too deep, not UTF-8 or not JSON

Packages add their own subtrees under StockmonError so the CLI can print one line for any of them.
"""

from __future__ import annotations


class StockmonError(Exception):
    """Base of every deliberate stockmon error; its message is one line meant for a human."""


class UsageError(StockmonError):
    """The user's input is wrong; the CLI prints the message and exits 2."""


class SettingsError(UsageError):
    """An environment variable is missing or malformed; the message names it and the fix."""


class SpecError(StockmonError):
    """The machine-readable spec is invalid or asked for something it does not contain."""


class InputRejected(StockmonError, ValueError):
    """Bytes or text received from outside (a peer, a body, a file) that we refuse to take.

    Also a ``ValueError``, so every "not JSON" handler already in place counts and survives it.
    """
