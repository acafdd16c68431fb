"""Selective disclosure: build one recording's proof bundle from a bucket and its dock's published log.

Why here: making a bundle is reading evidence, as verify does (never writing to the bucket), and the
bundle must stand on its own before it leaves: every hash it carries is recomputed from the bucket's
bytes and checked against the log's checkpoint, so a damaged bucket gives an error, not a bundle a court
would later find broken. What it reveals and proves is in docs/formats.md §14.

Bounded like verify: the manifest, the custody segment and the log's entry bundles are read with size
caps, and the log is rebuilt in memory at 64 bytes per entry up to :data:`logcheck.MAX_ENTRIES`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bodycam.agent.audit import logcheck
from bodycam.agent.formats import commitment, note, proofbundle, tlog
from bodycam.agent.formats import manifest as mf
from bodycam.agent.formats.custody import canonical
from bodycam.agent.storage import docklog
from bodycam.drivers.errors import ConfigError, IntegrityError, StorageError

if TYPE_CHECKING:
    from bodycam.agent.storage.bucket import Bucket

MAX_MANIFEST = 64 * 1024 * 1024  # what verify accepts at its largest --max-memory budget
MAX_MANIFEST_VALUES = 2_000_000
MAX_CUSTODY = 64 * 1024 * 1024
_SERIAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")


@dataclass(frozen=True, slots=True)
class Disclosure:
    """A bundle and what it is about (for the CLI's summary)."""

    bundle: bytes
    dock_id: str
    batch_id: str
    log_index: int
    tree_size: int
    custody_entries: int


def build(bucket: Bucket, serial: str, recording_id: int, batch_id: str | None = None) -> Disclosure:
    """The proof bundle for recording ``recording_id`` of camera ``serial``.

    Raises ConfigError (exit 2) for a malformed serial or an ambiguous recording (give ``batch_id``),
    IntegrityError (exit 1) when the bucket or log does not hold what the bundle needs.
    """
    if not _SERIAL.fullmatch(serial) or recording_id < 0:
        raise ConfigError(
            f"--camera {serial[:40]!r} / --recording {recording_id}: not a camera serial and recording id"
        )
    dock, batch = _locate(bucket, serial, recording_id, batch_id)
    raw = bucket.get_bytes(f"{mf.batch_prefix(dock, batch)}/{mf.MANIFEST}", max_size=MAX_MANIFEST)
    manifest = _manifest(raw, dock, batch)
    index = next((i for i, r in enumerate(manifest.recordings) if _names(r, serial, recording_id)), None)
    if index is None:
        raise IntegrityError(
            f"{dock}/{batch}/{mf.MANIFEST} does not list recording {recording_id} of camera {serial} (its object "
            "is a stray): run verify on the bucket"
        )
    leaves = commitment.recording_leaves(manifest)
    if commitment.root(leaves).hex() != manifest.recordings_root:
        raise IntegrityError(f"{dock}/{batch}/{mf.MANIFEST}: recordings_root is not the root of its recordings")
    recording = proofbundle.Leaf(leaves[index], tuple(commitment.inclusion(leaves, index)))
    custody = _custody(bucket, manifest.custody, serial, recording_id)
    entry = docklog.entry(dock, batch, manifest.batch_seq, mf.sha256_hex(raw), commitment.log_fields(manifest))
    checkpoint, log_index, size, log_proof = _log(bucket, dock, entry)
    bundle = proofbundle.Bundle(log_index, tuple(log_proof), checkpoint, entry, index, recording, custody)
    return Disclosure(proofbundle.encode(bundle), dock, batch, log_index, size, len(custody))


def _locate(bucket: Bucket, serial: str, recording_id: int, batch_id: str | None) -> tuple[str, str]:
    """(dock, batch) of the recording: its object's key names both (docs/formats.md §1); an object erased
    under retention (§13) is found in the manifests instead, which still list it."""
    tail = f"/recordings/{serial}/{recording_id}.age"
    found: list[tuple[str, str]] = []
    for info in bucket.iter_objects(""):
        parts = info.key.split("/")
        if info.key.endswith(tail) and len(parts) == 5 and (batch_id is None or parts[1] == batch_id):
            found.append((parts[0], parts[1]))
            if len(found) > 16:
                break
    if not found:
        found = _in_manifests(bucket, serial, recording_id, batch_id)
    if not found:
        where = f" in batch {batch_id}" if batch_id else ""
        raise IntegrityError(f"the bucket holds no recording {recording_id} of camera {serial}{where}")
    if len(found) > 1:
        batches = ", ".join(f"{d}/{b}" for d, b in found[:4])
        raise ConfigError(
            f"recording {recording_id} of camera {serial} is in several batches ({batches}): give --batch"
        )
    return found[0]


def _in_manifests(bucket: Bucket, serial: str, recording_id: int, batch_id: str | None) -> list[tuple[str, str]]:
    """Batches whose manifest lists the recording, reading each manifest once (bounded, one at a time)."""
    found: list[tuple[str, str]] = []
    keys = (i.key for i in bucket.iter_objects("") if i.key.endswith(f"/{mf.MANIFEST}"))
    for key in keys:
        parts = key.split("/")
        if len(parts) != 3 or (batch_id is not None and parts[1] != batch_id):
            continue
        try:
            manifest = mf.Manifest.parse(bucket.get_bytes(key, max_size=MAX_MANIFEST), key, MAX_MANIFEST_VALUES)
        except (IntegrityError, StorageError):  # a ManifestError is an IntegrityError
            continue  # verify names a manifest that does not read; here it just cannot be the one
        if any(_names(r, serial, recording_id) for r in manifest.recordings):
            found.append((parts[0], parts[1]))
            if len(found) > 16:
                break
    return found


def _names(recording: mf.ManifestRecording, serial: str, recording_id: int) -> bool:
    return recording.camera_serial == serial and recording.recording_id == recording_id


def _manifest(raw: bytes, dock: str, batch: str) -> mf.Manifest:
    """The batch's manifest, canonical and well formed (a ManifestError names the field that is not)."""
    where = f"{dock}/{batch}/{mf.MANIFEST}"
    doc = mf.parse_document(raw, where, MAX_MANIFEST_VALUES)
    if not isinstance(doc, dict) or canonical(doc) != raw or doc.get("format") != mf.FORMAT:
        raise IntegrityError(f"{where} is not a canonical {mf.FORMAT} manifest: run verify on the bucket")
    manifest = mf.Manifest.from_json(doc, where)
    if manifest.dock_id != dock or manifest.batch_id != batch:
        raise IntegrityError(f"{where} does not describe its own batch: run verify on the bucket")
    if not commitment.log_fields(manifest):
        raise IntegrityError(
            f"{where} was sealed before manifests committed to each recording (format 1.1): its recordings can "
            "only be disclosed with the whole batch"
        )
    return manifest


def _custody(bucket: Bucket, info: mf.CustodyRef, serial: str, recording_id: int) -> tuple[proofbundle.Leaf, ...]:
    """The segment's lines naming the recording, each with its proof under ``custody.root``."""
    data = bucket.get_bytes(info.key, max_size=MAX_CUSTODY)
    if not data.endswith(b"\n") and data:
        raise IntegrityError(f"{info.key} does not end with a newline: run verify on the bucket")
    lines = data.split(b"\n")[:-1] if data else []
    if commitment.custody_root(lines) != info.root or len(lines) != info.last_seq - info.first_seq + 1:
        raise IntegrityError(f"{info.key} does not give the custody root its manifest signs: run verify")
    picked: list[proofbundle.Leaf] = []
    for i, line in enumerate(lines):
        try:
            entry = json.loads(line)
        except ValueError:
            raise IntegrityError(f"{info.key} line {i + 1} is not JSON: run verify on the bucket") from None
        if isinstance(entry, dict) and entry.get("camera") == serial and entry.get("recording") == recording_id:
            picked.append(proofbundle.Leaf(line, tuple(commitment.inclusion(lines, i))))
    if len(picked) > proofbundle.MAX_CUSTODY:
        raise IntegrityError(f"more than {proofbundle.MAX_CUSTODY} custody entries name recording {recording_id}")
    return tuple(picked)


def _log(bucket: Bucket, dock: str, entry: bytes) -> tuple[bytes, int, int, list[bytes]]:
    """The checkpoint to quote, the entry's index, that checkpoint's tree size and the entry's inclusion
    proof, from a tree rebuilt out of the entry bundles and checked against the checkpoints' roots.

    The checkpoint is the largest one the witnesses cosigned (``log/checkpoint.witnessed``, with all its
    cosignatures) when it holds the entry, else the dock's latest (``log/checkpoint``, signed by the dock
    only: a policy that asks for witnesses will refuse it, and the bundle can be made again once they
    have cosigned)."""
    prefix = docklog.log_prefix(dock)
    latest_signed = bucket.get_bytes(f"{prefix}/{docklog.CHECKPOINT}", max_size=note.MAX_NOTE)
    latest = _checkpoint(latest_signed, dock)
    if latest.size > logcheck.MAX_ENTRIES:
        raise IntegrityError(f"{prefix}/checkpoint claims {latest.size} entries, more than {logcheck.MAX_ENTRIES}")
    tree = tlog.Tree(tlog.MemoryHashStore())
    index = None
    for tile in tlog.tiles_for(latest.size):
        if tile.level != 0:
            continue
        key = f"{prefix}/{tile.entries_path}"
        entries = tlog.parse_entry_bundle(bucket.get_bytes(key, max_size=logcheck.BUNDLE_MAX))
        if len(entries) != tile.width:
            raise IntegrityError(f"{key} holds {len(entries)} entries, not {tile.width}: run verify on the bucket")
        for e in entries:
            if e == entry:
                index = tree.size
            tree.append(e)
    if tree.root() != latest.root:
        raise IntegrityError(f"{prefix}: the entry bundles do not rebuild the tree its checkpoint signs: run verify")
    if index is None:
        raise IntegrityError(
            f"the log {prefix} does not hold this batch's entry (not yet published, or sealed before the log "
            "began): run verify on the bucket"
        )
    signed, cp = latest_signed, latest
    if bucket.head(f"{prefix}/{docklog.WITNESSED}") is not None:
        witnessed_signed = bucket.get_bytes(f"{prefix}/{docklog.WITNESSED}", max_size=note.MAX_NOTE)
        witnessed = _checkpoint(witnessed_signed, dock)
        if index < witnessed.size <= tree.size:
            if tree.root(witnessed.size) != witnessed.root:
                raise IntegrityError(f"{prefix}/{docklog.WITNESSED} signs another tree than the log's: run verify")
            signed, cp = witnessed_signed, witnessed
    return signed, index, cp.size, tree.inclusion_proof(index, cp.size)


def _checkpoint(signed: bytes, dock: str) -> note.Checkpoint:
    """A checkpoint's lines, unverified (the bundle's reader checks its signatures against its policy)."""
    text, _ = note.split_note(signed)
    return note.parse_checkpoint(text, origin=docklog.origin(dock))
