"""What every broker mock's profile holds: the values both dialects resolve from the spec the same way.

Each dialect's ``profile`` module subclasses :class:`BrokerProfile` with its own wire facts; this
base keeps the shared part (version, REST auth paths and headers, credential shapes, token life,
default WebSocket port) in one place, so the two mocks cannot drift on what they have in common.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from stockmon.spec import Spec


@dataclass(frozen=True)
class BrokerProfile:
    """The resolved values every broker mock has."""

    spec: Spec
    token_path: str
    revoke_path: str
    header_names: Mapping[str, str]
    credential_lengths: Mapping[str, int]
    token_validity_s: float
    default_ws_port: int
