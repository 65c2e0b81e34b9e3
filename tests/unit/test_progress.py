"""The transfer meter: what it counts, what it prints, and how an interruption reaches it (airgap/progress.py)."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Iterator

import pytest

from airgap import progress
from airgap.progress import Progress, human_bytes


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    progress.reset_interrupt()
    yield
    progress.reset_interrupt()


def test_sizes_never_round_up_what_is_done() -> None:
    assert human_bytes(1_999_999, floor=True) == "1.9 MB"
    assert human_bytes(1_999_999) == "2.0 MB"
    assert human_bytes(999) == "999 B"
    assert human_bytes(12_345_678_901, floor=True) == "12.3 GB"


def test_done_and_present_bytes_are_counted_apart() -> None:
    meter = Progress("load demo", total_bytes=10_000_000, total_items=4, stream=io.StringIO(), verb="pushed")
    meter.add_present(4_000_000)
    meter.add_item()
    assert meter.line().startswith("load demo  0 B/10.0 MB pushed  4.0 MB already there  1/4 blobs")
    assert "ETA" not in meter.line()  # nothing acknowledged: no rate, no guess
    meter.add_bytes(3_000_000)
    assert "3.0 MB/10.0 MB pushed" in meter.line()
    assert meter.fraction() == pytest.approx(0.7)


def test_an_eta_needs_seconds_of_history(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    meter = Progress("x", total_bytes=10_000_000, stream=io.StringIO())
    meter.started = 100.0
    now[0] = 100.5
    meter.add_bytes(1_000_000)
    assert "ETA" not in meter.line()  # one blob acknowledged after half a second says little
    now[0] = 104.0
    meter.add_bytes(1_000_000)
    line = meter.line()
    assert "500.0 kB/s" in line and "ETA 16s" in line  # 2 MB in 4 s, 8 MB to go


def test_an_image_line_is_printed_once_all_its_blobs_are_done() -> None:
    out = io.StringIO()
    meter = Progress("pack", stream=out, enabled=None)  # a StringIO is no terminal: lines only
    meter.expect("packed a", ["sha256:1", "sha256:2"])
    meter.expect("packed b", ["sha256:2"])
    meter.add_item("sha256:2")
    assert out.getvalue() == "packed b\n"
    meter.add_item("sha256:1")
    assert out.getvalue() == "packed b\npacked a\n"


def test_notes_are_inert_and_silenced_by_json_or_an_interruption() -> None:
    out = io.StringIO()
    Progress("x", stream=out).note("pushed evil\x1b[2J:1.0")
    assert out.getvalue() == "pushed evil\\x1b[2J:1.0\n"
    silent = io.StringIO()
    Progress("x", stream=silent, enabled=False).note("pushed a")
    assert silent.getvalue() == ""
    progress.interrupt()
    Progress("x", stream=silent).note("pushed b")
    assert silent.getvalue() == ""


def test_transfer_loops_stop_at_their_next_chunk_once_interrupted() -> None:
    chunks = progress.interruptible(iter([b"a", b"b", b"c"]))
    assert next(chunks) == b"a"
    progress.interrupt()
    with pytest.raises(KeyboardInterrupt):
        next(chunks)


def test_rich_is_imported_only_to_draw_on_a_terminal() -> None:
    code = (
        "import io, sys\n"
        "from airgap.progress import Progress\n"
        "with Progress('x', total_bytes=10) as meter:\n"  # stderr is a pipe here
        "    meter.add_bytes(5); meter.note('pushed x'); meter.line()\n"
        "with Progress('x', enabled=False) as meter:\n"
        "    meter.add_bytes(5)\n"
        "print('rich' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False" and out.stderr == "pushed x\n"
