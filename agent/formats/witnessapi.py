"""The bodies of C2SP tlog-witness ``add-checkpoint``: what the dock sends and the witness parses.

Request: ``old <size>\\n``, at most 63 base64 consistency-proof hashes one per line, an empty line, then
the signed checkpoint. A 409 answer's body is the witness's size and a newline (``text/x.tlog.size``).
Pure and strict on both sides: a witness faces anyone who can reach its port.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass

from bodycam.agent.formats import note

MAX_PROOF_LINES = 63
MAX_REQUEST = note.MAX_NOTE + 64 + MAX_PROOF_LINES * 45
MAX_RESPONSE = note.MAX_NOTE
SIZE_TYPE = "text/x.tlog.size"


class BadRequest(ValueError):
    """A body that does not follow the protocol (the witness answers 400)."""


@dataclass(frozen=True, slots=True)
class AddCheckpoint:
    old: int
    proof: tuple[bytes, ...]
    checkpoint: bytes  # the signed note, unverified


def _decimal(text: str, what: str) -> int:
    if not text.isascii() or not text.isdigit() or (text != "0" and text.startswith("0")) or len(text) > 19:
        raise BadRequest(f"{what} is not a decimal number without leading zeros")
    value = int(text)
    if value > note.MAX_TREE_SIZE:
        raise BadRequest(f"{what} is beyond 2**63 - 1")
    return value


def encode_request(old: int, proof: Sequence[bytes], checkpoint: bytes) -> bytes:
    lines = [f"old {old}\n", *(base64.b64encode(h).decode() + "\n" for h in proof), "\n"]
    return "".join(lines).encode() + checkpoint


def parse_request(body: bytes) -> AddCheckpoint:
    """The parts of an add-checkpoint body. Raises BadRequest."""
    if len(body) > MAX_REQUEST:
        raise BadRequest(f"the request is larger than {MAX_REQUEST} bytes")
    end = body.find(b"\n\n")
    if end < 0:
        raise BadRequest("no empty line after the old size and proof")
    try:
        head = body[:end].decode("ascii").split("\n")
    except UnicodeDecodeError:
        raise BadRequest("the old size and proof lines are not ASCII") from None
    if not head[0].startswith("old "):
        raise BadRequest("the first line is not 'old <size>'")
    old = _decimal(head[0][4:], "the old size")
    if len(head) - 1 > MAX_PROOF_LINES:
        raise BadRequest(f"more than {MAX_PROOF_LINES} consistency proof lines")
    proof = []
    for line in head[1:]:
        try:
            h = base64.b64decode(line, validate=True)
        except binascii.Error:
            h = b""
        if len(h) != 32 or base64.b64encode(h).decode() != line:
            raise BadRequest("a consistency proof line is not the canonical base64 of 32 bytes")
        proof.append(h)
    return AddCheckpoint(old, tuple(proof), body[end + 2 :])


def encode_size(size: int) -> bytes:
    return f"{size}\n".encode()


def parse_size(body: bytes) -> int:
    """The witness's size from a 409 body. Raises BadRequest."""
    if len(body) > 21 or not body.endswith(b"\n"):
        raise BadRequest("a size answer is a decimal number and a newline")
    return _decimal(body[:-1].decode("ascii", "replace"), "the witness's size")
