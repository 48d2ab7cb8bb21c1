"""Helpers of the gateway tests: a running ``stockmon serve`` against a real KIS mock on free loopback ports.

The service is a subprocess (the real CLI, SIGTERM at the end) with a canary VITE_API_KEY; its
stdout and stderr go to a file that tests search for the canary.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from stream_support import STOCKMON, cli_env

from stockmon.conformance.redis_server import free_port
from stockmon.mockserver import KisMock, MockConfig, MockThread
from stockmon.spec import Spec, load_spec

CANARY_KEY = "canary-VITE-key-7f3a9c1e5b2d"
SUBSCRIPTIONS = "H0STCNT0:005930,H0STASP0:005930,HDFSCNT0:DNASAAPL"


@dataclass
class Service:
    """A running service: its base URL, key, log file, mock and process."""

    url: str
    key: str
    log: Path
    mock: KisMock
    proc: subprocess.Popen[bytes]
    spec: Spec

    def auth(self) -> dict[str, str]:
        """The authorization header with the right key."""
        c = self.spec.clause("API-AUTH")
        return {c.string("rest_header"): f"{c.string('rest_scheme')} {self.key}"}

    @property
    def ws_url(self) -> str:
        """The stream's WebSocket URL."""
        return self.url.replace("http://", "ws://") + self.spec.clause("API-STREAM").string("path")

    def ticket(self) -> str:
        """A fresh stream ticket."""
        path = self.spec.clause("API-AUTH").string("ticket_path")
        r = httpx.post(self.url + path, headers=self.auth())
        r.raise_for_status()
        return str(r.json()["ticket"])

    def subprotocols(self, ticket: str) -> list[str]:
        """What a browser offers: the API's subprotocol and the ticket's."""
        c = self.spec.clause("API-AUTH")
        return [c.string("ws_subprotocol"), c.string("ws_ticket_subprotocol_prefix") + ticket]


def start_service(tmp: Path, **mock_fields: object) -> Iterator[Service]:
    """Mock + ``stockmon serve``; yields once the first quote is there, stops both after."""
    spec = load_spec("1.2")
    thread = MockThread(MockConfig(**mock_fields))  # type: ignore[arg-type]
    mock = thread.start()
    port = free_port()
    log = tmp / "serve.log"
    env = cli_env(
        {
            **mock.env(),
            "VITE_API_KEY": CANARY_KEY,
            "STOCKMON_SUBSCRIPTIONS": SUBSCRIPTIONS,
            # a token cache of its own: the mock's app key is the same in every run (seed 1)
            "STOCKMON_CACHE_DIR": str(tmp / "token-cache"),
        }
    )
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [STOCKMON, "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    service = Service(f"http://127.0.0.1:{port}", CANARY_KEY, log, mock, proc, spec)
    try:
        quote = spec.clause("API-SNAPSHOT").string("quote_path").replace("{key}", "005930")
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(service.url + quote, headers=service.auth()).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "no quote within 20 s:\n" + log.read_text()
            time.sleep(0.1)
        yield service
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        thread.stop()
