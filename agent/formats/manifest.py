"""Batch manifests (docs/formats.md): canonical JSON, SSH-signed, linked to the one before.

The manifest is what an auditor trusts: it lists every recording object with its plaintext,
camera-side and ciphertext SHA-256, names the custody segment's head, and carries the previous
manifest's hash so a deleted or replayed batch breaks the chain. Nothing in it names an officer
or a site in clear text: officers appear as keyed pseudonyms, and clear values travel in the
age-encrypted ``personal.json.age`` sidecar that only the agreement's recipients can open.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from bodycam.agent.formats.custody import canonical
from bodycam.agent.formats.times import parse_iso
from bodycam.drivers import strictjson
from bodycam.drivers.errors import ConfigError, IntegrityError, ProtocolError
from bodycam.drivers.files import PRIVATE_OPEN_FLAGS, read_private

FORMAT = "bodycam-manifest/1"
NAMESPACE = "bodycam-manifest"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.sig"
LOG_DIR = "log"
PREV_SIGNATURE = "manifest.json.sig.prev"  # next to manifest.json.sig in a batch that changes key
CUSTODY = "custody.jsonl"
PERSONAL = "personal.json.age"
MAX_PARTY_SIDECARS = 256  # a batch's party sidecars (one per distinct view; 16 parties per agreement)
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
MAX_VALUES = 8 * 1024 * 1024  # JSON values of a manifest the dock reads back (its own; verify sets its own)
MAX_TEXT = 1024  # characters of a string in a manifest (an object key is at most 1024 bytes) ...
MAX_RECIPIENT = 8192  # ... but an age recipient: a hybrid ML-KEM-768 one (age1pq1...) is about 1,950
MAX_INT = 2**63 - 1  # what SQLite, S3 and every other reader can hold
T = TypeVar("T")


class ManifestError(IntegrityError):
    """A manifest that breaks docs/formats.md §3: the message names the field and what it must be."""


class ManifestFormatError(ManifestError):
    """A manifest of another ``format`` than this reader knows: its fields may mean something else."""


@dataclass(frozen=True, slots=True)
class CustodyRef:
    """The batch's custody segment (docs/formats.md §4): where it is and how it links."""

    key: str
    first_seq: int
    last_seq: int
    prev: str
    head: str
    sha256: str
    root: str | None = None  # format 1.1 (docs/formats.md §3.1): Merkle root over the segment's lines
    extra: Mapping[str, object] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        out = {
            **self.extra,
            "key": self.key,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "prev": self.prev,
            "head": self.head,
            "sha256": self.sha256,
        }
        if self.root is not None:
            out["root"] = self.root
        return out

    @classmethod
    def from_json(cls, doc: _Doc) -> CustodyRef:
        return cls(
            doc.text("key"), doc.integer("first_seq"), doc.integer("last_seq"),
            doc.hex("prev"), doc.hex("head"), doc.hex("sha256"), doc.absent_or(doc.hex, "root"), doc.extra(),
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class PersonalRef:
    """The age-encrypted personal-data sidecar (docs/formats.md §5)."""

    key: str
    sha256: str
    extra: Mapping[str, object] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {**self.extra, "key": self.key, "sha256": self.sha256}

    @classmethod
    def from_json(cls, doc: _Doc) -> PersonalRef:
        return cls(doc.text("key"), doc.hex("sha256"), doc.extra())


@dataclass(frozen=True, slots=True)
class ManifestRecipient:
    """A party of the batch as its manifest names it (fields a newer writer added kept in ``extra``)."""

    name: str
    age: str
    extra: Mapping[str, object] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {**self.extra, "name": self.name, "age": self.age}

    @classmethod
    def from_json(cls, doc: _Doc) -> ManifestRecipient:
        return cls(doc.text("name"), doc.text("age", MAX_RECIPIENT), doc.extra())


@dataclass(frozen=True, slots=True)
class AgreementRef:
    """A data-sharing agreement that covered a recording (docs/formats.md §10)."""

    id: str
    version: int
    sha256: str
    extra: Mapping[str, object] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {**self.extra, "id": self.id, "version": self.version, "sha256": self.sha256}

    @classmethod
    def from_json(cls, doc: _Doc) -> AgreementRef:
        return cls(doc.text("id"), doc.integer("version"), doc.hex("sha256"), doc.extra())


@dataclass(frozen=True, slots=True)
class SidecarRef:
    """A party sidecar of a batch with recordings disclosed under agreements (docs/formats.md §5.3)."""

    key: str
    sha256: str
    parties: tuple[str, ...]
    data_items: tuple[str, ...]
    extra: Mapping[str, object] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {
            **self.extra, "key": self.key, "sha256": self.sha256,
            "parties": list(self.parties), "data_items": list(self.data_items),
        }  # fmt: skip

    @classmethod
    def from_json(cls, doc: _Doc) -> SidecarRef:
        return cls(doc.text("key"), doc.hex("sha256"), doc.texts("parties"), doc.texts("data_items"), doc.extra())


@dataclass(frozen=True, slots=True)
class ManifestRecording:
    """One recording object of a batch (docs/formats.md §3, "Each element of recordings")."""

    camera_serial: str
    camera_model: str | None  # null when the camera was enrolled without a model and did not name one
    recording_id: int
    start_camera: str
    end_camera: str
    clock_offset_s: float
    start: str
    end: str
    exercise_id: str | None
    size: int
    plaintext_sha256: str
    camera_sha256: str
    ciphertext_sha256: str
    ciphertext_size: int
    key: str
    version_id: str | None
    officer_pseudonym: str | None
    #: only on a dock under data-sharing agreements (absent, not empty, otherwise)
    agreements: tuple[AgreementRef, ...] | None = None
    parties: tuple[str, ...] | None = None
    #: only under agreements that set a retention (docs/formats.md §13)
    retain_until: str | None = None
    extra: Mapping[str, object] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            **self.extra,
            "camera_serial": self.camera_serial,
            "camera_model": self.camera_model,
            "recording_id": self.recording_id,
            "start_camera": self.start_camera,
            "end_camera": self.end_camera,
            "clock_offset_s": self.clock_offset_s,
            "start": self.start,
            "end": self.end,
            "exercise_id": self.exercise_id,
            "size": self.size,
            "plaintext_sha256": self.plaintext_sha256,
            "camera_sha256": self.camera_sha256,
            "ciphertext_sha256": self.ciphertext_sha256,
            "ciphertext_size": self.ciphertext_size,
            "key": self.key,
            "version_id": self.version_id,
            "officer_pseudonym": self.officer_pseudonym,
        }
        if self.agreements is not None:
            out["agreements"] = [a.to_json() for a in self.agreements]
        if self.parties is not None:
            out["parties"] = list(self.parties)
        if self.retain_until is not None:
            out["retain_until"] = self.retain_until
        return out

    @classmethod
    def from_json(cls, doc: _Doc) -> ManifestRecording:
        return cls(
            camera_serial=doc.text("camera_serial"),
            camera_model=doc.optional(doc.text, "camera_model"),
            recording_id=doc.integer("recording_id"),
            start_camera=doc.time("start_camera"),
            end_camera=doc.time("end_camera"),
            clock_offset_s=doc.number("clock_offset_s"),
            start=doc.time("start"),
            end=doc.time("end"),
            exercise_id=doc.optional(doc.text, "exercise_id"),
            size=doc.integer("size"),
            plaintext_sha256=doc.hex("plaintext_sha256"),
            camera_sha256=doc.hex("camera_sha256"),
            ciphertext_sha256=doc.hex("ciphertext_sha256"),
            ciphertext_size=doc.integer("ciphertext_size"),
            key=doc.text("key"),
            version_id=doc.optional(doc.text, "version_id"),
            officer_pseudonym=doc.optional(doc.hex, "officer_pseudonym"),
            agreements=doc.absent_or(lambda name: doc.items(name, AgreementRef.from_json), "agreements"),
            parties=doc.absent_or(doc.texts, "parties"),
            retain_until=doc.absent_or(doc.time, "retain_until"),
            extra=doc.extra(),
        )


@dataclass(frozen=True, slots=True)
class Manifest:
    """A batch manifest (docs/formats.md §3): built by the dock when it seals a batch
    (agent/pipeline/batch.py) and read back by ``verify`` (agent/audit/verify.py) through this one type.

    :meth:`to_bytes` is the canonical JSON that is signed; :meth:`parse` is strict and bounded and
    raises :class:`ManifestError` naming the field. Unknown fields are ignored (§3), so only a manifest
    without them round-trips byte for byte; the dock writes none.
    """

    format: str
    dock_id: str
    agent_version: str
    batch_id: str
    batch_seq: int
    opened: str
    sealed: str
    previous_manifest_sha256: str | None
    signing_key: str
    custody: CustodyRef
    personal: PersonalRef
    recipients: tuple[ManifestRecipient, ...]
    recordings: tuple[ManifestRecording, ...]
    #: format 1.1 (docs/formats.md §3.1): Merkle root over the recordings' canonical JSON, in order
    recordings_root: str | None = None
    #: only in a batch with recordings disclosed under agreements: one per party view (§5.3)
    sidecars: tuple[SidecarRef, ...] | None = None
    extra: Mapping[str, object] = field(default_factory=dict)

    @property
    def sealed_at(self) -> dt.datetime:
        """When it was sealed: signatures are judged at this time (docs/formats.md §6)."""
        return parse_iso(self.sealed)

    def to_json(self) -> dict[str, object]:
        out = {
            **self.extra,
            "format": self.format,
            "dock_id": self.dock_id,
            "agent_version": self.agent_version,
            "batch_id": self.batch_id,
            "batch_seq": self.batch_seq,
            "opened": self.opened,
            "sealed": self.sealed,
            "previous_manifest_sha256": self.previous_manifest_sha256,
            "signing_key": self.signing_key,
            "custody": self.custody.to_json(),
            "personal": self.personal.to_json(),
            "recipients": [r.to_json() for r in self.recipients],
            "recordings": [r.to_json() for r in self.recordings],
        }
        if self.recordings_root is not None:
            out["recordings_root"] = self.recordings_root
        if self.sidecars is not None:
            out["sidecars"] = [s.to_json() for s in self.sidecars]
        return out

    def to_bytes(self) -> bytes:
        """The canonical JSON bytes (docs/formats.md §2): what is signed, hashed and stored."""
        return canonical(self.to_json())

    @classmethod
    def from_json(cls, value: object, what: str) -> Manifest:
        """The manifest in a parsed JSON value; ManifestError (naming ``what`` and the field) otherwise."""
        doc = _Doc.of(value, what)
        if doc.text("format") != FORMAT:
            raise ManifestFormatError(f"{what} has format {_short(doc.fields['format'])}, expected {FORMAT}")
        batch_seq = doc.integer("batch_seq")
        if batch_seq < 1:
            raise doc.wrong("batch_seq", "a positive integer", batch_seq)
        sealed = doc.time("sealed")
        return cls(
            format=FORMAT,
            dock_id=doc.text("dock_id"),
            agent_version=doc.text("agent_version"),
            batch_id=doc.text("batch_id"),
            batch_seq=batch_seq,
            opened=doc.time("opened"),
            sealed=sealed,
            previous_manifest_sha256=doc.optional(doc.hex, "previous_manifest_sha256"),
            signing_key=doc.text("signing_key"),
            custody=CustodyRef.from_json(doc.child("custody")),
            personal=PersonalRef.from_json(doc.child("personal")),
            recipients=doc.items("recipients", ManifestRecipient.from_json),
            recordings=doc.items("recordings", ManifestRecording.from_json),
            recordings_root=doc.absent_or(doc.hex, "recordings_root"),
            sidecars=_sidecars(doc),
            extra=doc.extra(),
        )

    @classmethod
    def parse(cls, raw: bytes, what: str = MANIFEST, max_values: int = MAX_VALUES) -> Manifest:
        """Strict, bounded: at most ``max_values`` JSON values are built (strictjson), then every field
        is checked. Raises ManifestError (a ProtocolError from the JSON layer becomes one)."""
        return cls.from_json(parse_document(raw, what, max_values), what)


def _sidecars(doc: _Doc) -> tuple[SidecarRef, ...] | None:
    """The party sidecars, bounded by MAX_PARTY_SIDECARS; None in a batch without any."""
    found = doc.absent_or(lambda name: doc.items(name, SidecarRef.from_json), "sidecars")
    if found is not None and len(found) > MAX_PARTY_SIDECARS:
        raise doc.wrong("sidecars", f"at most {MAX_PARTY_SIDECARS} sidecars", list(found))
    return found


def parse_document(raw: bytes, what: str, max_values: int) -> object:
    """The JSON value of a manifest's bytes, bounded (strictjson); ManifestError when it is not JSON."""
    try:
        return strictjson.parse_json(raw, what, max_values)
    except ProtocolError as err:
        raise ManifestError(str(err)) from None


class _Doc:
    """One JSON object of a manifest being read, with the path that names it in messages."""

    def __init__(self, fields: Mapping[str, object], what: str, path: str) -> None:
        self.fields, self.what, self.path = fields, what, path
        self._read: set[str] = set()

    @classmethod
    def of(cls, value: object, what: str, path: str = "") -> _Doc:
        if not isinstance(value, dict):
            raise ManifestError(f"{what}: {path or 'the manifest'} is {_kind(value)}, not a JSON object")
        return cls(value, what, path)

    def _name(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def wrong(self, name: str, expected: str, value: object) -> ManifestError:
        return ManifestError(f"{self.what}: {self._name(name)} must be {expected}, not {_short(value)}")

    def _get(self, name: str) -> object:
        if name not in self.fields:
            raise ManifestError(f"{self.what}: {self._name(name)} is missing (docs/formats.md §3)")
        self._read.add(name)
        return self.fields[name]

    def absent_or(self, read: Callable[[str], T], name: str) -> T | None:
        """``read(name)`` for a field only some manifests have (format 1.1, agreements), None without it."""
        return read(name) if name in self.fields else None

    def extra(self) -> dict[str, object]:
        """The fields not read (yet): unknown to this reader, kept so the manifest re-encodes whole (§3)."""
        return {k: v for k, v in self.fields.items() if k not in self._read}

    def optional(self, read: Callable[[str], T], name: str) -> T | None:
        """``read(name)``, or None where the field is null (it must still be present)."""
        return None if self._get(name) is None else read(name)

    def text(self, name: str, limit: int = MAX_TEXT) -> str:
        value = self._get(name)
        if not isinstance(value, str) or len(value) > limit:
            raise self.wrong(name, f"a string of at most {limit} characters", value)
        return value

    def hex(self, name: str) -> str:
        value = self._get(name)
        if not isinstance(value, str) or len(value) != 64 or value.strip("0123456789abcdef"):
            raise self.wrong(name, "a SHA-256 in 64 lowercase hex digits", value)
        return value

    def time(self, name: str) -> str:
        value = self._get(name)
        if not isinstance(value, str) or len(value) > 64:
            raise self.wrong(name, "an ISO 8601 UTC time", value)
        try:
            parse_iso(value)
        except ValueError:
            raise self.wrong(name, "an ISO 8601 UTC time", value) from None
        return value

    def integer(self, name: str) -> int:
        value = self._get(name)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_INT:
            raise self.wrong(name, "an integer from 0 to 2^63-1", value)
        return value

    def number(self, name: str) -> float:
        value = self._get(name)
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise self.wrong(name, "a number", value)
        return value

    def child(self, name: str) -> _Doc:
        return _Doc.of(self._get(name), self.what, self._name(name))

    def _array(self, name: str) -> list[object]:
        value = self._get(name)
        if not isinstance(value, list):
            raise self.wrong(name, "an array", value)
        return value

    def items(self, name: str, read: Callable[[_Doc], T]) -> tuple[T, ...]:
        """An array of objects, each read by ``read``."""
        return tuple(read(_Doc.of(v, self.what, f"{self._name(name)}[{i}]")) for i, v in enumerate(self._array(name)))

    def texts(self, name: str) -> tuple[str, ...]:
        values = self._array(name)
        for i, v in enumerate(values):
            if not isinstance(v, str) or len(v) > MAX_TEXT:
                raise self.wrong(f"{name}[{i}]", f"a string of at most {MAX_TEXT} characters", v)
        return tuple(str(v) for v in values)


def _kind(value: object) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _short(value: object, limit: int = 60) -> str:
    """A value from a hostile manifest, cut short for a one-line message."""
    if isinstance(value, dict | list):
        return f"{_kind(value)} of {len(value)} items"
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def batch_prefix(dock_id: str, batch_id: str) -> str:
    return f"{dock_id}/{batch_id}"


def party_sidecar_name(n: int) -> str:
    """The file name of a batch's ``n``-th party sidecar (docs/formats.md §5.3): a number, never a name."""
    return f"personal.{n}.json.age"


def recording_key(dock_id: str, batch_id: str, serial: str, recording_id: int) -> str:
    return f"{dock_id}/{batch_id}/recordings/{serial}/{recording_id}.age"


def encode(fields: dict[str, object]) -> bytes:
    """Canonical JSON of a manifest fragment kept until sealing (a recording's disclosure fields)."""
    return canonical(fields)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


#: bytes a pseudonym key file may hold: 32 to a few hundred bytes of hex and a newline are all it needs
MAX_PSEUDONYM_KEY_FILE = 4096
#: what the chmod line of a pseudonym key group or others can read says they could do with it
PSEUDONYM_KEY_EXPOSED = " and would let them reverse every officer pseudonym"


def load_pseudonym_key(path: Path, *, create: bool) -> bytes:
    """The force-held secret for officer pseudonyms; created (0600) on first use when ``create``.

    Whoever reads it can reverse every pseudonym in the shared bucket (officer ids are short and
    guessable), so a key group or others can read is refused, as the signing key is; so is a path that
    names no regular file, and the read is bounded (``/dev/zero`` is not a key)."""
    try:
        fd = os.open(path, PRIVATE_OPEN_FLAGS)
    except FileNotFoundError:
        if not create:
            raise ConfigError(
                f"pseudonym key {path} is missing; set privacy.pseudonym_key to the force's key"
            ) from None
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        secret = os.urandom(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(secret.hex().encode() + b"\n")
            out.flush()
            os.fsync(out.fileno())
        return secret
    except OSError as err:
        raise ConfigError(f"cannot read pseudonym key {path}: {err}") from err
    try:
        data = read_private(fd, path, "pseudonym key", MAX_PSEUDONYM_KEY_FILE, PSEUDONYM_KEY_EXPOSED)
    except OSError as err:
        raise ConfigError(f"cannot read pseudonym key {path}: {err}") from err
    finally:
        os.close(fd)
    try:
        secret = bytes.fromhex(data.decode().strip())
    except (UnicodeDecodeError, ValueError) as err:
        raise ConfigError(f"pseudonym key {path} must hold hex (at least 32 bytes)") from err
    if len(secret) < 32:
        raise ConfigError(f"pseudonym key {path} must hold at least 32 bytes")
    return secret


def pseudonym(secret: bytes, officer_id: str) -> str:
    """Keyed pseudonym of an officer id: HMAC-SHA-256 (hex); stable per force, meaningless without the key."""
    return hmac.new(secret, officer_id.encode(), hashlib.sha256).hexdigest()
