"""Choosing the coordination backend from the settings (TOKEN-KIS-LOCK, DESIGN §4 "Redis").

- ``REDIS_URL`` set: a Redis client with short, bounded timeouts and no hidden retries (the token
  manager and the socket gate retry on their own schedule, and a lease holder must never block
  past its validity on one command). ``redis://``, ``rediss://`` and ``unix://`` are redis-py's
  own URLs; ``redis+sentinel://[:password@]host:port[,host:port...]/service[/db]`` asks those
  Sentinels for the master of ``service`` (redis-py's Sentinel client) and
  ``redis+cluster://[:password@]host:port`` starts from that node of a Cluster (redis-py's
  RedisCluster). Every key of one fleet shares a hash tag, so scripts stay in one slot.
- unset with ``STOCKMON_ENV=mock``: the single-user file cache (file_store.py), announced by one
  warning line, because then nothing coordinates two machines.
- unset with ``STOCKMON_ENV=prod``: refused, because the spec makes the Redis lock mandatory.
"""

from __future__ import annotations

import logging
from typing import Any, cast
from urllib.parse import unquote

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from stockmon.errors import SettingsError
from stockmon.redaction import Secret
from stockmon.settings import Settings
from stockmon.spec import Spec

log = logging.getLogger(__name__)

# Every Redis command is bounded: a lease holder must learn of an outage well within its TTL.
COMMAND_TIMEOUT_S = 1.0
CONNECT_TIMEOUT_S = 1.0

LOCAL_FALLBACK_WARNING = (
    "REDIS_URL is not set: using the single-user token cache in STOCKMON_CACHE_DIR "
    "(a file lock, one machine only; STOCKMON_ENV=mock)"
)


def connect_redis(
    url: Secret,
    *,
    command_timeout: float = COMMAND_TIMEOUT_S,
    connect_timeout: float = CONNECT_TIMEOUT_S,
) -> Redis:
    """An asyncio Redis client for ``url``; the URL (it may hold a password) never shows."""
    common: dict[str, Any] = {
        "socket_timeout": command_timeout,
        "socket_connect_timeout": connect_timeout,
        "retry": Retry(NoBackoff(), 0),
        "decode_responses": False,
    }
    raw = url.reveal()
    scheme, _, rest = raw.partition("://")
    try:
        if scheme in ("redis+sentinel", "rediss+sentinel"):
            return _sentinel_master(rest, scheme.startswith("rediss"), common)
        if scheme in ("redis+cluster", "rediss+cluster"):
            # RedisCluster speaks the commands the fleet uses for keys of one slot
            cluster = RedisCluster.from_url(
                scheme.removesuffix("+cluster") + "://" + rest,
                **common,
            )
            return cast(Redis, cluster)
        return Redis.from_url(raw, **common)
    except (ValueError, IndexError):
        raise SettingsError(
            "REDIS_URL is not a valid Redis URL (expected redis://[:password@]host:port/db, "
            "redis+sentinel://host:port[,host:port]/service[/db] or redis+cluster://host:port)"
        ) from None


def _sentinel_master(rest: str, tls: bool, common: dict[str, Any]) -> Redis:
    """The master of a Sentinel-monitored service, found through redis-py's Sentinel client."""
    auth, at, where = rest.rpartition("@")
    password = unquote(auth.partition(":")[2]) if at else None
    hosts, _, path = where.partition("/")
    service, _, db = path.partition("/")
    if not hosts or not service:
        raise ValueError("a Sentinel URL names its hosts and service")
    sentinels = []
    for item in hosts.split(","):
        host, _, port = item.rpartition(":")
        sentinels.append((host or item, int(port) if host else 26379))
    timeouts = {k: common[k] for k in ("socket_timeout", "socket_connect_timeout")}
    # untyped before redis-py 8.2, typed since: the ignore may be unused
    manager = Sentinel(sentinels, sentinel_kwargs=timeouts, ssl=tls, **common)  # type: ignore[no-untyped-call,unused-ignore]
    master = manager.master_for(
        service, redis_class=SentinelMaster, db=int(db or 0), password=password
    )
    assert isinstance(master, SentinelMaster)
    master.sentinel_clients = list(manager.sentinels)
    return master


class SentinelMaster(Redis):
    """A master found through Sentinels; closing it closes the connections to them too."""

    sentinel_clients: list[Redis]

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        """Close the master's pool, then every Sentinel client."""
        await super().aclose(close_connection_pool)
        for client in getattr(self, "sentinel_clients", []):
            await client.aclose()


def require_lock_backend(settings: Settings) -> bool:
    """True when Redis is configured; False for the local fallback; SettingsError in prod.

    Logs the one-line single-process notice when it falls back (a warning unless against the mock).
    """
    if settings.redis_url is not None:
        return True
    if settings.env == "prod" and lock_is_mandatory(settings.spec):
        raise SettingsError(
            "REDIS_URL is not set: the token refresh lock is mandatory in production "
            "(TOKEN-KIS-LOCK); set REDIS_URL, or STOCKMON_ENV=mock for a single local process"
        )
    # Against the mock this is the expected single-process setup: say it only with -v. Against a
    # real broker a second process would issue its own token, so it is a warning.
    log.log(logging.INFO if settings.env == "mock" else logging.WARNING, LOCAL_FALLBACK_WARNING)
    return False


def outage_keep_s(spec: Spec, scale: float = 1.0) -> float:
    """Real seconds a socket holder keeps its socket past its lease while Redis is unreachable
    (FLEET-REDIS-OUTAGE keep_s, in spec seconds); 0 when the spec version has no such clause, so
    the holder closes before its lease could lapse (spec 1.0/1.1)."""
    if not spec.has("FLEET-REDIS-OUTAGE"):
        return 0.0
    if not scale > 0:
        raise ValueError(f"time scale must be > 0, got {scale!r}")
    return spec.clause("FLEET-REDIS-OUTAGE").number("keep_s") / scale


def lock_is_mandatory(spec: Spec) -> bool:
    """Whether the spec version makes the Redis lock mandatory (TOKEN-KIS-LOCK)."""
    return spec.clause("TOKEN-KIS-LOCK").flag("mandatory")


__all__ = [
    "COMMAND_TIMEOUT_S",
    "LOCAL_FALLBACK_WARNING",
    "connect_redis",
    "lock_is_mandatory",
    "outage_keep_s",
    "require_lock_backend",
]
