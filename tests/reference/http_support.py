"""An independent HTTP server (aiohttp) for the REST client's tests: one place for both files."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web


@contextlib.asynccontextmanager
async def aiohttp_server(
    handle: Callable[[web.Request], Awaitable[web.Response]],
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[int]:
    """A loopback server answering every path and method with ``handle``; yields its port."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    try:
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()
