"""The connection and subscription tables of every dialect, held against WS-SINGLE-SOCKET."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest

from stockmon.reference.kis import session as kis_session
from stockmon.reference.kis.session import SessionCore
from stockmon.reference.kiwoom import session as kiwoom_session
from stockmon.reference.kiwoom.session import KiwoomSessionCore
from stockmon.reference.lifecycle import (
    LIFECYCLE_TRANSITIONS,
    PEER_EVENTS,
    BrokerCore,
    ConnEvent,
    ConnState,
    SubEvent,
    SubState,
)
from stockmon.spec import load_spec

DIALECTS = {"kis": kis_session, "kiwoom": kiwoom_session}
CONN = {name: m.CONNECTION_TRANSITIONS for name, m in DIALECTS.items()}
SUBS = {name: m.SUBSCRIPTION_TRANSITIONS for name, m in DIALECTS.items()}
Table = Mapping[tuple[ConnState, ConnEvent], ConnState]
SPEC = load_spec("1.1")
CORES = {
    "kis": lambda: SessionCore(SPEC),
    "kiwoom": lambda: KiwoomSessionCore(SPEC, env="mock", login_timeout_s=10.0),
}


@pytest.mark.parametrize("make", CORES.values(), ids=CORES.keys())
def test_every_session_core_is_a_broker_core(make: Callable[[], object]) -> None:
    """Both dialects' cores implement the BrokerCore protocol the one shell drives."""
    assert isinstance(make(), BrokerCore)


@pytest.mark.parametrize("table", CONN.values(), ids=CONN.keys())
def test_open_is_requested_only_after_close(table: Table) -> None:
    """Every move into CONNECTING comes from a state whose socket is closed (WS-SINGLE-SOCKET)."""
    into = {(s, e) for (s, e), t in table.items() if t is ConnState.CONNECTING}
    assert {e for _, e in into} <= {ConnEvent.START, ConnEvent.CLOSED, ConnEvent.RECONNECT}
    assert all(
        s in (ConnState.IDLE, ConnState.CONNECTING) for s, e in into if e is not ConnEvent.CLOSED
    )
    assert all(
        t is not ConnState.OPEN or e in (ConnEvent.CONNECTED, ConnEvent.LOGIN_OK)
        for (_, e), t in table.items()
    )


@pytest.mark.parametrize("table", CONN.values(), ids=CONN.keys())
def test_every_dialect_keeps_the_shared_lifecycle(table: Table) -> None:
    """A dialect adds rows to the shared lifecycle and changes none of them."""
    assert all(table[k] is v for k, v in LIFECYCLE_TRANSITIONS.items())
    assert (ConnState.CONNECTING, ConnEvent.CONNECTED) in table


@pytest.mark.parametrize("table", SUBS.values(), ids=SUBS.keys())
def test_socket_loss_requeues_every_wanted_subscription(
    table: Mapping[tuple[SubState, SubEvent], SubState],
) -> None:
    """A lost socket sends every wanted subscription back to QUEUED; a release in flight is done."""
    for state in {s for s, _ in table}:
        target = table.get((state, SubEvent.SOCKET_LOST))
        assert target is (SubState.GONE if state is SubState.RELEASING else SubState.QUEUED), state


@pytest.mark.parametrize("table", SUBS.values(), ids=SUBS.keys())
def test_only_the_peer_can_be_stray(table: Mapping[tuple[SubState, SubEvent], SubState]) -> None:
    """A registration leaves SUBSCRIBING only on a peer answer, a release or a lost socket."""
    local = {e for (s, e) in table if s is SubState.SUBSCRIBING} - PEER_EVENTS
    assert local <= {SubEvent.RELEASE, SubEvent.RELEASE_LOCAL, SubEvent.SOCKET_LOST}
    assert (SubState.SUBSCRIBING, SubEvent.ACK) in table
