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
- delta: the site loads the full bundle, writes its inventory, 2 of the 10 images change, and the delta packed
  against the inventory is loaded into the same registry; the delta's bytes vs what it must carry (the new blobs,
  every manifest and every signature: target <= 1.02x), and full vs delta pack and load times.

``--workloads pack,load,reload,big,split,delta`` runs a subset (default: all).

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


def write_spec(path: Path, host: str, refs: list[str], name: str, version: str = "1.0.0") -> None:
    images = "\n".join(f"  - {host}/{r}" for r in refs)
    path.write_text(f"""apiVersion: airgap/v1
kind: Bundle
metadata: {{name: {name}, version: {version}}}
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


WORKLOADS = ("pack", "load", "reload", "big", "split", "delta")


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

        # ---- delta bundles ---------------------------------------------------------------------------
        if "delta" in wanted:
            drop_targets()
            failures += bench_delta(work, src, refs, key, args.rounds, registry, drop_targets)
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
    best = min(splits) / min(singles)  # the least disturbed round of each: on a shared machine, the steadier figure
    print(f"split:   pack --split-size 64M {secs:.2f}s -> {len(parts)} parts, concatenation byte-identical; "
          f"load parts {split_s:.2f}s (RSS {rss['parts']} MB) vs single file {single_s:.2f}s "
          f"(RSS {rss['single']} MB)  ratio {ratio:.3f} of the medians, {best:.3f} of the best rounds (target <= 1.05)")
    print(f"         rounds: parts {_fmt(splits)}; single {_fmt(singles)}")
    shutil.rmtree(parts_dir, ignore_errors=True)
    failures = [f"split load ratio {ratio:.3f} > 1.05"] if ratio > 1.05 else []
    if rss["parts"] > max(rss["single"] * 1.1, rss["single"] + 10):
        failures.append(f"split load peak RSS {rss['parts']} MB vs {rss['single']} MB")
    return failures


def bench_delta(work: Path, src: Registry, refs: list[str], key: Any, rounds: int, registry: Any,
                drop_targets: Any) -> list[str]:
    """TARGETS.md's delta row: a site holding version 1 (the 10 images), 2 images changed upstream. The delta
    packed against the site's inventory must weigh <= 1.02x what it has to carry (the blobs the site lacks, every
    manifest, every signature), and its pack and load times should follow its bytes, not the full bundle's."""
    import json

    from support.images import Pusher, push_image
    from support.registry_content import snapshot

    d = work / "delta"
    d.mkdir(exist_ok=True)
    shutil.copy(work / "release.pub", d / "release.pub")
    v1, v2 = d / "v1.yaml", d / "v2.yaml"
    write_spec(v1, src.host, refs, "site")
    full1 = d / "full1.tar"
    run_measured([AIRGAP, "pack", str(v1), "-o", str(full1), "--json"])
    digest1 = _digest(full1)

    def site(name: str) -> Registry:
        reg = registry(name)
        run_measured([AIRGAP, "load", str(full1), "--registry", reg.host, "--bundle-digest", digest1, "--json"])
        return reg

    base = site("delta-site")
    inventory = d / "inventory.json"
    inv_s, _ = run_measured([AIRGAP, "site", "inventory", "--registry", base.host, "-o", str(inventory)])
    changed = refs[:2]
    pusher = Pusher(src.url)
    for ref in changed:  # new app layers (15 MB per arch) and configs; the shared 40 MB base stays
        push_image(pusher, ref.split(":")[0], "1.0", platforms=("linux/amd64", "linux/arm64"),
                   base_sizes=(40 * MB,), layer_sizes=(15 * MB,), seed=f"{ref}-v2")
    sign_all(src.host, changed, key.signer)
    write_spec(v2, src.host, refs, "site", version="2.0.0")
    full2, delta, zero = d / "full2.tar", d / "delta.tar", d / "zero.tar"
    run_measured([AIRGAP, "pack", str(v2), "-o", str(full2), "--json"])
    # The fixed part of the work (resolve, collect and verify 10 images; push every manifest): a delta that
    # leaves out every image blob (against the full version 2 itself), so it moves no layer at all.
    packs: dict[str, list[float]] = {"full": [], "delta": [], "zero": []}
    for i in range(rounds):
        order = [("full", d / "full2-again.tar", []), ("delta", delta, ["--delta", str(inventory)]),
                 ("zero", zero, ["--since", str(full2)])]
        for kind, out, extra in order if i % 2 == 0 else order[::-1]:
            out.unlink(missing_ok=True)
            os.sync()
            secs, _ = run_measured([AIRGAP, "pack", str(v2), "-o", str(out), "--json", *extra])
            packs[kind].append(secs)

    # what the delta must carry, worked out from the inventory and the full bundle (not from the delta): every
    # manifest, every blob of every signature/attestation/referrer manifest, and the other blobs the site lacks
    inv = json.loads(inventory.read_bytes())
    full_manifest = _manifest_of(full2)
    manifests: set[str] = set()
    attached: set[str] = set()
    with tarfile.open(full2) as tf:
        def walk(digest: str, into: set[str]) -> None:
            member = tf.extractfile(f"blobs/sha256/{digest.split(':', 1)[1]}")
            assert member is not None
            doc = json.loads(member.read())
            manifests.add(digest)
            for child in doc.get("manifests") or []:
                walk(child["digest"], into)
            into.update(b["digest"] for b in ([doc["config"]] if "config" in doc else []) + (doc.get("layers") or []))

        for image in full_manifest["images"]:
            manifests.update([image["digest"], *image["manifests"]])
            for att in image["attachments"]:
                walk(att["digest"], attached)
    must = {dg for dg in full_manifest["blobs"] if dg in manifests or dg in attached or dg not in inv["blobs"]}
    must_bytes = sum(full_manifest["blobs"][dg] for dg in must)
    new_blobs = sum(full_manifest["blobs"][dg] for dg in must if dg not in manifests and dg not in attached)
    carried = set(_manifest_of(delta)["blobs"])
    delta_size, full_size = delta.stat().st_size, full2.stat().st_size
    byte_ratio = delta_size / must_bytes

    loads: dict[str, list[float]] = {"full": [], "full-site": [], "delta": [], "zero": []}
    digest2, digest_delta, digest_zero = _digest(full2), _digest(delta), _digest(zero)
    same = True
    for i in range(rounds):
        drop_targets()
        at_site, at_site_full, with_blobs = site(f"delta-a{i}"), site(f"delta-b{i}"), site(f"delta-z{i}")
        # the floor's site also holds version 2's new blobs (elsewhere: loaded under a prefix), so the zero
        # delta is placed with mounts only and pushes every manifest
        run_measured([AIRGAP, "load", str(full2), "--registry", f"{with_blobs.host}/mirror", "--translate",
                      "prefix", "--bundle-digest", digest2, "--json"])
        empty = registry(f"delta-empty{i}")
        runs = [("delta", delta, digest_delta, at_site), ("full-site", full2, digest2, at_site_full),
                ("full", full2, digest2, empty), ("zero", zero, digest_zero, with_blobs)]
        for kind, bundle, digest, reg in runs if i % 2 == 0 else runs[::-1]:
            os.sync()
            secs, _ = run_measured([AIRGAP, "load", str(bundle), "--registry", reg.host, "--bundle-digest", digest,
                                    "--json"])
            loads[kind].append(secs)
        if i == 0:
            same = snapshot(at_site.url, check=False) == snapshot(at_site_full.url, check=False)
    pack_t = {k: statistics.median(v) for k, v in packs.items()}
    load_t = {k: statistics.median(v) for k, v in loads.items()}
    size_ratio = delta_size / full_size
    print(f"delta:   site inventory {inv_s:.2f}s ({len(inv['blobs'])} blobs); 2 of {len(refs)} images changed")
    print(f"         bytes: delta {delta_size / MB:.1f} MB vs full {full_size / MB:.1f} MB ({size_ratio:.3f}); "
          f"must carry {must_bytes / MB:.1f} MB (new blobs {new_blobs / MB:.1f} MB + manifests and signatures) "
          f"-> ratio {byte_ratio:.4f} (target <= 1.02); zero-byte delta {zero.stat().st_size / MB:.2f} MB")
    print(f"         pack: full {pack_t['full']:.2f}s, delta {pack_t['delta']:.2f}s (ratio "
          f"{pack_t['delta'] / pack_t['full']:.2f}), fixed part (zero-byte delta) {pack_t['zero']:.2f}s")
    print("               rounds: " + "; ".join(f"{k} {_fmt(v)}" for k, v in packs.items()))
    print(f"         load: full into an empty registry {load_t['full']:.2f}s, full at the v1 site "
          f"{load_t['full-site']:.2f}s, delta at the v1 site {load_t['delta']:.2f}s (ratio "
          f"{load_t['delta'] / load_t['full']:.2f}), fixed part (zero-byte delta) {load_t['zero']:.2f}s")
    print("               rounds: " + "; ".join(f"{k} {_fmt(v)}" for k, v in loads.items()))
    print(f"         registry content after full+delta == full+full: {same}; the delta carries exactly that: "
          f"{carried == must}")
    failures = []
    if byte_ratio > 1.02:
        failures.append(f"delta bytes {byte_ratio:.4f}x what it must carry > 1.02")
    if not same:
        failures.append("delta: registry content after full+delta differs from full+full")
    if carried != must:
        failures.append(f"delta carries {len(carried - must)} blob(s) it need not, lacks {len(must - carried)}")
    # "Time proportional to the delta's bytes": beyond the fixed part, the delta may take its byte share of what
    # the full bundle takes beyond that same fixed part (x1.5, + 0.25 s for a shared machine's noise).
    for what, t in (("pack", pack_t), ("load", load_t)):
        bound = t["zero"] + size_ratio * max(0.0, t["full"] - t["zero"]) * 1.5 + 0.25
        print(f"         {what}: delta {t['delta']:.2f}s vs the proportional bound {bound:.2f}s "
              f"(fixed {t['zero']:.2f}s + {size_ratio:.3f} x {t['full'] - t['zero']:.2f}s, x1.5 + 0.25s)")
        if t["delta"] > bound:
            failures.append(f"delta {what} {t['delta']:.2f}s > proportional bound {bound:.2f}s")
    shutil.rmtree(d, ignore_errors=True)
    return failures


def _manifest_of(bundle: Path) -> dict[str, Any]:
    import json

    with tarfile.open(bundle) as tf:
        member = tf.extractfile("airgap-bundle.json")
        assert member is not None
        return dict(json.loads(member.read()))


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
