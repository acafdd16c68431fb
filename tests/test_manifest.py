"""The typed manifest (agent/formats/manifest.py): the one type the dock writes and verify reads.

Byte for byte: manifests sealed by the agent before the typed writer existed (tests/vectors/manifests:
one with ``[[recipients]]``, one under data-sharing agreements) parse and re-encode to the very same
bytes, so buckets already written still verify (test_batches.py checks the same of every manifest the
agent seals now). Hostile: a manifest that breaks docs/formats.md §3 is a ManifestError naming the field,
and verify names it as a finding of its batch, with no traceback, even when the dock's key signed it.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bodycam.agent.formats.agecrypt import generate_hybrid_identity
from bodycam.agent.formats.custody import canonical
from bodycam.agent.formats.manifest import FORMAT, Manifest, ManifestError, ManifestFormatError
from bodycam.agent.formats.sshsig import allowed_signers_line, sign

from . import hostile
from .dock import CLI

VECTORS = Path(__file__).parent / "vectors" / "manifests"


@pytest.mark.parametrize("name", ["plain", "agreements", "sidecars"])
def test_a_manifest_the_agent_sealed_round_trips_byte_for_byte(name: str) -> None:
    raw = (VECTORS / f"{name}.json").read_bytes()
    manifest = Manifest.parse(raw)
    assert manifest.to_bytes() == raw
    assert manifest.format == FORMAT and manifest.batch_seq >= 1 and manifest.recordings
    under_agreements = name != "plain"
    # sidecars.json: sealed by main's writer after party sidecars (a retention, two parties' sidecars)
    assert (manifest.sidecars is not None) is (name == "sidecars")
    # every field the writer produces is typed: nothing is left over in ``extra``
    parts = [manifest, manifest.custody, manifest.personal, *manifest.recipients, *manifest.recordings]
    assert not any(p.extra for p in [*parts, *(manifest.sidecars or ())])
    assert all((rec.agreements is not None) is under_agreements for rec in manifest.recordings)
    assert all((rec.parties is not None) is under_agreements for rec in manifest.recordings)


def test_a_post_quantum_recipient_round_trips() -> None:
    """A hybrid ML-KEM-768 + X25519 recipient (age1pq1..., some 1,950 characters) is longer than any other
    string a manifest holds; the dock's archive is one under agreements (test_receive.py seals one)."""
    _, hybrid = generate_hybrid_identity()
    doc = _doc()
    doc["recipients"] = [{"name": "controller-archive", "age": hybrid}]
    raw = canonical(doc)
    assert len(hybrid) > 1024 and Manifest.parse(raw).to_bytes() == raw


def _doc() -> dict[str, Any]:
    return dict(json.loads((VECTORS / "plain.json").read_bytes()))


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Set ``value`` at a dotted path (``recordings.0.size``) of a manifest document."""

    def edit(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return edit


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        del node[last]

    return edit


HOSTILE = {
    "batch_seq as a string": (_set("batch_seq", "1"), "batch_seq must be an integer"),
    "batch_seq zero": (_set("batch_seq", 0), "batch_seq must be a positive integer"),
    "a boolean for a count": (_set("recordings.0.size", True), "recordings[0].size must be an integer"),
    "a size over 2^63": (_set("recordings.0.ciphertext_size", 10**30), "recordings[0].ciphertext_size must be"),
    "a negative custody range": (_set("custody.first_seq", -5), "custody.first_seq must be an integer from 0"),
    "custody as a list": (_set("custody", [1, 2, 3]), "custody is an array, not a JSON object"),
    "recordings as an object": (_set("recordings", {"a": 1}), "recordings must be an array"),
    "a recording that is a string": (_set("recordings.0", "x"), "recordings[0] is a string, not a JSON object"),
    "a missing field": (_drop("recordings.1.key"), "recordings[1].key is missing"),
    "a hash that is not hex": (_set("recordings.0.ciphertext_sha256", "zz" * 32), "ciphertext_sha256 must be a SHA-256"),
    "a megabyte of model name": (_set("recordings.0.camera_model", "m" * 1_000_000), "camera_model must be a string of at most"),
    "a sealing time that is no time": (_set("sealed", "yesterday"), "sealed must be an ISO 8601 UTC time"),
    "a time without a zone": (_set("opened", "2026-01-01T00:00:00"), "opened must be an ISO 8601 UTC time"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_manifest_is_one_line_naming_the_field(case: str) -> None:
    edit, needle = HOSTILE[case]
    doc = _doc()
    edit(doc)
    with pytest.raises(ManifestError) as caught:
        Manifest.parse(canonical(doc), "dock-01/b1/manifest.json")
    message = str(caught.value)
    assert needle in message and message.startswith("dock-01/b1/manifest.json"), message
    assert "\n" not in message and len(message) < 300, message  # a megabyte value is cut short


def test_values_over_the_bound_are_refused_before_they_are_built() -> None:
    raw = (VECTORS / "plain.json").read_bytes()
    with pytest.raises(ManifestError, match="more than the 50 values"):
        Manifest.parse(raw, max_values=50)
    with pytest.raises(ManifestError, match="not valid JSON"):
        Manifest.parse(raw[:-1])


def test_another_format_is_its_own_error() -> None:
    doc = _doc()
    doc["format"] = "bodycam-manifest/9"
    with pytest.raises(ManifestFormatError, match="expected bodycam-manifest/1"):
        Manifest.parse(canonical(doc))


def test_unknown_fields_are_kept_and_re_encoded() -> None:
    """docs/formats.md §3: unknown fields are accepted (they are signed like the rest) and mean nothing to
    this reader; they are kept, so the manifest re-encodes whole and a recording's leaf (format 1.1's
    recordings_root) is the element as it stands in the manifest."""
    doc = _doc()
    doc["future"] = {"anything": [1, 2]}
    doc["recordings"][0]["also_future"] = "x"
    doc["custody"]["later"] = 1
    raw = canonical(doc)
    manifest = Manifest.parse(raw)
    assert manifest.to_bytes() == raw and manifest.recordings[0].extra == {"also_future": "x"}


# -- verify on a bucket whose manifest is hostile and validly signed --------------------------------------------
def _resigned(tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> hostile.Hostile:
    """A one-batch bucket whose manifest is edited, then signed by a key allowed_signers trusts."""
    h = hostile.build(tmp_path / "bucket")
    path = h.root / h.manifest_key
    doc = json.loads(path.read_bytes())
    doc["recordings"] = [_doc()["recordings"][0]]
    doc["recordings"][0]["key"] = h.manifest_key.rsplit("/", 1)[0] + "/recordings/CAM-1/1.age"
    edit(doc)
    raw = canonical(doc)
    key = Ed25519PrivateKey.generate()
    path.write_bytes(raw)
    (h.root / f"{h.manifest_key}.sig").write_text(sign(raw, key, "bodycam-manifest"))
    h.allowed_signers.write_text(allowed_signers_line(hostile.DOCK, key.public_key()) + "\n")
    return h


@pytest.mark.parametrize(
    ("case", "problem", "needle"),
    [
        ("a size over 2^63", "manifest_invalid", "recordings[0].ciphertext_size must be an integer"),
        ("a boolean for a count", "manifest_invalid", "recordings[0].size must be an integer"),
        ("custody as a list", "manifest_invalid", "custody is an array"),
        ("a missing field", "manifest_invalid", "recordings[1].camera_model is missing"),
        ("another format", "manifest_format", "expected bodycam-manifest/1"),
    ],
)
def test_verify_names_a_hostile_signed_manifest(tmp_path: Path, case: str, problem: str, needle: str) -> None:
    if case == "another format":
        edit = _set("format", "bodycam-manifest/9")
    elif case == "a missing field":
        edit = _set("recordings", [_doc()["recordings"][0], {"camera_serial": "CAM-1"}])
    else:
        edit = HOSTILE[case][0]
    h = _resigned(tmp_path, edit)
    cmd = [CLI, "verify", "--bucket", h.url, "--allowed-signers", str(h.allowed_signers), "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    findings = json.loads(proc.stdout)["findings"]
    # the batch as a whole is the finding (its signature still checked: here it holds), not each object
    assert [(f["problem"], f["key"]) for f in findings] == [(problem, h.manifest_key)], findings
    assert needle in findings[0]["message"] and "its batch was not checked" in findings[0]["message"]
