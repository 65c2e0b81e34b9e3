"""``pack --with-cli``: airgap itself for the disconnected side, as one self-extracting file ``OUT.airgap.pyz``.

``python3 OUT.airgap.pyz load OUT --registry ...`` runs on a host with CPython 3.11 and nothing else: no pip, no
venv, no index, no network. Why one zipapp rather than a wheelhouse directory: one file to carry, to checksum
and to sign (``OUT.airgap.pyz.sig``, the bundle key's detached signature that ``cosign verify-blob`` and
``openssl dgst`` check), and nothing to install on the far side; a wheelhouse needs pip and a venv there, and
leaves N files to check one by one. The bootstrap (:mod:`airgap.bundle.cli_bootstrap`) extracts the wheels once
into a cache directory named after the file's own sha256, since compiled extensions cannot be imported from a zip.

Layout: a ``#!/usr/bin/env python3`` line, then a zip whose entries are sorted by name, every timestamp
``created`` (the bundle's: ``SOURCE_DATE_EPOCH``; zip cannot say anything before 1980), mode 0644, stored (not
deflated: the wheels are compressed already, and deflate's bytes depend on the zlib version, so stored entries
give the same file on any machine)::

    __main__.py              the bootstrap
    airgap-pyz.json          what it carries: airgap's version, the target, the requirements, every wheel's sha256
    site/airgap/...          airgap's own package, exactly as it runs here (the code that packed the bundle)
    site/airgap-V.dist-info/ METADATA, entry_points.txt, INSTALLER
    wheels/*.whl             the runtime dependencies, byte for byte as the index served them

Where the wheels come from (the connected side's index is the only one): ``--cli-wheels DIR``, a wheelhouse the
user gives, resolved offline by ``pip download --no-index --find-links DIR``; else ``pip download`` from the
index pip is configured with, cached under ``~/.cache/airgap/cli-wheels/<key>`` (``$AIRGAP_CACHE_DIR``,
``$XDG_CACHE_HOME``), key = the requirements and the target; remove it to resolve again. Either way pip chooses
binary wheels for the target (``--python-version``, ``--abi cpXY``, every ``manylinux`` tag up to the target's
glibc), not for this host. The same code, wheels and ``created`` give the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airgap.errors import ConfigError, Error

if TYPE_CHECKING:
    from airgap.bundle.manifest import CliPin
    from airgap.keys.private import Signer

SUFFIX = ".airgap.pyz"
SCHEMA = "airgap.dev/cli-archive/v1"
DEFAULT_PYTHON = "3.11"
DEFAULT_PLATFORM = "manylinux_2_28_x86_64"  # glibc 2.28: RHEL 8, Debian 10, Ubuntu 20.04 and later
SHEBANG = b"#!/usr/bin/env python3\n"
ZIP_EPOCH = 315532800  # 1980-01-01T00:00:00Z, the earliest time a zip entry can carry
PIP_TIMEOUT = 1800.0  # seconds for one `pip download` (each of its requests has pip's own --timeout)
_PLATFORM = re.compile(r"^manylinux_2_(?P<minor>[0-9]{1,3})_(?P<arch>x86_64|i686|aarch64|armv7l|ppc64le|s390x)$")
_PYTHON = re.compile(r"^3\.(?P<minor>[0-9]{1,2})$")
# The legacy manylinux names and the glibc minor each stands for (PEP 600).
_LEGACY = {"manylinux2014": (17, ("x86_64", "i686", "aarch64", "armv7l", "ppc64le", "s390x")),
           "manylinux2010": (12, ("x86_64", "i686")), "manylinux1": (5, ("x86_64", "i686"))}
_PACKAGE = Path(__file__).resolve().parent.parent  # airgap/


@dataclass(frozen=True)
class Target:
    """Where the CLI will run: CPython ``python`` on ``platform`` (a manylinux level and architecture)."""

    python: str = DEFAULT_PYTHON
    platform: str = DEFAULT_PLATFORM

    @classmethod
    def parse(cls, python: str | None, platform: str | None) -> Target:
        py, plat = python or DEFAULT_PYTHON, platform or DEFAULT_PLATFORM
        m = _PYTHON.match(py)
        if m is None or int(m.group("minor")) < 11:
            raise ConfigError(f"--cli-python: expected 3.11 or later as X.Y, got {py!r}")
        if _PLATFORM.match(plat) is None:
            raise ConfigError(f"--cli-platform: expected manylinux_2_<glibc minor>_<arch> (e.g. {DEFAULT_PLATFORM}), "
                              f"got {plat!r}")
        return cls(py, plat)

    @property
    def abi(self) -> str:
        return "cp" + self.python.replace(".", "")

    def platform_tags(self) -> list[str]:
        """Every manylinux tag a host at this glibc level and architecture runs, most specific first."""
        m = _PLATFORM.match(self.platform)
        assert m is not None  # noqa: S101 - parse() checked it
        minor, arch = int(m.group("minor")), m.group("arch")
        tags = [f"manylinux_2_{n}_{arch}" for n in range(minor, 4, -1)]
        tags += [f"{name}_{arch}" for name, (n, arches) in _LEGACY.items() if n <= minor and arch in arches]
        return tags

    def pip_args(self) -> list[str]:
        args = ["--only-binary=:all:", "--python-version", self.python, "--implementation", "cp", "--abi", self.abi]
        for tag in self.platform_tags():
            args += ["--platform", tag]
        return args


def requirements() -> list[str]:
    """airgap's runtime requirements (no extras), as its installed metadata lists them."""
    from importlib import metadata

    try:
        listed = metadata.requires("airgap") or []
    except metadata.PackageNotFoundError:
        raise ConfigError("--with-cli: airgap's installed metadata is missing (install airgap with pip)") from None
    return sorted(r for r in listed if "extra ==" not in r.replace("extra==", "extra =="))


def cache_base() -> Path:
    base = os.environ.get("AIRGAP_CACHE_DIR")
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        base = os.path.join(xdg, "airgap")
    return Path(base)


# ---- wheels --------------------------------------------------------------------------------------------------


def _pip_download(target: Target, reqs: list[str], dest: Path, wheelhouse: Path | None) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-input", "--quiet",
           "--timeout", "60", *target.pip_args(), "--dest", str(dest)]
    if wheelhouse is not None:
        cmd += ["--no-index", "--find-links", str(wheelhouse)]
    try:
        proc = subprocess.run([*cmd, *reqs], capture_output=True, text=True, timeout=PIP_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise Error(f"--with-cli: pip download did not finish in {PIP_TIMEOUT:.0f} s") from None
    if proc.returncode == 0:
        return
    if "No module named pip" in proc.stderr:
        raise ConfigError(f"--with-cli resolves the CLI's wheels with pip, and {sys.executable} has no pip "
                          "(python3 -m ensurepip, or give a wheelhouse to a Python that has it)")
    errors = [line.strip() for line in proc.stderr.splitlines() if line.strip().startswith("ERROR:")]
    why = errors[-1] if errors else (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
    where = f"the wheelhouse {wheelhouse}" if wheelhouse is not None else "the index"
    raise Error(f"--with-cli: pip could not get the wheels for CPython {target.python} on {target.platform} "
                f"from {where}: {why.removeprefix('ERROR: ')}")


def _sums(directory: Path) -> dict[str, str]:
    return {p.name: _sha256(p) for p in sorted(directory.glob("*.whl"))}


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _cached(directory: Path) -> bool:
    """True when ``directory`` holds exactly the wheels its SHA256SUMS lists, each with its digest."""
    listed: dict[str, str] = {}
    try:
        for line in (directory / "SHA256SUMS").read_text(encoding="utf-8").splitlines():
            digest, _, name = line.partition("  ")
            listed[name] = digest
    except (OSError, UnicodeDecodeError):
        return False
    return bool(listed) and _sums(directory) == listed


@contextmanager
def wheels(target: Target, reqs: list[str], *, wheelhouse: Path | None = None,
           cache: Path | None = None) -> Iterator[list[Path]]:
    """The wheels the CLI needs on ``target`` (see the module docstring), sorted by name, for the ``with`` block."""
    if wheelhouse is not None:
        if not wheelhouse.is_dir():
            raise ConfigError(f"--cli-wheels: {wheelhouse} is not a directory")
        with tempfile.TemporaryDirectory(prefix="airgap-cli-wheels-") as tmp:
            _pip_download(target, reqs, Path(tmp), wheelhouse)
            yield sorted(Path(tmp).glob("*.whl"))
        return
    key = hashlib.sha256(json.dumps([reqs, target.python, target.platform]).encode()).hexdigest()[:16]
    directory = (cache or cache_base() / "cli-wheels") / key
    if not _cached(directory):
        directory.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{key}."))
        try:
            _pip_download(target, reqs, work, None)
            (work / "SHA256SUMS").write_text("".join(f"{h}  {n}\n" for n, h in _sums(work).items()),
                                             encoding="utf-8")
            shutil.rmtree(directory, ignore_errors=True)
            try:
                os.rename(work, directory)
            except OSError:  # another pack filled it meanwhile
                if not _cached(directory):
                    raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
    yield sorted(directory.glob("*.whl"))


# ---- the archive ---------------------------------------------------------------------------------------------


def _airgap_files() -> list[tuple[str, Path]]:
    """airgap's package as it runs here: every ``.py`` file and ``py.typed`` (no bytecode, nothing else)."""
    out = []
    for path in sorted(_PACKAGE.rglob("*")):
        rel = path.relative_to(_PACKAGE.parent).as_posix()
        if path.is_file() and "__pycache__" not in rel.split("/") and (path.suffix == ".py" or path.name == "py.typed"):
            out.append((f"site/{rel}", path))
    return out


def _metadata(version: str, reqs: list[str]) -> dict[str, bytes]:
    info = f"site/airgap-{version}.dist-info"
    meta = "".join(["Metadata-Version: 2.1\nName: airgap\n", f"Version: {version}\n", "Requires-Python: >=3.11\n",
                    *(f"Requires-Dist: {r}\n" for r in reqs)])
    return {f"{info}/METADATA": meta.encode(), f"{info}/INSTALLER": b"airgap pack --with-cli\n",
            f"{info}/entry_points.txt": b"[console_scripts]\nairgap = airgap.cli:main\n"}


def write_archive(path: Path, wheel_files: list[Path], target: Target, created: int) -> dict[str, Any]:
    """Write the pyz at ``path`` (see the module docstring); returns its ``airgap-pyz.json`` document."""
    from airgap import __version__
    from airgap.bundle.manifest import canonical_json

    reqs = requirements()
    info = {"schema": SCHEMA, "airgap": __version__, "python": target.python, "platform": target.platform,
            "requirements": reqs, "created": created,
            "wheels": [{"name": w.name, "sha256": _sha256(w), "size": w.stat().st_size} for w in wheel_files]}
    names = [w.name for w in wheel_files]
    if len(set(names)) != len(names) or not all(n.endswith(".whl") and "/" not in n for n in names):
        raise ConfigError("--with-cli: the wheels must be distinct .whl files")
    entries: dict[str, bytes | Path] = {"__main__.py": (_PACKAGE / "bundle" / "cli_bootstrap.py"),
                                        "airgap-pyz.json": canonical_json(info)}
    entries.update(_metadata(__version__, reqs))
    entries.update(dict(_airgap_files()))
    entries.update({f"wheels/{w.name}": w for w in wheel_files})
    stamp = time.gmtime(max(created, ZIP_EPOCH))[:6]
    with path.open("wb") as raw:
        raw.write(SHEBANG)
        with zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_STORED) as archive:
            for name in sorted(entries):
                item = zipfile.ZipInfo(name, stamp)
                item.compress_type = zipfile.ZIP_STORED
                item.create_system = 3  # Unix: the mode below is meant
                item.external_attr = 0o100644 << 16
                source = entries[name]
                if isinstance(source, bytes):
                    archive.writestr(item, source)
                    continue
                item.file_size = source.stat().st_size
                with source.open("rb") as src, archive.open(item, "w", force_zip64=item.file_size > 2**31) as dst:
                    shutil.copyfileobj(src, dst, 1024 * 1024)
    return info


class PendingArchive:
    """A pyz written to a temp file beside ``OUT.airgap.pyz``; :meth:`commit` renames it into place with its
    ``.sha256`` (``sha256sum -c`` format) and, when signed, its ``.sig``; :meth:`abort` removes it. Nothing at
    the target is touched before the commit."""

    def __init__(self, output: str, target: Target) -> None:
        self.path = Path(output + SUFFIX)
        self.target = target
        parent = self.path.parent
        if not parent.is_dir():
            raise ConfigError(f"output directory {parent} does not exist")
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{self.path.name}.", suffix=".part")
        os.close(fd)
        self.temp: Path | None = Path(tmp)
        self.info: dict[str, Any] = {}
        self.digest = ""
        self.size = 0

    @property
    def pin(self) -> CliPin:
        """What the bundle manifest records of it."""
        from airgap.bundle.manifest import CliPin

        return CliPin(self.path.name, self.digest, self.size, str(self.info["airgap"]), self.target.python,
                      self.target.platform)

    def build(self, wheel_files: list[Path], created: int) -> None:
        assert self.temp is not None  # noqa: S101 - not committed or aborted yet
        self.info = write_archive(self.temp, wheel_files, self.target, created)
        self.digest = "sha256:" + _sha256(self.temp)
        self.size = self.temp.stat().st_size

    def commit(self, signer: Signer | None) -> list[str]:
        """Put the pyz, its ``.sha256`` and (with ``signer``) its ``.sig`` in place; a stale ``.sig`` of an earlier
        signed pack is removed when this one is unsigned. Returns the paths written."""
        from airgap.bundle.detached import sign_detached
        from airgap.fileio import write_atomic

        assert self.temp is not None  # noqa: S101 - committed once
        sig = Path(f"{self.path}.sig")
        sums = Path(f"{self.path}.sha256")
        signature = sign_detached(signer, self.temp.read_bytes()) if signer is not None else None
        os.chmod(self.temp, 0o755)  # noqa: S103 - a program: `./OUT.airgap.pyz` runs it (shebang)
        os.replace(self.temp, self.path)
        self.temp = None
        write_atomic(sums, f"{self.digest.removeprefix('sha256:')}  {self.path.name}\n".encode(), mode=0o644)
        if signature is None:
            sig.unlink(missing_ok=True)
            return [str(self.path), str(sums)]
        write_atomic(sig, signature, mode=0o644)
        return [str(self.path), str(sums), str(sig)]

    def abort(self) -> None:
        if self.temp is not None:
            self.temp.unlink(missing_ok=True)
            self.temp = None


def prepare(output: str, target: Target, created: int, *, wheelhouse: Path | None = None) -> PendingArchive:
    """Resolve the wheels and write the pyz for a bundle written to ``output`` (pending until committed)."""
    pending = PendingArchive(output, target)
    try:
        with wheels(target, requirements(), wheelhouse=wheelhouse) as found:
            pending.build(found, created)
    except BaseException:
        pending.abort()
        raise
    return pending


def check_beside(directory: Path, pin: CliPin) -> str:
    """Check the CLI a bundle pins, in the bundle's directory: ``ok``, ``missing``, or an Error naming it."""
    path = directory / pin.name
    if not path.is_file():
        return "missing"
    digest = "sha256:" + _sha256(path)
    if digest != pin.digest or path.stat().st_size != pin.size:
        from airgap.errors import IntegrityError

        raise IntegrityError(f"{path}: sha256 {digest} is not the {pin.digest} the bundle manifest pins")
    return "ok"
