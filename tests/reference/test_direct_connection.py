"""The shell's DirectConnection: whole text messages straight from data_received, all else as before."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve

from stockmon.reference.lifecycle import SessionLifecycle
from stockmon.reference.shell import DirectConnection

Script = Callable[[ServerConnection], Awaitable[None]]


@contextlib.asynccontextmanager
async def server(script: Script) -> AsyncIterator[str]:
    """A websockets server that runs ``script`` once the client is reading, then waits for the close."""

    async def handler(ws: ServerConnection) -> None:
        await ws.recv()  # the client's "reading"
        await script(ws)
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0, compression=None, ping_interval=None) as srv:
        port = next(iter(srv.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}"


async def read_all(
    url: str,
    factory: type[ClientConnection],
    deliver: Callable[[list[str], float], None] | None = None,
) -> tuple[list[object], ClientConnection, BaseException | None]:
    """Every message in arrival order (direct ones and recv()'s), the connection, what recv raised."""
    got: list[object] = []
    raised: BaseException | None = None
    async with connect(url, compression=None, ping_interval=None, create_connection=factory) as ws:
        if isinstance(ws, DirectConnection):
            assert ws.deliver_to(deliver or (lambda texts, now: got.extend(texts)), lambda: 1.0)
        await ws.send("reading")
        try:
            async for message in ws:
                got.append(message)
        except websockets.ConnectionClosed as exc:
            raised = exc
        except ValueError as exc:
            raised = exc
    return got, ws, raised


async def mixed(ws: ServerConnection) -> None:
    """Whole texts around a fragmented text and a binary message, then a normal close."""
    await ws.send("a")
    await ws.send(["b1", "b2"])  # one message in two frames
    await ws.send("c")
    await ws.send(b"d")
    await ws.send("e")
    await ws.close()


async def bad_utf8(ws: ServerConnection) -> None:
    """A whole text, then a text frame that is not UTF-8."""
    await ws.send("a")
    await ws.send(b"\xff\xfe", text=True)


@pytest.mark.parametrize("script", [mixed, bad_utf8], ids=["fragments-and-binary", "invalid-utf-8"])
async def test_same_messages_order_and_close_as_a_plain_connection(script: Script) -> None:
    """Messages, their order, the exception and both close codes are those of ClientConnection."""
    outcomes = []
    for factory in (ClientConnection, DirectConnection):
        async with server(script) as url:
            got, ws, raised = await read_all(url, factory)
        outcomes.append((got, type(raised), ws.close_code, ws.protocol.close_sent))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0][:1] == ["a"]


async def test_whole_text_messages_skip_recv() -> None:
    """Whole text frames reach deliver with the read's clock, never recv(); binary still does."""
    direct: list[tuple[str, float]] = []

    async def script(ws: ServerConnection) -> None:
        for text in ("x", "y", "z"):
            await ws.send(text)
        await ws.send(b"bin")
        await ws.close()

    async with server(script) as url:
        got, _, _ = await read_all(
            url, DirectConnection, lambda texts, now: direct.extend((t, now) for t in texts)
        )
    assert direct == [("x", 1.0), ("y", 1.0), ("z", 1.0)]
    assert got == [b"bin"]


async def test_an_exception_in_deliver_is_raised_from_the_pending_recv() -> None:
    """A failing deliver stops the direct path and its exception comes out of recv()."""

    def deliver(texts: list[str], now: float) -> None:
        raise ValueError(f"bad {texts[0]}")

    async def script(ws: ServerConnection) -> None:
        await asyncio.sleep(0.05)  # the client is waiting in recv() by now
        await ws.send("boom")
        await ws.send("after")

    async with server(script) as url:
        _, ws, raised = await read_all(url, DirectConnection, deliver)
    assert isinstance(raised, ValueError) and str(raised) == "bad boom"
    assert isinstance(ws, DirectConnection) and ws.failure is raised


def test_the_output_queues_are_never_replaced() -> None:
    """core.pending are the queues data_to_send() and next_event() drain, kept across drains."""
    core = SessionLifecycle()
    out, events = core.pending
    out.append("frame")
    assert core.data_to_send() == ["frame"]
    assert core.pending[0] is out and not out
    assert core.data_to_send() == []
    assert core.pending[1] is events
