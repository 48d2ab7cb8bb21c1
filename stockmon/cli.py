"""The ``stockmon`` command: one entry point, subcommands imported only when used.

User errors (bad flags, bad environment, bad spec) print one line and exit 2; a bug still shows a
traceback, because hiding those helps nobody.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from stockmon import __version__
from stockmon.errors import StockmonError, UsageError
from stockmon.redaction import install_log_redaction, scrub

# name -> (module with configure(parser) and a func default, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "spec": ("stockmon.spec.cli", "check, diff, show and render the machine-readable spec"),
    "mock": (
        "stockmon.mockserver.cli",
        "run the KIS and Kiwoom mock servers (REST + WebSocket) on loopback",
    ),
    "quote": ("stockmon.reference.quote_cli", "print the current price of a KR code or US key"),
    "stream": ("stockmon.reference.stream_cli", "stream KIS ticks and order books as JSON lines"),
    "serve": (
        "stockmon.reference.gateway.serve_cli",
        "run the backend: the broker ingest and the internal API (REST, WebSocket, dashboard)",
    ),
    "conformance": (
        "stockmon.conformance.cli",
        "judge an implementation against the spec (CI gate)",
    ),
}


class _ArgumentError(UsageError):
    """A flag or positional argparse refused; ``prog`` is the (sub)command that refused it."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(message)
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so every usage error has the same one-line shape."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise _ArgumentError(self.prog, f"{message} (see '{self.prog} --help')")


def build_parser(command: str | None) -> argparse.ArgumentParser:
    """Top-level parser; only the chosen subcommand's module is imported."""
    parser = _Parser(
        prog="stockmon",
        description="Spec-driven contract testing and reference backend for KIS/Kiwoom market data.",
        epilog="'stockmon COMMAND --help' shows a command's flags and the variables it reads.",
    )
    parser.add_argument("--version", action="version", version=f"stockmon {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    sub = parser.add_subparsers(
        dest="command", title="commands", metavar="COMMAND", parser_class=_Parser
    )
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if name == command:
            importlib.import_module(module).configure(p)
    return parser


def _command_of(argv: Sequence[str]) -> str | None:
    for arg in argv:
        if arg in COMMANDS:
            return arg
        if not arg.startswith("-"):
            return None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point; returns the process exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    command = _command_of(args_list)
    prog = f"stockmon {command}" if command else "stockmon"
    try:
        parser = build_parser(command)
        args, extra = parser.parse_known_args(args_list)
        if extra:  # argparse leaves these to the top level; the subcommand is the one that refuses
            raise _ArgumentError(
                prog, f"unrecognized arguments: {' '.join(extra)} (see '{prog} --help')"
            )
        logging.basicConfig(
            level=logging.DEBUG if args.verbose else logging.WARNING,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        install_log_redaction()
        func = getattr(args, "func", None)
        if func is None:
            parser.print_help()
            return 2
        code = func(args)
        return int(code or 0)
    except _ArgumentError as exc:
        print(f"{exc.prog}: error: {scrub(str(exc))}", file=sys.stderr)
        return 2
    except UsageError as exc:
        print(f"{prog}: error: {scrub(str(exc))}", file=sys.stderr)
        return 2
    except StockmonError as exc:
        print(f"{prog}: {type(exc).__name__}: {scrub(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
