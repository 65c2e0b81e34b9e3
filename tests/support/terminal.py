"""Run a real ``airgap`` process on a pseudo-terminal, as a user at a terminal runs it: stdin and stderr are the
pty (its controlling terminal, in a session of its own), stdout a file. Everything the process draws on the
terminal is kept with the moment it was read, so tests parse what a user would have seen, frame by frame (no
screenshot), and ``ctrl_c()`` types ^C: the terminal driver sends SIGINT to the foreground process group, exactly
as a keyboard does.
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# The child becomes a session leader, takes the pty (its stdin) as its controlling terminal, then execs airgap:
# no preexec_fn (unsafe in a test process full of threads).
_LAUNCH = ("import fcntl, os, sys, termios; os.setsid(); fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
           "os.execv(sys.executable, [sys.executable, '-m', 'airgap.cli', *sys.argv[1:]])")
_ESCAPE = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


@dataclass
class Terminal:
    """An ``airgap`` subprocess on a pty. ``chunks`` holds (time.monotonic() when read, bytes) of the terminal."""

    process: subprocess.Popen[bytes]
    master: int
    stdout_path: Path
    chunks: list[tuple[float, bytes]] = field(default_factory=list)

    @classmethod
    def start(cls, args: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
              stdout: Path | None, columns: int = 200, rows: int = 40) -> Terminal:
        """``stdout``: a file, or None for the terminal too (as when nothing is redirected)."""
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        out_path = stdout or Path(os.devnull)
        with out_path.open("ab" if stdout is None else "wb") as out:
            process = subprocess.Popen([sys.executable, "-c", _LAUNCH, *args], stdin=slave,
                                       stdout=out if stdout is not None else slave, stderr=slave, env=env, cwd=cwd,
                                       close_fds=True)
        os.close(slave)
        return cls(process, master, out_path)

    def pump(self, timeout: float = 0.05) -> bool:
        """Read what the process drew within ``timeout``; False once the terminal is closed."""
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: every writer closed the pty
            return False
        if not data:
            return False
        self.chunks.append((time.monotonic(), data))
        return True

    def until(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Pump until ``condition()`` holds (True) or ``timeout`` seconds pass (False)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if condition():
                return True
            if not self.pump() and self.process.poll() is not None:
                return condition()
        return condition()

    def ctrl_c(self) -> float:
        """Type ^C; returns when."""
        os.write(self.master, b"\x03")
        return time.monotonic()

    def terminate(self) -> float:
        """Send SIGTERM (``kill``, a CI job's timeout, systemd stopping a unit); returns when."""
        self.process.send_signal(signal.SIGTERM)
        return time.monotonic()

    def wait(self, timeout: float = 60) -> int:
        """Wait for the exit, reading the terminal to its end; returns the exit status (130 after SIGINT)."""
        end = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < end:
            self.pump()
        while self.pump(0.05):
            if not select.select([self.master], [], [], 0)[0]:
                break
        os.close(self.master)
        return self.process.wait(timeout=max(0.1, end - time.monotonic()))

    @property
    def raw(self) -> bytes:
        return b"".join(data for _, data in self.chunks)

    @property
    def text(self) -> str:
        """What was drawn, escape sequences removed."""
        return plain(self.raw)

    def frames(self) -> list[tuple[float, str]]:
        """Every line drawn (split at carriage returns and newlines), with the moment its bytes were read."""
        out = []
        for at, data in self.chunks:
            for line in re.split(r"[\r\n]+", plain(data)):
                if line.strip():
                    out.append((at, line))
        return out

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text()


def plain(data: bytes) -> str:
    return _ESCAPE.sub(b"", data).decode("utf-8", "replace")
