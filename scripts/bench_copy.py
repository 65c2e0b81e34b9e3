#!/usr/bin/env python3
"""Benchmark `airgap copy` against `skopeo copy --all` in the same run (ratios, not absolute seconds).

Workload (PEERS.md): 10 two-platform images, a 40 MB base layer per arch shared by all, plus a 15 MB app layer
per image and arch (~381 MB of blobs), served by Debian's docker-registry on loopback, copied into an EMPTY
registry. Each tool gets fresh target registries every round; skopeo's blob-info cache and airgap's
blob-location cache are cleared first (within a round both reuse what they learnt: shared layers mount).
Also: one 1 GB blob streamed registry -> registry (airgap's peak RSS), and `airgap --help` cold start.

Exit status is non-zero when a target from ../shared/TARGETS.md is missed:
  copy <= 0.8x skopeo; peak RSS of the 1 GB copy <= 100 MB; `airgap --help` <= 0.10 s.

Usage: .venv/bin/python scripts/bench_copy.py [--rounds N] [--images N] [--skip-big]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import benchlib  # first: it puts tests/ on sys.path for support.*
from benchlib import AIRGAP, MB, run_measured
from support.registries import Registry, find_tool, start_registry


def copy_all(tool: str, src: Registry, dst: Registry, refs: list[str]) -> tuple[float, int]:
    total, peak = 0.0, 0
    for ref in refs:
        if tool == "airgap":
            argv = [AIRGAP, "copy", "--json", f"{src.host}/{ref}", f"{dst.host}/{ref}"]
        else:
            argv = ["skopeo", "copy", "--all", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false",
                    f"docker://{src.host}/{ref}", f"docker://{dst.host}/{ref}"]
        secs, rss = run_measured(argv)
        total += secs
        peak = max(peak, rss)
    return total, peak


def big_blob(work: Path, src: Registry) -> tuple[float, int, int]:
    """Push a 1 GB single-layer image (streamed, never held in memory) and copy it; return secs, RSS, size."""
    size = benchlib.push_streamed_image(src.host, "bench/big", "1", seeds=(7,))
    dst = start_registry(work / "big-dst")
    try:
        secs, rss = run_measured([AIRGAP, "copy", "--json", f"{src.host}/bench/big:1", f"{dst.host}/bench/big:1"])
    finally:
        dst.stop()
    return secs, rss, size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--skip-big", action="store_true")
    args = parser.parse_args()
    for tool in ("docker-registry", "skopeo"):
        if not find_tool(tool):
            raise SystemExit(f"bench: {tool} is not installed (scripts/install-peers.sh)")
    benchlib.byte_compile()
    work = Path(tempfile.mkdtemp(prefix="airgap-bench-"))
    regs: list[Registry] = []
    failures: list[str] = []
    try:
        src = start_registry(work / "src")
        regs.append(src)
        t = time.perf_counter()
        refs = benchlib.populate(src, args.images)
        blob_bytes = args.images * 2 * 15 * MB + 2 * 40 * MB
        print(f"workload: {len(refs)} two-platform images, {blob_bytes / MB:.0f} MB of blobs "
              f"(pushed in {time.perf_counter() - t:.1f}s)")
        results: dict[str, list[tuple[float, int]]] = {"airgap": [], "skopeo": []}
        for rnd in range(args.rounds):
            for tool in (("airgap", "skopeo") if rnd % 2 == 0 else ("skopeo", "airgap")):
                dst = start_registry(work / f"dst-{tool}-{rnd}")
                regs.append(dst)
                if tool == "skopeo":
                    benchlib.clear_skopeo_cache()
                else:
                    benchlib.fresh_airgap_cache(work / f"airgap-cache-{rnd}")
                results[tool].append(copy_all(tool, src, dst, refs))
                dst.stop()
                shutil.rmtree(work / f"dst-{tool}-{rnd}", ignore_errors=True)
                secs, rss = results[tool][-1]
                print(f"  round {rnd + 1}: {tool:7s} {secs:6.2f}s  ({blob_bytes / MB / secs:5.0f} MB/s, "
                      f"peak RSS {rss} MB)")
        a = min(s for s, _ in results["airgap"])
        s = min(s for s, _ in results["skopeo"])
        a_rss = max(r for _, r in results["airgap"])
        ratio = a / s
        print(f"copy: airgap {a:.2f}s vs skopeo {s:.2f}s -> ratio {ratio:.2f}x (target <= 0.80x); "
              f"airgap peak RSS {a_rss} MB")
        if ratio > 0.80:
            failures.append(f"copy ratio {ratio:.2f}x > 0.80x")

        if not args.skip_big:
            benchlib.fresh_airgap_cache(work / "airgap-cache-big")
            secs, rss, size = big_blob(work, src)
            print(f"1 GB blob: airgap copy {secs:.2f}s ({size / MB / secs:.0f} MB/s), peak RSS {rss} MB "
                  "(target <= 100 MB)")
            if rss > 100:
                failures.append(f"1 GB copy peak RSS {rss} MB > 100 MB")

        helps = [run_measured([AIRGAP, "--help"])[0] for _ in range(7)]
        print(f"airgap --help: {min(helps) * 1000:.0f} ms best of 7 (target <= 100 ms)")
        if min(helps) > 0.10:
            failures.append(f"--help {min(helps) * 1000:.0f} ms > 100 ms")
    finally:
        benchlib.cleanup(work, regs)
    return benchlib.verdict(failures)


if __name__ == "__main__":
    sys.exit(main())
