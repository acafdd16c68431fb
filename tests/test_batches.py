"""When batches are sealed (issue 8, item 11): no empty batches; custody entries wait for the next
batch with recordings, within a bound; verify's continuity check still holds across the wait."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from bodycam.agent.formats.manifest import Manifest

from .dock import Dock, iso_window, make_dock, window
from .sims import SimProcess


def manifests(bucket: Path) -> list[dict[str, Any]]:
    """The bucket's manifests, in order; each read back by the typed parser gives the very bytes the dock
    sealed (one type for the writer and verify, tests/test_manifest.py)."""
    raws = [p.read_bytes() for p in bucket.rglob("manifest.json")]
    assert all(Manifest.parse(raw).to_bytes() == raw for raw in raws)
    return sorted((json.loads(raw) for raw in raws), key=lambda d: int(d["batch_seq"]))


def verify(dock: Dock) -> subprocess.CompletedProcess[str]:
    return dock.cli("verify", "--bucket", dock.bucket_url, "--allowed-signers", str(dock.allowed_signers), "--json")


def events(bucket: Path, doc: dict[str, Any]) -> list[str]:
    lines = (bucket / doc["custody"]["key"]).read_text().splitlines()
    return [json.loads(line)["event"] for line in lines]


def test_a_docking_with_nothing_new_writes_no_batch_until_recordings_or_the_bound(tmp_path: Path) -> None:
    bucket = tmp_path / "bucket"
    dock = make_dock(tmp_path / "dock", bucket.as_uri())
    win = window()
    dock.enroll("CAM-B1", "CAM-B2")
    dock.exercise("EX-B", win, "CAM-B1", "CAM-B2")
    args = ("--recordings", "3", "--training", "2", "--size", "100000", "--exercise", iso_window(win))
    with SimProcess("usbip", "CAM-B1", *args, truth_dir=tmp_path) as first:
        rc, report = dock.ingest_json(first.address)
        assert rc == 0, report
        assert len(manifests(bucket)) == 1
        rc, report = dock.ingest_json(first.address)  # nothing new: custody only
        assert rc == 0 and sum(c["already_done"] for c in report["cameras"]) == 2, report
        assert len(manifests(bucket)) == 1, "a docking with nothing new wrote a whole (empty) batch"
        said = dock.cli("ingest", "--once", "--usbip", first.address)
        assert said.returncode == 0 and "no new batch" in said.stdout, said.stdout + said.stderr
    with SimProcess("serial", "CAM-B2", *args, truth_dir=tmp_path) as second:
        rc, report = dock.ingest_json(second.address)
        assert rc == 0, report
    first_doc, second_doc = manifests(bucket)
    assert len(second_doc["recordings"]) == 2
    # the second batch carries the custody of the empty docking too, in one unbroken chain
    assert second_doc["custody"]["first_seq"] == first_doc["custody"]["last_seq"] + 1
    assert events(bucket, second_doc).count("docked") == 3  # two dockings with nothing new, then CAM-B2
    proc = verify(dock)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # past the bound (here: at once), custody alone makes a batch
    with dock.config_path.open("a") as f:
        f.write("[batch]\ncustody_only_interval_s = 0\n")
    with SimProcess("usbip", "CAM-B1", *args, truth_dir=tmp_path) as again:
        rc, report = dock.ingest_json(again.address)
        assert rc == 0, report
    docs = manifests(bucket)
    assert len(docs) == 3 and docs[2]["recordings"] == []
    assert "docked" in events(bucket, docs[2])
    proc = verify(dock)
    assert proc.returncode == 0, proc.stdout + proc.stderr
