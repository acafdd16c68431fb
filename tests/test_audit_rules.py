"""What the formats leave to an outside auditor, settled (issue 11 item 14), each through the CLI.

An independent verifier written from docs/formats.md and docs/auditing.md alone disagreed with
``verify`` or had to guess in a few places; the docs now say, and these tests hold ``verify`` to it:
key validity judged at the sealing second as ``ssh-keygen -O verify-time`` does, a co-signature
where no key changed, unknown manifest fields, and the null officer link of the personal sidecar.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

from bodycam.agent.formats import commitment
from bodycam.agent.formats.custody import canonical
from bodycam.agent.formats.sshsig import load_private_key, sign

from . import test_verify_tamper as tamper
from .dock import DOCK_ID, Dock
from .test_verify_tamper import Bucket, LocalStore

pristine = tamper.pristine  # the verified two-batch bucket, built by the real agent
local = tamper.local


def _manifest(bucket: Bucket, index: int) -> tuple[str, dict[str, Any]]:
    key = bucket.layout.key(index, "manifest.json")
    return key, json.loads(bucket.store.read(key))


def _reseal(bucket: Bucket, dock: Dock, index: int, doc: dict[str, Any]) -> None:
    """Write ``doc`` as batch ``index``'s manifest, signed by the dock's own key: a genuine signature.

    The dock's transparency log recorded the manifest it sealed, so it would name this one as replaced
    (``log_manifest_mismatch``, tests/test_docklog.py); these rules are about manifests, so the log goes."""
    raw = canonical(doc)
    bucket.store.write(bucket.layout.key(index, "manifest.json"), raw)
    signature = sign(raw, load_private_key(dock.config.key_path), "bodycam-manifest")
    bucket.store.write(bucket.layout.key(index, "manifest.json.sig"), signature.encode())
    for key in [k for k in bucket.store.keys() if k.startswith(f"{bucket.layout.dock}/log/")]:
        bucket.store.delete(key)
    bucket.log_deleted = True  # its log_missing finding is not what these rules are about


def _sealed(doc: dict[str, Any]) -> dt.datetime:
    return dt.datetime.fromisoformat(str(doc["sealed"]).replace("Z", "+00:00"))


def test_key_validity_is_judged_at_the_sealing_second_as_ssh_keygen_does(
    local: Bucket,
    pristine: tuple[Dock, Path, list[str]],
    tmp_path: Path,
) -> None:
    """A key valid before the very second a batch was sealed in (10:00:00 for 10:00:00.4) still vouches
    for it: ssh-keygen takes whole seconds and ``valid-before`` is inclusive. Before the fix verify
    compared the microseconds and called the signature untrusted."""
    mkey, doc = _manifest(local, 1)
    assert isinstance(local.store, LocalStore)
    sealed = _sealed(doc)
    assert sealed.microsecond, "the dock seals with microseconds"
    key_part = local.allowed_signers.read_text().split(" ", 1)[1].strip()
    second = sealed.strftime("%Y%m%d%H%M%SZ")
    for valid_before, accepted in (
        (second, True),
        ((sealed - dt.timedelta(seconds=1)).strftime("%Y%m%d%H%M%SZ"), False),
    ):
        signers = tmp_path / f"allowed_signers.{valid_before}"
        signers.write_text(f'{DOCK_ID} valid-before="{valid_before}" {key_part}\n')
        when = sealed.strftime("%Y%m%d%H%M%SZ")  # what the auditing.md walkthrough passes
        stock = subprocess.run(
            ["ssh-keygen", "-Y", "verify", "-f", str(signers), "-I", DOCK_ID, "-n", "bodycam-manifest",
             "-O", f"verify-time={when}", "-s", str(local.store.root / f"{mkey}.sig")],
            input=local.store.read(mkey), capture_output=True,
        )  # fmt: skip
        assert (stock.returncode == 0) is accepted, stock.stderr
        rc, findings = dataclasses.replace(local, allowed_signers=signers).findings()
        mine = [f for f in findings if f["batch"] == local.layout.batches[1]]
        if accepted:
            assert mine == [], findings
        else:
            assert rc == 1 and [f["problem"] for f in mine] == ["signature_untrusted"], findings


def test_a_cosignature_where_no_key_changed_is_named(local: Bucket) -> None:
    """``manifest.json.sig.prev`` belongs only in a new key's first batch; anywhere else (the first batch,
    or a batch signed by the same key as the one before) it is ``cosignature_unexpected``. Before, a
    valid one was silently accepted and an invalid one was called ``signature_invalid``."""
    for index in (0, 1):
        sig = local.store.read(local.layout.key(index, "manifest.json.sig"))
        local.store.write(local.layout.key(index, "manifest.json.sig.prev"), sig)
    rc, findings = local.findings()
    assert rc == 1
    assert sorted((f["problem"], f["batch"], f["key"]) for f in findings) == sorted(
        ("cosignature_unexpected", batch, local.layout.key(index, "manifest.json.sig.prev"))
        for index, batch in enumerate(local.layout.batches)
    ), findings
    local.store.restore()
    assert local.findings() == (0, [])


def test_unknown_manifest_fields_are_accepted(
    local: Bucket,
    pristine: tuple[Dock, Path, list[str]],
) -> None:
    """A field a verifier does not know is covered by the signature like any other: accepted."""
    dock = pristine[0]
    _, doc = _manifest(local, 1)
    doc["x_extension"] = {"note": "added by a later agent"}
    doc["recordings"][0]["x_extension"] = 1
    doc["recordings_root"] = commitment.recordings_root(doc["recordings"])  # as that agent would commit
    _reseal(local, dock, 1, doc)
    assert local.findings("--identity", str(local.identity)) == (0, [])


def test_a_manifest_whose_commitments_are_not_its_own_is_named(
    local: Bucket,
    pristine: tuple[Dock, Path, list[str]],
) -> None:
    """Format 1.1: a validly signed manifest whose recordings_root or custody.root is not the root of
    what it lists and signs is ``commitment_mismatch`` (a proof bundle from it would not match)."""
    dock = pristine[0]
    mkey, doc = _manifest(local, 1)
    assert doc["recordings_root"] == commitment.recordings_root(doc["recordings"])
    doc["recordings_root"] = "0" * 64
    doc["custody"]["root"] = "1" * 64
    _reseal(local, dock, 1, doc)
    rc, findings = local.findings()
    assert rc == 1
    assert sorted((f["problem"], f["key"]) for f in findings) == [
        ("commitment_mismatch", doc["custody"]["key"]),
        ("commitment_mismatch", mkey),
    ], findings


def test_a_null_officer_id_goes_with_a_null_pseudonym(
    local: Bucket,
    pristine: tuple[Dock, Path, list[str]],
    tmp_path: Path,
) -> None:
    """With an identity, a sidecar whose officer_id is null for a recording the manifest gives a
    pseudonym (or the reverse, or a recording it lacks) is ``personal_invalid``."""
    dock = pristine[0]
    _, doc = _manifest(local, 1)
    assert all(r["officer_pseudonym"] for r in doc["recordings"])
    skey = doc["personal"]["key"]
    side = json.loads(
        subprocess.run(["age", "-d", "-i", str(local.identity)], input=local.store.read(skey),
                       capture_output=True, check=True).stdout
    )  # fmt: skip
    side["recordings"][0]["officer_id"] = None
    recipient = subprocess.run(["age-keygen", "-y", str(local.identity)], capture_output=True, text=True, check=True)
    sealed = subprocess.run(["age", "-r", recipient.stdout.strip()], input=canonical(side), capture_output=True,
                            check=True).stdout  # fmt: skip
    local.store.write(skey, sealed)
    doc["personal"]["sha256"] = hashlib.sha256(sealed).hexdigest()
    _reseal(local, dock, 1, doc)
    assert local.findings() == (0, [])  # without the identity nothing can tell
    rc, findings = local.findings("--identity", str(local.identity))
    assert rc == 1
    assert [(f["problem"], f["key"]) for f in findings] == [("personal_invalid", skey)], findings
    assert (
        "officer_id is null" in findings[0]["message"]
        and doc["recordings"][0]["camera_serial"] in findings[0]["message"]
    )


def test_the_signature_file_is_what_formats_md_says(local: Bucket) -> None:
    """formats.md §6.1-6.2 alone are enough to check a real manifest.json.sig: parse the blob field by field,
    build the signed preamble, and verify it with plain Ed25519 (no SSH library)."""
    import base64
    import struct

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    text = local.store.read(local.layout.key(1, "manifest.json.sig")).decode("ascii")
    lines = text.split("\n")
    assert (
        lines[0] == "-----BEGIN SSH SIGNATURE-----" and lines[-2] == "-----END SSH SIGNATURE-----" and lines[-1] == ""
    )
    assert all(len(line) <= 70 for line in lines[1:-2])
    blob = base64.b64decode("".join(lines[1:-2]), validate=True)

    def strings(data: bytes) -> list[bytes]:
        out = []
        while data:
            (n,) = struct.unpack(">I", data[:4])
            out.append(data[4 : 4 + n])
            data = data[4 + n :]
        return out

    assert blob[:6] == b"SSHSIG" and struct.unpack(">I", blob[6:10]) == (1,)
    publickey, namespace, reserved, hash_algorithm, signature = strings(blob[10:])
    key_type, raw_key = strings(publickey)
    sig_type, raw_sig = strings(signature)
    assert (key_type, sig_type, namespace, reserved, hash_algorithm) == (
        b"ssh-ed25519",
        b"ssh-ed25519",
        b"bodycam-manifest",
        b"",
        b"sha512",
    )
    assert len(raw_key) == 32 and len(raw_sig) == 64
    manifest = local.store.read(local.layout.key(1, "manifest.json"))
    preamble = b"SSHSIG" + b"".join(
        struct.pack(">I", len(f)) + f for f in (namespace, reserved, hash_algorithm, hashlib.sha512(manifest).digest())
    )
    Ed25519PublicKey.from_public_bytes(raw_key).verify(raw_sig, preamble)  # raises if the doc were wrong
    signing_key = json.loads(manifest)["signing_key"].split()
    assert base64.b64decode(signing_key[1]) == publickey and signing_key[0] == "ssh-ed25519"


def test_a_manifest_failing_its_signature_still_takes_part_in_the_chain(local: Bucket) -> None:
    """An altered manifest is named for its signature and for the break it makes in the chain."""
    key, doc = _manifest(local, 1)
    doc["previous_manifest_sha256"] = "0" * 64
    local.store.write(key, canonical(doc))
    rc, findings = local.findings()
    assert rc == 1
    assert {(f["problem"], f["batch"]) for f in findings} == {
        ("signature_mismatch", local.layout.batches[1]),
        ("batch_link", local.layout.batches[1]),
        ("log_manifest_mismatch", local.layout.batches[1]),  # the log recorded the manifest as sealed
    }, findings


def test_the_batch_id_time_need_not_equal_opened(local: Bucket, pristine: tuple[Dock, Path, list[str]]) -> None:
    """The batch id is a name: a genuine manifest whose ``opened`` is a second off its id verifies."""
    _, doc = _manifest(local, 1)
    opened = dt.datetime.fromisoformat(doc["opened"].replace("Z", "+00:00")) + dt.timedelta(seconds=1.5)
    doc["opened"] = opened.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    _reseal(local, pristine[0], 1, doc)
    assert local.findings() == (0, [])


def test_reordered_and_removed_custody_entries_are_told_apart(local: Bucket) -> None:
    """A pure reordering is only ``custody_order`` (on the entry that comes after a higher one); a removal
    only ``custody_missing_entry`` (on the missing seq), as auditing.md's table says (either also changes
    the segment's bytes: ``custody_altered``)."""
    key = local.layout.key(0, "custody.jsonl")
    lines = local.store.read(key).splitlines()
    first = local.layout.custody_first[local.layout.batches[0]]
    moved = [*lines[:2], lines[3], lines[2], *lines[4:]]
    local.store.write(key, b"\n".join(moved) + b"\n")
    rc, findings = local.findings()
    entries = [(f["problem"], f["custody_seq"]) for f in findings if f["problem"] != "custody_altered"]
    assert rc == 1 and entries == [("custody_order", first + 2)], findings  # (the segment's bytes changed too)
    removed = [*lines[:4], *lines[5:]]
    local.store.write(key, b"\n".join(removed) + b"\n")
    rc, findings = local.findings()
    problems = {(f["problem"], f["custody_seq"]) for f in findings}
    assert rc == 1 and ("custody_missing_entry", first + 4) in problems
    assert not any(p == "custody_order" for p, _ in problems), findings
