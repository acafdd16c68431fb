"""Data-sharing agreements (issue 12): the signed document that says who receives which footage, why,
under which lawful basis and until when (docs/formats.md "Data-sharing agreements").

An agreement is canonical JSON signed by the controller (the force) with SSHSIG in its own namespace,
so a signature made for a manifest or firmware can never pass as one; a dock trusts only controller
keys named in its config. A revocation is a second small signed document; it is forward only: it
stops new disclosures, but age cannot take back a file a party already holds.

The coverage rule is a pure function (``coverage``: agreement + recording facts + time -> covered or
the code of why not), so it is tested without cameras; ``disclosure`` turns the agreements in force
into the recipients of one recording: the union of the covering agreements' parties plus the
controller's archive.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import re
import stat
import threading
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from bodycam.agent.formats.agecrypt import check_recipients
from bodycam.agent.formats.custody import canonical
from bodycam.agent.formats.sshsig import parse_public_key_line, sign, verify
from bodycam.agent.formats.times import iso_utc
from bodycam.drivers.errors import BodycamError, ConfigError, IntegrityError, ProtocolError
from bodycam.drivers.strictjson import JSONObject, JSONValue, parse_json

LOG = logging.getLogger(__name__)

FORMAT = "bodycam-agreement/1"
REVOCATION_FORMAT = "bodycam-agreement-revocation/1"
NAMESPACE = "bodycam-agreement"
REVOCATION_NAMESPACE = "bodycam-agreement-revocation"
SIG_SUFFIX = ".sig"
REVOKED_SUFFIX = ".revoked.json"
ARCHIVE_NAME = "controller-archive"  # the name the controller's own archive recipient has in a manifest

MAX_FILE_BYTES = 512 * 1024  # 16 parties x 8 post-quantum recipients (1959 characters each) fit with room
MAX_VALUES = 20_000
MAX_FILES = 512  # files in the agreements directory a dock reads
MAX_PARTIES = 16
MAX_RECIPIENTS = 8  # per party
MAX_SCOPE_ITEMS = 256  # per scope list
MAX_TEXT = 2000  # purpose, lawful basis
MAX_NAME = 128  # party and controller names, roles, DPIA reference
MAX_VERSION = 2**31 - 1
MAX_RETENTION_DAYS = 36_500
ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
DATA_ITEMS = ("footage", "times", "camera_model", "officer_pseudonym", "officer_identity", "site")

#: why an agreement does not cover a recording (codes that may stand in custody: ids and words only)
COVERED = "covered"
REVOKED = "revoked"
NOT_YET_VALID = "not_yet_valid"
EXPIRED = "expired"
NO_FOOTAGE = "no_footage"  # the agreement does not disclose footage itself
OTHER_EXERCISE = "exercise"
OTHER_CAMERA = "camera"
OTHER_SITE = "site"
OUTSIDE_WINDOW = "window"
NO_AGREEMENT = "no_agreement"  # the custody reason code: no valid agreement covers the recording


@dataclass(frozen=True, slots=True)
class Party:
    name: str
    role: str
    lawful_basis: str
    recipients: tuple[str, ...]
    retention_days: int


@dataclass(frozen=True, slots=True)
class Scope:
    """What an agreement covers; an empty list does not restrict that dimension (at least one of
    exercises, cameras and sites must be given, so no agreement covers everything by omission)."""

    exercises: tuple[str, ...] = ()
    cameras: tuple[str, ...] = ()
    sites: tuple[str, ...] = ()
    not_before: float | None = None  # the recording starts at or after
    not_after: float | None = None  # the recording ends at or before


@dataclass(frozen=True, slots=True)
class Agreement:
    id: str
    version: int
    controller: str
    parties: tuple[Party, ...]
    purpose: str
    data_items: tuple[str, ...]
    scope: Scope
    not_before: float
    not_after: float
    review_date: str
    dpia: str
    raw: bytes = field(repr=False)  # the canonical bytes that were signed

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()

    def ref(self) -> dict[str, object]:
        """How a manifest names it: id, version and the SHA-256 of the signed bytes."""
        return {"id": self.id, "version": self.version, "sha256": self.sha256}


@dataclass(frozen=True, slots=True)
class RecordingFacts:
    """What the coverage rule may look at: known at the dock before any byte is read."""

    camera: str
    exercise_id: str | None
    site: str | None
    start: float  # corrected (true) time, seconds since the epoch
    end: float


# -- the document ---------------------------------------------------------------------------------


def _iso(ts: float) -> str:
    """An agreement's times, to the second (the demo and the tests write agreements with it)."""
    return iso_utc(ts, "seconds")


def _time(value: JSONValue, where: str) -> float:
    if not isinstance(value, str) or len(value) > 40:
        raise ProtocolError(f"{where} must be an ISO 8601 time string")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ProtocolError(f"{where} {value!r} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise ProtocolError(f"{where} {value!r} needs a time zone (e.g. Z)")
    return parsed.timestamp()


def _text(doc: JSONObject, key: str, where: str, limit: int) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise ProtocolError(f"{where}{key} must be a non-empty string of at most {limit} characters")
    return value


def _hidden(c: str) -> bool:
    return ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or unicodedata.category(c) in ("Cf", "Zl", "Zp")


def _check_strings(agreement: Agreement) -> None:
    """No control or invisible formatting character (escape sequences, carriage returns, bidi overrides)
    in names, roles, references and scope: they stand in manifests, custody and every party's reports,
    where such a character can hide or fake what a reader sees; prose (purpose, lawful basis) may hold
    newlines and tabs. And review_date is YYYY-MM-DD: Python also reads 20270601 and 2027-W22-2, which
    'agreement list' would compare as text with today's date and never call overdue."""
    fields: list[tuple[str, str, bool]] = [
        ("controller.name", agreement.controller, False),
        ("purpose", agreement.purpose, True),
        ("dpia", agreement.dpia, False),
    ]
    for i, p in enumerate(agreement.parties):
        fields += [(f"parties[{i}].name", p.name, False), (f"parties[{i}].role", p.role, False)]
        fields.append((f"parties[{i}].lawful_basis", p.lawful_basis, True))
    scope = agreement.scope
    for key, values in (("exercises", scope.exercises), ("cameras", scope.cameras), ("sites", scope.sites)):
        fields += [(f"scope.{key}", v, False) for v in values]
    for where, value, prose in fields:
        if any(_hidden(c) and not (prose and c in "\n\t") for c in value):
            raise ProtocolError(f"{where} contains control characters (or invisible formatting ones)")
    if dt.date.fromisoformat(agreement.review_date).isoformat() != agreement.review_date:
        raise ProtocolError(f"review_date {agreement.review_date[:40]!r} is not an ISO 8601 date (YYYY-MM-DD)")


def _list(doc: JSONObject, key: str, where: str, limit: int, *, required: bool = False) -> list[JSONValue]:
    value = doc.get(key, [])
    if not isinstance(value, list) or len(value) > limit or (required and not value):
        need = "1" if required else "0"
        raise ProtocolError(f"{where}{key} must be a list of {need} to {limit} items")
    return value


def _strings(values: list[JSONValue]) -> tuple[str, ...] | None:
    """The items, when every one is a string (None otherwise: the caller names the field)."""
    out = tuple(v for v in values if isinstance(v, str))
    return out if len(out) == len(values) else None


def _keys(doc: JSONValue, where: str, required: set[str], optional: frozenset[str] = frozenset()) -> JSONObject:
    if not isinstance(doc, dict):
        raise ProtocolError(f"{where or 'agreement'} must be a JSON object")
    missing = sorted(required - set(doc))
    unknown = sorted(set(doc) - required - optional)
    if missing:
        raise ProtocolError(f"{where}{missing[0]} is missing")
    if unknown:
        raise ProtocolError(f"{where}{unknown[0][:40]} is not a known field")
    return doc


def _party(item: JSONValue, index: int) -> Party:
    where = f"parties[{index}]."
    doc = _keys(item, where, {"name", "role", "lawful_basis", "recipients", "retention_days"})
    recipients = _strings(_list(doc, "recipients", where, MAX_RECIPIENTS, required=True))
    if recipients is None or not all(len(r) <= 2000 for r in recipients):
        raise ProtocolError(f"{where}recipients must hold age recipient strings")
    retention = doc["retention_days"]
    if isinstance(retention, bool) or not isinstance(retention, int) or not 1 <= retention <= MAX_RETENTION_DAYS:
        raise ProtocolError(f"{where}retention_days must be an integer from 1 to {MAX_RETENTION_DAYS}")
    name = _text(doc, "name", where, MAX_NAME)
    if name == ARCHIVE_NAME:
        raise ProtocolError(f"{where}name {ARCHIVE_NAME!r} is reserved for the controller's archive")
    return Party(
        name=name,
        role=_text(doc, "role", where, MAX_NAME),
        lawful_basis=_text(doc, "lawful_basis", where, MAX_TEXT),
        recipients=recipients,
        retention_days=retention,
    )


def _scope(item: JSONValue) -> Scope:
    where = "scope."
    doc = _keys(item, where, set(), frozenset({"exercises", "cameras", "sites", "window"}))
    lists = {}
    for key in ("exercises", "cameras", "sites"):
        values = _strings(_list(doc, key, where, MAX_SCOPE_ITEMS))
        if values is None or not all(0 < len(v) <= MAX_NAME for v in values):
            raise ProtocolError(f"{where}{key} must hold non-empty strings of at most {MAX_NAME} characters")
        lists[key] = values
    if not any(lists.values()):
        raise ProtocolError("scope must name at least one exercise, camera or site (an agreement never covers all)")
    window = _keys(doc.get("window", {}), "scope.window.", set(), frozenset({"not_before", "not_after"}))
    nb = _time(window["not_before"], "scope.window.not_before") if "not_before" in window else None
    na = _time(window["not_after"], "scope.window.not_after") if "not_after" in window else None
    if nb is not None and na is not None and na <= nb:
        raise ProtocolError("scope.window.not_after must be after not_before")
    return Scope(lists["exercises"], lists["cameras"], lists["sites"], nb, na)


def parse(raw: bytes, *, canonical_only: bool = True, strings: bool = True) -> Agreement:
    """Parse and check an agreement document (strict, bounded). Raises ProtocolError naming the field.

    A signed agreement must be in canonical form (``canonical_only``), so its SHA-256 names it.
    ``strings=False`` leaves out the checks of ``_check_strings``, added after agreements were first
    signed: a party reading the agreement a signed manifest names (``receive``) finds its share under
    the document the dock disclosed it under, even one a dock would refuse today."""
    if len(raw) > MAX_FILE_BYTES:
        raise ProtocolError(f"agreement is {len(raw)} bytes, over the {MAX_FILE_BYTES} limit")
    doc = _keys(
        parse_json(raw, "agreement", MAX_VALUES),
        "",
        {"format", "id", "version", "controller", "parties", "purpose", "data_items", "scope", "validity"}
        | {"review_date", "dpia"},
    )
    if doc["format"] != FORMAT:
        raise ProtocolError(f"format must be {FORMAT!r}, not {str(doc['format'])[:40]!r}")
    ident = doc["id"]
    if not isinstance(ident, str) or ID.fullmatch(ident) is None:
        raise ProtocolError("id must be 1-64 letters, digits, '.', '_' or '-'")
    version = doc["version"]
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= MAX_VERSION:
        raise ProtocolError("version must be a positive integer")
    controller = _keys(doc["controller"], "controller.", {"name"})
    parties = tuple(_party(p, i) for i, p in enumerate(_list(doc, "parties", "", MAX_PARTIES, required=True)))
    names = [p.name for p in parties]
    if len(set(names)) != len(names):
        raise ProtocolError("parties must have distinct names")
    try:
        check_recipients([r for p in parties for r in p.recipients], [p.name for p in parties for _ in p.recipients])
    except ConfigError as err:
        raise ProtocolError(f"parties: {err}") from None
    items = _strings(_list(doc, "data_items", "", len(DATA_ITEMS), required=True))
    if items is None or not all(i in DATA_ITEMS for i in items) or len(set(items)) != len(items):
        raise ProtocolError(f"data_items must be distinct items of: {', '.join(DATA_ITEMS)}")
    validity = _keys(doc["validity"], "validity.", {"not_before", "not_after"})
    not_before = _time(validity["not_before"], "validity.not_before")
    not_after = _time(validity["not_after"], "validity.not_after")
    if not_after <= not_before:
        raise ProtocolError("validity.not_after must be after not_before")
    review = _text(doc, "review_date", "", 40)
    try:
        dt.date.fromisoformat(review)
    except ValueError:
        raise ProtocolError(f"review_date {review[:40]!r} is not an ISO 8601 date (YYYY-MM-DD)") from None
    agreement = Agreement(
        id=ident,
        version=version,
        controller=_text(controller, "name", "controller.", MAX_NAME),
        parties=parties,
        purpose=_text(doc, "purpose", "", MAX_TEXT),
        data_items=items,
        scope=_scope(doc["scope"]),
        not_before=not_before,
        not_after=not_after,
        review_date=review,
        dpia=_text(doc, "dpia", "", MAX_NAME),
        raw=canonical(doc),
    )
    if canonical_only and agreement.raw != raw:
        raise ProtocolError("agreement is not in canonical form (sign it with 'bodycam-sync agreement sign')")
    if strings:
        _check_strings(agreement)
    return agreement


def file_name(agreement: Agreement) -> str:
    return f"{agreement.id}.v{agreement.version}.json"


# -- signing and loading ----------------------------------------------------------------------------


def controller_keys(lines: Sequence[str]) -> list[Ed25519PublicKey]:
    """The configured controller keys (``ssh-ed25519 AAAA...`` lines); ConfigError names a bad one."""
    keys = []
    for i, line in enumerate(lines):
        try:
            keys.append(parse_public_key_line(line))
        except BodycamError as err:
            raise ConfigError(f"config key 'agreements.controller_keys[{i}]': {err}") from None
    return keys


def refuse_own_key(lines: Sequence[str], own: Ed25519PublicKey, option: str) -> None:
    """ConfigError when the dock's own signing key is among the controller keys ``option`` lists.

    Namespaces keep a manifest signature from passing as an agreement, but a key in both roles lets
    whoever holds the dock's key (a stolen dock, a copied backup) sign agreements that this dock, and
    through ``_fleet/`` every dock of the force, then obeys: parties of their choosing, any scope."""
    raw = own.public_bytes_raw()
    for i, key in enumerate(controller_keys(lines)):
        if key.public_bytes_raw() == raw:
            raise ConfigError(
                f"config key '{option}[{i}]' is this dock's own signing key: a dock must not be able to sign the "
                "agreements it obeys; the controller's key is its own and never on a dock (docs/configuration.md)"
            )


def _read_bounded(path: Path) -> bytes:
    """At most MAX_FILE_BYTES + 1 bytes of a regular file: a FIFO or device placed in the directory is
    refused without being opened (opening a FIFO would block the docking)."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            raise ProtocolError(f"{path} is not a regular file")
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist") from None
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ProtocolError(f"{path} is over the {MAX_FILE_BYTES}-byte limit")
    return data


def _write_new(path: Path, data: bytes) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise ConfigError(f"{path} already exists; raise the version to change an agreement") from None
    except OSError as err:
        raise ConfigError(f"cannot write {path}: {err}") from None
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def sign_draft(draft: Path, key: Ed25519PrivateKey, out_dir: Path) -> tuple[Agreement, Path]:
    """Check a draft, write it in canonical form to ``out_dir/<id>.v<version>.json`` with its ``.sig``.

    Create-only: an agreement changes by a new version, never by rewriting a signed one."""
    try:
        agreement = parse(_read_bounded(draft), canonical_only=False)
    except ProtocolError as err:
        raise ConfigError(f"agreement draft {draft}: {err}") from None
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / file_name(agreement)
    signature = sign(agreement.raw, key, NAMESPACE)
    _write_new(path, agreement.raw)
    _write_new(path.with_name(path.name + SIG_SUFFIX), signature.encode())
    return agreement, path


def load_signed(path: Path, trusted: Sequence[Ed25519PublicKey]) -> Agreement:
    """A signed agreement file, checked against the controller keys; IntegrityError when unsigned,
    signed by another key, or altered; ProtocolError when malformed."""
    return check_signed(*_read_signed(path, "agreement"), path.name, trusted)


def _read_signed(path: Path, what: str) -> tuple[bytes, str]:
    """A file and its detached signature (``<file>.sig``); IntegrityError when there is none."""
    raw = _read_bounded(path)
    sig_path = path.with_name(path.name + SIG_SUFFIX)
    if not sig_path.exists():
        raise IntegrityError(f"{what} {path.name} is not signed (no {sig_path.name}); refused")
    return raw, _read_bounded(sig_path).decode("utf-8", "replace")


def check_signature(raw: bytes, signature: str, namespace: str, trusted: Sequence[Ed25519PublicKey], what: str) -> None:
    """IntegrityError naming ``what`` (``agreement DSA-A.v1.json``) unless one of ``trusted`` signed
    ``raw`` in ``namespace``: agreements, revocations and the fleet's register are checked alike."""
    try:
        verify(raw, signature, namespace, trusted)
    except IntegrityError as err:
        raise IntegrityError(f"{what} refused: {err}") from None


def check_signed(raw: bytes, signature: str, name: str, trusted: Sequence[Ed25519PublicKey]) -> Agreement:
    """``load_signed`` on bytes already read (a file, or an object of the fleet's prefix in the bucket)."""
    if len(raw) > MAX_FILE_BYTES:
        raise ProtocolError(f"agreement {name} is over the {MAX_FILE_BYTES}-byte limit")
    check_signature(raw, signature, NAMESPACE, trusted, f"agreement {name}")
    try:
        return parse(raw)
    except ProtocolError as err:
        raise ProtocolError(f"agreement {name}: {err}") from None


def revoke(agreement_id: str, key: Ed25519PrivateKey, out_dir: Path, *, now: float) -> Path:
    """Write a signed revocation of every version of ``agreement_id`` (forward only)."""
    if ID.fullmatch(agreement_id) is None:
        raise ConfigError("agreement ID must be 1-64 letters, digits, '.', '_' or '-'")
    doc = canonical({"format": REVOCATION_FORMAT, "id": agreement_id, "revoked": _iso(now)})
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{agreement_id}{REVOKED_SUFFIX}"
    _write_new(path, doc)
    _write_new(path.with_name(path.name + SIG_SUFFIX), sign(doc, key, REVOCATION_NAMESPACE).encode())
    return path


def load_revocation(path: Path, trusted: Sequence[Ed25519PublicKey]) -> str:
    """The id a signed revocation revokes."""
    return check_revocation(*_read_signed(path, "revocation"), path.name, trusted)


def check_revocation(raw: bytes, signature: str, name: str, trusted: Sequence[Ed25519PublicKey]) -> str:
    """``load_revocation`` on bytes already read: the id the revocation revokes."""
    check_signature(raw, signature, REVOCATION_NAMESPACE, trusted, f"revocation {name}")
    doc = _keys(parse_json(raw, "revocation", 100), "revocation.", {"format", "id", "revoked"})
    if doc["format"] != REVOCATION_FORMAT or not isinstance(doc["id"], str) or ID.fullmatch(doc["id"]) is None:
        raise ProtocolError(f"revocation {name} is not a {REVOCATION_FORMAT} document")
    if name != f"{doc['id']}{REVOKED_SUFFIX}":
        raise ProtocolError(f"revocation {name} must be named {doc['id']}{REVOKED_SUFFIX}")
    return str(doc["id"])


@dataclass(frozen=True, slots=True)
class Loaded:
    """The agreements directory as a dock sees it: the latest valid version of each id, the revoked
    ids, and the files refused (file name -> one-line reason)."""

    agreements: tuple[Agreement, ...] = ()
    revoked: frozenset[str] = frozenset()
    refused: tuple[tuple[str, str], ...] = ()


def load_dir(directory: Path, trusted: Sequence[Ed25519PublicKey], *, max_files: int = MAX_FILES) -> Loaded:
    """Read every agreement and revocation in ``directory`` (at most ``max_files`` documents: a dock's
    ``agreements.dir``, or its cache of the bucket's, which holds what that listing can bring); a bad
    file is refused, not fatal."""
    try:
        names = sorted(p.name for p in directory.iterdir() if not p.name.endswith(SIG_SUFFIX))
    except FileNotFoundError:
        return Loaded()
    except OSError as err:
        raise ConfigError(f"cannot read agreements.dir {directory}: {err}") from None
    if len(names) > max_files:
        raise ConfigError(f"agreements.dir {directory} holds more than {max_files} files; archive old ones")
    latest: dict[str, Agreement] = {}
    revoked: set[str] = set()
    refused: list[tuple[str, str]] = []
    for name in names:
        if not name.endswith(".json"):
            continue
        path = directory / name
        try:
            if name.endswith(REVOKED_SUFFIX):
                revoked.add(load_revocation(path, trusted))
                continue
            agreement = load_signed(path, trusted)
        except BodycamError as err:
            LOG.warning("%s", err)
            refused.append((name, str(err)))
            continue
        if name != file_name(agreement):
            refused.append((name, f"agreement {name} must be named {file_name(agreement)}"))
            continue
        current = latest.get(agreement.id)
        if current is None or agreement.version > current.version:
            latest[agreement.id] = agreement
    return Loaded(tuple(latest[k] for k in sorted(latest)), frozenset(revoked), tuple(refused))


class DirCache:
    """``load_dir`` once per change of the directory: every docking and every upload start asks, and
    checking a signature costs about 0.7 ms per agreement. A change is any file added, removed, replaced
    or rewritten (name, size, inode, mtime in ns), or other controller keys; validity is judged at each
    use, never cached."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[str, tuple[str, ...], tuple[tuple[str, int, int, int], ...] | None] | None = None
        self._loaded = Loaded()

    def load(self, directory: Path, lines: Sequence[str], *, max_files: int = MAX_FILES) -> Loaded:
        key = (str(directory), tuple(lines), _listing(directory, max_files))
        with self._lock:
            if key[2] is not None and key == self._key:
                return self._loaded
        loaded = load_dir(directory, controller_keys(lines), max_files=max_files)
        with self._lock:
            self._key, self._loaded = key, loaded
        return loaded


def _listing(directory: Path, max_files: int = MAX_FILES) -> tuple[tuple[str, int, int, int], ...] | None:
    """What identifies the directory's content cheaply (stat only); None when it cannot be listed or is
    over the file bound (then ``load_dir`` says why, each time)."""
    out: list[tuple[str, int, int, int]] = []
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if len(out) > 2 * max_files:
                    return None
                st = entry.stat()
                out.append((entry.name, st.st_size, st.st_ino, st.st_mtime_ns))
    except OSError:
        return None
    return tuple(sorted(out))


# -- the coverage rule ------------------------------------------------------------------------------


def coverage(agreement: Agreement, facts: RecordingFacts, now: float, revoked: Iterable[str] = ()) -> str:
    """Whether ``agreement`` covers a recording at ``now``: COVERED, or the code of the first reason not.

    Pure: the same inputs give the same answer, so a dock's decision can be replayed by an auditor."""
    if agreement.id in set(revoked):
        return REVOKED
    if now < agreement.not_before:
        return NOT_YET_VALID
    if now > agreement.not_after:
        return EXPIRED
    if "footage" not in agreement.data_items:
        return NO_FOOTAGE
    scope = agreement.scope
    if scope.exercises and facts.exercise_id not in scope.exercises:
        return OTHER_EXERCISE
    if scope.cameras and facts.camera not in scope.cameras:
        return OTHER_CAMERA
    if scope.sites and facts.site not in scope.sites:
        return OTHER_SITE
    if (scope.not_before is not None and facts.start < scope.not_before) or (
        scope.not_after is not None and facts.end > scope.not_after
    ):
        return OUTSIDE_WINDOW
    return COVERED


class MixedKindsError(ConfigError):
    """The covering agreements' recipients and the archive are not all of one kind (a file must not be)."""

    def __init__(self, message: str, ids: Sequence[str]) -> None:
        super().__init__(message)
        self.ids = tuple(ids)


@dataclass(frozen=True, slots=True)
class Disclosure:
    """To whom one recording is encrypted, and under which agreements (empty ``agreements``: none covers it)."""

    agreements: tuple[Agreement, ...]
    parties: tuple[str, ...]  # party names, sorted (the controller's archive is not among them)
    recipients: tuple[str, ...]  # every party's age recipients, then the archive's
    reasons: tuple[tuple[str, str], ...] = ()  # (agreement id, code) of those that do not cover it

    @property
    def covered(self) -> bool:
        return bool(self.agreements)

    def why_not(self) -> str:
        """A custody-safe reason (ids and codes only)."""
        if not self.reasons:
            return "no data-sharing agreement is in force"
        listed = ", ".join(f"{i}: {c}" for i, c in self.reasons[:8])
        return f"no valid data-sharing agreement covers it ({listed})"

    def manifest_fields(self) -> dict[str, object]:
        return {"agreements": [a.ref() for a in self.agreements], "parties": list(self.parties)}

    def shares(self) -> dict[str, dict[str, list[str]]]:
        """Per party: the covering agreements that name it (ids), the data items they disclose to it
        (their union, in DATA_ITEMS order) and its age recipients: what its own sidecar may hold and
        whom it is encrypted to (docs/formats.md §5.3), and what the disclosure entry says it was under."""
        out: dict[str, dict[str, list[str]]] = {}
        for agreement in self.agreements:
            for party in agreement.parties:
                share = out.setdefault(party.name, {"agreements": [], "data_items": [], "recipients": []})
                share["agreements"].append(agreement.id)
                items = set(share["data_items"]) | set(agreement.data_items)
                share["data_items"] = [i for i in DATA_ITEMS if i in items]
                share["recipients"] += [r for r in party.recipients if r not in share["recipients"]]
        for share in out.values():
            share["agreements"] = sorted(set(share["agreements"]))
        return dict(sorted(out.items()))


def disclosure(loaded: Loaded, facts: RecordingFacts, now: float, archive: str) -> Disclosure:
    """The covering agreements, their parties and the recipients (union, plus the archive), checked to
    be of one kind (a post-quantum file must not carry an X25519 stanza)."""
    covering, reasons = [], []
    for agreement in loaded.agreements:
        code = coverage(agreement, facts, now, loaded.revoked)
        if code == COVERED:
            covering.append(agreement)
        else:
            reasons.append((agreement.id, code))
    if not covering:
        return Disclosure((), (), (), tuple(reasons))
    parties: dict[str, list[str]] = {}
    for agreement in covering:
        for party in agreement.parties:
            keys = parties.setdefault(party.name, [])
            keys.extend(r for r in party.recipients if r not in keys)
    recipients: list[str] = []
    labels: list[str] = []
    for name in sorted(parties):
        for r in parties[name]:
            if r not in recipients:
                recipients.append(r)
                labels.append(name)
    if archive not in recipients:
        recipients.append(archive)
        labels.append(ARCHIVE_NAME)
    try:
        check_recipients(recipients, labels)
    except ConfigError as err:
        ids = ", ".join(a.id for a in covering)
        raise MixedKindsError(
            f"agreements {ids} and the controller's archive together mix post-quantum and X25519 recipients: {err}",
            [a.id for a in covering],
        ) from None
    return Disclosure(tuple(covering), tuple(sorted(parties)), tuple(recipients), tuple(reasons))
