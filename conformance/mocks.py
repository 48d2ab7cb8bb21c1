"""The mocks of one scenario run: a fresh KIS mock on its own thread and, for a scenario with
``kiwoom`` set, a Kiwoom mock beside it on the same loop, clock and trace (``kiwoom_beside``).

One trace then orders every socket of both brokers, which is what "never two sockets, across
brokers" is judged on; Kiwoom records carry ``broker: "kiwoom"`` and conn ids ``kiwoom-...``.
The judge reaches the mocks through the public API of ``stockmon.mockserver`` only.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from stockmon.conformance.errors import HarnessError, ResourceError
from stockmon.conformance.evidence import Record
from stockmon.conformance.protocol import KIWOOM
from stockmon.conformance.scenario import Scenario
from stockmon.mockserver import KiwoomMockConfig, MockConfig, MockThread, kiwoom_beside
from stockmon.spec import Spec


class ScenarioMocks:
    """Starts, drives and stops the mocks of one scenario run (the runner's only way to them)."""

    def __init__(self, scenario: Scenario, spec: Spec, time_scale: float, seed: int) -> None:
        self.scenario = scenario
        self.spec = spec
        self.time_scale = time_scale
        self.seed = seed
        self.thread: Any = None  # the KIS mock's MockThread
        self.kiwoom: Any = None  # the Kiwoom mock, for a scenario with ``kiwoom`` set

    def _config(self, cls: Any, overrides: Mapping[str, Any], what: str) -> Any:
        values = dict(overrides)
        values.setdefault("seed", self.seed)
        try:
            return cls(spec_version=self.spec.version, time_scale=self.time_scale, **values)
        except Exception as exc:
            raise HarnessError(
                f"scenario {self.scenario.name}: bad {what} configuration: {exc}"
            ) from exc

    def start(self) -> None:
        """Start the KIS mock, then the Kiwoom mock beside it (scenarios with ``kiwoom``)."""
        config = self._config(MockConfig, self.scenario.mock(self.spec), "mock")
        try:
            thread = MockThread(config)
            thread.start()
        except OSError as exc:
            raise ResourceError(f"the mock could not start: {exc}") from exc
        self.thread = thread
        if self.scenario.kiwoom is None:
            return
        kconfig = self._config(KiwoomMockConfig, self.scenario.kiwoom(self.spec), "Kiwoom mock")
        mock = kiwoom_beside(thread.mock, kconfig)
        try:
            thread.call(mock.start())
        except OSError as exc:
            raise ResourceError(f"the Kiwoom mock could not start: {exc}") from exc
        self.kiwoom = mock

    def stop(self) -> None:
        """Stop what :meth:`start` started (the Kiwoom mock before the thread both run on)."""
        if self.thread is None:
            return
        try:
            if self.kiwoom is not None:
                self.thread.call(self.kiwoom.stop())
        finally:
            self.thread.stop()

    def now(self) -> float:
        """Real seconds since the mocks started (the shared trace's clock)."""
        return float(self.thread.mock.trace.now())

    def records(self, after_seq: int) -> list[Record]:
        """Trace records after ``after_seq``."""
        return list(self.thread.mock.trace.records(after_seq))

    def env(self) -> dict[str, str]:
        """The variables pointing a target at the mocks (URLs and test credentials)."""
        env = dict(self.thread.mock.env())
        if self.kiwoom is not None:
            env.update(self.kiwoom.env())
        return env

    def fault(self, broker: str, name: str, params: Mapping[str, Any]) -> None:
        """Call ``faults.<name>(**params)`` of one broker's mock (thread-safe: it runs on the
        mock's loop; an awaitable result is awaited there)."""
        mock = self.kiwoom if broker == KIWOOM else self.thread.mock
        what = "the Kiwoom mock" if broker == KIWOOM else "the mock"
        if mock is None:
            raise HarnessError(f"scenario {self.scenario.name} runs no Kiwoom mock")
        fn = getattr(mock.faults, name, None)
        if fn is None:
            raise HarnessError(f"{what} has no fault {name!r} (scenario {self.scenario.name})")
        try:
            result = fn(**params)
            if inspect.isawaitable(result):
                self.thread.call(result)
        except Exception as exc:
            raise HarnessError(
                f"fault {name}({dict(params)}) of {what} failed in scenario "
                f"{self.scenario.name}: {exc}"
            ) from exc

    def facts(self) -> dict[str, Any]:
        """What checks need to know of the mocks as they ran (the KIS grace for an unanswered
        PINGPONG, whether Kiwoom wants a session token): only what some check reads."""
        facts: dict[str, Any] = {}
        if self.thread is not None:
            facts["unanswered_pingpong_grace_s"] = self.thread.mock.unanswered_pingpong_grace_s
            facts["server_pingpong_period_s"] = self.thread.mock.server_pingpong_period_s
        if self.kiwoom is not None:
            facts["kiwoom_token_required"] = self.kiwoom.token_required
        return facts
