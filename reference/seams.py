"""Seams between the streaming shell and the credential / fleet machinery, for every broker.

The shell (:mod:`stockmon.reference.shell`) needs two things it does not own:

* a **credential** for the session (the KIS approval key of WS-APPROVAL-KEY, the Kiwoom session token
  of TOKEN-KIWOOM-SESSION), fetched fresh after the broker rejected the current one:
  :class:`CredentialSource` (one name for both, ``credential(force_new=...)``);
* **permission to open the market-data socket**. One process alone needs none, but a fleet sharing
  one app key may hold only one session between them (WS-SINGLE-SOCKET), so a fleet implementation
  grants the socket to one process at a time and can take it back: :class:`ConnectGate`.

Contract of :class:`ConnectGate`: ``acquire()`` before each socket (it clears ``lost()``), close
the socket at once if ``lost()`` becomes set, ``release()`` once per acquire after the socket is
fully closed, even after a loss; ``release()`` must not raise on a store outage.

The credential types an issuer returns (:data:`Issued`) and a shared cache hands out
(:class:`CredentialCache`) are protocols here, so the dialects (which issue) and the fleet (which
shares) meet without importing each other.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from stockmon.redaction import Secret
from stockmon.reference.errors import RemoteProtocolError

Issued = tuple[str, Mapping[str, Any]]
"""What an issuance call returns: the credential and the whole response body."""
Issuer = Callable[[float], Awaitable[Issued]]
"""An issuance call bounded by a budget of real seconds."""


def parse_kst(text: str, fmt: str, utc_offset_s: int) -> float:
    """POSIX timestamp of a broker wall time written without a zone (KST for KIS and Kiwoom)."""
    naive = datetime.strptime(text, fmt)  # the zone is not in the text; it comes from the spec
    return naive.replace(tzinfo=timezone(timedelta(seconds=utc_offset_s))).timestamp()


def prime_format(fmt: str) -> None:
    """Parse one sample of ``fmt`` now, at start-up: a process' first ``strptime`` imports
    ``_strptime`` and compiles the format (about 3 ms), which would otherwise fall inside its first
    refresh, on the critical path of every caller waiting for it (token_storm.py)."""
    # a format that cannot read its own output fails at the first response, named there
    with contextlib.suppress(ValueError):
        datetime.strptime(datetime(2000, 1, 2, 3, 4, 5).strftime(fmt), fmt)


def expiry_at(text: str, fmt: str, utc_offset_s: int, field: str) -> float:
    """:func:`parse_kst` of a token response's expiry ``field``; a text that does not match the
    spec's format is the broker's protocol error, for both brokers alike."""
    try:
        return parse_kst(text, fmt, utc_offset_s)
    except ValueError:
        raise RemoteProtocolError(
            f"token response field {field!r} does not match {fmt!r}"
        ) from None


class Credential(Protocol):
    """One cached credential; only its value matters to the users."""

    @property
    def value(self) -> Secret:
        """The secret itself."""
        ...


C = TypeVar("C", bound=Credential)


class CredentialCache(Protocol, Generic[C]):
    """A credential shared by a fleet (fleet.token_manager.SharedCredential)."""

    async def get(self) -> C:
        """A valid credential (issued or refreshed as needed)."""
        ...

    async def invalidate(self, rejected: C) -> C:
        """A credential other than ``rejected``, which the broker refused."""
        ...

    async def aclose(self) -> None:
        """Stop a refresh in flight."""
        ...


@runtime_checkable
class CredentialSource(Protocol):
    """Source of the session credential a shell puts into its core before each socket."""

    async def credential(self, *, force_new: bool = False) -> str | None:
        """The current credential (None: the session goes without one, where the spec allows);
        ``force_new`` after the broker rejected it.

        Raises a :class:`~stockmon.reference.errors.ClientError` (``BrokerError``/``AuthError`` for
        an error answer, ``NetworkError`` when the endpoint cannot be reached); the shell reports
        it, backs off and asks again.
        """
        ...


class SharedCredentialSource:
    """:class:`CredentialSource` backed by a shared cache; without one (no credentials) None."""

    def __init__(self, manager: CredentialCache[Any] | None) -> None:
        self.manager = manager
        self._last: Any = None

    def __repr__(self) -> str:
        return f"SharedCredentialSource(shared={self.manager is not None})"

    async def credential(self, *, force_new: bool = False) -> str | None:
        """The current value; with ``force_new`` a different one than the value last handed out."""
        if self.manager is None:
            return None
        cred: Credential
        if force_new and self._last is not None:
            cred = await self.manager.invalidate(self._last)
        else:
            cred = await self.manager.get()
        self._last = cred
        return cred.value.reveal()

    async def aclose(self) -> None:
        """Stop a refresh in flight."""
        if self.manager is not None:
            await self.manager.aclose()


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
