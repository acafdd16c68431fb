"""Selective disclosure: build one recording's proof bundle from a bucket and its dock's published log.

Why here: making a bundle is reading evidence, as verify does (never writing to the bucket), and the
bundle must stand on its own before it leaves: every hash it carries is recomputed from the bucket's
bytes and checked against the log's checkpoint, so a damaged bucket gives an error, not a bundle a court
would later find broken. What it reveals and proves is in docs/formats.md §14.

Bounded like verify: the manifest, the custody segment and the log's entry bundles are read with size
caps, one bundle at a time, and the log's proofs are built from its hash tiles (a few tiles in memory,
:class:`tlog.TileHashStore`), not from the whole tree rebuilt at 64 bytes an entry; partial tiles and
bundles the dock deleted once their full tile existed are read as verify reads them (logcheck).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bodycam.agent.audit import logcheck
from bodycam.agent.formats import commitment, note, proofbundle, tlog
from bodycam.agent.formats import manifest as mf
from bodycam.agent.formats.custody import canonical
from bodycam.agent.storage import docklog
from bodycam.drivers import strictjson
from bodycam.drivers.errors import BodycamError, ConfigError, IntegrityError, ProtocolError, StorageError

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
        # bounded and strict: a line nested thousands deep stopped json.loads with a RecursionError (an
        # 'internal error'), and one line of 64 MiB was parsed whole; no custody entry is over 64 KiB
        if len(line) > proofbundle.MAX_LINE:
            raise IntegrityError(
                f"{info.key} line {i + 1} is longer than {proofbundle.MAX_LINE} bytes, not a custody entry: "
                "run verify on the bucket"
            )
        try:
            entry = strictjson.parse_json(line, f"{info.key} line {i + 1}", proofbundle.MAX_LINE)
        except ProtocolError as err:
            raise IntegrityError(f"{err}: run verify on the bucket") from None
        if isinstance(entry, dict) and entry.get("camera") == serial and entry.get("recording") == recording_id:
            picked.append(proofbundle.Leaf(line, tuple(commitment.inclusion(lines, i))))
    if len(picked) > proofbundle.MAX_CUSTODY:
        raise IntegrityError(f"more than {proofbundle.MAX_CUSTODY} custody entries name recording {recording_id}")
    return tuple(picked)


def _log(bucket: Bucket, dock: str, entry: bytes) -> tuple[bytes, int, int, list[bytes]]:
    """The checkpoint to quote, the entry's index, that checkpoint's tree size and the entry's inclusion
    proof, built from the log's hash tiles and checked against the checkpoints' roots.

    The checkpoint is the largest one the witnesses cosigned (``log/checkpoint.witnessed``, with all its
    cosignatures) when it holds the entry, else the dock's latest (``log/checkpoint``, signed by the dock
    only: a policy that asks for witnesses will refuse it, and the bundle can be made again once they
    have cosigned). The cosigned one must be a prefix of the latest (a consistency proof from the same
    tiles). Memory: one entry bundle and a few tiles at a time, however long the log (C2SP tlog-tiles'
    reader); that the whole log rebuilds its checkpoint is verify's check, not repeated here."""
    prefix = docklog.log_prefix(dock)
    latest_signed = bucket.get_bytes(f"{prefix}/{docklog.CHECKPOINT}", max_size=note.MAX_NOTE)
    latest = _checkpoint(latest_signed, dock)
    if latest.size > logcheck.MAX_ENTRIES:
        raise IntegrityError(f"{prefix}/checkpoint claims {latest.size} entries, more than {logcheck.MAX_ENTRIES}")
    index = _find(bucket, prefix, latest.size, entry)
    if index is None:
        raise IntegrityError(
            f"the log {prefix} does not hold this batch's entry (not yet published, or sealed before the log "
            "began): run verify on the bucket"
        )
    tree = logcheck.tile_tree(bucket, prefix, latest.size)
    leaf = tlog.leaf_hash(entry)
    try:
        proof = tree.inclusion_proof(index, latest.size)
        tlog.verify_inclusion(index, latest.size, leaf, proof, latest.root)
    except BodycamError as err:
        raise IntegrityError(
            f"{prefix}: the hash tiles do not prove entry {index} in the tree its checkpoint signs ({err}): run verify"
        ) from None
    signed, size = latest_signed, latest.size
    if bucket.head(f"{prefix}/{docklog.WITNESSED}") is not None:
        witnessed_signed = bucket.get_bytes(f"{prefix}/{docklog.WITNESSED}", max_size=note.MAX_NOTE)
        witnessed = _checkpoint(witnessed_signed, dock)
        if index < witnessed.size <= latest.size:
            try:
                grown = tree.consistency_proof(witnessed.size, latest.size)
                tlog.verify_consistency(witnessed.size, latest.size, witnessed.root, latest.root, grown)
                cosigned = tree.inclusion_proof(index, witnessed.size)
                tlog.verify_inclusion(index, witnessed.size, leaf, cosigned, witnessed.root)
            except BodycamError:
                raise IntegrityError(
                    f"{prefix}/{docklog.WITNESSED} signs another tree than the log's: run verify"
                ) from None
            signed, size, proof = witnessed_signed, witnessed.size, cosigned
    return signed, index, size, proof


def _find(bucket: Bucket, prefix: str, size: int, entry: bytes) -> int | None:
    """The index of ``entry`` in the first ``size`` leaves, reading one entry bundle at a time: a binary
    search by batch_seq, which the log's entries follow (verify's ``log_entry_invalid`` when they do not),
    so O(log n) bundles. A bundle whose entries do not read as ascending batch_seqs ends the search: then
    the log is read bundle by bundle (still one at a time) before the entry is called missing."""
    seq = _seq(entry)
    count = -(-size // tlog.TILE_WIDTH)
    lo, hi = 0, count
    while lo < hi and seq is not None:
        mid = (lo + hi) // 2
        entries = _bundle(bucket, prefix, size, mid)
        first, last = _seq(entries[0]), _seq(entries[-1])
        if first is None or last is None or first > last:
            break
        if seq < first:
            hi = mid
        elif seq > last:
            lo = mid + 1
        else:
            return _index_in(entries, entry, mid)
    else:
        return None
    for n in range(count):
        found = _index_in(_bundle(bucket, prefix, size, n), entry, n)
        if found is not None:
            return found
    return None


def _bundle(bucket: Bucket, prefix: str, size: int, n: int) -> list[bytes]:
    """Entry bundle ``n`` of a tree of ``size`` leaves, as wide as that tree has it (logcheck's reader)."""
    tile = tlog.Tile(0, n, min(tlog.TILE_WIDTH, size - n * tlog.TILE_WIDTH))
    entries = logcheck.read_entries(bucket, prefix, tile)
    if len(entries) != tile.width:
        raise IntegrityError(
            f"{prefix}/{tile.entries_path} holds {len(entries)} entries, not {tile.width}: run verify on the bucket"
        )
    return entries


def _seq(raw: bytes) -> int | None:
    """An entry's batch_seq, None when it has none (bounded parse: a log entry is untrusted input)."""
    try:
        doc = strictjson.parse_json(raw, "log entry", logcheck.ENTRY_VALUES)
    except ProtocolError:
        return None
    seq = doc.get("batch_seq") if isinstance(doc, dict) else None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None


def _index_in(entries: list[bytes], entry: bytes, n: int) -> int | None:
    for i, e in enumerate(entries):
        if e == entry:
            return n * tlog.TILE_WIDTH + i
    return None


def _checkpoint(signed: bytes, dock: str) -> note.Checkpoint:
    """A checkpoint's lines, unverified (the bundle's reader checks its signatures against its policy)."""
    text, _ = note.split_note(signed)
    return note.parse_checkpoint(text, origin=docklog.origin(dock))
