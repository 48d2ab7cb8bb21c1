"""stockmon.mockserver: a faithful, misbehaving-on-cue KIS stand-in (REST + WebSocket).

Public API (briefs/trace_contract.md): :class:`KisMock`, :class:`MockConfig`, :class:`MockThread`;
``mock.faults`` (:class:`Faults`), ``mock.trace`` (:class:`Trace`). Never imports
``stockmon.reference``: the judge shares nothing with the judged but the spec.
"""

from stockmon.mockserver.config import MockConfig
from stockmon.mockserver.errors import MockConfigError, MockError, ReplayError, ScenarioError
from stockmon.mockserver.faults import Faults
from stockmon.mockserver.server import KisMock, MockThread
from stockmon.mockserver.trace import Trace

__all__ = [
    "Faults",
    "KisMock",
    "MockConfig",
    "MockConfigError",
    "MockError",
    "MockThread",
    "ReplayError",
    "ScenarioError",
    "Trace",
]
