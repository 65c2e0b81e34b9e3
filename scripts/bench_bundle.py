#!/usr/bin/env python3
"""Benchmark `airgap pack` / `airgap load` against their peers in the same run (ratios, not absolute seconds).

Workload (PEERS.md): 10 two-platform images, a 40 MB base layer per arch shared by all plus a 15 MB app layer
per image and arch (~381 MB of blobs), every image and child key-signed, on Debian's docker-registry (loopback).

- pack: `airgap pack SPEC -o B.tar` vs `crane pull --format oci <10 refs> DIR` + `tar cf` (target <= 0.75x);
- load: `airgap load B.tar` into an EMPTY registry vs `skopeo copy --all oci:LAYOUT:<ref>` of the same layout
  (the bundle, extracted) into another empty registry (target <= 0.8x); skopeo's blob-info cache and airgap's
  blob-location cache are cleared first;
- re-load of the loaded bundle (target <= 0.5 s);
- peak RSS of pack and load of a ~2 GB bundle (two 1 GB layers; target <= 120 MB). ``--skip-big`` skips it;
- split media: the same bundle packed with ``--split-size 64M``, loaded from its parts vs from the single file,
  each into an empty registry, alternating (target: parts <= 1.05x the single file; peak RSS unchanged);

``--workloads pack,load,reload,big,split`` runs a subset (default: all).

Pack and load are each timed ``--rounds`` times (default 3), alternating with their peer so neither always
meets a cold registry or the other's disk writeback (``sync`` before every timed command); the ratio is of
the medians, and every round is printed.

Exit status is non-zero when a target from ../shared/TARGETS.md is missed.
Usage: .venv/bin/python scripts/bench_bundle.py [--images N] [--rounds N] [--skip-big] [--workloads LIST]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import benchlib  # first: it puts tests/ on sys.path for support.*
from benchlib import AIRGAP, MB, run_measured
from support.registries import Registry, find_tool, start_registry
from support.signing import write_keypair


def write_spec(path: Path, host: str, refs: list[str], name: str) -> None:
    images = "\n".join(f"  - {host}/{r}" for r in refs)
    path.write_text(f"""apiVersion: airgap/v1
kind: Bundle
metadata: {{name: {name}, version: 1.0.0}}
created: 1700000000
images:
{images}
keys: [{{name: release, path: release.pub}}]
policies:
  - name: bench
    images: [{{glob: "{host}/bench/**"}}]
    authorities: [{{key: {{name: release}}, ctlog: {{disabled: true}}}}]
""")


def sign_all(host: str, refs: list[str], key: object) -> None:
    from airgap.oci.registry import RegistryClient
    from airgap.signing.sign import sign_image

    client = RegistryClient()
    for ref in refs:
        sign_image(f"{host}/{ref}", key, client=client, recursive=True)  # type: ignore[arg-type]


def big_image(src: Registry) -> str:
    """A two-layer 2 GB image pushed by streaming deterministic bytes (never held in memory)."""
    benchlib.push_streamed_image(src.host, "bench/big", "1", seeds=(11, 12))
    return "bench/big:1"


WORKLOADS = ("pack", "load", "reload", "big", "split")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-big", action="store_true")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated subset of " +
                        ", ".join(WORKLOADS))
    args = parser.parse_args()
    wanted = set(args.workloads.split(","))
    if wanted - set(WORKLOADS):
        raise SystemExit(f"bench: unknown workload(s) {', '.join(sorted(wanted - set(WORKLOADS)))}")
    if args.skip_big:
        wanted.discard("big")
    for tool in ("docker-registry", "crane", "skopeo"):
        if find_tool(tool) is None:
            raise SystemExit(f"bench: {tool} not found (run scripts/install-peers.sh)")
    os.environ["PATH"] = f"{Path.home() / '.cache/airgap/peers/bin'}:{os.environ['PATH']}"
    benchlib.byte_compile()
    work = Path(tempfile.mkdtemp(prefix="bench-bundle-"))
    regs: list[Registry] = []
    failures: list[str] = []

    def registry(name: str) -> Registry:
        reg = start_registry(work / name)
        regs.append(reg)
        return reg

    def drop_targets() -> None:
        """Stop every registry but the source (the previous round's targets), freeing their disk."""
        for reg in regs[1:]:
            reg.stop()
            shutil.rmtree(reg.root, ignore_errors=True)
        del regs[1:]

    try:
        src = registry("src")
        refs = benchlib.populate(src, args.images)
        key = write_keypair(work / "keys", "release")
        sign_all(src.host, refs, key.signer)
        (work / "release.pub").write_bytes(key.public_pem)
        spec = work / "bench.yaml"
        write_spec(spec, src.host, refs, "bench")
        benchlib.fresh_airgap_cache(work / "airgap-cache")
        bundle = work / "bench.tar"

        # ---- pack vs crane pull + tar -------------------------------------------------------------
        if "pack" in wanted:
            failures += bench_pack(work, src, refs, spec, bundle, args.rounds)
        else:
            run_measured([AIRGAP, "pack", str(spec), "-o", str(bundle), "--json"])

        # ---- load vs skopeo copy from the same layout ------------------------------------------------
        if wanted & {"load", "reload"}:
            failures += bench_load(work, src, refs, bundle, args.rounds, registry, drop_targets, wanted)

        # ---- peak RSS on a 2 GB bundle ---------------------------------------------------------------
        if "big" in wanted:
            failures += bench_big(work, src, registry)

        # ---- split media: parts vs the single file ---------------------------------------------------
        if "split" in wanted:
            drop_targets()
            failures += bench_split(work, spec, bundle, args.rounds, registry, drop_targets)
    finally:
        benchlib.cleanup(work, regs)
    return benchlib.verdict(failures)


def bench_pack(work: Path, src: Registry, refs: list[str], spec: Path, bundle: Path, rounds: int) -> list[str]:
    layout = work / "crane-layout"
    packs, peers, crane_parts = [], [], []
    pack_rss = 0
    for _ in range(rounds):
        bundle.unlink(missing_ok=True)
        os.sync()
        secs, pack_rss = run_measured([AIRGAP, "pack", str(spec), "-o", str(bundle), "--json"])
        packs.append(secs)
        shutil.rmtree(layout, ignore_errors=True)
        (work / "crane.tar").unlink(missing_ok=True)
        os.sync()
        t0 = time.perf_counter()
        crane_s, _ = run_measured(["crane", "pull", "--insecure", "--format", "oci",
                                   *(f"{src.host}/{r}" for r in refs), str(layout)])
        tar_s, _ = run_measured(["tar", "cf", str(work / "crane.tar"), "-C", str(layout), "."])
        peers.append(time.perf_counter() - t0)
        crane_parts.append(f"{crane_s:.2f} + {tar_s:.2f}")
    pack_s, peer_pack = statistics.median(packs), statistics.median(peers)
    size = bundle.stat().st_size
    crane_size = (work / "crane.tar").stat().st_size
    print(f"pack:    airgap {pack_s:.2f}s ({size / MB:.0f} MB, RSS {pack_rss} MB)  "
          f"crane pull + tar {peer_pack:.2f}s ({crane_size / MB:.0f} MB)  "
          f"ratio {pack_s / peer_pack:.2f} (target <= 0.75)")
    print(f"         rounds: airgap {_fmt(packs)}; crane pull + tar {', '.join(crane_parts)}")
    shutil.rmtree(layout, ignore_errors=True)
    (work / "crane.tar").unlink(missing_ok=True)
    return [f"pack ratio {pack_s / peer_pack:.2f} > 0.75"] if pack_s / peer_pack > 0.75 else []


def bench_load(work: Path, src: Registry, refs: list[str], bundle: Path, rounds: int, registry: Any,
               drop_targets: Any, wanted: set[str]) -> list[str]:
    failures = []
    extracted = work / "layout"
    with tarfile.open(bundle) as tf:
        tf.extractall(extracted, filter="data")
    loads, skopeos = [], []
    load_argv: list[str] = []
    load_rss = 0
    for i in range(rounds if "load" in wanted else 1):
        drop_targets()
        if "load" in wanted:
            benchlib.clear_skopeo_cache()
            dst_skopeo = registry(f"dst-skopeo{i}")
            os.sync()
            t0 = time.perf_counter()
            for ref in refs:
                run_measured(["skopeo", "copy", "--all", "--quiet", "--dest-tls-verify=false",
                              f"oci:{extracted}:{src.host}/{ref}", f"docker://{dst_skopeo.host}/{ref}"])
            skopeos.append(time.perf_counter() - t0)
        benchlib.fresh_airgap_cache(work / f"airgap-cache-load{i}")
        dst = registry(f"dst{i}")
        load_argv = [AIRGAP, "load", str(bundle), "--registry", dst.host, "--bundle-digest", _digest(bundle),
                     "--json"]
        os.sync()
        secs, load_rss = run_measured(load_argv)
        loads.append(secs)
    shutil.rmtree(extracted, ignore_errors=True)
    if "load" in wanted:
        load_s, skopeo_s = statistics.median(loads), statistics.median(skopeos)
        print(f"load:    airgap {load_s:.2f}s (RSS {load_rss} MB)  skopeo copy x{len(refs)} {skopeo_s:.2f}s  "
              f"ratio {load_s / skopeo_s:.2f} (target <= 0.8)")
        print(f"         rounds: airgap {_fmt(loads)}; skopeo {_fmt(skopeos)}")
        if load_s / skopeo_s > 0.8:
            failures.append(f"load ratio {load_s / skopeo_s:.2f} > 0.8")
    if "reload" in wanted:
        reload_s, _ = run_measured(load_argv)
        print(f"re-load: airgap {reload_s:.2f}s (target <= 0.5)")
        if reload_s > 0.5:
            failures.append(f"re-load {reload_s:.2f}s > 0.5")
    return failures


def bench_big(work: Path, src: Registry, registry: Any) -> list[str]:
    failures = []
    big_ref = big_image(src)
    big_spec = work / "big.yaml"
    write_spec(big_spec, src.host, [big_ref], "big")
    big_bundle = work / "big.tar"
    secs, rss = run_measured([AIRGAP, "pack", str(big_spec), "-o", str(big_bundle), "--no-verify", "--json"])
    print(f"big pack: {big_bundle.stat().st_size / MB:.0f} MB in {secs:.2f}s, peak RSS {rss} MB "
          "(target <= 120)")
    if rss > 120:
        failures.append(f"pack peak RSS {rss} MB > 120")
    big_dst = registry("big-dst")
    secs, rss = run_measured([AIRGAP, "load", str(big_bundle), "--registry", big_dst.host,
                              "--allow-unsigned-bundle", "--json"])
    print(f"big load: {secs:.2f}s, peak RSS {rss} MB (target <= 120)")
    if rss > 120:
        failures.append(f"load peak RSS {rss} MB > 120")
    big_bundle.unlink(missing_ok=True)
    return failures


def bench_split(work: Path, spec: Path, bundle: Path, rounds: int, registry: Any, drop_targets: Any) -> list[str]:
    """The same bundle as 64M parts: byte-identical when concatenated; loading them from their directory vs
    the single file, each into an empty registry, alternating which goes first (target <= 1.05x)."""
    parts_dir = work / "parts"
    parts_dir.mkdir(exist_ok=True)
    secs, _ = run_measured([AIRGAP, "pack", str(spec), "-o", str(parts_dir / "bench.tar"), "--split-size", "64M",
                            "--json"])
    parts = sorted(parts_dir.glob("bench.tar.part-*"))
    whole = hashlib.sha256()
    for part in parts:
        with part.open("rb") as f:
            while chunk := f.read(1 << 20):
                whole.update(chunk)
    single = hashlib.sha256()
    with bundle.open("rb") as f:
        while chunk := f.read(1 << 20):
            single.update(chunk)
    if whole.digest() != single.digest():
        return ["split: the concatenated parts differ from the single-file bundle"]
    digest = _digest(bundle)
    singles: list[float] = []
    splits: list[float] = []
    rss = {"single": 0, "parts": 0}
    for i in range(rounds):
        order = [("single", str(bundle)), ("parts", str(parts_dir))]
        for kind, where in order if i % 2 == 0 else order[::-1]:
            drop_targets()
            benchlib.fresh_airgap_cache(work / f"airgap-cache-split-{kind}{i}")
            dst = registry(f"split-{kind}{i}")
            os.sync()
            t, peak = run_measured([AIRGAP, "load", where, "--registry", dst.host, "--bundle-digest", digest,
                                    "--json"])
            (singles if kind == "single" else splits).append(t)
            rss[kind] = max(rss[kind], peak)
    single_s, split_s = statistics.median(singles), statistics.median(splits)
    ratio = split_s / single_s
    print(f"split:   pack --split-size 64M {secs:.2f}s -> {len(parts)} parts, concatenation byte-identical; "
          f"load parts {split_s:.2f}s (RSS {rss['parts']} MB) vs single file {single_s:.2f}s "
          f"(RSS {rss['single']} MB)  ratio {ratio:.3f} (target <= 1.05)")
    print(f"         rounds: parts {_fmt(splits)}; single {_fmt(singles)}")
    shutil.rmtree(parts_dir, ignore_errors=True)
    failures = [f"split load ratio {ratio:.3f} > 1.05"] if ratio > 1.05 else []
    if rss["parts"] > max(rss["single"] * 1.1, rss["single"] + 10):
        failures.append(f"split load peak RSS {rss['parts']} MB vs {rss['single']} MB")
    return failures


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def _digest(bundle: Path) -> str:
    """The bundle digest (sha256 of its first entry, the manifest), as `airgap inspect` prints it."""
    with tarfile.open(bundle) as tf:
        member = tf.next()
        assert member is not None and member.name == "airgap-bundle.json"
        data = tf.extractfile(member).read()  # type: ignore[union-attr]
    return "sha256:" + hashlib.sha256(data).hexdigest()


if __name__ == "__main__":
    sys.exit(main())
