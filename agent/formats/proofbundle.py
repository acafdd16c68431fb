"""Proof bundles: one recording's place in a dock's log, as a C2SP tlog-proof (docs/formats.md §14).

Why this format: C2SP tlog-proof is the text a transparency-log ecosystem already reads offline (index,
inclusion proof, checkpoint with its signatures and cosignatures), and its ``extra`` line carries "the
data necessary to reconstruct the record hash". Ours is a canonical JSON document: the log entry (the
leaf), the recording's manifest element with its inclusion proof under the entry's ``recordings_root``,
and its custody lines with theirs under ``custody_root`` (agent/formats/commitment.py). Nothing else of
the batch travels, so a court can be given one recording without the others.

Parsing is strict and bounded (a bundle comes from outside): at most :data:`MAX_BUNDLE` bytes, canonical
base64 and canonical JSON with exactly the fields below, so any change to any byte either breaks the
parse or changes a value the checker (agent/audit/proofcheck.py) recomputes. Pure: bytes in, bytes out.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass

from bodycam.agent.formats import tlog
from bodycam.agent.formats.custody import canonical
from bodycam.drivers import strictjson
from bodycam.drivers.errors import IntegrityError, ProtocolError

HEADER = "c2sp.org/tlog-proof@v1"
FORMAT = "bodycam-proof/1"
EXTENSION = ".tlog-proof"
MAX_BUNDLE = 1024 * 1024
MAX_LINE = 64 * 1024  # a manifest recording element or a custody line (custody's own cap)
MAX_CUSTODY = 256  # custody lines naming one recording in its batch: a handful in practice
MAX_VALUES = 50_000
_INDEX = re.compile(r"index (0|[1-9][0-9]{0,18})")


@dataclass(frozen=True, slots=True)
class Leaf:
    """One leaf of a batch's commitment tree: its bytes and its RFC 6962 inclusion proof."""

    line: bytes
    proof: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Bundle:
    index: int  # the log entry's leaf index in the checkpoint's tree
    log_proof: tuple[bytes, ...]
    checkpoint: bytes  # the signed note, verbatim: the dock's signature and any cosignatures
    entry: bytes  # the log entry (the leaf's data)
    recording_index: int  # the recording's position in the manifest's recordings
    recording: Leaf
    custody: tuple[Leaf, ...]  # in seq order; each one's index is its seq minus custody_first_seq


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str, what: str) -> bytes:
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise IntegrityError(f"proof bundle: {what} is not base64") from None
    if _b64(data) != text:
        raise IntegrityError(f"proof bundle: {what} is not canonical base64")
    return data


def extra(bundle: Bundle) -> bytes:
    """The ``extra`` document's canonical JSON."""
    return canonical(
        {
            "format": FORMAT,
            "entry": bundle.entry.decode(),
            "recording": {
                "index": bundle.recording_index,
                "line": bundle.recording.line.decode(),
                "proof": [_b64(h) for h in bundle.recording.proof],
            },
            "custody": [{"line": c.line.decode(), "proof": [_b64(h) for h in c.proof]} for c in bundle.custody],
        }
    )


def encode(bundle: Bundle) -> bytes:
    """The bundle's text: header, ``extra``, ``index``, one base64 hash per line, a blank line, the checkpoint."""
    head = [HEADER, f"extra {_b64(extra(bundle))}", f"index {bundle.index}", *(_b64(h) for h in bundle.log_proof)]
    return ("\n".join(head) + "\n\n").encode() + bundle.checkpoint


def parse(data: bytes) -> Bundle:
    """A bundle from its bytes, strictly; IntegrityError (one line naming the part) otherwise."""
    if len(data) > MAX_BUNDLE:
        raise IntegrityError(f"proof bundle is larger than {MAX_BUNDLE} bytes")
    head, sep, checkpoint = data.partition(b"\n\n")
    if not sep:
        raise IntegrityError("proof bundle has no blank line before its checkpoint")
    try:
        lines = head.decode("ascii").split("\n")
    except UnicodeDecodeError:
        raise IntegrityError("proof bundle: the lines before the checkpoint are not ASCII") from None
    if lines[0] != HEADER:
        raise IntegrityError(f"proof bundle does not start with {HEADER}")
    if len(lines) < 3 or not lines[1].startswith("extra "):
        raise IntegrityError("proof bundle has no 'extra' line with the recording's data")
    index = _INDEX.fullmatch(lines[2])
    if index is None:
        raise IntegrityError("proof bundle: the line after 'extra' must be 'index N' (decimal, no leading zeros)")
    if len(lines) - 3 > tlog.MAX_PROOF:
        raise IntegrityError("proof bundle: the inclusion proof is longer than any log needs")
    log_proof = tuple(_hash(line, "an inclusion proof line") for line in lines[3:])
    doc = _extra(_unb64(lines[1][len("extra ") :], "the extra line"))
    recording = _object(doc["recording"], ("index", "line", "proof"), "recording")
    custody = doc["custody"]
    if not isinstance(custody, list) or len(custody) > MAX_CUSTODY:
        raise IntegrityError(f"proof bundle: custody must be a list of at most {MAX_CUSTODY} entries")
    return Bundle(
        index=int(index.group(1)),
        log_proof=log_proof,
        checkpoint=checkpoint,
        entry=_text(doc["entry"], "entry"),
        recording_index=_count(recording["index"], "recording index"),
        recording=_leaf(recording, "recording"),
        custody=tuple(_leaf(_object(c, ("line", "proof"), "custody entry"), "custody entry") for c in custody),
    )


def _extra(raw: bytes) -> strictjson.JSONObject:
    try:
        doc = strictjson.parse_json(raw, "proof bundle's extra data", MAX_VALUES)
    except ProtocolError as err:
        raise IntegrityError(str(err)) from None
    doc = _object(doc, ("custody", "entry", "format", "recording"), "extra data")
    if doc["format"] != FORMAT:
        raise IntegrityError(f"proof bundle: extra data is not {FORMAT}")
    if canonical(doc) != raw:
        raise IntegrityError("proof bundle: extra data is not canonical JSON")
    return doc


def _object(value: strictjson.JSONValue, keys: Sequence[str], what: str) -> strictjson.JSONObject:
    if not isinstance(value, dict) or sorted(value) != sorted(keys):
        raise IntegrityError(f"proof bundle: {what} must be an object with exactly {', '.join(sorted(keys))}")
    return value


def _leaf(value: strictjson.JSONObject, what: str) -> Leaf:
    proof = value["proof"]
    if not isinstance(proof, list) or len(proof) > tlog.MAX_PROOF:
        raise IntegrityError(f"proof bundle: the {what}'s proof must be a list of at most {tlog.MAX_PROOF} hashes")
    return Leaf(_text(value["line"], what), tuple(_hash(h, f"a {what} proof hash") for h in proof))


def _text(value: strictjson.JSONValue, what: str) -> bytes:
    if not isinstance(value, str) or len(value) > MAX_LINE:
        raise IntegrityError(f"proof bundle: the {what} must be a string of at most {MAX_LINE} characters")
    return value.encode()


def _count(value: strictjson.JSONValue, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise IntegrityError(f"proof bundle: the {what} must be a non-negative integer")
    return value


def _hash(value: strictjson.JSONValue, what: str) -> bytes:
    if not isinstance(value, str):
        raise IntegrityError(f"proof bundle: {what} is not a base64 string")
    h = _unb64(value, what)
    if len(h) != tlog.HASH_SIZE:
        raise IntegrityError(f"proof bundle: {what} is not a 32-byte hash")
    return h
