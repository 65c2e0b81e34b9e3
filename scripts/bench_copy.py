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
import glob
import hashlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.images import Pusher, push_image  # noqa: E402
from support.registries import Registry, find_tool, start_registry  # noqa: E402

MB = 1_000_000
AIRGAP = str(Path(sys.executable).parent / "airgap")


# Peak RSS of the measured command alone. ru_maxrss from wait4 on our own child is wrong: the kernel seeds a
# process's maxrss at exec with the high-water mark of the memory it had before (after fork, or shared through
# vfork, that is THIS large benchmark process), so every tool would report our own peak. A tiny launcher
# (bare interpreter, ~10 MB) starts the command instead and reports the grandchild's wait4 rusage: that child
# inherits only the launcher's small footprint, so its maxrss is its own peak (exact above the launcher's
# ~10 MB; checked against the child's own /proc/self/status VmHWM). GNU time does the same, but is optional.
_LAUNCHER = (
    "import os, sys\n"
    "pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ)\n"
    "_, status, usage = os.wait4(pid, 0)\n"
    "os.write(int(sys.argv[1]), b'%d %d' % (os.waitstatus_to_exitcode(status), usage.ru_maxrss))\n"
)


def run_measured(argv: list[str]) -> tuple[float, int]:
    """Run a command; return (wall seconds, peak RSS in MB) of that process alone."""
    read_fd, write_fd = os.pipe()
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-S", "-I", "-c", _LAUNCHER, str(write_fd), *argv],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, pass_fds=(write_fd,))
    os.close(write_fd)
    _, err = proc.communicate()
    elapsed = time.perf_counter() - started
    with os.fdopen(read_fd, "rb") as f:
        report = f.read().split()
    code, maxrss_kb = (int(report[0]), int(report[1])) if len(report) == 2 else (proc.returncode or 1, 0)
    if code != 0:
        raise SystemExit(f"bench: {' '.join(argv)} failed ({code}): {err.decode()[-500:]}")
    return elapsed, maxrss_kb // 1024


def byte_compile() -> None:
    """Compile airgap's modules as ``pip install`` does. This checkout is an editable install and the
    environment may set PYTHONDONTWRITEBYTECODE, which would make every measured process recompile every
    module it imports (~40 ms each) -- a cost no installed airgap pays."""
    import compileall

    compileall.compile_dir(str(ROOT / "airgap"), quiet=1)


def fresh_airgap_cache(directory: Path) -> None:
    """Point airgap at an empty blob-location cache, as skopeo's blob-info cache is cleared for it."""
    shutil.rmtree(directory, ignore_errors=True)
    os.environ["AIRGAP_CACHE_DIR"] = str(directory)


def clear_skopeo_cache() -> None:
    for pattern in ("/var/lib/containers/cache/blob-info-cache*",
                    os.path.expanduser("~/.local/share/containers/cache/blob-info-cache*")):
        for path in glob.glob(pattern):
            os.remove(path)


def populate(reg: Registry, images: int) -> list[str]:
    pusher = Pusher(reg.url)
    refs = []
    for i in range(images):
        push_image(pusher, f"bench/app{i}", "1.0", platforms=("linux/amd64", "linux/arm64"),
                   base_sizes=(40 * MB,), layer_sizes=(15 * MB,))
        refs.append(f"bench/app{i}:1.0")
    return refs


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
    from airgap.oci import mediatypes as mt
    from airgap.oci.manifest import Descriptor, Manifest
    from airgap.oci.registry import RegistryClient

    size, chunk = 1024 * 1024 * 1024, 4 * 1024 * 1024

    def chunks():  # deterministic, so it can be hashed and then uploaded without being stored
        rng = random.Random(7)
        for _ in range(size // chunk):
            yield rng.randbytes(chunk)

    h = hashlib.sha256()
    for c in chunks():
        h.update(c)
    client = RegistryClient()
    layer = Descriptor(mt.OCI_LAYER, f"sha256:{h.hexdigest()}", size)
    client.push_blob(src.host, "bench/big", layer, chunks)
    cfg = b'{"architecture":"amd64","os":"linux"}'
    config = Descriptor(mt.OCI_CONFIG, "sha256:" + hashlib.sha256(cfg).hexdigest(), len(cfg))
    client.push_blob(src.host, "bench/big", config, lambda: [cfg])
    import json

    data = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": config.to_json(),
                       "layers": [layer.to_json()]}).encode()
    client.put_manifest(src.host, "bench/big", "1", Manifest.from_bytes(data, mt.OCI_MANIFEST))
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
    byte_compile()
    work = Path(tempfile.mkdtemp(prefix="airgap-bench-"))
    regs: list[Registry] = []
    failures: list[str] = []
    try:
        src = start_registry(work / "src")
        regs.append(src)
        t = time.perf_counter()
        refs = populate(src, args.images)
        blob_bytes = args.images * 2 * 15 * MB + 2 * 40 * MB
        print(f"workload: {len(refs)} two-platform images, {blob_bytes / MB:.0f} MB of blobs "
              f"(pushed in {time.perf_counter() - t:.1f}s)")
        results: dict[str, list[tuple[float, int]]] = {"airgap": [], "skopeo": []}
        for rnd in range(args.rounds):
            for tool in (("airgap", "skopeo") if rnd % 2 == 0 else ("skopeo", "airgap")):
                dst = start_registry(work / f"dst-{tool}-{rnd}")
                regs.append(dst)
                if tool == "skopeo":
                    clear_skopeo_cache()
                else:
                    fresh_airgap_cache(work / f"airgap-cache-{rnd}")
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
            fresh_airgap_cache(work / "airgap-cache-big")
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
        for reg in regs:
            reg.stop()
        shutil.rmtree(work, ignore_errors=True)
    for failure in failures:
        print(f"MISSED: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
