"""The party's side (issue 12 item 8): ``bodycam-sync receive`` fetches, checks and decrypts exactly what an
agreement discloses to the party holding an identity, and ``sha256sum -c`` accepts what it wrote.

One dock, two published agreements (DSA-A: exercise EX-1 to P1 and P2; DSA-B: EX-2 to P3), two virtual
cameras over USB/IP, a local bucket. Then each party runs receive as it would at home.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

from bodycam.agent.formats.agecrypt import generate_hybrid_identity, generate_identity
from bodycam.agent.formats.sshsig import allowed_signers_line, generate_key, parse_public_key_line

from .agreement_setup import draft as _draft
from .agreement_setup import make_force
from .dock import CLI, Dock, iso_window, make_dock, window
from .sims import SimProcess


def _receive(
    dock: Dock, identity: Path, agreement: str, out: Path, signers: Path | None = None, umask: int = 0o022
) -> tuple[int, dict, str]:
    args = ("receive", "--bucket", dock.bucket_url, "--allowed-signers", str(signers or dock.allowed_signers),
            "--identity", str(identity), "--agreement", agreement, "--out", str(out), "--json")  # fmt: skip
    proc = subprocess.run(
        [CLI, "--config", str(dock.config_path), *args],
        capture_output=True, text=True, timeout=300, preexec_fn=lambda: os.umask(umask),
    )  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def _files(out: Path) -> dict[str, str]:
    return {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in out.rglob("*")
        if p.is_file() and p.name != "SHA256SUMS"
    }


def test_each_party_receives_exactly_its_share_checked_and_resumable(tmp_path: Path) -> None:
    bucket = tmp_path / "bucket"
    dock = make_dock(tmp_path / "dock", bucket.as_uri())
    made = make_force(tmp_path, ("P1", "P2", "P3", "archive"))
    force, controller = made.keys, made.controller_pub.strip()
    ids, rcpt = made.identities, made.recipients
    signed = tmp_path / "signed"
    with dock.config_path.open("a") as f:
        f.write(f'[agreements]\ncontroller_keys = ["{controller}"]\narchive = "{rcpt["archive"]}"\n')
        f.write("[fleet]\nrefresh_s = 0\n")
    drafts = tmp_path / "drafts"
    drafts.mkdir()
    for ident, exercise, parties in (("DSA-A", "EX-1", ("P1", "P2")), ("DSA-B", "EX-2", ("P3",))):
        draft = _draft(drafts / f"{ident}.json", ident, exercise, {p: rcpt[p] for p in parties}, time.time() + 86400)
        assert dock.cli("agreement", "sign", str(draft), "--key", str(force / "controller"),
                        "--out", str(signed)).returncode == 0  # fmt: skip
    published = dock.cli("agreement", "publish", "--dir", str(signed))
    assert published.returncode == 0, published.stderr

    win = window()
    dock.enroll("CAM-A1", "CAM-B2")
    dock.exercise("EX-1", win, "CAM-A1")
    dock.exercise("EX-2", win, "CAM-B2")
    args = ("--recordings", "3", "--training", "2", "--size", "150000", "--exercise", iso_window(win))
    with (
        SimProcess("usbip", "CAM-A1", *args, truth_dir=tmp_path) as a1,
        SimProcess("usbip", "CAM-B2", *args, truth_dir=tmp_path) as b2,
    ):
        rc, report = dock.ingest_json(a1.address, b2.address)
        truth = {"CAM-A1": a1.training(), "CAM-B2": b2.training()}
    assert rc == 0, report

    # P1 receives CAM-A1's training footage, nothing else; sha256sum -c accepts it. Under umask 000 too,
    # the decrypted footage and SHA256SUMS are 0600 and the directories receive made 0700 (before: 0666
    # and 0777, anyone on the machine could read the footage)
    out = tmp_path / "p1" / "share"
    rc, got, err = _receive(dock, ids["P1"], "DSA-A", out, umask=0)
    assert rc == 0 and got["party"] == "P1" and not got["problems"], (got, err)
    made = [out.parent, out, *out.rglob("*")]
    assert {oct(p.stat().st_mode & 0o777) for p in made if p.is_dir()} == {"0o700"}, made
    assert {oct(p.stat().st_mode & 0o777) for p in made if p.is_file()} == {"0o600"}, made
    files = _files(out)
    assert len(files) == 2 and all(name.split("/")[2] == "CAM-A1" for name in files)
    assert set(files.values()) == set(truth["CAM-A1"].values())
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=out, capture_output=True, text=True, timeout=60)
    assert check.returncode == 0 and check.stdout.count(": OK") == 2, check.stdout + check.stderr

    # Resumable: a second run finds both complete and fetches nothing; a truncated file is fetched again.
    rc, got, _ = _receive(dock, ids["P1"], "DSA-A", out)
    assert rc == 0 and got["received"] == [] and len(got["already_received"]) == 2
    first = out / sorted(files)[0]
    first.write_bytes(first.read_bytes()[:1000])
    rc, got, _ = _receive(dock, ids["P1"], "DSA-A", out)
    assert rc == 0 and got["received"] == [sorted(files)[0]] and _files(out) == files

    # P3 receives CAM-B2's under DSA-B; under DSA-A, where it is no party, it receives nothing.
    rc, got, _ = _receive(dock, ids["P3"], "DSA-B", tmp_path / "p3")
    assert rc == 0 and set(_files(tmp_path / "p3").values()) == set(truth["CAM-B2"].values())
    rc, got, err = _receive(dock, ids["P3"], "DSA-A", tmp_path / "p3-a")
    assert rc == 0 and got["party"] is None and _files(tmp_path / "p3-a") == {}, got
    assert not (tmp_path / "p3-a" / "SHA256SUMS").exists()  # before: an empty one, which sha256sum -c fails
    assert "nothing to receive" in err and len(err.strip().splitlines()) == 1

    # A manifest signed by a key the party does not trust for the dock: nothing from it is received.
    other = generate_key(force / "other", "other")
    stranger = force / "stranger_signers"
    stranger.write_text(allowed_signers_line("dock-test", parse_public_key_line(other)) + "\n")
    rc, got, err = _receive(dock, ids["P1"], "DSA-A", tmp_path / "p1-untrusted", stranger)
    assert rc == 1 and _files(tmp_path / "p1-untrusted") == {}
    assert "its recordings were not received" in err and "Traceback" not in err

    # A tampered object is refused with a clear line, and the other recording still arrives.
    victim = sorted(p for p in bucket.rglob("*.age") if p.parent.name == "CAM-A1")[0]
    victim.chmod(0o600)
    data = bytearray(victim.read_bytes())
    data[-100] ^= 0x01
    victim.write_bytes(bytes(data))
    rc, got, err = _receive(dock, ids["P1"], "DSA-A", tmp_path / "p1-tampered")
    assert rc == 1 and len(got["problems"]) == 1, got
    line = err.strip().splitlines()[0]
    assert str(victim.relative_to(bucket)) in line and "ciphertext SHA-256" in line and "altered" in line, err
    assert len(_files(tmp_path / "p1-tampered")) == 1
    leftovers = [p for p in (tmp_path / "p1-tampered").rglob("*") if p.name.endswith(".part")]
    assert leftovers == []

    # An object gone before the retention its manifest signs is a problem, not a quiet absence.
    victim.unlink()
    rc, got, err = _receive(dock, ids["P1"], "DSA-A", tmp_path / "p1-gone")
    assert rc == 1 and got["past_retention"] == [] and "its retention has not passed" in err, err


def test_a_post_quantum_party_receives_with_its_hybrid_identity(tmp_path: Path) -> None:
    """The same with ML-KEM-768 + X25519 hybrid keys (age1pq1...): receive decrypts with the hybrid
    identity, and an agreement kept only on the party's side is given with --agreement-file."""
    bucket = tmp_path / "bucket"
    dock = make_dock(tmp_path / "dock", bucket.as_uri())
    force = tmp_path / "force"
    force.mkdir()
    controller = generate_key(force / "controller", "force").strip()
    secret, pq = generate_hybrid_identity()
    (force / "pq.agekey").write_text(secret + "\n")
    _, archive = generate_hybrid_identity()
    signed = tmp_path / "signed"
    with dock.config_path.open("a") as f:  # a dock-local agreement: nothing published in the bucket
        f.write(f'[agreements]\ncontroller_keys = ["{controller}"]\narchive = "{archive}"\ndir = "{signed}"\n')
    draft = _draft(tmp_path / "DSA-PQ.json", "DSA-PQ", "EX-Q", {"HO": pq}, time.time() + 86400)
    assert dock.cli("agreement", "sign", str(draft), "--key", str(force / "controller"),
                    "--out", str(signed)).returncode == 0  # fmt: skip
    win = window()
    dock.enroll("CAM-Q1")
    dock.exercise("EX-Q", win, "CAM-Q1")
    args = ("--recordings", "2", "--training", "2", "--size", "70000", "--exercise", iso_window(win))
    with SimProcess("usbip", "CAM-Q1", *args, truth_dir=tmp_path) as cam:
        rc, report = dock.ingest_json(cam.address)
        truth = cam.training()
    assert rc == 0, report
    out = tmp_path / "ho"
    rc, _, err = _receive(dock, force / "pq.agekey", "DSA-PQ", out)
    assert rc == 1 and "--agreement-file" in err and _files(out) == {}, err  # the agreement is not in the bucket
    proc = dock.cli(
        "receive", "--bucket", dock.bucket_url, "--allowed-signers", str(dock.allowed_signers),
        "--identity", str(force / "pq.agekey"), "--agreement", "DSA-PQ", "--out", str(out),
        "--agreement-file", str(signed / "DSA-PQ.v1.json"),
    )  # fmt: skip
    assert proc.returncode == 0 and "party HO: 2 recordings received" in proc.stdout, proc.stdout + proc.stderr
    assert set(_files(out).values()) == set(truth.values())
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=out, capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr


def test_an_object_gone_after_its_retention_is_not_a_problem_but_one_gone_before_is(tmp_path: Path) -> None:
    bucket = tmp_path / "bucket"
    dock = make_dock(tmp_path / "dock", bucket.as_uri())
    controller = generate_key(tmp_path / "controller", "force").strip()
    secret, p1 = generate_identity()
    (tmp_path / "p1.agekey").write_text(secret + "\n")
    _, archive = generate_identity()
    with dock.config_path.open("a") as f:
        f.write(f'[agreements]\ncontroller_keys = ["{controller}"]\narchive = "{archive}"\n[fleet]\n')
    draft = _draft(tmp_path / "DSA-R.json", "DSA-R", "EX-R", {"P1": p1}, time.time() + 86400)
    doc = json.loads(draft.read_text())
    doc["parties"][0]["retention_days"] = 1  # footage recorded two days ago: its retention has passed
    draft.write_text(json.dumps(doc))
    assert dock.cli("agreement", "sign", str(draft), "--key", str(tmp_path / "controller"),
                    "--out", str(tmp_path / "signed")).returncode == 0  # fmt: skip
    assert dock.cli("agreement", "publish", "--dir", str(tmp_path / "signed")).returncode == 0
    now = time.time()
    win = (now - 50 * 3600, now - 49 * 3600)
    dock.enroll("CAM-R1")
    dock.exercise("EX-R", win, "CAM-R1")
    args = ("--recordings", "2", "--training", "2", "--size", "70000", "--exercise", iso_window(win))
    with SimProcess("usbip", "CAM-R1", *args, truth_dir=tmp_path) as cam:
        rc, report = dock.ingest_json(cam.address)
    assert rc == 0, report
    objects = sorted(p for p in bucket.rglob("*.age") if p.parent.name == "CAM-R1")
    objects[0].chmod(0o600)
    objects[0].unlink()  # as 'retention apply' would once retain_until passed
    rc, got, _ = _receive(dock, tmp_path / "p1.agekey", "DSA-R", tmp_path / "out")
    assert rc == 0 and len(got["received"]) == 1 and got["past_retention"] == [str(objects[0].relative_to(bucket))]
    manifest = next(bucket.rglob("manifest.json"))
    entry = next(e for e in json.loads(manifest.read_bytes())["recordings"] if e["key"].endswith(objects[1].name))
    assert entry["retain_until"] < time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()), entry


def test_a_named_pipe_for_sha256sums_in_out_is_one_line_not_a_hang(tmp_path: Path) -> None:
    """receive reads the SHA256SUMS an earlier run left in --out first: a named pipe there held it in
    open() for ever, waiting for a writer no one starts. Now it is refused in one line, exit 2, as every
    file a person hands the tools is (drivers/files.py); a file over the bound likewise."""
    from .signedbucket import Dock as SignedDock
    from .signedbucket import SignedBucket

    bucket = SignedBucket(tmp_path / "bucket")
    dock = SignedDock("dock-a")
    bucket.trust(dock)
    bucket.seal(dock)
    secret, _ = generate_identity()
    identity = tmp_path / "party.agekey"
    identity.write_text(secret + "\n")
    out = tmp_path / "out"
    out.mkdir()
    os.mkfifo(out / "SHA256SUMS")
    args = [CLI, "receive", "--bucket", bucket.url, "--allowed-signers", str(bucket.allowed_signers),
            "--identity", str(identity), "--agreement", "DSA-A", "--out", str(out)]  # fmt: skip
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "SHA256SUMS is not a regular file" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
