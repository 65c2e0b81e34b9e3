"""The HTML audit report renders in headless Chromium: a real audit's page, screenshotted, is not blank.

The PNG is decoded here with the standard library only (zlib + the five PNG scanline filters), so the test
needs nothing beyond Debian's ``chromium`` (installed by scripts/install-peers.sh).
"""

from __future__ import annotations

import struct
import subprocess
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from conftest import require_tool
from support.signing import write_keypair
from support.trustdirs import cip, key_authority, write_trust

from airgap.cli import cli
from airgap.oci.registry import RegistryClient
from airgap.signing.sign import sign_image

WIDTH, HEIGHT = 1200, 900
RED, GREEN = (0xCF, 0x22, 0x2E), (0x1A, 0x7F, 0x37)  # the FAIL and PASS colours of airgap.audit.render


def decode_png(data: bytes) -> tuple[int, int, list[tuple[int, ...]]]:
    """(width, height, pixels as RGB tuples) of an 8-bit RGB or RGBA, non-interlaced PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    assert header is not None, "no IHDR"
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0, f"unsupported PNG {header}"
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    prev = bytearray(stride)
    pixels: list[tuple[int, ...]] = []
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        if kind == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif kind == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, prev, strict=True))
        elif kind == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif kind == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = prev[i], prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        else:
            assert kind == 0, f"bad filter {kind}"
        pixels += [tuple(line[i:i + 3]) for i in range(0, stride, bpp)]
        prev = line
    return width, height, pixels


def near(pixel: tuple[int, ...], colour: tuple[int, int, int], tolerance: int = 10) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour, strict=True))


def test_html_report_renders_in_headless_chromium(registry: Any, make_image: Any, tmp_path: Path) -> None:
    chromium = require_tool("chromium")
    release = write_keypair(tmp_path / "keys", "release")
    make_image(registry, "team/app", "1.0")
    make_image(registry, "team/unsigned", "1")
    sign_image(f"{registry.host}/team/app:1.0", release.signer, client=RegistryClient())
    trust = write_trust(tmp_path / "trust", keys={"release": release.public_pem},
                        policy=cip("team", key_authority("release"), f"{registry.host}/team/**"))
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["audit", "--registry", registry.host, "--trust", str(trust), "-o", str(out),
                                      "--exit-zero"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    shot = tmp_path / "report.png"
    proc = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         f"--screenshot={shot}", f"--window-size={WIDTH},{HEIGHT}", (out / "audit.html").resolve().as_uri()],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and shot.exists(), proc.stderr[-2000:]
    width, height, pixels = decode_png(shot.read_bytes())
    assert (width, height) == (WIDTH, HEIGHT)
    colours = Counter(pixels)
    background, share = colours.most_common(1)[0]
    assert share < 0.95 * len(pixels), f"page is {share / len(pixels):.0%} {background}: blank"
    assert len(colours) > 50, f"only {len(colours)} colours: nothing rendered"
    # the FAILED banner (red) and the PASS card/badge (green) were painted, not just text
    assert sum(n for c, n in colours.items() if near(c, RED)) > 5000
    assert sum(n for c, n in colours.items() if near(c, GREEN)) > 1000
