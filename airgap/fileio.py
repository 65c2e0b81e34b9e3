"""Files written whole or not at all: a temp file beside the target, then ``os.replace``; never over what is not
a regular file.

A reader (or a crash) sees the old file or the complete new one, never a part; on any failure, including
one raised while the chunks are produced (a digest mismatch, a cancelled download), the temp file is
removed and the target is left as it was. Temp names start with a dot, so directory scans skip them.

An output that already exists and is not a regular file (a character or block device such as ``/dev/null``, a
tape or a USB stick, or a FIFO) is written THROUGH, never replaced: renaming a temp file over ``/dev/null`` as
root turns the machine's null device into a root-only regular file. There is nothing to make atomic there: the
bytes go where the user pointed, in order, and a failure midway leaves what was written.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from airgap.errors import ConfigError, Error


def is_special(path: Path) -> bool:
    """True when ``path`` exists and is neither a regular file nor a directory (a device, a FIFO, a socket):
    something to write through, never to rename over. Symlinks are followed (``/dev/stdout``)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _chunks(data: bytes | Iterable[bytes]) -> Iterable[bytes]:
    return (data,) if isinstance(data, bytes) else data


def read_capped(path: str | os.PathLike[str], limit: int, what: str, *,
                too_large: type[Error] = ConfigError) -> bytes:
    """The bytes of the file at ``path``, never reading more than ``limit`` + 1 of them: a larger file is refused
    with ``too_large`` (``WHAT PATH: more than LIMIT bytes``), one that cannot be read is a ConfigError."""
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise too_large(f"{what} {path}: more than {limit} bytes")
    return data


def write_atomic(path: Path, data: bytes | Iterable[bytes], *, mode: int | None = None) -> None:
    """Write ``data`` (bytes, or an iterable of chunks) to ``path`` atomically. ``mode`` sets the file's
    permission bits (otherwise mkstemp's 0600). The parent directory must exist. A device or FIFO at ``path``
    is written through (see the module docstring); a directory there is a ConfigError."""
    import tempfile  # here, not at the top: tempfile and shutil cost ~3 ms on every command's start-up path

    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path} is a directory")
    if is_special(path):
        with open(path, "wb", buffering=0) as out:
            for chunk in _chunks(data):
                out.write(chunk)
        return
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in _chunks(data):
                f.write(chunk)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_files(directory: Path, files: dict[str, bytes], *, mode: int | None = None) -> None:
    """Write several files of ``directory`` as one change, as far as a file system allows: every file is written
    to a temp file first, and only when all are complete are they renamed over their targets, one after the
    other. A failure or an interruption while writing leaves every target as it was and no temp file behind.
    A device or FIFO among the targets is written through, last."""
    import tempfile

    staged: list[tuple[Path, Path]] = []
    through: list[tuple[Path, bytes]] = []
    try:
        for name, data in files.items():
            target = directory / name
            if target.is_dir():
                raise ConfigError(f"{target} is a directory")
            if is_special(target):
                through.append((target, data))
                continue
            fd, temp = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.", suffix=".part")
            staged.append((Path(temp), target))
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            if mode is not None:
                os.chmod(temp, mode)
        while staged:
            os.replace(*staged[0])
            staged.pop(0)
    except BaseException:
        for staged_temp, _target in staged:
            staged_temp.unlink(missing_ok=True)
        raise
    for target, data in through:
        write_atomic(target, data)


class Output:
    """A streamed output file: a temp file beside ``path`` renamed over it by :meth:`commit` (``atomic``), or
    ``path`` itself when it is a device or FIFO (written through, see the module docstring).

    ``file`` is open for binary writing; :meth:`abort` closes it and removes the temp file (a device keeps what
    was written). A regular temp file is also seekable, so a writer may fill it at offsets."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        target = Path(path)
        if target.is_dir():
            raise ConfigError(f"output {target} is a directory")
        self.path = target
        self.atomic = not is_special(target)
        self.temp: Path | None = None
        if self.atomic:
            import tempfile

            parent = target.parent if str(target.parent) else Path(".")
            if not parent.is_dir():
                raise ConfigError(f"output directory {parent} does not exist")
            fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{target.name}.", suffix=".part")
            self.temp = Path(tmp)
            self.file: IO[bytes] = os.fdopen(fd, "wb")
        else:
            try:
                self.file = open(target, "wb")  # closed by commit/abort
            except OSError as exc:
                raise ConfigError(f"cannot write to {target}: {exc.strerror or exc}") from None

    def commit(self, mode: int | None = None) -> None:
        """Close and (for a regular file) rename the temp file over the target."""
        self.file.close()
        if self.temp is not None:
            if mode is not None:
                os.chmod(self.temp, mode)
            os.replace(self.temp, self.path)
            self.temp = None

    def abort(self) -> None:
        """Close and remove the temp file; the target is left as it was (a device keeps what it got)."""
        try:
            self.file.close()
        finally:
            if self.temp is not None:
                self.temp.unlink(missing_ok=True)
                self.temp = None
