"""RFC 6962 Merkle tree, its proofs, and C2SP tlog-tiles: the hashing side of the dock's transparency log.

Why here and in this shape: every party of a data-sharing agreement must be able to check that it sees
the same append-only history as the others (guarantee 7 in docs/ARCHITECTURE.md). An RFC 6962 tree gives inclusion
proofs (this manifest is in the log) and consistency proofs (this log only grew), and C2SP tlog-tiles
publish it as immutable static objects a bucket can hold create-only. Go's ``golang.org/x/mod/sumdb/tlog``
is the independent verifier in the tests, so the stored-hash numbering below is the one it uses.

Hashes are kept in a :class:`HashStore` in "stored hash index" order (Go's ``StoredHashIndex``): appending
leaf *n* writes its leaf hash plus one hash per subtree it completes, so an append costs O(log n) reads
and writes, and nothing about the tree is held in memory. Tiles are read straight out of the store.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bodycam.drivers.errors import IntegrityError, StorageError

HASH_SIZE = 32
HEIGHT = 8  # C2SP tlog-tiles: tiles are subtrees of height 8
TILE_WIDTH = 1 << HEIGHT
MAX_LEVEL = 63
MAX_ENTRY = 0xFFFF  # entry bundles length-prefix each entry with a big-endian uint16
MAX_PROOF = 2 * 64  # no RFC 6962 proof of a tree with < 2**63 leaves is longer
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """MTH of one entry: SHA-256(0x00 || data) (RFC 6962 section 2.1)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Interior node: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def stored_hash_index(level: int, n: int) -> int:
    """Where the hash of the ``n``-th subtree of height ``level`` sits in the store (Go's numbering).

    Level L's n-th hash is written right after level L+1's (2n+1)-th hash; level 0's n-th hash is at
    n + n/2 + n/4 + ... .
    """
    for _ in range(level):
        n = 2 * n + 1
    i = 0
    while n > 0:
        i += n
        n >>= 1
    return i + level


def split_stored_hash_index(index: int) -> tuple[int, int]:
    """The (level, n) whose hash sits at ``index`` in the store: the inverse of :func:`stored_hash_index`
    (Go's ``SplitStoredHashIndex``). Leaf n's hashes start at ``stored_hash_index(0, n)``, below 2n."""
    if index < 0:
        raise ValueError("stored hash index must be non-negative")
    n = index // 2
    at = stored_hash_index(0, n)
    while True:
        # leaf n + 1 adds its leaf hash plus one per subtree it completes (its trailing zero bits)
        after = at + 1 + ((n + 1) & -(n + 1)).bit_length() - 1
        if after > index:
            break
        n, at = n + 1, after
    level = index - at
    return level, n >> level


def stored_hash_count(size: int) -> int:
    """How many hashes a tree of ``size`` leaves has stored."""
    if size == 0:
        return 0
    count = stored_hash_index(0, size - 1) + 1
    i = size - 1
    while i & 1:
        count += 1
        i >>= 1
    return count


def _split(n: int) -> int:
    """The largest power of two strictly below ``n`` (n >= 2): RFC 6962's k."""
    return 1 << ((n - 1).bit_length() - 1)


class HashStore(Protocol):
    """Append-only array of 32-byte hashes in stored-hash order."""

    def count(self) -> int: ...

    def read(self, index: int) -> bytes: ...

    def append(self, hashes: Sequence[bytes]) -> None: ...

    def truncate(self, count: int) -> None: ...


class MemoryHashStore:
    """Hashes in one bytearray (tests, small logs): 32 bytes per stored hash, about 64 bytes a leaf."""

    def __init__(self) -> None:
        self._data = bytearray()

    def count(self) -> int:
        return len(self._data) // HASH_SIZE

    def read(self, index: int) -> bytes:
        if not 0 <= index < self.count():
            raise StorageError(f"tlog: stored hash {index} is not in the store")
        return bytes(self._data[index * HASH_SIZE : (index + 1) * HASH_SIZE])

    def append(self, hashes: Sequence[bytes]) -> None:
        for h in hashes:
            self._data += h

    def truncate(self, count: int) -> None:
        del self._data[count * HASH_SIZE :]


class FileHashStore:
    """Hashes in a file (the dock, the benchmark): memory stays flat however long the log grows.

    ``sync()`` makes appended hashes durable; the owner journals the tree size only after it, and on
    reopen :class:`Tree` truncates hashes a crash left beyond that size.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as err:
            raise StorageError(f"cannot open the log's hash store {path}: {err.strerror}") from err
        size = os.fstat(self._fd).st_size
        self._count = size // HASH_SIZE

    def count(self) -> int:
        return self._count

    def read(self, index: int) -> bytes:
        if not 0 <= index < self._count:
            raise StorageError(f"tlog: stored hash {index} is not in {self.path}")
        data = os.pread(self._fd, HASH_SIZE, index * HASH_SIZE)
        if len(data) != HASH_SIZE:
            raise StorageError(f"{self.path} is shorter than its hash count; the log's hash store is damaged")
        return data

    def append(self, hashes: Sequence[bytes]) -> None:
        data = b"".join(hashes)
        try:
            os.pwrite(self._fd, data, self._count * HASH_SIZE)
        except OSError as err:
            raise StorageError(f"cannot write the log's hash store {self.path}: {err.strerror}") from err
        self._count += len(hashes)

    def truncate(self, count: int) -> None:
        os.ftruncate(self._fd, count * HASH_SIZE)
        self._count = min(self._count, count)

    def sync(self) -> None:
        os.fsync(self._fd)

    def close(self) -> None:
        os.close(self._fd)


#: ``read(tile)``: the ``tile.width`` hashes of a published hash tile (a reader of a bucket falls back to
#: the first ``width`` hashes of the full tile when the partial one is gone: C2SP tlog-tiles)
TileReader = Callable[["Tile"], bytes]
TILE_CACHE = 8  # tiles a TileHashStore keeps (8 KiB each): a proof reads one or two per tile level


class TileHashStore:
    """The stored hashes of a published tree of ``size`` leaves, read from its hash tiles: what a party
    proving inclusion or consistency from a bucket reads (Go's ``TileHashReader``), in memory that does
    not grow with the log (:data:`TILE_CACHE` tiles), where rebuilding the tree would cost 64 bytes a leaf.

    A hash of a level that is not a multiple of 8 is folded from the 2**k hashes of the tile below it.
    The tiles are not authenticated here (Go's reader checks each against the signed tree as it reads):
    a caller checks what it builds against a signed root (:func:`verify_inclusion`,
    :func:`verify_consistency`), which a wrong tile cannot pass. Read-only: use it through :meth:`Tree.view`.
    """

    def __init__(self, size: int, read: TileReader, cache: int = TILE_CACHE) -> None:
        self.size = size
        self._read = read
        self._cache: OrderedDict[Tile, bytes] = OrderedDict()
        self._cache_max = max(1, cache)

    def count(self) -> int:
        return stored_hash_count(self.size)

    def read(self, index: int) -> bytes:
        if not 0 <= index < self.count():
            raise StorageError(f"tlog: stored hash {index} is not in a tree of {self.size}")
        return self.hash(*split_stored_hash_index(index))

    def hash(self, level: int, n: int) -> bytes:
        """The hash of complete subtree ``n`` of height ``level``, from the tile at level ``level // 8``."""
        tile_level, height = divmod(level, HEIGHT)
        below = self.size >> (HEIGHT * tile_level)  # hashes at level 8 * tile_level
        first, end = n << height, (n + 1) << height
        if end > below:
            raise StorageError(f"tlog: subtree {n} at height {level} is not complete in a tree of {self.size}")
        tile_n = first >> HEIGHT
        tile = Tile(tile_level, tile_n, min(TILE_WIDTH, below - tile_n * TILE_WIDTH))
        data = self._tile(tile)
        start = first - tile_n * TILE_WIDTH
        hashes = [data[i * HASH_SIZE : (i + 1) * HASH_SIZE] for i in range(start, start + (1 << height))]
        while len(hashes) > 1:
            hashes = [node_hash(hashes[i], hashes[i + 1]) for i in range(0, len(hashes), 2)]
        return hashes[0]

    def _tile(self, tile: Tile) -> bytes:
        data = self._cache.get(tile)
        if data is not None:
            self._cache.move_to_end(tile)
            return data
        data = self._read(tile)
        if len(data) != tile.width * HASH_SIZE:
            raise IntegrityError(f"{tile.path} is {len(data)} bytes, not {tile.width} hashes of {HASH_SIZE}")
        self._cache[tile] = data
        if len(self._cache) > self._cache_max:
            self._cache.popitem(last=False)
        return data

    def append(self, hashes: Sequence[bytes]) -> None:
        raise ValueError("a tree read from its tiles cannot be appended to")

    def truncate(self, count: int) -> None:
        raise ValueError("a tree read from its tiles cannot be truncated")


@dataclass(frozen=True, slots=True)
class Tile:
    """A C2SP tile: ``width`` hashes at tree level 8*``level``, starting at hash ``n``*256 of that level."""

    level: int
    n: int
    width: int = TILE_WIDTH

    @property
    def path(self) -> str:
        """``tile/<L>/<N>[.p/<W>]`` with N in x-prefixed 3-digit segments (C2SP tlog-tiles)."""
        return f"tile/{self.level}/{encode_index(self.n)}{self._partial()}"

    @property
    def entries_path(self) -> str:
        """The entry bundle holding the leaves of this level-0 tile: ``tile/entries/<N>[.p/<W>]``."""
        return f"tile/entries/{encode_index(self.n)}{self._partial()}"

    def _partial(self) -> str:
        return "" if self.width == TILE_WIDTH else f".p/{self.width}"


def encode_index(n: int) -> str:
    """1234067 -> ``x001/x234/067``: zero-padded 3-digit elements, all but the last prefixed with x."""
    if n < 0:
        raise ValueError("tile index must be non-negative")
    parts = [f"{n % 1000:03d}"]
    n //= 1000
    while n > 0:
        parts.append(f"x{n % 1000:03d}")
        n //= 1000
    return "/".join(reversed(parts))


def new_tiles(old_size: int, new_size: int) -> list[Tile]:
    """The tiles to publish when the tree grows from ``old_size`` to ``new_size`` (Go's ``NewTiles``):
    every full tile completed since, and the partial tile at each level for ``new_size``."""
    tiles: list[Tile] = []
    level = 0
    while new_size >> (HEIGHT * level) > 0:
        old_n = old_size >> (HEIGHT * level)
        new_n = new_size >> (HEIGHT * level)
        if old_n != new_n:
            tiles.extend(Tile(level, n) for n in range(old_n >> HEIGHT, new_n >> HEIGHT))
            n = new_n >> HEIGHT
            width = new_n - (n << HEIGHT)
            if width > 0:
                tiles.append(Tile(level, n, width))
        level += 1
    return tiles


def tiles_for(size: int) -> list[Tile]:
    """Every tile (full and partial) a tree of ``size`` leaves is served as."""
    return new_tiles(0, size)


class Tree:
    """An append-only RFC 6962 tree over a :class:`HashStore`, of ``size`` leaves.

    ``size`` is the caller's journaled tree size: hashes beyond it (a crash between writing hashes and
    journaling the size) are truncated, and a store holding fewer than the size needs is refused.
    """

    def __init__(self, store: HashStore, size: int = 0) -> None:
        need = stored_hash_count(size)
        have = store.count()
        if have < need:
            raise StorageError(
                f"the log's hash store holds {have} hashes but a tree of {size} leaves needs {need}; "
                "it was lost or truncated: rebuild it from the published entry bundles"
            )
        if have > need:
            store.truncate(need)
        self.store = store
        self._size = size
        self._read_only = False

    @classmethod
    def view(cls, store: HashStore, size: int) -> Tree:
        """The first ``size`` leaves of a store that may hold more (stored hashes are a prefix-ordered
        array): read-only, and it never truncates, so a reader cannot undo a concurrent append."""
        need = stored_hash_count(size)
        if store.count() < need:
            raise StorageError(f"the log's hash store holds {store.count()} hashes; a tree of {size} needs {need}")
        tree = cls.__new__(cls)
        tree.store, tree._size, tree._read_only = store, size, True
        return tree

    @property
    def size(self) -> int:
        return self._size

    def append(self, data: bytes) -> int:
        """Add one entry; returns its index. Writes 1 + (trailing one bits of the index) hashes."""
        return self.append_leaf_hash(leaf_hash(data))

    def append_leaf_hash(self, h: bytes) -> int:
        if self._read_only:
            raise ValueError("a view of a log cannot be appended to")
        n = self._size
        hashes = [h]
        level = 0
        while (n >> level) & 1:
            left = self.store.read(stored_hash_index(level, (n >> level) - 1))
            h = node_hash(left, h)
            hashes.append(h)
            level += 1
        self.store.append(hashes)
        self._size = n + 1
        return n

    def stored(self, level: int, n: int) -> bytes:
        """Hash of the complete subtree ``n`` at height ``level`` (must lie inside the tree)."""
        return self.store.read(stored_hash_index(level, n))

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (default: all of them)."""
        size = self._size if size is None else size
        self._check_size(size)
        return EMPTY_ROOT if size == 0 else self._mth(0, size)

    def _mth(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi]) where ``lo`` is aligned to the largest power of two not above hi - lo, which
        holds for every range RFC 6962's recursion visits: the left subtree is read, the fringe computed."""
        n = hi - lo
        if n & (n - 1) == 0:
            level = n.bit_length() - 1
            return self.stored(level, lo >> level)
        k = _split(n)
        return node_hash(self._mth(lo, lo + k), self._mth(lo + k, hi))

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 6962 PATH(index, D[0:size])."""
        size = self._size if size is None else size
        self._check_size(size)
        if not 0 <= index < size:
            raise ValueError(f"leaf {index} is not in a tree of {size}")
        proof: list[bytes] = []
        lo, hi, m = 0, size, index
        while hi - lo > 1:
            k = _split(hi - lo)
            if m < k:
                proof.append(self._mth(lo + k, hi))
                hi = lo + k
            else:
                proof.append(self._mth(lo, lo + k))
                lo, m = lo + k, m - k
        proof.reverse()
        return proof

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """RFC 6962 PROOF(old_size, D[0:new_size]); empty when the sizes are equal or old_size is 0."""
        new_size = self._size if new_size is None else new_size
        self._check_size(new_size)
        if not 0 <= old_size <= new_size:
            raise ValueError(f"no consistency proof from {old_size} to {new_size}")
        if old_size in (0, new_size):
            return []
        proof: list[bytes] = []
        lo, hi, m, whole = 0, new_size, old_size, True
        while m != hi - lo:
            k = _split(hi - lo)
            if m <= k:
                proof.append(self._mth(lo + k, hi))
                hi = lo + k
            else:
                proof.append(self._mth(lo, lo + k))
                lo, m, whole = lo + k, m - k, False
        if not whole:
            proof.append(self._mth(lo, hi))
        proof.reverse()
        return proof

    def tile(self, tile: Tile) -> bytes:
        """The tile's bytes: ``width`` stored hashes of level 8*L, 32 bytes each."""
        if (tile.n * TILE_WIDTH + tile.width) << (HEIGHT * tile.level) > self._size:
            raise ValueError(f"{tile.path} is not in a tree of {self._size}")
        start = tile.n * TILE_WIDTH
        return b"".join(self.stored(HEIGHT * tile.level, start + i) for i in range(tile.width))

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= self._size:
            raise ValueError(f"tree size {size} is beyond the log's {self._size}")


class Frontier:
    """An RFC 6962 tree rebuilt leaf by leaf in O(log n) memory, for an auditor reading a whole log once.

    Why not :class:`Tree`: an auditor rebuilding a dock's log from its entry bundles needs each root and
    each tile once, in log order, never a random node again; keeping every hash would cost 64 bytes a
    leaf (64 MiB a million). Kept: the hashes of the complete subtrees the leaves so far split into (at
    most one per bit of the size) and, per tile level, the hashes of the tile being filled (at most 256
    of 32 bytes). :meth:`append` hands back each full tile as it completes, so it can be compared with the
    published one and forgotten; :meth:`partial_tiles` gives the last tile of each level.
    """

    def __init__(self) -> None:
        self.size = 0
        self._peaks: list[bytes] = []  # complete subtrees, largest (leftmost) first
        self._filling: list[list[bytes]] = [[]]  # per tile level: hashes of the tile not yet full

    def append(self, data: bytes) -> list[tuple[Tile, bytes]]:
        """Add one entry; returns the (tile, bytes) of each full tile it completes (usually none)."""
        return self.append_leaf_hash(leaf_hash(data))

    def append_leaf_hash(self, h: bytes) -> list[tuple[Tile, bytes]]:
        n = self.size
        self.size = n + 1
        done: list[tuple[Tile, bytes]] = []
        self._fill(0, h, done)
        height = 0
        while (n >> height) & 1:
            h = node_hash(self._peaks.pop(), h)
            height += 1
            if height % HEIGHT == 0:
                self._fill(height // HEIGHT, h, done)
        self._peaks.append(h)
        return done

    def _fill(self, level: int, h: bytes, done: list[tuple[Tile, bytes]]) -> None:
        if len(self._filling) <= level:
            self._filling.append([])
        tile = self._filling[level]
        tile.append(h)
        if len(tile) == TILE_WIDTH:
            done.append((Tile(level, (self.size >> (HEIGHT * (level + 1))) - 1), b"".join(tile)))
            tile.clear()

    def root(self) -> bytes:
        """MTH of the leaves so far: the complete subtrees folded from the right (RFC 6962's split)."""
        if not self._peaks:
            return EMPTY_ROOT
        h = self._peaks[-1]
        for left in reversed(self._peaks[:-1]):
            h = node_hash(left, h)
        return h

    def partial_tiles(self) -> list[tuple[Tile, bytes]]:
        """The partial tile of each level for the current size, as :func:`tiles_for` names them."""
        return [
            (Tile(level, self.size >> (HEIGHT * (level + 1)), len(hashes)), b"".join(hashes))
            for level, hashes in enumerate(self._filling)
            if hashes
        ]


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """RFC 9162 section 2.1.3.2: ``leaf`` (a leaf hash) is entry ``index`` of the tree ``root`` of
    ``size`` leaves. Raises IntegrityError naming what failed."""
    if not 0 <= index < size:
        raise IntegrityError(f"inclusion proof: leaf {index} cannot be in a tree of {size}")
    _check_hashes(proof, "inclusion proof")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise IntegrityError(f"inclusion proof for leaf {index} of {size} is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise IntegrityError(f"inclusion proof for leaf {index} of {size} is too short")
    if r != root:
        raise IntegrityError(f"inclusion proof for leaf {index} of {size} does not lead to the root hash")


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> None:
    """RFC 9162 section 2.1.4.2: the tree ``new_root`` of ``new_size`` extends ``old_root`` of
    ``old_size``. Raises IntegrityError naming what failed."""
    if not 0 <= old_size <= new_size:
        raise IntegrityError(f"consistency proof: a log cannot shrink from {old_size} to {new_size} leaves")
    _check_hashes(proof, "consistency proof")
    what = f"consistency proof from {old_size} to {new_size}"
    if old_size == new_size or old_size == 0:
        if proof:
            raise IntegrityError(f"{what} must be empty")
        if old_size == new_size and old_root != new_root:
            raise IntegrityError(f"two different root hashes for tree size {old_size}: the log forked")
        return
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    if not path:
        raise IntegrityError(f"{what} is empty")
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise IntegrityError(f"{what} is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise IntegrityError(f"{what} is too short")
    if fr != old_root or sr != new_root:
        raise IntegrityError(f"{what} does not match the root hashes: the log was rewritten")


def _check_hashes(proof: Sequence[bytes], what: str) -> None:
    if len(proof) > MAX_PROOF:
        raise IntegrityError(f"{what} has {len(proof)} hashes, more than any tree needs")
    if any(len(p) != HASH_SIZE for p in proof):
        raise IntegrityError(f"{what} holds a hash that is not {HASH_SIZE} bytes")


def tile_root(tile_data: bytes) -> bytes:
    """MTH of a full tile's 256 hashes: the hash its parent tile holds for it."""
    hashes = split_hashes(tile_data)
    while len(hashes) > 1:
        hashes = [node_hash(hashes[i], hashes[i + 1]) for i in range(0, len(hashes), 2)]
    return hashes[0]


def split_hashes(tile_data: bytes) -> list[bytes]:
    if not tile_data or len(tile_data) % HASH_SIZE or len(tile_data) > TILE_WIDTH * HASH_SIZE:
        raise IntegrityError(f"a tile of {len(tile_data)} bytes is not 1 to 256 hashes of 32 bytes")
    return [tile_data[i : i + HASH_SIZE] for i in range(0, len(tile_data), HASH_SIZE)]


def entry_bundle(entries: Sequence[bytes]) -> bytes:
    """Entries as a C2SP entry bundle: each prefixed with its big-endian uint16 length."""
    if not 0 < len(entries) <= TILE_WIDTH:
        raise ValueError("an entry bundle holds 1 to 256 entries")
    out = bytearray()
    for e in entries:
        if len(e) > MAX_ENTRY:
            raise ValueError(f"a log entry of {len(e)} bytes is longer than an entry bundle can hold")
        out += len(e).to_bytes(2, "big") + e
    return bytes(out)


def parse_entry_bundle(data: bytes) -> list[bytes]:
    """The entries of a bundle; IntegrityError when it is truncated or holds more than 256."""
    return list(_iter_bundle(data))


def _iter_bundle(data: bytes) -> Iterator[bytes]:
    pos = count = 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise IntegrityError("entry bundle ends inside a length prefix")
        size = int.from_bytes(data[pos : pos + 2], "big")
        pos += 2
        if pos + size > len(data):
            raise IntegrityError("entry bundle ends inside an entry")
        count += 1
        if count > TILE_WIDTH:
            raise IntegrityError("entry bundle holds more than 256 entries")
        yield data[pos : pos + size]
        pos += size


def tile_objects(
    tree: Tree, old_size: int, new_size: int, entries: Callable[[int, int], Sequence[bytes]]
) -> Iterator[tuple[str, bytes]]:
    """(path, bytes) of every tile and entry bundle to publish when the log grows from ``old_size`` to
    ``new_size``; ``entries(lo, hi)`` returns the entries with indexes lo..hi-1. Level-0 tiles come
    with their entry bundle; each object is produced when asked, so memory holds one tile at a time."""
    for tile in new_tiles(old_size, new_size):
        if tile.level == 0:
            lo = tile.n * TILE_WIDTH
            yield tile.entries_path, entry_bundle(entries(lo, lo + tile.width))
        yield tile.path, tree.tile(tile)
