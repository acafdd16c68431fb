"""Each recording reaches exactly its parties (issue 12 item 3), proven with stock age.

Three parties, two signed agreements with different scopes (A: exercise EX-1 to P1 and P2; B: EX-2 to
P3), an expired one (C: EX-3 to P1), a forged one and an unsigned one; three virtual cameras over
USB/IP, one per exercise; ingest into a local bucket. Then ``age -d -i`` with each party's identity
opens exactly the recordings its agreement covers and fails on every other one.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from bodycam.agent.formats import agreements as ag
from bodycam.agent.formats.sshsig import generate_key

from .agreement_setup import age_decrypt, make_force, share_under_agreements
from .agreement_setup import draft as make_draft
from .dock import iso_window, make_dock, window
from .sims import SimProcess


def test_each_party_decrypts_exactly_what_its_agreement_covers(tmp_path: Path) -> None:
    bucket = tmp_path / "bucket"
    dock = make_dock(tmp_path / "dock", bucket.as_uri())
    force = make_force(tmp_path, ("P1", "P2", "P3", "archive"))
    keys, ids, rcpt = force.keys, force.identities, force.recipients
    generate_key(keys / "impostor", "impostor")
    agreements = tmp_path / "agreements"
    share_under_agreements(dock, force, agreements)
    future, past = time.time() + 86400, time.time() - 3600
    drafts = tmp_path / "drafts"
    drafts.mkdir()
    signing = [
        ("DSA-A", "EX-1", {"P1": rcpt["P1"], "P2": rcpt["P2"]}, future, "controller"),
        ("DSA-B", "EX-2", {"P3": rcpt["P3"]}, future, "controller"),
        ("DSA-C", "EX-3", {"P1": rcpt["P1"]}, past + 1, "controller"),  # expired: stops new disclosures
        ("FORGED", "EX-2", {"P1": rcpt["P1"]}, future, "impostor"),
        ("UNSIGNED", "EX-1", {"P3": rcpt["P3"]}, future, "controller"),
    ]
    for ident, exercise, parties, not_after, key in signing:
        draft = make_draft(drafts / f"{ident}.json", ident, exercise, parties, not_after)
        if ident == "DSA-C":  # validity must end after it begins: start it two days back
            doc = json.loads(draft.read_text())
            doc["validity"]["not_before"] = ag._iso(past - 2 * 86400)
            draft.write_text(json.dumps(doc))
        signed = dock.cli("agreement", "sign", str(draft), "--key", str(keys / key), "--out", str(agreements))
        assert signed.returncode == 0, signed.stderr
    (agreements / "UNSIGNED.v1.json.sig").unlink()

    forged = dock.cli("agreement", "show", str(agreements / "FORGED.v1.json"))
    assert forged.returncode == 1 and len(forged.stderr.strip().splitlines()) == 1, forged.stderr
    assert "FORGED.v1.json refused" in forged.stderr and "not among the 1 allowed" in forged.stderr
    unsigned = dock.cli("agreement", "show", str(agreements / "UNSIGNED.v1.json"))
    assert unsigned.returncode == 1 and len(unsigned.stderr.strip().splitlines()) == 1, unsigned.stderr
    assert "UNSIGNED.v1.json is not signed" in unsigned.stderr
    shown = dock.cli("agreement", "show", str(agreements / "DSA-A.v1.json"), "--json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["state"] == "in force"
    listed = json.loads(dock.cli("agreement", "list", "--json").stdout)
    assert {a["id"]: a["state"] for a in listed["agreements"]} == {"DSA-A": "in force", "DSA-B": "in force",
                                                                   "DSA-C": "expired"}  # fmt: skip
    assert sorted(r["file"] for r in listed["refused"]) == ["FORGED.v1.json", "UNSIGNED.v1.json"]

    win = window()
    cams = {"CAM-A1": "EX-1", "CAM-B2": "EX-2", "CAM-C3": "EX-3"}
    dock.enroll(*cams, "CAM-A4")
    dock.exercise("EX-1", win, "CAM-A1", "CAM-A4")  # CAM-A4 docks after DSA-A is revoked
    dock.exercise("EX-2", win, "CAM-B2")
    dock.exercise("EX-3", win, "CAM-C3")
    args = ("--recordings", "2", "--training", "2", "--size", str(70_000), "--exercise", iso_window(win))
    sims: list[SimProcess] = []
    try:
        for serial in cams:
            sims.append(SimProcess("usbip", serial, *args, truth_dir=tmp_path))
        rc, report = dock.ingest_json(*(s.address for s in sims))
        expected = {serial: s.training() for serial, s in zip(cams, sims, strict=True)}
    finally:
        for s in sims:
            s.stop()
    assert rc == 0, report
    by_serial = {c["serial"]: c for c in report["cameras"]}
    assert by_serial["CAM-C3"]["out_of_scope_reasons"]["no_agreement"] == 2
    assert by_serial["CAM-A1"]["verified"] == by_serial["CAM-B2"]["verified"] == 2

    objects = sorted(p for p in bucket.rglob("*.age") if "recordings" in p.parts)
    assert {p.parent.name for p in objects} == {"CAM-A1", "CAM-B2"}  # nothing under the expired agreement
    ids["party-a"] = dock.identity_path  # in [[recipients]]: under agreements it receives nothing
    readers = {"P1": {"CAM-A1"}, "P2": {"CAM-A1"}, "P3": {"CAM-B2"}, "archive": {"CAM-A1", "CAM-B2"}, "party-a": set()}
    for party, cameras in readers.items():
        for obj in objects:
            plain = age_decrypt(ids[party], obj)
            if obj.parent.name in cameras:
                assert plain is not None, (party, obj)
                assert hashlib.sha256(plain).hexdigest() in expected[obj.parent.name].values()
            else:
                assert plain is None, f"{party} could decrypt {obj}"

    manifests = [json.loads(p.read_bytes()) for p in bucket.rglob("manifest.json")]
    entries = [e for m in manifests for e in m["recordings"]]
    assert len(entries) == 4
    sha = {a: hashlib.sha256((agreements / f"{a}.v1.json").read_bytes()).hexdigest() for a in ("DSA-A", "DSA-B")}
    for e in entries:
        if e["camera_serial"] == "CAM-A1":
            assert e["agreements"] == [{"id": "DSA-A", "version": 1, "sha256": sha["DSA-A"]}]
            assert e["parties"] == ["P1", "P2"]
        else:
            assert e["agreements"] == [{"id": "DSA-B", "version": 1, "sha256": sha["DSA-B"]}]
            assert e["parties"] == ["P3"]
    assert all(m["recipients"] == [{"name": ag.ARCHIVE_NAME, "age": rcpt["archive"]}] for m in manifests)
    custody = b"".join(p.read_bytes() for p in bucket.rglob("custody.jsonl")).decode()
    stayed = [json.loads(line) for line in custody.splitlines() if '"skipped_out_of_scope"' in line]
    assert [s["code"] for s in stayed if s["camera"] == "CAM-C3"] == ["no_agreement", "no_agreement"]
    assert all("DSA-C: expired" in s["reason"] for s in stayed if s["camera"] == "CAM-C3")

    verified = dock.cli(
        "verify", "--bucket", dock.bucket_url, "--allowed-signers", str(dock.allowed_signers),
        "--identity", str(ids["archive"]), "--json",
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr

    # Revocation is forward only: a camera docked after it keeps its EX-1 footage, and what P1 already
    # received stays readable to P1 (age cannot take a delivered file back).
    revoked = dock.cli("agreement", "revoke", "DSA-A", "--key", str(keys / "controller"), "--out", str(agreements))
    assert revoked.returncode == 0, revoked.stderr
    with SimProcess("usbip", "CAM-A4", *args, truth_dir=tmp_path) as late:
        rc, report = dock.ingest_json(late.address)
    assert rc == 0, report
    assert report["cameras"][0]["out_of_scope_reasons"]["no_agreement"] == 2
    assert not list(bucket.rglob("CAM-A4"))
    assert all(age_decrypt(ids["P1"], obj) is not None for obj in objects if obj.parent.name == "CAM-A1")
    journal = dock.journal()
    try:
        reasons = {r[0] for r in journal.query("SELECT error FROM recordings WHERE serial='CAM-A4'")}
    finally:
        journal.close()
    assert reasons == {"no valid data-sharing agreement covers it (DSA-A: revoked, DSA-B: exercise, DSA-C: expired)"}
