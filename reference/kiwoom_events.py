"""Events of the Kiwoom session core and of the failover runner, carrying their ``source`` broker.

The shells reuse the KIS requests (:class:`~stockmon.reference.events.OpenSocket`,
:class:`~stockmon.reference.events.CloseSocket`; for Kiwoom ``new_approval_key`` asks for a new
session token) and the report types, subclassed with a ``source`` field, so one sink prints both
brokers' events with the right ``source`` (schema ``event``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from stockmon.reference.events import (
    BrokerErrorReceived,
    CloseSocket,
    Event,
    MalformedFrame,
    OpenSocket,
    StatusChanged,
)
from stockmon.reference.kiwoom_frames import KiwoomRecord

KIWOOM = "kiwoom"
KIS = "kis"


@dataclass(frozen=True, slots=True)
class SourcedStatus(StatusChanged):
    """A status report of a named broker (``kiwoom``, or ``kis`` for the failover runner's)."""

    source: str = KIWOOM


@dataclass(frozen=True, slots=True)
class KiwoomBrokerError(BrokerErrorReceived):
    """Kiwoom answered with an error (a LOGIN or REG reply with a non-zero return_code)."""

    source: str = KIWOOM


@dataclass(frozen=True, slots=True)
class KiwoomMalformed(MalformedFrame):
    """A Kiwoom frame or REAL entry that did not parse; dropped and counted."""

    source: str = KIWOOM


@dataclass(frozen=True, slots=True)
class KiwoomData:
    """The parsed entries of one REAL frame, with the KIS subscription each one serves."""

    records: tuple[KiwoomRecord, ...]
    kis_tr_ids: tuple[str | None, ...]
    source: str = KIWOOM


KiwoomEvent: TypeAlias = Event | KiwoomData

__all__ = [
    "KIS",
    "KIWOOM",
    "CloseSocket",
    "KiwoomBrokerError",
    "KiwoomData",
    "KiwoomEvent",
    "KiwoomMalformed",
    "OpenSocket",
    "SourcedStatus",
]
