"""Errors of the mock server.

    StockmonError (stockmon.errors)
    └── MockError                  anything the mock raises on purpose
        ├── MockConfigError        (also a UsageError) bad MockConfig value, CLI flag or port in use
        ├── ScenarioError          (also a UsageError) a scenario file is unreadable or breaks its schema
        └── ReplayError            (also a UsageError) a replay JSONL file is unreadable or holds no frames

Peers' nonsense (bad packets, bad requests) is never an exception: it is answered on the wire and
recorded in the trace, because a server must not fall over for its clients' mistakes.
"""

from __future__ import annotations

from stockmon.errors import StockmonError, UsageError


class MockError(StockmonError):
    """Base of every deliberate mock-server error."""


class MockConfigError(MockError, UsageError):
    """A configuration value (MockConfig field, CLI flag) is invalid; the message names it."""


class ScenarioError(MockError, UsageError):
    """A scenario file cannot be read or does not validate against schemas/scenario.json."""


class ReplayError(MockError, UsageError):
    """A replay file cannot be read or holds no data frames."""
