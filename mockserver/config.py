"""Mock configs: what every mock run shares (:class:`CommonConfig`), then one part per broker.

Every spec duration is in spec seconds. ``None`` means "the value of the selected spec version"
(each dialect's ``profile`` module resolves it); a period or grace of ``0`` switches it off.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from stockmon.mockserver.errors import MockConfigError
from stockmon.spec import available_versions, latest_version

DEFAULT_SYMBOLS = ("005930", "000660", "035720", "DNASAAPL", "DNASMSFT", "DNYSIBM")
# Largest inbound WebSocket message accepted; bigger ones are closed with 1009 by websockets.
# Non-normative: broker packets are a few hundred bytes.
DEFAULT_WS_MAX_SIZE = 64 * 1024
DEFAULT_TRACE_MAX_BYTES = 256 * 1024 * 1024
# Kiwoom environments whose LOGIN rule applies (TOKEN-KIWOOM-SESSION).
ENVS = ("mock", "prod")
T = TypeVar("T")


def chosen(value: T | None, default: T) -> T:
    """A config value, or the profile's ``default`` where the config leaves it ``None``."""
    return default if value is None else value


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (``127.0.0.0/8``, ``::1``, ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _non_negative(config: object, *names: str) -> None:
    for name in names:
        v = getattr(config, name)
        if v is not None and not (math.isfinite(v) and v >= 0):
            raise MockConfigError(f"{name} must be >= 0 spec seconds or None, got {v!r}")


MARKET_MODES = ("always", "hours")


@dataclass(frozen=True)
class CommonConfig:
    """What one run of any broker's mock needs. Immutable; faults change behaviour, not the config."""

    spec_version: str = field(default_factory=latest_version)
    host: str = "127.0.0.1"
    rest_port: int = 0
    ws_port: int = 0
    seed: int = 1
    time_scale: float = 1.0
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    # "always": every market trades at any hour (development); "hours": the spec's sessions.
    market: str = "always"
    token_validity_s: float | None = None
    # Market simulator: data frames per spec second per registration.
    tick_rate_hz: float = 2.0
    # Scenario: a YAML file path or an already-parsed mapping (schemas/scenario.json).
    scenario: str | dict[str, Any] | None = None
    ws_max_size: int = DEFAULT_WS_MAX_SIZE
    # Keep only the newest N trace records (None = all); the CLI sets a bound for long runs.
    trace_limit: int | None = None
    # ... and at most about this many bytes of them (texts counted; None = unbounded). Not
    # normative: a memory bound of the mock (256 MiB keeps a long run far from the machine's RAM).
    trace_max_bytes: int | None = DEFAULT_TRACE_MAX_BYTES
    # Bearer token the control plane (/_mock/*) requires; None = none on a loopback host, a random
    # one (see MockServer.control_token) on any other address.
    control_token: str | None = field(default=None, repr=False)
    # Real seconds a REST connection may take to send a request (half-open connections are
    # closed), and may sit idle between keep-alive requests. Not normative: a listener's hygiene.
    rest_request_timeout_s: float = 10.0
    rest_idle_timeout_s: float = 120.0
    # Real seconds a WebSocket connection may take to complete its upgrade (a client that opens
    # TCP and never sends the handshake, or half of it, is dropped). Not normative, like the above.
    ws_open_timeout_s: float = 10.0
    # Fixed test credentials (None = derived from the seed, shaped like real ones).
    app_key: str | None = None
    app_secret: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.spec_version not in available_versions():
            raise MockConfigError(
                f"spec_version {self.spec_version!r} is unknown; use one of "
                + ", ".join(available_versions())
            )
        if not (math.isfinite(self.time_scale) and self.time_scale > 0):
            raise MockConfigError(f"time_scale must be a positive number, got {self.time_scale!r}")
        for name in ("rest_port", "ws_port"):
            port = getattr(self, name)
            if not (isinstance(port, int) and 0 <= port <= 65535):
                raise MockConfigError(f"{name} must be 0..65535 (0 = free port), got {port!r}")
        _non_negative(self, "token_validity_s")
        if self.market not in MARKET_MODES:
            raise MockConfigError(f"market must be one of {', '.join(MARKET_MODES)}")
        if not (math.isfinite(self.tick_rate_hz) and self.tick_rate_hz >= 0):
            raise MockConfigError(f"tick_rate_hz must be >= 0, got {self.tick_rate_hz!r}")
        if self.ws_max_size < 1024:
            raise MockConfigError("ws_max_size must be at least 1024 bytes")
        if self.trace_limit is not None and self.trace_limit < 1:
            raise MockConfigError("trace_limit must be >= 1 or None")
        if not (self.rest_request_timeout_s > 0 and self.rest_idle_timeout_s > 0):
            raise MockConfigError("rest_request_timeout_s and rest_idle_timeout_s must be > 0")
        if not self.ws_open_timeout_s > 0:
            raise MockConfigError("ws_open_timeout_s must be > 0")
        if self.trace_max_bytes is not None and self.trace_max_bytes < 1024:
            raise MockConfigError("trace_max_bytes must be >= 1024 or None")


@dataclass(frozen=True)
class MockConfig(CommonConfig):
    """One KIS mock run."""

    # Keep-alive and session behaviour (None = selected spec profile; 0 = off).
    server_pingpong_period_s: float | None = None
    unanswered_pingpong_grace_s: float | None = None
    reflect_client_ping: bool | None = None
    # Whether an RFC 6455 pong frame also answers a server PINGPONG (the spec asks for a text echo).
    accept_pong_frame_answer: bool = False
    # How long an appkey's session slot stays taken after an abrupt disconnect (protocol/kis.md §2.8).
    appkey_slot_hold_s: float = 0.0
    # Token endpoint (None = spec values).
    token_throttle: bool | None = None
    token_reuse_window_s: float | None = None
    # Records per data frame.
    max_records_per_frame: int = 3
    multi_record_probability: float = 0.2
    replay_path: str | None = None
    replay_loop: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        _non_negative(
            self, "server_pingpong_period_s", "unanswered_pingpong_grace_s", "token_reuse_window_s"
        )
        if self.max_records_per_frame < 1:
            raise MockConfigError("max_records_per_frame must be >= 1")
        if not 0 <= self.multi_record_probability <= 1:
            raise MockConfigError("multi_record_probability must be within 0..1")
        if self.replay_path is not None and not Path(self.replay_path).is_file():
            raise MockConfigError(f"replay file {self.replay_path!r} does not exist")


@dataclass(frozen=True)
class KiwoomMockConfig(CommonConfig):
    """One Kiwoom mock run."""

    # Kiwoom environment whose LOGIN rule applies (TOKEN-KIWOOM-SESSION): "prod" requires a valid
    # token, "mock" lets LOGIN go without one. None = the profile's login_required.
    env: str | None = None
    # Keep-alive (None = profile; 0 = no server PING).
    ping_period_s: float | None = None
    max_missed_pings: int | None = None
    login_timeout_s: float | None = None
    # Probability that a round repeats an entry (two trades of one item in one frame).
    repeat_entry_probability: float = 0.2

    @classmethod
    def beside(cls, config: CommonConfig, **fields: Any) -> KiwoomMockConfig:
        """The Kiwoom part of a run beside ``config``: same spec, host, seed, clock and symbols."""
        same = ("spec_version", "host", "seed", "time_scale", "symbols", "market", "control_token")
        return cls(**{name: getattr(config, name) for name in same}, **fields)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.env is not None and self.env not in ENVS:
            raise MockConfigError(f"env must be one of {', '.join(ENVS)} or None, got {self.env!r}")
        _non_negative(self, "ping_period_s", "login_timeout_s")
        if self.max_missed_pings is not None and self.max_missed_pings < 1:
            raise MockConfigError("max_missed_pings must be >= 1 or None")
        if not 0 <= self.repeat_entry_probability <= 1:
            raise MockConfigError("repeat_entry_probability must be within 0..1")
