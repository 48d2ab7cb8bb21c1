"""Benchmark (a): data-frame parser throughput on multi-record H0STCNT0 frames, in records/s.

Compared in the same run with a naive baseline — ``split`` + ``dict(zip(names, fields))`` per
record, values left as strings — that does *less* work than the reference parser (no typing, no
validation of the record count). Reported variants of the reference parser:

* ``parse``: structure validated, typed record views created (what every frame costs);
* ``parse+tick``: plus the typed tick roles read through the record properties (key, time, price
  as int, volume as int); this is the figure the target (>= naive) is about;
* ``parse+frame_ticks``: the same values through ``Frame.ticks()``, the row builder precompiled per
  TR that ``stockmon stream`` uses;
* ``parse+all``: plus every one of the 46 fields converted to its layout type (``to_dict``).

Usage: ``python benchmarks/parser_throughput.py [--records-per-frame 4] [--frames 20000]``.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from collections.abc import Callable

from stockmon.reference.kis.frames import FrameParser, TickRecord
from stockmon.spec import load_spec


def make_frames(n_frames: int, per_frame: int, seed: int = 7) -> list[str]:
    """Plausible H0STCNT0 frames: every field filled, values varying from record to record."""
    spec = load_spec()
    layout = spec.layout("H0STCNT0")
    rng = random.Random(seed)
    frames = []
    for _ in range(n_frames):
        fields: list[str] = []
        for _ in range(per_frame):
            for f in layout.fields:
                if f.name == "MKSC_SHRN_ISCD":
                    fields.append(rng.choice(("005930", "000660", "035720")))
                elif f.name.endswith("HOUR"):
                    fields.append(
                        f"{rng.randrange(9, 16):02d}{rng.randrange(60):02d}{rng.randrange(60):02d}"
                    )
                elif f.type == "int":
                    fields.append(str(rng.randrange(1, 10_000_000)))
                elif f.type == "decimal":
                    fields.append(f"{rng.uniform(-30, 30):.2f}")
                else:
                    fields.append(rng.choice(("0", "1", "2", "N", "Y")))
        frames.append(f"0|H0STCNT0|{per_frame:03d}|" + "^".join(fields))
    return frames


def naive(frames: list[str], names: tuple[str, ...]) -> int:
    """The baseline: split and zip into a dict per record, everything a string."""
    n = len(names)
    records = 0
    for text in frames:
        parts = text.split("|")
        count = int(parts[2])
        fields = parts[3].split("^")
        for i in range(count):
            rec = dict(zip(names, fields[i * n : (i + 1) * n], strict=False))
            records += 1 if rec else 0
    return records


def ref_parse(parser: FrameParser) -> Callable[[list[str]], int]:
    def run(frames: list[str]) -> int:
        parse = parser.parse
        records = 0
        for text in frames:
            records += len(parse(text).records)
        return records

    return run


def ref_tick(parser: FrameParser) -> Callable[[list[str]], int]:
    def run(frames: list[str]) -> int:
        parse = parser.parse
        records = 0
        for text in frames:
            for rec in parse(text).records:
                assert isinstance(rec, TickRecord)
                _ = (rec.key, rec.time, rec.price, rec.volume)
                records += 1
        return records

    return run


def ref_frame_ticks(parser: FrameParser) -> Callable[[list[str]], int]:
    def run(frames: list[str]) -> int:
        parse = parser.parse
        records = 0
        for text in frames:
            records += len(parse(text).ticks())
        return records

    return run


def ref_all(parser: FrameParser) -> Callable[[list[str]], int]:
    def run(frames: list[str]) -> int:
        parse = parser.parse
        records = 0
        for text in frames:
            for rec in parse(text).records:
                rec.to_dict()
                records += 1
        return records

    return run


def rate(fn: Callable[[list[str]], int], frames: list[str]) -> float:
    """Records/s of one run of ``fn`` over ``frames`` (it returns the records it read)."""
    t0 = time.perf_counter()
    n = fn(frames)
    return n / (time.perf_counter() - t0)


def best_rate(fn: Callable[[list[str]], int], frames: list[str], repeats: int) -> float:
    """Best records/s over ``repeats`` runs (the least disturbed by the other load on the box)."""
    return max(rate(fn, frames) for _ in range(repeats))


def frame_args(argv: list[str] | None, description: str) -> argparse.Namespace:
    """The options of the parser benchmarks (the frames fed, how many runs), one set for all."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--records-per-frame", type=int, default=4)
    ap.add_argument("--frames", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=5)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = frame_args(argv, __doc__.splitlines()[0])
    spec = load_spec()
    parser = FrameParser(spec)
    names = spec.layout("H0STCNT0").names
    frames = make_frames(args.frames, args.records_per_frame)
    rates = {
        "naive_split_dict_zip": best_rate(lambda f: naive(f, names), frames, args.repeats),
        "reference_parse": best_rate(ref_parse(parser), frames, args.repeats),
        "reference_parse_tick_roles": best_rate(ref_tick(parser), frames, args.repeats),
        "reference_parse_frame_ticks": best_rate(ref_frame_ticks(parser), frames, args.repeats),
        "reference_parse_all_fields": best_rate(ref_all(parser), frames, args.repeats),
    }
    base = rates["naive_split_dict_zip"]
    result = {
        "benchmark": "parser_throughput",
        "unit": "records/s",
        "tr_id": "H0STCNT0",
        "records_per_frame": args.records_per_frame,
        "frames": args.frames,
        "repeats": args.repeats,
        "python": platform.python_version(),
        "rates": {k: round(v) for k, v in rates.items()},
        "ratio_vs_naive": {k: round(v / base, 3) for k, v in rates.items()},
        "target": "reference_parse_tick_roles >= naive_split_dict_zip",
        "target_met": rates["reference_parse_tick_roles"] >= base,
    }
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
