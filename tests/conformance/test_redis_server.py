"""The harness's private redis-server: a first start moves off a port taken meanwhile, a restart
keeps its port (clients know it) and says so when it is taken."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from stockmon.conformance.errors import ResourceError
from stockmon.conformance.redis_server import PrivateRedis


@contextmanager
def listening(port: int = 0) -> Iterator[int]:
    """A loopback listener holding ``port`` (0: any), as another process would."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        yield int(s.getsockname()[1])


def _pong(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), 2) as c:
        c.sendall(b"PING\r\n")
        return c.recv(16).startswith(b"+PONG")


def test_first_start_moves_off_a_port_taken_meanwhile() -> None:
    """A port taken between free_port() and the bind: the server starts on another one."""
    server = PrivateRedis(password=False)
    with listening() as taken:
        server.port = taken  # what a race with an outgoing connection amounts to
        try:
            server.start()
            assert server.port != taken
            assert _pong(server.port)
        finally:
            server.stop()


def test_restart_keeps_its_port_and_fails_when_taken() -> None:
    """After a kill the same port is wanted back; taken, start() raises naming it, port unchanged."""
    server = PrivateRedis(password=False)
    try:
        server.start()
        port = server.port
        server.kill()
        with (
            listening(port),
            pytest.raises(ResourceError, match=f"(?s)port {port}.*already in use"),
        ):
            server.start()
        assert server.port == port
        server.start()  # free again: back on the port its clients know
        assert server.port == port and _pong(port)
    finally:
        server.stop()
