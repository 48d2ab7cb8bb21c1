"""MockConfig: how one mock run behaves; every spec duration in it is in spec seconds.

``None`` means "the value of the selected spec version" (see :mod:`stockmon.mockserver.profile`);
a period or grace of ``0`` switches that behaviour off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stockmon.mockserver.errors import MockConfigError
from stockmon.spec import available_versions, latest_version

DEFAULT_SYMBOLS = ("005930", "000660", "035720", "DNASAAPL", "DNASMSFT", "DNYSIBM")
# Largest inbound WebSocket message accepted; bigger ones are closed with 1009 by websockets.
# Non-normative: KIS packets are a few hundred bytes.
DEFAULT_WS_MAX_SIZE = 64 * 1024


@dataclass(frozen=True)
class MockConfig:
    """One mock run. Immutable; faults change behaviour at run time, not the config."""

    spec_version: str = field(default_factory=latest_version)
    host: str = "127.0.0.1"
    rest_port: int = 0
    ws_port: int = 0
    seed: int = 1
    time_scale: float = 1.0
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
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
    token_validity_s: float | None = None
    token_reuse_window_s: float | None = None
    # Market simulator: frames per spec second per registration, and records per frame.
    tick_rate_hz: float = 2.0
    max_records_per_frame: int = 3
    multi_record_probability: float = 0.2
    replay_path: str | None = None
    replay_loop: bool = True
    # Scenario: a YAML file path or an already-parsed mapping (schemas/scenario.json).
    scenario: str | dict[str, Any] | None = None
    ws_max_size: int = DEFAULT_WS_MAX_SIZE
    # Keep only the newest N trace records (None = all); the CLI sets a bound for long runs.
    trace_limit: int | None = None
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
        for name in (
            "server_pingpong_period_s",
            "unanswered_pingpong_grace_s",
            "token_validity_s",
            "token_reuse_window_s",
        ):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(v) and v >= 0):
                raise MockConfigError(f"{name} must be >= 0 spec seconds or None, got {v!r}")
        if not (math.isfinite(self.tick_rate_hz) and self.tick_rate_hz >= 0):
            raise MockConfigError(f"tick_rate_hz must be >= 0, got {self.tick_rate_hz!r}")
        if self.max_records_per_frame < 1:
            raise MockConfigError("max_records_per_frame must be >= 1")
        if not 0 <= self.multi_record_probability <= 1:
            raise MockConfigError("multi_record_probability must be within 0..1")
        if self.ws_max_size < 1024:
            raise MockConfigError("ws_max_size must be at least 1024 bytes")
        if self.trace_limit is not None and self.trace_limit < 1:
            raise MockConfigError("trace_limit must be >= 1 or None")
        if self.replay_path is not None and not Path(self.replay_path).is_file():
            raise MockConfigError(f"replay file {self.replay_path!r} does not exist")
