"""Settings from ``os.environ`` only (clause CRED-ENV): typed, validated, secrets wrapped.

Nothing here reads files: a ``.env`` file is the shell's business (``set -a; . ./.env``). Every
problem is a :class:`~stockmon.errors.SettingsError` whose one-line message names the variable and
says what to do, so the CLI never shows a traceback for a configuration mistake.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import platformdirs

from stockmon.errors import SettingsError
from stockmon.redaction import Secret
from stockmon.spec import Spec, available_versions, latest_version, load_spec

Env = Literal["prod", "mock"]
Broker = Literal["kis", "kiwoom", "auto"]
_SUB_RE = re.compile(r"^([A-Z0-9]{8}):([A-Za-z0-9._]+)$")


@dataclass(frozen=True, slots=True)
class Subscription:
    """One realtime registration: a TR and its key (``H0STCNT0:005930``)."""

    tr_id: str
    tr_key: str

    def __str__(self) -> str:
        return f"{self.tr_id}:{self.tr_key}"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything an implementation reads from the environment (DESIGN §4)."""

    kis_app_key: Secret | None
    kis_app_secret: Secret | None
    kis_rest_url: str
    kis_ws_url: str
    kiwoom_app_key: Secret | None
    kiwoom_app_secret: Secret | None
    kiwoom_rest_url: str
    kiwoom_ws_url: str
    vite_api_key: Secret | None
    redis_url: Secret | None
    subscriptions: tuple[Subscription, ...]
    time_scale: float
    spec_version: str
    env: Env
    broker: Broker
    # Single-user token cache without Redis (STOCKMON_CACHE_DIR, default: platformdirs' user cache).
    cache_dir: Path = Path()

    @property
    def spec(self) -> Spec:
        """The spec version these settings select."""
        return load_spec(self.spec_version)

    def require_kis(self) -> tuple[Secret, Secret]:
        """The KIS app key and secret, or a SettingsError naming the missing one."""
        return _need("KIS_APP_KEY", self.kis_app_key), _need("KIS_APP_SECRET", self.kis_app_secret)

    def require_kiwoom(self) -> tuple[Secret, Secret]:
        """The Kiwoom app key and secret (clause CRED-KIWOOM-SECRET)."""
        return (
            _need("KIWOOM_APP_KEY", self.kiwoom_app_key),
            _need("KIWOOM_APP_SECRET", self.kiwoom_app_secret),
        )


def _need(name: str, value: Secret | None) -> Secret:
    if value is None:
        raise SettingsError(
            f"{name} is not set: export it (see .env.example), "
            "or run 'stockmon mock' and paste the exports it prints"
        )
    return value


def _secret(environ: Mapping[str, str], name: str) -> Secret | None:
    raw = environ.get(name)
    if raw is None or raw == "":
        return None
    if raw != raw.strip():
        raise SettingsError(f"{name} has leading or trailing whitespace: remove it")
    return Secret(raw)


def _url(environ: Mapping[str, str], name: str, default: str, schemes: tuple[str, ...]) -> str:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.startswith(tuple(f"{s}://" for s in schemes)):
        allowed = " or ".join(f"{s}://" for s in schemes)
        raise SettingsError(f"{name}={raw!r} is not a URL starting with {allowed}")
    return raw.rstrip("/")


def parse_subscriptions(raw: str, spec: Spec) -> tuple[Subscription, ...]:
    """Parse ``TR_ID:KEY,TR_ID:KEY``; TR IDs must have a field layout in the spec."""
    subs: list[Subscription] = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        m = _SUB_RE.match(part)
        if not m:
            raise SettingsError(
                f"STOCKMON_SUBSCRIPTIONS: {part!r} is not TR_ID:KEY (e.g. H0STCNT0:005930)"
            )
        tr_id, key = m.groups()
        if tr_id not in spec.layouts:
            known = ", ".join(sorted(spec.layouts))
            raise SettingsError(f"STOCKMON_SUBSCRIPTIONS: unknown TR {tr_id!r}; known: {known}")
        pattern = spec.markets[spec.layouts[tr_id].market]["key_pattern"]
        if not re.match(pattern, key):
            raise SettingsError(
                f"STOCKMON_SUBSCRIPTIONS: {key!r} is not a {spec.layouts[tr_id].market} key "
                f"for {tr_id} (pattern {pattern})"
            )
        sub = Subscription(tr_id, key)
        if sub not in subs:
            subs.append(sub)
    return tuple(subs)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every variable; raises SettingsError on the first bad one."""
    env = os.environ if environ is None else environ
    version = env.get("STOCKMON_SPEC_VERSION", "").strip() or latest_version()
    if version not in available_versions():
        raise SettingsError(
            f"STOCKMON_SPEC_VERSION={version!r} is unknown; use one of "
            + ", ".join(available_versions())
        )
    spec = load_spec(version)
    scale_raw = env.get("STOCKMON_TIME_SCALE", "").strip() or "1"
    try:
        scale = float(scale_raw)
    except ValueError:
        raise SettingsError(
            f"STOCKMON_TIME_SCALE={scale_raw!r} is not a number (spec seconds per real second)"
        ) from None
    if not (scale > 0 and scale < float("inf")):
        raise SettingsError(f"STOCKMON_TIME_SCALE={scale_raw!r} must be a positive number")
    run_env = env.get("STOCKMON_ENV", "").strip() or "prod"
    if run_env not in ("prod", "mock"):
        raise SettingsError(f"STOCKMON_ENV={run_env!r} must be 'prod' or 'mock'")
    # Unset: KIS with the Kiwoom failover when a Kiwoom key is configured (issue 7), else KIS.
    default_broker = "auto" if env.get("KIWOOM_APP_KEY", "").strip() else "kis"
    broker = env.get("STOCKMON_BROKER", "").strip() or default_broker
    if broker not in ("kis", "kiwoom", "auto"):
        raise SettingsError(f"STOCKMON_BROKER={broker!r} must be 'kis', 'kiwoom' or 'auto'")
    ep = spec.endpoints
    return Settings(
        kis_app_key=_secret(env, "KIS_APP_KEY"),
        kis_app_secret=_secret(env, "KIS_APP_SECRET"),
        kis_rest_url=_url(env, "KIS_REST_URL", ep["kis"]["rest"]["prod"], ("http", "https")),
        kis_ws_url=_url(env, "KIS_WS_URL", ep["kis"]["ws"]["prod"], ("ws", "wss")),
        kiwoom_app_key=_secret(env, "KIWOOM_APP_KEY"),
        kiwoom_app_secret=_secret(env, "KIWOOM_APP_SECRET"),
        kiwoom_rest_url=_url(
            env, "KIWOOM_REST_URL", ep["kiwoom"]["rest"]["prod"], ("http", "https")
        ),
        kiwoom_ws_url=_url(env, "KIWOOM_WS_URL", ep["kiwoom"]["ws"]["prod"], ("ws", "wss")),
        vite_api_key=_secret(env, "VITE_API_KEY"),
        redis_url=_secret(env, "REDIS_URL"),
        subscriptions=parse_subscriptions(env.get("STOCKMON_SUBSCRIPTIONS", ""), spec),
        time_scale=scale,
        spec_version=version,
        env=run_env,  # type: ignore[arg-type]
        broker=broker,  # type: ignore[arg-type]
        cache_dir=Path(
            env.get("STOCKMON_CACHE_DIR", "").strip() or platformdirs.user_cache_dir("stockmon")
        ),
    )
