"""Issue 12 "Done when", the parts no other test covers, in one SeaweedFS scenario with real parts.

An agreement that *expires while the dock runs* stops new disclosures and leaves earlier ones valid:
DSA-SHORT (EX-1, footage and times, to the Home Office) is in force when CAM-X1 docks and expired when
CAM-X2, recorded for the same exercise, docks later; DSA-FULL (EX-2, every data item, to the platform)
covers CAM-X3, which docks first: that docking is timed to give DSA-SHORT a life measured on this
machine (a few times what the same steps took), so the expiry costs seconds, not minutes. Every key is
an ML-KEM-768 + X25519 hybrid (age1pq1), and the npm package ``age-encryption`` (a second
implementation) decrypts what each party was sent. Agreements and the
fleet register are published in the bucket (``_fleet/``); the disclosure report and verify are checked
against the signed manifests; and no byte in the bucket names the site or an officer in clear.
"""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import time
from pathlib import Path
from typing import Any

from bodycam.agent.formats.agecrypt import generate_hybrid_identity
from bodycam.agent.formats.sshsig import generate_key

from .agreement_setup import draft as _draft
from .dock import iso_window, make_dock, window
from .s3server import SeaweedFS
from .sims import SimProcess
from .test_age_interop import INTEROP, node, node_age  # noqa: F401  (node_age: the module's fixture)

SITE = "Hendon Firing Range 3"
MARGIN = 3.0  # DSA-SHORT lives this many times what the same steps took under DSA-FULL, measured in the test


def _node_opens(identity: Path, objects: dict[str, bytes], tmp: Path) -> dict[str, bytes | None]:
    """What the npm package opens of ``objects`` with ``identity`` (None: refused), each object with a fresh
    decrypter, all in one node process (a node start-up per object cost more than its decryption)."""
    tmp.mkdir()
    keys, sealed = list(objects), []
    for n, key in enumerate(keys):
        sealed.append(tmp / f"{n}.age")
        sealed[-1].write_bytes(objects[key])
    out = tmp / "opened"
    proc = subprocess.run(["node", str(INTEROP / "decrypt_each.mjs"), str(identity), str(out), *map(str, sealed)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["input"] for r in results] == [str(p) for p in sealed], proc.stdout
    return {
        key: (out / str(n)).read_bytes() if r["opened"] else None
        for n, (key, r) in enumerate(zip(keys, results, strict=True))
    }


def test_an_agreement_expiring_between_dockings_stops_new_disclosures_and_keeps_earlier_ones(
    tmp_path: Path, seaweedfs: SeaweedFS, s3_bucket: str
) -> None:
    url = f"s3://{s3_bucket}/force"
    dock = make_dock(tmp_path / "dock", url, seaweedfs.endpoint_url, erase=True, post_quantum=True)
    force = tmp_path / "force"
    force.mkdir()
    controller = generate_key(force / "controller", "force").strip()
    ids: dict[str, Path] = {}
    rcpt: dict[str, str] = {}
    for name in ("HO", "PLATFORM", "archive"):
        secret, rcpt[name] = generate_hybrid_identity()
        ids[name] = force / f"{name}.agekey"
        ids[name].write_text(secret + "\n")
    with dock.config_path.open("a") as f:
        f.write(f'[agreements]\ncontroller_keys = ["{controller}"]\narchive = "{rcpt["archive"]}"\n[fleet]\n')
    win = window()
    dock.enroll("CAM-X1", "CAM-X2", "CAM-X3")
    dock.exercise("EX-1", win, "CAM-X1", "CAM-X2", site=SITE)
    dock.exercise("EX-2", win, "CAM-X3", site=SITE)
    assert dock.cli("fleet", "publish", "--key", str(force / "controller")).returncode == 0

    drafts, signed = tmp_path / "drafts", tmp_path / "signed"
    drafts.mkdir()
    full = _draft(drafts / "DSA-FULL.json", "DSA-FULL", "EX-2", {"PLATFORM": rcpt["PLATFORM"]}, time.time() + 86400)
    doc: dict[str, Any] = json.loads(full.read_text())
    doc["data_items"] = ["footage", "times", "camera_model", "officer_pseudonym", "officer_identity", "site"]
    full.write_text(json.dumps(doc))

    def sign_and_publish(draft: Path) -> None:
        proc = dock.cli("agreement", "sign", str(draft), "--key", str(force / "controller"), "--out", str(signed))
        assert proc.returncode == 0, proc.stderr
        proc = dock.cli("agreement", "publish", str(signed / f"{draft.stem}.v1.json"))
        assert proc.returncode == 0, proc.stderr

    args = ("--recordings", "2", "--training", "2", "--size", "70000", "--exercise", iso_window(win))
    truth: dict[str, dict[int, str]] = {}
    with (  # the cameras come up first: what is timed below is signing, publishing and docking only
        SimProcess("usbip", "CAM-X3", *args, truth_dir=tmp_path) as three,
        SimProcess("usbip", "CAM-X1", *args, truth_dir=tmp_path) as one,
    ):
        # DSA-FULL's steps, timed on this machine as loaded now, give DSA-SHORT its life: the same steps
        # (sign, publish, dock a camera of the same recordings) must fit in it, with MARGIN for a slowdown.
        started = time.monotonic()
        sign_and_publish(full)
        rc3, docked3 = dock.ingest_json(three.address)
        measured = time.monotonic() - started
        life = MARGIN * measured
        not_after = float(math.floor(time.time() + life))  # agreements carry whole seconds
        short = _draft(drafts / "DSA-SHORT.json", "DSA-SHORT", "EX-1", {"HO": rcpt["HO"]}, not_after)
        sign_and_publish(short)
        rc1, docked1 = dock.ingest_json(one.address)
        ended = time.time()
        truth = {"CAM-X1": one.training(), "CAM-X3": three.training()}
    assert ended < not_after, (  # checked first: a docking cut short by the expiry fails here, not below
        f"signing DSA-SHORT and the docking under it outlasted its {life:.0f} s ({MARGIN:.0f} x the "
        f"{measured:.1f} s the same steps took under DSA-FULL just before): the machine slowed down that much"
    )
    assert rc3 == 0 and rc1 == 0, (docked3, docked1)
    first = {"cameras": [*docked3["cameras"], *docked1["cameras"]]}
    cams = {c["serial"]: c for c in first["cameras"]}
    assert cams["CAM-X1"]["verified"] == cams["CAM-X3"]["verified"] == 2, first

    with SimProcess("usbip", "CAM-X2", *args, truth_dir=tmp_path) as two:  # comes up while DSA-SHORT runs out
        while time.time() <= not_after + 1:  # expired by the dock's own clock (bounded: at most `life` s)
            time.sleep(0.2)
        listed = json.loads(dock.cli("agreement", "list", "--json").stdout)
        states = {a["id"]: a["state"] for a in listed["agreements"]}
        assert states == {"DSA-SHORT": "expired", "DSA-FULL": "in force"}
        rc, later = dock.ingest_json(two.address)
        again_rc, again = dock.ingest_json(two.address)  # it stayed on the camera: listed again, never erased
    assert rc == 0 and again_rc == 0, (later, again)
    for report in (later, again):
        cam = report["cameras"][0]
        assert cam["out_of_scope_reasons"]["no_agreement"] == 2 and cam["erased"] == 0, cam
        assert cam["recordings"] == 2 and cam["verified"] == 0, cam
    assert cams["CAM-X1"]["erased"] == 2  # erasing is on: only footage that left is erased

    s3 = seaweedfs.client()
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=s3_bucket)
            for o in page.get("Contents", [])]  # fmt: skip
    data = {k: s3.get_object(Bucket=s3_bucket, Key=k)["Body"].read() for k in keys}
    assert not [k for k in keys if "CAM-X2" in k]  # nothing docked after expiry left, for anybody
    # The reason is in the dock's signed custody chain (published with the next sealed batch: nothing was
    # uploaded since, so it is still on the dock).
    journal = dock.journal()
    try:
        lines = [str(r[0]) for r in journal.query("SELECT line FROM custody ORDER BY seq")]
    finally:
        journal.close()
    stayed = [json.loads(x) for x in lines if '"skipped_out_of_scope"' in x]
    x2 = [s for s in stayed if s["camera"] == "CAM-X2"]
    assert x2 and {s["code"] for s in x2} == {"no_agreement"}
    assert all("DSA-SHORT: expired" in s["reason"] for s in x2), x2

    # Each party's hybrid identity opens, with the npm package, exactly the recordings its agreement covered.
    recordings = {k: v for k, v in data.items() if "/recordings/" in k and k.endswith(".age")}
    assert {k.split("/")[-2] for k in recordings} == {"CAM-X1", "CAM-X3"}, sorted(recordings)
    readers = {"HO": {"CAM-X1"}, "PLATFORM": {"CAM-X3"}, "archive": {"CAM-X1", "CAM-X3"}}
    scratch = tmp_path / "node"
    scratch.mkdir()
    for party, cameras in readers.items():
        for key, plain in _node_opens(ids[party], recordings, scratch / party).items():
            camera = key.split("/")[-2]
            if camera in cameras:
                assert plain is not None, (party, key)
                assert hashlib.sha256(plain).hexdigest() in truth[camera].values()
            else:
                assert plain is None, f"{party} could decrypt {key}"

    # Earlier disclosures stay valid: verify and the disclosure report pass against the signed manifests.
    common = ("--bucket", url, "--endpoint-url", seaweedfs.endpoint_url, "--allowed-signers", str(dock.allowed_signers))
    verified = dock.cli("verify", *common, "--identity", str(ids["archive"]), "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    report = dock.cli("disclosures", *common, "--json")
    assert report.returncode == 0, report.stderr
    rdoc = json.loads(report.stdout)
    assert rdoc["checked"] is True and rdoc["findings"] == []
    by_party = {p["party"]: p["disclosures"] for p in rdoc["parties"]}
    rec_rows = {p: {r["camera_serial"] for r in rows if r["object"] == "recording"} for p, rows in by_party.items()}
    assert rec_rows == {"HO": {"CAM-X1"}, "PLATFORM": {"CAM-X3"}}
    assert {r["agreements"][0]["id"] for r in by_party["HO"]} == {"DSA-SHORT"}
    sidecar_items = {p: [r["data_items"] for r in rows if r["object"] == "sidecar"] for p, rows in by_party.items()}
    assert sidecar_items == {"HO": [["footage", "times"]], "PLATFORM": [doc["data_items"]]}

    # ... and the Home Office still receives, under the expired agreement, what it was sent while it was in force.
    out = tmp_path / "ho"
    received = dock.cli("receive", *common, "--identity", str(ids["HO"]), "--agreement", "DSA-SHORT", "--out", str(out))
    assert received.returncode == 0, received.stdout + received.stderr
    got = {hashlib.sha256(p.read_bytes()).hexdigest() for p in out.rglob("*") if p.is_file() and p.name != "SHA256SUMS"}
    assert got == set(truth["CAM-X1"].values())

    # Nothing in the bucket names the site or an officer in clear: manifests, custody, party sidecars,
    # disclosures and the fleet's register and agreements included.
    assert any("_fleet/" in k for k in keys), keys
    for needle in (SITE, "Hendon", "OFFICER-CAM-X"):
        for key, value in data.items():
            assert needle.encode().lower() not in value.lower(), (needle, key)
            assert needle.lower() not in key.lower(), (needle, key)
