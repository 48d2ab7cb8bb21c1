"""One REST call as every broker's REST side makes it: JSON in, JSON out, network failures typed.

The broker-specific part (which body is an error, and of which kind) stays with the dialect; this
is the part that was the same for the KIS token, approval and quote calls and the Kiwoom token call.
"""

from __future__ import annotations

from typing import Any

import httpx

from stockmon.boundedjson import loads as bounded_json
from stockmon.reference.errors import NetworkError


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
