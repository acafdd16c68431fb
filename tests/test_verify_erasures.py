"""Which custody entry may account for an object a manifest lists and the bucket lacks (docs/formats.md
§13): only an erasure the owning dock signed (or the dock it was handed over to, §8). Every dock of a
force is enrolled in the auditor's ``allowed_signers``, so a dock's signature alone proves only that
dock's own word: one dock's custody must not excuse another dock's missing footage."""

from __future__ import annotations

from pathlib import Path

from bodycam.agent.audit.verify import run_verify

from .signedbucket import Dock, Recording, SignedBucket, erasure

RETAIN = "2026-01-01T00:00:05Z"  # before the batches' custody times: every erasure here is on time
ERASED_AT = "2026-01-01T00:30:00.000000Z"


def _problems(bucket: SignedBucket) -> tuple[list[tuple[str, str | None]], list[str]]:
    with run_verify(bucket.url, None, bucket.allowed_signers) as report:
        return [(f.problem, f.key) for f in report.findings], [e.key for e in report.erasures]


def test_an_erasure_signed_by_another_dock_does_not_excuse_a_missing_recording(tmp_path: Path) -> None:
    """Before: dock-b's validly signed custody held a bucket_erased entry naming dock-a's recording, and
    verify read the recording, which dock-a never erased and which is gone, as erased under retention:
    no finding, exit 0. Now it is object_missing, and the message names the entry it did not accept."""
    bucket = SignedBucket(tmp_path / "bucket")
    a, b = Dock("dock-a"), Dock("dock-b")
    bucket.trust(a)
    bucket.trust(b)
    gone = Recording("CAM-A", 1, retain_until=RETAIN, stored=False)
    batch = bucket.seal(a, recordings=[gone, Recording("CAM-A", 2, retain_until=RETAIN)])
    key = bucket.key_of(a, batch, gone)
    bucket.seal(b, [erasure(key, gone.sha256(), ERASED_AT, RETAIN)])

    with run_verify(bucket.url, None, bucket.allowed_signers) as report:
        assert [(f.problem, f.key) for f in report.findings] == [("object_missing", key)], report.findings
        assert report.erasures == []
        message = report.findings[0].message
    assert "dock-b/" in message and "not dock-a's" in message, message


def test_the_owning_dock_s_own_erasure_still_accounts_for_it(tmp_path: Path) -> None:
    """The same entry in dock-a's own later batch is what retention writes: erased, not a finding; and
    another dock's entry for the same key, listed first, does not shadow it."""
    bucket = SignedBucket(tmp_path / "bucket")
    a, b = Dock("dock-0"), Dock("dock-a")  # dock-0's custody is listed (and read) before dock-a's
    bucket.trust(a)
    bucket.trust(b)
    gone = Recording("CAM-A", 1, retain_until=RETAIN, stored=False)
    batch = bucket.seal(b, recordings=[gone])
    key = bucket.key_of(b, batch, gone)
    bucket.seal(a, [erasure(key, "00" * 32, ERASED_AT, RETAIN)])  # another dock's, naming another hash
    bucket.seal(b, [erasure(key, gone.sha256(), ERASED_AT, RETAIN)])
    assert _problems(bucket) == ([], [key])


def test_the_dock_a_handover_renamed_it_to_erases_what_it_uploaded_before(tmp_path: Path) -> None:
    """``dock handover`` renames a dock (docs/formats.md §8); its journal still holds the recordings it
    uploaded under the old id, so their erasures come in the new id's custody: accepted, since the old
    id's own signed custody handed over to the new one."""
    bucket = SignedBucket(tmp_path / "bucket")
    old, new = Dock("dock-old"), Dock("dock-new")
    bucket.trust(old)
    gone = Recording("CAM-A", 1, retain_until=RETAIN, stored=False)
    batch = bucket.seal(old, recordings=[gone])
    key = bucket.key_of(old, batch, gone)
    bucket.seal(old, [{"event": "dock_handover", "to_dock": new.name}])
    new.continue_from(old)
    bucket.trust(new)
    bucket.seal(new, [erasure(key, gone.sha256(), ERASED_AT, RETAIN)])
    assert _problems(bucket) == ([], [key])


def test_a_handover_written_into_an_altered_custody_segment_hands_nothing_over(tmp_path: Path) -> None:
    """Facts are taken only from a custody segment whose bytes the manifest signs: erasures were, but the
    segment's dock_handover entry was kept whatever the bytes. A line appended to dock-a's segment, handing
    dock-a over to dock-b, made dock-b's erasure of dock-a's recording count (the recording, gone, was no
    finding: only custody_altered said anything was wrong) and made dock-b's chain continue dock-a's. Now
    the recording is object_missing and dock-b's chain is its own."""
    bucket = SignedBucket(tmp_path / "bucket")
    a, b = Dock("dock-a"), Dock("dock-b")
    bucket.trust(a)
    bucket.trust(b)
    gone = Recording("CAM-A", 1, retain_until=RETAIN, stored=False)
    batch = bucket.seal(a, recordings=[gone])
    key = bucket.key_of(a, batch, gone)
    bucket.seal(b, [erasure(key, gone.sha256(), ERASED_AT, RETAIN)])
    custody = bucket.root / a.name / batch / "custody.jsonl"
    forged = b'{"dock":"dock-a","event":"dock_handover","prev":"' + b"0" * 64 + b'","seq":99,"to_dock":"dock-b"}\n'
    custody.write_bytes(custody.read_bytes() + forged)

    found, erased = _problems(bucket)
    assert ("object_missing", key) in found and erased == [], (found, erased)
    assert {p for p, _ in found} == {"object_missing", "custody_altered", "custody_entry"}, found
