"""Files written whole or not at all: a temp file beside the target, then ``os.replace``.

A reader (or a crash) sees the old file or the complete new one, never a part; on any failure, including
one raised while the chunks are produced (a digest mismatch, a cancelled download), the temp file is
removed and the target is left as it was. Temp names start with a dot, so directory scans skip them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


def write_atomic(path: Path, data: bytes | Iterable[bytes], *, mode: int | None = None) -> None:
    """Write ``data`` (bytes, or an iterable of chunks) to ``path`` atomically. ``mode`` sets the file's
    permission bits (otherwise mkstemp's 0600). The parent directory must exist."""
    import tempfile  # here, not at the top: tempfile and shutil cost ~3 ms on every command's start-up path

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in (data,) if isinstance(data, bytes) else data:
                f.write(chunk)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
