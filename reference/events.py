"""Events the session core hands to its shell (``SessionCore.next_event()``).

Two families: *requests* the shell must carry out (:class:`OpenSocket`, :class:`CloseSocket`) and
*reports* it may print or count (data, status changes, broker errors, malformed frames). Every event
is an immutable value; none holds a secret.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeAlias

from stockmon.reference.errors import BrokerError, RemoteProtocolError
from stockmon.reference.frames import Frame


@dataclass(frozen=True, slots=True)
class OpenSocket:
    """Open the (single) socket: wait at least ``min_delay_s`` spec seconds plus the shell's backoff.

    ``new_approval_key`` asks the shell to fetch a fresh approval key first (POL-AUTH-FAILED). The
    core only ever asks for this while no socket is open (WS-SINGLE-SOCKET).
    """

    reason: str
    min_delay_s: float = 0.0
    new_approval_key: bool = False


@dataclass(frozen=True, slots=True)
class CloseSocket:
    """Close the socket now and report :meth:`SessionCore.closed` once it is fully closed."""

    reason: str


@dataclass(frozen=True, slots=True)
class DataReceived:
    """A parsed data frame (one or more records of one TR)."""

    frame: Frame


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


@dataclass(frozen=True, slots=True)
class BrokerErrorReceived:
    """The broker sent an error body (ERR-WS-BODY); ``error`` is typed by who can fix it."""

    error: BrokerError
    tr_id: str | None = None
    key: str | None = None


@dataclass(frozen=True, slots=True)
class MalformedFrame:
    """A frame that did not parse; it was dropped and counted, the stream goes on."""

    error: RemoteProtocolError
    excerpt: str = field(default="")


Event: TypeAlias = (
    OpenSocket | CloseSocket | DataReceived | StatusChanged | BrokerErrorReceived | MalformedFrame
)
