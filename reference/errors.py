"""Errors of the reference client.

ClientError (StockmonError)          root of everything the reference client raises on purpose
├── LocalProtocolError                we misused our own session core (a bug or bad call order)
├── RemoteProtocolError               the peer sent something the spec does not allow
│   └── FrameError                    a data frame that does not parse against its field layout
├── BrokerError                       the broker answered with an error body (code + message)
│   ├── AuthError                     an auth failure; ``retryable`` says whether a refresh can help
│   └── TokenThrottledError           token issuance refused for now (EGW00133); wait ``retry_after``
├── NetworkError                      the connection failed (refused, reset, timeout)
└── CoordinationError                 the fleet's shared state (Redis cache, leases) cannot serve us
    ├── CredentialUnavailableError    no valid token / approval key within the wait bound
    └── LeaseLostError                a lease lapsed or was taken over before its holder was done
"""

from __future__ import annotations

from stockmon.errors import StockmonError


class ClientError(StockmonError):
    """Root of the reference client's errors."""


class LocalProtocolError(ClientError):
    """The caller used the session core in a way its state does not allow."""


class RemoteProtocolError(ClientError):
    """The peer violated the protocol."""


class FrameError(RemoteProtocolError):
    """A realtime data frame is malformed; the stream goes on, the frame is counted and dropped."""


class BrokerError(ClientError):
    """The broker returned an error body."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{code}: {message}" + (f" (HTTP {status})" if status else ""))
        self.code = code
        self.message = message
        self.status = status


class AuthError(BrokerError):
    """Authentication failed; ``retryable`` is True when a token refresh may fix it."""

    def __init__(
        self, code: str, message: str, status: int | None = None, *, retryable: bool
    ) -> None:
        super().__init__(code, message, status)
        self.retryable = retryable


class NetworkError(ClientError):
    """The network failed underneath us."""


class TokenThrottledError(BrokerError):
    """The token endpoint throttled issuance (TOKEN-KIS-THROTTLE); retry after ``retry_after`` s."""

    def __init__(
        self, code: str, message: str, status: int | None = None, *, retry_after: float
    ) -> None:
        super().__init__(code, message, status)
        self.retry_after = retry_after


class CoordinationError(ClientError):
    """The shared cache or a lease (Redis) could not be used; the message says what to check."""


class CredentialUnavailableError(CoordinationError):
    """No valid credential could be had within the wait bound (issuance failing, Redis down)."""


class LeaseLostError(CoordinationError):
    """A lease lapsed or changed hands before its holder finished what it guarded."""
