"""Headless Chromium (Debian's ``chromium``) for the report's tests: load a local HTML file with the
network cut, return its DOM after scripts ran, what it wrote to the console, and a screenshot.

No Playwright and no DevTools client: Chromium's own ``--dump-dom`` (the DOM after the load event and
``--virtual-time-budget`` of script time) and ``--screenshot``; console messages and uncaught errors
are Chromium's ``CONSOLE`` log lines on stderr (``--enable-logging=stderr``). A page that draws
correctly logs nothing, so a test asserts there is no such line at all.

The PNG decoder is the standard library's zlib and PNG's five row filters (8-bit RGB/RGBA, what
Chromium writes): enough to measure that a screenshot is not blank.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

CHROMIUM = "chromium"
INSTALL_HINT = "headless Chromium is needed: apt-get install -y chromium"
# The network is cut: no name resolves and no proxy is reachable; the page's own CSP forbids loads too.
_OFFLINE = [
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--proxy-server=socks5://127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
]
_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--hide-scrollbars",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--mute-audio",
    "--enable-logging=stderr",
    "--v=0",
    *_OFFLINE,
]
_CONSOLE = re.compile(r":CONSOLE[:(\]].*")


def chromium() -> str:
    path = shutil.which(CHROMIUM)
    assert path, INSTALL_HINT
    return path


@dataclass
class Loaded:
    dom: str
    console: list[str]  # Chromium's CONSOLE lines: messages, uncaught errors, CSP refusals


def _run(args: list[str], *, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="report-chromium-") as profile:
        return subprocess.run(
            [chromium(), *_FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def load(page: Path, *, budget_ms: int = 3000) -> Loaded:
    """The DOM of ``page`` (file://) after its scripts ran for ``budget_ms`` of virtual time."""
    done = _run([f"--virtual-time-budget={budget_ms}", "--dump-dom", page.resolve().as_uri()])
    assert done.returncode == 0, done.stderr[-2000:]
    return Loaded(done.stdout, [m.group(0) for m in _CONSOLE.finditer(done.stderr)])


def screenshot(page: Path, out: Path, *, width: int = 1400, height: int = 3000, budget_ms: int = 3000) -> Path:
    done = _run(
        [
            f"--virtual-time-budget={budget_ms}",
            f"--window-size={width},{height}",
            f"--screenshot={out}",
            page.resolve().as_uri(),
        ]
    )
    assert done.returncode == 0 and out.is_file(), done.stderr[-2000:]
    return out


@dataclass
class Image:
    width: int
    height: int
    channels: int
    rows: list[bytes]  # unfiltered scanlines, ``channels`` bytes per pixel

    def pixel(self, x: int, y: int) -> tuple[int, ...]:
        at = x * self.channels
        return tuple(self.rows[y][at : at + 3])


def read_png(path: Path) -> Image:
    """An 8-bit RGB or RGBA, non-interlaced PNG (Chromium's screenshots)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, b""
    width = height = channels = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and interlace == 0, "only 8-bit RGB(A), not interlaced"
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        row_filter, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b = previous[i]
            c = previous[i - channels] if i >= channels else 0
            if row_filter == 1:
                line[i] = (line[i] + a) & 0xFF
            elif row_filter == 2:
                line[i] = (line[i] + b) & 0xFF
            elif row_filter == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif row_filter == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(line))
        previous = line
    return Image(width, height, channels, rows)


def colour_stats(image: Image, step: int = 4) -> tuple[int, float]:
    """Distinct colours and the variance of brightness over every ``step``-th pixel of every ``step``-th row."""
    colours: set[tuple[int, ...]] = set()
    values: list[int] = []
    for y in range(0, image.height, step):
        for x in range(0, image.width, step):
            pixel = image.pixel(x, y)
            colours.add(pixel)
            values.append(sum(pixel))
    mean = sum(values) / len(values)
    return len(colours), sum((v - mean) ** 2 for v in values) / len(values)
