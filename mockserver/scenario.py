"""Scenario files: faults at a spec time or on an event ("on the 2nd subscribe of 005930").

Schema: schemas/scenario.json. A step triggered by an event with no delay runs synchronously from
the event hook, before the mock handles the event, so a ``next_subscribe_error`` step answers the
very subscribe that triggered it.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import yaml

from stockmon.errors import StockmonError
from stockmon.mockserver.errors import ScenarioError
from stockmon.mockserver.faults import MockProtocol
from stockmon.schemas import errors as schema_errors

log = logging.getLogger(__name__)
_FILTER_KEYS = ("tr_id", "tr_key", "path")


def load_scenario(source: str | Path | dict[str, Any]) -> dict[str, Any]:
    """Read (if a path) and validate a scenario; ScenarioError with a one-line reason if bad."""
    if isinstance(source, dict):
        data: Any = source
        where = "scenario"
    else:
        where = str(source)
        try:
            data = yaml.safe_load(Path(source).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ScenarioError(f"cannot read scenario {where}: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:  # found by fuzz/run.py (scenario_loader)
            raise ScenarioError(
                f"scenario {where} is not UTF-8 text (byte {exc.start}); save it as UTF-8"
            ) from None
        except yaml.YAMLError as exc:
            raise ScenarioError(
                f"scenario {where} is not valid YAML: {exc}".splitlines()[0]
            ) from None
    if isinstance(data, dict) and isinstance(data.get("steps"), list):
        # YAML 1.1 reads a bare `on:` key as the boolean true; give it its name back.
        data = dict(data)
        data["steps"] = [
            {("on" if k is True else k): v for k, v in step.items()}
            if isinstance(step, dict)
            else step
            for step in data["steps"]
        ]
    errs = schema_errors("scenario", data)
    if errs:
        raise ScenarioError(f"scenario {where} breaks schemas/scenario.json: {errs[0]}")
    assert isinstance(data, dict)
    return data


class ScenarioRunner:
    """Applies a scenario's steps to a running mock (on the mock's loop)."""

    def __init__(self, mock: MockProtocol, scenario: dict[str, Any], broker: str = "kis") -> None:
        self.mock = mock
        # A step names the mock it applies to (``broker``, default kis); each mock runs its own.
        self.steps: list[dict[str, Any]] = [
            s for s in scenario.get("steps", []) if s.get("broker", "kis") == broker
        ]
        self._counts: dict[int, int] = {}
        self._handles: list[asyncio.TimerHandle] = []
        self._stopped = False

    def start(self) -> None:
        """Schedule timed steps and listen for events."""
        for step in self.steps:
            if "at" in step:
                self._schedule(step, float(step["at"]) + float(step.get("delay_s", 0)))
        self.mock.world.add_listener(self._on_event)

    def stop(self) -> None:
        """Cancel every pending step."""
        self._stopped = True
        for h in self._handles:
            h.cancel()
        self._handles.clear()

    def _schedule(self, step: dict[str, Any], spec_at: float) -> None:
        loop = self.mock.loop
        assert loop is not None
        delay = max(0.0, (spec_at - self.mock.now()) / self.mock.config.time_scale)
        self._handles.append(loop.call_later(delay, self._fire, step))

    def _fire(self, step: dict[str, Any]) -> None:
        if self._stopped:
            return
        try:
            self.mock.faults.apply(str(step["fault"]), dict(step.get("params") or {}))
        except StockmonError as exc:
            log.warning("scenario step %s failed: %s", step.get("fault"), exc)
            world = self.mock.world
            world.record(
                self.mock.now(),
                "mock",
                world.mock_conn,
                "event",
                "scenario_error",
                fault=step.get("fault"),
                error=str(exc),
            )
        every = step.get("repeat_every_s")
        if every:
            self._schedule(step, self.mock.now() + float(every))

    def _on_event(self, event: str, data: dict[str, Any]) -> None:
        for i, step in enumerate(self.steps):
            trig = step.get("on")
            if not trig or trig.get("event") != event:
                continue
            if any(k in trig and data.get(k) != trig[k] for k in _FILTER_KEYS):
                continue
            n = self._counts.get(i, 0) + 1
            self._counts[i] = n
            nth = int(trig.get("nth", 1))
            if n == nth or (trig.get("every") and n > nth):
                delay = float(step.get("delay_s", 0))
                if delay > 0:
                    self._schedule(step, self.mock.now() + delay)
                else:
                    self._fire(step)
