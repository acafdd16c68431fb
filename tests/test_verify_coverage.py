"""verify judges whom a manifest says each recording was encrypted to against the agreements it names
(docs/auditing.md ``disclosure_uncovered``): a dock's signature proves what it disclosed, the agreement
the manifest names by SHA-256 proves what it might. The manifests here are validly signed forgeries
(tests/signedbucket.py): a dock key that encrypted footage to a party no agreement covers."""

from __future__ import annotations

import json
from pathlib import Path

from bodycam.agent.audit.verify import run_verify
from bodycam.agent.formats import agreements as ag
from bodycam.agent.formats.agecrypt import generate_identity
from bodycam.agent.formats.sshsig import generate_key, load_private_key

from .agreement_setup import draft
from .signedbucket import Dock, Recording, SignedBucket


def test_a_party_no_named_agreement_covers_is_a_finding(tmp_path: Path) -> None:
    """Before: verify never read the agreements a manifest names, so a recording of exercise EX-2
    encrypted to P1 under an agreement for EX-1 only, and one encrypted to P2 whom the agreement does not
    name, passed with no finding. Now each is disclosure_uncovered, naming the party and why."""
    bucket = SignedBucket(tmp_path / "bucket")
    dock = Dock("dock-a")
    bucket.trust(dock)
    generate_key(tmp_path / "controller", "force")
    _, p1 = generate_identity()
    unsigned = draft(tmp_path / "DSA-1.json", "DSA-1", "EX-1", {"P1": p1}, 0)
    doc = json.loads(unsigned.read_text())
    doc["validity"] = {"not_before": "2025-06-01T00:00:00Z", "not_after": "2027-06-01T00:00:00Z"}
    unsigned.write_text(json.dumps(doc))
    published = bucket.root / "_fleet" / "agreements"  # where `agreement publish` puts it (formats.md §12)
    published.mkdir(parents=True)
    agreement, _ = ag.sign_draft(unsigned, load_private_key(tmp_path / "controller"), published)
    ref = agreement.ref()
    elsewhere = {"id": "DSA-9", "version": 1, "sha256": "cd" * 32}  # a dock's local agreement: not judged
    recordings = [
        Recording("CAM-A", 1, exercise_id="EX-1", parties=("P1",), agreements=(ref,)),  # covered
        Recording("CAM-A", 2, exercise_id="EX-1", parties=("P1", "P2"), agreements=(ref,)),
        Recording("CAM-A", 3, exercise_id="EX-2", parties=("P1",), agreements=(ref,)),
        Recording("CAM-A", 4, exercise_id="EX-2", parties=("P1",), agreements=(elsewhere,)),
    ]
    batch = bucket.seal(dock, recordings=recordings)
    with run_verify(bucket.url, None, bucket.allowed_signers) as report:
        found = [(f.problem, f.key, f.message) for f in report.findings]
    keys = [bucket.key_of(dock, batch, r) for r in recordings]
    assert [(p, k) for p, k, _ in found] == [("disclosure_uncovered", keys[1]), ("disclosure_uncovered", keys[2])]
    assert "party 'P2'" in found[0][2] and "DSA-1: does not name it" in found[0][2], found[0][2]
    assert "party 'P1'" in found[1][2] and "DSA-1: exercise" in found[1][2], found[1][2]
