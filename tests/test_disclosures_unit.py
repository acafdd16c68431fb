"""The disclosure check on its own (agent/audit/disclosures.py): which entries a manifest needs, the
version rule for logs written before disclosures were logged, and the bound on what a segment may hold."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from bodycam.agent.audit.disclosures import Collector
from bodycam.agent.formats.manifest import AgreementRef, Manifest

KEY = "dock-01/B/recordings/CAM-1/1.age"
REF = {"id": "DSA-A", "version": 1, "sha256": "a" * 64}  # as the entry names the manifest's AgreementRef
VECTOR = Path(__file__).parent / "vectors" / "manifests" / "plain.json"


def _manifest() -> Manifest:
    """A sealed manifest's two recordings: the first disclosed to P1 and P2 under DSA-A, the second to
    nobody (no parties)."""
    sealed = Manifest.parse(VECTOR.read_bytes())
    rec = replace(sealed.recordings[0], key=KEY, camera_serial="CAM-1", recording_id=1, ciphertext_sha256="c" * 64,
                  parties=("P1", "P2"), agreements=(AgreementRef("DSA-A", 1, "a" * 64),))  # fmt: skip
    return replace(sealed, recordings=(rec, replace(rec, key=KEY.replace("1.age", "2.age"), parties=None)))


def _disclosed(seq: int, **change: Any) -> dict[str, Any]:
    entry = {"seq": seq, "event": "disclosed", "v": 2, "ts": "2026-01-01T00:00:00Z", "actor": "dock-01", "key": KEY,
             "camera": "CAM-1", "recording": 1, "ciphertext_sha256": "c" * 64, "parties": ["P1", "P2"],
             "agreements": [REF], "under": {"P1": ["DSA-A"], "P2": ["DSA-A"]}}  # fmt: skip
    return {**entry, **change}


def _verified(seq: int, version: int) -> dict[str, Any]:
    entry = {"seq": seq, "event": "verified", "key": KEY}
    return {**entry, "v": version} if version > 1 else entry


def test_a_matching_entry_gives_nothing_and_a_v1_log_needs_none() -> None:
    ok = Collector(bound=2)
    for e in (_verified(1, 2), _disclosed(2)):
        ok.entry(e)
    assert ok.match(_manifest()) == []
    old = Collector(bound=2)
    old.entry(_verified(1, 1))  # an agent that did not log disclosures yet
    assert old.match(_manifest()) == []


def test_a_missing_altered_or_invented_entry_is_named() -> None:
    missing = Collector(bound=2)
    missing.entry(_verified(1, 2))
    assert [p[1] for p in missing.match(_manifest())] == ["disclosure_unlogged"]
    for change, field in (({"parties": ["P1"]}, "parties"), ({"agreements": []}, "agreements"),
                          ({"under": {"P1": ["DSA-X"], "P2": []}}, "under")):  # fmt: skip
        altered = Collector(bound=2)
        altered.entry(_verified(1, 2))
        altered.entry(_disclosed(2, **change))
        problems = altered.match(_manifest())
        assert [(p[0], p[1]) for p in problems] == [(2, "disclosure_mismatch")] and field in problems[0][2]
    invented = Collector(bound=2)
    invented.entry(_disclosed(3, key="dock-01/B/recordings/CAM-9/9.age"))
    assert [p[1] for p in invented.match(_manifest())] == ["disclosure_unmatched"]


def test_a_segment_holds_no_more_disclosures_than_its_manifest_lists_objects() -> None:
    flood = Collector(bound=2)
    for seq in range(1, 10_001):
        flood.entry(_disclosed(seq))
    assert len(flood.found) == 2 and flood.overflow == 9_998
    problems = flood.match(_manifest())
    assert problems[0][1] == "disclosure_unmatched" and "9998 more" in problems[0][2]
