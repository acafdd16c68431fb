"""The s.62 disclosure log, read back from the bucket and checked against the signed manifests.

Each custody ``disclosed`` entry (docs/formats.md §4) says that one object (a recording, or a party's
personal sidecar) was disclosed to named parties under named agreements. The manifest of the same batch
says the same thing, signed. :class:`Collector` gathers a segment's disclosure entries while
``verify`` streams it and :meth:`Collector.match` compares the two both ways, so a disclosure entry
removed, altered or invented, or a manifest disclosure the log does not record, is a named finding.
``bodycam-sync disclosures`` (:mod:`bodycam.agent.audit.disclosure_report`) reports the same entries
per party.

Memory: a segment's disclosure entries are kept only up to the number of objects its manifest lists
(the manifest is already bounded by ``--max-memory``); each is a few short strings, cut to bounded
lengths. Entries past that bound cannot match anything and are counted as one finding.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypedDict

from bodycam.agent.formats.custody import entry_version
from bodycam.agent.formats.manifest import AgreementRef, Manifest

MAX_TEXT = 256  # characters kept of any one value of an entry
MAX_LIST = 64  # parties, agreements or data items kept per entry
_HEX64 = re.compile(r"[0-9a-f]{64}")

#: (custody seq or None, problem, message)
Problem = tuple[int | None, str, str]
Ref = tuple[str, int, str]  # (id, version, sha256) of an agreement


class Facts(TypedDict, total=False):
    """What the signed manifest says of one disclosed object, as short values: a recording's facts
    (camera, recording, agreements) or a sidecar's (data_items, and the refs any recording carries)."""

    ciphertext_sha256: str
    parties: tuple[str, ...]
    camera: str | None
    recording: int | None
    agreements: tuple[Ref, ...]
    data_items: tuple[str, ...]
    signed_refs: set[Ref]


@dataclass(frozen=True, slots=True)
class Disclosure:
    """One ``disclosed`` custody entry, as short values only."""

    seq: int
    ts: str
    actor: str
    key: str
    ciphertext_sha256: str
    parties: tuple[str, ...]
    agreements: tuple[tuple[str, int, str], ...]  # (id, version, sha256) as the entry names them
    under: tuple[tuple[str, tuple[str, ...]], ...]  # party -> ids of the agreements it received it under
    camera: str | None = None
    recording: int | None = None
    sidecar: bool = False
    data_items: tuple[str, ...] = ()

    def agreements_of(self, party: str) -> tuple[tuple[str, int, str], ...]:
        """The agreements ``party`` received this under (all of them when the entry does not say)."""
        ids = dict(self.under).get(party)
        return self.agreements if ids is None else tuple(a for a in self.agreements if a[0] in ids)


def _text(value: object) -> str:
    return value[:MAX_TEXT] if isinstance(value, str) else ""


def _strings(value: object) -> tuple[str, ...]:
    return tuple(_text(v) for v in value[:MAX_LIST]) if isinstance(value, list) else ()


def _cut(values: Sequence[str]) -> tuple[str, ...]:
    """A typed manifest's strings cut as an entry's are, so the two compare as short values."""
    return tuple(v[:MAX_TEXT] for v in values[:MAX_LIST])


def _refs(value: object) -> tuple[tuple[str, int, str], ...]:
    out = []
    for ref in value[:MAX_LIST] if isinstance(value, list) else []:
        if isinstance(ref, Mapping):
            version = ref.get("version")
            number = version if isinstance(version, int) and not isinstance(version, bool) else -1
            out.append((_text(ref.get("id")), number, _text(ref.get("sha256"))))
    return tuple(out)


def parse(entry: Mapping[str, object]) -> Disclosure:
    """The entry's facts, cut to bounded lengths (a malformed value becomes one that matches nothing)."""
    under = entry.get("under")
    recording = entry.get("recording")
    seq = entry["seq"]
    return Disclosure(
        seq=seq if isinstance(seq, int) else -1,  # CustodyCheck hands on only entries with an integer seq
        ts=_text(entry.get("ts")),
        actor=_text(entry.get("actor")),
        key=_text(entry.get("key")),
        ciphertext_sha256=_text(entry.get("ciphertext_sha256")),
        parties=_strings(entry.get("parties")),
        agreements=_refs(entry.get("agreements")),
        under=tuple((_text(p), _strings(ids)) for p, ids in list(under.items())[:MAX_LIST])
        if isinstance(under, Mapping)
        else (),
        camera=_text(entry.get("camera")) or None,
        recording=recording if isinstance(recording, int) and not isinstance(recording, bool) else None,
        sidecar=entry.get("sidecar") is True,
        data_items=_strings(entry.get("data_items")),
    )


@dataclass
class Collector:
    """Fed every entry of one custody segment (``CustodyCheck(on_entry=...)``); keeps its disclosures
    and the keys of its version 2 ``verified`` entries (a recording stored by an agent that logs
    disclosures), at most ``bound`` of each."""

    bound: int
    found: list[Disclosure] = field(default_factory=list)
    verified_v2: set[str] = field(default_factory=set)
    overflow: int = 0

    def entry(self, entry: Mapping[str, object]) -> None:
        event = entry.get("event")
        if event == "disclosed":
            if len(self.found) >= self.bound:
                self.overflow += 1
                return
            self.found.append(parse(entry))
        elif event == "verified" and entry_version(dict(entry)) >= 2 and len(self.verified_v2) < self.bound:
            key = entry.get("key")
            if isinstance(key, str) and len(key) <= 1024:
                self.verified_v2.add(key)

    def match(self, manifest: Manifest) -> list[Problem]:
        """Every disclosure entry against the manifest's recordings and sidecars, and back."""
        recordings = _expected_recordings(manifest)
        sidecars = _expected_sidecars(manifest)
        signed_refs = {a for facts in recordings.values() for a in facts["agreements"]}
        for facts in sidecars.values():
            facts["signed_refs"] = signed_refs
        out: list[Problem] = []
        if self.overflow:
            out.append((None, "disclosure_unmatched", f"{self.overflow} more disclosure entries than the manifest "
                        "lists objects: they record disclosures the manifest does not sign"))  # fmt: skip
        logged: set[str] = set()
        for d in self.found:
            if d.key in logged:
                out.append(
                    (d.seq, "disclosure_mismatch", f"custody entry {d.seq} records the disclosure of {d.key} again")
                )
                continue
            logged.add(d.key)
            expected = sidecars.get(d.key) if d.sidecar else recordings.get(d.key)
            if expected is None:
                what = "a sidecar" if d.sidecar else "a recording"
                out.append((d.seq, "disclosure_unmatched", f"custody entry {d.seq} records the disclosure of "
                            f"{what} {d.key!r} that the manifest does not list as disclosed"))  # fmt: skip
                continue
            differs = _differs(d, expected)
            if differs:
                out.append((d.seq, "disclosure_mismatch", f"custody entry {d.seq} ({d.key}): its {differs} "
                            "differs from the signed manifest: the entry or the manifest was altered"))  # fmt: skip
        for key, facts in recordings.items():
            if key not in logged and key in self.verified_v2:
                out.append((None, "disclosure_unlogged", _unlogged(key, facts)))
        for key, facts in sidecars.items():
            if key not in logged:
                out.append((None, "disclosure_unlogged", _unlogged(key, facts)))
        return out


def _unlogged(key: str, facts: Facts) -> str:
    parties = ", ".join(facts["parties"]) or "nobody"
    return (
        f"the manifest lists {key} as disclosed to {parties[:MAX_TEXT]} but no custody disclosure entry "
        "records it (removed from the log?)"
    )


def _expected_recordings(manifest: Manifest) -> dict[str, Facts]:
    """The recordings the manifest signs as disclosed (those naming parties), by key."""
    return {
        rec.key[:MAX_TEXT]: {
            "camera": rec.camera_serial[:MAX_TEXT] or None,
            "recording": rec.recording_id,
            "ciphertext_sha256": rec.ciphertext_sha256[:MAX_TEXT],
            "parties": _cut(rec.parties),
            "agreements": _agreement_refs(rec.agreements or ()),
        }
        for rec in manifest.recordings
        if rec.parties is not None
    }


def _agreement_refs(refs: Sequence[AgreementRef]) -> tuple[Ref, ...]:
    return tuple((a.id[:MAX_TEXT], a.version, a.sha256[:MAX_TEXT]) for a in refs[:MAX_LIST])


def _expected_sidecars(manifest: Manifest) -> dict[str, Facts]:
    """The party sidecars the manifest signs, by key."""
    return {
        item.key[:MAX_TEXT]: {
            "ciphertext_sha256": item.sha256[:MAX_TEXT],
            "parties": _cut(item.parties),
            "data_items": _cut(item.data_items),
        }
        for item in manifest.sidecars or ()
    }


def _differs(d: Disclosure, expected: Facts) -> str | None:
    """The first fact of ``d`` its manifest contradicts, by name, or None."""
    mine: dict[str, object] = {"ciphertext_sha256": d.ciphertext_sha256, "parties": d.parties}
    if d.sidecar:
        mine["data_items"] = d.data_items
        if any(a not in expected["signed_refs"] for a in d.agreements):
            return "agreements (one no recording of the manifest was disclosed under)"
    else:
        mine.update(camera=d.camera, recording=d.recording, agreements=d.agreements)
    for name, value in mine.items():
        if value != expected.get(name):  # each key of mine is one the manifest's facts have
            return name
    if d.under:
        if sorted(p for p, _ in d.under) != sorted(d.parties):
            return "under (the parties it names)"
        ids = {a[0] for a in d.agreements}
        if any(i not in ids for _, agreed in d.under for i in agreed):
            return "under (an agreement not among its agreements)"
    if not _HEX64.fullmatch(d.ciphertext_sha256):
        return "ciphertext_sha256"
    return None
