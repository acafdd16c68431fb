"""A dock sharing under two agreements with different data items (issue 12 items 5 and 6).

Parties: FULL-PARTY under DSA-FULL (every data item, exercise EX-1) and LIMITED-PARTY under DSA-LIM
(footage and times only, exercises EX-1 and EX-2). Camera CAM-D1 records EX-1 (both parties receive it),
CAM-D2 records EX-2 (only LIMITED-PARTY). Real parts: signed agreements, virtual cameras over USB/IP,
ingest into a local bucket, stock age for the parties' keys.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from bodycam.agent.formats import agreements as ag

from .agreement_setup import draft, make_force, share_under_agreements
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


def build(root: Path) -> Shared:
    bucket = root / "bucket"
    dock = make_dock(root / "dock", bucket.as_uri())
    force = make_force(root, (FULL, LIMITED, "archive"))
    agreements = root / "agreements"
    share_under_agreements(dock, force, agreements)
    drafts = root / "drafts"
    drafts.mkdir()
    for ident, exercises, party, items in (
        ("DSA-FULL", ["EX-1"], FULL, list(ag.DATA_ITEMS)),
        ("DSA-LIM", ["EX-1", "EX-2"], LIMITED, ["footage", "times"]),
    ):
        path = draft(
            drafts / f"{ident}.json", ident, exercises, {party: force.recipients[party]}, time.time() + 86400,
            items=items, retention_days=31, lawful_basis="DPA 2018 s.35(2)(b)",
        )  # fmt: skip
        signed = dock.cli(
            "agreement", "sign", str(path), "--key", str(force.keys / "controller"), "--out", str(agreements)
        )
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
    return Shared(dock, bucket, force.identities, agreements, truth)
