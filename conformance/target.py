"""Supervision of one target process: start it, timestamp its output, stop it with SIGTERM.

The target is any program honouring the contract of DESIGN §5 (one JSON event per stdout line,
spec durations scaled by ``STOCKMON_TIME_SCALE``, clean exit on SIGTERM). It runs in its own
process group so a shell wrapper and its children all receive the signal.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import IO

from stockmon.boundedjson import loads as bounded_json
from stockmon.conformance.errors import ConfigError
from stockmon.conformance.evidence import Event, Line, TargetRun
from stockmon.schemas import errors as schema_errors

# Non-normative: how long a target may take to exit after SIGTERM before it is killed, and how
# much stderr is kept (the tail is what a report shows).
TERM_GRACE_S = 5.0
_STDERR_KEEP = 256 * 1024


class TargetProcess:
    """One running target; its output is read by two threads and timestamped on the mock's clock."""

    def __init__(
        self,
        index: int,
        argv: Sequence[str],
        env: Mapping[str, str],
        now: Callable[[], float],
    ) -> None:
        self.index = index
        self.argv = tuple(argv)
        self._env = dict(env)
        self._now = now
        self._proc: subprocess.Popen[bytes] | None = None
        self._stdout: list[Line] = []
        self._stderr: list[str] = []
        self._stderr_len = 0
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.start_t = 0.0
        self.end_t: float | None = None
        self.exited_by_itself = False
        self.clean_exit_on_sigterm: bool | None = None

    def start(self) -> None:
        """Spawn the process; a command that cannot be executed is a configuration error."""
        self.start_t = self._now()
        try:
            self._proc = subprocess.Popen(
                self.argv,
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise ConfigError(f"target command not found: {self.argv[0]!r}") from None
        except PermissionError:
            raise ConfigError(f"target command is not executable: {self.argv[0]!r}") from None
        except OSError as exc:
            raise ConfigError(f"cannot start target {self.argv[0]!r}: {exc.strerror}") from None
        assert self._proc.stdout is not None and self._proc.stderr is not None
        for target, stream in (
            (self._read_stdout, self._proc.stdout),
            (self._read_stderr, self._proc.stderr),
        ):
            th = threading.Thread(
                target=target, args=(stream,), daemon=True, name=f"target{self.index}-io"
            )
            th.start()
            self._threads.append(th)

    def _read_stdout(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            line = Line(self._now(), raw.decode("utf-8", errors="replace").rstrip("\r\n"))
            with self._lock:
                self._stdout.append(line)
        stream.close()

    def _read_stderr(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            text = raw.decode("utf-8", errors="replace")
            with self._lock:
                self._stderr.append(text)
                self._stderr_len += len(text)
                while self._stderr_len > _STDERR_KEEP and len(self._stderr) > 1:
                    self._stderr_len -= len(self._stderr.pop(0))
        stream.close()

    def alive(self) -> bool:
        """Whether the process is still running."""
        if self._proc is None or self._proc.poll() is not None:
            if self._proc is not None and self.end_t is None:
                self.end_t = self._now()
                self.exited_by_itself = True
            return False
        return True

    def kill(self) -> None:
        """SIGKILL the process group now (no SIGTERM first: a crash, as the fleet stories need)."""
        proc = self._proc
        if proc is None or not self.alive():
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=TERM_GRACE_S)
        self.end_t = self._now()

    def stop(self, grace_s: float = TERM_GRACE_S) -> None:
        """SIGTERM the process group, wait, then SIGKILL whatever is left."""
        proc = self._proc
        if proc is None:
            return
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace_s)
                self.clean_exit_on_sigterm = proc.returncode in (
                    0,
                    -signal.SIGTERM,
                    128 + signal.SIGTERM,
                )
            except subprocess.TimeoutExpired:
                self.clean_exit_on_sigterm = False
            if self.end_t is None:
                self.end_t = self._now()
        # Children of a shell wrapper may outlive it: the group goes down in any case.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):  # a zombie we cannot reap
            proc.wait(timeout=grace_s)
        deadline = time.monotonic() + grace_s
        for th in self._threads:
            th.join(timeout=max(0.0, deadline - time.monotonic()))

    def result(self, time_scale: float) -> TargetRun:
        """The finished run as evidence (parses and validates the event lines)."""
        proc = self._proc
        events: list[Event] = []
        bad: list[tuple[int, str, str]] = []
        with self._lock:
            lines, stderr = list(self._stdout), "".join(self._stderr)
        for n, line in enumerate(lines, 1):
            text = line.text.strip()
            if not text:
                continue
            try:
                obj = bounded_json(text, what="output line")
            except ValueError:
                bad.append((n, line.text, "not JSON"))
                continue
            if not isinstance(obj, dict):
                bad.append((n, line.text, "not a JSON object"))
                continue
            errs = schema_errors("event", obj)
            if errs:
                bad.append((n, line.text, errs[0]))
                continue
            events.append(Event(line.t, line.t * time_scale, obj, n))
        return TargetRun(
            index=self.index,
            argv=self.argv,
            start_t=self.start_t,
            end_t=self.end_t if self.end_t is not None else self._now(),
            returncode=None if proc is None else proc.returncode,
            exited_by_itself=self.exited_by_itself,
            clean_exit_on_sigterm=self.clean_exit_on_sigterm,
            stdout=tuple(lines),
            events=tuple(events),
            bad_lines=tuple(bad),
            stderr=stderr,
        )
