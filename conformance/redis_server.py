"""A private ``redis-server`` for the scenarios that need one (token lock, socket lease).

The suite never touches a Redis it did not start: each scenario gets a fresh server on a free
loopback port, no persistence, a password (so a target that prints its ``REDIS_URL`` leaks a
canary the secret check looks for), and a temporary directory removed afterwards.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from stockmon.conformance.errors import ResourceError

# Non-normative: how long a fresh redis-server may take to answer PING on a loaded machine.
_START_TIMEOUT_S = 15.0
SENTINEL_SERVICE = "stockmon"  # the master name a ``sentinel_of`` server monitors
# Non-normative: free ports tried by a first start whose port was taken meanwhile.
_PORT_ATTEMPTS = 5


class _PortTaken(ResourceError):
    """The server's port was in use when it tried to bind."""


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    """One redis-server process owned by its caller (harness, test or benchmark).

    ``kill`` is an outage as clients see it (the port and directory are kept, so ``start`` brings
    the same server back); ``stop`` ends it for good and removes the directory. ``cluster`` starts
    a Cluster node (the caller joins the nodes); ``sentinel_of`` a Sentinel that monitors the
    server on that port as ``SENTINEL_SERVICE``.
    """

    def __init__(
        self,
        *,
        password: bool = True,
        prefix: str = "stockmon-conformance-redis-",
        cluster: bool = False,
        sentinel_of: int | None = None,
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ResourceError(
                "redis-server is not installed but a selected scenario needs Redis "
                "(apt-get install redis-server, or deselect it with -k 'not fleet')"
            )
        self._binary = binary
        self.port = free_port()
        self.password = "canary-redis-" + secrets.token_hex(12) if password else ""
        self._dir = tempfile.mkdtemp(prefix=prefix)
        self._proc: subprocess.Popen[bytes] | None = None
        self._started = False  # once it has run, its port is what clients know: never moved
        self._cluster = cluster
        self._bus_port = free_port() if cluster else 0
        self._sentinel_of = sentinel_of

    @property
    def url(self) -> str:
        """The URL handed to clients (carries the password, if there is one)."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (or restart) the server and wait until it answers an authenticated PING.

        A free port can be taken between :func:`free_port` and the server's bind (an outgoing
        connection gets its port from the same range), so a first start that finds its port in
        use moves to another; a restart keeps its port (clients know it) and fails instead.
        """
        for attempt in range(_PORT_ATTEMPTS):
            try:
                self._start_once()
            except _PortTaken:
                if self._started or attempt == _PORT_ATTEMPTS - 1:
                    raise
                self.port = free_port()
                if self._cluster:
                    self._bus_port = free_port()
                continue
            self._started = True
            return

    def _start_once(self) -> None:
        args = f"--port {self.port} --bind 127.0.0.1 --appendonly no --daemonize no"
        auth_args = ["--requirepass", self.password] if self.password else []
        log = Path(self._dir) / "redis.log"  # its own log, read when it exits at start
        cmd = [self._binary, *args.split(), *auth_args, "--save", "", "--dir", self._dir]
        cmd += ["--logfile", str(log)]
        if self._cluster:
            nodes = Path(self._dir) / "nodes.conf"
            cmd += ["--cluster-enabled", "yes", "--cluster-config-file", str(nodes)]
            # the bus port is port + 10000 unless given, past 65535 for a high free port
            cmd += ["--cluster-port", str(self._bus_port)]
        if self._sentinel_of is not None:
            conf = Path(self._dir) / "sentinel.conf"
            conf.write_text(
                f"port {self.port}\nbind 127.0.0.1\ndir {self._dir}\nlogfile {log}\n"
                f"sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {self._sentinel_of} 1\n",
                encoding="utf-8",
            )
            cmd = [self._binary, str(conf), "--sentinel"]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + _START_TIMEOUT_S
        auth = (f"AUTH {self.password}\r\n" if self.password else "").encode() + b"PING\r\n"
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                proc, self._proc = self._proc, None
                assert proc.stderr is not None  # piped above
                with proc.stderr as stderr:
                    err = stderr.read().decode(errors="replace") + _tail(log)
                why = f"redis-server exited at start (port {self.port}): {err.strip()[-300:]}"
                raise (_PortTaken if "already in use" in err else ResourceError)(why)
            if _answers_pong(self.port, auth):
                return
            time.sleep(0.05)
        self.stop()
        raise ResourceError(
            f"redis-server did not answer on port {self.port} within {_START_TIMEOUT_S} s"
        )

    def kill(self) -> None:
        """Kill the process only: an outage, as clients see it."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(timeout=10)
            if self._proc.stderr:
                self._proc.stderr.close()
            self._proc = None

    def stop(self) -> None:
        """Kill the server and remove its directory."""
        self.kill()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> PrivateRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _tail(path: Path, size: int = 2048) -> str:
    """The end of a log file, or nothing if it was never written."""
    try:
        with path.open("rb") as f:
            f.seek(max(0, f.seek(0, 2) - size))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def _answers_pong(port: int, probe: bytes) -> bool:
    """Whether the server on ``port`` answers ``probe`` with PONG (False while it is starting)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(probe)
            data = b""
            while b"PONG" not in data and len(data) < 64:
                chunk = s.recv(64)
                if not chunk:
                    break
                data += chunk
            return b"PONG" in data
    except OSError:
        return False
