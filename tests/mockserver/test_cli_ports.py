"""``stockmon mock --ports 0`` and the hint on a port clash (issue 12 point 5)."""

from __future__ import annotations

import signal
import socket
import subprocess
from urllib.parse import urlsplit

from .test_cli import STOCKMON, exports


def test_ports_0_moves_every_port_and_two_mocks_run_side_by_side() -> None:
    """Two ``--ports 0`` mocks start together; each export names its own real, free ports."""
    procs = [
        subprocess.Popen(
            [STOCKMON, "mock", "--ports", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        envs = [exports(p, []) for p in procs]
        ports: list[int] = []
        for env in envs:
            for name in ("KIS_REST_URL", "KIS_WS_URL", "KIWOOM_REST_URL", "KIWOOM_WS_URL"):
                port = urlsplit(env[name]).port
                assert port is not None and port not in (9443, 21000)
                ports.append(port)
        assert len(set(ports)) == 8
        for env in envs:  # the exported port is the one listening
            url = urlsplit(env["KIS_REST_URL"])
            with socket.create_connection((url.hostname, url.port), timeout=2):
                pass
    finally:
        for p in procs:
            p.send_signal(signal.SIGINT)
            p.communicate(timeout=10)


def test_port_clash_names_the_flag() -> None:
    """A taken port: one line, exit 2, and the hint names --ports 0."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run(
            [STOCKMON, "mock", "--rest-port", str(port), "--ws-port", "0", "--no-kiwoom"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "'--ports 0'" in lines[0] and "Traceback" not in out.stderr
