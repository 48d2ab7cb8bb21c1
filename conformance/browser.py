"""The suite's browsers: what a front end does on a target's internal API, recorded as evidence.

A scenario script drives a :class:`Browser` from its own thread: REST calls (httpx) with the right
key, a wrong one or none, and stream connections (websockets) that read every message on a thread
of their own, or one that never reads at all (a stalled tab). Everything seen becomes an
*observation*, a record timed in spec seconds on the mock's clock (``t_spec``), so the API checks
compare it with what the mock sent. Observations carry ``source: "api"`` and a ``client`` name.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.protocol import State
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin, Subprotocol
from websockets.uri import parse_uri

from stockmon.conformance.evidence import Record
from stockmon.spec import Spec

# Non-normative: real seconds a REST call or a handshake may take before the browser gives up
# (a target that does not answer is judged from the missing answer, never waited for).
TIMEOUT_S = 10.0
# Non-normative: the receive buffer of a tab that never reads, so the target's writes to it
# back up within a fraction of a second instead of filling megabytes of kernel buffers first.
STALLED_RCVBUF = 4096
# Non-normative: how much of an answer's text an observation keeps.
_BODY_KEEP = 4000

# The origins of the API-CORS story: the harness sets the clause's origins variable to ALLOWED
# for every API target, and DENIED is an origin the target was never told of.
ALLOWED_ORIGIN = "http://front.stockmon.test:5173"
DENIED_ORIGIN = "http://elsewhere.stockmon.test"

# Who the browser says it is on a REST call (``auth`` of an observation).
RIGHT, WRONG, NONE = "right", "wrong", "none"


class Browser:
    """One front end of a scenario: REST and stream clients sharing the run's clock and evidence."""

    def __init__(
        self,
        spec: Spec,
        url: str,
        key: str,
        now: Callable[[], float],
        observe: Callable[[Record], None],
    ) -> None:
        self.spec = spec
        self.url = url
        self.key = key
        self.now = now
        self._observe = observe
        self._lock = threading.Lock()
        self._n = 0
        self._streams: list[Stream] = []
        self._stalled: list[socket.socket] = []
        self._http = httpx.Client(base_url=url, timeout=TIMEOUT_S)
        auth = spec.clause("API-AUTH")
        self._header = auth.string("rest_header")
        self._scheme = auth.string("rest_scheme")

    def record(self, fields: Mapping[str, Any]) -> Record:
        """Time-stamp and keep one observation (numbered in the order they were made)."""
        with self._lock:
            self._n += 1
            rec = {"source": "api", "seq": f"api-{self._n}", "t_spec": self.now(), **fields}
        self._observe(rec)
        return rec

    # ------------------------------------------------------------------ REST
    def headers(self, auth: str) -> dict[str, str]:
        """The authorization header of a caller with the right key, a wrong one, or none."""
        if auth == NONE:
            return {}
        key = self.key if auth == RIGHT else "x" + self.key[1:][::-1]
        return {self._header: f"{self._scheme} {key}"}

    def request(
        self,
        method: str,
        path: str,
        *,
        auth: str = RIGHT,
        body: Any = None,
        purpose: str = "",
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Record:
        """One REST call; the observation holds the status, the answer's headers and body (parsed
        when JSON), the extra request ``headers`` (an Origin, say) and the ``purpose`` the checks
        pick it out by."""
        sent = self.now()
        fields: dict[str, Any] = {
            "kind": "http",
            "method": method,
            "path": path,
            "auth": auth,
            "purpose": purpose,
            "request": body,
            "request_headers": dict(headers or {}),
        }
        try:
            r = self._http.request(
                method,
                path,
                headers={**self.headers(auth), **(headers or {})},
                json=body,
                params=dict(params or {}),
            )
        except httpx.HTTPError as exc:
            return self.record({**fields, "sent_t": sent, "error": type(exc).__name__})
        try:
            parsed: Any = r.json()
        except ValueError:
            parsed = r.text[:_BODY_KEEP]
        return self.record(
            {
                **fields,
                "sent_t": sent,
                "status": r.status_code,
                "body": parsed,
                "headers": dict(r.headers),
            }
        )

    def ticket(self) -> str | None:
        """A fresh stream ticket (None when the target would not issue one)."""
        auth = self.spec.clause("API-AUTH")
        rec = self.request(auth.string("ticket_method"), auth.string("ticket_path"))
        body = rec.get("body")
        ticket = body.get("ticket") if isinstance(body, Mapping) else None
        return ticket if isinstance(ticket, str) else None

    # ------------------------------------------------------------------ streams
    def subprotocols(self, ticket: str | None) -> list[Subprotocol]:
        """What a browser offers: the API's subprotocol, and the ticket's when it has one."""
        auth = self.spec.clause("API-AUTH")
        offer = [Subprotocol(auth.string("ws_subprotocol"))]
        if ticket is not None:
            offer.append(Subprotocol(auth.string("ws_ticket_subprotocol_prefix") + ticket))
        return offer

    def stream_url(self) -> str:
        """The stream's WebSocket URL."""
        return self.url.replace("http://", "ws://", 1) + self.spec.clause("API-STREAM").string(
            "path"
        )

    def stream(self, client: str, ticket: str | None, origin: str | None = None) -> Stream:
        """Open a stream that reads every message on its own thread (observations ``ws``); a
        browser page on ``origin`` sends that Origin header in the handshake."""
        s = Stream(self, client, ticket, origin)
        self._streams.append(s)
        s.start()
        return s

    def stalled(self, client: str, keys: Sequence[str]) -> Stalled | None:
        """Open a stream, subscribe to ``keys`` and never read again (a frozen tab): a tiny
        receive buffer, the handshake by hand, then only writes (None if it did not open)."""
        ticket = self.ticket()
        if ticket is None:
            return None
        proto = ClientProtocol(parse_uri(self.stream_url()), subprotocols=self.subprotocols(ticket))
        host, port = self.url.removeprefix("http://").rsplit(":", 1)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, STALLED_RCVBUF)
        sock.settimeout(TIMEOUT_S)
        self._stalled.append(sock)
        try:
            sock.connect((host, int(port)))
            proto.send_request(proto.connect())
            sock.sendall(b"".join(proto.data_to_send()))
            while proto.state is State.CONNECTING:
                data = sock.recv(256)  # the 101 answer only; the welcome may stay unread
                if not data:
                    break
                proto.receive_data(data)
        except OSError as exc:
            self.record({"kind": "ws_stalled", "client": client, "error": type(exc).__name__})
            return None
        if proto.state is not State.OPEN:
            self.record({"kind": "ws_stalled", "client": client, "opened": False})
            return None
        tab = Stalled(sock, proto)
        if not tab.send({"type": "subscribe", "keys": list(keys)}):
            return None
        self.record({"kind": "ws_stalled", "client": client, "opened": True, "keys": list(keys)})
        return tab

    def close(self) -> None:
        """Close every stream and the HTTP client (end of the script)."""
        for s in self._streams:
            s.close()
        for sock in self._stalled:
            sock.close()
        self._http.close()


class Stream:
    """One stream connection read on its own thread; every message and the close are observed."""

    def __init__(
        self, browser: Browser, client: str, ticket: str | None, origin: str | None = None
    ) -> None:
        self.browser = browser
        self.client = client
        self.ticket = ticket
        self.origin = origin
        self._conn: ClientConnection | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"browser-{client}", daemon=True)

    def start(self) -> None:
        """Connect and start reading (returns once the handshake ended either way)."""
        self._thread.start()
        self._ready.wait(TIMEOUT_S * 2)

    def _run(self) -> None:
        b = self.browser
        try:
            conn = connect(
                b.stream_url(),
                subprotocols=b.subprotocols(self.ticket),
                origin=None if self.origin is None else Origin(self.origin),
                open_timeout=TIMEOUT_S,
                close_timeout=1.0,
                max_size=None,
            )
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            b.record({"kind": "ws_refused", "client": self.client, "error": type(exc).__name__})
            self._ready.set()
            return
        with conn:
            self._read(conn)

    def _read(self, conn: ClientConnection) -> None:
        b = self.browser
        self._conn = conn
        b.record({"kind": "ws_open", "client": self.client, "subprotocol": conn.subprotocol})
        self._ready.set()
        try:
            for raw in conn:
                try:
                    msg: Any = json.loads(raw)
                except ValueError:
                    msg = {"unparsed": str(raw)[:_BODY_KEEP]}
                b.record({"kind": "ws_message", "client": self.client, "message": msg})
        except ConnectionClosed:
            pass
        rcvd = conn.protocol.close_rcvd
        b.record(
            {
                "kind": "ws_closed",
                "client": self.client,
                "code": None if rcvd is None else rcvd.code,
                "reason": None if rcvd is None else rcvd.reason,
            }
        )

    def send(self, message: Mapping[str, Any]) -> None:
        """Send one client message (observed as ``ws_sent``)."""
        if self._conn is None:
            return
        self.browser.record({"kind": "ws_sent", "client": self.client, "message": dict(message)})
        with contextlib.suppress(ConnectionClosed):
            self._conn.send(json.dumps(message))

    def closed(self) -> bool:
        """Whether the reader thread has seen the end of the connection."""
        return not self._thread.is_alive()

    def wait_closed(self, timeout_s: float) -> bool:
        """Wait (real seconds) for the connection to end; True if it did."""
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def close(self) -> None:
        """Close from the browser's side and wait for the reader."""
        if self._conn is not None:
            self._conn.close()
        self._thread.join(TIMEOUT_S)


class Stalled:
    """A tab that never reads: it can only write (each write is a frame on the raw socket)."""

    def __init__(self, sock: socket.socket, proto: ClientProtocol) -> None:
        self.sock = sock
        self.proto = proto

    def send(self, message: Mapping[str, Any]) -> bool:
        """Send one client message; False once the target stopped taking them."""
        self.proto.send_text(json.dumps(message).encode())
        try:
            self.sock.sendall(b"".join(self.proto.data_to_send()))
        except OSError:
            return False
        return True
