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

from bodycam.agent.custody import canonical
from bodycam.agent.sshsig import load_private_key, sign

from . import test_verify_tamper as tamper
from .dock import DOCK_ID, Dock
from .test_verify_tamper import Bucket, LocalStore

pristine = tamper.pristine  # the verified two-batch bucket, built by the real agent
local = tamper.local


def _manifest(bucket: Bucket, index: int) -> tuple[str, dict[str, Any]]:
    key = bucket.layout.key(index, "manifest.json")
    return key, json.loads(bucket.store.read(key))


def _reseal(bucket: Bucket, dock: Dock, index: int, doc: dict[str, Any]) -> None:
    """Write ``doc`` as batch ``index``'s manifest, signed by the dock's own key: a genuine signature."""
    raw = canonical(doc)
    bucket.store.write(bucket.layout.key(index, "manifest.json"), raw)
    signature = sign(raw, load_private_key(dock.config.key_path), "bodycam-manifest")
    bucket.store.write(bucket.layout.key(index, "manifest.json.sig"), signature.encode())


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
    _reseal(local, dock, 1, doc)
    assert local.findings("--identity", str(local.identity)) == (0, [])


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
