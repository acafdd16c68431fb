"""Issue 8 item 8: changing the dock's identity does not silently break the audit trail.

Through the CLI, with virtual cameras over USB/IP and local buckets: a renamed ``dock_id`` or a new
``bucket.url`` is refused with the command that makes the change; ``dock handover`` records it in
custody, and ``verify`` then follows the chain across the rename and into the new bucket.
"""

from __future__ import annotations

import json
import os
import pwd
import re
from pathlib import Path

from .dock import DOCK_ID, Dock, iso_window, make_dock, window
from .sims import SimProcess

SIZE = str(256 * 1024)


def set_config(dock: Dock, key: str, value: str) -> None:
    text = dock.config_path.read_text()
    new, count = re.subn(rf'(?m)^{key} = ".*"$', f'{key} = "{value}"', text)
    assert count == 1, key
    dock.config_path.write_text(new)


def ingest_one(dock: Dock, serial: str, tmp_path: Path, win: tuple[float, float]) -> dict[str, object]:
    dock.enroll(serial)
    dock.exercise(f"EX-{serial}", win, serial)
    args = ("--recordings", "2", "--training", "1", "--size", SIZE, "--exercise", iso_window(win))
    with SimProcess("usbip", serial, *args, truth_dir=tmp_path) as sim:
        code, report = dock.ingest_json(sim.address)
    assert code == 0, report
    return report


def verify(dock: Dock, bucket_url: str) -> dict[str, object]:
    proc = dock.cli("verify", "--bucket", bucket_url, "--allowed-signers", str(dock.allowed_signers),
                    "--identity", str(dock.identity_path), "--json")  # fmt: skip
    doc = json.loads(proc.stdout)
    assert proc.returncode == 0, doc["findings"]
    return dict(doc)


def test_a_renamed_dock_is_refused_until_handed_over_and_verify_follows_the_chain(tmp_path: Path) -> None:
    win = window()
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    ingest_one(dock, "CAM-H1", tmp_path, win)

    set_config(dock, "dock_id", "dock-renamed")
    refused = dock.cli("ingest", "--once", "--usbip", "127.0.0.1:9")
    assert refused.returncode == 2, refused.stderr
    (line,) = refused.stderr.splitlines()
    assert "bodycam-sync dock handover --dock-id dock-renamed" in line and DOCK_ID in line, line
    assert dock.cli("exercise", "list").returncode == 2  # every command that writes the journal refuses

    mismatch = dock.cli("dock", "handover", "--dock-id", "dock-other")
    assert mismatch.returncode == 2 and 'set dock_id = "dock-other"' in mismatch.stderr, mismatch.stderr
    done = dock.cli("dock", "handover", "--dock-id", "dock-renamed")
    assert done.returncode == 0, done.stderr
    signer_line = done.stdout.strip().splitlines()[-1]
    assert signer_line.startswith("dock-renamed ssh-ed25519 "), done.stdout
    with dock.allowed_signers.open("a") as f:  # what the auditor does with the printed line
        f.write(signer_line + "\n")

    ingest_one(dock, "CAM-H2", tmp_path, win)
    doc = verify(dock, dock.bucket_url)
    by_dock = {(b["dock"], b["seq"]) for b in doc["batches"]}  # type: ignore[attr-defined]
    assert {d for d, _ in by_dock} == {DOCK_ID, "dock-renamed"}, by_dock
    assert max(s for d, s in by_dock if d == DOCK_ID) + 1 == min(s for d, s in by_dock if d == "dock-renamed")
    custody = b"".join(p.read_bytes() for p in (tmp_path / "bucket" / DOCK_ID).rglob("custody.jsonl"))
    assert b'"event":"dock_handover"' in custody and b'"to_dock":"dock-renamed"' in custody
    # an operator ran it: the entry names them by keyed pseudonym, as every operator command does, never
    # the dock and never the Unix user in clear; the clear user stays in the journal for the archive
    (entry,) = [e for e in map(json.loads, custody.splitlines()) if e["event"] == "dock_handover"]
    assert re.fullmatch(r"operator:[0-9a-f]{64}", entry["actor"]), entry
    user = pwd.getpwuid(os.getuid()).pw_name
    assert f'"{user}"'.encode() not in custody
    journal = dock.journal()
    try:
        assert journal.query("SELECT user FROM custody_operator WHERE seq=?", (entry["seq"],))[0][0] == user
    finally:
        journal.close()
    shown = dock.cli("disclosures", "--bucket", dock.bucket_url, "--allowed-signers", str(dock.allowed_signers))
    assert shown.returncode == 0, shown.stdout + shown.stderr  # the disclosure report reads the chain too

    # the handover batch is evidence too: without it the renamed dock's chain has nothing to continue
    (handover_batch,) = [
        p.parent for p in (tmp_path / "bucket" / DOCK_ID).rglob("custody.jsonl") if b"dock_handover" in p.read_bytes()
    ]
    for path in handover_batch.iterdir():
        path.unlink()
    proc = dock.cli("verify", "--bucket", dock.bucket_url, "--allowed-signers", str(dock.allowed_signers), "--json")
    problems = {f["problem"] for f in json.loads(proc.stdout)["findings"]}
    assert proc.returncode == 1 and "batch_missing" in problems, problems


def test_a_new_bucket_is_refused_until_handed_over_and_both_buckets_verify(tmp_path: Path) -> None:
    win = window()
    old_url, new_url = (tmp_path / "bucket-a").as_uri(), (tmp_path / "bucket-b").as_uri()
    dock = make_dock(tmp_path / "dock", old_url)
    ingest_one(dock, "CAM-B1", tmp_path, win)

    set_config(dock, "url", new_url)
    refused = dock.cli("ingest", "--once", "--usbip", "127.0.0.1:9")
    assert refused.returncode == 2, refused.stderr
    assert f"bodycam-sync dock handover --bucket {new_url}" in refused.stderr, refused.stderr

    done = dock.cli("dock", "handover", "--bucket", new_url)
    assert done.returncode == 0, done.stderr
    report = ingest_one(dock, "CAM-B2", tmp_path, win)
    assert report["cameras"][0]["verified"] == 1  # type: ignore[index]  # uploaded, not "already done"

    old, new = verify(dock, old_url), verify(dock, new_url)
    assert len(old["batches"]) == 2 and len(new["batches"]) == 2, (old["batches"], new["batches"])  # type: ignore[arg-type]
    assert list((tmp_path / "bucket-b").rglob("CAM-B2")) and not list((tmp_path / "bucket-a").rglob("CAM-B2"))


def test_a_journal_from_before_the_pin_takes_the_dock_of_its_custody(tmp_path: Path) -> None:
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    assert dock.cli("enroll", "CAM-P1", "--key", "ab" * 32).returncode == 0  # a custody entry: first use
    journal = dock.journal()
    try:
        with journal.transaction() as db:  # as an agent that did not pin the identity left it
            db.execute("DELETE FROM meta WHERE key='identity'")
    finally:
        journal.close()
    set_config(dock, "dock_id", "dock-typo")
    proc = dock.cli("exercise", "list")
    assert proc.returncode == 2 and f"differs from {DOCK_ID!r}" in proc.stderr, proc.stderr
    set_config(dock, "dock_id", DOCK_ID)
    assert dock.cli("exercise", "list").returncode == 0


def test_deleting_a_moved_dock_s_batches_from_its_old_bucket_is_caught(tmp_path: Path) -> None:
    """The handover batch of a move is published to both buckets: in the new one it opens the chain, in
    the old one it closes it. Taken for an opening in the old bucket too, it let every batch before it
    (and the dock's log) be deleted there with verify still passing."""
    import shutil

    win = window()
    old_url, new_url = (tmp_path / "bucket-a").as_uri(), (tmp_path / "bucket-b").as_uri()
    dock = make_dock(tmp_path / "dock", old_url)
    ingest_one(dock, "CAM-M1", tmp_path, win)
    set_config(dock, "url", new_url)
    assert dock.cli("dock", "handover", "--bucket", new_url).returncode == 0
    verify(dock, old_url)
    verify(dock, new_url)  # the handover batch opens the chain there

    old_root = tmp_path / "bucket-a" / DOCK_ID
    (handover_batch,) = [p.parent for p in old_root.rglob("custody.jsonl") if b"dock_handover" in p.read_bytes()]
    for path in old_root.iterdir():
        if path != handover_batch:
            shutil.rmtree(path)
    proc = dock.cli("verify", "--bucket", old_url, "--allowed-signers", str(dock.allowed_signers), "--json")
    findings = json.loads(proc.stdout)["findings"]
    assert proc.returncode == 1, findings
    assert [f["batch"] for f in findings if f["problem"] == "batch_missing"] == [handover_batch.name], findings


def test_a_handover_naming_a_url_urlsplit_refuses_opens_nothing_and_raises_nothing() -> None:
    """verify compares a signed dock_handover entry's to_bucket with the URL it reads (71c850a): a
    to_bucket urlsplit or realpath refuses ('[' as in an IPv6 host, a NUL in a file path) raised a bare
    ValueError out of verify, a traceback for every auditor of the bucket. It names no bucket now."""
    from bodycam.agent.audit.verify import _same_bucket

    for named in ("s3://[evidence/pre", "http://[::1", "file:///srv/bucket\x00x"):
        for here in ("s3://evidence/pre", "file:///srv/bucket"):
            assert _same_bucket(named, here) is False
    assert _same_bucket("file:///srv//bucket/", "file:///srv/bucket") and _same_bucket("s3://b/p/", "s3://b/p")
