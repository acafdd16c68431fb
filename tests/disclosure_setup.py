"""A dock sharing under two agreements with different data items (issue 12 items 5 and 6).

Parties: FULL-PARTY under DSA-FULL (every data item, exercise EX-1) and LIMITED-PARTY under DSA-LIM
(footage and times only, exercises EX-1 and EX-2). Camera CAM-D1 records EX-1 (both parties receive it),
CAM-D2 records EX-2 (only LIMITED-PARTY). Real parts: signed agreements, virtual cameras over USB/IP,
ingest into a local bucket, stock age for the parties' keys.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bodycam.agent.formats import agreements as ag
from bodycam.agent.formats.agecrypt import generate_identity
from bodycam.agent.formats.sshsig import generate_key

from .dock import Dock, iso_window, make_dock, window
from .sims import SimProcess

FULL, LIMITED = "FULL-PARTY", "LIMITED-PARTY"
CAMERAS = {"CAM-D1": "EX-1", "CAM-D2": "EX-2"}
SITES = {"EX-1": "Range 3, Hendon", "EX-2": "Lydd Ranges"}


@dataclass
class Shared:
    dock: Dock
    bucket: Path
    identities: dict[str, Path]  # party (and "archive") -> age identity file
    agreements: Path
    truth: dict[str, dict[int, str]]  # camera -> recording id -> plaintext SHA-256


def _draft(path: Path, ident: str, exercises: list[str], party: str, recipient: str, items: list[str]) -> Path:
    doc: dict[str, Any] = {
        "format": ag.FORMAT,
        "id": ident,
        "version": 1,
        "controller": {"name": "Example Constabulary"},
        "parties": [
            {
                "name": party,
                "role": "processor",
                "lawful_basis": "DPA 2018 s.35(2)(b)",
                "recipients": [recipient],
                "retention_days": 31,
            }
        ],
        "purpose": "firearms-training review",
        "data_items": items,
        "scope": {"exercises": exercises},
        "validity": {"not_before": ag._iso(time.time() - 86400), "not_after": ag._iso(time.time() + 86400)},
        "review_date": "2030-01-01",
        "dpia": "DPIA-7",
    }
    path.write_text(json.dumps(doc))
    return path


def age_decrypt(identity: Path, obj: Path) -> bytes | None:
    proc = subprocess.run(["age", "-d", "-i", str(identity), str(obj)], capture_output=True, timeout=60)
    return proc.stdout if proc.returncode == 0 else None


def build(root: Path) -> Shared:
    bucket = root / "bucket"
    dock = make_dock(root / "dock", bucket.as_uri())
    keys = root / "force"
    keys.mkdir()
    controller_pub = generate_key(keys / "controller", "force")
    identities: dict[str, Path] = {}
    recipients: dict[str, str] = {}
    for name in (FULL, LIMITED, "archive"):
        secret, recipients[name] = generate_identity()
        identities[name] = keys / f"{name}.agekey"
        identities[name].write_text(secret + "\n")
    agreements = root / "agreements"
    with dock.config_path.open("a") as f:
        f.write(
            f'[agreements]\ncontroller_keys = ["{controller_pub.strip()}"]\n'
            f'dir = "{agreements}"\narchive = "{recipients["archive"]}"\n'
        )
    drafts = root / "drafts"
    drafts.mkdir()
    for ident, exercises, party, items in (
        ("DSA-FULL", ["EX-1"], FULL, list(ag.DATA_ITEMS)),
        ("DSA-LIM", ["EX-1", "EX-2"], LIMITED, ["footage", "times"]),
    ):
        draft = _draft(drafts / f"{ident}.json", ident, exercises, party, recipients[party], items)
        signed = dock.cli("agreement", "sign", str(draft), "--key", str(keys / "controller"), "--out", str(agreements))
        assert signed.returncode == 0, signed.stderr
    win = window()
    dock.enroll(*CAMERAS)  # allocates OFFICER-<serial> to each camera
    for serial, exercise in CAMERAS.items():
        dock.exercise(exercise, win, serial, site=SITES[exercise])
    args = ("--recordings", "2", "--training", "2", "--size", str(40_000), "--exercise", iso_window(win))
    sims = [SimProcess("usbip", serial, *args, truth_dir=root) for serial in CAMERAS]
    try:
        rc, report = dock.ingest_json(*(s.address for s in sims))
        truth = {serial: {int(k): v for k, v in s.training().items()} for serial, s in zip(CAMERAS, sims, strict=True)}
    finally:
        for s in sims:
            s.stop()
    assert rc == 0, report
    return Shared(dock, bucket, identities, agreements, truth)
