"""Synthetic, deterministic recordings: any size without storing it.

Content is a 1 MiB pseudo-random block (SHAKE-256 of the camera serial) read at a rotation that
depends on the recording and the megabyte, so every recording and every megabyte differ while a
read of any range costs one slice. The ground truth (what an honest camera holds) is what tests and
``sim serve --truth`` compare the bucket against.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from bodycam.drivers.protocol.messages import Category

SEGMENT = 1024 * 1024


@dataclass(frozen=True, slots=True)
class SyntheticRecording:
    id: int
    name: str
    size: int
    true_start: float  # seconds since the epoch, true UTC
    true_end: float
    category: Category  # ground truth: training or operational
    tag: Category  # what the camera's metadata says
    rotation: int


class ContentSource:
    """The bytes of every recording on one camera."""

    def __init__(self, serial: str) -> None:
        block = hashlib.shake_256(b"bodycam-sim-content\x00" + serial.encode()).digest(SEGMENT)
        self._double = block + block
        self._view = memoryview(self._double)
        #: by the recording itself, not its id: a camera may reuse an id for other footage after an erase
        self._hashes: dict[SyntheticRecording, bytes] = {}

    def read(self, rec: SyntheticRecording, offset: int, length: int) -> bytes | memoryview:
        """The bytes at ``offset``; a zero-copy view when they lie in one segment."""
        length = max(0, min(length, rec.size - offset))
        parts: list[memoryview] = []
        while length > 0:
            segment, pos = divmod(offset, SEGMENT)
            take = min(length, SEGMENT - pos)
            start = (pos + rec.rotation + segment * 4099) % SEGMENT
            parts.append(self._view[start : start + take])
            offset += take
            length -= take
        if not parts:
            return b""
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def sha256(self, rec: SyntheticRecording) -> bytes:
        digest = self._hashes.get(rec)
        if digest is None:
            h = hashlib.sha256()
            for offset in range(0, rec.size, SEGMENT):
                h.update(self.read(rec, offset, SEGMENT))
            digest = self._hashes[rec] = h.digest()
        return digest


def parse_window(text: str | None, now: float) -> tuple[float, float]:
    """``START/END`` in ISO 8601 (default: the last two hours) -> epoch seconds."""
    if not text:
        return now - 7200, now - 60
    start_s, sep, end_s = text.partition("/")
    if not sep:
        raise ValueError(f"exercise window {text!r} must be START/END in ISO 8601")
    start, end = (_parse_iso(s) for s in (start_s, end_s))
    if end <= start:
        raise ValueError(f"exercise window {text!r} ends before it starts")
    return start, end


def _parse_iso(text: str) -> float:
    value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.timestamp()


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat().replace("+00:00", "Z")


def make_recordings(
    count: int, training: int, size: int, window: tuple[float, float], *, serial: str
) -> list[SyntheticRecording]:
    """``training`` recordings inside the window; the rest operational, alternately inside the window
    (tagged operational) and before it (tagged training by mistake: only the window keeps it out)."""
    if not 0 <= training <= count:
        raise ValueError("training recordings must be between 0 and the number of recordings")
    start, end = window
    span = end - start
    slots = max(count, 1) + 1
    duration = min(60.0, span / (2 * slots))
    seed = int.from_bytes(hashlib.sha256(serial.encode()).digest()[:4], "little")
    out: list[SyntheticRecording] = []
    for i in range(count):
        rid = 1000 + i
        rotation = (seed + rid * 1_000_003) % SEGMENT
        slot_start = start + span * (i + 1) / slots
        if i < training:
            category, tag, t0 = Category.TRAINING, Category.TRAINING, slot_start
        elif (i - training) % 2 == 0:
            category, tag, t0 = Category.OPERATIONAL, Category.OPERATIONAL, slot_start
        else:
            category, tag, t0 = Category.OPERATIONAL, Category.TRAINING, start - 3600 * (i + 1)
        name = dt.datetime.fromtimestamp(t0, dt.UTC).strftime(f"VID_%Y%m%d_%H%M%S_{rid}.mp4")
        out.append(SyntheticRecording(rid, name, size, t0, t0 + duration, category, tag, rotation))
    return out
