"""Hypothesis state machine: random inputs and faults against the session core and a model server.

Properties (WS-SINGLE-SOCKET, WS-SESSION-LIMITS, resubscription after reconnect): never two sockets,
never more registrations than the cap at the server, and once things settle every wanted
subscription is registered again (or reported over the cap) — none is ever lost.
"""

from __future__ import annotations

import json
from collections import deque

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from stream_support import (
    APPROVAL,
    Wire,
    ack,
    code,
    data_frame,
    packet_kind,
    sample_fields,
    server_ping,
)

from stockmon.reference.events import StatusChanged
from stockmon.reference.kis.session import SessionCore, SubState
from stockmon.settings import Subscription
from stockmon.spec import Spec, load_spec

POOL = [Subscription("H0STCNT0", f"{i:06d}") for i in range(48)] + [
    Subscription("HDFSCNT0", f"DNAS{s}") for s in ("AAPL", "MSFT", "TSLA")
]


class ModelServer:
    """A KIS server reduced to what the properties need: registrations, answers, faults."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.cap = (
            spec.clause("WS-SESSION-LIMITS").integer("max_registrations")
            if spec.has("WS-SESSION-LIMITS")
            else None
        )
        self.regs: set[tuple[str, str]] = set()
        self.answers: deque[str] = deque()
        self.already: set[tuple[str, str]] = set()
        self.reflect = True
        self.max_regs = 0
        self.ok = next(c for c, v in spec.codes["ws"].items() if v["rt_cd"] == "0")
        self.already_code = code(spec, "POL-ALREADY-SUBSCRIBED", "code")
        self.has_unsub = spec.has("PKT-UNSUBSCRIBE")

    def reset(self) -> None:
        self.regs.clear()
        self.answers.clear()

    def receive(self, text: str) -> None:
        pkt = json.loads(text)
        kind = packet_kind(self.spec, pkt)
        if kind == "ping":
            if self.reflect:
                self.answers.append(text)
            return
        if kind == "echo":
            return
        tr_id, key = pkt["body"]["input"]["tr_id"], pkt["body"]["input"]["tr_key"]
        k = (tr_id, key)
        if kind == "subscribe":
            if k in self.already:
                self.already.discard(k)
                self.regs.add(k)  # the server still holds it from before
                self.answers.append(ack(self.spec, tr_id, key, self.already_code))
            elif k in self.regs:
                self.answers.append(ack(self.spec, tr_id, key, self.already_code))
            else:
                assert self.cap is None or len(self.regs) < self.cap, "client exceeded the cap"
                self.regs.add(k)
                self.answers.append(ack(self.spec, tr_id, key, self.ok))
        else:
            # a version without PKT-UNSUBSCRIBE still sends the broker's release when
            # POL-ALREADY-SUBSCRIBED demands it; the answer codes are the broker's
            c = load_spec("1.1").clause("PKT-UNSUBSCRIBE")
            if k in self.regs:
                self.regs.discard(k)
                self.answers.append(ack(self.spec, tr_id, key, c.string("success_code")))
            else:
                self.answers.append(ack(self.spec, tr_id, key, c.string("not_found_code")))
        self.max_regs = max(self.max_regs, len(self.regs))


class SessionMachine(RuleBasedStateMachine):
    """Random sequences of client calls, server answers and faults."""

    SPEC: Spec = load_spec("1.1")

    def __init__(self) -> None:
        super().__init__()
        self.spec = self.SPEC
        self.w = Wire(SessionCore(self.spec))
        self.server = ModelServer(self.spec)
        self.now = 0.0
        self.wanted: set[Subscription] = set()
        self.w.core.set_credential(APPROVAL)
        self.w.core.start(self.now)
        self._pump()

    # -- plumbing: what the shell would do

    def _pump(self) -> None:
        self.w.drain()
        if self.w.open:
            for text in self.w.sent:
                self.server.receive(text)
        self.w.sent.clear()

    def _deliver(self, limit: int | None = None) -> None:
        n = 0
        while self.w.open and self.server.answers and (limit is None or n < limit):
            self.w.recv(self.server.answers.popleft(), self.now)
            self._pump()
            n += 1

    # -- rules

    @rule(sub=st.sampled_from(POOL))
    def subscribe(self, sub: Subscription) -> None:
        self.wanted.add(sub)
        self.w.core.subscribe(sub, self.now)
        self._pump()

    @rule(n=st.integers(1, len(POOL)))
    def subscribe_many(self, n: int) -> None:
        for sub in POOL[:n]:
            self.wanted.add(sub)
            self.w.core.subscribe(sub, self.now)
        self._pump()

    @rule(sub=st.sampled_from(POOL))
    def unsubscribe(self, sub: Subscription) -> None:
        self.wanted.discard(sub)
        self.w.core.unsubscribe(sub, self.now)
        self._pump()

    @rule(limit=st.integers(1, 5))
    def deliver_some(self, limit: int) -> None:
        self._deliver(limit)

    @precondition(lambda self: self.w.want_open is not None and not self.w.open)
    @rule()
    def open_socket(self) -> None:
        self.server.reset()
        self.w.connect(self.now)
        self._pump()

    @precondition(lambda self: self.w.want_close is not None and self.w.open)
    @rule()
    def finish_close(self) -> None:
        self.w.close(self.now)
        self.server.reset()
        self._pump()

    @precondition(lambda self: self.w.open)
    @rule()
    def peer_drops(self) -> None:
        self.w.close(self.now, code=None)
        self.server.reset()
        self._pump()

    @precondition(lambda self: self.w.open)
    @rule(seconds=st.floats(0.0, 700.0))
    def time_passes(self, seconds: float) -> None:
        target = self.now + seconds
        while self.w.open:
            deadline = self.w.core.get_timer()
            if deadline is None or deadline > target:
                break
            self.now = max(self.now, deadline)
            self.w.tick(self.now)
            self._pump()
        self.now = max(self.now, target)

    @precondition(lambda self: self.w.open)
    @rule(sub=st.sampled_from(POOL))
    def data_arrives(self, sub: Subscription) -> None:
        rec = sample_fields(self.spec.layout(sub.tr_id), sub.tr_key)
        self.w.recv(data_frame(self.spec, sub.tr_id, [rec, rec]), self.now)
        self._pump()

    @precondition(lambda self: self.w.open)
    @rule(stamp=st.integers(0, 999999))
    def server_pings(self, stamp: int) -> None:
        self.w.recv(server_ping(self.spec, f"20260826{stamp:06d}"), self.now)
        self._pump()

    @precondition(lambda self: self.w.open)
    @rule(text=st.sampled_from(["garbage", "0|H0STCNT0|002|a^b", "{}", "[]", '{"body":1}']))
    def garbage(self, text: str) -> None:
        self.w.recv(text, self.now)
        self._pump()

    @precondition(lambda self: self.w.open and self.spec.has("WS-SESSION-LIMITS"))
    @rule()
    def session_in_use(self) -> None:
        limits = self.spec.clause("WS-SESSION-LIMITS")
        c = limits.string("in_use_code")
        text = json.dumps(
            {
                "header": {"tr_id": "(null)", "tr_key": ""},
                "body": {"rt_cd": limits.string("in_use_rt_cd"), "msg_cd": c, "msg1": "in use"},
            }
        )
        self.w.recv(text, self.now)
        self._pump()

    @precondition(
        lambda self: self.w.open and bool(self.spec.clause("POL-AUTH-FAILED").strings("ws_codes"))
    )
    @rule()
    def approval_rejected(self) -> None:
        (c,) = self.spec.clause("POL-AUTH-FAILED").strings("ws_codes")
        self.w.recv(ack(self.spec, "", "", c), self.now)
        self._pump()

    @rule(sub=st.sampled_from(POOL))
    def already_subscribed_fault(self, sub: Subscription) -> None:
        self.server.already.add((sub.tr_id, sub.tr_key))

    @rule(reflect=st.booleans())
    def reflection_mode(self, reflect: bool) -> None:
        self.server.reflect = reflect

    @rule()
    def settle(self) -> None:
        """Let the shell finish every request and the server answer everything; then check."""
        for _ in range(200):
            if self.w.want_close is not None and self.w.open:
                self.finish_close()
            elif self.w.want_open is not None and not self.w.open:
                self.open_socket()
            elif self.w.open and self.server.answers:
                self._deliver()
            else:
                break
        assert self.w.open, "settled without a socket"
        states = self.w.core.subscriptions
        wanted = {(s.tr_id, s.tr_key) for s in self.wanted}
        active = {(s.tr_id, s.tr_key) for s, v in states.items() if v is SubState.ACTIVE}
        assert {(s.tr_id, s.tr_key) for s in states} == wanted, "a wanted subscription was lost"
        if self.server.has_unsub:
            assert self.server.regs == active, "server and client disagree on registrations"
        else:  # without a release packet, a released key may stay registered at the server
            assert active <= self.server.regs
        cap = self.server.cap
        expected = len(wanted) if cap is None else min(len(wanted), cap)
        assert len(active) == expected, "a free slot was left unused"
        over = {s for s, v in states.items() if v is SubState.OVER_CAP}
        reported = {
            e.key for e in self.w.events if isinstance(e, StatusChanged) and e.state == "over_cap"
        }
        assert {s.tr_key for s in over} <= reported

    # -- invariants

    @invariant()
    def never_two_sockets(self) -> None:
        assert not (self.w.open and self.w.want_open is not None), "open requested while open"

    @invariant()
    def never_above_the_cap(self) -> None:
        cap = self.server.cap
        if cap is not None:
            assert self.server.max_regs <= cap
            assert self.w.core.registrations <= cap


class SessionMachine10(SessionMachine):
    """The same properties under spec 1.0 (no release packet, no cap, no server pings)."""

    SPEC = load_spec("1.0")


_settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestSessionMachine = SessionMachine.TestCase
TestSessionMachine.settings = _settings
TestSessionMachine10 = SessionMachine10.TestCase
TestSessionMachine10.settings = _settings
