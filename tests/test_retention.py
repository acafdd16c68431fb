"""Retention enforced and proven (issue 12 item 7), on real parts: virtual cameras over USB/IP, the
local bucket and SeaweedFS with S3 Object Lock, the CLI as operators run it.

Two signed agreements: DSA-SHORT gives P1 the footage of exercise EX-OLD for 1 day, DSA-LONG gives P2
the footage of EX-NEW for 365 days. EX-OLD was three days ago, so its footage is past its retention
as soon as it arrives; EX-NEW's is kept (and, in an Object Lock bucket, locked) for a year.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from bodycam.agent.formats import agreements as ag
from bodycam.agent.formats import retention as rt
from bodycam.agent.formats.agecrypt import generate_identity
from bodycam.agent.formats.sshsig import generate_key
from bodycam.agent.pipeline import retention
from bodycam.agent.pipeline.ingest import Agent
from bodycam.agent.storage.bucket import S3Bucket, open_bucket
from bodycam.drivers.errors import UploadError

from .dock import Dock, iso_window, make_dock, window
from .s3server import SeaweedFS
from .sims import SimProcess
from .test_systemd_units import MAX_EXPOSURE, SYSTEMD, UNIT, analyze, exposure, local_cli, needs_analyze, unit_settings

DAY = 86400


class Crash(Exception):
    """Stands for the process dying between a deletion and its custody entry."""


def _agreement_dock(tmp_path: Path, bucket_url: str, endpoint_url: str | None = None) -> tuple[Dock, Path]:
    """A dock under DSA-SHORT and DSA-LONG; returns it and the controller archive's identity file."""
    dock = make_dock(tmp_path / "dock", bucket_url, endpoint_url)
    keys = tmp_path / "force"
    keys.mkdir()
    controller_pub = generate_key(keys / "controller", "force")
    rcpt = {}
    for name in ("P1", "P2", "archive"):
        secret, rcpt[name] = generate_identity()
        (keys / f"{name}.agekey").write_text(secret + "\n")
    agreements = tmp_path / "agreements"
    with dock.config_path.open("a") as f:
        f.write(
            f'[agreements]\ncontroller_keys = ["{controller_pub.strip()}"]\n'
            f'dir = "{agreements}"\narchive = "{rcpt["archive"]}"\n'
        )
    now = time.time()
    for ident, exercise, party, days in (("DSA-SHORT", "EX-OLD", "P1", 1), ("DSA-LONG", "EX-NEW", "P2", 365)):
        draft = tmp_path / f"{ident}.json"
        draft.write_text(
            json.dumps(
                {
                    "format": ag.FORMAT, "id": ident, "version": 1, "controller": {"name": "Example Constabulary"},
                    "parties": [{"name": party, "role": "processor", "lawful_basis": "DPA 2018 s.35",
                                 "recipients": [rcpt[party]], "retention_days": days}],
                    "purpose": "firearms-training review", "data_items": ["footage", "times"],
                    "scope": {"exercises": [exercise]},
                    "validity": {"not_before": ag._iso(now - 7 * DAY), "not_after": ag._iso(now + DAY)},
                    "review_date": "2030-01-01", "dpia": "DPIA-7",
                }
            )
        )  # fmt: skip
        signed = dock.cli("agreement", "sign", str(draft), "--key", str(keys / "controller"), "--out", str(agreements))
        assert signed.returncode == 0, signed.stderr
    return dock, keys / "archive.agekey"


def _ingest_two_batches(dock: Dock, tmp_path: Path, env: dict[str, str] | None = None) -> None:
    """CAM-OLD (EX-OLD, three days ago) in one batch, then CAM-NEW (EX-NEW, the last two hours) in another."""
    recent = window()
    old = (recent[0] - 3 * DAY, recent[1] - 3 * DAY)
    dock.enroll("CAM-OLD", "CAM-NEW")
    dock.exercise("EX-OLD", old, "CAM-OLD")
    dock.exercise("EX-NEW", recent, "CAM-NEW")
    for serial, win in (("CAM-OLD", old), ("CAM-NEW", recent)):
        args = ("--recordings", "3", "--training", "2", "--size", "70000", "--exercise", iso_window(win))
        with SimProcess("usbip", serial, *args, truth_dir=tmp_path) as sim:
            rc, report = dock.ingest_json(sim.address, env=env)
        assert rc == 0, report
        assert report["cameras"][0]["verified"] == 2, report


def _manifests(bucket: Any) -> dict[str, dict[str, Any]]:
    out = {}
    for info in bucket.iter_objects(""):
        if info.key.endswith("/manifest.json"):
            out[info.key.split("/")[1]] = json.loads(bucket.get_bytes(info.key, 1 << 20))
    return out


def _entries(manifests: dict[str, dict[str, Any]], serial: str) -> list[dict[str, Any]]:
    return [e for m in manifests.values() for e in m["recordings"] if e["camera_serial"] == serial]


def _sidecar_keys(manifests: dict[str, dict[str, Any]], batch: str) -> list[str]:
    """The batch's personal sidecars: the archive's, then each party's (docs/formats.md §5.3)."""
    keys = [manifests[batch]["personal"]["key"], *(s["key"] for s in manifests[batch].get("sidecars", []))]
    assert len(keys) == 2  # P1 alone received the old batch: one party sidecar
    return keys


def _custody(bucket: Any) -> list[dict[str, Any]]:
    lines = []
    for info in bucket.iter_objects(""):
        if info.key.endswith("/custody.jsonl"):
            lines += [json.loads(x) for x in bucket.get_bytes(info.key, 1 << 24).splitlines()]
    return lines


def _party_walkthrough(dock: Dock, bucket_dir: Path, party: str, identity: Path) -> subprocess.CompletedProcess[str]:
    """docs/auditing.md's "A party checks its own footage", run exactly as written."""
    doc = (Path(__file__).resolve().parent.parent / "docs" / "auditing.md").read_text(encoding="utf-8")
    blocks = re.findall(r"<!-- party-walkthrough -->\s*\n```sh\n(.*?)\n```", doc, re.S)
    assert len(blocks) == 1, "docs/auditing.md should mark one party-walkthrough block"
    env = {**os.environ, "BUCKET_DIR": str(bucket_dir), "ALLOWED_SIGNERS": str(dock.allowed_signers),
           "PARTY": party, "IDENTITY": str(identity)}  # fmt: skip
    return subprocess.run(["bash", "-c", blocks[0]], capture_output=True, text=True, env=env, timeout=300)


def _verify(dock: Dock, archive: Path, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any], str]:
    args = ["verify", "--bucket", dock.bucket_url, "--allowed-signers", str(dock.allowed_signers),
            "--identity", str(archive)]  # fmt: skip
    if dock.endpoint_url:
        args += ["--endpoint-url", dock.endpoint_url]
    proc = dock.cli(*args, "--json", env=env)
    text = dock.cli(*args, env=env)
    assert "Traceback" not in proc.stderr + text.stderr
    return proc.returncode, json.loads(proc.stdout), text.stdout


def test_retention_on_the_local_bucket_erases_logs_and_verify_tells_erased_from_missing(tmp_path: Path) -> None:
    root = tmp_path / "bucket"
    dock, archive = _agreement_dock(tmp_path, root.as_uri())
    _ingest_two_batches(dock, tmp_path)
    bucket = open_bucket(dock.bucket_url)
    manifests = _manifests(bucket)
    old, new = _entries(manifests, "CAM-OLD"), _entries(manifests, "CAM-NEW")
    for entries, days, agreement in ((old, 1, "DSA-SHORT"), (new, 365, "DSA-LONG")):
        assert len(entries) == 2
        for e in entries:  # the rule: corrected end + the longest retention of its parties
            assert e["agreements"][0]["id"] == agreement
            assert rt.parse_iso(e["retain_until"]) == pytest.approx(rt.parse_iso(e["end"]) + days * DAY, abs=1)
            head = bucket.head(e["key"])  # the local bucket records it in the object's metadata
            assert head is not None and head.retain_until is not None
            assert head.retain_until.timestamp() == rt.parse_iso(e["retain_until"])
    old_batch = old[0]["key"].split("/")[1]

    listed = dock.cli("retention", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    due = json.loads(listed.stdout)["due"]
    assert sorted(d["key"] for d in due) == sorted(e["key"] for e in old)
    assert all(d["agreements"] == ["DSA-SHORT"] and d["object"] == "recording" for d in due)
    assert "OFFICER" not in listed.stdout and "Range 3" not in listed.stdout  # ids and dates only
    later = json.loads(dock.cli("retention", "list", "--json", "--at", rt.iso(time.time() + 400 * DAY)).stdout)
    assert {d["key"] for d in later["due"]} == {e["key"] for e in old + new}

    # a crash between the first deletion and its custody entry ...
    def crash(d: retention.Due) -> None:
        raise Crash(d.key)

    agent = Agent(dock.config)
    try:
        with pytest.raises(Crash):
            retention.apply(agent, after_delete=crash)
        assert agent.journal.query("SELECT state FROM erasures")[0][0] == "deleting"
        assert not [r for r in agent.journal.query("SELECT line FROM custody") if "bucket_erased" in r[0]]
    finally:
        agent.close()
    assert sum(bucket.head(e["key"]) is None for e in old) == 1
    interrupted = json.loads(dock.cli("retention", "list", "--json").stdout)["due"]
    assert sorted(d["state"] for d in interrupted) == ["deleting", "due"]

    # ... is finished by the next apply: both recordings, then the batch's personal sidecar, logged once each
    applied = dock.cli("retention", "apply", "--json")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    report = json.loads(applied.stdout)
    assert report["ok"] and report["unpublished"] == 0 and report["batch_id"]
    personal = _sidecar_keys(manifests, old_batch)  # the archive's and P1's own (docs/formats.md §5.3)
    assert sorted(d["key"] for d in report["erased"]) == sorted([e["key"] for e in old] + personal)
    assert all(bucket.head(k) is None for k in [e["key"] for e in old] + personal)
    assert all(bucket.head(e["key"]) is not None for e in new)
    erasures = [c for c in _custody(bucket) if c["event"] == "bucket_erased"]
    assert sorted(c["key"] for c in erasures) == sorted([e["key"] for e in old] + personal)  # once each
    for c in erasures:
        assert c["operation"] == "erasure" and c["agreements"] == ["DSA-SHORT"] and len(c["sha256"]) == 64
        assert not {"officer_id", "original_name", "site", "name"} & set(c)
        assert "OFFICER" not in json.dumps(c) and "Range 3" not in json.dumps(c)

    again = dock.cli("retention", "apply")
    assert again.returncode == 0 and "nothing is past its retention" in again.stdout, again.stdout + again.stderr
    assert [c for c in _custody(bucket) if c["event"] == "bucket_erased"] == erasures  # idempotent
    # nothing left in the bucket after the erasures (custody, manifests, remaining sidecars, agreements'
    # party sidecars) names the site or an officer in clear, in its bytes or its name
    for path in (p for p in root.rglob("*") if p.is_file()):
        for needle in (b"officer-cam", b"range 3"):
            assert needle not in path.read_bytes().lower() and needle.decode() not in str(path).lower(), path

    rc, doc, text = _verify(dock, archive)
    assert rc == 0 and doc["findings"] == [], doc["findings"]
    assert sorted(e["key"] for e in doc["erasures"]) == sorted([e["key"] for e in old] + personal)
    assert all(e["agreements"] == ["DSA-SHORT"] and e["batch"] == old_batch for e in doc["erasures"])
    assert f"ERASED {old[0]['key']}: under agreement DSA-SHORT at " in text
    assert "4 erased under their agreements' retention, no problems" in text
    html = tmp_path / "audit.html"
    reported = dock.cli("verify", "--bucket", dock.bucket_url, "--allowed-signers", str(dock.allowed_signers),
                        "--report", str(html))  # fmt: skip
    assert reported.returncode == 0, reported.stdout + reported.stderr
    page = html.read_text()
    assert "Erased under retention (4)" in page and old[0]["key"] in page and "DSA-SHORT" in page

    # each party checks its own share with stock tools (docs/auditing.md)
    p1 = _party_walkthrough(dock, root, "P1", archive.with_name("P1.agekey"))
    assert p1.returncode == 0, p1.stdout + p1.stderr
    assert "PARTY P1 OK: 0 recordings check, 2 erased under retention, 2 of others' not readable" in p1.stdout
    p2 = _party_walkthrough(dock, root, "P2", archive.with_name("P2.agekey"))
    assert p2.returncode == 0, p2.stdout + p2.stderr
    assert "PARTY P2 OK: 2 recordings check, 0 erased under retention, 0 of others' not readable" in p2.stdout

    # an object that goes without an erasure entry is still a finding
    victim = root / new[0]["key"]
    kept = tmp_path / "kept.age"
    shutil.copy2(victim, kept)
    victim.unlink()
    rc, doc, _ = _verify(dock, archive)
    assert rc == 1 and [(f["problem"], f["key"]) for f in doc["findings"]] == [("object_missing", new[0]["key"])]
    p2 = _party_walkthrough(dock, root, "P2", archive.with_name("P2.agekey"))
    assert p2.returncode == 1 and "is missing and no erasure entry names it" in p2.stderr, p2.stdout + p2.stderr
    shutil.copy2(kept, victim)
    assert _verify(dock, archive)[0] == 0

    # an erasure logged before the retention had elapsed is a finding (a dock whose clock ran a year ahead)
    agent = Agent(dock.config)
    try:
        early = retention.apply(agent, now=time.time() + 400 * DAY)
    finally:
        agent.close()
    assert early.ok and {d.key for d in early.erased} >= {e["key"] for e in new}
    rc, doc, _ = _verify(dock, archive)
    assert rc == 1
    found = {(f["problem"], f["key"]) for f in doc["findings"]}
    assert {("erased_early", e["key"]) for e in new} <= found
    assert all(f["problem"] == "erased_early" for f in doc["findings"]), doc["findings"]


def test_retention_on_seaweedfs_with_object_lock(tmp_path: Path, seaweedfs: SeaweedFS, s3_bucket: str) -> None:
    name = seaweedfs.make_bucket(f"{s3_bucket}-lock", object_lock=True)
    env = seaweedfs.env()
    dock, archive = _agreement_dock(tmp_path, f"s3://{name}/evidence", seaweedfs.endpoint_url)
    _ingest_two_batches(dock, tmp_path, env)
    bucket = S3Bucket(name, "evidence", endpoint_url=seaweedfs.endpoint_url)
    manifests = _manifests(bucket)
    old, new = _entries(manifests, "CAM-OLD"), _entries(manifests, "CAM-NEW")
    for e in new:  # kept a year: COMPLIANCE-locked until the manifest's retain-until date
        head = bucket.head(e["key"])
        assert head is not None and head.lock_mode == "COMPLIANCE" and head.retain_until is not None
        assert head.retain_until.timestamp() == pytest.approx(rt.parse_iso(e["retain_until"]), abs=1)
        with pytest.raises(UploadError, match=r"AccessDenied|credentials"):
            bucket.delete(e["key"], version_id=head.version_id)
    for e in old:  # its date had passed on arrival: S3 takes no retain-until in the past, so no lock
        head = bucket.head(e["key"])
        assert head is not None and head.lock_mode is None
        assert rt.parse_iso(e["retain_until"]) < time.time()

    agent = Agent(dock.config)
    try:  # the pipeline cannot erase early either: the server refuses, nothing is logged
        refused = retention.apply(agent, now=time.time() + 400 * DAY)
    finally:
        agent.close()
    erased_old = {e["key"] for e in old} | set(_sidecar_keys(manifests, old[0]["key"].split("/")[1]))
    assert {d.key for d in refused.erased} == erased_old
    assert sorted(err.split(":")[0] for err in refused.errors) == sorted(e["key"] for e in new)
    assert all(bucket.head(e["key"]) is not None for e in new)
    assert json.loads(dock.cli("retention", "list", "--json", env=env).stdout)["due"] == []

    client = seaweedfs.client()
    for e in old:  # every version gone, not hidden behind a delete marker
        versions = client.list_object_versions(Bucket=name, Prefix=f"evidence/{e['key']}")
        assert not versions.get("Versions") and not versions.get("DeleteMarkers"), versions
    rc, doc, text = _verify(dock, archive, env)
    assert rc == 0 and doc["findings"] == [], doc["findings"]
    personal = _sidecar_keys(manifests, old[0]["key"].split("/")[1])
    assert sorted(e["key"] for e in doc["erasures"]) == sorted([e["key"] for e in old] + personal)
    assert "ERASED" in text


def test_an_elapsed_object_lock_lets_the_erasure_through(seaweedfs: SeaweedFS, s3_bucket: str) -> None:
    """SeaweedFS enforces a retain-until date to the second and lets the version go once it passes."""
    name = seaweedfs.make_bucket(f"{s3_bucket}-lock", object_lock=True)
    bucket = S3Bucket(name, endpoint_url=seaweedfs.endpoint_url)
    key = "dock/b/recordings/CAM/1.age"
    upload = bucket.start_upload(key, retain_until=time.time() + 4)
    bucket.complete_upload(key, upload, [bucket.upload_part(key, upload, 1, b"footage")])
    head = bucket.head(key)
    assert head is not None and head.lock_mode == "COMPLIANCE"
    with pytest.raises(UploadError):
        retention.erase_object(bucket, key)
    deadline = time.monotonic() + 90
    while True:
        try:
            retention.erase_object(bucket, key)
            break
        except UploadError:
            assert time.monotonic() < deadline, "the lock never expired"
            time.sleep(0.5)
    assert not seaweedfs.client().list_object_versions(Bucket=name, Prefix=key).get("Versions")


def test_a_bucket_without_object_lock_says_so_once_and_stores_anyway(
    seaweedfs: SeaweedFS, s3_bucket: str, caplog: pytest.LogCaptureFixture
) -> None:
    bucket = S3Bucket(s3_bucket, endpoint_url=seaweedfs.endpoint_url)
    with caplog.at_level(logging.WARNING, logger="bodycam.agent.storage.bucket"):
        for n in range(2):
            key = f"dock/b/recordings/CAM/{n}.age"
            upload = bucket.start_upload(key, retain_until=time.time() + DAY)
            bucket.complete_upload(key, upload, [bucket.upload_part(key, upload, 1, b"footage")])
            head = bucket.head(key)
            assert head is not None and head.lock_mode is None
    lines = [r.getMessage() for r in caplog.records if "no Object Lock" in r.getMessage()]
    assert len(lines) == 1 and "not enforced by the server" in lines[0]


def test_a_seal_from_another_process_waits_while_an_upload_is_being_started(tmp_path: Path) -> None:
    """retention apply seals its erasure entries at once, from its own process: it must never seal the
    batch a running daemon has just chosen for an upload it has not journaled yet (the recording would be
    in no manifest). Two Agents on one state directory stand for the two processes."""
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    daemon, cli = dock.agent(), dock.agent()
    try:
        with daemon._batch_lock:  # between choosing the batch and journaling the upload
            sealer = threading.Thread(target=lambda: cli.seal_and_publish(flush_custody=True))
            sealer.start()
            sealer.join(1.0)
            assert sealer.is_alive(), "the other process sealed while an upload was being started"
        sealer.join(60)
        assert not sealer.is_alive()
    finally:
        daemon.close()
        cli.close()


@needs_analyze
def test_the_retention_timer_and_service_verify_and_score_exposure_at_most_2(tmp_path: Path) -> None:
    """systemd/bodycam-retention.{service,timer}: retention applied daily, as the agent's user, on its state."""
    service, timer = SYSTEMD / "bodycam-retention.service", SYSTEMD / "bodycam-retention.timer"
    text = service.read_text(encoding="utf-8").replace("ExecStart=/usr/bin/bodycam-sync ", f"ExecStart={local_cli()} ")
    (tmp_path / service.name).write_text(text, encoding="utf-8")
    shutil.copy(timer, tmp_path / timer.name)
    proc = analyze("verify", tmp_path / service.name, tmp_path / timer.name)
    assert proc.returncode == 0 and (proc.stdout + proc.stderr).strip() == "", proc.stdout + proc.stderr
    rc, level, out = exposure(service)
    assert rc == 0 and level <= MAX_EXPOSURE, out
    settings = unit_settings(text)
    assert settings["ExecStart"] == [f"{local_cli()} retention apply"] and settings["Type"] == ["oneshot"]
    agent = unit_settings(UNIT.read_text(encoding="utf-8"))
    for key in ("User", "Group", "StateDirectory", "StateDirectoryMode", "Environment", "EnvironmentFile"):
        assert settings[key] == agent[key], key  # the agent's journal, keys and credentials, as the agent has them
    assert unit_settings(timer.read_text(encoding="utf-8"))["OnCalendar"] == ["daily"]
