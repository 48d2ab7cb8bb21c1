"""Run the atheris fuzz targets of fuzz/targets.py, each bounded, each in its own process.

    python fuzz/run.py                       # every target, 2,000 runs each (the CI's short run)
    python fuzz/run.py --runs 1000000 mock_ws   # the long run of one target
    python fuzz/run.py --one frame_parser -- -max_total_time=600   # libFuzzer flags after --

Each target starts from its corpus (fuzz/corpus/<target>/, in the repository) and writes what it
finds to build/fuzz/<target>/ (new inputs) and build/fuzz/crashes/ (crashes). A crash exits
non-zero; add the crashing input to the corpus, fix, and the corpus replay test keeps it fixed.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _fuzz_one(name: str, extra: list[str]) -> None:
    """In this process: atheris on one target (never returns: libFuzzer exits)."""
    import atheris

    sys.path.insert(0, str(HERE))
    with atheris.instrument_imports(include=["stockmon"]):
        from targets import TARGETS

        # import every module the target reaches before fuzzing, so it is instrumented
        seed = sorted((HERE / "corpus" / name).glob("*"))[:1]
        with contextlib.suppress(Exception):  # a crash is for the fuzzer to find and report
            TARGETS[name](seed[0].read_bytes() if seed else b"")
    target = TARGETS[name]
    found = ROOT / "build" / "fuzz" / name
    crashes = ROOT / "build" / "fuzz" / "crashes"
    found.mkdir(parents=True, exist_ok=True)
    crashes.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.argv[0],
        str(found),
        str(HERE / "corpus" / name),
        f"-artifact_prefix={crashes}/{name}-",
        "-max_len=65536",
        "-rss_limit_mb=1024",
        *extra,
    ]
    atheris.Setup(argv, target)
    atheris.Fuzz()


def main() -> int:
    """Fuzz every selected target in turn; non-zero if any crashed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", help="target names (default: all)")
    parser.add_argument("--runs", type=int, default=2000, help="inputs per target")
    parser.add_argument("--seconds", type=int, default=10, help="wall-time cap per target")
    parser.add_argument("--one", metavar="TARGET", help=argparse.SUPPRESS)
    args, extra = parser.parse_known_args()
    # libFuzzer flags (-name=value) may land among the positionals after "--"
    extra += [a for a in args.targets if a.startswith("-")]
    args.targets = [a for a in args.targets if not a.startswith("-")]
    if args.one:
        _fuzz_one(args.one, extra)
        return 0
    sys.path.insert(0, str(HERE))
    from targets import TARGETS

    names = args.targets or list(TARGETS)
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        print(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(TARGETS)}")
        return 2
    failed = []
    for name in names:
        started = time.monotonic()
        cmd = [
            sys.executable,
            __file__,
            "--one",
            name,
            f"-runs={args.runs}",
            f"-max_total_time={args.seconds}",
            *extra,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        took = time.monotonic() - started
        status = "ok" if proc.returncode == 0 else f"CRASH (exit {proc.returncode})"
        print(f"fuzz {name}: {status} in {took:.1f} s", flush=True)
        if proc.returncode != 0:
            failed.append(name)
            print(proc.stderr[-4000:])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
