"""The ``__main__.py`` of ``OUT.airgap.pyz``: airgap as one file for a disconnected host (see
:mod:`airgap.bundle.cli_archive`, which writes it into the archive). Standard library only: it runs before
anything it carries is importable.

``python3 OUT.airgap.pyz ARGS...`` checks that this interpreter and machine are the ones the carried wheels were
chosen for (CPython X.Y, the architecture, glibc at least the manylinux level), then, the first time only,
extracts airgap and its dependency wheels into a cache directory named after the sha256 of this very file
(compiled extensions cannot be imported from a zip), and runs ``airgap ARGS...`` from there. No index, no network:
everything is inside the file.

Cache: ``$AIRGAP_PYZ_CACHE``, else ``$XDG_CACHE_HOME/airgap/pyz``, else ``~/.cache/airgap/pyz``; when that cannot
be created, ``$TMPDIR/airgap-pyz-<uid>``. Code is run from it, so it must belong to this user and be writable by
nobody else (checked). Extraction goes to a temp directory beside the target and is renamed into place whole: a
killed first run leaves nothing half-extracted, and two first runs at once both end with the same directory.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import runpy
import shutil
import stat
import sys
import tempfile
import zipfile
from typing import Any, NoReturn

INFO_NAME = "airgap-pyz.json"
SITE_PREFIX = "site/"
WHEEL_PREFIX = "wheels/"
COMPLETE = ".complete"


def fail(message: str) -> NoReturn:
    sys.stderr.write(f"error: {message}\n")
    raise SystemExit(1)


def archive_path() -> str:
    """The pyz this code runs from: ``__file__`` is ``ARCHIVE/__main__.py``."""
    return os.path.dirname(os.path.abspath(__file__))


def check_host(info: dict[str, Any]) -> None:
    """Refuse, in one line, an interpreter or machine the carried wheels were not chosen for."""
    want = str(info["python"])
    have = f"{sys.version_info[0]}.{sys.version_info[1]}"
    target = f"CPython {want} on {info['platform']}"
    if sys.implementation.name != "cpython" or have != want:
        fail(f"this airgap.pyz carries wheels for {target}; this is {platform.python_implementation()} {have} "
             f"(run it with python{want}, or pack with --cli-python {have})")
    level = str(info["platform"])  # manylinux_2_28_x86_64
    _, major, minor, arch = level.split("_", 3)
    machine = platform.machine()
    if machine != arch:
        fail(f"this airgap.pyz carries wheels for {target}; this machine is {machine}")
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, ValueError, OSError):  # not glibc (musl has no such name), or no confstr
        libc = None
    try:
        name, version = (libc or "").split(" ", 1)
        found = tuple(int(x) for x in version.split(".")[:2])
    except ValueError:
        name, found = "", ()
    if name != "glibc" or found < (int(major), int(minor)):
        fail(f"this airgap.pyz carries wheels for {target}, which need glibc {major}.{minor} or later; "
             f"this system has {libc or 'no glibc'}")


def cache_root() -> str:
    """The directory holding extracted archives (created private to this user); see the module docstring."""
    base = os.environ.get("AIRGAP_PYZ_CACHE")
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        base = os.path.join(xdg, "airgap", "pyz")
        try:
            os.makedirs(base, mode=0o700, exist_ok=True)
        except OSError:
            base = os.path.join(tempfile.gettempdir(), f"airgap-pyz-{os.getuid()}")
    try:
        os.makedirs(base, mode=0o700, exist_ok=True)
        st = os.stat(base)
    except OSError as exc:
        fail(f"cannot create the cache directory {base}: {exc.strerror or exc} (set AIRGAP_PYZ_CACHE)")
    if st.st_uid != os.getuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        fail(f"the cache directory {base} belongs to another user or is writable by others: code runs from "
             "there (set AIRGAP_PYZ_CACHE to a directory of your own)")
    return base


def _target(name: str, prefix: str = "") -> str:
    """``name`` (a zip member) as a safe relative path: no absolute path, drive, backslash or ``..``."""
    parts = name.split("/")
    if name.startswith("/") or "\\" in name or any(p in ("..", ".") for p in parts) or ":" in parts[0]:
        fail(f"refusing the archive member {prefix}{name!r}")
    return os.path.join(*[p for p in parts if p])


def _write(source: zipfile.ZipFile, member: zipfile.ZipInfo, dest: str) -> None:
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    with source.open(member) as src, open(dest, "wb") as out:
        shutil.copyfileobj(src, out, 1024 * 1024)


def _wheel_path(name: str) -> str | None:
    """Where a wheel member goes under site-packages: as is, or out of ``*.data/purelib|platlib``; None for
    the ``scripts``, ``headers`` and ``data`` parts a command line run from here does not need."""
    top, _, rest = name.partition("/")
    if top.endswith(".data") and rest:
        kind, _, inner = rest.partition("/")
        return inner if kind in ("purelib", "platlib") and inner else None
    return name


def extract(archive: zipfile.ZipFile, info: dict[str, Any], root: str, target: str) -> None:
    """airgap and every wheel into ``target/site``, via a temp directory renamed into place."""
    tmp = tempfile.mkdtemp(dir=root, prefix=f".{os.path.basename(target)}.")
    try:
        site = os.path.join(tmp, "site")
        os.makedirs(site)
        for member in archive.infolist():
            if member.filename.startswith(SITE_PREFIX) and not member.is_dir():
                _write(archive, member, os.path.join(site, _target(member.filename[len(SITE_PREFIX):])))
        for wheel in info["wheels"]:
            data = archive.read(WHEEL_PREFIX + wheel["name"])
            if hashlib.sha256(data).hexdigest() != wheel["sha256"]:
                fail(f"wheel {wheel['name']} in this airgap.pyz does not match its sha256")
            with zipfile.ZipFile(io.BytesIO(data)) as whl:
                for member in whl.infolist():
                    rel = _wheel_path(member.filename)
                    if rel is not None and not member.is_dir():
                        _write(whl, member, os.path.join(site, _target(rel, f"{wheel['name']}:")))
        with open(os.path.join(tmp, COMPLETE), "w", encoding="utf-8") as f:
            f.write(os.path.basename(target) + "\n")
        try:
            os.rename(tmp, target)
        except OSError:
            if not os.path.isfile(os.path.join(target, COMPLETE)):  # not another first run's: a leftover
                shutil.rmtree(target, ignore_errors=True)
                os.rename(tmp, target)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def prepare() -> str:
    """The site directory to import airgap from (extracted on first use)."""
    path = archive_path()
    try:
        with open(path, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        fail(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}")
    with archive:
        try:
            info = json.loads(archive.read(INFO_NAME))
            check_host(info)
        except (KeyError, ValueError, TypeError, zipfile.BadZipFile) as exc:
            fail(f"{path} is not an airgap.pyz this bootstrap understands ({INFO_NAME}: {exc})")
        root = cache_root()
        target = os.path.join(root, digest)
        if not os.path.isfile(os.path.join(target, COMPLETE)):
            try:
                extract(archive, info, root, target)
            except (OSError, KeyError, zipfile.BadZipFile) as exc:
                fail(f"cannot extract {path} into {root}: {getattr(exc, 'strerror', None) or exc}")
    return os.path.join(target, "site")


def main() -> None:
    site = prepare()
    archive = archive_path()
    sys.path[:] = [site] + [p for p in sys.path if os.path.abspath(p or ".") != archive]
    # As `python -m airgap.cli` runs it. (This file is the archive's entry point, above every wing; it sits in
    # airgap.bundle only because cli_archive writes it, so it names the CLI rather than importing it.)
    runpy.run_module("airgap.cli", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
