"""Sans-I/O KIS WebSocket server session (the shared shape of :mod:`~stockmon.mockserver.core`).

The shell also feeds ``receive_pong`` / ``receive_ping`` (RFC 6455 control frames). States: OPEN ->
CLOSING (a Close was queued: refusal, unanswered PINGPONG; or the shell closes it) -> CLOSED.

Answers (codes from the spec via Profile.ws_code): invalid JSON -> invalid_json; no header ->
header_not_found; PINGPONG -> answer-or-reflect; no body / input / tr_key -> *_not_found; bad
approval key -> invalid_approval; appkey already in use by another session -> appkey_in_use then
close; custtype -> custtype_not_found / invalid_custtype; tr_type -> invalid_tr_type; tr_id without
a layout -> invalid_tr_id; key not matching its market -> invalid_tr_key; then subscribe
(already_subscribed / max_subscriptions / subscribed + output.iv/key) or unsubscribe
(not_subscribed / unsubscribed).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from stockmon.boundedjson import loads as bounded_json
from stockmon.mockserver.core import CoreBase, Send, SessionState
from stockmon.mockserver.kis.state import World
from stockmon.mockserver.world import short_hash

# Close codes and reasons (RFC 6455): non-normative choices of the mock.
CLOSE_POLICY = 1008
REASON_IN_USE = "ALREADY IN USE appkey"
REASON_PING_UNANSWERED = "PINGPONG not answered"
_CIPHER_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


class ServerSession(CoreBase):
    """One KIS WebSocket session; pure protocol logic."""

    BINARY_VIOLATION = "binary frame (KIS packets are JSON text)"

    def __init__(self, world: World, conn: str, now: float) -> None:
        self.settings = world.session_settings
        super().__init__(world, conn, now, self.settings.tick_rate_hz, SessionState.OPEN)
        self.world: World = world
        self.profile = world.profile
        self.registrations: dict[tuple[str, str], tuple[str, str]] = {}  # -> (iv, key)
        period = self.settings.server_pingpong_period_s
        self._next_ping: float | None = now + period if period else None
        self._outstanding: list[tuple[str, float]] = []  # (datetime, sent_at)
        self._sent_datetimes: set[str] = set()
        self._tz = timezone(timedelta(seconds=self.profile.kst_offset_s))

    def _summary(self) -> dict[str, Any]:
        return {"appkey_bound": self.appkey is not None}

    def _deadlines(self) -> list[float]:
        cands = [] if self._next_ping is None else [self._next_ping]
        grace = self.settings.unanswered_pingpong_grace_s
        if grace and self._outstanding:
            cands.append(self._outstanding[0][1] + grace)
        return cands

    def _on_timer(self, now: float, stalled: bool) -> None:
        """Send due pings and data frames; drop the session if a PINGPONG went unanswered."""
        if self._next_ping is not None and now >= self._next_ping:
            period = self.settings.server_pingpong_period_s or 0.0
            if not stalled:
                self._send_ping(now)
            while self._next_ping <= now:
                self._next_ping += period
        grace = self.settings.unanswered_pingpong_grace_s
        if grace and self._outstanding and not stalled and now >= self._outstanding[0][1] + grace:
            self._close(CLOSE_POLICY, REASON_PING_UNANSWERED)
            return
        rounds = self._due_rounds(now, stalled)
        if rounds:
            self._emit_data(now, rounds)

    def _on_binary(self) -> None:
        """KIS speaks text only: a binary frame is a JSON parse error."""
        self._error("invalid_json", "", "")

    def receive_pong(self, data: bytes, now: float) -> None:
        """An RFC 6455 pong frame (the official samples answer PINGPONG this way)."""
        self._now = now
        self._record("in", "pong", data=data[:256].decode("utf-8", "replace"))
        if self.settings.accept_pong_frame_answer and self._outstanding:
            self._answer_ping(_pingpong_datetime(data, self.profile.ping_tr_id), now)

    def receive_ping(self, data: bytes, now: float) -> None:
        """An RFC 6455 ping frame (the library answers it with a pong)."""
        self._now = now
        self._record("in", "ping", data=data[:256].decode("utf-8", "replace"))

    def receive_text(self, text: str, now: float) -> None:
        """One inbound text frame."""
        self._now = now
        rec: dict[str, Any] = {
            "text": text,
            "json": None,
            "tr_id": None,
            "tr_type": None,
            "tr_key": None,
            "msg_cd": None,
            "frame": "other",
        }
        try:
            obj: Any = bounded_json(text, what="client frame")
        except ValueError:
            obj = None
            parsed = False
        else:
            parsed = True
            rec["json"] = obj
        header = obj.get("header") if isinstance(obj, dict) else None
        body = obj.get("body") if isinstance(obj, dict) else None
        inp = body.get("input") if isinstance(body, dict) else None
        if isinstance(header, dict):
            rec["frame"] = "control"
            tr_id_h = header.get("tr_id")
            rec["tr_id"] = tr_id_h if isinstance(tr_id_h, str) else None
            tr_type = header.get("tr_type")
            rec["tr_type"] = tr_type if isinstance(tr_type, str) else None
            if tr_id_h == self.profile.ping_tr_id:
                rec["frame"] = "pingpong"
        if isinstance(inp, dict):
            for k in ("tr_id", "tr_key"):
                v = inp.get(k)
                if isinstance(v, str):
                    rec[k] = v
        self._record("in", "text", **rec)
        if self.state is not SessionState.OPEN:
            return
        if not parsed:
            self._violation(None, ["not valid JSON"], text)
            self._error("invalid_json", "", "")
            return
        if not isinstance(header, dict):
            self._violation(None, ["no header object"], text)
            self._error("header_not_found", "", "")
            return
        if header.get("tr_id") == self.profile.ping_tr_id:
            self._on_pingpong(obj, header, text, now)
            return
        tr_type = header.get("tr_type")
        schema = (
            "kis-ws-unsubscribe"
            if tr_type == self.profile.unsubscribe_tr_type
            else "kis-ws-subscribe"
        )
        errs = self.world.validate(schema, obj)
        if errs:
            self._violation(schema, errs, text)
        tr_id = inp.get("tr_id") if isinstance(inp, dict) else None
        tr_key = inp.get("tr_key") if isinstance(inp, dict) else None
        ack_tr_id = tr_id if isinstance(tr_id, str) else ""
        ack_key = tr_key if isinstance(tr_key, str) else ""
        if not isinstance(body, dict):
            self._error("body_not_found", ack_tr_id, ack_key)
            return
        if not isinstance(inp, dict):
            self._error("input_not_found", ack_tr_id, ack_key)
            return
        if not isinstance(tr_key, str) or not tr_key:
            self._error("tr_key_not_found", ack_tr_id, ack_key)
            return
        appkey = self.world.auth.approval_appkey(header.get("approval_key"), now)
        if appkey is None:
            self._error("invalid_approval", ack_tr_id, ack_key)
            return
        if self.appkey is None:
            if not self.world.claim_appkey(appkey, self.conn, now):
                self._refuse_in_use()
                return
            self.appkey = appkey
            self._record("event", "session_bound", appkey_hash=short_hash(appkey))
        custtype = header.get("custtype")
        if custtype is None:
            self._error("custtype_not_found", ack_tr_id, ack_key)
            return
        if custtype not in self.profile.custtypes:
            self._error("invalid_custtype", ack_tr_id, ack_key)
            return
        if tr_type not in (self.profile.subscribe_tr_type, self.profile.unsubscribe_tr_type):
            self._error("invalid_tr_type", ack_tr_id, ack_key)
            return
        if not isinstance(tr_id, str) or tr_id not in self.profile.spec.layouts:
            self._error("invalid_tr_id", ack_tr_id, ack_key)
            return
        market = self.profile.spec.layouts[tr_id].market
        if self.profile.spec.key_match(tr_key, market) is None:
            self._error("invalid_tr_key", tr_id, tr_key)
            return
        if tr_type == self.profile.subscribe_tr_type:
            self._subscribe(tr_id, tr_key, now)
        else:
            self._unsubscribe(tr_id, tr_key)

    def connection_lost(self, now: float, abrupt: bool) -> None:
        """The socket is gone: free the appkey slot."""
        self.state = SessionState.CLOSED
        if self.appkey is not None:
            self.world.release_appkey(self.appkey, self.conn, now, abrupt)

    # --- handlers ---------------------------------------------------------------------------
    def _subscribe(self, tr_id: str, tr_key: str, now: float) -> None:
        self.world.emit("subscribe", conn=self.conn, tr_id=tr_id, tr_key=tr_key)
        injected = self.world.faults.take_subscribe_error(tr_key)
        reg = (tr_id, tr_key)
        if injected is not None:
            if injected == self.profile.ws_code("already_subscribed").code:
                # The gateway believes it is registered already: it is, and data flows.
                self.registrations.setdefault(reg, self._cipher())
                self._start_data(now)
            self._control(tr_id, tr_key, injected)
            return
        if reg in self.registrations:
            self._error("already_subscribed", tr_id, tr_key)
            return
        if len(self.registrations) >= self.profile.max_registrations:
            self._error("max_subscriptions", tr_id, tr_key)
            return
        iv, key = self.registrations[reg] = self._cipher()
        self._start_data(now)
        ok = self.profile.ws_code("subscribed")
        self._control(tr_id, tr_key, ok.code, output={"iv": iv, "key": key})

    def _unsubscribe(self, tr_id: str, tr_key: str) -> None:
        self.world.emit("unsubscribe", conn=self.conn, tr_id=tr_id, tr_key=tr_key)
        if self.registrations.pop((tr_id, tr_key), None) is None:
            self._error("not_subscribed", tr_id, tr_key)
            return
        self._control(tr_id, tr_key, self.profile.ws_code("unsubscribed").code)

    def _on_pingpong(
        self, obj: dict[str, Any], header: dict[str, Any], text: str, now: float
    ) -> None:
        dt = header.get("datetime")
        if isinstance(dt, str) and dt in self._sent_datetimes:
            errs = self.world.validate("kis-ws-server-pingpong", obj)
            if errs:
                self._violation("kis-ws-server-pingpong", errs, text)
            self._answer_ping(dt, now)
            return
        errs = self.world.validate("kis-ws-client-pingpong", obj)
        if errs:
            self._violation("kis-ws-client-pingpong", errs, text)
        self.world.emit("client_ping", conn=self.conn)
        if self.settings.reflect_client_ping:
            self._queue(Send(text, "pingpong", obj, self.profile.ping_tr_id))

    def _answer_ping(self, dt: str | None, now: float) -> None:
        if dt is None:
            # A pong frame without a recognisable payload answers the oldest ping.
            self._outstanding = self._outstanding[1:]
            return
        for i, (sent_dt, _) in enumerate(self._outstanding):
            if sent_dt == dt:
                del self._outstanding[: i + 1]
                return

    def _send_ping(self, now: float) -> None:
        wall = self.world.wall(now)
        dt = (
            datetime.fromtimestamp(wall, UTC)
            .astimezone(self._tz)
            .strftime(self.profile.ping_datetime_format)
        )
        if dt in self._sent_datetimes:
            # Two pings within one second: the real datetime has second resolution, make it unique.
            base = datetime.strptime(dt, self.profile.ping_datetime_format)
            while dt in self._sent_datetimes:
                base += timedelta(seconds=1)
                dt = base.strftime(self.profile.ping_datetime_format)
        obj = {"header": {"tr_id": self.profile.ping_tr_id, "datetime": dt}}
        self._sent_datetimes.add(dt)
        self._outstanding.append((dt, now))
        self._out.append(
            Send(json.dumps(obj, separators=(",", ":")), "pingpong", obj, self.profile.ping_tr_id)
        )

    def _emit_data(self, now: float, rounds: int) -> None:
        world = self.world
        wall = world.wall(now)
        s = self.settings
        market, replay, faults, rng, out = (
            world.market,
            world.replay,
            world.faults,
            self._rng,
            self._out,
        )
        max_records, prob = s.max_records_per_frame, s.multi_record_probability
        sim = world.sim  # a closed market (mock --market hours) sends no data
        regs = [r for r in self.registrations if sim.is_open(sim.spec.market_of(r[1]) or "", wall)]
        for _ in range(rounds):
            for tr_id, tr_key in regs:
                text: str | None = None
                if replay is not None:
                    text = replay.next_frame(tr_id, tr_key)
                if text is None:
                    n = market.records_in_frame(rng, max_records, prob) if max_records > 1 else 1
                    text = market.frame(tr_id, tr_key, n, wall)
                if faults.malformed:
                    text = self._corrupt(text, faults.malformed.popleft())
                out.append(Send(text, "data", None, tr_id, tr_key))

    def _corrupt(self, text: str, kind: str) -> str:
        p = self.profile
        if kind == "truncated":
            return text[: max(1, len(text) // 2)]
        if kind == "bad_count":
            parts = text.split(p.part_separator, 3)
            if len(parts) == 4:
                parts[2] = f"{int(parts[2]) + 1:0{p.count_digits}d}"
                return p.part_separator.join(parts)
            return text
        return f"{p.plain_flag}{p.part_separator}{self._junk(24)}"

    def _cipher(self) -> tuple[str, str]:
        r = self._rng
        iv = "".join(r.choice(_CIPHER_ALPHABET) for _ in range(self.profile.iv_length))
        key = "".join(r.choice(_CIPHER_ALPHABET) for _ in range(self.profile.key_length))
        return iv, key

    def _control(
        self, tr_id: str, tr_key: str, code: str, output: dict[str, str] | None = None
    ) -> None:
        entry = self.profile.spec.ws_code(code)
        body: dict[str, Any] = {"rt_cd": entry["rt_cd"], "msg_cd": code, "msg1": entry["msg1"]}
        if output is not None:
            body["output"] = output
        obj = {
            "header": {"tr_id": tr_id, "tr_key": tr_key, "encrypt": self.profile.encrypt_plain},
            "body": body,
        }
        self._queue(Send(json.dumps(obj, ensure_ascii=False), "control", obj, tr_id, tr_key, code))

    def _error(self, name: str, tr_id: str, tr_key: str) -> None:
        self._control(tr_id, tr_key, self.profile.ws_code(name).code)

    def _refuse_in_use(self) -> None:
        code = self.profile.ws_code("appkey_in_use")
        hdr = self.profile.in_use_header
        self._control(str(hdr["tr_id"]), str(hdr["tr_key"]), code.code)
        self._record("event", "session_refused", code=code.code)
        self._close(CLOSE_POLICY, REASON_IN_USE)


def _pingpong_datetime(data: bytes, ping_tr_id: str) -> str | None:
    try:
        obj = bounded_json(data, what="pingpong")
    except ValueError:
        return None
    header = obj.get("header") if isinstance(obj, dict) else None
    if isinstance(header, dict) and header.get("tr_id") == ping_tr_id:
        dt = header.get("datetime")
        return dt if isinstance(dt, str) else None
    return None
