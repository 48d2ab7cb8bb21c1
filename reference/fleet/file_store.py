"""A credential cache in one file of the user's cache directory: one user, no Redis (issue 12).

Without ``REDIS_URL`` (``STOCKMON_ENV=mock``) nothing else keeps a token between two runs of
``stockmon quote``, and the broker's issuance throttle (TOKEN-KIS-THROTTLE) then makes the second
run wait a minute. This store keeps the same entries as :class:`RedisCredentialStore` (value,
real-wall expiry, version, refresh lease, throttle window) in a JSON file:

- the directory is ``STOCKMON_CACHE_DIR`` or platformdirs' user cache dir, created 0700; the file is
  ``<env>-<broker>-<digest>.json`` (SHA-256 of the app key, never the key itself), written 0600 by
  an atomic replace;
- every read-modify-write runs under ``fcntl.flock`` on a sibling ``.lock`` file, so the refresh
  lease is exclusive across the processes of one machine and two of them issue once;
- times are real wall seconds (``time.time()``), the frame every process shares, like Redis TTLs.

It is not a fleet lock: a file lock holds on one machine only, which is why prod still refuses to
run without Redis (TOKEN-KIS-LOCK).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from stockmon.redaction import Secret
from stockmon.reference.fleet.lease import Grant, Lease, TimedLease, new_lease_value
from stockmon.reference.fleet.token_state import CachedCredential
from stockmon.reference.fleet.token_store import (
    ChangeFeed,
    Claim,
    SleepFeed,
    StoreWrite,
    app_key_digest,
    claim_in_steps,
)

log = logging.getLogger(__name__)

Wall = Callable[[], float]


def cache_file(cache_dir: Path, env: str, app_key: Secret, broker: str = "kis") -> Path:
    """The cache file of one broker's app key in one environment (digest, never the key)."""
    return cache_dir / f"{env}-{broker}-{app_key_digest(app_key)}.json"


class FileCredentialStore:
    """The single-user store: one JSON file per (environment, broker, app key digest)."""

    def __init__(self, path: Path, *, wall: Wall = time.time) -> None:
        self.path = path
        self._lock_path = path.with_name(path.name + ".lock")
        self._wall = wall

    @property
    def backend(self) -> str:
        """Always ``file``."""
        return "file"

    @property
    def location(self) -> str:
        """Where the credentials are kept (for the throttle message)."""
        return str(self.path)

    # ----------------------------------------------------------------- file access

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        """The parsed file under the exclusive lock; changes to the dict are written back."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            data = self._load()
            before = json.dumps(data, sort_keys=True)
            yield data
            if json.dumps(data, sort_keys=True) != before:
                self._save(data)
        finally:
            os.close(fd)  # closing drops the flock

    def _load(self) -> dict[str, Any]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        try:
            data = json.loads(text)
        except ValueError:
            log.warning("ignoring a malformed token cache file %s", self.path)
            return {}
        return data if isinstance(data, dict) else {}

    def _save(self, data: dict[str, Any]) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tmp-", suffix=".json")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f)
            Path(tmp).replace(self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                Path(tmp).unlink()
            raise

    def _entry(self, data: dict[str, Any], kind: str) -> dict[str, Any]:
        entry = data.setdefault(kind, {})
        assert isinstance(entry, dict)
        return entry

    # ----------------------------------------------------------------- the store

    async def read(self, kind: str) -> CachedCredential | None:
        """The stored credential of ``kind`` while it is worth keeping; malformed reads as absent."""
        return (await self.snapshot(kind))[0]

    async def snapshot(self, kind: str) -> tuple[CachedCredential | None, float]:
        """The credential and the throttle time left, under one lock of the file."""
        with self._locked() as data:
            entry = data.get(kind, {})
            raw, until = entry.get("cred"), float(entry.get("throttle_until", 0.0))
        throttle, cred = max(0.0, until - self._wall()), None
        if isinstance(raw, dict) and float(raw.get("keep_until", 0)) > self._wall():
            cred = CachedCredential.from_stored(raw)
            if cred is None:
                log.warning("ignoring a malformed %s entry in %s", kind, self.path)
        return cred, throttle

    async def try_acquire(self, kind: str, ttl: float, holder: str) -> FileLease | None:
        """Take the refresh lease of ``kind`` unless a live one is in the file."""
        base = new_lease_value(holder, ttl)
        start = time.monotonic()
        with self._locked() as data:
            entry = self._entry(data, kind)
            held = entry.get("lease")
            if isinstance(held, list) and len(held) == 2 and float(held[1]) > self._wall():
                return None
            epoch = int(entry.get("epoch", 0)) + 1
            value = f"{base}@{epoch}"
            entry["epoch"] = epoch
            entry["lease"] = [value, self._wall() + ttl]
        return FileLease(self, kind, Grant(f"{kind}:lease", value, ttl, start, epoch, holder))

    async def claim(self, kind: str, ttl: float, holder: str, seen: int) -> Claim:
        """In steps: two snapshots around the lease (each one lock of the file)."""
        return await claim_in_steps(self, kind, ttl, holder, seen)

    def _holds(self, data: dict[str, Any], kind: str, value: str) -> bool:
        held = data.get(kind, {}).get("lease")
        return (
            isinstance(held, list)
            and len(held) == 2
            and held[0] == value
            and float(held[1]) > self._wall()
        )

    def _renew(self, kind: str, value: str, ttl: float) -> bool:
        with self._locked() as data:
            if not self._holds(data, kind, value):
                return False
            self._entry(data, kind)["lease"] = [value, self._wall() + ttl]
            return True

    def _release(self, kind: str, value: str) -> None:
        with self._locked() as data:
            held = data.get(kind, {}).get("lease")
            if isinstance(held, list) and held and held[0] == value:
                self._entry(data, kind).pop("lease", None)

    async def write(self, lease: Lease, kind: str, w: StoreWrite) -> int | None:
        """Fenced: still our lease? bump the version, store, start the throttle, in one lock."""
        if not isinstance(lease, FileLease):
            raise TypeError("a file store takes file leases only")
        cred, now = w.cred, self._wall()
        with self._locked() as data:
            if not self._holds(data, kind, lease.value):
                return None
            entry = self._entry(data, kind)
            version = int(entry.get("version", 0)) + 1
            entry["version"] = version
            entry["cred"] = {
                "value": cred.value.reveal(),
                "expires_at": cred.expires_at,
                "issued_at": cred.issued_at,
                "refresh_after": cred.refresh_after,
                "version": version,
                "keep_until": now + max(1.0, w.keep_for),
            }
            if w.throttle:
                entry["throttle_until"] = now + w.throttle
        return version

    async def throttle_remaining(self, kind: str) -> float:
        """Seconds left in the throttle window of ``kind``."""
        return (await self.snapshot(kind))[1]

    async def set_throttle(self, kind: str, seconds: float) -> None:
        """Start (or extend, never shorten) the throttle window."""
        with self._locked() as data:
            entry = self._entry(data, kind)
            until = self._wall() + seconds
            entry["throttle_until"] = max(until, float(entry.get("throttle_until", 0.0)))

    def changes(self, kind: str) -> ChangeFeed:
        """No notifications across processes through a file: waiters poll on their schedule."""
        return SleepFeed()

    async def aclose(self) -> None:
        """Nothing runs in the background."""


class FileLease(TimedLease):
    """A refresh lease kept in a :class:`FileCredentialStore` file."""

    def __init__(self, store: FileCredentialStore, kind: str, grant: Grant) -> None:
        super().__init__(grant, time.monotonic)
        self._store = store
        self._kind = kind

    async def _extend(self) -> bool:
        """Compare-and-extend under the file lock."""
        return self._store._renew(self._kind, self.value, self.ttl)

    async def release(self) -> None:
        """Compare-and-delete; never raises (the lease lapses by its TTL anyway)."""
        if self._released:
            return
        self._released = True
        try:
            self._store._release(self._kind, self.value)
        except OSError as exc:
            log.debug("file lease %s: release failed (%s)", self._kind, exc)


__all__ = ["FileCredentialStore", "FileLease", "cache_file"]
