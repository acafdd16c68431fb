"""Each party's personal sidecar holds only its data items (issue 12 item 5, docs/formats.md §5.3).

Under data-sharing agreements a batch has, beside the controller archive's full sidecar, one sidecar per
distinct view its parties have: a party sees an entry for each recording it was encrypted to, with the
officer's id only where an agreement that names it discloses ``officer_identity``, and an exercise's
site only where one discloses ``site``. Parties whose views are byte-identical share one sidecar,
encrypted to all of them; no party can open another view. Pure functions: the caller journals, encrypts
and publishes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from bodycam.agent.formats.custody import canonical

OFFICER_IDENTITY = "officer_identity"
SITE = "site"


@dataclass(frozen=True, slots=True)
class Shared:
    """One recording of the batch disclosed under agreements, as its sidecars need it."""

    camera_serial: str
    recording_id: int
    officer: str | None
    exercise_id: str | None
    agreements: tuple[Mapping[str, object], ...]  # the manifest's refs: id, version, sha256
    shares: Mapping[str, Mapping[str, list[str]]]  # party -> agreements, data_items, recipients


@dataclass(frozen=True, slots=True)
class PartySidecar:
    """One sidecar: who it is for, what it holds, and under which agreements it is disclosed."""

    parties: tuple[str, ...]
    recipients: tuple[str, ...]
    data_items: tuple[str, ...]
    agreements: tuple[Mapping[str, object], ...]  # refs, sorted by id
    under: dict[str, list[str]]  # party -> ids of the agreements it receives this under
    plaintext: bytes  # canonical JSON


def party_sidecars(
    batch_id: str, recordings: Sequence[Shared], exercises: Mapping[str, Mapping[str, object]]
) -> list[PartySidecar]:
    """The batch's party sidecars, sorted by their first party's name. ``exercises`` maps an exercise id
    to the archive's entry for it (``id``, ``site``, ``start``, ``end``)."""
    names = sorted({p for r in recordings for p in r.shares})
    groups: dict[bytes, list[str]] = {}
    for party in names:
        groups.setdefault(canonical(_view(batch_id, party, recordings, exercises)), []).append(party)
    out = []
    for plaintext, parties in groups.items():
        mine = [r for r in recordings if any(p in r.shares for p in parties)]
        recipients: list[str] = []
        under: dict[str, list[str]] = {}
        for party in parties:
            for r in mine:
                share = r.shares.get(party)
                if share is None:
                    continue
                recipients += [k for k in share.get("recipients", []) if k not in recipients]
                under[party] = sorted(set(under.get(party, [])) | set(share.get("agreements", [])))
        ids = {i for v in under.values() for i in v}
        refs = {str(a.get("id")): a for r in mine for a in r.agreements if a.get("id") in ids}
        doc_items = _items(r.shares[parties[0]].get("data_items", []) for r in mine if parties[0] in r.shares)
        out.append(
            PartySidecar(
                tuple(parties), tuple(recipients), doc_items, tuple(refs[i] for i in sorted(refs)), under, plaintext
            )
        )
    return sorted(out, key=lambda s: s.parties)


def _items(lists: Iterable[Iterable[str]]) -> tuple[str, ...]:
    from bodycam.agent.formats.agreements import DATA_ITEMS  # a dock without [agreements] never gets here

    found = {i for items in lists for i in items}
    return tuple(i for i in DATA_ITEMS if i in found)


def _view(
    batch_id: str, party: str, recordings: Sequence[Shared], exercises: Mapping[str, Mapping[str, object]]
) -> dict[str, object]:
    """What ``party`` may see of the batch's personal data: nothing its agreements do not disclose."""
    from bodycam.agent.formats.agreements import DATA_ITEMS

    entries: list[dict[str, object]] = []
    sites: dict[str, bool] = {}  # exercise id -> whether the party may see its site
    items: set[str] = set()
    for r in recordings:
        share = r.shares.get(party)
        if share is None:
            continue
        granted = set(share.get("data_items", []))
        items |= granted
        entry: dict[str, object] = {"camera_serial": r.camera_serial, "recording_id": r.recording_id}
        if OFFICER_IDENTITY in granted:
            entry["officer_id"] = r.officer
        entries.append(entry)
        if r.exercise_id is not None:
            sites[r.exercise_id] = sites.get(r.exercise_id, False) or SITE in granted
    shown = []
    for ex_id in sorted(sites):
        ex = exercises.get(ex_id)
        if ex is None:
            continue
        item = {"id": ex_id, "start": ex["start"], "end": ex["end"]}
        if sites[ex_id]:
            item["site"] = ex["site"]
        shown.append(item)
    return {
        "batch_id": batch_id,
        "data_items": [i for i in DATA_ITEMS if i in items],
        "exercises": shown,
        "recordings": entries,
    }
