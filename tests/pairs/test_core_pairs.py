"""Client core against mock core, in memory (h11's ConnectionPair): no sockets, no loop, one clock.

Each broker's reference session core is wired to the mock's server session core of the same
dialect; texts move between their ``data_to_send()`` queues and both timers run on one explicit
``now``. This pins the two halves against each other — subscribe, data, pings, server pings, error
codes and close — without the timing noise of real sockets (those are the integration tests).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from stockmon.mockserver.config import KiwoomMockConfig, MockConfig
from stockmon.mockserver.core import Close, CoreBase, Send
from stockmon.mockserver.kis.profile import load_profile
from stockmon.mockserver.kis.session import ServerSession
from stockmon.mockserver.kis.state import World
from stockmon.mockserver.kiwoom.market import KiwoomMarket
from stockmon.mockserver.kiwoom.profile import load_kiwoom_profile
from stockmon.mockserver.kiwoom.session import KiwoomServerSession
from stockmon.mockserver.kiwoom.state import KiwoomWorld
from stockmon.mockserver.simulator import MarketSimulator
from stockmon.mockserver.trace import Trace
from stockmon.mockserver.world import SubscribeError, WorldBase
from stockmon.reference.events import CloseSocket, DataReceived, Event, OpenSocket
from stockmon.reference.kis.session import SessionCore
from stockmon.reference.kiwoom.session import KiwoomSessionCore
from stockmon.reference.lifecycle import BrokerCore
from stockmon.settings import Subscription
from stockmon.spec import load_spec
from stockmon.spec.model import thaw

SPEC = load_spec("1.1")
WALL0 = 1_700_000_000.0
KR_TICK = Subscription("H0STCNT0", "005930")


@dataclass
class Pair:
    """A client core and a server core joined back to back, stepped on one clock.

    The pair plays the shell's part: ``CloseSocket`` ends the server session, ``OpenSocket`` opens a
    fresh one (with a new credential when asked), so a reconnect runs through both cores too.
    """

    client: BrokerCore
    open_server: Callable[[float], CoreBase]
    new_credential: Callable[[float], str]
    world: WorldBase
    now: float = 0.0
    server: CoreBase | None = None
    sockets: int = 0
    events: list[Event] = field(default_factory=list)
    to_server: list[str] = field(default_factory=list)
    to_client: list[str] = field(default_factory=list)
    server_close_codes: list[int] = field(default_factory=list)

    def _end_socket(self, code: int | None) -> None:
        if self.server is not None:
            self.server.connection_lost(self.now, abrupt=False)
            self.server = None
            self.client.closed(self.now, code)

    def _on_event(self, ev: Event) -> None:
        self.events.append(ev)
        if isinstance(ev, CloseSocket):
            self._end_socket(1000)
        elif isinstance(ev, OpenSocket):
            assert self.server is None, "a second socket while one is open (WS-SINGLE-SOCKET)"
            if ev.new_credential:
                self.client.set_credential(self.new_credential(self.now))
            self.server = self.open_server(self.now)
            self.sockets += 1
            self.client.connected(self.now)

    def pump(self) -> None:
        """Move every queued text and event across until both sides are quiet."""
        for _ in range(100_000):
            moved = False
            while (ev := self.client.next_event()) is not None:
                moved = True
                self._on_event(ev)
            for text in self.client.data_to_send():
                moved = True
                self.to_server.append(text)
                if self.server is not None:
                    self.server.receive_text(text, self.now)
            for item in self.server.data_to_send() if self.server is not None else []:
                moved = True
                if isinstance(item, Send):
                    self.to_client.append(item.text)
                    self.client.text_received(item.text, self.now)
                elif isinstance(item, Close):
                    self.server_close_codes.append(item.code)
                    self._end_socket(item.code)
                    break
            if not moved:
                return
        raise AssertionError("the two cores never went quiet")

    def _timers(self) -> list[float]:
        cores: list[BrokerCore | CoreBase | None] = [self.client, self.server]
        return [t for c in cores if c is not None and (t := c.get_timer()) is not None]

    def run_until(self, end: float) -> None:
        """Fire both cores' timers in time order up to ``end``, pumping after each."""
        self.pump()
        while (due := min(self._timers(), default=end + 1)) <= end:
            self.now = max(self.now, due)
            for core in (self.client, self.server):
                timer = core.get_timer() if core is not None else None
                if core is not None and timer is not None and timer <= self.now:
                    core.handle_timer(self.now)
            self.pump()
        self.now = end

    def client_json(self) -> list[dict[str, Any]]:
        """Every text the client sent, parsed."""
        return [json.loads(t) for t in self.to_server]

    def data(self) -> list[dict[str, Any]]:
        """The client's output events (schema ``event``) for every data frame it parsed."""
        lines = [e.records.json_lines(e.source) for e in self.events if isinstance(e, DataReceived)]
        return [json.loads(x) for block in lines for x in block.splitlines()]


def kis_pair(**overrides: Any) -> Pair:
    """The KIS client core on the KIS mock core, with real approval keys of the mock."""
    config = MockConfig(**overrides)
    world = World(config, load_profile(config.spec_version), Trace(), wall0=WALL0)
    client = SessionCore(load_spec(config.spec_version))
    issue = lambda now: world.auth.issue_approval(world.app_key, now)  # noqa: E731
    client.set_credential(issue(0.0))
    conns = iter(range(1, 1000))
    return Pair(client, lambda now: ServerSession(world, f"ws-{next(conns)}", now), issue, world)


def kiwoom_pair(**overrides: Any) -> Pair:
    """The Kiwoom client core on the Kiwoom mock core, with live tokens of the mock."""
    config = KiwoomMockConfig(**overrides)
    profile = load_kiwoom_profile(config.spec_version)
    spec = load_spec(config.spec_version)
    sim = MarketSimulator(spec, config.seed, config.symbols)
    world = KiwoomWorld(config, profile, Trace(), sim, WALL0)
    client = KiwoomSessionCore(spec, env="mock", login_timeout_s=10.0)
    issue = lambda now: world.auth.issue(world.app_key, now).value  # noqa: E731
    client.set_credential(issue(0.0))
    market = KiwoomMarket(profile, sim)
    conns = iter(range(1, 1000))

    def open_server(now: float) -> CoreBase:
        return KiwoomServerSession(world, market, f"kiwoom-ws-{next(conns)}", now)

    return Pair(client, open_server, issue, world)


PAIRS = {"kis": kis_pair, "kiwoom": kiwoom_pair}


def started(broker: str, *subs: Subscription, before: Callable[[Pair], None] | None = None) -> Pair:
    """A pair whose client has asked for ``subs``, started and opened its first socket."""
    pair = PAIRS[broker]()
    if before is not None:
        before(pair)
    for sub in subs or (KR_TICK,):
        pair.client.subscribe(sub, 0.0)
    pair.client.start(0.0)
    pair.pump()
    assert pair.sockets >= 1
    return pair


def _sent_prices(broker: str, texts: list[str]) -> list[tuple[str, int]]:
    """(key, price) of every trade the mock sent, read from the wire with the spec's layouts."""
    out: list[tuple[str, int]] = []
    if broker == "kis":
        layout = SPEC.layout(KR_TICK.tr_id)
        i_key, i_price = (layout.index(layout.role(r)) for r in ("key", "price"))
        for text in texts:
            if text.startswith("{"):
                continue  # a control frame
            _, _, _, body = text.split("|", 3)
            fields = body.split("^")
            n = len(layout.names)
            for rec in (fields[i : i + n] for i in range(0, len(fields), n)):
                out.append((rec[i_key], int(rec[i_price])))
        return out
    fid = SPEC.kiwoom_layouts["0B"].roles["price"]
    for text in texts:
        obj = json.loads(text)
        for entry in obj.get("data", []) if obj.get("trnm") == "REAL" else []:
            out.append((entry["item"], abs(int(entry["values"][fid]))))
    return out


@pytest.mark.parametrize("broker", PAIRS)
def test_every_trade_sent_reaches_the_client_with_its_value(broker: str) -> None:
    """PKT-DATA: each trade the mock core sends becomes one tick event with the same key and price."""
    pair = started(broker)
    pair.run_until(120.0)
    sent = _sent_prices(broker, pair.to_client)
    got = [(e["key"], e["price"]) for e in pair.data() if e["type"] == "tick"]
    assert len(sent) > 50
    assert got == sent
    assert all(e["source"] == broker for e in pair.data())


def test_kis_pings_on_interval_and_answers_server_pings_only() -> None:
    """KA-PING and KA-SERVER-PINGPONG: a ping per interval; each server ping echoed once, reflections never."""
    pair = started("kis")
    end = 600.0
    pair.run_until(end)
    interval = SPEC.clause("KA-PING").number("interval_s")
    plain = thaw(SPEC.clause("KA-PING").mapping("packet"))
    own = [o for o in pair.client_json() if o == plain]
    assert len(own) == int(end // interval)
    server_pings = [json.loads(t) for t in pair.to_client if '"datetime"' in t and "PINGPONG" in t]
    echoes = [o for o in pair.client_json() if o.get("header", {}).get("datetime")]
    assert server_pings and echoes == server_pings
    assert pair.server_close_codes == [] and pair.sockets == 1  # answered in time: never dropped


def test_kiwoom_echoes_every_server_ping_verbatim() -> None:
    """KIWOOM-PROTOCOL: every PING of the server comes back unchanged; the session stays up."""
    pair = started("kiwoom")
    pair.run_until(600.0)
    ping = SPEC.clause("KIWOOM-PROTOCOL").string("ping")
    server_pings = [json.loads(t) for t in pair.to_client if json.loads(t).get("trnm") == ping]
    client_pings = [o for o in pair.client_json() if o.get("trnm") == ping]
    assert len(server_pings) >= 5 and client_pings == server_pings
    assert pair.server_close_codes == [] and pair.sockets == 1


def test_kis_already_subscribed_is_released_then_retried() -> None:
    """POL-ALREADY-SUBSCRIBED: the mock's OPSP0002 makes the client release (tr_type 2), then subscribe again."""
    code = SPEC.clause("POL-ALREADY-SUBSCRIBED").string("code")

    def refuse_first(pair: Pair) -> None:
        pair.world.faults.subscribe_errors.append(SubscribeError(code, KR_TICK.tr_key, 1))

    pair = started("kis", before=refuse_first)
    pair.run_until(30.0)
    release = SPEC.clause("PKT-UNSUBSCRIBE").mapping("header")["tr_type"]
    subscribe = SPEC.clause("PKT-SUBSCRIBE").mapping("header")["tr_type"]
    asks = [
        (o["header"]["tr_type"], o["body"]["input"]["tr_key"])
        for o in pair.client_json()
        if "body" in o
    ]
    assert asks == [
        (subscribe, KR_TICK.tr_key),
        (release, KR_TICK.tr_key),
        (subscribe, KR_TICK.tr_key),
    ]
    assert pair.data() and pair.sockets == 1


def test_kiwoom_refused_login_gets_a_new_token_and_recovers() -> None:
    """TOKEN-KIWOOM-SESSION: a LOGIN refused for its token closes, reopens with a new token, streams."""
    pair = started("kiwoom", before=lambda p: p.world.auth.expire_all(0.0))
    pair.run_until(60.0)
    login = SPEC.clause("KIWOOM-PROTOCOL").string("first_message")
    logins = [o for o in pair.client_json() if o.get("trnm") == login]
    assert pair.server_close_codes and pair.sockets == 2
    assert len(logins) == 2 and logins[0]["token"] != logins[1]["token"]
    assert pair.data()


@pytest.mark.parametrize("broker", PAIRS)
def test_stalled_server_is_left_after_the_idle_timeout_close_then_open(broker: str) -> None:
    """POL-IDLE-RECONNECT: nothing inbound for idle_timeout_s -> close, then open one new socket, data again."""
    idle = SPEC.clause("POL-IDLE-RECONNECT").number("idle_timeout_s")
    pair = started(broker)
    pair.run_until(5.0)
    last_in = pair.now
    pair.world.faults.stall_until = last_in + idle + 1.0
    pair.run_until(last_in + idle - 1.0)
    assert pair.sockets == 1  # not a moment early
    before = len(pair.data())
    pair.run_until(last_in + idle + 60.0)
    kinds = [type(e).__name__ for e in pair.events if isinstance(e, CloseSocket | OpenSocket)]
    assert kinds == ["OpenSocket", "CloseSocket", "OpenSocket"] and pair.sockets == 2
    assert len(pair.data()) > before
