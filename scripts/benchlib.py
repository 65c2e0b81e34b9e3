"""What the scripts/bench_*.py benchmarks share: the airgap CLI they time, a peak-RSS-measuring launcher,
byte-compiling the checkout, clearing airgap's and skopeo's caches, the copy/bundle workload, streamed big
images, wrk runs and per-process CPU seconds (the webhook benches), and the cleanup and "MISSED: ..." verdict at
the end of a run.

Importing it puts tests/ on sys.path, so the benches can use tests/support (registries, images, signing).
"""

from __future__ import annotations

import glob
import hashlib
import os
import random
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))

MB = 1_000_000
GIB = 1024 * 1024 * 1024
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


def populate(reg: Any, images: int) -> list[str]:
    """The copy/bundle workload (PEERS.md) on ``reg``: ``images`` two-platform images sharing a 40 MB base
    layer per arch, each with a 15 MB app layer per arch; returns their refs without the host."""
    from support.images import Pusher, push_image

    pusher = Pusher(reg.url)
    refs = []
    for i in range(images):
        push_image(pusher, f"bench/app{i}", "1.0", platforms=("linux/amd64", "linux/arm64"),
                   base_sizes=(40 * MB,), layer_sizes=(15 * MB,))
        refs.append(f"bench/app{i}:1.0")
    return refs


def push_streamed_image(host: str, repo: str, tag: str, seeds: Sequence[int], size: int = GIB) -> int:
    """Push an image of one ``size``-byte layer per seed, deterministic bytes streamed (hashed, then uploaded:
    never held in memory); return the bytes of its layers."""
    import json

    from airgap.oci import mediatypes as mt
    from airgap.oci.manifest import Descriptor, Manifest
    from airgap.oci.registry import RegistryClient

    chunk = 4 * 1024 * 1024
    client = RegistryClient()
    layers = []
    for seed in seeds:
        def chunks(seed: int = seed) -> Iterator[bytes]:
            rng = random.Random(seed)
            for _ in range(size // chunk):
                yield rng.randbytes(chunk)

        h = hashlib.sha256()
        for c in chunks():
            h.update(c)
        layer = Descriptor(mt.OCI_LAYER, f"sha256:{h.hexdigest()}", size)
        client.push_blob(host, repo, layer, chunks)
        layers.append(layer)
    cfg = b'{"architecture":"amd64","os":"linux"}'
    config = Descriptor(mt.OCI_CONFIG, "sha256:" + hashlib.sha256(cfg).hexdigest(), len(cfg))
    client.push_blob(host, repo, config, lambda: [cfg])
    data = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": config.to_json(),
                       "layers": [la.to_json() for la in layers]}).encode()
    client.put_manifest(host, repo, tag, Manifest.from_bytes(data, mt.OCI_MANIFEST))
    return size * len(seeds)


# The end of every wrk script: a request's own part sets the globals ``bad`` (count) and ``first`` (the first
# bad answer) in its ``response``; ``done`` sums them over the threads and prints one AIRGAP line that
# :func:`run_wrk` parses (requests, duration us, p50/p99/max us, errors, first bad answer).
WRK_REPORT_LUA = """\
local threads = {}
bad = 0
first = ""
function setup(thread) table.insert(threads, thread) end
function done(summary, latency, requests)
  local errors, sample = 0, ""
  for _, t in ipairs(threads) do
    errors = errors + t:get("bad")
    if sample == "" then sample = t:get("first") end
  end
  local e = summary.errors
  io.write(string.format("AIRGAP %d %d %d %d %d %d %s\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), latency.max,
    errors + e.connect + e.read + e.write + e.status + e.timeout, sample))
end
"""


def run_wrk(lua: str, url: str, *, clients: int, seconds: float, timeout: str, script: Path) -> dict[str, Any]:
    """wrk with one thread and ``clients`` keep-alive connections for ``seconds``, running ``lua`` (the
    requests and a ``response`` that counts bad answers) followed by :data:`WRK_REPORT_LUA`; requests/s,
    latency percentiles, errors and the CPU seconds wrk itself used."""
    script.write_text(lua + WRK_REPORT_LUA)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(["wrk", "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--timeout", timeout,
                           "-s", str(script), url], capture_output=True, text=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("AIRGAP ")), None)
    if line is None:
        raise SystemExit(f"wrk failed: {proc.stdout}{proc.stderr}")
    fields = line.split(" ", 7)
    requests, duration, p50, p99, top, errors = (int(x) for x in fields[1:7])
    wall = duration / 1e6
    return {"requests": requests, "seconds": round(wall, 2), "rps": round(requests / wall, 1),
            "p50_ms": round(p50 / 1000, 2), "p99_ms": round(p99 / 1000, 2), "max_ms": round(top / 1000, 2),
            "errors": errors, "first_error": fields[7] if len(fields) > 7 and fields[7] else None,
            "driver_cpu": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 2)}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (all its threads), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cleanup(work: Path, regs: Sequence[Any]) -> None:
    """Stop the run's registries and remove its work directory."""
    for reg in regs:
        reg.stop()
    shutil.rmtree(work, ignore_errors=True)


def verdict(failures: list[str]) -> int:
    """Print every missed target; the exit status (1 when any was missed)."""
    for failure in failures:
        print(f"MISSED: {failure}")
    return 1 if failures else 0
