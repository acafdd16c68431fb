"""The README's main job (`bash scripts/demo.sh` runs `bodycam-sync demo`) works end to end, as a process:
two parties under different signed agreements receive different footage, and out-of-scope footage
stays on the cameras."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from .dock import CLI


def _age_opens(identity: Path, obj: Path) -> bool:
    return subprocess.run(["age", "-d", "-i", str(identity), str(obj)], capture_output=True, timeout=60).returncode == 0


def test_demo_ingests_only_the_training_footage_and_each_party_gets_its_share(tmp_path: Path) -> None:
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
    assert doc["stayed_on_camera"] == {"BWC-DEMO-01": 2, "BWC-DEMO-02": 2}
    assert doc["exercises"] == {"BWC-DEMO-01": "EX-DEMO-RANGE-A", "BWC-DEMO-02": "EX-DEMO-RANGE-B"}
    # every verified recording is in the bucket, encrypted; nothing out of scope is
    bucket = tmp_path / "run" / "bucket"
    objects = sorted(p for p in bucket.rglob("*.age") if "recordings" in p.parts)
    assert len(objects) == 4
    shares = {d["party"]: d for d in doc["disclosures"]}
    platform, home_office = shares["training-platform"], shares["home-office"]
    assert platform["agreement"] == "DSA-DEMO-PLATFORM" and platform["exercises"] == ["EX-DEMO-RANGE-A"]
    assert sorted({r.split("/")[0] for r in platform["recordings"]}) == ["BWC-DEMO-01"]
    assert len(platform["recordings"]) == 2 and platform["opened_with_its_key"] == 2
    assert platform["others"] == platform["others_refused"] == 2
    assert len(home_office["recordings"]) == 4 and home_office["opened_with_its_key"] == 4
    # and with stock age: the platform's key opens camera 1's footage only, the Home Office's all four
    keys = tmp_path / "run" / "keys"
    for obj in objects:
        assert _age_opens(keys / "training-platform.agekey", obj) == (obj.parent.name == "BWC-DEMO-01"), obj
        assert _age_opens(keys / "home-office.agekey", obj), obj


def test_demo_says_which_party_received_what_and_what_stayed_on_the_camera(tmp_path: Path) -> None:
    proc = subprocess.run(
        [CLI, "demo", "--workdir", str(tmp_path / "run"), "--cameras", "2", "--recordings", "3", "--training", "1",
         "--size", "65536"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "training-platform under DSA-DEMO-PLATFORM (exercises EX-DEMO-RANGE-A; kept 90 days): 1 recording;" in out
    assert "home-office under DSA-DEMO-HOME-OFFICE (exercises EX-DEMO-RANGE-A, EX-DEMO-RANGE-B" in out
    assert "its key opens exactly these, none of the other 1" in out
    assert out.count("2 stayed on the camera, never read or uploaded") == 2
    assert "4 out-of-scope recordings stayed on the cameras: no party received any of them" in out
    assert out.rstrip().endswith("DEMO OK")


def test_the_stock_tool_lines_the_demo_prints_run_as_printed_from_a_fresh_shell(tmp_path: Path) -> None:
    """After `bash scripts/demo.sh` the CLI is .venv/bin/bodycam-sync, not on PATH: the verify line the demo
    prints ran `bodycam-sync` bare and a newcomer pasting it got 'command not found'."""
    env = {**os.environ, "PATH": os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                                                 if Path(p, "bodycam-sync") != Path(CLI))}  # fmt: skip
    assert shutil.which("bodycam-sync", path=env["PATH"]) is None, "another bodycam-sync on PATH"
    proc = subprocess.run(
        [CLI, "demo", "--workdir", str(tmp_path / "run"), "--cameras", "1", "--recordings", "2", "--training", "1",
         "--size", "4096"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.split("Check it with stock tools:\n", 1)[1].splitlines()
    commands = [line.strip() for line in lines if line.startswith("  ")]
    assert len(commands) == 4 and commands[-1].startswith(f"{CLI} verify "), commands
    for command in commands:
        ran = subprocess.run(
            ["bash", "-c", f"set -o pipefail; {command}"], capture_output=True, text=True, timeout=300, env=env
        )
        assert ran.returncode == 0, (command, ran.stdout[-2000:], ran.stderr[-2000:])
