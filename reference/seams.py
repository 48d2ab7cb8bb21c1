"""Seams between the streaming shell and the credential / fleet machinery.

The streaming shell (:mod:`stockmon.reference.shell`) needs two things it does not own:

* an **approval key** for the WebSocket headers (WS-APPROVAL-KEY), fetched fresh after the broker
  rejects the current one (POL-AUTH-FAILED ``ws_codes``): :class:`ApprovalKeyProvider`;
* **permission to open the market-data socket**. One process alone needs none, but a fleet sharing
  one appkey may hold only one session between them (WS-SINGLE-SOCKET, WS-SESSION-LIMITS
  ``sessions_per_appkey``), so a fleet implementation grants the socket to one process at a time
  and can take it back: :class:`ConnectGate`.

Default implementations here are for a single process: :class:`OpenGate` always grants. A direct
approval-key fetcher lives in :mod:`stockmon.reference.approval`. The Redis-backed versions (shared
cache, fleet-wide lease) plug in behind the same protocols, chosen by ``stockmon stream`` when
``REDIS_URL`` is set.

Contract of :class:`ConnectGate`, as the shell uses it::

    await gate.acquire()          # blocks until this process may open the socket
    ... open socket, stream ...   # meanwhile, if gate.lost() becomes set: close the socket now
    ... socket fully closed ...
    await gate.release()          # always called once per successful acquire(), even after a loss

``acquire()`` clears the event returned by ``lost()``; an implementation sets it when the permission
ends early (lease expired, taken over, store unreachable for too long). ``release()`` must be safe to
call after a loss and must not raise on a store outage (the shell ignores its errors, logs them and
goes on).
"""

from __future__ import annotations

import asyncio
from typing import Protocol, runtime_checkable


@runtime_checkable
class ApprovalKeyProvider(Protocol):
    """Source of the WebSocket approval key (WS-APPROVAL-KEY)."""

    async def approval_key(self, *, force_new: bool = False) -> str:
        """The current approval key; ``force_new`` after the broker rejected it (POL-AUTH-FAILED).

        Raises a :class:`~stockmon.reference.errors.ClientError` (``BrokerError``/``AuthError`` for
        an error answer, ``NetworkError`` when the endpoint cannot be reached); the shell reports it,
        backs off and asks again.
        """
        ...


@runtime_checkable
class ConnectGate(Protocol):
    """Permission to hold the one market-data socket (see the module docstring for the contract)."""

    async def acquire(self) -> None:
        """Wait until this process may open the socket."""
        ...

    def lost(self) -> asyncio.Event:
        """An event set when the permission was lost and the socket must close now."""
        ...

    async def release(self) -> None:
        """Give the permission back once the socket is fully closed."""
        ...


class OpenGate:
    """The single-process gate: always granted, never lost."""

    def __init__(self) -> None:
        self._lost = asyncio.Event()

    async def acquire(self) -> None:
        """Granted at once."""
        self._lost.clear()

    def lost(self) -> asyncio.Event:
        """Never set."""
        return self._lost

    async def release(self) -> None:
        """Nothing to give back."""
