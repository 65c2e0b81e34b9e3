"""Progress on a terminal: sizes, rates and counts, redrawn in place; silent when not a TTY or --json.

The counters are always kept (the summaries use them); only drawing depends on the terminal.
"""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType
from typing import TextIO

from airgap.terminal import printable


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


class Progress:
    """Thread-safe byte/item counters with an optional redraw thread on ``stream``."""

    def __init__(self, label: str, *, total_bytes: int = 0, total_items: int = 0,
                 enabled: bool | None = None, stream: TextIO | None = None) -> None:
        self.label = printable(label)  # names a bundle or an image: untrusted text bound for the terminal
        self.total_bytes = total_bytes
        self.total_items = total_items
        self.bytes = 0
        self.items = 0
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started = time.monotonic()

    def add_bytes(self, n: int) -> None:
        with self._lock:
            self.bytes += n

    def add_item(self) -> None:
        with self._lock:
            self.items += 1

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def line(self) -> str:
        secs = max(self.elapsed(), 1e-6)
        rate = self.bytes / secs
        parts = [self.label]
        if self.total_items:
            parts.append(f"{self.items}/{self.total_items}")
        sizes = human_bytes(self.bytes) + (f" / {human_bytes(self.total_bytes)}" if self.total_bytes else "")
        parts.append(sizes)
        parts.append(f"{human_bytes(rate)}/s")
        if self.total_bytes and rate > 0 and self.bytes < self.total_bytes:
            parts.append(f"ETA {max(self.total_bytes - self.bytes, 0) / rate:.0f}s")
        return "  ".join(parts)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.stream.write("\r\x1b[2K" + self.line())
            self.stream.flush()

    def __enter__(self) -> Progress:
        self.started = time.monotonic()
        if self.enabled:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
