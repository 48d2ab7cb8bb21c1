"""A REST price snapshot of every subscribed key when ``stockmon stream`` starts (IUT contract).

The stream's data comes over the WebSocket; the snapshot gives each key a price before the first
tick and exercises the REST side of the spec on every start: the bearer token (shared by the
fleet), the auth-failure policy (POL-AUTH-FAILED) and error bodies (ERR-REST-BODY). A failure is a
status event ``error`` carrying the broker's code; a price is logged (info), so stdout stays the
stream's own story (its first events are the connection's).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from stockmon.reference.errors import BrokerError, ClientError
from stockmon.reference.events import StatusChanged
from stockmon.reference.quote import fetch_quote
from stockmon.reference.rest import KisRestClient
from stockmon.settings import Subscription

log = logging.getLogger(__name__)

Report = Callable[[StatusChanged], None]


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
                )
            )
            continue
        except ClientError as exc:
            log.warning("REST snapshot of %s failed: %s", sub.tr_key, exc)
            report(
                StatusChanged(
                    "error", "rest_failed", tr_id=sub.tr_id, key=sub.tr_key, detail=str(exc)
                )
            )
            continue
        done += 1
        log.info("REST snapshot: %s %s %s", sub.tr_key, quote.price, quote.currency)
    return done


__all__ = ["snapshot_quotes"]
