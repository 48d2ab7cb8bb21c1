"""One REST call as every broker's REST side makes it: JSON in, JSON out, network failures typed.

The broker-specific part (which body is an error, and of which kind) stays with the dialect; this
is the part that was the same for the KIS token, approval and quote calls and the Kiwoom token call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

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


async def call_json(
    http: httpx.AsyncClient, method: str, url: str, what: str, budget_s: float, **kwargs: Any
) -> tuple[httpx.Response, Any]:
    """Send one request bounded by ``budget_s`` real seconds; the response and its JSON body (None if not JSON).

    A timeout or a connection failure raises :class:`NetworkError` naming ``what`` (``POST /path``).
    """
    if budget_s <= 0:
        raise NetworkError(f"no time left to call {what.split()[-1]}")
    try:
        resp = await http.request(method, url, timeout=budget_s, **kwargs)
    except httpx.TimeoutException:
        raise NetworkError(f"{what} timed out after {budget_s:.2f} s") from None
    except httpx.HTTPError as exc:
        raise NetworkError(f"{what} failed: {type(exc).__name__}") from None
    try:
        body: Any = bounded_json(resp.content, what=f"{what} answer")
    except ValueError:  # not JSON, not UTF-8, too deep or too large
        body = None
    return resp, body


@dataclass(frozen=True, slots=True)
class BrokerHttp:
    """What every REST client of a broker holds: the pooled HTTP client, the base URL, the app's pair.

    One value for the token, approval and quote clients of a broker, built once by the wiring.
    """

    http: httpx.AsyncClient
    base_url: str
    app_key: Secret
    app_secret: Secret
    variable: str = "the REST URL variable"  # what a malformed base URL is blamed on
    request_timeout: float | None = None  # REST-TIMEOUT: caps every call's budget (real seconds)

    def __repr__(self) -> str:
        return f"BrokerHttp({self.base_url!r})"

    async def call(
        self, method: str, path: str, budget_s: float, **kwargs: Any
    ) -> tuple[httpx.Response, Any]:
        """:func:`call_json` on ``base_url + path``, named ``METHOD path`` in errors.

        A base URL httpx cannot use is the user's setting, not the network: a SettingsError.
        """
        url = self.base_url.rstrip("/") + path
        if self.request_timeout is not None:
            budget_s = min(budget_s, self.request_timeout)
        try:
            return await call_json(self.http, method, url, f"{method} {path}", budget_s, **kwargs)
        except httpx.InvalidURL:
            raise SettingsError(f"{self.variable} does not make a valid URL: {url}") from None
