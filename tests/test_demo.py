"""The README's main job (`bash scripts/demo.sh` runs `bodycam-sync demo`) works end to end, as a process."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from .dock import CLI


def test_demo_ingests_only_the_training_footage_and_verifies_it(tmp_path: Path) -> None:
    proc = subprocess.run(
        [CLI, "demo", "--workdir", str(tmp_path / "run"), "--json", "--cameras", "2", "--recordings", "4",
         "--training", "2", "--size", "1048576"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc["ok"] is True and doc["verify"]["verified"] is True and doc["verify"]["findings"] == []
    cameras = doc["ingest"]["cameras"]
    assert len(cameras) == 2
    for cam in cameras:
        assert cam["recordings"] == 4 and cam["in_scope"] == 2 and cam["verified"] == 2 and cam["out_of_scope"] == 2
        assert cam["errors"] == []
    # every verified recording is in the bucket, encrypted; nothing out of scope is
    objects = [p for p in (tmp_path / "run" / "bucket").rglob("*.age") if "recordings" in p.parts]
    assert len(objects) == 4
