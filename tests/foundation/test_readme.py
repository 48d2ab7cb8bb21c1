"""Every fenced shell block of README.md pastes whole and cleans up after itself (issue 12).

Each ``sh``/``bash`` block runs in a fresh temp directory with ``bash -e`` against the installed
package (its scripts first on PATH), in a process group of its own: it must exit 0, print no
traceback or error line, leave no file behind and no process running. The ``python`` block with a
test in it runs under pytest. A block preceded by ``<!-- readme-test: skip (why) -->`` is not run
(installs, the whole suite, a program the reader brings).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stockmon.conformance.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"(<!-- readme-test: skip[^>]*-->\n)?```(sh|bash|python)\n(.*?)```", re.S)
BIN = str(Path(sys.executable).parent)


def blocks(lang: tuple[str, ...]) -> list[str]:
    """The bodies of the README's runnable blocks in ``lang``."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return [body for skip, kind, body in BLOCK.findall(text) if not skip and kind in lang]


SHELL = blocks(("sh", "bash"))


def test_readme_has_runnable_blocks() -> None:
    """The README keeps shell blocks the test runs (a marker on every block would hide them)."""
    assert len(SHELL) >= 3 and blocks(("python",))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("body", SHELL, ids=[b.splitlines()[1][:40] for b in SHELL])
def test_shell_block_pastes_whole(body: str, tmp_path: Path) -> None:
    """The block runs start to end under ``bash -e``; nothing is left behind."""
    work, tmp = tmp_path / "work", tmp_path / "tmp"
    work.mkdir()
    tmp.mkdir()
    env = {
        **os.environ,
        "PATH": BIN + os.pathsep + os.environ["PATH"],
        "TMPDIR": str(tmp),
        "STOCKMON_API_PORT": str(free_port()),  # a block's `stockmon serve` never meets another
    }
    proc = subprocess.Popen(
        ["bash", "-e", "-c", body],
        cwd=work,
        env=env,
        stdin=subprocess.DEVNULL,  # a block's "press Enter" prompt returns at once
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=50)
    finally:
        _reap(proc.pid)
    assert proc.returncode == 0, out[-3000:]
    assert "Traceback" not in out and "error:" not in out, out[-3000:]
    assert list(work.iterdir()) == [], "the block left files in the checkout"
    assert list(tmp.iterdir()) == [], "the block left temp files"


def _reap(pgid: int) -> None:
    """Fail if a process of the block survived it (a mock left running); kill it either way."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.killpg(pgid, signal.SIGKILL)
    pytest.fail("a process started by the block was still running after it")


def test_python_example_passes(tmp_path: Path) -> None:
    """The README's pytest example with the kis_mock fixture passes as written."""
    (example,) = [b for b in blocks(("python",)) if "def test_" in b]
    (tmp_path / "test_example.py").write_text(example, encoding="utf-8")
    env = {**os.environ, "PATH": BIN + os.pathsep + os.environ["PATH"]}
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_example.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0 and "1 passed" in out.stdout, out.stdout[-3000:] + out.stderr
