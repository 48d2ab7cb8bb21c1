"""Helpers for the token-manager tests: a scripted issuer and simulated processes sharing Redis."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from stockmon.clock import Clock
from stockmon.reference.fleet.token_manager import SharedCredential, Tuning
from stockmon.reference.fleet.token_state import TokenPolicy
from stockmon.reference.fleet.token_store import CredentialStore
from stockmon.spec import load_spec

SPEC = load_spec("1.1")
VALIDITY = SPEC.clause("TOKEN-KIS-BEARER").number("validity_s")
WINDOW = SPEC.clause("TOKEN-KIS-REFRESH").number("refresh_before_expiry_s")
THROTTLE = SPEC.clause("TOKEN-KIS-THROTTLE").number("min_interval_s")
REL = SPEC.clause("TOKEN-KIS-EXPIRY").strings("fields")[0]
# Spec seconds per real second in these tests: the 60 s throttle becomes 0.3 s of real time.
SCALE = 200.0

FAST = Tuning(
    lease_ttl=1.0,
    write_margin=0.1,
    poll_base=0.01,
    poll_cap=0.05,
    background_retry=0.01,
    retry_base=0.04,
    retry_cap=0.16,
    store_backoff_base=0.05,
    store_backoff_cap=0.2,
    max_wait=5.0,
)


@dataclass
class FakeIssuer:
    """Issues numbered tokens; ``script`` items (exceptions or delays) are used first, in order."""

    validity: float = VALIDITY
    delay: float = 0.0
    script: deque[BaseException | float] = field(default_factory=deque)
    calls: list[float] = field(default_factory=list)
    issued: int = 0
    same_value: str | None = None  # answer this value every time (the broker's reuse window)
    expires_in: Callable[[], float] | None = None  # default: ``validity`` for every issuance

    async def __call__(self, budget: float) -> tuple[str, Mapping[str, Any]]:
        """One issuance request (``budget`` = the lease time the manager can spare)."""
        self.calls.append(time.monotonic())
        delay = self.delay
        if self.script:
            item = self.script.popleft()
            if isinstance(item, BaseException):
                raise item
            delay = item
        await asyncio.sleep(delay)
        self.issued += 1
        value = self.same_value or f"tok-{self.issued:04d}-0123456789abcdef"
        return value, {REL: self.validity if self.expires_in is None else self.expires_in()}


def make_manager(
    store: CredentialStore,
    issuer: FakeIssuer,
    clock: Clock,
    holder: str,
    *,
    tuning: Tuning = FAST,
    scale: float = SCALE,
    kind: str = "token",
) -> SharedCredential:
    """A token manager as one simulated process would build it."""
    return SharedCredential(
        kind,
        store,
        issuer,
        TokenPolicy.for_token(SPEC, scale),
        clock=clock,
        holder=holder,
        tuning=tuning,
    )
