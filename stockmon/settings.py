"""Settings from ``os.environ`` only (clause CRED-ENV): typed, validated, secrets wrapped.

Nothing here reads files: a ``.env`` file is the shell's business (``set -a; . ./.env``). Every
problem is a :class:`~stockmon.errors.SettingsError` whose one-line message names the variable and
says what to do, so the CLI never shows a traceback for a configuration mistake.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import shutil
import textwrap
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

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
    parts = [p.strip() for p in raw.split(",")]
    if raw.strip() and not any(parts):
        raise SettingsError(
            f"STOCKMON_SUBSCRIPTIONS={raw!r} is empty: give TR_ID:KEY pairs "
            "(e.g. H0STCNT0:005930) or unset it"
        )
    known = ", ".join(sorted(spec.layouts))
    for part in (p for p in parts if p):
        tr_id, _, key = part.partition(":")
        if tr_id in spec.kiwoom_layouts:
            raise SettingsError(
                f"STOCKMON_SUBSCRIPTIONS: {tr_id} is not a TR ID with a layout; Kiwoom "
                f"subscriptions use the KIS TR IDs ({known}), e.g. H0STCNT0:{key or '005930'}"
            )
        m = _SUB_RE.match(part)
        if not m:
            raise SettingsError(
                f"STOCKMON_SUBSCRIPTIONS: {part!r} is not TR_ID:KEY (e.g. H0STCNT0:005930)"
            )
        tr_id, key = m.groups()
        if tr_id not in spec.layouts:
            raise SettingsError(f"STOCKMON_SUBSCRIPTIONS: unknown TR {tr_id!r}; known: {known}")
        market = spec.layouts[tr_id].market
        if spec.key_match(key, market) is None:
            hint = suggest_key(key, spec, market)
            pattern = spec.key_patterns[market].pattern
            raise SettingsError(
                f"STOCKMON_SUBSCRIPTIONS: {key!r} is not a {market} key for {tr_id}"
                + (f"; did you mean {tr_id}:{hint}?" if hint else f" (pattern {pattern})")
            )
        sub = Subscription(tr_id, key)
        if sub not in subs:
            subs.append(sub)
    return tuple(subs)


def _literal_prefixes(pattern: str, limit: int = 256) -> list[str]:
    """Every fixed prefix a key pattern starts with (``^[DR](NAS|NYS)`` -> DNAS, DNYS, RNAS...),
    in the pattern's own order; empty when the pattern starts with no literal choice."""
    sre: Any = importlib.import_module("re._parser")  # the stdlib's own regex parser

    out = [""]
    for op, arg in sre.parse(pattern):
        if op is sre.AT:
            continue
        if op is sre.LITERAL:
            choices = [chr(arg)]
        elif op is sre.IN and all(o is sre.LITERAL for o, _ in arg):
            choices = [chr(a) for _, a in arg]
        elif op is sre.SUBPATTERN and len(arg[3]) == 1 and arg[3][0][0] is sre.BRANCH:
            branches = arg[3][0][1][1]
            if not all(all(o is sre.LITERAL for o, _ in b) for b in branches):
                break
            choices = ["".join(chr(a) for _, a in b) for b in branches]
        else:
            break
        out = [p + c for p in out for c in choices][:limit]
    return [p for p in out if p]


def suggest_key(key: str, spec: Spec, market: str | None = None) -> str | None:
    """The first well-formed key the spec's key patterns make of ``key`` (``AAPL`` -> DNASAAPL)."""
    markets = [market] if market else list(spec.key_patterns)
    for name in markets:
        prefixes = _literal_prefixes(spec.key_patterns[name].pattern)
        for candidate in (key.upper(), *(p + key.upper() for p in prefixes)):
            if candidate != key and spec.key_match(candidate, name) is not None:
                return candidate
    return None


# The variables of the broker commands, by the part that reads them: one list per concern, so
# ``stockmon stream``, ``quote`` and ``serve`` describe exactly what each reads, and no two copies drift.
KIS_VARIABLES = ("KIS_APP_KEY", "KIS_APP_SECRET", "KIS_REST_URL", "KIS_WS_URL")
KIWOOM_VARIABLES = ("KIWOOM_APP_KEY", "KIWOOM_APP_SECRET", "KIWOOM_REST_URL", "KIWOOM_WS_URL")
RUNTIME_VARIABLES = (
    "REDIS_URL",
    "STOCKMON_CACHE_DIR",
    "STOCKMON_ENV",
    "STOCKMON_TIME_SCALE",
    "STOCKMON_SPEC_VERSION",
)
STREAM_VARIABLES = (
    "STOCKMON_SUBSCRIPTIONS",
    "STOCKMON_BROKER",
    *KIS_VARIABLES,
    *KIWOOM_VARIABLES,
    *RUNTIME_VARIABLES,
)


def describe_variables(parser: argparse.ArgumentParser, names: Iterable[str]) -> None:
    """End a command's ``--help`` with the variables it reads, described by the spec."""
    parser.epilog = variables_epilog(names)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter


def variables_epilog(names: Iterable[str]) -> str:
    """A help epilog listing ``names`` with their descriptions from the newest spec (CRED-ENV):
    the spec's ``environment`` section is the one place they are described."""
    spec = load_spec(latest_version())
    width = max(20, min(shutil.get_terminal_size().columns, 100) - 2)
    names = tuple(names)
    column = max(24, *(len(n) + 1 for n in names))
    lines = ["environment variables (see .env.example):"]
    for name in names:
        var = spec.env(name)
        text = var.description + (" [secret]" if var.secret else "")
        lines += textwrap.wrap(
            text,
            max(width, column + 30),
            initial_indent=f"  {name:<{column}}",
            subsequent_indent=" " * (column + 2),
            break_on_hyphens=False,  # clause IDs (API-SERVICE) stay whole
        )
    return "\n".join(lines)


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
