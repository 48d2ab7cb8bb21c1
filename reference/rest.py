"""One REST call as every broker's REST side makes it: JSON in, JSON out, network failures typed.

The broker-specific part (which body is an error, and of which kind) stays with the dialect; this
is the part that was the same for the KIS token, approval and quote calls and the Kiwoom token call.

The client is aiohttp: with its C HTTP parser, and no thread-pool hop per call (the environment's
proxy is looked up once per broker), a warm quote against the mock costs 0.37-0.39 ms of client CPU
where httpx took 2.3-2.7 ms on the machine of 2026-12-02 (0.115 ms on a faster one; our own code in
it is about 2 us, the rest is aiohttp), and that CPU is most of the wait when a fleet's callers all
resume at once (token_storm.py). The body is read up to the JSON bound only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

from stockmon.boundedjson import DEFAULT_MAX_CHARS
from stockmon.boundedjson import loads as bounded_json
from stockmon.errors import SettingsError
from stockmon.redaction import Secret
from stockmon.reference.errors import NetworkError
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


# What a URL the client cannot use raises (malformed, or not http/https).
_BAD_URL = (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError)
# 4 bytes per character at most: a longer body cannot be JSON within boundedjson's bound.
_MAX_BODY_BYTES = 4 * DEFAULT_MAX_CHARS


async def _read_bounded(stream: aiohttp.StreamReader, limit: int) -> bytes:
    """The body up to ``limit`` + 1 bytes (enough to know it is too long), never all of a flood."""
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = await stream.read(limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def new_http() -> aiohttp.ClientSession:
    """The pooled HTTP client of one run (call inside the running loop; close it when done).

    Without ``trust_env``: with it aiohttp looks up ``~/.netrc`` and the proxy variables in a
    thread for every request (two thread-pool hops per call, measured in the quote path). The
    proxy is resolved once per broker instead (:func:`env_proxy`); netrc is never read, so no
    netrc password is ever sent to a broker.
    """
    return aiohttp.ClientSession(trust_env=False)


@dataclass(frozen=True, slots=True)
class EnvProxy:
    """The environment's proxy for one base URL, and where its credentials go: on the request
    itself for an ``http`` target (the proxy reads it), on the CONNECT request for ``https`` (so
    they never travel inside the tunnel to the broker)."""

    url: URL
    request_headers: Mapping[str, str] | None = None
    tunnel_headers: Mapping[str, str] | None = None

    def __repr__(self) -> str:  # the credentials are a secret
        return f"EnvProxy({str(self.url.with_user(None))!r})"

    def apply(self, kwargs: dict[str, Any]) -> None:
        """Add this proxy to one request's keyword arguments."""
        kwargs["proxy"] = self.url
        if self.tunnel_headers is not None:
            kwargs["proxy_headers"] = self.tunnel_headers
        if self.request_headers is not None:
            kwargs["headers"] = {**(kwargs.get("headers") or {}), **self.request_headers}


def env_proxy(url: str) -> EnvProxy | None:
    """The proxy the environment names for ``url`` (``HTTP_PROXY``/``HTTPS_PROXY``, ``NO_PROXY``),
    found as aiohttp's ``trust_env`` would; None for none (or a URL that does not parse, which the
    request itself then reports)."""
    try:
        target = URL(url)
        proxy, auth = get_env_proxy_for_url(target)
    except (LookupError, ValueError):
        return None
    if auth is None:
        return EnvProxy(proxy)
    headers = {"Proxy-Authorization": auth.encode()}
    if target.scheme == "https":
        return EnvProxy(proxy, tunnel_headers=headers)
    return EnvProxy(proxy, request_headers=headers)


async def call_json(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    what: str,
    budget_s: float,
    **kwargs: Any,
) -> tuple[int, Any]:
    """Send one request bounded by ``budget_s`` real seconds; its status and JSON body (None if not
    JSON or longer than the JSON bound).

    A timeout or a connection failure raises :class:`NetworkError` naming ``what`` (``POST /path``).
    """
    if budget_s <= 0:
        raise NetworkError(f"no time left to call {what.split()[-1]}")
    try:
        async with http.request(
            method, url, timeout=aiohttp.ClientTimeout(total=budget_s), **kwargs
        ) as resp:
            raw = await _read_bounded(resp.content, _MAX_BODY_BYTES)
            status = resp.status
    except TimeoutError:
        raise NetworkError(f"{what} timed out after {budget_s:.2f} s") from None
    except _BAD_URL:
        raise  # the caller's setting, not the network
    except (aiohttp.ClientError, OSError) as exc:
        raise NetworkError(f"{what} failed: {type(exc).__name__}") from None
    try:
        body: Any = bounded_json(raw, what=f"{what} answer")
    except ValueError:  # not JSON, not UTF-8, too deep or too large
        body = None
    return status, body


@dataclass(frozen=True, slots=True)
class BrokerHttp:
    """What every REST client of a broker holds: the pooled HTTP client, the base URL, the app's pair.

    One value for the token, approval and quote clients of a broker, built once by the wiring.
    """

    http: aiohttp.ClientSession
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
        if self.proxy is not None:
            self.proxy.apply(kwargs)
        try:
            return await call_json(self.http, method, url, f"{method} {path}", budget_s, **kwargs)
        except _BAD_URL:
            raise SettingsError(f"{self.variable} does not make a valid URL: {url}") from None
