"""The asyncio runner of :class:`~stockmon.reference.failover.core.FailoverCore` (STOCKMON_BROKER=auto).

One client task at a time: a client is started only after the other one's ``run()`` returned (its
socket closed, its connect-gate lease released), so the two brokers never hold two sockets. The KIS
shell's typed :class:`~stockmon.reference.shell.Outcome` reports feed the core (a failed attempt, a
socket open); the clients' events pass through to the one sink, except the "stopped" status of a
client the runner itself stopped for a switch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from stockmon.errors import StockmonError
from stockmon.reference.errors import LocalProtocolError
from stockmon.reference.events import Event, StatusChanged
from stockmon.reference.failover.core import (
    KIS,
    KIWOOM,
    FailoverCore,
    FailoverEvent,
    Mode,
    RunKis,
    RunKiwoom,
    StopKis,
    StopKiwoom,
)
from stockmon.reference.output import EventSink
from stockmon.reference.shell import CoreLoop, Outcome, ShellClock
from stockmon.settings import Subscription
from stockmon.spec import Spec

log = logging.getLogger(__name__)

_STOPPED_STATE = "stopped"


class Client(Protocol):
    """A streaming client the runner can start and stop (a :class:`~stockmon.reference.shell.StreamClient`)."""

    def run(self) -> Awaitable[None]:
        """Stream until stopped."""
        ...

    def stop(self) -> None:
        """Ask for a clean stop."""
        ...

    def subscribe(self, sub: Subscription) -> None:
        """Add a subscription while running."""
        ...

    def unsubscribe(self, sub: Subscription) -> None:
        """Release a subscription while running."""
        ...


ClientFactory = Callable[[EventSink, Callable[[Outcome], None], Sequence[Subscription]], Client]
"""Builds one broker's client on a sink, with the callback its shell reports outcomes to, for the
subscriptions the runner holds now (those added or released while running included)."""


class _Watch:
    """The sink a client writes to: passes events on, hides the stopped status of a switch."""

    def __init__(self, runner: FailoverStream) -> None:
        self._runner = runner

    def event(self, ev: Event) -> None:
        if (
            isinstance(ev, StatusChanged)
            and ev.state == _STOPPED_STATE
            and not self._runner.stopping
        ):
            return  # a switch, not the end of the stream: the runner says what happens
        self._runner.sink.event(ev)

    def flush(self) -> None:
        self._runner.sink.flush()


class FailoverStream(CoreLoop):
    """Runs KIS, fails over to Kiwoom and back as :class:`FailoverCore` decides; one client at a time."""

    def __init__(
        self,
        *,
        spec: Spec,
        clock: ShellClock,
        sink: EventSink,
        make_kis: ClientFactory,
        make_kiwoom: ClientFactory,
        subscriptions: Sequence[Subscription],
    ) -> None:
        self.core = FailoverCore(spec)
        # the set every client starts from: a switch of broker keeps what was added or released
        self.subscriptions = list(subscriptions)
        self.clock = clock
        self.sink = sink
        self._factories = {KIS: make_kis, KIWOOM: make_kiwoom}
        self._client: Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._stop = self._done = asyncio.Event()
        self._fatal: StockmonError | None = None
        self.stopping = False
        self.clients_started = 0

    def stop(self) -> None:
        """Ask for a clean shutdown (safe from a signal handler, more than once)."""
        if self.stopping:
            return
        self.stopping = True
        self.core.stop(self.clock.monotonic())
        self._pump()

    async def run(self) -> None:
        """Stream until :meth:`stop`."""
        self.core.start(self.clock.monotonic())
        self._pump()
        try:
            await self._done.wait()
        finally:
            self._cancel_timer()
            task = self._task
            if task is not None and not task.done():
                if self._client is not None:
                    self._client.stop()
                await asyncio.gather(task, return_exceptions=True)
        if self._fatal is not None:
            raise self._fatal

    def later(self, fn: Callable[[float], None]) -> None:
        """Feed the core outside the client's own call stack (no re-entrant stop())."""

        def call() -> None:
            fn(self.clock.monotonic())
            self._pump()

        asyncio.get_running_loop().call_soon(call)

    def _outcome(self, broker: str) -> Callable[[Outcome], None]:
        """What a shell's outcome means to the core: only KIS attempts count."""

        def report(outcome: Outcome) -> None:
            if broker != KIS:
                return
            if outcome is Outcome.CONNECTED:
                self.later(self.core.kis_connected)
            else:
                self.later(self.core.kis_failed)

        return report

    def _launch(self, broker: str) -> None:
        factory = self._factories[broker]
        self._start(broker, factory(_Watch(self), self._outcome(broker), tuple(self.subscriptions)))

    def subscribe(self, sub: Subscription) -> None:
        """Add a subscription: to the set the next client starts from, and to the active one."""
        if sub not in self.subscriptions:
            self.subscriptions.append(sub)
        if self._client is not None:
            self._client.subscribe(sub)

    def unsubscribe(self, sub: Subscription) -> None:
        """Release a subscription: from the set, and on the active client."""
        if sub in self.subscriptions:
            self.subscriptions.remove(sub)
        if self._client is not None:
            self._client.unsubscribe(sub)

    def _pump(self) -> None:
        core = self.core
        while (ev := core.next_event()) is not None:
            self._handle(ev)
        if core.mode is Mode.STOPPED:
            self._done.set()
        self._arm(core.get_timer())

    @property
    def active(self) -> Client | None:
        """The client streaming now (KIS or the backup), None between the two."""
        return self._client

    def _handle(self, ev: FailoverEvent) -> None:
        """Carry out one output of the core: run or stop a client, or pass an event on."""
        if isinstance(ev, RunKis):
            self._launch(KIS)
        elif isinstance(ev, RunKiwoom):
            self._launch(KIWOOM)
        elif isinstance(ev, StopKis | StopKiwoom):
            if self._client is not None:
                self._client.stop()
        else:
            self.sink.event(ev)
            self.sink.flush()

    def _start(self, broker: str, client: Client) -> None:
        if self._task is not None and not self._task.done():
            raise LocalProtocolError("a client task is still running")  # never two sockets
        self._client = client
        self.clients_started += 1
        log.info("starting the %s client", broker)
        self._task = asyncio.get_running_loop().create_task(
            self._run_client(broker, client), name=f"{broker}-client"
        )

    async def _run_client(self, broker: str, client: Client) -> None:
        try:
            await client.run()
        except StockmonError as exc:  # configuration (a bad URL): no switch of broker fixes it
            self._fatal = exc
            self._client = None
            self._task = None
            self._done.set()
            return
        except Exception:  # a bug in a client must not leave the runner waiting forever
            log.exception("the %s client failed", broker)
        self._client_ended(broker)

    def _client_ended(self, broker: str) -> None:
        """Tell the core that ``broker``'s client has stopped, and act on what it decides."""
        self._client = None
        self._task = None
        now = self.clock.monotonic()
        if broker == KIS:
            self.core.kis_stopped(now)
        else:
            self.core.kiwoom_stopped(now)
        self._pump()

    def _timer_fired(self, now: float) -> None:
        self.core.handle_timer(now)


__all__ = ["Client", "ClientFactory", "FailoverStream"]
