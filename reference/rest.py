"""One REST call as every broker's REST side makes it: JSON in, JSON out, network failures typed.

The broker-specific part (which body is an error, and of which kind) stays with the dialect; this
is the part that was the same for the KIS token, approval and quote calls and the Kiwoom token call.

The client is :class:`~stockmon.reference.httpclient.HttpClient` (llhttp on asyncio; why not
aiohttp is said there). The environment's proxy is looked up once per broker, never per call, and
the body is read up to the JSON bound only.
"""

from __future__ import annotations

import asyncio
import json as _json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from stockmon import __version__
from stockmon.boundedjson import DEFAULT_MAX_CHARS
from stockmon.boundedjson import loads as bounded_json
from stockmon.errors import SettingsError
from stockmon.redaction import Secret
from stockmon.reference.errors import NetworkError
from stockmon.reference.httpclient import (
    EnvProxy,
    HttpClient,
    HttpError,
    InvalidHeader,
    InvalidUrl,
    env_proxy,
    parse_url,
)
from stockmon.spec import Spec


def request_timeout_s(spec: Spec) -> float | None:
    """Seconds one REST call may take (REST-TIMEOUT request_timeout_s); None without the clause.

    Real seconds, never divided by the time scale: a round trip does not get faster when the
    harness compresses the broker's clock.
    """
    if not spec.has("REST-TIMEOUT"):
        return None
    return spec.clause("REST-TIMEOUT").number("request_timeout_s")


def command_timeout_s(spec: Spec) -> float | None:
    """Real seconds a one-shot REST command may take (REST-TIMEOUT command_timeout_s); None
    without the clause (the command then waits as long as its token manager does)."""
    if not spec.has("REST-TIMEOUT"):
        return None
    return spec.clause("REST-TIMEOUT").number("command_timeout_s")


# 4 bytes per character at most: a longer body cannot be JSON within boundedjson's bound.
_MAX_BODY_BYTES = 4 * DEFAULT_MAX_CHARS
_USER_AGENT = f"stockmon/{__version__}"


def new_http() -> HttpClient:
    """The pooled HTTP client of one run (use inside the running loop; close it when done).

    It never reads ``~/.netrc`` (no netrc password is ever sent to a broker) and looks up no
    proxy per call: the environment's proxy is resolved once per broker (:func:`env_proxy`).
    """
    return HttpClient()


async def call_json(
    http: HttpClient,
    method: str,
    url: str,
    what: str,
    budget_s: float,
    *,
    params: Mapping[str, str] | None = None,
    json: Any = None,
    headers: Mapping[str, str] | None = None,
    proxy: EnvProxy | None = None,
) -> tuple[int, Any]:
    """Send one request bounded by ``budget_s`` real seconds; its status and JSON body (None if not
    JSON or longer than the JSON bound).

    A timeout or a connection failure raises :class:`NetworkError` naming ``what`` (``POST /path``);
    a URL the client cannot use raises :class:`InvalidUrl` (the caller's setting, not the network).
    """
    if budget_s <= 0:
        raise NetworkError(f"no time left to call {what.split()[-1]}")
    target = parse_url(url, params)
    sent = {"User-Agent": _USER_AGENT, **(headers or {})}
    body = b""
    if json is not None:
        body = _json.dumps(json, ensure_ascii=False, separators=(",", ":")).encode()
        if not any(k.lower() == "content-type" for k in sent):
            sent["Content-Type"] = "application/json"
    try:
        async with asyncio.timeout(budget_s):
            resp = await http.request(
                method, target, headers=sent, body=body, limit=_MAX_BODY_BYTES, proxy=proxy
            )
    except TimeoutError:
        raise NetworkError(f"{what} timed out after {budget_s:.2f} s") from None
    except InvalidHeader as exc:
        raise SettingsError(f"{what}: {exc}") from None
    except OSError as exc:
        raise NetworkError(f"{what} failed: {_failure(exc)}") from None
    try:
        data: Any = bounded_json(resp.body, what=f"{what} answer")
    except ValueError:  # not JSON, not UTF-8, too deep or too large
        data = None
    return resp.status, data


def _failure(exc: OSError) -> str:
    """What went wrong, in a few words: the protocol error's own, else the exception's type."""
    return str(exc) if isinstance(exc, HttpError) else type(exc).__name__


@dataclass(frozen=True, slots=True)
class BrokerHttp:
    """What every REST client of a broker holds: the pooled HTTP client, the base URL, the app's pair.

    One value for the token, approval and quote clients of a broker, built once by the wiring.
    """

    http: HttpClient
    base_url: str
    app_key: Secret
    app_secret: Secret
    variable: str = "the REST URL variable"  # what a malformed base URL is blamed on
    request_timeout: float | None = None  # REST-TIMEOUT: caps every call's budget (real seconds)
    # the environment's proxy for base_url, looked up once (its auth is a secret: not in the repr)
    proxy: EnvProxy | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "proxy", env_proxy(self.base_url))

    def __repr__(self) -> str:
        return f"BrokerHttp({self.base_url!r})"

    async def call(self, method: str, path: str, budget_s: float, **kwargs: Any) -> tuple[int, Any]:
        """:func:`call_json` on ``base_url + path``, named ``METHOD path`` in errors.

        A base URL the client cannot use is the user's setting, not the network: a SettingsError.
        """
        url = self.base_url.rstrip("/") + path
        if self.request_timeout is not None:
            budget_s = min(budget_s, self.request_timeout)
        try:
            return await call_json(
                self.http, method, url, f"{method} {path}", budget_s, proxy=self.proxy, **kwargs
            )
        except InvalidUrl as exc:
            raise SettingsError(
                f"{self.variable} does not make a valid URL ({exc}): {url}"
            ) from None
