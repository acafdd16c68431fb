"""The party's side (issue 12 item 8): fetch, check and decrypt exactly what one agreement discloses to
one party, as the Home Office or a training platform runs it (``bodycam-sync receive``).

For each signed manifest in the bucket (its signature checked against the docks' keys as ``verify``
checks it: agent/audit/verify.py ``manifest_signer``), each recording whose entry names the agreement
and whose ``parties`` include the party holding the identity is streamed once: the ciphertext is hashed
and decrypted at the same time into a temporary file, which becomes the output only when the
ciphertext's SHA-256, the age payload and the plaintext's SHA-256 all match the signed manifest. The
party is found from the agreement itself: the version the manifest names (by SHA-256) is read from the
bucket's ``_fleet/agreements/`` (or a file given), and the party is the one listing the identity's
recipient. ``SHA256SUMS`` in the output directory lists every file received, for ``sha256sum -c``.

Memory does not grow with recordings or with the bucket: one manifest at a time (bounded as verify
bounds it), 1 MiB chunks, the listing streamed. A file already complete and matching is skipped, so a
run cut short resumes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import os
import re
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bodycam.agent.audit import inputs
from bodycam.agent.audit.verify import MAX_SIGNATURE_BYTES, Limits, manifest_signer
from bodycam.agent.config import FLEET_PREFIX
from bodycam.agent.formats import agreements as ag
from bodycam.agent.formats import manifest as mf
from bodycam.agent.formats.agecrypt import Decryptor, recipient_of
from bodycam.agent.formats.sshsig import AllowedSigner
from bodycam.agent.formats.times import parse_iso
from bodycam.agent.storage.bucket import Bucket, ObjectNotFoundError
from bodycam.drivers.errors import BodycamError, ConfigError, IntegrityError, ProtocolError, StorageError
from bodycam.drivers.files import create_private, make_private_dirs, read_bounded

LOG = logging.getLogger(__name__)

CHUNK = 1024 * 1024
MAX_PROBLEMS = 1000  # problems listed one by one; beyond, counted (a hostile bucket cannot grow the report)
MAX_AGREEMENT_VERSIONS = 1024  # agreement versions (by SHA-256) looked up per run
SUMS = "SHA256SUMS"
MAX_SUMS_BYTES = 64 * 1024 * 1024  # an earlier run's SHA256SUMS: ~150 bytes a recording, some 400,000 of them
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # dock ids, batch ids, serials: safe path components
_HEX = re.compile(r"[0-9a-f]{64}")

ProgressFn = Callable[[str, dict[str, Any]], None]


@dataclass
class ReceiveReport:
    agreement: str
    party: str | None = None
    received: list[str] = field(default_factory=list)  # paths relative to the output directory
    already: list[str] = field(default_factory=list)  # complete and matching from an earlier run
    past_retention: list[str] = field(default_factory=list)  # keys gone from the bucket after their retain_until
    problems: list[str] = field(default_factory=list)  # one line each
    untold: int = 0  # problems beyond MAX_PROBLEMS
    manifests: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems and not self.untold

    def to_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "agreement": self.agreement,
            "party": self.party,
            "manifests": self.manifests,
            "received": self.received,
            "already_received": self.already,
            "past_retention": self.past_retention,
            "problems": self.problems,
            "problems_not_listed": self.untold,
        }


@dataclass(frozen=True, slots=True)
class Wanted:
    """One recording a manifest discloses to this party, with the facts the signed manifest vouches for."""

    key: str
    path: str  # relative output path
    size: int
    plaintext_sha256: str
    ciphertext_sha256: str
    ciphertext_size: int
    retain_until: dt.datetime | None = None  # the signed date after which the object may be erased


class Receiver:
    def __init__(
        self,
        bucket: Bucket,
        signers: Sequence[AllowedSigner],
        identities: Sequence[str],
        agreement_id: str,
        out: Path,
        *,
        agreement_files: Sequence[Path] = (),
        limits: Limits | None = None,
    ) -> None:
        self.bucket = bucket
        self.signers = signers
        self.identities = list(identities)
        self.recipients = {recipient_of(i) for i in identities}
        self.agreement_id = agreement_id
        self.out = out
        self.limits = limits or Limits()
        self.report = ReceiveReport(agreement_id)
        self._parties: dict[str, str | None] = {}  # agreement sha256 -> this identity's party (None: not one)
        self._given = {hashlib.sha256(raw).hexdigest(): raw for raw in (_read(p) for p in agreement_files)}

    # -- the run ----------------------------------------------------------------------------------
    def run(self) -> ReceiveReport:
        """Receive everything; the footage, SHA256SUMS and the directories made for them are private to
        the user (0600, 0700) whatever the umask: decrypted footage is what the whole chain protects."""
        try:
            make_private_dirs(self.out)
        except OSError as err:
            raise ConfigError(f"cannot create --out {self.out}: {err.strerror or err}") from err
        sums = _read_sums(self.out / SUMS)
        try:
            for dock, batch in self._manifest_keys():
                self.report.manifests += 1
                for wanted in self._wanted(dock, batch):
                    self._receive(wanted, sums)
        finally:
            _write_sums(self.out / SUMS, sums)
        return self.report

    def _manifest_keys(self) -> Iterator[tuple[str, str]]:
        """``(dock, batch)`` of each ``<dock>/<batch>/manifest.json`` in the bucket, streamed."""
        for info in self.bucket.iter_objects(""):
            parts = info.key.split("/")
            if len(parts) == 3 and parts[2] == mf.MANIFEST and parts[0] != FLEET_PREFIX:
                if _NAME.fullmatch(parts[0]) and _NAME.fullmatch(parts[1]):
                    yield parts[0], parts[1]
                else:
                    self._problem(f"{info.key[:120]!r}: not a dock/batch key; skipped")

    def _problem(self, text: str) -> None:
        if len(self.report.problems) >= MAX_PROBLEMS:
            self.report.untold += 1
            return
        self.report.problems.append(text)

    # -- one manifest -----------------------------------------------------------------------------
    def _wanted(self, dock: str, batch: str) -> list[Wanted]:
        prefix = mf.batch_prefix(dock, batch)
        mkey = f"{prefix}/{mf.MANIFEST}"
        try:
            raw = self.bucket.get_bytes(mkey, self.limits.manifest_bytes)
            manifest = mf.Manifest.parse(raw, mkey, self.limits.manifest_values)
            signature = self.bucket.get_bytes(f"{prefix}/{mf.SIGNATURE}", MAX_SIGNATURE_BYTES)
            manifest_signer(raw, signature.decode("ascii", "replace"), dock, manifest.sealed, self.signers)
        except BodycamError as err:
            self._problem(f"{mkey}: {err}; its recordings were not received")
            return []
        if manifest.dock_id != dock or manifest.batch_id != batch:
            self._problem(f"{mkey} describes another dock or batch (copied or replayed); not received")
            return []
        found = []
        for rec in manifest.recordings:
            if self._disclosed_to_me(rec, mkey):
                wanted = self._entry(rec, prefix, dock, batch)
                if wanted is not None:
                    found.append(wanted)
        return found

    def _disclosed_to_me(self, rec: mf.ManifestRecording, mkey: str) -> bool:
        refs, parties = rec.agreements, rec.parties
        if refs is None or parties is None:
            return False
        for ref in refs:
            if ref.id != self.agreement_id:
                continue
            party = self._party(ref, mkey)
            if party is not None and party in parties:
                if self.report.party is None:
                    self.report.party = party
                return True
        return False

    def _party(self, ref: mf.AgreementRef, mkey: str) -> str | None:
        """The party of the agreement version ``ref`` names that holds this identity's recipient; the
        document is the one whose SHA-256 the signed manifest names (so no other key is needed)."""
        digest, version = ref.sha256, ref.version
        if digest not in self._parties:
            if len(self._parties) >= MAX_AGREEMENT_VERSIONS:
                self._problem(f"{mkey} names more than {MAX_AGREEMENT_VERSIONS} versions of agreement "
                              f"{self.agreement_id}; the others were not looked up")  # fmt: skip
                return None
            self._parties[digest] = self._find_party(digest, version, mkey)
        return self._parties[digest]

    def _find_party(self, digest: str, version: int, mkey: str) -> str | None:
        raw = self._given.get(digest)
        if raw is None:
            key = f"{FLEET_PREFIX}/agreements/{self.agreement_id}.v{version}.json"
            try:
                raw = self.bucket.get_bytes(key, ag.MAX_FILE_BYTES)
            except BodycamError as err:
                self._problem(
                    f"agreement {self.agreement_id} v{version} (named by {mkey}) is not readable at {key} ({err}); "
                    "give it with --agreement-file"
                )
                return None
            if hashlib.sha256(raw).hexdigest() != digest:
                self._problem(f"{key} is not the agreement {mkey} names (SHA-256 differs); its recordings were skipped")
                return None
        try:
            agreement = ag.parse(raw, strings=False)  # the document it was disclosed under, as it was
        except ProtocolError as err:
            self._problem(f"agreement {self.agreement_id} v{version}: {err}")
            return None
        for party in agreement.parties:
            if self.recipients & set(party.recipients):
                return party.name
        return None

    def _entry(self, rec: mf.ManifestRecording, prefix: str, dock: str, batch: str) -> Wanted | None:
        """Where a recording goes under ``--out``: only one whose serial is a plain name and whose key is
        where the layout puts it (a key naming another path is refused, not followed)."""
        serial, rid, key = rec.camera_serial, rec.recording_id, rec.key
        if _NAME.fullmatch(serial) is None or key != f"{prefix}/recordings/{serial}/{rid}.age":
            self._problem(f"{prefix}/{mf.MANIFEST} has a malformed recording entry ({key[:120]}); skipped")
            return None
        return Wanted(
            key, f"{dock}/{batch}/{serial}/{rid}", rec.size, rec.plaintext_sha256, rec.ciphertext_sha256,
            rec.ciphertext_size, None if rec.retain_until is None else parse_iso(rec.retain_until),
        )  # fmt: skip

    # -- one recording ----------------------------------------------------------------------------
    def _receive(self, w: Wanted, sums: dict[str, str]) -> None:
        target = self.out / w.path
        if _complete(target, w):
            sums[w.path] = w.plaintext_sha256
            self.report.already.append(w.path)
            return
        tmp = target.with_name(f".{target.name}.part")
        try:
            make_private_dirs(target.parent)
            self._fetch(w, tmp)
        except ObjectNotFoundError:
            tmp.unlink(missing_ok=True)
            if w.retain_until is not None and w.retain_until <= dt.datetime.now(dt.UTC):
                self.report.past_retention.append(w.key)  # erased once its retention passed ('verify' proves it)
            else:
                self._problem(f"{w.key} is not in the bucket, and its retention has not passed; not received")
            return
        except BodycamError as err:
            tmp.unlink(missing_ok=True)
            self._problem(f"{w.key}: {err}; not received")
            return
        except OSError as err:  # the output side: a full disk, a file in the way of a directory
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            self._problem(f"{w.key}: cannot write {target}: {err.strerror or err}; not received")
            return
        os.replace(tmp, target)
        sums[w.path] = w.plaintext_sha256
        self.report.received.append(w.path)

    def _fetch(self, w: Wanted, tmp: Path) -> None:
        """Stream the object: ciphertext SHA-256 and decryption in one pass, the plaintext to ``tmp``."""
        cipher, plain = hashlib.sha256(), hashlib.sha256()
        seen = 0
        decryptor = Decryptor(self.identities)
        failure: IntegrityError | None = None
        with os.fdopen(create_private(tmp, follow_symlinks=False), "wb") as out, self.bucket.open_read(w.key) as reader:
            while True:
                chunk = reader.read(CHUNK)
                if not chunk:
                    break
                seen += len(chunk)
                if seen > w.ciphertext_size:
                    raise IntegrityError(
                        f"the object is longer than the {w.ciphertext_size} bytes the signed manifest gives"
                    )
                cipher.update(chunk)
                if failure is None:
                    try:
                        data = decryptor.update(chunk)
                    except IntegrityError as err:
                        failure = err  # read on: the ciphertext hash says whether the object was altered
                        continue
                    plain.update(data)
                    out.write(data)
            if cipher.hexdigest() != w.ciphertext_sha256:
                raise IntegrityError(
                    f"ciphertext SHA-256 {cipher.hexdigest()[:16]}... differs from the signed manifest's "
                    f"{w.ciphertext_sha256[:16]}...: the object was altered or replaced in the bucket"
                )
            if failure is not None:
                raise IntegrityError(f"cannot decrypt with this identity: {failure}")
            data = decryptor.finalize()
            plain.update(data)
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        if plain.hexdigest() != w.plaintext_sha256:
            raise IntegrityError("the decrypted recording's SHA-256 differs from the signed manifest's")


def _complete(path: Path, w: Wanted) -> bool:
    """Whether ``path`` already holds the recording (size, then SHA-256: an earlier run finished it)."""
    try:
        if not path.is_file() or path.stat().st_size != w.size:
            return False
        digest = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(CHUNK):
                digest.update(chunk)
    except OSError:
        return False
    return digest.hexdigest() == w.plaintext_sha256


def _read(path: Path) -> bytes:
    return read_bounded(
        path, ag.MAX_FILE_BYTES,
        unreadable=lambda err: ConfigError(f"cannot read --agreement-file {path}: {err.strerror or err}"),
        too_large=lambda: ConfigError(f"--agreement-file {path} is over the {ag.MAX_FILE_BYTES}-byte limit"),
    )  # fmt: skip


def _read_sums(path: Path) -> dict[str, str]:
    """The ``SHA256SUMS`` of an earlier run (``<hex>  <path>`` lines); lines not of that shape are dropped.

    Read as any file a person hands over is: opened without blocking (a named pipe there held receive in
    open() for ever, waiting for a writer), a regular file only, at most :data:`MAX_SUMS_BYTES`."""
    sums: dict[str, str] = {}
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return sums
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror or err}") from None
    try:
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise ConfigError(f"{path} is not a regular file: move it out of --out, or choose another --out")
            raw = f.read(MAX_SUMS_BYTES + 1)
        if len(raw) > MAX_SUMS_BYTES:
            raise ConfigError(f"{path} is larger than {MAX_SUMS_BYTES} bytes: not a SHA256SUMS receive wrote")
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read {path}: {err}") from None
    for line in text.splitlines():
        digest, sep, name = line.partition("  ")
        if sep and _HEX.fullmatch(digest) and name and ".." not in name.split("/"):
            sums[name] = digest
    return sums


def _write_sums(path: Path, sums: dict[str, str]) -> None:
    """``SHA256SUMS`` for ``sha256sum -c``, only when it lists a file: ``sha256sum -c`` fails on an empty
    one with "no properly formatted checksum lines found", which reads as a damaged file, not as nothing
    received (docs/decisions.md). An empty one an earlier version left is removed for the same reason."""
    if not sums:
        with contextlib.suppress(OSError):
            if path.stat().st_size == 0:
                path.unlink()
        return
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with os.fdopen(create_private(tmp, follow_symlinks=False), "w", encoding="utf-8") as out:
            out.write("".join(f"{sums[name]}  {name}\n" for name in sorted(sums)))
        os.replace(tmp, path)
    except OSError as err:
        raise StorageError(f"cannot write {path}: {err.strerror or err}") from err


def run_receive(
    bucket_url: str,
    endpoint_url: str | None,
    allowed_signers: Path,
    identity: Path,
    agreement_id: str,
    out: Path,
    agreement_files: Sequence[Path] = (),
) -> ReceiveReport:
    """Open the bucket read-only and the party's trust anchors and identity, then receive.

    Raises ConfigError (exit 2) for an unreadable or malformed allowed_signers or identity file, a bad
    agreement id or bucket URL; problems with what the bucket holds are in the report (exit 1)."""
    if ag.ID.fullmatch(agreement_id) is None:
        raise ConfigError("--agreement must be an agreement id: 1-64 letters, digits, '.', '_' or '-'")
    _, signers = inputs.allowed_signers(allowed_signers)
    identities = inputs.identities(identity)
    with inputs.open_read_only(bucket_url, endpoint_url) as bucket:
        return Receiver(bucket, signers, identities, agreement_id, out, agreement_files=agreement_files).run()
