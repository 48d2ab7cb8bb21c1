"""stockmon.mockserver: faithful, misbehaving-on-cue KIS and Kiwoom stand-ins (REST + WebSocket).

Public API (briefs/trace_contract.md): :class:`KisMock`, :class:`MockConfig`, :class:`MockThread`;
``mock.faults`` (:class:`Faults`), ``mock.trace`` (:class:`Trace`). Kiwoom: :class:`KiwoomMock`,
:class:`KiwoomMockConfig`, :class:`KiwoomMockThread`, :func:`kiwoom_beside` (a Kiwoom mock sharing
a KIS mock's trace, simulator and clock). Both mocks are :class:`MockServer` specialisations, one
dialect package each (``kis/``, ``kiwoom/``). Never imports ``stockmon.reference``: the judge
shares nothing with the judged but the spec.
"""

from stockmon.mockserver.config import CommonConfig, KiwoomMockConfig, MockConfig
from stockmon.mockserver.errors import MockConfigError, MockError, ReplayError, ScenarioError
from stockmon.mockserver.faults import Faults, MockProtocol
from stockmon.mockserver.kis.mock import KisMock, MockThread
from stockmon.mockserver.kiwoom.mock import KiwoomMock, KiwoomMockThread, kiwoom_beside
from stockmon.mockserver.server import MockServer
from stockmon.mockserver.trace import Trace

__all__ = [
    "CommonConfig",
    "Faults",
    "KisMock",
    "KiwoomMock",
    "KiwoomMockConfig",
    "KiwoomMockThread",
    "MockConfig",
    "MockConfigError",
    "MockError",
    "MockProtocol",
    "MockServer",
    "MockThread",
    "ReplayError",
    "ScenarioError",
    "Trace",
    "kiwoom_beside",
]
