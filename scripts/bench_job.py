#!/usr/bin/env python3
"""Benchmark the whole job a user does, airgap against cosign's own air-gap flow, in the same run (ratios).

Workload (PEERS.md): 10 signed two-platform images (~381 MB of blobs) on Debian's docker-registry (loopback),
every image and child key-signed (cosign's legacy format, which both tools read).

- airgap: ``airgap pack SPEC -o B.tar`` (checks every image's policy at the source) + ``airgap load B.tar`` into an
  empty registry (Zarf-style refs, trust directory) + ONE ``airgap verify --trust T`` call for the 10 local refs;
- cosign: ``cosign save REF --dir D/i`` for each image (image + signatures as an OCI layout), ``tar cf`` of them
  (the media), ``cosign load --dir D/i DST/REPO`` for each, ``cosign verify --key P --insecure-ignore-tlog`` each.

Target (TARGETS.md, "the whole job"): airgap <= 0.33x cosign's total, same run. Rounds alternate (each on fresh
destination registries, ``sync`` before each timed step); the ratio is of the medians and every round is printed.
Exit status is non-zero when the target is missed.
Usage: .venv/bin/python scripts/bench_job.py [--images N] [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import benchlib  # first: it puts tests/ on sys.path for support.*
from benchlib import AIRGAP
from support.registries import find_tool, start_registry
from support.signing import write_keypair

TARGET = 0.33


def _spec(path: Path, host: str, refs: list[str]) -> None:
    listed = "\n".join(f"  - {host}/{r}" for r in refs)
    path.write_text(f"""apiVersion: airgap/v1
kind: Bundle
metadata: {{name: job, version: 1.0.0}}
created: 1700000000
images:
{listed}
keys: [{{name: release, path: release.pub}}]
policies:
  - name: bench
    images: [{{glob: "{host}/bench/**"}}]
    authorities: [{{key: {{name: release}}, ctlog: {{disabled: true}}}}]
""")


def _timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    os.sync()
    started = time.perf_counter()
    import subprocess

    proc = subprocess.run(argv, capture_output=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"bench: {' '.join(argv[:3])}... failed: {proc.stderr.decode()[-600:]}")
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cosign = find_tool("cosign")
    if find_tool("docker-registry") is None or cosign is None:
        raise SystemExit("bench: docker-registry and cosign are needed (scripts/install-peers.sh)")
    benchlib.byte_compile()
    work = Path(tempfile.mkdtemp(prefix="airgap-bench-job-"))
    regs = []
    try:
        src = start_registry(work / "src")
        regs.append(src)
        refs = benchlib.populate(src, args.images)
        key = write_keypair(work, "release")
        from airgap.oci.registry import RegistryClient
        from airgap.signing.sign import sign_image

        client = RegistryClient()
        for ref in refs:
            sign_image(f"{src.host}/{ref}", key.signer, client=client, recursive=True)
        spec = work / "job.yaml"
        _spec(spec, src.host, refs)
        cosign_env = dict(os.environ, COSIGN_PASSWORD="", COSIGN_EXPERIMENTAL="0", TUF_ROOT=str(work / "tuf"))
        ours, theirs = [], []
        for round_ in range(args.rounds):
            # airgap: pack + load + one verify call
            dst = start_registry(work / f"a{round_}")
            regs.append(dst)
            benchlib.fresh_airgap_cache(work / f"airgap-cache{round_}")
            bundle, trust = work / f"job{round_}.tar", work / f"trust{round_}"
            pack_s = _timed([AIRGAP, "pack", str(spec), "-o", str(bundle), "--key", str(key.private_path), "--json"])
            load_s = _timed([AIRGAP, "load", str(bundle), "--registry", dst.host, "--key", str(key.public_path),
                             "--trust-out", str(trust), "--json"])
            from airgap.refs.translate import zarf_forward

            local = [str(zarf_forward(f"{src.host}/{r}", dst.host)) for r in refs]
            verify_s = _timed([AIRGAP, "verify", "--trust", str(trust), "--json", *local])
            ours.append(pack_s + load_s + verify_s)
            # cosign: save each, tar, load each, verify each
            dst2 = start_registry(work / f"c{round_}")
            regs.append(dst2)
            media = work / f"cosign{round_}"
            save_s = sum(_timed([cosign, "save", f"{src.host}/{r}", "--dir", str(media / str(i))], cosign_env)
                         for i, r in enumerate(refs))
            tar_s = _timed(["tar", "cf", str(work / f"cosign{round_}.tar"), "-C", str(media), "."])
            cload_s = sum(_timed([cosign, "load", "--dir", str(media / str(i)),
                                  f"{dst2.host}/{r}"], cosign_env) for i, r in enumerate(refs))
            cverify_s = sum(_timed([cosign, "verify", "--key", str(key.public_path), "--insecure-ignore-tlog",
                                    f"{dst2.host}/{r}"], cosign_env) for r in refs)
            theirs.append(save_s + tar_s + cload_s + cverify_s)
            print(f"round {round_ + 1}: airgap {ours[-1]:.2f}s (pack {pack_s:.2f}, load {load_s:.2f}, verify "
                  f"{verify_s:.2f})  cosign {theirs[-1]:.2f}s (save {save_s:.2f}, tar {tar_s:.2f}, load "
                  f"{cload_s:.2f}, verify {cverify_s:.2f})", flush=True)
            for reg in (dst, dst2):
                reg.stop()
        a, c = statistics.median(ours), statistics.median(theirs)
        ratio = a / c
        print(json.dumps({"airgap_s": round(a, 3), "cosign_s": round(c, 3), "ratio": round(ratio, 3),
                          "target": TARGET}))
        print(f"whole job: airgap {a:.2f}s vs cosign {c:.2f}s = {ratio:.2f}x (target <= {TARGET}x)")
        return benchlib.verdict([] if ratio <= TARGET else [f"whole job {ratio:.2f}x > {TARGET}x"])
    finally:
        benchlib.cleanup(work, regs)


if __name__ == "__main__":
    sys.exit(main())
