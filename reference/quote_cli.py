"""``stockmon quote KEY...``: print the current price of KR codes and US keys over KIS REST.

Uses the fleet's shared token (REDIS_URL) like every other command, so running it next to
``stockmon stream`` never costs an extra token issuance.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from decimal import Decimal

from stockmon.reference.errors import NetworkError
from stockmon.reference.kis.quote import Quote, fetch_quote, market_of
from stockmon.reference.output import silence_stdout
from stockmon.reference.rest import command_timeout_s
from stockmon.reference.wiring import open_kis
from stockmon.settings import (
    KIS_VARIABLES,
    RUNTIME_VARIABLES,
    Settings,
    describe_variables,
    load_settings,
)

# The variables this command reads (their descriptions come from the spec): REST only, no socket.
VARIABLES = (*(v for v in KIS_VARIABLES if v != "KIS_WS_URL"), *RUNTIME_VARIABLES)


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``stockmon quote``."""
    describe_variables(parser, VARIABLES)
    parser.add_argument(
        "keys", nargs="+", metavar="KEY", help="KR code (005930) or US key (DNASAAPL)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.set_defaults(func=run)


def _number(price: Decimal) -> int | float:
    return int(price) if price == price.to_integral_value() else float(price)


def format_quote(quote: Quote, as_json: bool) -> str:
    """One output line for a quote."""
    if as_json:
        return json.dumps(
            {
                "key": quote.key,
                "market": quote.market,
                "price": _number(quote.price),
                "currency": quote.currency,
            }
        )
    return f"{quote.key} {quote.market} {quote.price} {quote.currency}"


async def quote_all(settings: Settings, keys: list[str], as_json: bool) -> int:
    """Fetch and print every key in order; errors propagate as typed StockmonErrors.

    The whole command is bounded by REST-TIMEOUT command_timeout_s (when the spec has it): a
    broker whose REST side hangs is a one-line NetworkError, not a wait on the token manager.
    """
    budget = command_timeout_s(settings.spec)
    key = keys[0]
    try:
        async with asyncio.timeout(budget), open_kis(settings) as kis:
            for key in keys:
                quote = await fetch_quote(kis.rest, key)
                print(format_quote(quote, as_json), flush=True)
    except TimeoutError:
        assert budget is not None
        raise NetworkError(
            f"KIS REST gave no quote for {key} within {budget:.1f} s "
            f"({settings.kis_rest_url}; REST-TIMEOUT command_timeout_s)"
        ) from None
    return 0


def run(args: argparse.Namespace) -> int:
    """Entry point of the subcommand."""
    settings = load_settings()
    keys: list[str] = list(args.keys)
    for key in keys:
        market_of(key, settings.spec)  # a bad key fails before any network I/O
    try:
        return asyncio.run(quote_all(settings, keys, bool(args.json)))
    except BrokenPipeError:
        silence_stdout()
        return 0


__all__ = ["VARIABLES", "configure", "format_quote", "quote_all", "run"]
