"""KIS with the Kiwoom backup (STOCKMON_BROKER=auto, clause FAILOVER-KIWOOM): never two sockets.

Theory of operation
-------------------
:class:`FailoverCore` is a sans-I/O state machine (:data:`FAILOVER_TRANSITIONS`) that decides which
broker's client runs. Its inputs, each with the spec time ``now``: ``start``, ``kis_failed`` (one
failed KIS connection attempt), ``kis_connected``, ``kis_stopped`` / ``kiwoom_stopped`` (that
client's ``run()`` returned: its socket is fully closed and its connect-gate lease released),
``handle_timer`` (the probe schedule) and ``stop``. Its outputs are commands — :class:`RunKis`,
:class:`StopKis`, :class:`RunKiwoom`, :class:`StopKiwoom` — and status events, drained with
``next_event()``, plus one deadline from ``get_timer()``.

::

    KIS --reconnect_budget failed attempts--> LEAVING_KIS --kis_stopped--> BACKUP
    BACKUP --probe_interval_s--> LEAVING_BACKUP --kiwoom_stopped--> PROBING
    PROBING --kis_connected--> KIS          (switched back)
    PROBING --probe_attempts failed--> ABANDONING_PROBE --kis_stopped--> BACKUP

A client is started only from a state entered on the *stopped* report of the other one, so the
Kiwoom socket opens after the KIS socket is closed and the other way round (WS-SINGLE-SOCKET); a
probe closes Kiwoom first and costs a short gap, the price of never holding two sockets. Across
replicas, both clients acquire the same connect gate (one socket lease for both brokers).

:class:`~stockmon.reference.failover.runner.FailoverStream` is the asyncio runner (apart, so this
module stays pure): one client task at a time, the failed attempts counted from the KIS shell's typed
:class:`~stockmon.reference.shell.Outcome` reports, a timer for the probes.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TypeAlias

from stockmon.reference.errors import LocalProtocolError
from stockmon.reference.events import StatusChanged
from stockmon.spec import Spec, broker_clause

KIS = "kis"
KIWOOM = "kiwoom"


@dataclass(frozen=True, slots=True)
class RunKis:
    """Start a KIS client (``probe``: to see whether KIS is back)."""

    probe: bool = False


@dataclass(frozen=True, slots=True)
class StopKis:
    """Stop the KIS client; report ``kis_stopped`` once its run() returned."""


@dataclass(frozen=True, slots=True)
class RunKiwoom:
    """Start the Kiwoom client."""


@dataclass(frozen=True, slots=True)
class StopKiwoom:
    """Stop the Kiwoom client; report ``kiwoom_stopped`` once its run() returned."""


Command: TypeAlias = RunKis | StopKis | RunKiwoom | StopKiwoom
FailoverEvent: TypeAlias = Command | StatusChanged


class Mode(enum.Enum):
    """Which broker streams, or which switch is under way."""

    IDLE = "idle"
    KIS = "kis"
    LEAVING_KIS = "leaving_kis"  # KIS client stopping; Kiwoom opens once it is stopped
    BACKUP = "backup"
    LEAVING_BACKUP = "leaving_backup"  # Kiwoom client stopping for a KIS probe
    PROBING = "probing"
    ABANDONING_PROBE = "abandoning_probe"  # probe failed; KIS client stopping
    STOPPING = "stopping"
    STOPPED = "stopped"


class Input(enum.Enum):
    """What can happen to the failover runner."""

    START = "start"
    BUDGET_SPENT = "budget_spent"
    KIS_CONNECTED = "kis_connected"
    KIS_STOPPED = "kis_stopped"
    KIWOOM_STOPPED = "kiwoom_stopped"
    PROBE_DUE = "probe_due"
    PROBE_FAILED = "probe_failed"
    STOP = "stop"


_M, _I = Mode, Input
FAILOVER_TRANSITIONS: Mapping[tuple[Mode, Input], Mode] = MappingProxyType(
    {
        (_M.IDLE, _I.START): _M.KIS,
        (_M.IDLE, _I.STOP): _M.STOPPED,
        (_M.KIS, _I.BUDGET_SPENT): _M.LEAVING_KIS,
        (_M.KIS, _I.KIS_CONNECTED): _M.KIS,
        (_M.KIS, _I.KIS_STOPPED): _M.KIS,  # the client ended by itself: run it again
        (_M.KIS, _I.STOP): _M.STOPPING,
        (_M.LEAVING_KIS, _I.KIS_STOPPED): _M.BACKUP,
        (_M.LEAVING_KIS, _I.STOP): _M.STOPPING,
        (_M.BACKUP, _I.PROBE_DUE): _M.LEAVING_BACKUP,
        (_M.BACKUP, _I.KIWOOM_STOPPED): _M.BACKUP,  # ended by itself: run it again
        (_M.BACKUP, _I.STOP): _M.STOPPING,
        (_M.LEAVING_BACKUP, _I.KIWOOM_STOPPED): _M.PROBING,
        (_M.LEAVING_BACKUP, _I.STOP): _M.STOPPING,
        (_M.PROBING, _I.KIS_CONNECTED): _M.KIS,
        (_M.PROBING, _I.PROBE_FAILED): _M.ABANDONING_PROBE,
        (_M.PROBING, _I.KIS_STOPPED): _M.BACKUP,
        (_M.PROBING, _I.STOP): _M.STOPPING,
        (_M.ABANDONING_PROBE, _I.KIS_STOPPED): _M.BACKUP,
        (_M.ABANDONING_PROBE, _I.STOP): _M.STOPPING,
        (_M.STOPPING, _I.KIS_STOPPED): _M.STOPPED,
        (_M.STOPPING, _I.KIWOOM_STOPPED): _M.STOPPED,
        (_M.STOPPING, _I.STOP): _M.STOPPING,
        (_M.STOPPED, _I.STOP): _M.STOPPED,
    }
)


@dataclass(frozen=True, slots=True)
class FailoverRules:
    """FAILOVER-KIWOOM's values."""

    reconnect_budget: int
    probe_interval_s: float
    probe_attempts: int

    @classmethod
    def from_spec(cls, spec: Spec) -> FailoverRules:
        """Read FAILOVER-KIWOOM (the newest version's for a version without it)."""
        c = broker_clause(spec, "FAILOVER-KIWOOM")
        return cls(
            reconnect_budget=c.integer("reconnect_budget"),
            probe_interval_s=c.number("probe_interval_s"),
            probe_attempts=c.integer("probe_attempts"),
        )


class FailoverCore:
    """Which broker streams (see the module docstring); pure, no I/O."""

    def __init__(self, spec: Spec) -> None:
        self.rules = FailoverRules.from_spec(spec)
        self.mode = Mode.IDLE
        self.running: str | None = None  # "kis" | "kiwoom" while a client runs
        self.failures = 0
        self.probe_failures = 0
        self.failovers = 0
        self.switchbacks = 0
        self._probe_at: float | None = None
        self._events: deque[FailoverEvent] = deque()

    def next_event(self) -> FailoverEvent | None:
        """The next command or status, or None."""
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """Spec time of the next probe of KIS (only while on the backup)."""
        return self._probe_at if self.mode is Mode.BACKUP else None

    # ------------------------------------------------------------------ inputs

    def start(self, now: float) -> None:
        """Begin with KIS."""
        self._move(Input.START)
        self._run(RunKis())

    def stop(self, now: float) -> None:
        """Stop whichever client runs; STOPPED once it reported stopped."""
        self._move(Input.STOP)
        if self.running is None:
            self.mode = Mode.STOPPED
        elif self.running == KIS:
            self._events.append(StopKis())
        else:
            self._events.append(StopKiwoom())

    def kis_failed(self, now: float) -> None:
        """One KIS connection attempt failed."""
        r = self.rules
        if self.mode is Mode.KIS:
            self.failures += 1
            if self.failures >= r.reconnect_budget:
                self._move(Input.BUDGET_SPENT)
                self._events.append(StopKis())
                self._status(
                    "failing_over",
                    "kis_unreachable",
                    KIS,
                    f"{self.failures} KIS reconnects failed (budget {r.reconnect_budget}): "
                    "closing KIS before opening Kiwoom",
                )
        elif self.mode is Mode.PROBING:
            self.probe_failures += 1
            if self.probe_failures >= r.probe_attempts:
                self._move(Input.PROBE_FAILED)
                self._events.append(StopKis())
                self._status("probe_failed", "kis_unreachable", KIS, "KIS still unreachable")

    def kis_connected(self, now: float) -> None:
        """The KIS client opened its socket."""
        if self.mode is Mode.KIS:
            self.failures = 0
        elif self.mode is Mode.PROBING:
            self._move(Input.KIS_CONNECTED)
            self.failures = 0
            self.switchbacks += 1
            self._status("switched_back", "kis_reachable", KIS, "KIS answers again")

    def kis_stopped(self, now: float) -> None:
        """The KIS client's run() returned (its socket is closed)."""
        if self.running != KIS:
            raise LocalProtocolError("kis_stopped() while the KIS client was not running")
        self.running = None
        before = self.mode
        self._move(Input.KIS_STOPPED)
        if self.mode is Mode.KIS:
            self._run(RunKis())
        elif self.mode is Mode.BACKUP:
            self._to_backup(now, first=before is Mode.LEAVING_KIS)

    def kiwoom_stopped(self, now: float) -> None:
        """The Kiwoom client's run() returned (its socket is closed)."""
        if self.running != KIWOOM:
            raise LocalProtocolError("kiwoom_stopped() while the Kiwoom client was not running")
        self.running = None
        self._move(Input.KIWOOM_STOPPED)
        if self.mode is Mode.PROBING:
            self.probe_failures = 0
            self._run(RunKis(probe=True))
        elif self.mode is Mode.BACKUP:
            self._run(RunKiwoom())

    def handle_timer(self, now: float) -> None:
        """Probe KIS when the backup has run ``probe_interval_s``."""
        if self.mode is Mode.BACKUP and self._probe_at is not None and now >= self._probe_at:
            self._move(Input.PROBE_DUE)
            self._probe_at = None
            self._events.append(StopKiwoom())
            self._status("probing", "probe_kis", KIS, "closing Kiwoom to try KIS")

    # ------------------------------------------------------------------ internals

    def _move(self, event: Input) -> None:
        try:
            self.mode = FAILOVER_TRANSITIONS[self.mode, event]
        except KeyError:
            raise LocalProtocolError(
                f"{event.value} is not allowed in failover mode {self.mode.value}"
            ) from None

    def _run(self, command: RunKis | RunKiwoom) -> None:
        if self.running is not None:
            raise LocalProtocolError(f"a {self.running} client is still running")
        self.running = KIS if isinstance(command, RunKis) else KIWOOM
        self._events.append(command)

    def _to_backup(self, now: float, *, first: bool) -> None:
        r = self.rules
        self._probe_at = now + r.probe_interval_s
        if first:
            self.failovers += 1
            self._status(
                "failover",
                "kis_unreachable",
                KIWOOM,
                f"streaming from the Kiwoom backup; KIS probed every {r.probe_interval_s:g} s",
            )
        self._run(RunKiwoom())

    def _status(self, state: str, reason: str, source: str, detail: str) -> None:
        self._events.append(StatusChanged(state, reason, detail=detail, source=source))


__all__ = [
    "FAILOVER_TRANSITIONS",
    "KIS",
    "KIWOOM",
    "Command",
    "FailoverCore",
    "FailoverEvent",
    "FailoverRules",
    "Input",
    "Mode",
    "RunKis",
    "RunKiwoom",
    "StopKis",
    "StopKiwoom",
]
