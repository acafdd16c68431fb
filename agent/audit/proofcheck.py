"""Check a proof bundle offline: the party's side of selective disclosure (docs/auditing.md).

What a bundle that passes proves (docs/formats.md §14): the checkpoint is signed by a log key the policy
names for the dock and cosigned by witnesses meeting the policy's quorum; the log entry is leaf ``index``
of that tree; the recording's manifest element is leaf ``recording.index`` of the ``recordings_root`` the
entry commits to, in a tree of exactly the entry's ``recordings`` leaves; and each custody line is the
entry ``seq`` of the segment ``custody_root`` commits to. Nothing needs the bucket or the network.

Strict beyond C2SP's signed-note rules on purpose: a signature line by a key the policy does not name
is refused rather than ignored, so that evidence handed to a court carries nothing its checker could not
verify and any change to any byte of the bundle is caught.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature

from bodycam.agent.formats import cosignature, note, proofbundle, tlog, witnesspolicy
from bodycam.agent.formats import manifest as mf
from bodycam.agent.formats.custody import canonical
from bodycam.agent.storage import docklog
from bodycam.drivers import strictjson
from bodycam.drivers.errors import IntegrityError, ProtocolError

ENTRY_VALUES = 32
LINE_VALUES = 2_000  # a recording element or a custody line: tens of values


@dataclass(frozen=True, slots=True)
class ProofReport:
    """What a verified bundle established (``--json``)."""

    origin: str
    log_index: int
    tree_size: int
    root: str
    log_signers: list[str]
    witnesses: dict[str, int]  # policy name -> cosignature timestamp
    entry: strictjson.JSONObject
    recording: strictjson.JSONObject
    custody: list[strictjson.JSONObject] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "ok": True,
            "origin": self.origin,
            "log_index": self.log_index,
            "tree_size": self.tree_size,
            "root_hash": self.root,
            "log_signers": self.log_signers,
            "witnesses": self.witnesses,
            "dock_id": self.entry["dock_id"],
            "batch_id": self.entry["batch_id"],
            "batch_seq": self.entry["batch_seq"],
            "manifest_sha256": self.entry["manifest_sha256"],
            "recording": self.recording,
            "custody": self.custody,
        }


def check(data: bytes, policy: witnesspolicy.Policy) -> ProofReport:
    """The report of a bundle that holds under ``policy``; IntegrityError naming the first thing that fails."""
    bundle = proofbundle.parse(data)
    entry = _entry(bundle.entry)
    dock_id, batch_id = _text_field(entry, "dock_id"), _text_field(entry, "batch_id")
    origin = docklog.origin(dock_id)
    text, signers, witnesses = _signatures(bundle.checkpoint, origin, policy)
    cp = note.parse_checkpoint(text, origin=origin)
    _included("the log entry", bundle.index, cp.size, bundle.entry, bundle.log_proof, cp.root)
    recording = _line(bundle.recording.line, "the recording")
    serial, rec_id = recording.get("camera_serial"), recording.get("recording_id")
    if not isinstance(serial, str) or not isinstance(rec_id, int) or isinstance(rec_id, bool):
        raise IntegrityError("proof bundle: the recording names no camera_serial and recording_id")
    prefix = f"{mf.batch_prefix(dock_id, batch_id)}/recordings/"
    if recording.get("key") != f"{prefix}{serial}/{rec_id}.age":
        raise IntegrityError(f"proof bundle: the recording's key is not under batch {batch_id}")
    _included(
        "the recording",
        bundle.recording_index,
        _count_field(entry, "recordings"),
        bundle.recording.line,
        bundle.recording.proof,
        bytes.fromhex(_text_field(entry, "recordings_root")),
    )
    custody = _custody(bundle, entry, serial, rec_id)
    return ProofReport(origin, bundle.index, cp.size, cp.root.hex(), signers, witnesses, entry, recording, custody)


def _entry(raw: bytes) -> strictjson.JSONObject:
    """The log entry, which must be canonical and carry a 1.1 manifest's commitments."""
    doc = _line(raw, "the log entry", ENTRY_VALUES)
    if doc.get("format") != docklog.ENTRY_FORMAT:
        raise IntegrityError(f"proof bundle: the log entry is not {docklog.ENTRY_FORMAT}")
    for name in ("dock_id", "batch_id", "manifest_sha256", "recordings_root", "custody_root"):
        _text_field(doc, name)
    for name in ("batch_seq", "recordings", "custody_first_seq", "custody_last_seq"):
        _count_field(doc, name)
    for name in ("recordings_root", "custody_root"):
        value = _text_field(doc, name)
        if len(value) != 64 or value.strip("0123456789abcdef"):
            raise IntegrityError(f"proof bundle: the log entry's {name} is not 64 hex digits")
    if not note.valid_name(docklog.origin(_text_field(doc, "dock_id"))):
        raise IntegrityError("proof bundle: the log entry's dock_id cannot name a log")
    return doc


def _text_field(entry: strictjson.JSONObject, name: str) -> str:
    """A string field of the log entry (``_entry`` checked each one it reads)."""
    value = entry.get(name)
    if not isinstance(value, str):
        raise IntegrityError(f"proof bundle: the log entry has no {name} (a manifest sealed before format 1.1?)")
    return value


def _count_field(entry: strictjson.JSONObject, name: str) -> int:
    """A count field of the log entry (``_entry`` checked each one it reads)."""
    value = entry.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise IntegrityError(f"proof bundle: the log entry's {name} is not a count")
    return value


def _line(raw: bytes, what: str, max_values: int = LINE_VALUES) -> strictjson.JSONObject:
    try:
        doc = strictjson.parse_json(raw, f"proof bundle: {what}", max_values)
    except ProtocolError as err:
        raise IntegrityError(str(err)) from None
    if not isinstance(doc, dict) or canonical(doc) != raw:
        raise IntegrityError(f"proof bundle: {what} is not a canonical JSON object")
    return doc


def _signatures(checkpoint: bytes, origin: str, policy: witnesspolicy.Policy) -> tuple[str, list[str], dict[str, int]]:
    """The checkpoint's text, the log keys and the witnesses (policy names, timestamps) that signed it.

    Every signature line must verify by a key of the policy: the dock's log key (as the origin names
    it) or a witness's cosigner key. The quorum must be met."""
    logs = policy.log_verifiers(origin)
    if not logs:
        raise IntegrityError(f"proof bundle is for log {origin}, which the policy names no key for")
    text, lines = note.split_note(checkpoint)
    known = {(v.name, v.key_id): v for v in logs}
    signers: list[str] = []
    cosigned: dict[str, int] = {}
    for line in lines:
        name, sig = note.signature_line(line)
        v = known.get((name, sig[:4]))
        if v is not None:
            try:
                v.key.verify(sig[4:], text.encode())
            except InvalidSignature:
                raise IntegrityError(f"proof bundle: the checkpoint's signature by {name} does not verify") from None
            signers.append(f"{name}+{v.key_id.hex()}")
            continue
        hit = cosignature.verify_line(line, text, policy.cosigners())
        if hit is None:
            raise IntegrityError(
                f"proof bundle: the checkpoint carries a signature by {name[:64]}, whose key the policy does not name"
            )
        cosigned[hit[0]] = hit[1]
    if not signers:
        raise IntegrityError(f"proof bundle: the checkpoint is not signed by a log key of {origin} in the policy")
    witnessed = {w.name: cosigned[w.cosigner.name] for w in policy.witnesses if w.cosigner.name in cosigned}
    if not policy.satisfied(witnessed):
        have = ", ".join(sorted(witnessed)) or "no witness"
        raise IntegrityError(
            f"proof bundle: the checkpoint is cosigned by {have}, short of the policy's quorum {policy.quorum}"
        )
    return text, signers, witnessed


def _included(what: str, index: int, size: int, data: bytes, proof: tuple[bytes, ...], root: bytes) -> None:
    try:
        tlog.verify_inclusion(index, size, tlog.leaf_hash(data), proof, root)
    except IntegrityError as err:
        raise IntegrityError(f"proof bundle: {what} is not proven: {err}") from None


def _custody(
    bundle: proofbundle.Bundle, entry: strictjson.JSONObject, serial: str, rec_id: int
) -> list[strictjson.JSONObject]:
    """Each custody line names this recording, comes in seq order, and is its seq's leaf of the segment."""
    first, last = _count_field(entry, "custody_first_seq"), _count_field(entry, "custody_last_seq")
    root = bytes.fromhex(_text_field(entry, "custody_root"))
    out: list[strictjson.JSONObject] = []
    previous = first - 1
    for leaf in bundle.custody:
        doc = _line(leaf.line, "a custody entry")
        seq = doc.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool) or not previous < seq <= last:
            raise IntegrityError(
                f"proof bundle: custody entry {str(seq)[:20]} is out of order or outside {first}..{last}"
            )
        if doc.get("camera") != serial or doc.get("recording") != rec_id:
            raise IntegrityError(f"proof bundle: custody entry {seq} is not about recording {rec_id} of {serial}")
        _included(f"custody entry {seq}", seq - first, last - first + 1, leaf.line, leaf.proof, root)
        out.append(doc)
        previous = seq
    return out
