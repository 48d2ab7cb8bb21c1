#!/usr/bin/env python3
"""The reference client with one Kiwoom or failover behaviour off spec, then ``stockmon stream``.

``backup_mutant.py NAME`` patches one method of the reference's Kiwoom client or failover runner
(the rest of the client is unchanged) and runs the stream command. The conformance suite must fail
each mutant on exactly the clauses it breaks (test_mutants.py). Like reference_mutant.py for
KIS: mutants are test artifacts, the reference itself carries no switch.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from stockmon.cli import main as stockmon_main
from stockmon.redaction import Secret
from stockmon.reference import registry, wiring
from stockmon.reference.failover import core as failover_core
from stockmon.reference.failover.core import FailoverRules, Mode, RunKiwoom, StopKiwoom
from stockmon.reference.failover.runner import FailoverStream
from stockmon.reference.kiwoom.session import KiwoomSessionCore
from stockmon.reference.lifecycle import SubState
from stockmon.settings import Settings


def _no_login() -> None:
    """Never sends LOGIN: registers right after the socket opens."""
    original = KiwoomSessionCore.connected

    def connected(self: KiwoomSessionCore, now: float) -> None:
        original(self, now)
        self._out = [t for t in self._out if json.loads(t).get("trnm") != self.rules.login]
        self._register([k for k, r in self._regs.items() if r.state is SubState.QUEUED])

    KiwoomSessionCore.connected = connected  # type: ignore[method-assign]


def _reg_before_login() -> None:
    """Sends REG first, then LOGIN."""
    original = KiwoomSessionCore.connected

    def connected(self: KiwoomSessionCore, now: float) -> None:
        original(self, now)
        login = self._out
        self._out = []
        self._register([k for k, r in self._regs.items() if r.state is SubState.QUEUED])
        self._out += login

    KiwoomSessionCore.connected = connected  # type: ignore[method-assign]


def _ping_not_verbatim() -> None:
    """Answers PING with the same JSON re-serialised (sorted keys), not the received text."""
    original = KiwoomSessionCore.text_received

    def text_received(self: KiwoomSessionCore, text: str, now: float) -> None:
        try:
            obj = json.loads(text)
        except ValueError:
            obj = None
        if isinstance(obj, dict) and obj.get("trnm") == self.rules.ping:
            self._last_inbound = now
            self._out.append(json.dumps(obj, sort_keys=True, separators=(",", ": ")))
            return
        original(self, text, now)

    KiwoomSessionCore.text_received = text_received  # type: ignore[method-assign]


def _prod_no_token() -> None:
    """Sends LOGIN without a session token even in prod."""
    original = KiwoomSessionCore.__init__

    def init(self: KiwoomSessionCore, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.token_required = False

    KiwoomSessionCore.__init__ = init  # type: ignore[method-assign]
    KiwoomSessionCore.set_credential = lambda self, value: None  # type: ignore[method-assign]


def _accept_missing_secret() -> None:
    """Starts without KIWOOM_APP_SECRET and asks for a token with an empty secretkey."""

    def require_kiwoom(self: Settings) -> tuple[Secret, Secret]:
        assert self.kiwoom_app_key is not None
        return self.kiwoom_app_key, self.kiwoom_app_secret or Secret("")

    Settings.require_kiwoom = require_kiwoom  # type: ignore[method-assign]
    wiring.uses_kiwoom_token = lambda settings: settings.kiwoom_app_key is not None


class _MakeBeforeBreak(FailoverStream):
    """Probes KIS while Kiwoom still streams, and closes Kiwoom only once KIS is back."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._kept: tuple[Any, Any] | None = None
        self._detached: set[int] = set()

    def _pump(self) -> None:
        core = self.core
        while (ev := core.next_event()) is not None:
            if isinstance(ev, StopKiwoom) and core.mode is Mode.LEAVING_BACKUP:
                self._kept = (self._client, self._task)
                self._detached.add(id(self._client))
                self._client, self._task = None, None
                core.kiwoom_stopped(self.clock.monotonic())  # "stopped": it is not
                continue
            if isinstance(ev, RunKiwoom) and self._kept is not None:
                self._client, self._task = self._kept
                self._detached.discard(id(self._client))
                self._kept = None
                continue
            self._handle(ev)
        if core.mode is Mode.KIS and self._kept is not None:
            client, _ = self._kept
            self._kept = None
            client.stop()
        if core.mode is Mode.STOPPED:
            self._done.set()
        self._arm(core.get_timer())

    async def _run_client(self, broker: str, client: Any) -> None:
        await client.run()
        if id(client) in self._detached:  # a kept Kiwoom client stopped after the switch back
            self._detached.discard(id(client))
            return
        self._client_ended(broker)

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            if self._kept is not None:
                client, task = self._kept
                client.stop()
                await asyncio.gather(task, return_exceptions=True)


def _make_before_break() -> None:
    registry.FailoverStream = _MakeBeforeBreak  # type: ignore[misc]


def _rules(**changes: Any) -> Callable[[], None]:
    def patch() -> None:
        original = FailoverRules.from_spec

        def from_spec(spec: Any) -> FailoverRules:
            return replace(original(spec), **changes)

        failover_core.FailoverRules.from_spec = from_spec  # type: ignore[method-assign]

    return patch


def _drop_us_silently() -> None:
    """Leaves out the subscriptions Kiwoom cannot serve without telling anyone."""
    original = KiwoomSessionCore.subscribe

    def subscribe(self: KiwoomSessionCore, sub: Any, now: float) -> None:
        if self.rules.kiwoom_type(sub) is None:
            return
        original(self, sub, now)

    KiwoomSessionCore.subscribe = subscribe  # type: ignore[method-assign]


MUTANTS: dict[str, Callable[[], None]] = {
    "no-login": _no_login,
    "reg-before-login": _reg_before_login,
    "ping-not-verbatim": _ping_not_verbatim,
    "prod-no-token": _prod_no_token,
    "accept-missing-secret": _accept_missing_secret,
    "make-before-break": _make_before_break,
    # fails over after one failed reconnect instead of the budget
    "early-failover": _rules(reconnect_budget=1),
    # never probes KIS again
    "no-switch-back": _rules(probe_interval_s=1e12),
    # probes KIS every 10 spec seconds (each probe closes the backup socket)
    "probe-storm": _rules(probe_interval_s=10.0),
    "drop-us-silently": _drop_us_silently,
}


def main() -> int:
    """Apply one patch, then run ``stockmon stream``."""
    if len(sys.argv) != 2 or sys.argv[1] not in MUTANTS:
        print(f"usage: backup_mutant.py {{{','.join(MUTANTS)}}}", file=sys.stderr)
        return 2
    MUTANTS[sys.argv[1]]()
    return stockmon_main(["stream"])


if __name__ == "__main__":
    sys.exit(main())
