"""Sans-I/O Kiwoom WebSocket server session (the shared shape of :mod:`~stockmon.mockserver.core`).

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

import json
from typing import Any

from stockmon.boundedjson import loads as bounded_json
from stockmon.mockserver.core import ENDED, CoreBase, Send, SessionState
from stockmon.mockserver.kiwoom.market import KiwoomMarket
from stockmon.mockserver.kiwoom.profile import SYSTEM_CODE_KEY, SYSTEM_MESSAGE_KEY
from stockmon.mockserver.kiwoom.state import KiwoomWorld

# Close codes (RFC 6455): non-normative choices of the mock.
CLOSE_POLICY = 1008
CLOSE_NORMAL = 1000
MALFORMED_KINDS = ("truncated", "garbage", "bad_value")


def _compact(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


class KiwoomServerSession(CoreBase):
    """One Kiwoom WebSocket session; pure protocol logic."""

    MAX_CATCH_UP = 64
    BINARY_VIOLATION = "binary frame (Kiwoom packets are JSON text)"

    def __init__(self, world: KiwoomWorld, market: KiwoomMarket, conn: str, now: float) -> None:
        self.settings = world.settings
        super().__init__(world, conn, now, self.settings.tick_rate_hz, SessionState.AWAIT_LOGIN)
        self.world: KiwoomWorld = world
        self.market = market
        self.p = world.profile
        self.token_id: str | None = None
        self.registrations: dict[tuple[str, str], str] = {}  # (type, item) -> grp_no
        timeout = self.settings.login_timeout_s
        self._login_deadline: float | None = now + timeout if timeout else None
        period = self.settings.ping_period_s
        self._next_ping: float | None = now + period if period else None
        self._outstanding: dict[str, float] = {}  # PING text -> time sent
        self._missed = 0  # pings in a row that went unanswered
        self._last_ping: str | None = None
        self._ping_seq = 0

    def _summary(self) -> dict[str, Any]:
        return {"logged_in_with_token": self.token_id is not None}

    def _deadlines(self) -> list[float]:
        cands = [] if self._next_ping is None else [self._next_ping]
        if self.state is SessionState.AWAIT_LOGIN and self._login_deadline is not None:
            cands.append(self._login_deadline)
        return cands

    def _on_timer(self, now: float, stalled: bool) -> None:
        """Login deadline, pings (and the missed-ping close), REAL rounds."""
        if (
            self.state is SessionState.AWAIT_LOGIN
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
        rounds = self._due_rounds(now, stalled)
        if rounds:
            self._emit_real(now, rounds)

    def system_now(self, name: str, now: float, close: bool) -> None:
        """Send a SYSTEM frame by its KIWOOM-PROTOCOL name (fault API), optionally closing."""
        self._now = now
        if self.state in ENDED:
            return
        if close:
            self._system_close(name)
        else:
            self._out.append(self._system(name))

    def evict(self, now: float) -> None:
        """Another session logged in with this session's app key: R10001, then close."""
        self._now = now
        if self.state not in ENDED:
            self._system_close("replaced_by_new_login")

    def receive_text(self, text: str, now: float) -> None:
        """One inbound text frame."""
        self._now = now
        try:
            obj: Any = bounded_json(text, what="client frame")
        except ValueError:
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
        self._record(
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
        if self.state in ENDED:
            return
        if not isinstance(obj, dict):
            self._violation(None, ["not a JSON object"], text)
            return
        if trnm == p.trnm_ping:
            self._on_ping_echo(obj, text)
        elif trnm == p.trnm_login:
            self._on_login(obj, text, now)
        elif trnm in (p.trnm_reg, p.trnm_remove):
            if self.state is not SessionState.OPEN:
                self._violation(None, [f"{trnm} before an accepted {p.trnm_login}"], text)
                self._system_close("no_login")
                return
            self._on_registration(trnm, obj, text, now)
        else:
            self._violation(None, [f"unknown trnm {trnm!r}"], text)

    def connection_lost(self, now: float, abrupt: bool = False) -> None:
        """The socket is gone: free the app key."""
        self.state = SessionState.CLOSED
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
            self._record(
                "event",
                "login_refused",
                token_present=token is not None,
                env=self.settings.env,
            )
            self._close(CLOSE_POLICY, "LOGIN refused")
            return
        first = self.state is SessionState.AWAIT_LOGIN
        self.state = SessionState.OPEN
        ack = {"trnm": p.trnm_login, "return_code": p.success_return_code, "return_msg": ""}
        ack.update(p.login_ack_extra)
        self._queue(self._send(ack, "control", str(p.success_return_code)))
        if live is not None:
            self.token_id = live.token_id
            if self.appkey is None:
                self.appkey = live.appkey
                self.world.login(live.appkey, self.conn, now)
        if first:
            self._record(
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
            self._start_data(now)
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
        sim = self.world.sim
        regs = [
            pair
            for pair in self.registrations
            if self.market.serves(*pair) and sim.is_open(sim.spec.market_of(pair[1]) or "", wall)
        ]
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
            entry["values"][first] = self._junk(6)
            return _compact(obj)
        return self._junk(24)


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
