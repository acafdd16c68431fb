"""cosignature/v1 (C2SP tlog-cosignature) and the witness policy file: the shared formats of witnessing."""

from __future__ import annotations

import base64
import hashlib
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bodycam.agent.formats import cosignature, note, witnesspolicy
from bodycam.drivers.errors import ConfigError, IntegrityError

from .fifo import outcome_on_a_fifo

ORIGIN = "bodycam-sync/dock-01"


def _checkpoint(size: int = 5) -> tuple[bytes, Ed25519PrivateKey]:
    key = Ed25519PrivateKey.generate()
    return note.sign_checkpoint(note.Checkpoint(ORIGIN, size, bytes(range(32))), ORIGIN, key), key


def _raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def test_a_cosignature_is_the_spec_s_message_key_id_and_layout() -> None:
    signed, log_key = _checkpoint()
    wkey = Ed25519PrivateKey.generate()
    line = cosignature.cosign(note.Checkpoint(ORIGIN, 5, bytes(range(32))).text(), "w.example/a", wkey, 1679315147)
    assert line.startswith("\u2014 w.example/a ") and line.endswith("\n")
    payload = base64.b64decode(line.split(" ")[2])
    kid, ts, sig = struct.unpack(">4sQ64s", payload)
    assert kid == hashlib.sha256(b"w.example/a\n\x04" + _raw(wkey)).digest()[:4]
    assert ts == 1679315147
    expected = (
        b"cosignature/v1\ntime 1679315147\n" + ORIGIN.encode() + b"\n5\n" + base64.b64encode(bytes(range(32))) + b"\n"
    )
    wkey.public_key().verify(sig, expected)
    vkey = cosignature.verifier_key("w.example/a", wkey.public_key())
    assert base64.b64decode(vkey.split("+", 2)[2])[0] == 0x04
    cosigner = cosignature.parse_verifier_key(vkey)
    merged = cosignature.add_lines(signed, [line])
    assert cosignature.cosignatures(merged, [cosigner]) == {"w.example/a": 1679315147}
    # the log's own signature still opens it, and the cosignature is ignored as an unknown signer there
    log = note.parse_verifier_key(note.verifier_key(ORIGIN, log_key.public_key()))
    assert note.open_checkpoint(merged, [log]).size == 5


def test_a_cosignature_over_another_checkpoint_or_a_changed_line_is_refused() -> None:
    signed, _ = _checkpoint()
    other, _ = _checkpoint(6)
    wkey = Ed25519PrivateKey.generate()
    cosigner = cosignature.parse_verifier_key(cosignature.verifier_key("w", wkey.public_key()))
    line = cosignature.cosign(note.Checkpoint(ORIGIN, 6, bytes(range(32))).text(), "w", wkey, 100)
    with pytest.raises(IntegrityError, match="cosignature by w does not verify"):
        cosignature.cosignatures(cosignature.add_lines(signed, [line]), [cosigner])
    assert cosignature.cosignatures(cosignature.add_lines(other, [line]), [cosigner]) == {"w": 100}
    # unknown cosigners are ignored, so a note cosigned by nobody known yields nothing
    stranger = cosignature.parse_verifier_key(cosignature.verifier_key("w", Ed25519PrivateKey.generate().public_key()))
    assert cosignature.cosignatures(cosignature.add_lines(other, [line]), [stranger]) == {}


def test_a_log_key_is_not_a_witness_key_and_the_other_way_round() -> None:
    key = Ed25519PrivateKey.generate().public_key()
    with pytest.raises(IntegrityError, match="type 0x04"):
        cosignature.parse_verifier_key(note.verifier_key("w", key))
    with pytest.raises(IntegrityError, match="type 0x01"):
        note.parse_verifier_key(cosignature.verifier_key("w", key))
    vkey = cosignature.verifier_key("w", key)
    name, kid, b64 = vkey.split("+", 2)
    with pytest.raises(IntegrityError, match="key id does not match"):
        cosignature.parse_verifier_key(f"{name}+{'00000000' if kid != '00000000' else '11111111'}+{b64}")


def _vkeys() -> tuple[str, list[str], list[Ed25519PrivateKey]]:
    log = note.verifier_key(ORIGIN, Ed25519PrivateKey.generate().public_key())
    keys = [Ed25519PrivateKey.generate() for _ in range(3)]
    return log, [cosignature.verifier_key(f"w{i}.example", k.public_key()) for i, k in enumerate(keys)], keys


def test_a_policy_parses_and_its_groups_decide_the_quorum() -> None:
    log, w, _ = _vkeys()
    policy = witnesspolicy.parse(
        f"# the parties\nlog {log}\n\nwitness ho {w[0]} https://ho.example/w\nwitness platform {w[1]}\n"
        f"witness auditor {w[2]}\ngroup parties 2 ho platform\ngroup any-party any parties auditor\nquorum any-party\n"
    )
    assert policy.origins() == [ORIGIN]
    assert [x.url for x in policy.witnesses] == ["https://ho.example/w", None, None]
    assert policy.satisfied({"auditor"})
    assert policy.satisfied({"ho", "platform"})
    assert not policy.satisfied({"ho"})
    assert not policy.satisfied(set())
    assert witnesspolicy.parse(f"log {log}\n").satisfied(set())  # no witnesses: quorum none
    assert policy.names_of({"w2.example"}) == {"auditor"}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("logg {log}", "line 1: unknown keyword 'logg'"),
        ("witness a {w0}", "no quorum line"),
        ("witness a {w0}\nquorum b", "line 2: quorum 'b' is not"),
        ("witness a {w0}\nwitness a {w1}", "line 2: 'a' is defined twice"),
        ("witness a {w0}\nwitness b {w0}", "line 2: witness key w0.example is listed twice"),
        ("witness a {w0}\ngroup g 2 a\nquorum g", "threshold is any, all or 1..1"),
        ("witness a {w0}\ngroup g 1 a a", "distinct members"),
        ("group g any a\nwitness a {w0}", "line 1: group member 'a' is not"),
        ("witness none {w0}", "not a usable name"),
        ("witness a {log}", "type 0x04"),
        ("log {w0}", "type 0x01"),
        ("witness a {w0} ftp://x", "http:// or https://"),
        ("log {log}\x00", "control character"),
        ("quorum none\nquorum none", "a second quorum line"),
        ("log {log} extra", "log <verifier key>"),
    ],
)
def test_a_bad_policy_is_one_line_naming_the_line(body: str, error: str) -> None:
    log, w, _ = _vkeys()
    with pytest.raises(ConfigError, match=error.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        witnesspolicy.parse(body.format(log=log, w0=w[0], w1=w[1]), "p")


def test_a_policy_is_bounded(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_text("# " + "x" * 1000 + "\n" * 70000)
    with pytest.raises(ConfigError, match="larger than 65536 bytes"):
        witnesspolicy.load(big)
    many = "".join(
        f"witness w{i} {cosignature.verifier_key(f'k{i}', Ed25519PrivateKey.generate().public_key())}\n"
        for i in range(65)
    )
    with pytest.raises(ConfigError, match="more than 64 witnesses"):
        witnesspolicy.parse(many)
    with pytest.raises(ConfigError, match="longer than 1024"):
        witnesspolicy.parse("#" + "x" * 2000)
    with pytest.raises(ConfigError, match="missing"):
        witnesspolicy.load(tmp_path / "missing")


def test_a_policy_path_that_is_a_named_pipe_is_refused_not_waited_on(tmp_path: Path) -> None:
    """Policies (and the other small files drivers/files.py read_bounded reads: dock certificates at each
    docking, allowed signers, the fleet cache) were opened by a plain open(): a named pipe with no writer
    at the path held the daemon's start, or verify, in open() for ever. Now it is one line; a pipe a
    writer feeds (a shell's <(...)) is still read."""
    import os

    fifo = tmp_path / "witness.policy"
    os.mkfifo(fifo, 0o600)
    outcome = outcome_on_a_fifo(lambda: witnesspolicy.load(fifo), fifo, "witnesspolicy.load")
    assert isinstance(outcome, ConfigError), outcome
    assert str(outcome) == f"witness policy {fifo}: a named pipe that nothing writes to"
    log, _, _ = _vkeys()
    read_end, write_end = os.pipe()  # what a shell's <(...) hands over: /dev/fd/N, a pipe with its data
    try:
        os.write(write_end, f"log {log}\n".encode())
        os.close(write_end)
        assert witnesspolicy.load(Path(f"/dev/fd/{read_end}")).origins() == [ORIGIN]
    finally:
        os.close(read_end)


def test_the_policy_names_the_witnesses_that_cosigned_a_checkpoint() -> None:
    log_key = Ed25519PrivateKey.generate()
    log = note.verifier_key(ORIGIN, log_key.public_key())
    _, w, keys = _vkeys()
    policy = witnesspolicy.parse(f"log {log}\nwitness a {w[0]}\nwitness b {w[1]}\ngroup both all a b\nquorum both\n")
    cp = note.Checkpoint(ORIGIN, 3, bytes(32))
    signed = note.sign_checkpoint(cp, ORIGIN, log_key)
    one = cosignature.add_lines(signed, [cosignature.cosign(cp.text(), "w0.example", keys[0], 1)])
    assert policy.witnessed(one) == {"a"} and not policy.satisfied(policy.witnessed(one))
    both = cosignature.add_lines(one, [cosignature.cosign(cp.text(), "w1.example", keys[1], 2)])
    assert policy.satisfied(policy.witnessed(both))
    assert note.open_checkpoint(both, policy.log_verifiers(ORIGIN)) == cp


def test_one_key_never_counts_as_two_witnesses_nor_as_a_log_and_its_witness() -> None:
    """A cosignature/v1 signature does not cover the cosigner's name, so a key listed under two witness
    names let its one holder relabel its cosignature and meet a quorum of two (and a witness holding the
    dock's log key let the dock cosign itself). Before: the policy parsed and one holder met 'all a b'."""
    log_key, wkey = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    log = note.verifier_key(ORIGIN, log_key.public_key())
    a = cosignature.verifier_key("a.example/w", wkey.public_key())
    b = cosignature.verifier_key("b.example/w", wkey.public_key())
    cp = note.Checkpoint(ORIGIN, 3, bytes(32))
    line = cosignature.cosign(cp.text(), "a.example/w", wkey, 1)
    # the same signature under the other name and its key id: it verifies, since the name is not signed
    payload = base64.b64decode(line.split(" ")[2])
    relabelled_payload = cosignature.parse_verifier_key(b).key_id + payload[4:]
    relabelled = f"\u2014 b.example/w {base64.b64encode(relabelled_payload).decode()}\n"
    both = cosignature.add_lines(note.sign_checkpoint(cp, ORIGIN, log_key), [line, relabelled])
    cosigners = [cosignature.parse_verifier_key(v) for v in (a, b)]
    assert set(cosignature.cosignatures(both, cosigners)) == {"a.example/w", "b.example/w"}
    with pytest.raises(ConfigError, match="line 3: witness b has the key of witness a"):
        witnesspolicy.parse(f"log {log}\nwitness a {a}\nwitness b {b}\ngroup both all a b\nquorum both\n", "p")
    as_witness = cosignature.verifier_key("self.example/w", log_key.public_key())
    with pytest.raises(ConfigError, match="line 2: witness self has the key of log bodycam-sync/dock-01"):
        witnesspolicy.parse(f"log {log}\nwitness self {as_witness}\nquorum self\n", "p")
    with pytest.raises(ConfigError, match="line 2: log key bodycam-sync/dock-01 is the key of witness self"):
        witnesspolicy.parse(f"witness self {as_witness}\nlog {log}\nquorum self\n", "p")
    # one log key for two origins (a dock renamed, its key kept) stays allowed
    renamed = note.verifier_key("bodycam-sync/dock-02", log_key.public_key())
    assert witnesspolicy.parse(f"log {log}\nlog {renamed}\n").origins() == [ORIGIN, "bodycam-sync/dock-02"]


def test_go_s_note_open_accepts_our_cosignatures_and_refuses_a_flipped_byte(tmp_path: Path) -> None:
    from . import tlogcheck as gocheck

    signed, log_key = _checkpoint(7)
    cp = note.Checkpoint(ORIGIN, 7, bytes(range(32)))
    keys = [Ed25519PrivateKey.generate() for _ in range(2)]
    lines = [cosignature.cosign(cp.text(), f"w{i}.example", k, 1700000000 + i) for i, k in enumerate(keys)]
    good = tmp_path / "cosigned"
    good.write_bytes(cosignature.add_lines(signed, lines))
    request = {
        "vkey": note.verifier_key(ORIGIN, log_key.public_key()),
        "origin": ORIGIN,
        "cosigners": [cosignature.verifier_key(f"w{i}.example", k.public_key()) for i, k in enumerate(keys)],
    }
    assert gocheck.run({**request, "checkpoint": str(good)}) == ["checkpoint OK"]
    data = bytearray(good.read_bytes())
    sig_start = data.rindex("\u2014 w1.example ".encode()) + len("\u2014 w1.example ".encode())
    raw = bytearray(base64.b64decode(data[sig_start:-1]))
    raw[20] ^= 1  # a byte of the signature (after the key id and the timestamp)
    bad = tmp_path / "flipped"
    bad.write_bytes(bytes(data[:sig_start]) + base64.b64encode(bytes(raw)) + b"\n")
    assert gocheck.run({**request, "checkpoint": str(bad)})[0].startswith("checkpoint FAIL")
    with pytest.raises(IntegrityError, match=r"cosignature by w1\.example does not verify"):
        cosignature.cosignatures(bad.read_bytes(), [cosignature.parse_verifier_key(request["cosigners"][1])])
