#!/usr/bin/env python3
"""Fuzz every parser of untrusted input with Hypothesis and print a table: parser, inputs run, exceptions other
than airgap's Error (must be 0), inputs over 1 s (must be 0), slowest input in ms.

    .venv/bin/python scripts/fuzz_parsers.py                      # 10,000 inputs per parser, seed 0
    .venv/bin/python scripts/fuzz_parsers.py -n 500 --seed 7 -k bundle
    .venv/bin/python scripts/fuzz_parsers.py --random             # a fresh random seed (printed)

The targets and their input strategies live in tests/support/fuzzing.py (the test suite runs the same targets
with a few hundred inputs each: tests/fuzz/test_fuzz_parsers.py). Unlike the tests, this keeps going after a
failure so the counts are complete; each distinct failure is printed once with the smallest input that showed
it. Exits 1 when any parser let another exception escape or took 1 s or more on an input.

The seed fixes the mutations Hypothesis makes; the keys, certificates and signatures they are applied to are
made fresh in each run (a test Fulcio/Rekor, an openssl test TSA), so byte-level mutations inside them differ
from run to run. Timings are wall-clock; an input that takes 1 s or more, and each of the five slowest, is
replayed twice and counted at its fastest, so a stall of a shared machine is not mistaken for a slow parser.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402

from airgap.errors import Error  # noqa: E402

SLOW_S = 1.0


def fuzz(target: object, examples: int, seed_value: int) -> dict[str, object]:
    stats: dict[str, object] = {"runs": 0, "crashes": 0, "slow": 0, "slowest": 0.0, "errors": 0, "seen": {}}
    seen: dict[str, str] = stats["seen"]  # type: ignore[assignment]

    def once(data: object) -> float:
        start = time.perf_counter()
        try:
            target.run(data)  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001, S110 - only the time matters here; the first run counted the outcome
            pass
        return time.perf_counter() - start

    @seed(seed_value)
    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(target.strategy)  # type: ignore[attr-defined]
    def run(data: object) -> None:
        start = time.perf_counter()
        try:
            target.run(data)  # type: ignore[attr-defined]
        except Error:
            stats["errors"] = int(stats["errors"]) + 1  # type: ignore[call-overload]
        except Exception as exc:  # noqa: BLE001 - counting exactly these is the point
            stats["crashes"] = int(stats["crashes"]) + 1  # type: ignore[call-overload]
            where = traceback.extract_tb(exc.__traceback__)[-1]
            key = f"{type(exc).__name__} at {Path(where.filename).name}:{where.lineno}"
            text = repr(data)
            if key not in seen or len(text) < len(seen[key]):
                seen[key] = text
        elapsed = time.perf_counter() - start
        if elapsed >= SLOW_S:  # a shared machine stalls now and then: slow means slow on every replay too
            elapsed = min(elapsed, once(data), once(data))
        stats["runs"] = int(stats["runs"]) + 1  # type: ignore[call-overload]
        top.append((elapsed, data))
        top.sort(key=lambda item: -item[0])
        del top[5:]
        if elapsed >= SLOW_S:
            stats["slow"] = int(stats["slow"]) + 1  # type: ignore[call-overload]
            seen.setdefault(f"slow ({elapsed:.2f} s)", repr(data))

    top: list[tuple[float, object]] = []
    run()
    # The five slowest inputs are replayed twice as well: the column shows parsing time, not a stall.
    stats["slowest"] = max((min(t, once(d), once(d)) for t, d in top), default=0.0)
    return stats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--examples", type=int, default=10_000, help="inputs per parser [10000]")
    parser.add_argument("--seed", type=int, default=0, help="Hypothesis seed (reproducible runs) [0]")
    parser.add_argument("--random", action="store_true", help="use a random seed (printed) instead of --seed")
    parser.add_argument("-k", dest="match", default="", help="only parsers whose name contains this")
    args = parser.parse_args()
    seed_value = random.SystemRandom().randrange(2**32) if args.random else args.seed
    from support.fuzzing import targets

    chosen = [t for t in targets() if args.match.lower() in t.name.lower()]
    print(f"seed {seed_value}, {args.examples} inputs per parser, {len(chosen)} parsers", flush=True)
    header = f"{'parser':<40} {'inputs':>7} {'Error':>7} {'other exc':>9} {'>=1s':>5} {'slowest ms':>10} {'time s':>7}"
    print(header)
    print("-" * len(header))
    failed = False
    details: list[str] = []
    for target in chosen:
        if target.seed is not None:
            target.run(target.seed)  # warm up: lazy imports (sigstore, celpy) are not an input's cost
        started = time.perf_counter()
        stats = fuzz(target, args.examples, seed_value)
        took = time.perf_counter() - started
        print(f"{target.name:<40} {stats['runs']:>7} {stats['errors']:>7} {stats['crashes']:>9} {stats['slow']:>5} "
              f"{float(stats['slowest']) * 1000:>10.1f} {took:>7.1f}", flush=True)  # type: ignore[arg-type]
        if stats["crashes"] or stats["slow"]:
            failed = True
            for key, text in stats["seen"].items():  # type: ignore[attr-defined]
                details.append(f"{target.name}: {key}: {text[:400]}")
    for line in details:
        print(line)
    print("FAILED" if failed else "OK: only airgap's Error escaped, every input under 1 s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
