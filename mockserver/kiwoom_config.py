"""KiwoomMockConfig: how one Kiwoom mock run behaves; every duration in it is in spec seconds.

``None`` means "the value of the selected spec version" (:mod:`~stockmon.mockserver.kiwoom_profile`);
a period of ``0`` switches that behaviour off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from stockmon.mockserver.config import DEFAULT_SYMBOLS, DEFAULT_WS_MAX_SIZE
from stockmon.mockserver.errors import MockConfigError
from stockmon.spec import available_versions, latest_version

ENVS = ("mock", "prod")


@dataclass(frozen=True)
class KiwoomMockConfig:
    """One Kiwoom mock run. Immutable; faults change behaviour at run time, not the config."""

    spec_version: str = field(default_factory=latest_version)
    host: str = "127.0.0.1"
    rest_port: int = 0
    ws_port: int = 0
    seed: int = 1
    time_scale: float = 1.0
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    # Kiwoom environment whose LOGIN rule applies (TOKEN-KIWOOM-SESSION): "prod" requires a valid
    # token, "mock" lets LOGIN go without one. None = the profile's login_required.
    env: str | None = None
    # Keep-alive (None = profile; 0 = no server PING).
    ping_period_s: float | None = None
    max_missed_pings: int | None = None
    login_timeout_s: float | None = None
    token_validity_s: float | None = None
    # Market simulator: REAL rounds per spec second per registration, and extra entries.
    tick_rate_hz: float = 2.0
    # Probability that a round repeats an entry (two trades of one item in one frame).
    repeat_entry_probability: float = 0.2
    scenario: str | dict[str, Any] | None = None
    ws_max_size: int = DEFAULT_WS_MAX_SIZE
    trace_limit: int | None = None
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
        if self.env is not None and self.env not in ENVS:
            raise MockConfigError(f"env must be one of {', '.join(ENVS)} or None, got {self.env!r}")
        for name in ("ping_period_s", "login_timeout_s", "token_validity_s"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(v) and v >= 0):
                raise MockConfigError(f"{name} must be >= 0 spec seconds or None, got {v!r}")
        if self.max_missed_pings is not None and self.max_missed_pings < 1:
            raise MockConfigError("max_missed_pings must be >= 1 or None")
        if not (math.isfinite(self.tick_rate_hz) and self.tick_rate_hz >= 0):
            raise MockConfigError(f"tick_rate_hz must be >= 0, got {self.tick_rate_hz!r}")
        if not 0 <= self.repeat_entry_probability <= 1:
            raise MockConfigError("repeat_entry_probability must be within 0..1")
        if self.ws_max_size < 1024:
            raise MockConfigError("ws_max_size must be at least 1024 bytes")
        if self.trace_limit is not None and self.trace_limit < 1:
            raise MockConfigError("trace_limit must be >= 1 or None")
