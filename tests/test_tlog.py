"""The dock's transparency log: RFC 6962 hashing and proofs, C2SP tiles, signed-note checkpoints, each
checked by our verifier and by Go's golang.org/x/mod/sumdb (tests/go/tlogcheck)."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bodycam.agent.formats import note, tlog
from bodycam.drivers.errors import IntegrityError, StorageError

from . import tlogcheck as gocheck

ORIGIN = "bodycam-sync/dock-test"

# RFC 6962 / certificate-transparency test vectors: eight leaves and the root of each prefix.
CT_LEAVES = [bytes.fromhex(h) for h in ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                        "606162636465666768696a6b6c6d6e6f"]]  # fmt: skip
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 section 2.1, literally (the reference the stored-hash tree must agree with)."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return tlog.leaf_hash(leaves[0])
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return tlog.node_hash(mth(leaves[:k]), mth(leaves[k:]))


def path(m: int, leaves: list[bytes]) -> list[bytes]:
    if len(leaves) == 1:
        return []
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    if m < k:
        return [*path(m, leaves[:k]), mth(leaves[k:])]
    return [*path(m - k, leaves[k:]), mth(leaves[:k])]


def subproof(m: int, leaves: list[bytes], whole: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if whole else [mth(leaves)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return [*subproof(m, leaves[:k], whole), mth(leaves[k:])]
    return [*subproof(m - k, leaves[k:], False), mth(leaves[:k])]


def test_roots_match_the_certificate_transparency_vectors() -> None:
    tree = tlog.Tree(tlog.MemoryHashStore())
    assert tree.root() == hashlib.sha256(b"").digest()
    for leaf, root in zip(CT_LEAVES, CT_ROOTS, strict=True):
        tree.append(leaf)
        assert tree.root().hex() == root
    for size in range(1, 9):
        assert tree.root(size).hex() == CT_ROOTS[size - 1]


def test_stored_hashes_proofs_and_verifiers_agree_with_rfc6962_for_every_small_tree() -> None:
    leaves = [gocheck.entry(i) for i in range(70)]
    tree = gocheck.build_tree(len(leaves))
    assert tree.store.count() == tlog.stored_hash_count(70)
    for n in range(1, 71):
        root = tree.root(n)
        assert root == mth(leaves[:n])
        for m in range(n):
            proof = tree.inclusion_proof(m, n)
            assert proof == path(m, leaves[:n])
            tlog.verify_inclusion(m, n, tlog.leaf_hash(leaves[m]), proof, root)
        for old in range(1, n + 1):
            proof = tree.consistency_proof(old, n)
            assert proof == (subproof(old, leaves[:n], True) if old < n else [])
            tlog.verify_consistency(old, n, tree.root(old), root, proof)


def test_an_append_writes_only_the_new_hashes() -> None:
    tree = gocheck.build_tree(0)
    for n in range(1, 1025):
        before = tree.store.count()
        tree.append(b"x")
        assert tree.store.count() - before == 1 + (n & -n).bit_length() - 1 <= 11


def test_the_70000_tree_is_served_as_the_spec_example_says() -> None:
    tiles = tlog.tiles_for(70_000)
    full0 = [t for t in tiles if t.level == 0 and t.width == 256]
    assert len(full0) == 273
    assert [t for t in tiles if t.width != 256 or t.level > 0] == [
        tlog.Tile(0, 273, 112), tlog.Tile(1, 0), tlog.Tile(1, 1, 17), tlog.Tile(2, 0, 1)
    ]  # fmt: skip
    assert tlog.tiles_for(256) == [tlog.Tile(0, 0), tlog.Tile(1, 0, 1)]
    assert tlog.Tile(0, 1234067).path == "tile/0/x001/x234/067"
    assert tlog.Tile(1, 5, 17).path == "tile/1/005.p/17"
    assert tlog.Tile(0, 1000, 3).entries_path == "tile/entries/x001/000.p/3"


def test_the_signed_note_spec_example_verifies_and_a_changed_one_does_not() -> None:
    vkey = note.parse_verifier_key("example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k")
    msg = (
        "This is an example message.\n\n\u2014 example.com/foo "
        "Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
    ).encode()
    assert note.open_note(msg, [vkey]) == ("This is an example message.\n", ["example.com/foo"])
    with pytest.raises(IntegrityError, match="does not verify"):
        note.open_note(msg.replace(b"example message", b"exemple message"), [vkey])


def test_our_checkpoint_and_verifier_key_round_trip() -> None:
    key = Ed25519PrivateKey.generate()
    vkey = note.verifier_key(ORIGIN, key.public_key())
    name, kid, b64key = vkey.split("+", 2)
    raw = base64.b64decode(b64key)
    assert name == ORIGIN and raw[0] == 1 and len(raw) == 33
    assert bytes.fromhex(kid) == hashlib.sha256(ORIGIN.encode() + b"\n\x01" + raw[1:]).digest()[:4]
    cp = note.Checkpoint(ORIGIN, 3, bytes(range(32)))
    signed = note.sign_checkpoint(cp, ORIGIN, key)
    text, _, sig_line = signed.decode().partition("\n\n")
    assert text + "\n" == f"{ORIGIN}\n3\n{base64.b64encode(bytes(range(32))).decode()}\n"
    assert sig_line.startswith(f"\u2014 {ORIGIN} ") and sig_line.endswith("\n")
    assert base64.b64decode(sig_line.split()[-1])[:4] == bytes.fromhex(kid)
    assert note.open_checkpoint(signed, [note.parse_verifier_key(vkey)], origin=ORIGIN) == cp
    other = note.parse_verifier_key(note.verifier_key(ORIGIN, Ed25519PrivateKey.generate().public_key()))
    with pytest.raises(IntegrityError, match="no signature by a trusted key"):
        note.open_checkpoint(signed, [other])
    with pytest.raises(IntegrityError, match="not 'other'"):
        note.open_checkpoint(signed, [note.parse_verifier_key(vkey)], origin="other")


@pytest.mark.parametrize("bad", ["o\n01\nAAAA\n", "o\n1\n" + "A" * 43 + "=\nextra\n", "o\n-1\nx\n", "\n1\nx\n",
                                 "o\n1\n" + base64.b64encode(bytes(31)).decode() + "\n"])  # fmt: skip
def test_malformed_checkpoint_text_is_refused(bad: str) -> None:
    with pytest.raises(IntegrityError):
        note.parse_checkpoint(bad)


def test_a_hash_store_file_survives_a_crash_between_hashes_and_the_journaled_size(tmp_path: Path) -> None:
    store = tlog.FileHashStore(tmp_path / "hashes")
    tree = tlog.Tree(store)
    for i in range(300):
        tree.append(gocheck.entry(i))
    root = tree.root()
    store.sync()
    tree.append(b"not journaled")  # the crash: hashes written, size 300 still journaled
    store.close()
    again = tlog.Tree(tlog.FileHashStore(tmp_path / "hashes"), 300)
    assert again.root() == root and again.store.count() == tlog.stored_hash_count(300)
    with pytest.raises(StorageError, match="rebuild"):
        tlog.Tree(tlog.FileHashStore(tmp_path / "hashes"), 301)


def test_entry_bundles_round_trip_and_refuse_truncation() -> None:
    entries = [b"", b"a", b"x" * 65535]
    bundle = tlog.entry_bundle(entries)
    assert tlog.parse_entry_bundle(bundle) == entries
    for cut in (1, 3, len(bundle) - 1):
        with pytest.raises(IntegrityError):
            tlog.parse_entry_bundle(bundle[:cut])
    with pytest.raises(ValueError, match="longer"):
        tlog.entry_bundle([b"x" * 65536])


@pytest.mark.parametrize("size", [1, 2, 3, 255, 256, 257, 1000, 70_000])
def test_go_verifies_our_checkpoint_tiles_entries_and_proofs(size: int, tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    tree = gocheck.build_tree(size)
    gocheck.write_log(tree, tmp_path, key, ORIGIN)
    sample = sorted({0, 1, size // 2, size - 2, size - 1, 255, 256, 65535, 65536} & set(range(size)))
    olds = sorted({1, 2, 3, 255, 256, 257, size // 3, size - 1, size} & set(range(1, size + 1)))
    for i in sample:  # our own verifier first
        tlog.verify_inclusion(i, size, tlog.leaf_hash(gocheck.entry(i)), tree.inclusion_proof(i), tree.root())
    for m in olds:
        tlog.verify_consistency(m, size, tree.root(m), tree.root(), tree.consistency_proof(m))
    lines = gocheck.run(
        {
            "vkey": note.verifier_key(ORIGIN, key.public_key()),
            "checkpoint": str(tmp_path / "checkpoint"),
            "origin": ORIGIN,
            "tiles": str(tmp_path),
            "all_tiles": True,
            "entries": True,
            "records": [
                {
                    "index": i,
                    "leaf": gocheck.b64(tlog.leaf_hash(gocheck.entry(i))),
                    "proof": gocheck.proof_list(tree.inclusion_proof(i)),
                }
                for i in sample
            ]
            + [{"index": i, "entry": gocheck.b64(gocheck.entry(i))} for i in sample],
            "trees": [
                {"size": m, "root": gocheck.b64(tree.root(m)), "proof": gocheck.proof_list(tree.consistency_proof(m))}
                for m in olds
            ],
        }
    )
    assert lines == ["checkpoint OK", "tiles OK", "entries OK"] + [f"record {i} OK" for i in sample] * 2 + [
        f"tree {m} OK" for m in olds
    ]


def _flips(data: bytes) -> list[tuple[int, bytes]]:
    return [(i, data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]) for i in range(len(data))]


def _same_signature(signed: bytes, flipped: bytes) -> bool:
    """Whether a flip only touched the unused padding bits of the signature's last base64 character:
    Go's lenient base64 decodes the very same signature bytes, so nothing signed has changed."""
    try:
        a, b = signed.decode().rsplit(" ", 1)[1], flipped.decode().rsplit(" ", 1)[1]
    except (UnicodeDecodeError, IndexError):
        return False
    return a != b and signed[: -len(a) - 1] == flipped[: -len(b) - 1] and base64.b64decode(a) == base64.b64decode(b)


@pytest.mark.parametrize("seed", [bytes(32), bytes([7]) * 32, bytes(range(32))], ids=["zeros", "sevens", "count"])
def test_every_byte_flip_in_a_checkpoint_is_rejected_by_us_and_by_go(seed: bytes, tmp_path: Path) -> None:
    key = Ed25519PrivateKey.from_private_bytes(seed)
    tree = gocheck.build_tree(257)
    signed = gocheck.write_log(tree, tmp_path, key, ORIGIN)
    vkey = note.verifier_key(ORIGIN, key.public_key())
    verifier = note.parse_verifier_key(vkey)
    assert note.open_checkpoint(signed, [verifier], origin=ORIGIN).size == 257
    lenient = 0
    for i, flipped in _flips(signed):
        with pytest.raises(IntegrityError):  # ours: strict base64, so every flip is refused
            note.open_checkpoint(flipped, [verifier], origin=ORIGIN)
        (tmp_path / "checkpoint").write_bytes(flipped)
        lines = gocheck.run({"vkey": vkey, "checkpoint": str(tmp_path / "checkpoint"), "origin": ORIGIN})
        if lines[0] == "checkpoint OK":
            assert _same_signature(signed, flipped), (i, flipped)
            lenient += 1
        else:
            assert lines[0].startswith("checkpoint FAIL"), (i, flipped)
    assert lenient <= 1


def test_every_byte_flip_in_a_proof_is_rejected_by_us_and_by_go(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    tree = gocheck.build_tree(1000)
    gocheck.write_log(tree, tmp_path, key, ORIGIN)
    root, index, old = tree.root(), 700, 600
    leaf = tlog.leaf_hash(gocheck.entry(index))
    inclusion = b"".join(tree.inclusion_proof(index))
    consistency = b"".join(tree.consistency_proof(old))

    def split(data: bytes) -> list[bytes]:
        return [data[i : i + 32] for i in range(0, len(data), 32)]

    records, trees = [], []
    for _, flipped in _flips(inclusion):
        with pytest.raises(IntegrityError):
            tlog.verify_inclusion(index, 1000, leaf, split(flipped), root)
        records.append({"index": index, "leaf": gocheck.b64(leaf), "proof": gocheck.proof_list(split(flipped))})
    for _, flipped in _flips(consistency):
        with pytest.raises(IntegrityError):
            tlog.verify_consistency(old, 1000, tree.root(old), root, split(flipped))
        trees.append({"size": old, "root": gocheck.b64(tree.root(old)), "proof": gocheck.proof_list(split(flipped))})
    # a proof one hash short or long, and a wrong leaf or old root, fail too
    short, long_ = split(inclusion)[:-1], [*split(inclusion), bytes(32)]
    for bad in (short, long_):
        with pytest.raises(IntegrityError):
            tlog.verify_inclusion(index, 1000, leaf, bad, root)
        records.append({"index": index, "leaf": gocheck.b64(leaf), "proof": gocheck.proof_list(bad)})
    for bad_leaf in _flips(leaf):
        records.append(
            {"index": index, "leaf": gocheck.b64(bad_leaf[1]), "proof": gocheck.proof_list(split(inclusion))}
        )
    for _, bad_root in _flips(tree.root(old))[::7]:
        trees.append({"size": old, "root": gocheck.b64(bad_root), "proof": gocheck.proof_list(split(consistency))})
    lines = gocheck.run(
        {
            "vkey": note.verifier_key(ORIGIN, key.public_key()),
            "checkpoint": str(tmp_path / "checkpoint"),
            "tiles": str(tmp_path),
            "records": records,
            "trees": trees,
        }
    )
    assert lines[0] == "checkpoint OK"
    assert len(lines) == 1 + len(records) + len(trees)
    assert all(" FAIL: " in line for line in lines[1:]), [line for line in lines[1:] if " OK" in line]


def test_go_rejects_a_tile_with_one_flipped_byte(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    tree = gocheck.build_tree(70_000)
    gocheck.write_log(tree, tmp_path, key, ORIGIN)
    request = {
        "vkey": note.verifier_key(ORIGIN, key.public_key()),
        "checkpoint": str(tmp_path / "checkpoint"),
        "tiles": str(tmp_path),
        "all_tiles": True,
        "entries": True,
    }
    for name in ("tile/0/000", "tile/0/273.p/112", "tile/1/001.p/17", "tile/2/000.p/1", "tile/entries/100"):
        target = tmp_path / name
        original = target.read_bytes()
        target.write_bytes(original[:5] + bytes([original[5] ^ 1]) + original[6:])
        assert any(" FAIL: " in line for line in gocheck.run(request)), name
        target.write_bytes(original)
    assert all(line.endswith(" OK") for line in gocheck.run(request))


def test_a_view_reads_a_prefix_of_a_longer_store_and_never_truncates_it() -> None:
    tree = gocheck.build_tree(300)
    view = tlog.Tree.view(tree.store, 257)
    assert view.root() == tree.root(257) and view.tile(tlog.Tile(0, 1, 1)) == tree.tile(tlog.Tile(0, 1, 1))
    assert tree.store.count() == tlog.stored_hash_count(300)
    with pytest.raises(ValueError, match="cannot be appended"):
        view.append(b"x")
    with pytest.raises(StorageError):
        tlog.Tree.view(tree.store, 301)


def test_stored_hash_indexes_split_back_into_level_and_subtree() -> None:
    """Go's SplitStoredHashIndex: the inverse of stored_hash_index, over every hash of a 5,000-leaf tree."""
    for index in range(tlog.stored_hash_count(5000)):
        assert tlog.stored_hash_index(*tlog.split_stored_hash_index(index)) == index


@pytest.mark.parametrize("size", [1, 2, 255, 256, 257, 513, 65536, 70001])
def test_proofs_built_from_the_tiles_are_those_of_the_whole_tree(size: int) -> None:
    """A TileHashStore serves a tree from its published tiles (each read as the tree of ``size`` serves it)
    with a few tiles held: every inclusion and consistency proof it builds is the one the stored tree
    builds (proof and verify's re-read checkpoint rely on it)."""
    tree = gocheck.build_tree(size)
    read: list[tlog.Tile] = []
    served = set(tlog.tiles_for(size))

    def tile(t: tlog.Tile) -> bytes:
        assert t in served, t  # only tiles the tree of `size` is published as
        read.append(t)
        return tree.tile(t)

    tiles = tlog.Tree.view(tlog.TileHashStore(size, tile), size)
    assert tiles.root() == tree.root()
    for index in sorted({0, size // 3, size // 2, size - 1}):
        for at in sorted({index + 1, (index + size + 1) // 2, size}):
            assert tiles.inclusion_proof(index, at) == tree.inclusion_proof(index, at)
            assert tiles.consistency_proof(at) == tree.consistency_proof(at)
    with pytest.raises(ValueError):
        tiles.append(b"x")


def test_ci_installs_go_and_fails_rather_than_skips_without_it(tmp_path: Path) -> None:
    """The Go checks skip on a machine without Go but must fail under CI (a skip there passes silently):
    .ci/run marks the run as CI itself, whatever the runner sets, and scripts/test.sh installs both
    Debian packages; with CI set and no go on PATH the verifier's build fails the test."""
    root = Path(__file__).resolve().parents[1]
    ci = (root / ".ci" / "run").read_text()
    assert "export CI=" in ci and ci.index("export CI=") < ci.index("scripts/test.sh"), ci
    test_sh = (root / "scripts" / "test.sh").read_text()
    assert "golang-go" in test_sh and "golang-golang-x-mod-dev" in test_sh
    probe = "\n".join(
        [
            "import pytest",
            "from tests import tlogcheck",
            "try:",
            "    tlogcheck.binary()",
            "except pytest.fail.Exception:",
            "    print('failed')",
            "except pytest.skip.Exception:",
            "    print('skipped')",
        ]
    )
    for ci_env, said in (("1", "failed"), ("", "skipped")):
        env = {"PATH": str(tmp_path), "CI": ci_env, "PYTHONPATH": str(root)}
        proc = subprocess.run([sys.executable, "-c", probe], cwd=root, env=env, capture_output=True, text=True)
        assert proc.stdout.strip() == said, proc.stdout + proc.stderr
