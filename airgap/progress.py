"""Progress of a transfer (``load``, ``pack``, ``copy``): counters that tell the truth, drawn on a terminal, and
the interruption (Ctrl-C) every transfer loop obeys.

What is counted: bytes that are DONE, never bytes merely read. ``load`` and ``copy`` count a blob's bytes when the
registry acknowledged its upload (the PUT, or the last PATCH, answered success; a layout: the blob's file is in
place), ``pack`` when they are in the bundle or its spool after their digest matched. Blobs the destination already
holds (found there, or mounted from another repository) count apart, as "already there": they complete the work
but move no byte, so they never feed the rate or the ETA. The counters are always kept (summaries use them).

Drawing: on a terminal (stderr is a TTY, not ``--json``) one line is redrawn in place with rich, imported only
then (``airgap --help``, pipes and ``--json`` never load it); elsewhere nothing is drawn. :meth:`Progress.note`
prints a permanent line (one per image when it is done, as crane and skopeo print them) above the drawn line,
or plain on stderr when nothing is drawn, unless the meter is silenced (``--json``).

Interruption: the CLI's SIGINT handler calls :func:`interrupt`: every meter stops drawing at once (its drawing
thread erases the line), later notes are dropped, and every transfer loop that calls :func:`check_interrupted`
between chunks (uploads, downloads, the pack writers) raises KeyboardInterrupt there, so worker threads stop at
their next chunk and the cleanup of partial outputs runs without waiting for whole blobs; the transport shuts
down its open sockets (:func:`on_interrupt`), so a worker waiting on a registry that does not answer wakes too.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, TextIO

from airgap.terminal import printable

_INTERRUPTED = threading.Event()
_ACTIVE: set[Progress] = set()
_ACTIVE_LOCK = threading.Lock()
_ON_INTERRUPT: list[Callable[[], None]] = []


def on_interrupt(hook: Callable[[], None]) -> None:
    """Call ``hook`` on :func:`interrupt` (from the signal handler: it must not block or take locks). The
    transport registers one that shuts down open sockets, so a worker waiting for a silent registry wakes now
    instead of at its read timeout."""
    _ON_INTERRUPT.append(hook)


def interrupt() -> None:
    """Ctrl-C: every meter stops drawing now, :func:`check_interrupted` raises from here on, and the
    :func:`on_interrupt` hooks run (safe to call from a signal handler: it sets events and shuts sockets)."""
    _INTERRUPTED.set()
    for meter in list(_ACTIVE):
        meter._stop.set()
    for hook in list(_ON_INTERRUPT):
        try:
            hook()
        except Exception:  # noqa: BLE001, S110 - an interruption must go on whatever one hook does
            pass


def interrupted() -> bool:
    return _INTERRUPTED.is_set()


def reset_interrupt() -> None:
    """Forget an earlier interruption (a command starting in a process that was interrupted before: tests)."""
    _INTERRUPTED.clear()


def check_interrupted() -> None:
    """Raise KeyboardInterrupt when the user interrupted: transfer loops call it between chunks (worker threads
    included, where no signal is delivered)."""
    if _INTERRUPTED.is_set():
        raise KeyboardInterrupt


def interruptible(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """``chunks``, checking for an interruption before each one."""
    for chunk in chunks:
        check_interrupted()
        yield chunk


def human_bytes(n: float, *, floor: bool = False) -> str:
    """``n`` bytes in decimal units (``75.0 MB``); with ``floor``, never rounded up (a counter of work done must
    not claim a tenth it has not done)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            if unit == "B":
                return f"{int(n)} B"
            return f"{int(n * 10) / 10:.1f} {unit}" if floor else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover - the loop returns


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.999)
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class Progress:
    """Thread-safe counters of one transfer, with a line redrawn on ``stream`` when ``enabled``.

    ``enabled``: None draws when ``stream`` is a terminal, False draws nothing and prints no note (``--json``),
    True always draws. ``verb`` names what the done bytes went through (``pushed``, ``copied``, ``fetched``),
    ``present_verb`` where the others were (``already there``, ``from the cache``).
    """

    RATE_WINDOW = 10.0  # seconds of history the rate (and so the ETA) is computed over
    ETA_AFTER = 3.0  # seconds of history before an ETA is shown

    def __init__(self, label: str, *, total_bytes: int = 0, total_items: int = 0,
                 enabled: bool | None = None, stream: TextIO | None = None, verb: str = "done",
                 present_verb: str = "already there") -> None:
        self.label = printable(label)  # names a bundle or an image: untrusted text bound for the terminal
        self.verb = verb
        self.present_verb = present_verb
        self.total_bytes = total_bytes
        self.total_items = total_items
        self.bytes = 0  # done: acknowledged by the destination
        self.present = 0  # already at the destination: skipped or mounted
        self.items = 0
        self.status = ""
        self.stream = stream or sys.stderr
        self.silent = enabled is False
        self.enabled = _is_terminal(self.stream) if enabled is None else enabled
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._live: Any = None
        self._samples: deque[tuple[float, int]] = deque()
        self._expected: list[tuple[str, set[str]]] = []
        self.started = time.monotonic()

    # ---- counting (any thread) ------------------------------------------------------------------------

    def add_bytes(self, n: int) -> None:
        """``n`` bytes done (acknowledged by the destination)."""
        with self._lock:
            self.bytes += n

    def add_present(self, n: int) -> None:
        """``n`` bytes the destination already holds: complete, but moved by nobody."""
        with self._lock:
            self.present += n

    def add_item(self, digest: str | None = None) -> None:
        """One blob done (pushed, present or written); ``digest`` completes the images :meth:`expect` named."""
        lines: list[str] = []
        with self._lock:
            self.items += 1
            if digest is not None and self._expected:
                for line, pending in self._expected:
                    if digest in pending:
                        pending.discard(digest)
                        if not pending:
                            lines.append(line)
                self._expected = [(line, pending) for line, pending in self._expected if pending]
        for line in lines:
            self.note(line)

    def expect(self, line: str, digests: Iterable[str]) -> None:
        """Print ``line`` (with :meth:`note`) once every blob of ``digests`` was reported by :meth:`add_item`."""
        pending = set(digests)
        if not pending:
            self.note(line)
            return
        with self._lock:
            self._expected.append((line, pending))

    def set_status(self, text: str) -> None:
        """What is happening while no byte moves (``checking what the registry holds``)."""
        self.status = printable(text)

    def note(self, line: str) -> None:
        """A permanent line: above the drawn line on a terminal, else plain on the stream; nothing when silenced
        or after an interruption. ``line`` is untrusted text (refs): printed inert."""
        if self.silent or _INTERRUPTED.is_set():
            return
        text = printable(line)
        with self._lock:
            live = self._live
            if live is not None:
                from rich.text import Text

                live.console.print(Text(text), soft_wrap=True)
                return
        try:
            self.stream.write(text + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass

    # ---- what is drawn --------------------------------------------------------------------------------

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def rate(self) -> tuple[float, float]:
        """Bytes done per second over the last :attr:`RATE_WINDOW` seconds (0 before any byte is done), and the
        seconds that estimate rests on."""
        now = time.monotonic()
        with self._lock:
            done = self.bytes
            if done and not self._samples:
                self._samples.append((self.started, 0))
            self._samples.append((now, done))
            while len(self._samples) > 2 and now - self._samples[1][0] >= self.RATE_WINDOW:
                self._samples.popleft()
            first_t, first_done = self._samples[0]
        if done == 0 or now - first_t <= 0:
            return 0.0, 0.0
        return (done - first_done) / (now - first_t), now - first_t

    def parts(self) -> list[str]:
        """The drawn line's fields, after the label and the bar: sizes, counts, rate, ETA."""
        with self._lock:
            done, present, items = self.bytes, self.present, self.items
        fields = []
        if self.total_bytes:
            fields.append(f"{human_bytes(done, floor=True)}/{human_bytes(self.total_bytes)} {self.verb}")
        else:
            fields.append(f"{human_bytes(done, floor=True)} {self.verb}")
        if present:
            fields.append(f"{human_bytes(present, floor=True)} {self.present_verb}")
        if self.total_items:
            fields.append(f"{items}/{self.total_items} blobs")
        elif items:
            fields.append(f"{items} blobs")
        rate, basis = self.rate()
        left = self.total_bytes - done - present
        if rate > 0 and (left > 0 or not self.total_bytes):
            fields.append(f"{human_bytes(rate)}/s")
            if self.total_bytes and basis >= self.ETA_AFTER:  # no guess from the first blob's ack alone
                fields.append(f"ETA {_duration(left / rate)}")
        if self.status:
            fields.append(self.status)
        return fields

    def line(self) -> str:
        """The line as plain text (what the terminal shows, without the bar)."""
        return "  ".join([self.label, *self.parts()])

    def fraction(self) -> float | None:
        if not self.total_bytes:
            return None
        with self._lock:
            return min(1.0, (self.bytes + self.present) / self.total_bytes)

    def _renderable(self) -> Any:
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True)
        grid.add_column(width=24, no_wrap=True)
        grid.add_column(no_wrap=True, overflow="ellipsis")
        fraction = self.fraction()
        bar = ProgressBar(total=1000 if fraction is not None else None,
                          completed=int((fraction or 0) * 1000), width=24)
        from rich.text import Text

        grid.add_row(Text(self.label), bar, Text(" · ".join(self.parts())))
        return grid

    def _run(self) -> None:
        live = self._live
        try:
            while not self._stop.wait(0.2):
                live.update(self._renderable(), refresh=True)
        finally:
            with self._lock:
                self._live = None
            live.stop()  # transient: the drawn line is erased

    # ---- lifetime -------------------------------------------------------------------------------------

    def __enter__(self) -> Progress:
        self.started = time.monotonic()
        if self.enabled and not _INTERRUPTED.is_set():
            from rich.console import Console
            from rich.live import Live

            console = Console(file=self.stream, highlight=False, markup=False, emoji=False)
            self._live = Live(console=console, auto_refresh=False, transient=True, redirect_stdout=False,
                              redirect_stderr=False)
            self._live.start()
            with _ACTIVE_LOCK:
                _ACTIVE.add(self)
            self._thread = threading.Thread(target=self._run, name="airgap-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with _ACTIVE_LOCK:
            _ACTIVE.discard(self)


def _is_terminal(stream: TextIO) -> bool:
    import os

    try:
        return stream.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False
