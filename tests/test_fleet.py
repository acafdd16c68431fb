"""Fleet-wide by construction (issue 12 item 2): two docks, two configs, two journals, one SeaweedFS.

Dock 1 (where the force's armourer works) registers an exercise and enrols cameras, then publishes the
signed register and a signed agreement in the bucket. Dock 2 knows none of it locally: a camera of that
exercise docks there, authenticates against the enrolment from the bucket, and its training footage
leaves under the published agreement. A revocation published later stops new disclosures at both
docks; a forged and an unsigned agreement, and a forged newer register, are refused in one line each;
with S3 down, dock 2 works from its private cache (0700/0600 whatever the umask).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bodycam.agent.formats import agreements as ag
from bodycam.agent.formats import fleet as fl
from bodycam.agent.formats.agecrypt import generate_identity
from bodycam.agent.formats.sshsig import (
    allowed_signers_line,
    generate_key,
    load_private_key,
    parse_public_key_line,
    public_key_line,
    sign,
)
from bodycam.agent.pipeline.fleet import FleetSource
from bodycam.agent.storage.bucket import Bucket, open_bucket
from bodycam.agent.storage.wrapper import BucketWrapper

from .agreement_setup import draft as _draft
from .dock import Dock, iso_window, make_dock, window
from .s3server import SeaweedFS
from .sims import SimProcess


def _second_dock(root: Path, url: str, endpoint: str) -> Dock:
    """make_dock names every dock 'dock-test': this one is 'dock-two' (its own key, journal, config)."""
    dock = make_dock(root, url, endpoint)
    dock.config_path.write_text(dock.config_path.read_text().replace('dock_id = "dock-test"', 'dock_id = "dock-two"'))
    pub = (root / "keys" / "dock_ed25519.pub").read_text()
    dock.allowed_signers.write_text(allowed_signers_line("dock-two", parse_public_key_line(pub)) + "\n")
    return dock


def _fleet_config(dock: Dock, controller_pub: str, archive: str) -> None:
    with dock.config_path.open("a") as f:
        f.write(f'[agreements]\ncontroller_keys = ["{controller_pub.strip()}"]\narchive = "{archive}"\n')
        f.write("[fleet]\nrefresh_s = 0\n")


def _put(s3: Any, bucket: str, key: str, path: Path) -> None:
    s3.put_object(Bucket=bucket, Key=f"training/{key}", Body=path.read_bytes())


def _one_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_two_docks_share_agreements_register_and_enrolments_through_the_bucket(
    tmp_path: Path, seaweedfs: SeaweedFS, s3_bucket: str
) -> None:
    url = f"s3://{s3_bucket}/training"
    one = make_dock(tmp_path / "one", url, seaweedfs.endpoint_url)
    two = _second_dock(tmp_path / "two", url, seaweedfs.endpoint_url)
    force = tmp_path / "force"
    force.mkdir()
    controller_pub = generate_key(force / "controller", "force")
    generate_key(force / "impostor", "impostor")
    secret, p1 = generate_identity()
    (force / "P1.agekey").write_text(secret + "\n")
    _, archive = generate_identity()
    for dock in (one, two):
        _fleet_config(dock, controller_pub, archive)

    # Dock 1: the register (exercise EX-F1 at a named site, cameras allocated to officers) and the agreement.
    win = window()
    cams = ("CAM-F1", "CAM-F2", "CAM-F3", "CAM-F4")
    one.enroll(*cams)
    one.exercise("EX-F1", win, *cams, site="Hendon Firing Range")
    published = one.cli("fleet", "publish", "--key", str(force / "controller"), "--json")
    assert published.returncode == 0, published.stderr
    assert json.loads(published.stdout)["version"] == 1
    drafts, signed = tmp_path / "drafts", tmp_path / "signed"
    drafts.mkdir()
    for ident, key in (("DSA-F", "controller"), ("FORGED", "impostor"), ("UNSIGNED", "controller")):
        draft = _draft(drafts / f"{ident}.json", ident, "EX-F1", {"P1": p1}, time.time() + 86400)
        done = one.cli("agreement", "sign", str(draft), "--key", str(force / key), "--out", str(signed))
        assert done.returncode == 0, done.stderr
    pub = one.cli("agreement", "publish", str(signed / "DSA-F.v1.json"))
    assert pub.returncode == 0 and "published" in pub.stdout, pub.stderr
    again = one.cli("agreement", "publish", str(signed / "DSA-F.v1.json"))
    assert again.returncode == 0 and "already published" in again.stdout, again.stderr
    refused = one.cli("agreement", "publish", str(signed / "FORGED.v1.json"))
    assert refused.returncode == 1 and "FORGED.v1.json refused" in _one_line(refused)

    # Someone with write access to the bucket adds a forged and an unsigned agreement, and a forged
    # register with a higher version that drops an exercise's camera key for its own.
    s3 = seaweedfs.client()
    _put(s3, s3_bucket, "_fleet/agreements/FORGED.v1.json", signed / "FORGED.v1.json")
    _put(s3, s3_bucket, "_fleet/agreements/FORGED.v1.json.sig", signed / "FORGED.v1.json.sig")
    _put(s3, s3_bucket, "_fleet/agreements/UNSIGNED.v1.json", signed / "UNSIGNED.v1.json")
    forged = fl.build_register(7, time.time(), [], [fl.RegisteredCamera("CAM-F1", b"\x01" * 32, None)])
    s3.put_object(Bucket=s3_bucket, Key="training/_fleet/register/v0000000007.json", Body=forged)
    s3.put_object(
        Bucket=s3_bucket,
        Key="training/_fleet/register/v0000000007.json.sig",
        Body=fl.sign_register(forged, load_private_key(force / "impostor")).encode(),
    )

    # Dock 2 knows nothing locally; CAM-F1 docks there (with a umask that would open any file it creates).
    args = ("--recordings", "3", "--training", "2", "--size", "70000", "--exercise", iso_window(win))
    old_umask = os.umask(0)
    try:
        with SimProcess("usbip", "CAM-F1", *args, truth_dir=tmp_path) as cam:
            rc, report = two.ingest_json(cam.address)
            expected = cam.training()
            seen = json.loads(two.cli("devices", "--usbip", cam.address, "--json").stdout)
    finally:
        os.umask(old_umask)
    assert rc == 0, report
    assert report["cameras"][0]["verified"] == 2, report
    assert seen["cameras"][0]["enrolled"] is True, seen  # devices knows the fleet's enrolment too
    cache = tmp_path / "two" / "state" / "fleet"
    for path in [cache, *cache.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
    allocated = two.cli("allocate", "CAM-F1", "--officer", "PC-2002")  # allocations stay on the dock
    assert allocated.returncode == 0, allocated.stderr
    shown = json.loads(two.cli("fleet", "show", "--json").stdout)
    assert shown["register"]["version"] == 1 and shown["bucket_error"] is None
    assert [a["id"] for a in shown["agreements"]] == ["DSA-F"]
    reasons = {r["object"]: r["reason"] for r in shown["refused"]}
    assert "not among the 1 allowed" in reasons["FORGED.v1.json"]
    assert "UNSIGNED.v1.json is not signed" in reasons["UNSIGNED.v1.json"]
    assert "register v0000000007.json refused" in reasons["v0000000007.json"]
    assert all("\n" not in r for r in reasons.values())

    # Its footage left under the published agreement, to P1 and the archive only; verify is clean.
    manifests = [
        json.loads(s3.get_object(Bucket=s3_bucket, Key=o["Key"])["Body"].read())
        for o in s3.list_objects_v2(Bucket=s3_bucket, Prefix="training/dock-two/")["Contents"]
        if o["Key"].endswith("/manifest.json")
    ]
    entries = [e for m in manifests for e in m["recordings"]]
    assert {e["plaintext_sha256"] for e in entries} == set(expected.values())
    sha = hashlib.sha256((signed / "DSA-F.v1.json").read_bytes()).hexdigest()
    assert all(e["agreements"] == [{"id": "DSA-F", "version": 1, "sha256": sha}] for e in entries)
    assert all(e["parties"] == ["P1"] for e in entries)
    body = s3.get_object(Bucket=s3_bucket, Key=f"training/{entries[0]['key']}")["Body"].read()
    plain = subprocess.run(["age", "-d", "-i", str(force / "P1.agekey")], input=body, capture_output=True, timeout=60)
    assert plain.returncode == 0 and hashlib.sha256(plain.stdout).hexdigest() in expected.values()
    verified = two.cli("verify", "--bucket", url, "--endpoint-url", seaweedfs.endpoint_url,
                       "--allowed-signers", str(two.allowed_signers), "--json")  # fmt: skip
    assert verified.returncode == 0, verified.stdout[-2000:] + verified.stderr

    # Its custody says from which register it trusted the camera's key and under which documents it worked.
    custody = b"".join(
        s3.get_object(Bucket=s3_bucket, Key=o["Key"])["Body"].read()
        for o in s3.list_objects_v2(Bucket=s3_bucket, Prefix="training/dock-two/")["Contents"]
        if o["Key"].endswith("/custody.jsonl")
    ).decode()
    events = [json.loads(line) for line in custody.splitlines()]
    loaded = [(e["object"], e["name"]) for e in events if e["event"] == "fleet_loaded"]
    assert loaded == [("register", "v0000000001.json"), ("agreement", "DSA-F.v1.json")], loaded
    assert [e["event"] for e in events].index("fleet_loaded") < [e["event"] for e in events].index("authenticated")

    # P1 receives it from S3 as it would at home (the agreement from _fleet/, the docks' allowed_signers).
    received = two.cli(
        "receive", "--bucket", url, "--endpoint-url", seaweedfs.endpoint_url, "--allowed-signers",
        str(two.allowed_signers), "--identity", str(force / "P1.agekey"), "--agreement", "DSA-F",
        "--out", str(tmp_path / "p1"), "--json",
    )  # fmt: skip
    assert received.returncode == 0 and len(json.loads(received.stdout)["received"]) == 2, received.stderr
    sums = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=tmp_path / "p1", capture_output=True, timeout=60)
    assert sums.returncode == 0, sums.stdout

    # A revocation published later stops new disclosures at both docks.
    revoked = one.cli("agreement", "revoke", "DSA-F", "--key", str(force / "controller"), "--out", str(signed))
    assert revoked.returncode == 0, revoked.stderr
    assert one.cli("agreement", "publish", str(signed / "DSA-F.revoked.json")).returncode == 0
    for dock, serial in ((one, "CAM-F2"), (two, "CAM-F3")):
        with SimProcess("usbip", serial, *args, truth_dir=tmp_path) as cam:
            rc, report = dock.ingest_json(cam.address)
        assert rc == 0, report
        assert report["cameras"][0]["out_of_scope_reasons"]["no_agreement"] == 2, report
    assert not s3.list_objects_v2(Bucket=s3_bucket, Prefix="training/dock-test/").get("Contents")

    # S3 down: dock 2 still knows the register, the enrolments and the revocation from its cache.
    seaweedfs.stop()
    try:
        down = json.loads(two.cli("fleet", "show", "--json").stdout)
        assert down["bucket_error"] and down["register"]["version"] == 1
        assert down["revoked"] == ["DSA-F"]
        with SimProcess("usbip", "CAM-F4", *args, truth_dir=tmp_path) as cam:
            rc, report = two.ingest_json(cam.address)
        camera = report["cameras"][0]
        assert camera["serial"] == "CAM-F4" and not any("enrol" in e for e in camera["errors"]), report
        assert camera["out_of_scope_reasons"]["no_agreement"] == 2, report
    finally:
        seaweedfs.start()


class _Counting(BucketWrapper):
    def __init__(self, inner: Bucket) -> None:
        super().__init__(inner)
        self.fetched: list[str] = []

    def get_bytes(self, key: str, max_size: int) -> bytes:
        self.fetched.append(key)
        return super().get_bytes(key, max_size)


def test_forged_objects_are_fetched_once_and_cannot_hide_a_valid_register(tmp_path: Path) -> None:
    """Five forged register versions above a valid one: each refresh fetches at most four, none twice
    while unchanged, so the valid version is reached on the next refresh; a forged agreement is read once."""
    controller, impostor = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    inner = open_bucket((tmp_path / "bucket").as_uri())
    bucket = _Counting(inner)
    camera = fl.RegisteredCamera("CAM-R1", b"\x02" * 32, None)
    for version, key in ((1, controller), (2, controller), *((v, impostor) for v in range(3, 8))):
        raw = fl.build_register(version, time.time(), [], [camera] if version == 2 else [])
        inner.put_object(fl.register_key(version) + ".sig", fl.sign_register(raw, key).encode())
        inner.put_object(fl.register_key(version), raw)
    forged = ag.canonical({"format": ag.REVOCATION_FORMAT, "id": "DSA-X", "revoked": "2026-01-01T00:00:00Z"})
    inner.put_object(f"{fl.AGREEMENTS}/DSA-X.revoked.json", forged)
    inner.put_object(
        f"{fl.AGREEMENTS}/DSA-X.revoked.json.sig", sign(forged, impostor, ag.REVOCATION_NAMESPACE).encode()
    )
    line = public_key_line(controller.public_key())
    source = FleetSource(tmp_path / "cache", (line,), refresh_s=0.0)

    first = source.view(bucket)
    assert first.register is None  # the four newest (7, 6, 5, 4) were tried and refused
    second = source.view(bucket)
    assert second.register is not None and second.register.version == 2
    assert second.register.device_key("CAM-R1") == b"\x02" * 32
    third = source.view(bucket)
    assert third.register is not None and third.register.version == 2 and "DSA-X" not in third.agreements.revoked
    documents = [k for k in bucket.fetched if not k.endswith(".sig")]
    assert sorted(documents) == sorted({*documents}), documents  # nothing fetched twice
    assert {fl.register_key(v) for v in range(2, 8)} <= set(documents)
    assert {r[0] for r in third.refused} >= {fl.register_name(v) for v in range(3, 8)} | {"DSA-X.revoked.json"}


def test_a_camera_enrolled_by_the_fleet_register_takes_firmware_at_any_dock(tmp_path: Path) -> None:
    """``firmware push`` authenticates against the fleet register's key when the dock has no enrolment."""
    from bodycam.drivers.virtual.camera import sim_vendor_key

    from .sims import serve, spec
    from .test_firmware import build

    controller = Ed25519PrivateKey.generate()
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    with dock.config_path.open("a") as f:
        f.write(f'[fleet]\ncontroller_keys = ["{public_key_line(controller.public_key())}"]\nrefresh_s = 0\n')
    (dock.root / "vendor.pub").write_text(public_key_line(sim_vendor_key().public_key()) + "\n")
    image = build(tmp_path, "1.5.0")
    with serve("usbip", spec("CAM-FWF")) as sim:
        push = ("firmware", "push", str(image), "--vendor-key", str(dock.root / "vendor.pub"), "--usbip", sim.address,
                "--camera", "CAM-FWF")  # fmt: skip
        refused = dock.cli(*push)
        assert refused.returncode != 0 and "not enrolled" in refused.stderr, refused.stdout + refused.stderr
        inner = open_bucket((tmp_path / "bucket").as_uri())
        raw = fl.build_register(1, time.time(), [], [fl.RegisteredCamera("CAM-FWF", sim.enrolled_key, None)])
        inner.put_object(fl.register_key(1) + ".sig", fl.sign_register(raw, controller).encode())
        inner.put_object(fl.register_key(1), raw)
        assert json.loads(dock.cli("fleet", "show", "--json").stdout)["register"]["cameras"] == ["CAM-FWF"]
        pushed = dock.cli(*push)
        assert pushed.returncode == 0, pushed.stdout + pushed.stderr
        assert sim.camera.firmware.active_version == "1.5.0"


def test_fleet_show_prints_a_hostile_object_name_escaped(tmp_path: Path) -> None:
    """``fleet show`` names each refused object of ``_fleet/`` as the bucket spells it: a name holding
    terminal controls (ESC sequences, CR, a newline) reached the armourer's terminal raw and could print
    lines of its own. The text output shows them escaped; --json keeps the exact name."""
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    force = tmp_path / "force"
    force.mkdir()
    _, archive = generate_identity()
    _fleet_config(dock, generate_key(force / "controller", "force"), archive)
    name = "X\x1b[2J\rregister version 9: all cameras\n.v1.json"
    hostile = tmp_path / "bucket" / "_fleet" / "agreements" / name
    hostile.parent.mkdir(parents=True)
    hostile.write_bytes(b"{}")
    shown = dock.cli("fleet", "show")
    assert shown.returncode == 0, shown.stderr
    assert not any(ch in shown.stdout for ch in "\x1b\r"), shown.stdout
    assert not any(line.startswith("register version") for line in shown.stdout.splitlines()), shown.stdout
    refused = json.loads(dock.cli("fleet", "show", "--json").stdout)["refused"]
    assert [r["object"] for r in refused] == [f"_fleet/agreements/{name}"], refused


def test_a_fleet_with_more_agreements_than_a_local_directory_holds_still_docks(tmp_path: Path) -> None:
    """The bucket's _fleet/agreements/ is read up to 1,088 objects (544 signed documents), but the dock's
    cache of them was loaded with the local directory's bound of 512 files: a force that had published
    513 agreement versions over the years stopped every dock with 'holds more than 512 files; archive
    old ones', a cache it cannot archive. The cache is now read up to what the listing can bring."""
    controller = Ed25519PrivateKey.generate()
    bucket = open_bucket((tmp_path / "bucket").as_uri())
    recipient = generate_identity()[1]
    count = ag.MAX_FILES + 8
    for i in range(count):
        doc = {
            "format": ag.FORMAT, "id": f"DSA-{i:04d}", "version": 1, "controller": {"name": "Example Constabulary"},
            "parties": [{"name": "P1", "role": "processor", "lawful_basis": "DPA 2018 s.35",
                         "recipients": [recipient], "retention_days": 90}],
            "purpose": "training", "data_items": ["footage"], "scope": {"exercises": ["EX-1"]},
            "validity": {"not_before": "2026-01-01T00:00:00Z", "not_after": "2036-01-01T00:00:00Z"},
            "review_date": "2030-01-01", "dpia": "DPIA-1",
        }  # fmt: skip
        raw = ag.parse(json.dumps(doc).encode(), canonical_only=False).raw
        name = f"{fl.AGREEMENTS}/DSA-{i:04d}.v1.json"
        bucket.put_object(name + ag.SIG_SUFFIX, sign(raw, controller, ag.NAMESPACE).encode())
        bucket.put_object(name, raw)
    source = FleetSource(tmp_path / "cache", (public_key_line(controller.public_key()),), refresh_s=0.0)
    view = source.view(bucket)
    assert len(view.agreements.agreements) == count and not view.refused, view.refused[:3]
