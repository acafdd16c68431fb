"""The virtual camera's mass-storage volume: what its firmware writes to a disk (docs/mass-storage.md).

:func:`write_volume` fills a directory (the "mount point") with ``DCIM/100BODY/<name>`` recordings
from :class:`~bodycam.drivers.virtual.scenario.ContentSource`, ``BODYCAM/device.json``, the index and
its Ed25519 signature by the camera's simulated device key. A fault makes the volume hostile:

``traversal``       an entry's ``file`` climbs out of ``DCIM/`` with ``..`` to a file outside the mount
``symlink``         an entry's file is a symbolic link to a file outside the mount
``symlink-dir``     an entry's directory is a symbolic link to a directory outside the mount
``bad-signature``   the index is signed by another key than the device key
``tampered-index``  the index is changed after signing (an operational recording retagged ``training``)
``size-lie``        the index claims 4 KiB less than a recording's file holds (hash of the whole file)
``impostor``        device.json presents another device key, and the index is signed with it

``traversal``, ``symlink`` and ``symlink-dir`` need ``outside``: a file outside the mount whose size
and SHA-256 the hostile entry claims, so a dock that followed the path would find it consistent.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bodycam.drivers.device.massstorage import (
    DATA_DIR,
    DEVICE_FILE,
    INDEX_FILE,
    LAYOUT_VERSION,
    META_DIR,
    SIGNATURE_FILE,
    index_message,
)
from bodycam.drivers.models import DEFAULT_MODEL, CameraModel
from bodycam.drivers.protocol.messages import Category
from bodycam.drivers.virtual.camera import public_bytes, sim_device_key
from bodycam.drivers.virtual.scenario import SEGMENT, ContentSource, SyntheticRecording

FOLDER = "100BODY"
FAULTS = ("traversal", "symlink", "symlink-dir", "bad-signature", "tampered-index", "size-lie", "impostor")
NEEDS_OUTSIDE = frozenset({"traversal", "symlink", "symlink-dir"})
SIZE_LIE = 4096


@dataclass(frozen=True, slots=True)
class Volume:
    """A written volume and the ground truth behind it."""

    mount: Path
    serial: str
    recordings: tuple[SyntheticRecording, ...]
    content: ContentSource
    written_at_us: int
    hostile_id: int | None  # the recording the fault concerns, if any

    def path_of(self, rec: SyntheticRecording) -> Path:
        return self.mount / DATA_DIR / FOLDER / rec.name

    def sha256(self, rec: SyntheticRecording) -> bytes:
        return self.content.sha256(rec)


def _sha256_file(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while block := f.read(SEGMENT):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def write_volume(
    mount: Path,
    serial: str,
    recordings: Sequence[SyntheticRecording],
    *,
    model: CameraModel = DEFAULT_MODEL,
    firmware: str = "1.4.0",
    clock_offset_s: float = 0.0,
    written_at: float | None = None,
    fault: str | None = None,
    outside: Path | None = None,
) -> Volume:
    """Write the volume a camera presents when docked, at camera time ``written_at + clock_offset_s``.

    ``written_at`` is the true time the firmware wrote the volume (default: now); recording times
    carry the same clock offset, as the camera's clock stamped them.
    """
    if fault is not None and fault not in FAULTS:
        raise ValueError(f"unknown mass-storage fault {fault!r}; known: {', '.join(FAULTS)}")
    if fault in NEEDS_OUTSIDE and outside is None:
        raise ValueError(f"fault {fault!r} needs a file outside the mount")
    if not recordings and fault is not None:
        raise ValueError("a fault needs at least one recording")
    content = ContentSource(serial)
    data_dir = mount / DATA_DIR / FOLDER
    meta_dir = mount / META_DIR
    data_dir.mkdir(parents=True, exist_ok=True)
    meta_dir.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate() if fault in ("impostor", "bad-signature") else sim_device_key(serial)
    presented = key if fault == "impostor" else sim_device_key(serial)
    now = time.time() if written_at is None else written_at
    written_at_us = round((now + clock_offset_s) * 1e6)
    hostile = recordings[0].id if fault is not None else None

    entries: list[dict[str, object]] = []
    for rec in recordings:
        size = rec.size
        with (data_dir / rec.name).open("wb") as f:
            for offset in range(0, rec.size, SEGMENT):
                f.write(content.read(rec, offset, SEGMENT))
        entry: dict[str, object] = {
            "id": rec.id,
            "file": f"{FOLDER}/{rec.name}",
            "size": size,
            "start_us": round((rec.true_start + clock_offset_s) * 1e6),
            "end_us": round((rec.true_end + clock_offset_s) * 1e6),
            "category": str(rec.tag),
            "sha256": content.sha256(rec).hex(),
        }
        if rec.id == hostile:
            if fault == "size-lie":
                entry["size"] = max(0, size - SIZE_LIE)
            elif fault in NEEDS_OUTSIDE and outside is not None:
                entry["size"], entry["sha256"] = _sha256_file(outside)
                if fault == "traversal":
                    entry["file"] = os.path.relpath(outside, mount / DATA_DIR)
                elif fault == "symlink":
                    (data_dir / rec.name).unlink()
                    (data_dir / rec.name).symlink_to(outside)
                else:
                    link = mount / DATA_DIR / "200LINK"
                    link.symlink_to(outside.parent, target_is_directory=True)
                    entry["file"] = f"200LINK/{outside.name}"
        entries.append(entry)

    device = {
        "format": LAYOUT_VERSION,
        "model": model.name,
        "serial": serial,
        "firmware": firmware,
        "vid": model.vid,
        "pid": model.pid,
        "device_key": public_bytes(presented).hex(),
        "written_at_us": written_at_us,
    }
    index = {"format": LAYOUT_VERSION, "serial": serial, "written_at_us": written_at_us, "recordings": entries}
    index_bytes = (json.dumps(index, indent=1) + "\n").encode()
    signature = key.sign(index_message(serial, index_bytes))
    if fault == "tampered-index":
        operational = [e for e in entries if e["category"] == str(Category.OPERATIONAL)]
        target = operational[0] if operational else entries[0]
        target["category"] = str(Category.TRAINING)
        hostile = int(str(target["id"]))
        index_bytes = (json.dumps(index, indent=1) + "\n").encode()
    (meta_dir / DEVICE_FILE).write_text(json.dumps(device, indent=1) + "\n", encoding="utf-8")
    (meta_dir / INDEX_FILE).write_bytes(index_bytes)
    (meta_dir / SIGNATURE_FILE).write_bytes(signature)
    return Volume(mount, serial, tuple(recordings), content, written_at_us, hostile)


def sign_index(mount: Path, serial: str, index_bytes: bytes) -> None:
    """Replace the index with ``index_bytes`` and sign it with the simulated device key (for tests that
    need a well-signed but malformed index)."""
    (mount / META_DIR / INDEX_FILE).write_bytes(index_bytes)
    (mount / META_DIR / SIGNATURE_FILE).write_bytes(sim_device_key(serial).sign(index_message(serial, index_bytes)))
