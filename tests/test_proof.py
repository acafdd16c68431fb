"""Selective disclosure (issue 13 item 4): one recording's proof bundle, made from a real dock's bucket
and log, verifies offline against a witness policy, reveals nothing of the batch's other recordings,
fails once any byte of it changes, and Go's sumdb/tlog checks its inclusion proofs."""

from __future__ import annotations

import base64
import json
import random
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bodycam.agent.audit import disclose, proofcheck
from bodycam.agent.formats import commitment, cosignature, note, proofbundle, witnesspolicy
from bodycam.agent.formats.sshsig import load_private_key
from bodycam.agent.storage import docklog
from bodycam.drivers.errors import BodycamError, ConfigError, IntegrityError

from . import tlogcheck as gocheck
from .dock import DOCK_ID, Dock, iso_window, make_dock, window
from .log_setup import grown_past_a_full_tile
from .s3server import SeaweedFS
from .sims import SimProcess
from .test_witness import witnessed_dock

AUDITING = Path(__file__).resolve().parent.parent / "docs" / "auditing.md"

ORIGIN = docklog.origin(DOCK_ID)


@dataclass
class Setup:
    dock: Dock
    bucket: Path
    vkey: str
    witnesses: dict[str, str]  # policy name -> cosigner verifier key
    manifests: list[dict[str, object]]
    truth: dict[str, list[dict[str, object]]]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    """Two batches: CAM-P1 with three training recordings, then CAM-P2 with one, each checkpoint cosigned
    by two witnesses, each a ``witness serve`` process of its own (C2SP tlog-witness)."""
    tmp = tmp_path_factory.mktemp("proof")
    bucket = tmp / "bucket"
    dock, vkey, ho, auditor, policy = witnessed_dock(tmp, timeout_s=60)
    win = window()
    dock.enroll("CAM-P1", "CAM-P2")
    dock.exercise("EX-P", win, "CAM-P1", "CAM-P2")
    truth: dict[str, list[dict[str, object]]] = {}
    ho.start()
    auditor.start()
    try:
        for transport, serial, training in (("usbip", "CAM-P1", "3"), ("serial", "CAM-P2", "1")):
            args = ("--recordings", "4", "--training", training, "--size", "20000", "--exercise", iso_window(win))
            with SimProcess(transport, serial, *args, truth_dir=tmp) as cam:
                rc, report = dock.ingest_json(cam.address)
                assert rc == 0, report
                truth[serial] = cam.truth
        cosigned = witnesspolicy.load(policy)
        data = (bucket / DOCK_ID / "log" / docklog.WITNESSED).read_bytes()
        assert note.open_checkpoint(data, cosigned.log_verifiers(ORIGIN)).size == 2
        assert cosigned.witnessed(data) == {"ho", "auditor"}
        docs = sorted(
            (json.loads(p.read_bytes()) for p in bucket.rglob("manifest.json")), key=lambda d: int(d["batch_seq"])
        )
        yield Setup(dock, bucket, vkey, {"ho": ho.vkey, "auditor": auditor.vkey}, docs, truth)
    finally:
        ho.stop()
        auditor.stop()


def policy_text(s: Setup, quorum: str = "both", extra: str = "") -> str:
    lines = [f"log {s.vkey}", *(f"witness {name} {vkey}" for name, vkey in s.witnesses.items())]
    lines += ["group both all ho auditor", extra, f"quorum {quorum}"]
    return "\n".join(lines) + "\n"


def write_policy(s: Setup, path: Path, **kw: str) -> Path:
    path.write_text(policy_text(s, **kw))
    return path


def first_batch_recordings(s: Setup) -> list[dict[str, object]]:
    recs = s.manifests[0]["recordings"]
    assert isinstance(recs, list) and len(recs) == 3
    return recs


def make_bundle(s: Setup, tmp_path: Path, which: int = 1) -> tuple[Path, dict[str, object]]:
    rec = first_batch_recordings(s)[which]
    out = tmp_path / "one.tlog-proof"
    proc = s.dock.cli(
        "proof", "--bucket", str(s.bucket), "--camera", str(rec["camera_serial"]),
        "--recording", str(rec["recording_id"]), "--out", str(out), "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["log_index"] == 0 and summary["tree_size"] == 2 and summary["custody_entries"] >= 3
    return out, rec


def test_a_bundle_for_one_recording_verifies_offline_and_reveals_no_other(setup: Setup, tmp_path: Path) -> None:
    out, rec = make_bundle(setup, tmp_path)
    # offline: the bundle and the policy, in a directory of their own, with no bucket anywhere near
    court = tmp_path / "court"
    court.mkdir()
    bundle = court / out.name
    shutil.copy(out, bundle)
    policy = write_policy(setup, court / "policy")
    proc = setup.dock.cli("verify-proof", str(bundle), "--policy", str(policy), "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["ok"] and doc["recording"] == rec and doc["origin"] == ORIGIN
    assert doc["manifest_sha256"] and doc["batch_id"] == setup.manifests[0]["batch_id"]
    assert sorted(doc["witnesses"]) == ["auditor", "ho"] and doc["tree_size"] == 2
    assert {c["event"] for c in doc["custody"]} >= {"pull_started", "pulled", "verified"}
    assert all(c["recording"] == rec["recording_id"] for c in doc["custody"])
    text = setup.dock.cli("verify-proof", str(bundle), "--policy", str(policy))
    assert text.returncode == 0 and text.stdout.startswith("VERIFIED: recording"), text.stdout + text.stderr
    # the line docs/auditing.md shows, and its by-hand reading of the bundle, run as written there
    shown = re.search(r"^VERIFIED: .*$", AUDITING.read_text(encoding="utf-8"), flags=re.M)
    assert shown is not None
    line = shown.group(0)
    for example in ("1007", "CAM-0042", "9f2c...", "20260301T101500Z-000042", " 41 ", " 57 ", "dock-01", "; 3 "):
        line = line.replace(example, example.replace(example.strip(" ;"), "\0"), 1)
    shape = re.escape(line).replace("\0", r"\S+")
    assert re.fullmatch(shape, text.stdout.strip()), (shape, text.stdout)
    by_hand = re.search(
        r"\(`(sed -n 2p F \| cut -c7- \|\s+base64 -d \| jq \.)`\)", AUDITING.read_text(encoding="utf-8")
    )
    assert by_hand is not None, "auditing.md's by-hand reading of a bundle moved"
    command = " ".join(by_hand.group(1).split()).replace(" F ", f" {bundle} ")
    read = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True, timeout=60)
    assert read.returncode == 0, read.stderr
    assert json.loads(read.stdout)["entry"] is not None
    # the bundle is C2SP tlog-proof: header, extra, index, hashes, blank line, the cosigned checkpoint
    data = bundle.read_bytes()
    lines = data.decode().split("\n")
    assert lines[0] == "c2sp.org/tlog-proof@v1" and lines[1].startswith("extra ") and lines[2] == "index 0"
    assert data.endswith((setup.bucket / DOCK_ID / "log" / docklog.WITNESSED).read_bytes())
    # nothing of the other recordings: neither of the batch's two others nor the other batch's one
    extra = base64.b64decode(lines[1][len("extra ") :])
    others = [r for r in first_batch_recordings(setup) if r != rec] + list(setup.manifests[1]["recordings"])  # type: ignore[arg-type]
    assert len(others) == 3
    for other in others:
        for name in ("plaintext_sha256", "ciphertext_sha256", "key"):
            value = str(other[name]).encode()
            assert value not in data and value not in extra, name
        for piece in (f'"recording_id":{other["recording_id"]}', f'"recording":{other["recording_id"]},'):
            if other["camera_serial"] == rec["camera_serial"]:
                assert piece.encode() not in extra
    assert b"CAM-P2" not in extra and b"CAM-P2" not in data
    truth_hashes = [str(t["sha256"]).encode() for t in setup.truth["CAM-P1"] if t["id"] != rec["recording_id"]]
    assert not any(h in extra for h in truth_hashes)
    assert b"OFFICER" not in extra and b"Range 3" not in extra  # nor a clear officer id or site


def _policy(s: Setup, **kw: str) -> witnesspolicy.Policy:
    return witnesspolicy.parse(policy_text(s, **kw))


def test_changing_any_byte_of_the_bundle_makes_it_fail(setup: Setup, tmp_path: Path) -> None:
    out, _ = make_bundle(setup, tmp_path, which=0)
    data = out.read_bytes()
    policy = _policy(setup)
    proofcheck.check(data, policy)
    rng = random.Random(13)
    passed = []
    for i in range(len(data)):
        for value in {data[i] ^ 0x01, data[i] ^ 0x20, rng.randrange(256)} - {data[i]}:
            changed = data[:i] + bytes([value]) + data[i + 1 :]
            try:
                proofcheck.check(changed, policy)
            except BodycamError:
                continue
            passed.append((i, value))
    assert passed == [], f"{len(passed)} single-byte changes still verify, first {passed[:5]} of {len(data)} bytes"
    # and through the command: exit 1, one line naming what failed
    bad = tmp_path / "bad.tlog-proof"
    bad.write_bytes(data.replace(b"index 0", b"index 1"))
    proc = setup.dock.cli("verify-proof", str(bad), "--policy", str(write_policy(setup, tmp_path / "p")))
    assert proc.returncode == 1 and proc.stdout == "", proc.stdout + proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "not proven" in proc.stderr, proc.stderr


def test_the_policy_decides_whose_signatures_count(setup: Setup, tmp_path: Path) -> None:
    out, _ = make_bundle(setup, tmp_path)
    data = out.read_bytes()
    assert proofcheck.check(data, _policy(setup, quorum="ho")).witnesses.keys() == {"ho", "auditor"}
    assert proofcheck.check(data, _policy(setup, quorum="none"))
    # a third witness the quorum needs has not cosigned
    stranger = cosignature.verifier_key("third.example", Ed25519PrivateKey.generate().public_key())
    text = policy_text(setup, quorum="three", extra=f"witness third {stranger}\ngroup three all ho auditor third")
    with pytest.raises(IntegrityError, match="short of the policy's quorum three"):
        proofcheck.check(data, witnesspolicy.parse(text))
    # cosignatures by witnesses the policy does not name are refused, not ignored
    only_log = witnesspolicy.parse(f"log {setup.vkey}\n")
    with pytest.raises(IntegrityError, match="whose key the policy does not name"):
        proofcheck.check(data, only_log)
    # another dock's key: the bundle's log is not one the policy trusts
    other = docklog.verifier_key("dock-other", Ed25519PrivateKey.generate())
    with pytest.raises(IntegrityError, match="names no key for"):
        proofcheck.check(data, witnesspolicy.parse(f"log {other}\n"))
    # a policy naming the dock's origin with another key: the dock's signature is unknown there
    impostor = note.verifier_key(ORIGIN, Ed25519PrivateKey.generate().public_key())
    with pytest.raises(IntegrityError):
        proofcheck.check(data, witnesspolicy.parse(f"log {impostor}\n"))
    # usage errors are exit 2
    proc = setup.dock.cli("verify-proof", str(out), "--policy", str(tmp_path / "missing"))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    proc = setup.dock.cli(
        "verify-proof", str(tmp_path / "missing"), "--policy", str(write_policy(setup, tmp_path / "p"))
    )
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_hostile_bundles_are_refused_in_one_line_and_bounded(setup: Setup, tmp_path: Path) -> None:
    out, _ = make_bundle(setup, tmp_path)
    data = out.read_bytes()
    policy = _policy(setup)
    head, _, checkpoint = data.partition(b"\n\n")
    lines = head.split(b"\n")
    extra = json.loads(base64.b64decode(lines[1][6:]))

    def with_extra(doc: object) -> bytes:
        raw = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        return b"\n".join([lines[0], b"extra " + base64.b64encode(raw), *lines[2:]]) + b"\n\n" + checkpoint

    hostile = [
        b"",
        b"\n\n",
        data[: len(data) // 2],
        b"c2sp.org/tlog-proof@v1\nindex 0\n\n" + checkpoint,  # no extra
        data + b"x" * proofbundle.MAX_BUNDLE,  # too large
        data.replace(b"index 0", b"index " + b"9" * 40),
        data.replace(b"index 0", b"index 00"),
        head + b"\n" + base64.b64encode(bytes(32)) * 1 + b"\n" * 130 + b"\n\n" + checkpoint,
        with_extra({**extra, "custody": [{"line": "{}", "proof": []}] * 10_000}),
        with_extra({**extra, "recording": [[[[[[[[[[[]]]]]]]]]]]}),
        with_extra({**extra, "entry": "[" * 100_000 + "]" * 100_000}),
        with_extra({**extra, "unknown": 1}),
        with_extra({**extra, "recording": {**extra["recording"], "proof": ["AAAA"] * 1000}}),
        with_extra({**extra, "recording": {**extra["recording"], "index": True}}),
        with_extra({**extra, "custody": list(reversed(extra["custody"]))}),
        with_extra({**extra, "custody": extra["custody"] + extra["custody"][:1]}),
        head + b"\n\n" + checkpoint.replace(b"\n\n", b"\n\n" + "\u2014 x AAAA\n".encode() * 200),
    ]
    for i, bad in enumerate(hostile):
        with pytest.raises(IntegrityError) as err:
            proofcheck.check(bad, policy)
        assert "\n" not in str(err.value) and len(str(err.value)) < 300, (i, str(err.value))
    big = tmp_path / "big.tlog-proof"
    big.write_bytes(data + b"\0" * (4 * proofbundle.MAX_BUNDLE))
    proc = setup.dock.cli("verify-proof", str(big), "--policy", str(write_policy(setup, tmp_path / "p")))
    assert proc.returncode == 1 and "larger than" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_go_checks_the_bundle_s_inclusion_proofs(setup: Setup, tmp_path: Path) -> None:
    out, _ = make_bundle(setup, tmp_path, which=2)
    lines = gocheck.run(
        {"vkey": setup.vkey, "origin": ORIGIN, "bundle": str(out), "cosigners": list(setup.witnesses.values())}
    )  # Go opens the checkpoint with the dock's key and both witnesses' cosignature keys
    assert lines[:3] == ["checkpoint OK", "bundle log OK", "bundle recording OK"], lines
    assert len(lines) >= 6 and all(line.startswith("bundle custody ") and line.endswith(" OK") for line in lines[3:])
    # Go refuses the same bundle once its recording's proof is changed
    bundle = proofbundle.parse(out.read_bytes())
    wrong = proofbundle.Bundle(
        bundle.index, bundle.log_proof, bundle.checkpoint, bundle.entry, bundle.recording_index,
        proofbundle.Leaf(bundle.recording.line, (bytes(32), *bundle.recording.proof[1:])), bundle.custody,
    )  # fmt: skip
    bad = tmp_path / "bad.tlog-proof"
    bad.write_bytes(proofbundle.encode(wrong))
    lines = gocheck.run({"vkey": setup.vkey, "origin": ORIGIN, "bundle": str(bad)})
    assert lines[2].startswith("bundle recording FAIL"), lines


def test_proof_names_what_it_cannot_prove(setup: Setup, tmp_path: Path) -> None:
    rec = first_batch_recordings(setup)[0]
    args = ["proof", "--bucket", str(setup.bucket), "--camera", str(rec["camera_serial"])]
    proc = setup.dock.cli(*args, "--recording", "999999", "--out", str(tmp_path / "x"))
    assert proc.returncode == 1 and "holds no recording 999999" in proc.stderr and not (tmp_path / "x").exists()
    out = tmp_path / "exists"
    out.write_text("")
    proc = setup.dock.cli(*args, "--recording", str(rec["recording_id"]), "--out", str(out))
    assert proc.returncode == 2 and "already exists" in proc.stderr, proc.stderr
    # a recording whose object was erased (retention) is still in its manifest and the log: provable
    copy = tmp_path / "erased"
    shutil.copytree(setup.bucket, copy)
    (copy / str(rec["key"])).unlink()
    erased = tmp_path / "erased.tlog-proof"
    proc = setup.dock.cli(
        "proof", "--bucket", str(copy), "--camera", str(rec["camera_serial"]),
        "--recording", str(rec["recording_id"]), "--out", str(erased),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proofcheck.check(erased.read_bytes(), _policy(setup)).recording == rec
    # an object no manifest lists (a stray) is not a recording the bucket can prove
    stray = copy / str(rec["key"]).replace(f"/{rec['recording_id']}.age", "/777.age")
    stray.write_bytes(b"x")
    proc = setup.dock.cli(
        "proof", "--bucket", str(copy), "--camera", str(rec["camera_serial"]), "--recording", "777",
        "--out", str(tmp_path / "stray"),
    )  # fmt: skip
    assert proc.returncode == 1 and "does not list recording 777" in proc.stderr, proc.stderr
    # a manifest sealed before format 1.1 commits to no recording: refused, with the reason
    old = {k: v for k, v in setup.manifests[0].items() if k != "recordings_root"}
    with pytest.raises(IntegrityError, match="before manifests committed"):
        disclose._manifest(
            json.dumps(old, sort_keys=True, separators=(",", ":")).encode(), DOCK_ID, str(old["batch_id"])
        )
    with pytest.raises(ConfigError):
        disclose.build(None, "bad serial!", 1)


def test_a_manifest_with_a_malformed_field_is_named_not_a_traceback(setup: Setup) -> None:
    """``proof`` reads its manifest through the typed Manifest: a canonical manifest whose custody range
    is not two integers is one error naming the field (it once reached ``last_seq - first_seq`` as a
    string and a TypeError)."""
    doc = json.loads(json.dumps(setup.manifests[0]))
    doc["custody"]["last_seq"] = str(doc["custody"]["last_seq"])
    raw = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    with pytest.raises(IntegrityError, match=r"custody\.last_seq must be an integer"):
        disclose._manifest(raw, DOCK_ID, str(doc["batch_id"]))


def test_a_manifest_commits_to_each_recording_and_custody_line(setup: Setup) -> None:
    """Format 1.1: the roots in the manifest are those of its recordings and custody lines, and the log
    entry repeats them with the counts that fix each tree's size."""
    doc = setup.manifests[0]
    assert doc["recordings_root"] == commitment.recordings_root(doc["recordings"])  # type: ignore[arg-type]
    custody = doc["custody"]
    assert isinstance(custody, dict)
    lines = (setup.bucket / str(custody["key"])).read_bytes().split(b"\n")[:-1]
    assert custody["root"] == commitment.custody_root(lines)
    entries = tlogcheck_entries(setup)
    assert json.loads(entries[0])["recordings_root"] == doc["recordings_root"]
    assert json.loads(entries[0])["custody_root"] == custody["root"]
    assert commitment.root([]) == bytes.fromhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    for n in range(1, 20):
        leaves = [bytes([i]) * i for i in range(n)]
        tree = gocheck.build_tree(n, lambda i, leaves=leaves: leaves[i])  # type: ignore[misc]
        assert commitment.root(leaves) == tree.root()


def tlogcheck_entries(s: Setup) -> list[bytes]:
    from bodycam.agent.formats import tlog

    return tlog.parse_entry_bundle((s.bucket / DOCK_ID / "log" / "tile/entries/000.p/2").read_bytes())


def test_the_log_entry_must_repeat_the_manifest_s_commitments() -> None:
    """logcheck: an entry of a 1.1 manifest without its roots (or with others) is ``log_entry_mismatch``."""
    from bodycam.agent.audit import logcheck

    fields = {
        "recordings": 2,
        "recordings_root": "ab" * 32,
        "custody_first_seq": 1,
        "custody_last_seq": 9,
        "custody_root": "cd" * 32,
    }
    manifest = logcheck.Manifest("B1", 1, "ef" * 32, fields)
    base = {"index": 0, "dock_id": DOCK_ID, "batch_id": "B1", "batch_seq": 1, "manifest_sha256": "ef" * 32}
    for entry, expected in (
        ({**base, **fields}, []),
        (base, ["log_entry_mismatch"]),
        ({**base, **fields, "custody_last_seq": 10}, ["log_entry_mismatch"]),
    ):
        check = logcheck._EntryCheck(DOCK_ID, [manifest], "log")
        check.check(entry)
        assert [f.problem for f in check.found.named] == expected


def test_a_bundle_from_an_s3_bucket_verifies_without_witnesses_when_the_policy_asks_none(
    tmp_path: Path, seaweedfs: SeaweedFS, s3_bucket: str
) -> None:
    """proof reads an S3 bucket as verify does; without witnesses the bundle quotes the dock's latest
    checkpoint, which a policy with ``quorum none`` accepts and one that asks for a witness refuses."""
    dock = make_dock(tmp_path / "dock", f"s3://{s3_bucket}/training", seaweedfs.endpoint_url)
    win = window()
    dock.enroll("CAM-S3")
    dock.exercise("EX-S", win, "CAM-S3")
    args = ("--recordings", "3", "--training", "2", "--size", "10000", "--exercise", iso_window(win))
    with SimProcess("usbip", "CAM-S3", *args, truth_dir=tmp_path) as cam:
        rc, report = dock.ingest_json(cam.address)
        assert rc == 0, report
        rec_id = min(cam.training())
    out = tmp_path / "s3.tlog-proof"
    proc = dock.cli(
        "proof", "--bucket", f"s3://{s3_bucket}/training", "--endpoint-url", seaweedfs.endpoint_url,
        "--camera", "CAM-S3", "--recording", str(rec_id), "--out", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    vkey = docklog.verifier_key(DOCK_ID, load_private_key(dock.root / "keys" / "dock_ed25519"))
    report_ = proofcheck.check(out.read_bytes(), witnesspolicy.parse(f"log {vkey}\n"))
    assert report_.recording["recording_id"] == rec_id and report_.witnesses == {}
    stranger = cosignature.verifier_key("w.example", Ed25519PrivateKey.generate().public_key())
    with pytest.raises(IntegrityError, match="short of the policy's quorum"):
        proofcheck.check(out.read_bytes(), witnesspolicy.parse(f"log {vkey}\nwitness w {stranger}\nquorum w\n"))


def _logged(i: int) -> bytes:
    """Leaf ``i`` of a dock's log as tests/log_setup.py's publish_leaves logs it (batch B<i>, batch_seq i + 1)."""
    return docklog.entry(DOCK_ID, f"B{i:04d}", i + 1, f"{i:064x}")


def test_proof_reads_the_full_tile_when_the_partial_of_its_checkpoint_was_deleted(tmp_path: Path) -> None:
    """proof reading a live bucket while the dock fills a tile: the checkpoint it read names a size whose
    partial bundle and tiles the dock then deletes (docklog.drop_partials, once the full tile exists).
    proof reads them as verify does, from the full tile's first W entries and hashes (logcheck.read_entries,
    read_tile; C2SP tlog-tiles: clients SHOULD); before, it read only the partial and failed. Tiles that
    do not prove the entry under the signed root are refused, not quoted."""
    from bodycam.agent.formats import tlog

    with grown_past_a_full_tile(tmp_path) as grown:
        bucket, key, log, seen = grown.bucket, grown.key, grown.log, grown.seen
        signed, index, size, proof = disclose._log(bucket, DOCK_ID, _logged(150))
        assert (index, size) == (150, seen) and signed == (log / "checkpoint").read_bytes()
        cp = note.parse_checkpoint(note.split_note(signed)[0])
        tlog.verify_inclusion(index, size, tlog.leaf_hash(_logged(150)), proof, cp.root)
        lines = gocheck.run(
            {
                "vkey": docklog.verifier_key(DOCK_ID, key),
                "checkpoint": str(log / "checkpoint"),
                "origin": ORIGIN,
                "records": [{"index": 150, "entry": gocheck.b64(_logged(150)), "proof": gocheck.proof_list(proof)}],
            }
        )
        assert lines == ["checkpoint OK", "record 150 OK"], lines
        tile, at = log / "tile/0/000", 151 * tlog.HASH_SIZE  # the leaf hash beside entry 150's
        data = tile.read_bytes()
        tile.write_bytes(data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :])
        with pytest.raises(IntegrityError, match="the hash tiles do not prove entry 150"):
            disclose._log(bucket, DOCK_ID, _logged(150))


def _write_log(root: Path, key: Ed25519PrivateKey, size: int, witnessed: int) -> None:
    """A dock's log of ``size`` entries as the dock publishes it (tiles, bundles, checkpoint), written
    straight into a bucket directory, with ``checkpoint.witnessed`` at ``witnessed`` entries."""
    from bodycam.agent.formats import tlog

    tree = tlog.Tree(tlog.FileHashStore(root.parent / "hashes"))
    for i in range(size):
        tree.append(_logged(i))
    log = root / docklog.log_prefix(DOCK_ID)
    for path, data in tlog.tile_objects(tree, 0, size, lambda lo, hi: [_logged(i) for i in range(lo, hi)]):
        (log / path).parent.mkdir(parents=True, exist_ok=True)
        (log / path).write_bytes(data)
    for name, n in ((docklog.CHECKPOINT, size), (docklog.WITNESSED, witnessed)):
        checkpoint = note.Checkpoint(ORIGIN, n, tree.root(n))
        (log / name).write_bytes(note.sign_checkpoint(checkpoint, ORIGIN, key))


def test_proof_builds_its_proofs_from_the_tiles_in_memory_that_does_not_grow_with_the_log(tmp_path: Path) -> None:
    """A long log's proof: the entry is found by a binary search over its bundles and both proofs (the
    entry's inclusion, the cosigned checkpoint's consistency with the latest) are built from the hash
    tiles, a few at a time; rebuilding the whole tree in memory took 64 bytes an entry (6.4 MB here).
    Measured with tracemalloc (allocations, not time). Go checks the inclusion proof against the
    cosigned checkpoint."""
    import tracemalloc

    from bodycam.agent.formats import tlog
    from bodycam.agent.storage.bucket import LocalBucket

    size, witnessed, index = 100_003, 77_777, 54_321
    key = Ed25519PrivateKey.generate()
    root = tmp_path / "bucket"
    _write_log(root, key, size, witnessed)
    with LocalBucket(root) as bucket:
        tracemalloc.start()
        try:
            signed, found, quoted, proof = disclose._log(bucket, DOCK_ID, _logged(index))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert (found, quoted) == (index, witnessed)
    assert peak < 1024 * 1024 < 64 * size, f"proof peaked at {peak} bytes for a log of {size} entries"
    log = root / docklog.log_prefix(DOCK_ID)
    assert signed == (log / docklog.WITNESSED).read_bytes()
    cp = note.parse_checkpoint(note.split_note(signed)[0])
    tlog.verify_inclusion(index, witnessed, tlog.leaf_hash(_logged(index)), proof, cp.root)
    lines = gocheck.run(
        {
            "vkey": docklog.verifier_key(DOCK_ID, key),
            "checkpoint": str(log / docklog.WITNESSED),
            "origin": ORIGIN,
            "records": [{"index": index, "entry": gocheck.b64(_logged(index)), "proof": gocheck.proof_list(proof)}],
        }
    )
    assert lines == ["checkpoint OK", f"record {index} OK"], lines
    # an entry the log does not hold (sealed, not yet published) is named, still in bounded reads
    with LocalBucket(root) as bucket, pytest.raises(IntegrityError, match="does not hold this batch's entry"):
        disclose._log(bucket, DOCK_ID, _logged(size))


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (b"[" * 20_000 + b"]" * 20_000, "nests too deeply"),  # a RecursionError: 'internal error' before
        (b'{"camera":"CAM-X","recording":1,"camera":"CAM-P1"}', "duplicate key 'camera'"),
        (b'{"pad":"' + b"x" * 70_000 + b'"}', "longer than 65536 bytes, not a custody entry"),
    ],
)
def test_a_hostile_custody_line_is_one_error_naming_it(tmp_path: Path, line: bytes, error: str) -> None:
    """``proof`` reads the custody segment of an unverified bucket: each line now strictly and within the
    bounds its bundle's checker holds a custody line to, and refusing names the object and the line.
    Before, json.loads met a line nested 20,000 deep with a RecursionError (an 'internal error' from the
    CLI), read a duplicate key as its last value, and parsed a line of any length whole."""
    from bodycam.agent.formats import manifest as mf
    from bodycam.agent.storage.bucket import LocalBucket

    lines = [b'{"camera":"CAM-P1","event":"pulled","recording":1,"seq":1}', line]
    key = f"{DOCK_ID}/B1/custody.jsonl"
    with LocalBucket(tmp_path / "bucket") as bucket:
        bucket.put_object(key, b"\n".join(lines) + b"\n")
        ref = mf.CustodyRef(key, 1, 2, "0" * 64, "0" * 64, "0" * 64, commitment.custody_root(lines))
        with pytest.raises(IntegrityError, match=f"{key} line 2 .*{error}") as err:
            disclose._custody(bucket, ref, "CAM-P1", 1)
    assert "\n" not in str(err.value) and "run verify" in str(err.value)
