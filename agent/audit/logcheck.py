"""The auditor's check of one dock's transparency log in a bucket (for verify), bounded.

What it proves: the latest checkpoint is signed by a key allowed for the dock; the entry bundles rebuild
exactly the tree the checkpoint signs (so the log was not rewritten or truncated); every hash tile a
reader of that tree would fetch holds the right hashes; every checkpoint kept under ``checkpoints/`` is a
prefix of the same tree (so the log only grew: consistency, checked directly on the rebuilt tree); each
entry names a manifest that is in the bucket with that SHA-256; and each manifest sealed since the log
began is in it. Memory does not grow with the log: one pass in log order rebuilds the tree as a
:class:`tlog.Frontier` (O(log n) hashes), compares each tile as it completes, and merges the entries with
the manifests as both come in batch_seq order; findings about entries are named up to :data:`MAX_NAMED`.
A live bucket, where a dock publishes while verify reads: objects listed beyond the checkpoint read
first are judged against the checkpoint read again, once a consistency proof from the tiles shows that it
extends the first (:func:`_grown`); partial tiles deleted meanwhile are read from their full tile.
"""

from __future__ import annotations

import re
import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from bodycam.agent.audit import witnesscheck
from bodycam.agent.formats import commitment, note, tlog
from bodycam.agent.formats import manifest as mf
from bodycam.agent.formats.custody import canonical
from bodycam.agent.formats.witnesspolicy import Policy
from bodycam.agent.storage import docklog
from bodycam.agent.storage.bucket import ObjectNotFoundError
from bodycam.drivers import strictjson
from bodycam.drivers.errors import BodycamError, IntegrityError, ProtocolError

if TYPE_CHECKING:
    from bodycam.agent.storage.bucket import Bucket

#: entries a checkpoint may claim: a batch a minute for 190 years. Memory no longer grows with the log (the
#: tree is rebuilt as a :class:`tlog.Frontier`); reading stops at the first bundle the bucket lacks
MAX_ENTRIES = 100_000_000
MAX_CHECKPOINTS = 10_000  # kept checkpoints compared with the tree (the newest ones, by size)
BUNDLE_MAX = tlog.TILE_WIDTH * (2 + 1024)  # the dock's entries are a few hundred bytes
ENTRY_VALUES = 32  # 20 in an entry of a 1.1 manifest (its commitments); 10 before
MAX_STRAYS = 100  # named one by one; the rest are counted
MAX_UNLISTED = 10 * MAX_STRAYS  # objects beyond the checkpoint kept from the listing, to judge again
REREADS = 3  # reads of the latest checkpoint again before objects listed beyond it are called unlisted
REREAD_WAIT_S = 1.0  # between them: a dock writes a publication's tiles before its checkpoint
MAX_NAMED = 10_000  # findings about entries named one by one (of each kind); the rest are counted
TAIL = 10_000  # the newest entries named one by one when not witnessed
_SIZE = re.compile(r"[1-9][0-9]{0,18}")


@dataclass(frozen=True, slots=True)
class LogFinding:
    problem: str
    message: str
    key: str | None = None
    batch: str | None = None


@dataclass(frozen=True, slots=True)
class Manifest:
    batch_id: str
    seq: int | None
    sha256: str | None
    #: a 1.1 manifest's roots and counts its entry must repeat (``commitment.log_fields``); empty before
    commitments: Mapping[str, object] = field(default_factory=dict)


def check(
    bucket: Bucket,
    dock: str,
    keys: Sequence[Ed25519PublicKey],
    manifests: Iterable[Manifest],
    *,
    max_entries: int = MAX_ENTRIES,
    policy: Policy | None = None,
    fetch: bool | witnesscheck.Asker = True,
) -> list[LogFinding]:
    """Findings about ``dock``'s log (empty when it holds). ``keys``: those allowed to sign for the dock;
    ``manifests``: the batches verify found for it (id, batch_seq, SHA-256 of manifest.json), in batch_seq
    order, consumed one at a time as the entries reach them (those without a batch_seq are skipped);
    ``max_entries``: the most entries a checkpoint may claim; ``policy``: check the witnesses' cosigned
    checkpoints too (agent/audit/witnesscheck.py), asking the witnesses when ``fetch``.

    One pass in log order: each entry bundle is read, its entries hashed into a :class:`tlog.Frontier`
    and compared with the next manifests, each hash tile compared as it completes, and the root kept at
    each size a kept or cosigned checkpoint names (read first); memory does not grow with the log."""
    prefix = docklog.log_prefix(dock)
    ckey = f"{prefix}/{docklog.CHECKPOINT}"
    verifiers = [note.parse_verifier_key(note.verifier_key(docklog.origin(dock), k)) for k in keys]
    try:
        cp = note.open_checkpoint(
            bucket.get_bytes(ckey, max_size=note.MAX_NOTE), verifiers, origin=docklog.origin(dock)
        )
    except BodycamError as err:
        return [LogFinding("log_checkpoint_invalid", f"{ckey}: {err}", ckey)]
    limit = min(max_entries, MAX_ENTRIES)
    if cp.size > limit:
        return [
            LogFinding("log_too_large", f"{ckey} claims {cp.size} entries, more than the {limit} verify reads", ckey)
        ]
    kept, kept_found = _kept_checkpoints(bucket, prefix, verifiers, dock)
    witness = _Witness.gather(bucket, dock, policy, fetch=fetch)
    cosigned = witness.sizes() if witness is not None else []
    wanted = [size for size, _, _ in kept] + cosigned
    entries = _EntryCheck(dock, manifests, prefix)
    rebuilt = _rebuild(bucket, prefix, cp.size, entries, wanted)
    if isinstance(rebuilt, LogFinding):
        return [rebuilt]
    roots, tile_found = rebuilt
    if roots.root(cp.size) != cp.root:
        return [
            LogFinding(
                "log_root_mismatch",
                f"the entries under {prefix}/tile/entries do not rebuild the tree {ckey} signs: the log was "
                "rewritten, truncated or damaged",
                ckey,
            )
        ]
    findings = tile_found + kept_found + _forks([k for k in kept if k[0] <= cp.size], roots)
    findings += entries.found.named + entries.unlogged() + entries.found.summary()
    # listed after the checkpoint was read: a dock publishing meanwhile adds objects beyond it
    unlisted = _unlisted(bucket, prefix, cp.size)
    later = [k for k in kept if k[0] > cp.size]
    newest, grown_found = _grown(bucket, ckey, verifiers, dock, cp, later, unlisted, cosigned, limit)
    if newest.size > cp.size and not grown_found:
        grown_found = _grown_entries(bucket, prefix, dock, roots.frontier, newest)
    findings += grown_found + _strays(prefix, newest.size, unlisted)
    if witness is not None:
        findings += witness.check(
            roots if newest.size == cp.size else _Grown(roots, newest, bucket, prefix), entries.tail
        )
    return findings


def witnessed(
    bucket: Bucket, dock: str, policy: Policy, tree: witnesscheck.SignedTree | None, tail: Sequence[tuple[int, str]],
    *, fetch: bool | witnesscheck.Asker
) -> list[LogFinding]:  # fmt: skip
    """The witness checks of ``dock`` (``tree`` None: the bucket holds no log for it)."""
    sources, found = witnesscheck.gather(bucket, dock, policy, fetch=fetch)
    found += witnesscheck.check(dock, policy, tree, sources, tail)
    return [LogFinding(f.problem, f.message, f.key, f.batch) for f in found]


@dataclass
class _Witness:
    """The cosigned checkpoints of a dock the policy names, gathered before the rebuild so that the root
    at each of their sizes is kept as the rebuild passes it."""

    dock: str
    policy: Policy
    sources: list[tuple[str, bytes]]
    found: list[witnesscheck.Finding]

    @classmethod
    def gather(
        cls, bucket: Bucket, dock: str, policy: Policy | None, *, fetch: bool | witnesscheck.Asker
    ) -> _Witness | None:
        if policy is None or not policy.log_verifiers(docklog.origin(dock)):  # docks the policy names
            return None
        sources, found = witnesscheck.gather(bucket, dock, policy, fetch=fetch)
        return cls(dock, policy, sources, found)

    def sizes(self) -> list[int]:
        return witnesscheck.sizes(self.dock, self.policy, self.sources)

    def check(self, tree: witnesscheck.SignedTree, tail: Sequence[tuple[int, str]]) -> list[LogFinding]:
        found = self.found + witnesscheck.check(self.dock, self.policy, tree, self.sources, tail)
        return [LogFinding(f.problem, f.message, f.key, f.batch) for f in found]


class _Roots:
    """The rebuilt tree as the later checks see it: its size and its root at each size asked for."""

    def __init__(self, size: int, roots: dict[int, bytes], frontier: tlog.Frontier | None = None) -> None:
        self.size, self._roots = size, roots
        #: the tree rebuilt from the entries, at ``size``: the entries a checkpoint read again adds extend it
        self.frontier = frontier if frontier is not None else tlog.Frontier()

    def root(self, size: int) -> bytes:
        if size == 0:
            return tlog.EMPTY_ROOT
        return self._roots[size]


class _Grown:
    """The log as the witness checks see it once the checkpoint read again (``newest``) extends the one
    rebuilt: its size, the rebuilt roots up to the first checkpoint, and beyond it the root at a size
    from the tiles of ``newest``'s tree, kept only if a consistency proof from the same tiles ties it
    to ``newest``'s signed root (else no root: the cosigned checkpoint of that size is then a fork)."""

    def __init__(self, rebuilt: _Roots, newest: note.Checkpoint, bucket: Bucket, prefix: str) -> None:
        self.size = newest.size
        self._rebuilt, self._newest = rebuilt, newest
        self._tree = tile_tree(bucket, prefix, newest.size)

    def root(self, size: int) -> bytes:
        if size <= self._rebuilt.size:
            return self._rebuilt.root(size)
        if size == self.size:
            return self._newest.root
        try:
            root = self._tree.root(size)
            tlog.verify_consistency(size, self.size, root, self._newest.root, self._tree.consistency_proof(size))
        except BodycamError:
            return b""
        return root


def _rebuild(
    bucket: Bucket, prefix: str, size: int, entries: _EntryCheck, wanted: Iterable[int]
) -> tuple[_Roots, list[LogFinding]] | LogFinding:
    """One pass over the entry bundles: each entry hashed into the tree and checked against its manifest
    as it passes (not kept), each hash tile compared once complete, the root kept at each ``wanted`` size
    (and at ``size``). A bundle that cannot be read ends the pass: that finding is returned alone."""
    frontier = tlog.Frontier()
    want = iter(sorted({n for n in wanted if 0 < n < size} | {size}))
    next_size = next(want, None)
    roots: dict[int, bytes] = {}
    found: list[LogFinding] = []
    full, rest = divmod(size, tlog.TILE_WIDTH)
    for n in range(full + (1 if rest else 0)):
        tile = tlog.Tile(0, n, tlog.TILE_WIDTH if n < full else rest)
        key = f"{prefix}/{tile.entries_path}"
        try:
            bundle = read_entries(bucket, prefix, tile)
        except BodycamError as err:
            return LogFinding("log_entries_unreadable", f"{key}: {err}", key)
        if len(bundle) != tile.width:
            return LogFinding("log_entries_unreadable", f"{key} holds {len(bundle)} entries, not {tile.width}", key)
        for raw in bundle:
            for done, data in frontier.append(raw):
                found += _tile(bucket, prefix, done, data)
            entries.check(_entry(raw, frontier.size - 1))
            if frontier.size == next_size:
                roots[next_size] = frontier.root()
                next_size = next(want, None)
    for done, data in frontier.partial_tiles():
        found += _tile(bucket, prefix, done, data)
    entries.finish()
    return _Roots(size, roots, frontier), found


def _entry(raw: bytes, index: int) -> strictjson.JSONObject:
    try:
        doc = strictjson.parse_json(raw, f"log entry {index}", ENTRY_VALUES)
    except ProtocolError:
        return {"index": index, "invalid": True}
    if not isinstance(doc, dict) or doc.get("format") != docklog.ENTRY_FORMAT or raw != canonical(doc):
        return {"index": index, "invalid": True}
    return {"index": index, **doc}


def read_entries(bucket: Bucket, prefix: str, tile: tlog.Tile) -> list[bytes]:
    """The entries of a level-0 tile of the log under ``prefix``. A partial bundle the bucket no longer
    has is read from the full bundle at the same index (its first ``width`` entries; C2SP tlog-tiles:
    clients SHOULD): a dock that fills the tile while verify or proof reads a live bucket deletes the
    partial (docklog.drop_partials). The entries still have to rebuild or prove the signed tree, so a full
    bundle that disagrees is a root mismatch (verify) or a proof that fails (proof)."""
    full = f"{prefix}/{tlog.Tile(0, tile.n).entries_path}"
    data, from_full = _get_or_full(bucket, f"{prefix}/{tile.entries_path}", full, BUNDLE_MAX)
    entries = tlog.parse_entry_bundle(data)
    return entries[: tile.width] if from_full else entries


def read_tile(bucket: Bucket, prefix: str, tile: tlog.Tile) -> bytes:
    """The hashes of a hash tile of the log under ``prefix``; a partial tile the bucket no longer has
    is the first ``width`` hashes of the full tile at its index (see :func:`read_entries`)."""
    full = f"{prefix}/{tlog.Tile(tile.level, tile.n).path}"
    data, from_full = _get_or_full(bucket, f"{prefix}/{tile.path}", full, tlog.TILE_WIDTH * tlog.HASH_SIZE)
    return data[: tile.width * tlog.HASH_SIZE] if from_full else data


def tile_tree(bucket: Bucket, prefix: str, size: int) -> tlog.Tree:
    """The log's tree of ``size`` leaves as its hash tiles serve it (:func:`read_tile`), to build
    inclusion and consistency proofs in bounded memory; what is built from it must still be checked
    against a signed root (the tiles are not authenticated on their own)."""
    return tlog.Tree.view(tlog.TileHashStore(size, lambda tile: read_tile(bucket, prefix, tile)), size)


def _get_or_full(bucket: Bucket, key: str, full: str, max_size: int) -> tuple[bytes, bool]:
    """The object at ``key``, or, when it is a partial tile or bundle the bucket lacks, the full one at
    ``full`` (then True: the caller takes its first ``width``); an error naming both when neither is there."""
    try:
        return bucket.get_bytes(key, max_size=max_size), False
    except ObjectNotFoundError:
        if full == key:
            raise
        try:
            return bucket.get_bytes(full, max_size=max_size), True
        except ObjectNotFoundError as err:
            raise ObjectNotFoundError(f"{key} and its full tile {full} are both missing") from err


def _tile(bucket: Bucket, prefix: str, tile: tlog.Tile, hashes: bytes) -> list[LogFinding]:
    """The published hash tile must hold the rebuilt tree's hashes (the entries alone were enough to
    rebuild it; a party proving inclusion from tiles relies on these), read by :func:`read_tile`."""
    key = f"{prefix}/{tile.path}"
    try:
        data = read_tile(bucket, prefix, tile)
    except BodycamError as err:
        return [LogFinding("log_tile_mismatch", f"{key}: {err}", key)]
    if data != hashes:
        return [LogFinding("log_tile_mismatch", f"{key} does not hold the hashes of the signed tree", key)]
    return []


def _kept_checkpoints(
    bucket: Bucket, prefix: str, verifiers: list[note.Verifier], dock: str
) -> tuple[list[tuple[int, str, bytes]], list[LogFinding]]:
    """The (size, key, root) of the checkpoints kept under ``checkpoints/`` (the newest
    :data:`MAX_CHECKPOINTS` by size) that open, and findings for those that do not."""
    found: list[LogFinding] = []
    sizes: list[tuple[int, str]] = []
    misnamed = 0
    for info in bucket.iter_objects(f"{prefix}/{docklog.CHECKPOINTS}/"):
        name = info.key.rsplit("/", 1)[-1]
        if not _SIZE.fullmatch(name) or info.key != f"{prefix}/{docklog.CHECKPOINTS}/{name}":
            misnamed += 1  # named up to MAX_STRAYS: a bucket of millions of them must not become as many findings
            if misnamed <= MAX_STRAYS:
                found.append(LogFinding("log_checkpoint_invalid", f"{info.key} is not named by a tree size", info.key))
            continue
        sizes.append((int(name), info.key))
        if len(sizes) > 2 * MAX_CHECKPOINTS:
            sizes = sorted(sizes)[-MAX_CHECKPOINTS:]
    if misnamed > MAX_STRAYS:
        more = misnamed - MAX_STRAYS
        found.append(LogFinding("log_checkpoint_invalid", f"{more} more objects under {prefix}/{docklog.CHECKPOINTS}/ "
                                "are not named by a tree size"))  # fmt: skip
    kept: list[tuple[int, str, bytes]] = []
    for size, key in sorted(sizes)[-MAX_CHECKPOINTS:]:
        try:
            cp = note.open_checkpoint(
                bucket.get_bytes(key, max_size=note.MAX_NOTE), verifiers, origin=docklog.origin(dock)
            )
        except BodycamError as err:
            found.append(LogFinding("log_checkpoint_invalid", f"{key}: {err}", key))
            continue
        if cp.size != size:
            found.append(LogFinding("log_checkpoint_invalid", f"{key} signs tree size {cp.size}", key))
        else:
            kept.append((size, key, cp.root))
    return kept, found


def _forks(kept: Sequence[tuple[int, str, bytes]], tree: _Roots) -> list[LogFinding]:
    """Every kept checkpoint must sign a prefix of this tree: a different root at some size is a fork."""
    found: list[LogFinding] = []
    for size, key, root in kept:
        if size > tree.size:
            found.append(
                LogFinding(
                    "log_fork", f"{key} signs {size} entries, more than the latest checkpoint's {tree.size}", key
                )
            )
        elif tree.root(size) != root:
            found.append(LogFinding("log_fork", f"{key} signs a different tree of {size} entries: the log forked", key))
    return found


_TILE = re.compile(r"tile/(entries|[0-5]?[0-9]|6[0-3])/((?:x[0-9]{3}/)*[0-9]{3})(?:\.p/([1-9][0-9]{0,2}))?")
_OWN = re.compile(rf"({docklog.CHECKPOINTS}|{docklog.WITNESSED_DIR})/([1-9][0-9]{{0,18}})")


def _needs(name: str) -> int | None:
    """The smallest size of a log that has the object ``name`` (relative to the log's directory): a
    checkpoint, a cosigned checkpoint, a tile or an entry bundle; None for an object no log has."""
    if name in (docklog.CHECKPOINT, docklog.WITNESSED):
        return 0
    own = _OWN.fullmatch(name)
    if own is not None:
        return int(own.group(2))
    tile = _TILE.fullmatch(name)
    if tile is None:
        return None
    level = 0 if tile.group(1) == "entries" else int(tile.group(1))
    digits = tile.group(2).replace("x", "").replace("/", "")
    if tlog.encode_index(int(digits)) != tile.group(2):
        return None  # a non-canonical spelling of an index (x000/001)
    width = int(tile.group(3)) if tile.group(3) else tlog.TILE_WIDTH
    if width >= tlog.TILE_WIDTH and tile.group(3):
        return None
    # the tile exists once level 8*L has n*256 + width hashes, each covering 256**L leaves
    return (int(digits) * tlog.TILE_WIDTH + width) << (tlog.HEIGHT * level)


@dataclass(frozen=True, slots=True)
class _Unlisted:
    """Objects under the log's directory that the log of the checkpoint read first does not have, as
    listed: (key, the smallest log that has it or None), the first :data:`MAX_UNLISTED`; the rest counted."""

    objects: list[tuple[str, int | None]]
    more: int

    def beyond(self, size: int) -> bool:
        """Whether one of them is an object a log larger than ``size`` has (what a publication adds)."""
        return any(need is not None and need > size for _, need in self.objects)


def _unlisted(bucket: Bucket, prefix: str, size: int) -> _Unlisted:
    """One listing of the log's directory, keeping what the log of ``size`` entries does not have."""
    objects: list[tuple[str, int | None]] = []
    more = 0
    for info in bucket.iter_objects(f"{prefix}/"):
        need = _needs(info.key[len(prefix) + 1 :])
        if need is not None and need <= size:
            continue
        if len(objects) < MAX_UNLISTED:
            objects.append((info.key, need))
        else:
            more += 1
    return _Unlisted(objects, more)


def _strays(prefix: str, size: int, listed: _Unlisted) -> list[LogFinding]:
    """Objects under the log's directory that no size of the log of ``size`` entries has: the bucket
    holds nothing the log does not (a tile beyond the tree is what a truncation leaves; anything else was
    added). Those past :data:`MAX_UNLISTED` in the listing are counted, not judged again."""
    keys = [key for key, need in listed.objects if need is None or need > size]
    found = [
        LogFinding(
            "log_unlisted_object",
            f"{key} is not an object of the log of {size} entries (added, or left by a truncation)",
            key,
        )
        for key in keys[:MAX_STRAYS]
    ]
    more = max(0, len(keys) - MAX_STRAYS) + listed.more
    if more:
        found.append(LogFinding("log_unlisted_object", f"{more} more such objects under {prefix}/"))
    return found


def _grown(
    bucket: Bucket,
    ckey: str,
    verifiers: list[note.Verifier],
    dock: str,
    first: note.Checkpoint,
    later: Sequence[tuple[int, str, bytes]],
    listed: _Unlisted,
    cosigned: Sequence[int] = (),
    limit: int = MAX_ENTRIES,
) -> tuple[note.Checkpoint, list[LogFinding]]:
    """The checkpoint against which the objects, kept and ``cosigned`` checkpoints listed beyond ``first``
    are judged, and findings about them. verify reads a live bucket: a dock publishing after the
    checkpoint was read adds tiles, bundles, ``checkpoints/<size>`` and, once witnesses cosign, cosigned
    checkpoints beyond it, which are no stray, no fork and no truncation. So when something beyond it was
    listed, the latest checkpoint is read again (up to :data:`REREADS` times, :data:`REREAD_WAIT_S` apart:
    a dock writes a publication's tiles before its checkpoint), and must extend the first (a consistency
    proof from the log's tiles; otherwise that is the fork found); then each kept checkpoint beyond the
    first must be a prefix of the one read again. A read again is held to the same ``limit`` of entries
    as the first: the caller then reads the entries it adds (:func:`_grown_entries`)."""
    prefix = ckey.rsplit("/", 1)[0]
    newest = first
    for attempt in range(REREADS):
        sizes = [size for size, _, _ in later] + list(cosigned)
        if not (listed.beyond(newest.size) or any(size > newest.size for size in sizes)):
            break
        if attempt:
            time.sleep(REREAD_WAIT_S)
        try:
            again = note.open_checkpoint(
                bucket.get_bytes(ckey, max_size=note.MAX_NOTE), verifiers, origin=docklog.origin(dock)
            )
        except BodycamError as err:
            return first, [LogFinding("log_checkpoint_invalid", f"{ckey}, read again: {err}", ckey)]
        if again.size > limit:
            return first, [
                LogFinding("log_too_large", f"{ckey} read again claims {again.size} entries, more than {limit}", ckey)
            ]
        broken = _extends(bucket, prefix, ckey, first, again)
        if broken is not None:
            return first, [broken]
        newest = again
    found: list[LogFinding] = []
    tree = tile_tree(bucket, prefix, newest.size)
    for size, key, root in later:
        if size > newest.size:
            found.append(
                LogFinding(
                    "log_fork", f"{key} signs {size} entries, more than the latest checkpoint's {newest.size}", key
                )
            )
            continue
        try:
            tlog.verify_consistency(size, newest.size, root, newest.root, tree.consistency_proof(size))
        except BodycamError:
            found.append(LogFinding("log_fork", f"{key} signs a different tree of {size} entries: the log forked", key))
    return newest, found


def _grown_entries(
    bucket: Bucket, prefix: str, dock: str, frontier: tlog.Frontier, newest: note.Checkpoint
) -> list[LogFinding]:
    """The entries a checkpoint read again adds to the tree rebuilt up to the first one: they must
    rebuild ``newest``'s signed root (continuing ``frontier``, O(log n) hashes), and each must name a
    manifest the bucket holds (one HEAD each; what was sealed while verify ran is not otherwise checked).

    Why: verify reads the checkpoint again only to tell a live dock's growth from a fork, but a bucket
    whose newest batches were deleted can answer the first read with an older genuine checkpoint and the
    next with the genuine latest: the kept and cosigned checkpoints beyond the first then pass as growth,
    and the deleted batches (their manifests gone) went unreported. A dock writes a batch's manifest
    before it logs it, so a live dock's growth passes this check. ``frontier`` is extended in place."""
    found = _Found()
    while frontier.size < newest.size:
        n = frontier.size // tlog.TILE_WIDTH
        tile = tlog.Tile(0, n, min(tlog.TILE_WIDTH, newest.size - n * tlog.TILE_WIDTH))
        key = f"{prefix}/{tile.entries_path}"
        try:
            bundle = read_entries(bucket, prefix, tile)
        except BodycamError as err:
            return [LogFinding("log_entries_unreadable", f"{key}: {err}", key)]
        if len(bundle) != tile.width:
            return [LogFinding("log_entries_unreadable", f"{key} holds {len(bundle)} entries, not {tile.width}", key)]
        for raw in bundle[frontier.size - n * tlog.TILE_WIDTH :]:
            frontier.append(raw)
            finding = _grown_manifest(bucket, dock, prefix, _entry(raw, frontier.size - 1))
            if finding is not None:
                found.append(finding)
    if frontier.root() != newest.root:
        return [
            LogFinding(
                "log_root_mismatch",
                f"the entries under {prefix}/tile/entries do not rebuild the tree of {newest.size} entries that "
                f"{prefix}/{docklog.CHECKPOINT} signed when read again",
                f"{prefix}/{docklog.CHECKPOINT}",
            )
        ]
    return found.named + found.summary()


def _grown_manifest(bucket: Bucket, dock: str, prefix: str, e: dict[str, Any]) -> LogFinding | None:
    """The finding about one entry a checkpoint read again added (None when its manifest is there)."""
    where = f"{prefix} entry {e['index']}"
    batch = e.get("batch_id")
    if e.get("invalid") or e.get("dock_id") != dock or not isinstance(batch, str):
        return LogFinding("log_entry_invalid", f"{where} is not a log entry of dock {dock}")
    try:
        there = bucket.head(f"{mf.batch_prefix(dock, batch)}/{mf.MANIFEST}") is not None
    except BodycamError:  # not a key the bucket takes: no manifest of ours
        there = False
    if there:
        return None
    return LogFinding(
        "log_manifest_missing",
        f"{where} logs batch {batch[:64]} (read after verify began), whose manifest is not in the bucket",
        batch=batch[:64],
    )


def _extends(
    bucket: Bucket, prefix: str, ckey: str, first: note.Checkpoint, again: note.Checkpoint
) -> LogFinding | None:
    """None when ``again`` (the latest checkpoint, read again) signs a tree that extends the one ``first``
    signed (a consistency proof built from its tiles), else the finding: a log whose latest checkpoint
    went back, or signs another history, forked; one whose tiles do not read cannot be shown to extend."""
    what = f"{ckey} read again signs {again.size} entries"
    if again.size < first.size:
        return LogFinding("log_fork", f"{what}, fewer than the {first.size} it signed before: the log went back", ckey)
    try:
        proof = tile_tree(bucket, prefix, again.size).consistency_proof(first.size)
    except BodycamError as err:
        return LogFinding("log_tile_mismatch", f"{what}, whose tiles do not read ({err})", ckey)
    try:
        tlog.verify_consistency(first.size, again.size, first.root, again.root, proof)
    except IntegrityError:
        return LogFinding(
            "log_fork", f"{what}, which do not extend the {first.size} it signed before: the log forked", ckey
        )
    return None


class _Found:
    """Findings about entries, named one by one up to :data:`MAX_NAMED` of each problem and counted after
    that: a hostile log of a million bad entries must not become a million findings in memory, nor
    leave a finding of another kind (a deleted or replaced manifest) unnamed behind them."""

    def __init__(self) -> None:
        self.named: list[LogFinding] = []
        self.kept: Counter[str] = Counter()
        self.more: Counter[str] = Counter()

    def append(self, finding: LogFinding) -> None:
        if self.kept[finding.problem] < MAX_NAMED:
            self.kept[finding.problem] += 1
            self.named.append(finding)
        else:
            self.more[finding.problem] += 1

    def summary(self) -> list[LogFinding]:
        return [
            LogFinding(problem, f"{n} more {problem} findings of this log, not named one by one")
            for problem, n in sorted(self.more.items())
        ]


class _EntryCheck:
    """Each entry against the bucket's manifests as both come in batch_seq order: a merge, so only the
    manifests of the entry's own batch_seq are held (the log's entries must follow batch_seq)."""

    def __init__(self, dock: str, manifests: Iterable[Manifest], prefix: str) -> None:
        self.dock, self.prefix = dock, prefix
        self._manifests = (m for m in manifests if m.seq is not None)
        self._head: Manifest | None = next(self._manifests, None)
        #: batches before the bucket's first were audited in the bucket the dock moved from (formats.md §8)
        self.lowest = None if self._head is None else self._head.seq
        self.first: int | None = None
        self.last_seq = 0
        self.found = _Found()
        self._unlogged = _Found()
        #: the newest entries' (index, batch id), to name those not yet witnessed (bounded)
        self.tail: deque[tuple[int, str]] = deque(maxlen=TAIL)

    def _next(self) -> Manifest | None:
        """The next manifest, None when they are all read; verify hands them in batch_seq order."""
        head = self._head
        if head is not None:
            self._head = next(self._manifests, None)
            if self._head is not None and (self._head.seq or 0) < (head.seq or 0):
                raise ValueError("logcheck: manifests must come in batch_seq order")
        return head

    def _upto(self, seq: int) -> list[Manifest]:
        """Manifests before ``seq`` (none of them logged: the entries passed their seq) are judged
        unlogged; those of ``seq`` itself are returned."""
        same: list[Manifest] = []
        while self._head is not None and (self._head.seq or 0) <= seq:
            m = self._next()
            assert m is not None
            if m.seq == seq:
                same.append(m)
            else:
                self._not_logged(m)
        return same

    def check(self, e: dict[str, Any]) -> None:
        where = f"{self.prefix} entry {e['index']}"
        seq = e.get("batch_seq")
        if e.get("invalid") or e.get("dock_id") != self.dock or not isinstance(seq, int) or isinstance(seq, bool):
            self.found.append(LogFinding("log_entry_invalid", f"{where} is not a log entry of dock {self.dock}"))
            return
        batch = str(e.get("batch_id"))[:64]
        self.tail.append((int(e["index"]), batch))
        if seq <= self.last_seq:
            self.found.append(
                LogFinding(
                    "log_entry_invalid", f"{where}: batch_seq {seq} does not follow {self.last_seq}", batch=batch
                )
            )
            return
        self.last_seq = seq
        self.first = seq if self.first is None else self.first
        same = self._upto(seq)
        m = next((m for m in same if m.batch_id == batch), None)
        for other in same:
            if other is not m:
                self._not_logged(other)
        if m is None:
            if self.lowest is None or seq >= self.lowest:
                self.found.append(
                    LogFinding(
                        "log_manifest_missing",
                        f"{where} logs batch {batch} (batch_seq {seq}), whose manifest is not in the bucket",
                        batch=batch,
                    )
                )
            return
        self._compare(where, e, m)

    def _compare(self, where: str, e: dict[str, Any], m: Manifest) -> None:
        if m.sha256 != e.get("manifest_sha256"):
            self.found.append(
                LogFinding(
                    "log_manifest_mismatch",
                    f"{where} logs batch {m.batch_id} with another manifest SHA-256: the manifest was replaced",
                    batch=m.batch_id,
                )
            )
        elif any(e.get(k) != m.commitments.get(k) for k in commitment.LOG_FIELDS):
            self.found.append(
                LogFinding(
                    "log_entry_mismatch",
                    f"{where} does not repeat the recordings and custody roots of batch {m.batch_id}'s manifest: "
                    "proof bundles from this log would not match the bucket",
                    batch=m.batch_id,
                )
            )

    def _not_logged(self, m: Manifest) -> None:
        """A manifest no entry names: a finding when sealed since the log began (at or after its first entry)."""
        if self.first is not None and m.seq is not None and m.seq >= self.first:
            self._unlogged.append(
                LogFinding(
                    "manifest_not_in_log",
                    f"batch {m.batch_id} is not in the dock's latest checkpoint (sealed after the log began; a dock "
                    "still publishing it adds it shortly)",
                    batch=m.batch_id,
                )
            )

    def finish(self) -> None:
        """After the last entry: the manifests after it."""
        while self._head is not None:
            m = self._next()
            assert m is not None
            self._not_logged(m)

    def unlogged(self) -> list[LogFinding]:
        """Manifests sealed since the log began (batch_seq at or after its first entry) that it lacks."""
        return self._unlogged.named + self._unlogged.summary()
