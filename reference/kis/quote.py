"""Current price of one symbol over KIS REST (the quote endpoints of ``spec.rest["kis"]["quotes"]``),
and the price snapshot of every subscribed key when ``stockmon stream`` starts (IUT contract).

The market is told from the key by the spec's key patterns (``005930`` is KR, ``DNASAAPL`` is US:
the pattern's group is the exchange, what follows it the symbol). The request goes through
:class:`~stockmon.reference.rest.KisRestClient`, so it gets the token policy for free.

The snapshot gives each key a price before the first tick and exercises the REST side of the spec
on every start: the bearer token (shared by the fleet), the auth-failure policy (POL-AUTH-FAILED)
and error bodies (ERR-REST-BODY). A failure is a status event ``error`` carrying the broker's code;
a price is logged (info), so stdout stays the stream's own story.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from stockmon.errors import UsageError
from stockmon.reference.errors import BrokerError, ClientError, RemoteProtocolError
from stockmon.reference.events import StatusChanged
from stockmon.reference.kis.frames import ascii_decimal
from stockmon.reference.kis.rest import KisRestClient
from stockmon.reference.kis.session import SOURCE
from stockmon.settings import Subscription, suggest_key
from stockmon.spec import Spec

log = logging.getLogger(__name__)
Report = Callable[[StatusChanged], None]

# KIS puts single-record results under "output" (protocol/kis.md §1.6).
_OUTPUT = "output"


@dataclass(frozen=True, slots=True)
class Quote:
    """One price snapshot."""

    key: str
    market: str
    price: Decimal
    currency: str


@dataclass(frozen=True, slots=True)
class QuoteRequest:
    """Where and how to ask for the price of one key."""

    market: str
    path: str
    tr_id: str
    params: Mapping[str, str]
    price_field: str


def market_of(key: str, spec: Spec) -> tuple[str, re.Match[str]]:
    """The market whose key pattern matches ``key``, and the match; UsageError if none does."""
    found = spec.key_match(key)
    if found is not None:
        return found
    hint = suggest_key(key, spec)
    if hint is not None:
        raise UsageError(f"{key!r} is not a symbol key: did you mean {hint}?")
    known = "; ".join(f"{mk}: {p.pattern}" for mk, p in spec.key_patterns.items())
    raise UsageError(f"{key!r} is not a known symbol key ({known})")


def quote_request(key: str, spec: Spec) -> QuoteRequest:
    """Build the quote request of ``key`` from the spec's endpoint description."""
    market, m = market_of(key, spec)
    ep = spec.rest["kis"]["quotes"].get(market)
    if ep is None:
        raise UsageError(f"spec {spec.version} has no quote endpoint for market {market}")
    params: dict[str, str] = {}
    if "market_param" in ep:
        params[str(ep["market_param"])] = str(ep["market_value"])
    if "exchange_param" in ep and m.groups():
        # US keys are <type><exchange><symbol>; the pattern's group is the exchange.
        params[str(ep["exchange_param"])] = m.group(1)
        params[str(ep["key_param"])] = key[m.end(1) :]
    else:
        params[str(ep["key_param"])] = key
    return QuoteRequest(market, str(ep["path"]), str(ep["tr_id"]), params, str(ep["price_field"]))


def price_from_body(body: Mapping[str, Any], field: str) -> Decimal:
    """The price field of a quote answer, as a Decimal (ASCII digits, as in the frames)."""
    output = body.get(_OUTPUT)
    if not isinstance(output, Mapping) or field not in output:
        raise RemoteProtocolError(f"quote answer has no {_OUTPUT}.{field}")
    raw = output[field]
    try:
        # The frame parser's digit rule (ASCII digits only, no padding): "１２３" is not 123.
        return ascii_decimal(raw if isinstance(raw, str) else json.dumps(raw))
    except ValueError:
        raise RemoteProtocolError(
            f"quote answer {_OUTPUT}.{field} is not an ASCII decimal number"
        ) from None


async def fetch_quote(client: KisRestClient, key: str) -> Quote:
    """Current price of ``key`` (KR code or US ``DNAS…`` key)."""
    spec = client.spec
    req = quote_request(key, spec)
    body = await client.get(req.path, req.tr_id, req.params)
    return Quote(
        key,
        req.market,
        price_from_body(body, req.price_field),
        str(spec.markets[req.market]["currency"]),
    )


async def snapshot_quotes(
    rest: KisRestClient, subscriptions: Iterable[Subscription], report: Report
) -> int:
    """Quote each distinct key once, in order; returns how many succeeded. Never raises a ClientError."""
    done = 0
    seen: set[str] = set()
    for sub in subscriptions:
        if sub.tr_key in seen:
            continue
        seen.add(sub.tr_key)
        try:
            quote = await fetch_quote(rest, sub.tr_key)
        except BrokerError as exc:
            log.warning("REST snapshot of %s failed: %s", sub.tr_key, exc)
            report(
                StatusChanged(
                    "error",
                    f"{exc.code} {exc.message}".strip(),
                    tr_id=sub.tr_id,
                    key=sub.tr_key,
                    code=exc.code,
                    detail="REST snapshot",
                    source=SOURCE,
                )
            )
            continue
        except ClientError as exc:
            log.warning("REST snapshot of %s failed: %s", sub.tr_key, exc)
            report(
                StatusChanged(
                    "error",
                    "rest_failed",
                    tr_id=sub.tr_id,
                    key=sub.tr_key,
                    detail=str(exc),
                    source=SOURCE,
                )
            )
            continue
        done += 1
        log.info("REST snapshot: %s %s %s", sub.tr_key, quote.price, quote.currency)
    return done


__all__ = [
    "Quote",
    "QuoteRequest",
    "fetch_quote",
    "market_of",
    "price_from_body",
    "quote_request",
    "snapshot_quotes",
]
