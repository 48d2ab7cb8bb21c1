"""A mock on its own event loop in a background thread, for synchronous users (fixtures, runners).

Shared by the KIS and the Kiwoom mock: both are started and stopped the same way, only the factory
differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

from stockmon.mockserver.errors import MockError
from stockmon.mockserver.server import MockServer

T = TypeVar("T")
M = TypeVar("M", bound="MockServer[Any]")


class BackgroundMock(Generic[M]):
    """Runs the mock built by ``factory`` on a private loop in a daemon thread."""

    def __init__(self, factory: Callable[[], M], label: str) -> None:
        self._factory = factory
        self._label = label
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._mock: M | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None

    @property
    def mock(self) -> M:
        """The running mock."""
        if self._mock is None:
            raise MockError(f"{type(self).__name__} is not started")
        return self._mock

    def start(self, timeout_s: float = 10.0) -> M:
        """Start the thread and wait until the listeners are bound."""
        self._thread = threading.Thread(
            target=self._run, name=f"stockmon-{self._label}-mock", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise MockError(f"the {self._label} mock did not start in time")
        if self._error is not None:
            raise self._error
        return self.mock

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        finally:
            loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        try:
            mock = self._factory()
            await mock.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._mock = mock
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await mock.stop()

    def call(self, coro: Coroutine[Any, Any, T], timeout_s: float = 30.0) -> T:
        """Run a coroutine on the mock's loop and return its result."""
        if self._loop is None:
            coro.close()
            raise MockError(f"{type(self).__name__} is not started")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the mock and join the thread."""
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout_s)

    def __enter__(self) -> M:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
