"""Terminal progress for ``ingest`` and ``demo``: per recording and overall bytes, rate and ETA.

Quiet when stderr is not a terminal (journald, CI, pipes), so logs never fill with redraws.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, TextIO


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _fmt_eta(seconds: float) -> str:
    if seconds <= 0 or seconds > 360000:
        return "--:--"
    minutes, sec = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{sec:02d}" if hours else f"{minutes:02d}:{sec:02d}"


def bar(fraction: float, width: int = 24) -> str:
    filled = int(max(0.0, min(1.0, fraction)) * width)
    return "#" * filled + "-" * (width - filled)


class ProgressView:
    """Receives pipeline events (``Agent.session(progress=...)``) and redraws at most 10 times a second."""

    def __init__(self, stream: TextIO | None = None, *, enabled: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._lock = threading.Lock()
        self._total = 0
        self._done_prior: dict[tuple[str, int], int] = {}
        self._resumed: dict[tuple[str, int], int] = {}  # bytes already in the bucket: shown done, not in the rate
        self._current: dict[str, tuple[int, int, int]] = {}  # serial -> (recording, done, size)
        self._started = time.monotonic()
        self._last_draw = 0.0

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        with self._lock:
            if kind == "camera_listed":
                self._total += sum(size for _rid, size in data["recordings"])
            elif kind == "recording_start":
                self._resumed[(data["serial"], data["recording"])] = int(data.get("resumed_bytes", 0))
            elif kind == "recording_bytes":
                self._current[data["serial"]] = (data["recording"], data["done"], data["size"])
                self._done_prior[(data["serial"], data["recording"])] = data["done"]
            elif kind == "recording_done":
                self._current.pop(data["serial"], None)
            elif kind == "camera_done":
                self._current.pop(data.get("serial", ""), None)
            self._draw(force=kind != "recording_bytes")

    def _draw(self, *, force: bool) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        done = sum(self._done_prior.values())
        moved = sum(max(0, d - self._resumed.get(k, 0)) for k, d in self._done_prior.items())
        elapsed = max(now - self._started, 1e-6)
        rate = moved / elapsed
        eta = (self._total - done) / rate if rate > 0 else 0
        speed = f" {_fmt_bytes(rate)}/s ETA {_fmt_eta(eta)}" if rate > 0 else ""
        lines = [
            f"overall [{bar(done / self._total if self._total else 0)}] {_fmt_bytes(done)}/{_fmt_bytes(self._total)}"
            + speed
        ]
        for serial, (rid, rdone, size) in sorted(self._current.items()):
            lines.append(
                f"  {serial} #{rid} [{bar(rdone / size if size else 1)}] {_fmt_bytes(rdone)}/{_fmt_bytes(size)}"
            )
        self.stream.write("\r\x1b[J" + "\n".join(lines) + (f"\x1b[{len(lines) - 1}A" if len(lines) > 1 else ""))
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._current.clear()
            self._draw(force=True)
            self.stream.write("\n")
            self.stream.flush()


class VerifyProgress:
    """``verify``'s one line on a terminal's stderr: bytes read, objects listed, rate; redrawn at most
    10 times a second, shown at once (a large bucket takes seconds before the first result), cleared
    at the end. Quiet when stderr is not a terminal, and never on stdout (``--json`` stays clean)."""

    def __init__(self, stream: TextIO | None = None, *, enabled: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._last_draw = 0.0
        self._state = (0, 0)
        if self.enabled:
            self._write("verify: listing the bucket...")

    def __call__(self, done: int, objects: int) -> None:
        with self._lock:
            self._state = (done, objects)
            if self.enabled and time.monotonic() - self._last_draw >= 0.1:
                self._draw()

    def _draw(self) -> None:
        now = self._last_draw = time.monotonic()
        done, objects = self._state
        rate = done / max(now - self._started, 1e-6)
        self._write(f"verify: {_fmt_bytes(done)} read, {objects} objects listed, {_fmt_bytes(rate)}/s")

    def _write(self, line: str) -> None:
        self.stream.write("\r\x1b[K" + line)
        self.stream.flush()

    def close(self) -> None:
        """Leave the final count on the terminal (what was read in all), then end the line."""
        if self.enabled:
            with self._lock:
                self._draw()
            self.stream.write("\n")
            self.stream.flush()
