"""Fuzz targets: each takes arbitrary bytes and may only end in the typed errors its entry point
documents; anything else (RecursionError, UnicodeError, KeyError, TypeError...) is a crash.

Run through ``fuzz/run.py`` (atheris, coverage-guided); the same functions replay the corpora in
the test suite (tests/foundation/test_fuzz_corpus.py), so every crash found is a regression test
once its input is added to ``fuzz/corpus/<target>/``.
"""

from __future__ import annotations

import contextlib
import functools
import tempfile
from collections.abc import Callable
from pathlib import Path

from stockmon.mockserver.errors import MockError
from stockmon.reference.errors import FrameError
from stockmon.reference.kis.frames import FrameParser
from stockmon.spec import Spec, load_spec

Target = Callable[[bytes], None]


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


@functools.cache
def _spec() -> Spec:
    return load_spec("1.1")


@functools.cache
def _parser() -> FrameParser:
    return FrameParser(_spec())


def frame_parser(data: bytes) -> None:
    """KIS data frames: parse, then every typed view; only FrameError."""
    text = _text(data)
    try:
        frame = _parser().parse(text)
        frame.validate()
        if frame.record_type.kind == "tick":
            frame.ticks()
        else:
            frame.books()
        frame.json_lines("kis")
    except FrameError:
        pass


def control_frame(data: bytes) -> None:
    """The client's session core fed one frame as text and as bytes: never raises."""
    from stockmon.reference.kis.session import SessionCore

    core = SessionCore(_spec())
    core.set_credential("a" * 36)
    core.start(0.0)
    core.connected(0.0)
    core.text_received(_text(data), 1.0)
    core.bytes_received(data, 2.0)
    while core.next_event() is not None:
        pass
    core.data_to_send()


def mock_ws(data: bytes) -> None:
    """The KIS mock's WebSocket session core fed one client frame: never raises."""
    from stockmon.mockserver.config import MockConfig
    from stockmon.mockserver.kis.profile import load_profile
    from stockmon.mockserver.kis.session import ServerSession
    from stockmon.mockserver.kis.state import World
    from stockmon.mockserver.trace import Trace, dumps

    config = MockConfig(spec_version="1.1")
    trace = Trace()
    world = World(config, load_profile("1.1"), trace, wall0=1_700_000_000.0)
    session = ServerSession(world, "ws-1", 0.0)
    session.receive_text(_text(data), 1.0)
    session.data_to_send()
    for rec in trace.records():
        dumps(rec).encode("utf-8", "backslashreplace")


def mock_rest(data: bytes) -> None:
    """The KIS mock's REST app and the trace of the call: any body on each route, never raises."""
    from stockmon.mockserver.config import MockConfig
    from stockmon.mockserver.httpserver import HttpRequest, parse_body, traced_body
    from stockmon.mockserver.kis.profile import load_profile
    from stockmon.mockserver.kis.rest import RestApp
    from stockmon.mockserver.kis.state import World
    from stockmon.mockserver.trace import Trace, dumps

    world = World(MockConfig(spec_version="1.1"), load_profile("1.1"), Trace(), wall0=1.7e9)
    app = RestApp(world)
    route = data[:1]
    paths = sorted({p for _, p in app._routes})
    path = paths[route[0] % len(paths)] if route else paths[0]
    req = HttpRequest("POST", path, {}, {"content-type": "application/json"}, data[1:], "rest-1")
    resp = app.handle(req, 1.0)
    resp.encode()
    parsed, is_json = parse_body(req.body)
    dumps({"body": traced_body(parsed, is_json)}).encode("utf-8", "backslashreplace")


def mock_http(data: bytes) -> None:
    """The mocks' HTTP parser fed any bytes in two reads: requests or one recorded error, never
    a raise; the head it holds stays bounded; every request is typed, its answer's head encodes."""
    from stockmon.mockserver.httpserver import MAX_BODY, READ_CHUNK, _head, _Requests

    incoming = _Requests("rest-1")
    cut = data[0] if data else 0
    for part in (data[1 : 1 + cut], data[1 + cut :]):
        incoming.feed(part)
        if incoming.begun and not incoming.head_done and incoming.error is None:
            assert incoming.head_bytes <= MAX_BODY + READ_CHUNK
    for item in incoming.ready:
        req = item.request
        assert isinstance(req.path, str) and all(isinstance(v, str) for v in req.headers.values())
        _head(200, [("content-length", str(len(req.body)))], not item.keep_alive)


@functools.cache
def _scenario_file() -> Path:
    return Path(tempfile.mkdtemp(prefix="stockmon-fuzz-")) / "scenario.yaml"


def scenario_loader(data: bytes) -> None:
    """Scenario files: only ScenarioError (a MockError) for anything that is not a valid one."""
    from stockmon.mockserver.scenario import load_scenario

    path = _scenario_file()
    path.write_bytes(data)
    with contextlib.suppress(MockError):
        load_scenario(path)


TARGETS: dict[str, Target] = {
    "frame_parser": frame_parser,
    "control_frame": control_frame,
    "mock_ws": mock_ws,
    "mock_rest": mock_rest,
    "mock_http": mock_http,
    "scenario_loader": scenario_loader,
}
