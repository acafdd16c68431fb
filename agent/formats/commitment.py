"""Per-recording and per-custody-entry commitments in a manifest (manifest format 1.1, docs/formats.md §3.1).

Why: a proof bundle (agent/formats/proofbundle.py) must show a court that one recording is in a batch the
dock logged without handing over the rest of the batch. The log leaf names the manifest's SHA-256, which
only the whole manifest reproduces; so a 1.1 manifest also carries an RFC 6962 Merkle root over its
``recordings`` (each element's canonical JSON is a leaf) and one over its custody segment (each line, without
its newline, is a leaf), and the log entry repeats both roots with the counts that fix each tree's size.
One recording and its custody entries are then proven by short inclusion proofs, and the sibling hashes
they carry are hashes of other entries, each holding a SHA-256 of footage or of a line, so they reveal
nothing a reader could reverse.

Pure: bytes, JSON values and typed manifests in, hashes out. The same leaf and node hashes as the log (tlog.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from bodycam.agent.formats import tlog
from bodycam.agent.formats.custody import canonical
from bodycam.agent.formats.manifest import Manifest

#: the log entry fields a 1.1 manifest's leaf adds (docs/formats.md §9.4)
LOG_FIELDS = ("recordings", "recordings_root", "custody_first_seq", "custody_last_seq", "custody_root")


class RootBuilder:
    """RFC 6962 MTH of leaves fed one at a time, in O(log n) memory (a stack of complete subtrees)."""

    def __init__(self) -> None:
        self._stack: list[tuple[int, bytes]] = []  # (height, hash), heights strictly decreasing
        self.count = 0

    def add(self, data: bytes) -> None:
        """One more leaf (its data, not its hash)."""
        height, h = 0, tlog.leaf_hash(data)
        while self._stack and self._stack[-1][0] == height:
            h = tlog.node_hash(self._stack.pop()[1], h)
            height += 1
        self._stack.append((height, h))
        self.count += 1

    def root(self) -> bytes:
        """The root of the leaves so far (``SHA-256("")`` for none): right to left, as RFC 6962 splits."""
        if not self._stack:
            return tlog.EMPTY_ROOT
        r = self._stack[-1][1]
        for _, h in reversed(self._stack[:-1]):
            r = tlog.node_hash(h, r)
        return r


def root(leaves: Iterable[bytes]) -> bytes:
    builder = RootBuilder()
    for leaf in leaves:
        builder.add(leaf)
    return builder.root()


def inclusion(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """RFC 6962 PATH(index, leaves): what a bundle carries for one recording or custody line."""
    tree = tlog.Tree(tlog.MemoryHashStore())
    for leaf in leaves:
        tree.append(leaf)
    return tree.inclusion_proof(index)


def recording_leaf(recording: Mapping[str, object]) -> bytes:
    """A manifest recording's leaf: its canonical JSON, the very bytes it has inside the manifest."""
    return canonical(recording)


def recordings_root(recordings: Sequence[Mapping[str, object]]) -> str:
    """Hex root over a manifest's ``recordings`` in their order (the manifest's ``recordings_root``)."""
    return root(recording_leaf(r) for r in recordings).hex()


def custody_root(lines: Iterable[bytes]) -> str:
    """Hex root over a custody segment's lines, each without its newline (the manifest's ``custody.root``)."""
    return root(lines).hex()


def recording_leaves(manifest: Manifest) -> list[bytes]:
    """The leaves of a manifest's recordings tree, in order: each recording as it stands in the manifest
    (its unknown fields kept, so a parsed manifest gives the very bytes that were signed)."""
    return [recording_leaf(r.to_json()) for r in manifest.recordings]


def log_fields(manifest: Manifest) -> dict[str, object]:
    """What a manifest's log entry repeats of its commitments; empty for a manifest without them (1.0).

    The counts fix the size of each tree, which an inclusion proof alone does not (a path for leaf 0 of
    3 leaves also fits a tree of 4)."""
    custody = manifest.custody
    if manifest.recordings_root is None or custody.root is None:
        return {}
    return entry_fields(
        recordings=len(manifest.recordings),
        recordings_root=manifest.recordings_root,
        custody_first_seq=custody.first_seq,
        custody_last_seq=custody.last_seq,
        custody_root=custody.root,
    )


def entry_fields(
    *, recordings: int, recordings_root: str, custody_first_seq: int, custody_last_seq: int, custody_root: str
) -> dict[str, object]:
    """The log entry's roots and counts for a 1.1 manifest (what ``log_fields`` gives; the log bench calls
    it with made-up roots rather than building whole manifests)."""
    return {
        "recordings": recordings,
        "recordings_root": recordings_root,
        "custody_first_seq": custody_first_seq,
        "custody_last_seq": custody_last_seq,
        "custody_root": custody_root,
    }
