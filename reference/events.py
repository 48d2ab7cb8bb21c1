"""The one event family of every broker's session core, shell and failover runner.

Two kinds: *requests* the shell must carry out (:class:`OpenSocket`, :class:`CloseSocket`) and
*reports* it hands to the sink (data, status changes, broker errors, malformed frames). Every report
names its ``source`` broker (``kis``, ``kiwoom``), so one sink prints every broker's events with the
right ``source`` (schema ``event``). Every event is an immutable value; none holds a secret.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass
from typing import NamedTuple, Protocol, TypeAlias

from stockmon.reference.errors import BrokerError, RemoteProtocolError


@dataclass(frozen=True, slots=True)
class OpenSocket:
    """Open the (single) socket: wait at least ``min_delay_s`` spec seconds plus the shell's backoff.

    ``new_credential`` asks the shell to fetch a fresh credential first (the KIS approval key after
    POL-AUTH-FAILED, the Kiwoom session token after an auth refusal). The core only ever asks for
    this while no socket is open (WS-SINGLE-SOCKET).
    """

    reason: str
    min_delay_s: float = 0.0
    new_credential: bool = False


@dataclass(frozen=True, slots=True)
class CloseSocket:
    """Close the socket now and report ``closed`` to the core once it is fully closed."""

    reason: str


@dataclass(frozen=True, slots=True)
class Row:
    """One live-table row, as every dialect builds it: a trade, or the best level of a book.

    ``time`` is the exchange-local ``HHMMSS`` of the record; the table adds date and zone.
    """

    time: str
    price: object = None
    volume: object = None
    bid: tuple[object, object] | None = None
    ask: tuple[object, object] | None = None


class Records(Protocol):
    """The parsed records of one data frame, as a dialect hands them to the sinks."""

    @property
    def count(self) -> int:
        """How many records (one output line each)."""
        ...

    def json_lines(self, source: str) -> str:
        """One JSON line per record (schema ``event``), joined; FrameError for a bad value."""
        ...

    def table_rows(self) -> list[tuple[str, str, Row]]:
        """``(tr_id, key, row)`` per record for the live table."""
        ...


class DataReceived(NamedTuple):
    """A parsed data frame (one or more records).

    A named tuple, not a dataclass like the other events: one is made per data frame, and a tuple
    is built in a third of the time of a frozen dataclass (an immutable value all the same).
    """

    records: Records
    source: str


@dataclass(frozen=True, slots=True)
class StatusChanged:
    """A change worth telling the operator (and the conformance suite) about.

    ``state`` is a short word (connecting, connected, subscribed, reconnecting ...), ``reason`` a
    short token (idle_timeout, auth_refresh, session_in_use ...), ``detail`` free text.
    """

    state: str
    reason: str = ""
    tr_id: str | None = None
    key: str | None = None
    code: str | None = None
    detail: str = ""
    backoff_s: float | None = None
    # RFC 3339 UTC: when the credential a token_renewed status announces expires (broker clock)
    expires_at: str | None = None
    _: KW_ONLY
    source: str


@dataclass(frozen=True, slots=True)
class BrokerErrorReceived:
    """The broker sent an error body (ERR-WS-BODY, a refused LOGIN/REG); ``error`` is typed."""

    error: BrokerError
    tr_id: str | None = None
    key: str | None = None
    _: KW_ONLY
    source: str


@dataclass(frozen=True, slots=True)
class MalformedFrame:
    """A frame that did not parse; it was dropped and counted, the stream goes on."""

    error: RemoteProtocolError
    excerpt: str = ""
    _: KW_ONLY
    source: str


Report: TypeAlias = StatusChanged | BrokerErrorReceived | MalformedFrame
Event: TypeAlias = OpenSocket | CloseSocket | DataReceived | Report
