"""Sans-I/O Kiwoom WebSocket server session (the same shape as :mod:`~stockmon.mockserver.session`).

Theory of operation: the shell feeds ``receive_text`` / ``receive_binary`` (with ``now`` in spec
seconds), calls ``handle_timer(now)`` when ``get_timer()`` is due, and after each input writes what
``data_to_send()`` returns (``Send`` frames and at most one final ``Close``). No clock, no socket.

States: AWAIT_LOGIN -> OPEN (a LOGIN was accepted) -> CLOSING (a Close is queued) -> CLOSED.

Rules (KIWOOM-PROTOCOL, TOKEN-KIWOOM-SESSION; values from the Kiwoom profile):

* LOGIN first. A LOGIN is accepted when its token is live, or when it carries none and the run's
  environment lets LOGIN go without a token (the mock profile); otherwise the ack carries the
  login-failure code with ``CODE=NNNN`` in ``return_msg`` and the session is closed. A session
  whose app key logs in again elsewhere gets SYSTEM R10001 and is closed (one session per key).
* Anything but LOGIN or a PING echo before the LOGIN is accepted -> SYSTEM R10004 and close; no
  LOGIN within ``login_timeout_s`` -> the same.
* REG / REMOVE with ``grp_no`` and ``refresh`` (``"0"`` drops the previous registrations first),
  each answered ``{trnm, return_code, return_msg}``; then REAL frames, several entries each.
* PING every ``ping_period_s``; only an echo identical to a PING sent answers it. After
  ``max_missed_pings`` pings in a row went unanswered: SYSTEM R10002 and close.

Every inbound packet is validated against its schema; violations are recorded, never raised.
"""

from __future__ import annotations

import enum
import json
import random
from typing import Any

from stockmon.mockserver.kiwoom_market import KiwoomMarket
from stockmon.mockserver.kiwoom_profile import SYSTEM_CODE_KEY, SYSTEM_MESSAGE_KEY
from stockmon.mockserver.kiwoom_state import KiwoomWorld
from stockmon.mockserver.session import Close, Send

# Close codes (RFC 6455): non-normative choices of the mock.
CLOSE_POLICY = 1008
CLOSE_NORMAL = 1000
# At most this many REAL rounds per timer (bounds a burst after a long wait).
MAX_CATCH_UP = 64
_JUNK = "#$%&*?!~@"
MALFORMED_KINDS = ("truncated", "garbage", "bad_value")


class KState(enum.Enum):
    """Lifecycle of a Kiwoom session."""

    AWAIT_LOGIN = "await_login"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


def _compact(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


class KiwoomServerSession:
    """One Kiwoom WebSocket session; pure protocol logic."""

    def __init__(self, world: KiwoomWorld, market: KiwoomMarket, conn: str, now: float) -> None:
        self.world = world
        self.market = market
        self.conn = conn
        self.p = world.profile
        self.settings = world.settings
        self.state = KState.AWAIT_LOGIN
        self.appkey: str | None = None
        self.token_id: str | None = None
        self.registrations: dict[tuple[str, str], str] = {}  # (type, item) -> grp_no
        self._out: list[Send | Close] = []
        self._held: list[Send] = []
        self._rng = random.Random(f"{world.config.seed}:{conn}")
        timeout = self.settings.login_timeout_s
        self._login_deadline: float | None = now + timeout if timeout else None
        period = self.settings.ping_period_s
        self._next_ping: float | None = now + period if period else None
        self._outstanding: dict[str, float] = {}  # PING text -> time sent
        self._missed = 0  # pings in a row that went unanswered
        self._last_ping: str | None = None
        self._ping_seq = 0
        self._interval = (
            1.0 / self.settings.tick_rate_hz if self.settings.tick_rate_hz > 0 else None
        )
        self._next_data: float | None = None
        self._now = now

    # --- outputs ----------------------------------------------------------------------------
    def data_to_send(self) -> list[Send | Close]:
        """Frames (and a final Close) queued since the last call."""
        out, self._out = self._out, []
        return out

    def get_timer(self) -> float | None:
        """Spec time of the next timer event, or None."""
        if self.state in (KState.CLOSING, KState.CLOSED):
            return None
        cands: list[float] = []
        if self.state is KState.AWAIT_LOGIN and self._login_deadline is not None:
            cands.append(self._login_deadline)
        if self._next_ping is not None:
            cands.append(self._next_ping)
        if self._next_data is not None and self.registrations:
            cands.append(self._next_data)
        stall_end = self.world.faults.stall_until
        if stall_end and (self._held or cands):
            cands = [max(c, stall_end) for c in cands] or [stall_end]
        return min(cands) if cands else None

    # --- inputs -----------------------------------------------------------------------------
    def handle_timer(self, now: float) -> None:
        """Login deadline, pings (and the missed-ping close), REAL rounds."""
        self._now = now
        if self.state in (KState.CLOSING, KState.CLOSED):
            return
        stalled = self.world.stalled(now)
        if not stalled and self._held:
            self._out.extend(self._held)
            self._held.clear()
        if (
            self.state is KState.AWAIT_LOGIN
            and self._login_deadline is not None
            and now >= self._login_deadline
            and not stalled
        ):
            self._system_close("no_login")
            return
        if self._next_ping is not None and now >= self._next_ping:
            period = self.settings.ping_period_s or 0.0
            while self._next_ping <= now:
                self._next_ping += period
            if not stalled:
                if self._last_ping in self._outstanding:
                    self._missed += 1
                    if self._missed >= self.settings.max_missed_pings:
                        self._system_close("heartbeat_missed")
                        return
                self._send_ping(now)
        if self._next_data is not None and self._interval is not None and now >= self._next_data:
            if stalled:
                self._next_data = max(self._next_data, self.world.faults.stall_until)
            elif self.registrations:
                rounds = min(MAX_CATCH_UP, int((now - self._next_data) / self._interval) + 1)
                self._emit_real(now, rounds)
                self._next_data += rounds * self._interval
                if self._next_data < now - self._interval:
                    self._next_data = now + self._interval

    def server_ping_now(self, now: float) -> None:
        """Send a PING now (fault API), unless stalled or closing."""
        self._now = now
        if self.state in (KState.AWAIT_LOGIN, KState.OPEN) and not self.world.stalled(now):
            self._send_ping(now)

    def system_now(self, name: str, now: float, close: bool) -> None:
        """Send a SYSTEM frame by its KIWOOM-PROTOCOL name (fault API), optionally closing."""
        self._now = now
        if self.state not in (KState.AWAIT_LOGIN, KState.OPEN):
            return
        if close:
            self._system_close(name)
        else:
            self._out.append(self._system(name))

    def evict(self, now: float) -> None:
        """Another session logged in with this session's app key: R10001, then close."""
        self._now = now
        if self.state in (KState.AWAIT_LOGIN, KState.OPEN):
            self._system_close("replaced_by_new_login")

    def receive_binary(self, data: bytes, now: float) -> None:
        """A binary frame: Kiwoom speaks JSON text; recorded as a violation and ignored."""
        self._now = now
        self.world.record("ws", self.conn, "in", "binary", size=len(data), hex=data[:64].hex())
        self._violation(None, ["binary frame (Kiwoom packets are JSON text)"], None)

    def receive_text(self, text: str, now: float) -> None:
        """One inbound text frame."""
        self._now = now
        try:
            obj: Any = json.loads(text)
        except (ValueError, RecursionError):
            obj = None
        trnm = obj.get("trnm") if isinstance(obj, dict) else None
        trnm = trnm if isinstance(trnm, str) else None
        p = self.p
        frame = (
            "pingpong"
            if trnm == p.trnm_ping
            else "control"
            if trnm in (p.trnm_login, p.trnm_reg, p.trnm_remove)
            else "other"
        )
        self.world.record(
            "ws",
            self.conn,
            "in",
            "text",
            text=text,
            json=obj,
            tr_id=trnm,
            tr_type=None,
            tr_key=None,
            msg_cd=None,
            frame=frame,
            trnm=trnm,
        )
        if self.state not in (KState.AWAIT_LOGIN, KState.OPEN):
            return
        if not isinstance(obj, dict):
            self._violation(None, ["not a JSON object"], text)
            return
        if trnm == p.trnm_ping:
            self._on_ping_echo(obj, text)
        elif trnm == p.trnm_login:
            self._on_login(obj, text, now)
        elif trnm in (p.trnm_reg, p.trnm_remove):
            if self.state is not KState.OPEN:
                self._violation(None, [f"{trnm} before an accepted {p.trnm_login}"], text)
                self._system_close("no_login")
                return
            self._on_registration(trnm, obj, text, now)
        else:
            self._violation(None, [f"unknown trnm {trnm!r}"], text)

    def connection_lost(self, now: float) -> None:
        """The socket is gone: free the app key."""
        self.state = KState.CLOSED
        if self.appkey is not None:
            self.world.logout(self.appkey, self.conn)

    # --- handlers ---------------------------------------------------------------------------
    def _on_ping_echo(self, obj: dict[str, Any], text: str) -> None:
        if text in self._outstanding:
            del self._outstanding[text]
            self._missed = 0
            return
        errs = self.world.validate("kiwoom-ping", obj) or []
        self._violation(
            "kiwoom-ping", [*errs, "not a verbatim echo of a PING the server sent"], text
        )

    def _on_login(self, obj: dict[str, Any], text: str, now: float) -> None:
        p = self.p
        token = obj.get("token")
        if "token" in obj or self.settings.token_required:
            errs = self.world.validate("kiwoom-login", obj)
            if errs:
                self._violation("kiwoom-login", errs, text)
        self.world.emit("login", conn=self.conn)
        live = self.world.auth.check(token, now) if token is not None else None
        accepted = live is not None or (token is None and not self.settings.token_required)
        if not accepted:
            ack = {
                "trnm": p.trnm_login,
                "return_code": p.login_failure_code,
                "return_msg": p.login_failure_msg,
            }
            self._queue(self._send(ack, "control", str(p.login_failure_code)))
            self.world.record(
                "ws",
                self.conn,
                "event",
                "login_refused",
                token_present=token is not None,
                env=self.settings.env,
            )
            self._close(CLOSE_POLICY, "LOGIN refused")
            return
        first = self.state is KState.AWAIT_LOGIN
        self.state = KState.OPEN
        ack = {"trnm": p.trnm_login, "return_code": p.success_return_code, "return_msg": ""}
        ack.update(p.login_ack_extra)
        self._queue(self._send(ack, "control", str(p.success_return_code)))
        if live is not None:
            self.token_id = live.token_id
            if self.appkey is None:
                self.appkey = live.appkey
                self.world.login(live.appkey, self.conn, now)
        if first:
            self.world.record(
                "ws",
                self.conn,
                "event",
                "login_accepted",
                token_id=self.token_id,
                env=self.settings.env,
            )

    def _on_registration(self, trnm: str, obj: dict[str, Any], text: str, now: float) -> None:
        p = self.p
        reg = trnm == p.trnm_reg
        schema = "kiwoom-reg" if reg else "kiwoom-remove"
        errs = self.world.validate(schema, obj)
        if errs:
            self._violation(schema, errs, text)
        pairs = _pairs(obj.get("data"))
        grp = obj.get("grp_no")
        grp_no = grp if isinstance(grp, str) else ""
        for type_code, item in pairs:
            self.world.emit(
                "subscribe" if reg else "unsubscribe", conn=self.conn, tr_id=type_code, tr_key=item
            )
        injected = self.world.faults.take_subscribe_error(pairs[0][1] if pairs else "")
        ok = not errs and bool(pairs) and all(self.market.serves(t, i) for t, i in pairs)
        if injected is not None or not ok:
            ack = {"trnm": trnm, "return_code": p.reg_failure_code, "return_msg": p.reg_failure_msg}
            self._queue(self._send(ack, "control", str(p.reg_failure_code)))
            return
        if reg:
            if obj.get("refresh") == "0":
                self.registrations.clear()
            for pair in pairs:
                self.registrations[pair] = grp_no
            if self._next_data is None and self._interval is not None:
                self._next_data = now + self._interval
        else:
            for pair in pairs:
                self.registrations.pop(pair, None)
        ack = {"trnm": trnm, "return_code": p.success_return_code, "return_msg": ""}
        self._queue(self._send(ack, "control", str(p.success_return_code)))

    # --- output helpers ---------------------------------------------------------------------
    def _send(self, obj: dict[str, Any], frame: str, msg_cd: str | None = None) -> Send:
        return Send(_compact(obj), frame, obj, str(obj.get("trnm")), None, msg_cd)

    def _send_ping(self, now: float) -> None:
        self._ping_seq += 1
        obj = {"trnm": self.p.trnm_ping, "seq": str(self._ping_seq)}
        # Two spellings, so that only a verbatim echo matches whatever a client re-serializes to.
        text = _compact(obj) if self._rng.random() < 0.5 else json.dumps(obj)
        self._outstanding[text] = now
        self._last_ping = text
        self._out.append(Send(text, "pingpong", obj, self.p.trnm_ping))

    def _system(self, name: str) -> Send:
        code = self.p.system_code(name)
        obj = {
            "trnm": self.p.trnm_system,
            SYSTEM_CODE_KEY: code,
            SYSTEM_MESSAGE_KEY: self.p.system_messages.get(code, ""),
        }
        return Send(_compact(obj), "control", obj, self.p.trnm_system, None, code)

    def _system_close(self, name: str) -> None:
        self._out.extend(self._held)
        self._held.clear()
        send = self._system(name)
        self._out.append(send)
        self._close(CLOSE_NORMAL, str(send.msg_cd))

    def _emit_real(self, now: float, rounds: int) -> None:
        wall = self.world.wall(now)
        regs = [pair for pair in self.registrations if self.market.serves(*pair)]
        if not regs:
            return
        faults = self.world.faults
        prob = self.settings.repeat_entry_probability
        for _ in range(rounds):
            entries = [self.market.entry(t, i, wall) for t, i in regs]
            if prob and self._rng.random() < prob:
                t, i = regs[int(self._rng.random() * len(regs))]
                entries.append(self.market.entry(t, i, wall))
            if self._rng.random() < 0.5:
                obj: dict[str, Any] = {"trnm": self.p.trnm_real, "data": entries}
            else:  # the official examples show both key orders
                obj = {"data": entries, "trnm": self.p.trnm_real}
            text = _compact(obj)
            if faults.malformed:
                text = self._corrupt(text, faults.malformed.popleft())
                obj = {}
            self._out.append(Send(text, "data", obj or None, self.p.trnm_real, None, None))

    def _corrupt(self, text: str, kind: str) -> str:
        if kind == "truncated":
            return text[: max(1, len(text) // 2)]
        if kind == "bad_value":
            obj = json.loads(text)
            entry = obj["data"][0]
            first = next(iter(entry["values"]))
            entry["values"][first] = "".join(self._rng.choice(_JUNK) for _ in range(6))
            return _compact(obj)
        return "".join(self._rng.choice(_JUNK) for _ in range(24))

    def _close(self, code: int, reason: str) -> None:
        self._out.extend(self._held)
        self._held.clear()
        self._out.append(Close(code, reason))
        self.state = KState.CLOSING

    def _queue(self, send: Send) -> None:
        if self.world.faults.stall_until and self.world.stalled(self._now):
            self._held.append(send)
        else:
            self._out.append(send)

    def _violation(self, schema: str | None, errors: list[str], text: str | None) -> None:
        self.world.record(
            "ws", self.conn, "in", "violation", schema=schema, errors=errors, text=text
        )


def _pairs(data: Any) -> list[tuple[str, str]]:
    """(type, item) pairs of a REG/REMOVE ``data`` list (the cross product of each entry)."""
    out: list[tuple[str, str]] = []
    if not isinstance(data, list):
        return out
    for entry in data:
        if not isinstance(entry, dict):
            continue
        items, types = entry.get("item"), entry.get("type")
        if not isinstance(items, list) or not isinstance(types, list):
            continue
        for t in types:
            for i in items:
                if isinstance(t, str) and isinstance(i, str) and (t, i) not in out:
                    out.append((t, i))
    return out
