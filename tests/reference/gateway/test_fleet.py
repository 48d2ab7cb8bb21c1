"""The gateway fleet (API-FLEET): three ``stockmon serve`` replicas, one redis-server, one KIS mock.

Browsers are WebSocket clients on every replica. The evidence: the mock's trace (never two broker
sockets at once, a key added on a standby registered once), the clients' messages (every replica
delivers the same event_ids, none twice, a gap status wherever the stream has a hole) and the
replicas' /v1/status and /readyz.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import pytest
from fleet_support import max_concurrent, open_intervals
from serve_fleet import (
    SPEC,
    Browser,
    Replica,
    holder_among,
    ready_all,
    running_fleet,
    start_replica,
    stream_id,
    subscribe_frames,
    until,
)

from stockmon.mockserver import KisMock, MockConfig
from stockmon.reference.fleet.lease_gate import SOCKET_LEASE_TTL_S, SOCKET_POLL_S
from stockmon.reference.fleet.redis_conn import outage_keep_s

pytestmark = pytest.mark.slow
FLEET = SPEC.clause("API-FLEET")
GAP_REASONS = FLEET.mapping("gap_reasons")
# Spec seconds run TIME_SCALE times faster, so FLEET-REDIS-OUTAGE's keep (and the quarantine a
# fresh Redis imposes, TTL + keep) is a few real seconds here, as in test_redis_outage.
TIME_SCALE = 5.0
KEEP_S = outage_keep_s(SPEC, TIME_SCALE)
CONFIG = MockConfig(symbols=("005930",), tick_rate_hz=2.0, time_scale=TIME_SCALE)
BUS_STATES = FLEET.mapping("bus_states")


def assert_no_duplicates(browser: Browser) -> None:
    """event_ids grow strictly on a connection: nothing was delivered twice."""
    ids = [stream_id(i) for i in browser.bus_ids()]
    assert ids == sorted(set(ids)), "an event_id repeated or went back"


def assert_gaps_announced(browser: Browser, first_new_epoch_id: str) -> None:
    """The first event after the takeover is preceded by a gap status naming the ids around it."""
    after_f, before_f = FLEET.strings("gap_fields")
    events = browser.events()
    at = next(i for i, m in enumerate(events) if m.get("event_id") == first_new_epoch_id)
    previous = [m for m in events[:at] if "event_id" in m]
    gap = events[at - 1]["event"]
    assert gap["state"] == FLEET.string("gap_state"), events[at - 3 : at + 1]
    assert gap["reason"] == GAP_REASONS["holder_changed"]
    assert gap[before_f] == first_new_epoch_id
    assert gap[after_f] == previous[-1]["event_id"]


async def test_three_replicas_share_one_socket_through_a_holder_kill(
    redis_server: Any, tmp_path: Any
) -> None:
    """One socket ever; every replica streams the same ids; SIGKILL -> takeover, gap, no dup."""
    async with (
        KisMock(CONFIG) as mock,
        running_fleet(mock, redis_server.url, tmp_path, 3) as fleet,
    ):
        replicas, browsers = fleet.replicas, fleet.browsers
        browsers += [await Browser(r, ["005930"]).start() for r in replicas]
        await until(lambda: all(len(b.ticks()) >= 5 for b in browsers), 20, "ticks everywhere")
        holder = await holder_among(replicas)
        assert holder is not None
        assert mock.open_sockets() == 1

        # every replica delivers the same stream: the same event_ids for the same ticks
        ids = [set(b.bus_ids()) for b in browsers]
        common = ids[0] & ids[1] & ids[2]
        assert len(common) >= 3, ids

        # /v1/status answers for the fleet on a standby: the holder's socket, all subscribers
        standby = next(r for r in replicas if r is not holder)
        status = await standby.status()
        assert status["fleet"]["role"] == "standby"
        assert status["fleet"]["holder"] == (await holder.status())["fleet"]["replica"]
        assert status["socket"] == "open"

        async def fleet_subscribers() -> bool:
            return (await standby.status())["subscribers"] == len(browsers)

        await until(fleet_subscribers, 3, "every replica's subscribers counted")

        # a key added on a standby reaches the broker once, through the holder
        since = mock.trace.last_seq
        path = SPEC.clause("API-SUBSCRIPTIONS").string("path")
        r = await standby.post(path, {"tr_id": "H0STASP0", "key": "005930"})
        assert r.status_code == SPEC.clause("API-SUBSCRIPTIONS").integer("created_status")
        await until(lambda: subscribe_frames(mock, "H0STASP0", since), 5, "the registration")
        others = [x for x in replicas if x is not standby]
        for other in others:
            listed = (await other.get(path)).json()["subscriptions"]
            assert {"tr_id": "H0STASP0", "key": "005930"} in listed
        await asyncio.sleep(0.5)
        assert len(subscribe_frames(mock, "H0STASP0", since)) == 1

        # SIGKILL the holder: another replica takes over within the lease TTL and the outage keep
        before_kill = {id(b): len(b.events()) for b in browsers}
        kill_t = mock.trace.now()
        holder.proc.send_signal(signal.SIGKILL)
        await holder.proc.wait()
        survivors = [b for b in browsers if b.replica is not holder]
        await until(
            lambda: all(b.gaps() for b in survivors),
            SOCKET_LEASE_TTL_S + KEEP_S + 10,
            "a gap status",
        )
        await until(
            lambda: any(t > kill_t for t, _, _ in open_intervals(mock)), 5, "the new socket"
        )
        takeover = min(t for t, _, _ in open_intervals(mock) if t > kill_t)
        assert takeover - kill_t <= SOCKET_LEASE_TTL_S + KEEP_S + SOCKET_POLL_S + 1.5
        await until(
            lambda: all(len(b.ticks()) > before_kill[id(b)] + 3 for b in survivors),
            10,
            "ticks after the takeover",
        )
        for b in survivors:
            assert b.closed is None, "a browser on a surviving replica stayed connected"
            gap = b.gaps()[0]
            assert_gaps_announced(b, gap[FLEET.strings("gap_fields")[1]])
            assert_no_duplicates(b)
        assert max_concurrent(mock) == 1, open_intervals(mock)

        # a browser that reconnects with its last id gets what it missed, then live
        first = survivors[0]
        seen = first.bus_ids()
        resume_from = seen[len(seen) // 3]
        late = await Browser(first.replica, ["005930"], after=resume_from).start()
        browsers.append(late)
        await until(lambda: len(late.bus_ids()) >= len(seen) - len(seen) // 3, 10, "replay")
        replayed = late.bus_ids()
        # the live browser may have had some conflated (API-BACKPRESSURE); the replay has all
        up_to = stream_id(replayed[-1])
        live = [i for i in first.bus_ids() if stream_id(resume_from) < stream_id(i) <= up_to]
        assert set(live) <= set(replayed), "replay holds every event after the resume id"
        assert len(replayed) >= len(live) > 10
        assert not any(m.get("type") == "snapshot" for m in late.messages)
        assert_no_duplicates(late)

        # the killed replica comes back as a standby and serves the same stream
        back = await start_replica(fleet.env, tmp_path / "restarted.log")
        replicas.append(back)
        await ready_all([back])
        again = await Browser(back, ["005930"]).start()
        browsers.append(again)
        await until(lambda: len(again.ticks()) >= 3, 10, "ticks on the restarted replica")
        assert (await back.status())["fleet"]["role"] == "standby"
        assert set(again.bus_ids()) & set(first.bus_ids()), "the same event_ids as the others"
        assert max_concurrent(mock) == 1, open_intervals(mock)


async def test_redis_outage_is_reported_and_survived(redis_server: Any, tmp_path: Any) -> None:
    """Redis down: /readyz 503 and fleet.bus unavailable, browsers told; Redis back: resumes."""
    async with (
        KisMock(CONFIG) as mock,
        running_fleet(mock, redis_server.url, tmp_path, 2) as fleet,
    ):
        replicas, browsers = fleet.replicas, fleet.browsers
        browsers += [await Browser(r, ["005930"]).start() for r in replicas]
        await until(lambda: all(b.ticks() for b in browsers), 20, "ticks")
        redis_server.kill()
        for r in replicas:
            await until(lambda r=r: _not_ready(r), 10, "/readyz 503")
            status = await r.status()
            assert status["fleet"]["bus"] == BUS_STATES["unavailable"]
        down = FLEET.mapping("bus_status_states")["down"]
        await until(
            lambda: all(any(_state(m) == down for m in b.events()) for b in browsers),
            5,
            "a bus_unavailable status",
        )
        assert all(r.alive for r in replicas), "nothing crashes"
        # the holder keeps its socket through the outage for at most TTL + keep (FLEET-REDIS-OUTAGE)
        await until(lambda: mock.open_sockets() == 0, SOCKET_LEASE_TTL_S + KEEP_S + 5, "the close")

        redis_server.start()
        await ready_all(replicas, 20 + KEEP_S)
        marks = {id(b): len(b.ticks()) for b in browsers}
        await until(lambda: all(len(b.ticks()) > marks[id(b)] for b in browsers), 20, "ticks again")
        up = FLEET.mapping("bus_status_states")["up"]
        for b in browsers:
            assert any(_state(m) == up for m in b.events())
            assert b.closed is None
            assert_no_duplicates(b)
        assert max_concurrent(mock) == 1, open_intervals(mock)


async def _not_ready(r: Replica) -> bool:
    code, body = await r.ready()
    return (
        code == SPEC.clause("API-HEALTH").integer("not_ready_status")
        and not body["checks"]["reading_fleet_bus"]
    )


def _state(message: dict[str, Any]) -> str | None:
    ev = message["event"]
    return str(ev["state"]) if ev["type"] == "status" else None
