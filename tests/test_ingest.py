"""The evidence pipeline against real parts: SeaweedFS, cameras over USB/IP and a pty, stock age and
ssh-keygen. Tests that try to lose data: kill -9, unplug, S3 outage, full disk, lying cameras."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from .dock import CLI, Dock, iso_window, make_dock, window
from .faultproxy import FaultProxy
from .s3server import SeaweedFS
from .sims import SimProcess

MiB = 1024 * 1024
needs_age = pytest.mark.skipif(shutil.which("age") is None, reason="stock age CLI not installed")
needs_ssh_keygen = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen not installed")


def s3_client(seaweedfs: SeaweedFS) -> Any:
    """A raw client with the server's own credentials: boto3's default session caches the first credentials
    it resolves in a process, which another test's environment may have set (pytest-xdist runs files
    one after the other in a worker)."""
    return seaweedfs.client()


def recording_objects(client: Any, bucket: str, prefix: str) -> dict[tuple[str, int], list[str]]:
    """(camera serial, recording id) -> every object key holding it, across all batches."""
    found: dict[tuple[str, int], list[str]] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            parts = obj["Key"].split("/")
            if "recordings" in parts:
                i = parts.index("recordings")
                found.setdefault((parts[i + 1], int(parts[i + 2].removesuffix(".age"))), []).append(obj["Key"])
    return found


def open_uploads(client: Any, bucket: str) -> list[str]:
    return [u["Key"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


def verify_cli(dock: Dock, *extra: str) -> subprocess.CompletedProcess[str]:
    args = ["verify", "--bucket", dock.bucket_url, "--allowed-signers", str(dock.allowed_signers), *extra]
    if dock.endpoint_url:
        args += ["--endpoint-url", dock.endpoint_url]
    return dock.cli(*args)


@pytest.fixture
def s3_dock(tmp_path: Path, seaweedfs: SeaweedFS, s3_bucket: str) -> Dock:
    return make_dock(tmp_path / "dock", f"s3://{s3_bucket}/training", seaweedfs.endpoint_url)


@needs_age
@needs_ssh_keygen
def test_only_training_footage_arrives_encrypted_signed_and_verifiable(
    tmp_path: Path, seaweedfs: SeaweedFS, s3_bucket: str, s3_dock: Dock
) -> None:
    win = window()
    sims = [
        SimProcess("usbip", "CAM-U1", "--recordings", "5", "--training", "3", "--size", str(3 * MiB + 5),
                   "--exercise", iso_window(win), "--clock-drift", "-45", truth_dir=tmp_path),
        SimProcess("serial", "CAM-S1", "--recordings", "4", "--training", "2", "--size", str(MiB + 77),
                   "--exercise", iso_window(win), "--clock-drift", "30", truth_dir=tmp_path),
    ]  # fmt: skip
    try:
        s3_dock.enroll("CAM-U1", "CAM-S1")
        s3_dock.exercise("EX-1", win, "CAM-U1", "CAM-S1")
        rc, report = s3_dock.ingest_json(*(s.address for s in sims))
        assert rc == 0, report
        assert report["ok"] and sum(c["verified"] for c in report["cameras"]) == 5
        client = s3_client(seaweedfs)
        objects = recording_objects(client, s3_bucket, "training/")
        expected = {(s.serial, rid): sha for s in sims for rid, sha in s.training().items()}
        assert set(objects) == set(expected)  # exactly the training recordings, nothing operational
        for (serial, rid), keys in objects.items():
            assert len(keys) == 1
            body = client.get_object(Bucket=s3_bucket, Key=keys[0])["Body"].read()
            plain = subprocess.run(
                ["age", "-d", "-i", str(s3_dock.identity_path)], input=body, capture_output=True, check=True
            ).stdout
            assert hashlib.sha256(plain).hexdigest() == expected[(serial, rid)]
        # manifests: stock ssh-keygen accepts the signature
        manifests = [
            o["Key"] for o in client.list_objects_v2(Bucket=s3_bucket, Prefix="training/")["Contents"]
            if o["Key"].endswith("/manifest.json")
        ]  # fmt: skip
        assert len(manifests) == 1
        manifest = client.get_object(Bucket=s3_bucket, Key=manifests[0])["Body"].read()
        sig = client.get_object(Bucket=s3_bucket, Key=manifests[0] + ".sig")["Body"].read()
        (tmp_path / "m.sig").write_bytes(sig)
        ok = subprocess.run(
            ["ssh-keygen", "-Y", "verify", "-f", str(s3_dock.allowed_signers), "-I", "dock-test",
             "-n", "bodycam-manifest", "-s", str(tmp_path / "m.sig")],
            input=manifest, capture_output=True,
        )  # fmt: skip
        assert ok.returncode == 0, ok.stderr
        doc = json.loads(manifest)
        assert {(r["camera_serial"], r["recording_id"]) for r in doc["recordings"]} == set(expected)
        offsets = {r["camera_serial"]: r["clock_offset_s"] for r in doc["recordings"]}
        assert offsets["CAM-U1"] == pytest.approx(-45, abs=1) and offsets["CAM-S1"] == pytest.approx(30, abs=1)
        # privacy: nothing in the bucket names an officer, a site or an original file name in clear
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=s3_bucket):
            for obj in page["Contents"]:
                data = client.get_object(Bucket=s3_bucket, Key=obj["Key"])["Body"].read()
                for secret in (b"OFFICER-CAM-", b"Range 3", b"VID_20"):
                    assert secret not in data, (obj["Key"], secret)
        verified = verify_cli(s3_dock, "--identity", str(s3_dock.identity_path), "--json")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert json.loads(verified.stdout)["verified"] is True
        # a second docking finds nothing new: no second (empty) batch, and verify still passes
        rc2, report2 = s3_dock.ingest_json(*(s.address for s in sims))
        assert rc2 == 0 and sum(c["already_done"] for c in report2["cameras"]) == 5
        assert sum(len(v) for v in recording_objects(client, s3_bucket, "training/").values()) == 5
        assert verify_cli(s3_dock).returncode == 0
    finally:
        for s in sims:
            s.stop()


def test_kill_9_at_random_points_loses_nothing_and_duplicates_nothing(
    tmp_path: Path, seaweedfs: SeaweedFS, s3_bucket: str, s3_dock: Dock
) -> None:
    win = window()
    rng = random.Random(1234)
    # Paced at 12 MB/s (a USB 2.0 link is ~40), the work takes ~8 s of reading whatever the machine: on a
    # quiet box an unpaced ingest finished inside the first 0.3-1.5 s and the later runs had nothing to kill.
    pace = ("--fault", f"trickle-bps={12_000_000}")
    with (
        SimProcess("usbip", "CAM-K1", "--recordings", "5", "--training", "3", "--size", str(32 * MiB),
                   "--exercise", iso_window(win), *pace, truth_dir=tmp_path) as u,
        SimProcess("serial", "CAM-K2", "--recordings", "3", "--training", "2", "--size", str(12 * MiB),
                   "--exercise", iso_window(win), *pace, truth_dir=tmp_path) as s,
    ):  # fmt: skip
        s3_dock.enroll("CAM-K1", "CAM-K2")
        s3_dock.exercise("EX-K", win, "CAM-K1", "CAM-K2")
        kills = 0
        for _ in range(8):
            proc = subprocess.Popen(
                [
                    CLI,
                    "--config", str(s3_dock.config_path), "ingest", "--once", "--json",
                    "--usbip", u.address, "--serial-port", s.address,
                ],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(rng.uniform(0.3, 1.5))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.wait()
        assert kills >= 3
        rc, report = s3_dock.ingest_json(u.address, s.address)
        assert rc == 0, report
        client = s3_client(seaweedfs)
        objects = recording_objects(client, s3_bucket, "training/")
        expected = {("CAM-K1", rid) for rid in u.training()} | {("CAM-K2", rid) for rid in s.training()}
        assert set(objects) == expected
        assert all(len(keys) == 1 for keys in objects.values()), objects  # exactly once
        assert open_uploads(client, s3_bucket) == []  # no multipart upload left open
        verified = verify_cli(s3_dock, "--identity", str(s3_dock.identity_path))
        assert verified.returncode == 0, verified.stdout + verified.stderr


@pytest.mark.parametrize("medium", ["usbip", "serial"])
def test_unplug_mid_recording_then_replug(tmp_path: Path, medium: str) -> None:
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri(), erase=True)
    win = window()
    with SimProcess(medium, "CAM-P1", "--recordings", "3", "--training", "2", "--size", str(8 * MiB),
                    "--exercise", iso_window(win), "--fault", f"unplug-at={5 * MiB}", truth_dir=tmp_path) as sim:  # fmt: skip
        dock.enroll("CAM-P1")
        dock.exercise("EX-P", win, "CAM-P1")
        rc, report = dock.ingest_json(sim.address)
        assert rc == 1 and report["cameras"][0]["errors"], report
        assert any("unplug" in e or "went away" in e or "closed" in e or "hung up" in e
                   for e in report["cameras"][0]["errors"]), report  # fmt: skip
        time.sleep(1.0)  # the camera re-appears
        rc, report = dock.ingest_json(sim.address)
        assert rc == 0, report
        verified = verify_cli(dock, "--identity", str(dock.identity_path), "--json")
        assert verified.returncode == 0, verified.stdout
        findings = json.loads(verified.stdout)
        recs = sum(b["recordings"] for b in findings["batches"])
        assert recs == 2
        assert sum(c["erased"] for c in report["cameras"]) == 2  # erased only after verification


def test_s3_outage_mid_upload_then_recovery(
    tmp_path: Path, seaweedfs: SeaweedFS, s3_bucket: str, s3_dock: Dock
) -> None:
    win = window()
    with SimProcess("usbip", "CAM-O1", "--recordings", "2", "--training", "2", "--size", str(40 * MiB),
                    "--exercise", iso_window(win), truth_dir=tmp_path) as sim:  # fmt: skip
        s3_dock.enroll("CAM-O1")
        s3_dock.exercise("EX-O", win, "CAM-O1")
        proc = subprocess.Popen(
            [CLI, "--config", str(s3_dock.config_path),
             "ingest", "--once", "--json", "--usbip", sim.address],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(1.0)
        seaweedfs.stop()
        try:
            out, err = proc.communicate(timeout=240)
        finally:
            seaweedfs.start()
        assert proc.returncode == 1, (out, err)
        assert "Traceback" not in err
        rc, report = s3_dock.ingest_json(sim.address)
        assert rc == 0, report
        client = s3_client(seaweedfs)
        objects = recording_objects(client, s3_bucket, "training/")
        assert set(objects) == {("CAM-O1", rid) for rid in sim.training()}
        assert all(len(k) == 1 for k in objects.values())
        assert open_uploads(client, s3_bucket) == []
        assert verify_cli(s3_dock, "--identity", str(s3_dock.identity_path)).returncode == 0


def test_full_state_disk_is_a_clear_error_and_loses_nothing(tmp_path: Path) -> None:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a small tmpfs")
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    state = tmp_path / "dock" / "state"
    win = window()
    with SimProcess("usbip", "CAM-F1", "--recordings", "40", "--training", "30", "--size", "2048",
                    "--exercise", iso_window(win), truth_dir=tmp_path) as sim:  # fmt: skip
        dock.enroll("CAM-F1")
        dock.exercise("EX-F", win, "CAM-F1")
        saved = tmp_path / "saved-state"
        shutil.copytree(state, saved)
        shutil.rmtree(state)
        state.mkdir()
        # room for the state as it is (its journal grows with the schema) plus 160 KiB, then the filler
        # leaves 48 KiB: the disk fills during the docking, whatever size an empty journal has
        held = sum(p.stat().st_size for p in saved.rglob("*") if p.is_file())
        size_k = (held + 1023) // 1024 + 160
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_k}k", "tmpfs", str(state)], check=True)
        try:
            shutil.copytree(saved, state, dirs_exist_ok=True)
            filler = state / "filler"
            free = shutil.disk_usage(state).free
            filler.write_bytes(b"\0" * max(0, free - 48 * 1024))
            rc, report = dock.ingest_json(sim.address)
            assert rc == 1
            text = json.dumps(report)
            assert "full" in text, text
            filler.unlink()
            snapshot = tmp_path / "after-full"
            shutil.copytree(state, snapshot)
        finally:
            subprocess.run(["umount", str(state)], check=True)
        shutil.copytree(snapshot, state, dirs_exist_ok=True)
        rc, report = dock.ingest_json(sim.address)
        assert rc == 0, report
        verified = verify_cli(dock, "--identity", str(dock.identity_path), "--json")
        assert verified.returncode == 0, verified.stdout
        assert sum(b["recordings"] for b in json.loads(verified.stdout)["batches"]) == 30


@pytest.mark.parametrize(
    ("fault", "needle"),
    [("wrong-hash", "hash"), ("hostile-names", "name"), ("lie-length", "length"), ("endless-list", "count")],
)
def test_lying_cameras_are_refused_and_nothing_escapes(tmp_path: Path, fault: str, needle: str) -> None:
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri(), erase=True)
    win = window()
    with SimProcess("usbip", "CAM-L1", "--recordings", "3", "--training", "3", "--size", str(MiB),
                    "--exercise", iso_window(win), "--fault", fault, truth_dir=tmp_path) as sim:  # fmt: skip
        dock.enroll("CAM-L1")
        dock.exercise("EX-L", win, "CAM-L1")
        before = set(os.listdir("/etc/cron.d")) if os.path.isdir("/etc/cron.d") else set()
        rc, report = dock.ingest_json(sim.address)
        assert rc == 1
        errors = " ".join(report["cameras"][0]["errors"])
        assert needle in errors.lower(), errors
        assert report["cameras"][0]["erased"] == 0
        truth_ids = {r["id"] for r in sim.truth}
        assert {r["id"] for r in sim.truth} == truth_ids  # nothing was erased on the camera
        bucket = tmp_path / "bucket"
        stored = [p for p in bucket.rglob("*.age") if "recordings" in p.parts]
        assert stored == []  # no recording object from a lying camera
        written = {p for p in tmp_path.rglob("*")}
        assert all(str(p).startswith(str(tmp_path)) for p in written)
        after = set(os.listdir("/etc/cron.d")) if os.path.isdir("/etc/cron.d") else set()
        assert after == before


def test_a_part_corrupted_in_transit_is_refused_and_the_camera_keeps_it(
    tmp_path: Path, seaweedfs: SeaweedFS, s3_bucket: str
) -> None:
    """One byte of a part flipped between the agent and SeaweedFS (what a TCP checksum can miss): the part's
    CRC-32C makes the server refuse it (issue 14 item 2), so nothing is verified and nothing erased; the next
    docking uploads it intact, and the object's SHA-256 is the signed manifest's ciphertext_sha256."""
    win = window()
    with (
        FaultProxy(("127.0.0.1", seaweedfs.ports["s3"])) as proxy,
        SimProcess("usbip", "CAM-X1", "--recordings", "1", "--training", "1", "--size", str(12 * MiB),
                   "--exercise", iso_window(win), truth_dir=tmp_path) as sim,
    ):  # fmt: skip
        dock = make_dock(tmp_path / "dock", f"s3://{s3_bucket}/training", proxy.url, erase=True)
        dock.enroll("CAM-X1")
        dock.exercise("EX-X", win, "CAM-X1")
        proxy.set(flip_at=2 * MiB, flips=1)  # 2 MiB into the first connection that carries that much: a part
        rc, report = dock.ingest_json(sim.address)
        assert proxy.stats.flipped == 1
        assert rc == 1, report
        assert sum(c["verified"] for c in report["cameras"]) == 0
        assert sum(c["erased"] for c in report["cameras"]) == 0
        assert "checksum" in json.dumps(report).lower()
        client = s3_client(seaweedfs)
        assert recording_objects(client, s3_bucket, "training/") == {}
        proxy.set()
        rc, report = dock.ingest_json(sim.address)
        assert rc == 0, report
        assert sum(c["verified"] for c in report["cameras"]) == 1
        assert sum(c["erased"] for c in report["cameras"]) == 1  # erased only once its bucket copy checked out
        verified = verify_cli(dock, "--identity", str(dock.identity_path), "--json")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        (key,) = recording_objects(client, s3_bucket, "training/")[("CAM-X1", next(iter(sim.training())))]
        body = client.get_object(Bucket=s3_bucket, Key=key)["Body"].read()
        manifests = [
            o["Key"] for o in client.list_objects_v2(Bucket=s3_bucket, Prefix="training/")["Contents"]
            if o["Key"].endswith("/manifest.json")
        ]  # fmt: skip
        listed = [
            r["ciphertext_sha256"]
            for m in manifests
            for r in json.loads(client.get_object(Bucket=s3_bucket, Key=m)["Body"].read())["recordings"]
        ]
        assert listed == [hashlib.sha256(body).hexdigest()]  # what sha256sum of the object gives
