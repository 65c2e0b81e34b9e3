"""Rootful podman and buildah confined to a directory of their own, for tests and scripts on this kind of machine.

The host has three quirks (``../shared/recipes/containers.md``), handled here exactly as ``scripts/build-image.sh``
handles them, so tests can run the image that script built (same default state directory):

1. crun cannot raise RLIMIT_NOFILE to podman's default for root: our ``containers.conf`` sets ``default_ulimits``.
2. cgroup v1 + v2 ("hybrid"), which crun refuses: ``cgroups = "disabled"`` and every command runs in a private
   mount namespace (``unshare -m --propagation private``) with a tmpfs over ``/sys/fs/cgroup/unified``.
3. Host state stays untouched: in that namespace ``/run`` is our ``run/`` directory and ``/dev/null`` our own
   null device (``podman exec`` without ``-i`` once chowned the host's), and ``CONTAINERS_CONF``,
   ``CONTAINERS_STORAGE_CONF``, ``CONTAINERS_REGISTRIES_CONF``, ``TMPDIR`` and ``LIBMOUNT_UTAB`` (``mount``
   writes ``/run/mount/utab`` otherwise) point into the state directory. ``/var/lib`` is read-only there:
   containers/image keeps its blob-info cache in ``/var/lib/containers/cache`` for root whatever the storage
   configuration, and falls back to memory when it cannot (so the state directory must not be under
   ``/var/lib``). ``/var/tmp`` is our ``tmp/``: ``podman load`` unpacks an OCI archive there whatever ``TMPDIR``
   and ``image_copy_tmp_dir`` say. ``lock_type = "file"`` keeps podman's locks in our ``run/`` instead of a
   ``libpod_lock`` segment in the host's ``/dev/shm``. Always pass ``-i`` to ``podman exec`` all the same.

Each call gets a namespace of its own; what persists between calls (storage, the runtime's state under ``run/``)
lives in the state directory, so ``podman run -d`` in one call and ``podman rm -f`` in another work together.

- :func:`unavailable` says why podman cannot be used here (not root, a tool missing), or None.
- :class:`Podman` (``Podman.create(state_dir)``): ``run(*args)``, ``popen(*args)``, ``command(*args)`` for
  ``podman`` (or ``tool="buildah"``) with the right environment.
- :func:`running_container` starts ``podman run --rm`` in the background, optionally waits until it is ready,
  and stops it (SIGTERM, then ``podman rm -f``) when the block ends.

Standard library only, like the rest of ``tests/support`` that scripts import.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_STATE = Path(os.environ.get("AIRGAP_IMAGE_WORKDIR", Path.home() / ".cache" / "airgap" / "image")) / "containers"

# Run by `sh -c` inside `unshare -m --propagation private`: $1 is the state directory, the rest the command.
_CONFINE = r"""
set -e
state="$1"; shift
mount --bind "$state/run" /run
mount --bind "$state/null" /dev/null
if [ -d /sys/fs/cgroup/unified ]; then mount -t tmpfs -o size=64k,mode=755 none /sys/fs/cgroup/unified; fi
mount --bind /var/lib /var/lib
mount -o remount,bind,ro /var/lib
mount --bind "$state/tmp" /var/tmp
exec "$@"
"""

_CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
cgroups = "disabled"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "crun"
image_copy_tmp_dir = "{tmp}"
lock_type = "file"
"""


def unavailable() -> str | None:
    """Why rootful podman cannot run here, or None when it can (a test would skip with this reason)."""
    if os.geteuid() != 0:
        return "rootful podman needs root"
    for tool in ("podman", "buildah", "crun", "unshare"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install -y podman buildah crun)"
    return None


@dataclass(frozen=True)
class Podman:
    """podman/buildah with their configuration, storage and run directories under ``state``."""

    state: Path = DEFAULT_STATE

    @classmethod
    def create(cls, state: Path | None = None) -> Podman:
        """Lay out ``state`` (config files, storage, run, tmp, the null device) if needed and return the handle."""
        state = Path(state or DEFAULT_STATE).resolve()
        if state.is_relative_to("/var/lib") or state.is_relative_to("/run"):
            raise ValueError(f"{state}: podman's state must not be under /var/lib or /run (read-only or hidden there)")
        conf = state / "conf"
        for sub in ("conf", "storage", "run", "tmp"):
            (state / sub).mkdir(parents=True, exist_ok=True)
        files = {
            "containers.conf": _CONTAINERS_CONF.format(tmp=state / "tmp"),
            "storage.conf": f'[storage]\ndriver = "overlay"\ngraphroot = "{state}/storage"\n'
                            f'runroot = "{state}/run/storage"\n',
            "registries.conf": "unqualified-search-registries = []\n",
        }
        for name, text in files.items():
            if not (conf / name).exists() or (conf / name).read_text() != text:
                (conf / name).write_text(text)
        if not (conf / "auth.json").exists():
            (conf / "auth.json").write_text("{}\n")
        null = state / "null"
        if not null.is_char_device():
            null.unlink(missing_ok=True)
            os.mknod(null, 0o666 | 0o020000, os.makedev(1, 3))  # S_IFCHR, as /dev/null
            null.chmod(0o666)
        return cls(state)

    def env(self) -> dict[str, str]:
        """The process environment for podman/buildah: ours on top of the caller's."""
        conf = self.state / "conf"
        return {**os.environ, "CONTAINERS_CONF": str(conf / "containers.conf"),
                "CONTAINERS_STORAGE_CONF": str(conf / "storage.conf"),
                "CONTAINERS_REGISTRIES_CONF": str(conf / "registries.conf"),
                "REGISTRY_AUTH_FILE": str(conf / "auth.json"),
                "TMPDIR": str(self.state / "tmp"), "BUILDAH_ISOLATION": "oci",
                "LIBMOUNT_UTAB": str(self.state / "utab")}

    def command(self, *args: str, tool: str = "podman") -> list[str]:
        """The argv that runs ``tool args...`` confined (pass it to subprocess with ``env=self.env()``)."""
        return ["unshare", "-m", "--propagation", "private", "sh", "-c", _CONFINE, "confine", str(self.state),
                tool, *args]

    def run(self, *args: str, tool: str = "podman", check: bool = True, timeout: float | None = 300,
            input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        """Run ``tool args...`` to completion, capturing stdout and stderr; raises on failure when ``check``."""
        if tool == "podman" and args[:1] == ("exec",) and "-i" not in args and "--interactive" not in args:
            raise ValueError("podman exec needs -i here (without it podman 4.3 chowned /dev/null)")
        proc = subprocess.run(self.command(*args, tool=tool), env=self.env(), capture_output=True, timeout=timeout,
                              input=input)
        if check and proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, [tool, *args], proc.stdout, proc.stderr)
        return proc

    def popen(self, *args: str, tool: str = "podman", **kwargs: Any) -> subprocess.Popen[bytes]:
        """Start ``tool args...`` in the background (``subprocess.Popen`` keyword arguments pass through).
        ``unshare`` and ``sh`` exec into the tool, so the returned process is podman itself."""
        process: subprocess.Popen[bytes] = subprocess.Popen(self.command(*args, tool=tool), env=self.env(), **kwargs)
        return process


@dataclass
class Container:
    """A container started by :func:`running_container`: its name, the ``podman run`` process, its log file."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    started: float  # time.monotonic() just before `podman run` was started
    ready_after: float | None = field(default=None)  # seconds from start until ``ready`` first returned True

    def output(self) -> str:
        """What the container wrote to stdout and stderr so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@contextlib.contextmanager
def running_container(podman: Podman, image: str, args: Sequence[str] = (), *, options: Sequence[str] = (),
                      name: str | None = None, ready: Callable[[], bool] | None = None, timeout: float = 60.0,
                      log_dir: Path | None = None) -> Iterator[Container]:
    """Run ``podman run --rm --name NAME OPTIONS IMAGE ARGS`` in the background for the ``with`` block.

    ``options`` are podman run options (``--network=host``, ``--read-only``, ``--user``, ``-v``...). When ``ready``
    is given it is polled every 20 ms until it returns True (``Container.ready_after`` records how long that
    took from the start), failing with the container's output if the container exits first or ``timeout``
    passes. On exit the container gets SIGTERM (podman run forwards it; ``--rm`` removes the container), and
    is force-removed if it has not stopped within 10 s; its log file (``log_dir``, default the state's
    ``tmp/``) is removed unless the block raised.
    """
    name = name or f"airgap-test-{uuid.uuid4().hex[:12]}"
    log_dir = log_dir or podman.state / "tmp"
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    started = time.monotonic()
    with log.open("wb") as sink:
        process = podman.popen("run", "--rm", "--name", name, *options, image, *args,
                               stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT)
    container = Container(name, process, log, started)
    failed = True
    try:
        if ready is not None:
            deadline = started + timeout
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"container {name} exited ({process.returncode}) before it was ready:\n"
                                       f"{container.output()[-4000:]}")
                if ready():
                    container.ready_after = time.monotonic() - started
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"container {name} not ready after {timeout:g} s:\n{container.output()[-4000:]}")
                time.sleep(0.02)
        yield container
        failed = False
    finally:
        stop_container(podman, container)
        if not failed:
            log.unlink(missing_ok=True)  # kept when something failed, for a look


def stop_container(podman: Podman, container: Container, grace: float = 10.0) -> int | None:
    """SIGTERM the container's ``podman run``, wait ``grace`` seconds, then ``podman rm -f``; its exit code."""
    process = container.process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            podman.run("rm", "-f", "-t", "0", container.name, check=False, timeout=60)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    podman.run("rm", "-f", "--ignore", container.name, check=False, timeout=60)
    return process.returncode
