"""``bodycam-sync verify``: prove from the bucket alone what was pulled, and that nothing was altered,
added or removed (docs/auditing.md, docs/formats.md). Trusts only the allowed_signers file and,
optionally, an age identity; never the dock.

Checks, per dock and batch: the manifest's SSH signature (by a key allowed for the dock at the time
the manifest says it was sealed); that batches form one unbroken chain (sequence numbers, previous
manifests' SHA-256, custody segments that link end to start, sealing times that do not go back, and
a key change only with the previous key's co-signature); the custody segment's bytes, entries, order
and links; every listed object's size and ciphertext SHA-256 (streamed); with an identity, each
plaintext SHA-256 and the personal sidecar; and any object under the prefix that no manifest lists.

Each problem is a :class:`Finding` naming the dock, batch, object key and custody entry it concerns.

The bucket may come from another organisation, so it is treated as hostile input (guarantee 4 in docs/ARCHITECTURE.md): memory
stays under ``--max-memory`` (:class:`Limits`) and time is linear in what the bucket holds. The listing is
streamed and consumed one batch at a time (a batch's keys are contiguous in S3's key order); every size
is checked against its limit before anything is read; no count the bucket states is trusted or walked;
of a manifest only what the chain check needs is kept once its batch is checked; and whatever exceeds a
limit is a named finding (``manifest_too_large``, ``custody_too_large``, ...), never a crash.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import os
import sqlite3
import struct
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, overload
from urllib.parse import unquote, urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from bodycam.agent import __version__
from bodycam.agent.audit import inputs, logcheck, witnesscheck
from bodycam.agent.audit.batchstore import BatchStore
from bodycam.agent.audit.custodycheck import CustodyCheck
from bodycam.agent.audit.disclosures import Collector, Disclosure
from bodycam.agent.audit.wording import counted
from bodycam.agent.config import FLEET_PREFIX
from bodycam.agent.formats import agreements as ag
from bodycam.agent.formats import commitment, witnesspolicy
from bodycam.agent.formats import fleet as fl
from bodycam.agent.formats import manifest as mf
from bodycam.agent.formats.agecrypt import AgeNoMatchError, Decryptor, recipient_of
from bodycam.agent.formats.agreements import SIG_SUFFIX
from bodycam.agent.formats.custody import GENESIS, canonical
from bodycam.agent.formats.manifest import LOG_DIR
from bodycam.agent.formats.sshsig import AllowedSigner, fingerprint, keys_for, public_key_line, verify
from bodycam.agent.formats.times import iso_utc, parse_or_none
from bodycam.agent.formats.witnesspolicy import Policy
from bodycam.agent.storage.bucket import Bucket, ObjectInfo, ObjectReader
from bodycam.agent.storage.wrapper import BucketWrapper
from bodycam.drivers import strictjson
from bodycam.drivers.errors import BodycamError, ConfigError, IntegrityError, StorageError

LOG = logging.getLogger(__name__)
MAX_SIGNATURE_BYTES = 16 * 1024
CHUNK = 1024 * 1024
MiB = 1024 * 1024
DEFAULT_MAX_MEMORY_MIB = 256
MIN_MAX_MEMORY_MIB = 128
BASELINE_MIB = 64  # the interpreter, cryptography and boto3 before any work (measured: 47-66 MiB)
MAX_MESSAGE_CHARS = 1000
MAX_REPORT_ROWS = 10_000  # recordings the HTML report lists and draws (the rest are checked and counted)
MAX_KEY_CHARS = 1024
MAX_LOG_DOCKS = 1000  # transparency logs one run checks at least (one per dock); Limits.log_docks scales it
#: bytes a checked batch's summary (BatchResult and what it keeps for the checks across batches) is charged
#: against the batch store's memory budget (``Limits.batch_bytes``) before the store spills to its temporary
#: database: measured 1,052 bytes a batch with tracemalloc when the listing is done, over verify runs on
#: buckets of 1,000 and 4,000 one-dock batches with format 1.1 commitments (tests/hostile.py, no --report;
#: docs/decisions.md), plus ~22 %: 9,830 batches in memory at the default --max-memory, 3,276 at 128, any
#: number past that. A report row (1,024) and personal data are charged to its batch too; findings apart
BATCH_COST = 1280
ROW_COST = 1024
#: one copy kept of each dock id and fingerprint batches repeat, up to this many (then each keeps its own)
MAX_SHARED = 4096
#: agreement versions (by SHA-256) one run reads from ``_fleet/agreements/`` to judge disclosures
MAX_AGREEMENT_DOCS = 1024
#: objects read and hashed at once (issue 14 item 6): enough to keep an S3 endpoint's latency hidden and both
#: cores hashing; each holds one CHUNK, so memory stays bounded whatever the bucket holds
READ_WORKERS = 8


@dataclass(frozen=True, slots=True)
class Limits:
    """What verify holds at once, derived from ``--max-memory`` (docs/auditing.md, "Limits").

    The memory above a baseline for the interpreter is split four ways: one manifest being parsed (its
    bytes, its text, and the objects of at most ``manifest_values`` JSON values at ~128 bytes each),
    one custody segment's entries (~256 bytes each), one batch's listing (key plus ~256 bytes each), and
    what is kept for the whole run: the batch summaries held in memory (a quarter of it; past that they
    spill to a temporary database, agent/audit/batchstore.py) and the findings (the rest). Each is checked
    before the memory is spent; exceeding one is a named finding.
    """

    max_memory_mib: int = DEFAULT_MAX_MEMORY_MIB

    @property
    def _quarter(self) -> int:
        return (self.max_memory_mib - BASELINE_MIB) * MiB // 4

    @property
    def manifest_bytes(self) -> int:
        return self._quarter // 8  # 6 MiB at the default: some 6,000 recordings in one batch

    @property
    def manifest_values(self) -> int:
        return self._quarter // 2 // 128  # 196,608 at the default (a recording has about 35)

    @property
    def personal_bytes(self) -> int:
        return self.manifest_bytes

    @property
    def custody_entries(self) -> int:
        return self._quarter // 256  # 196,608 at the default

    @property
    def custody_bytes(self) -> int:
        return self.custody_entries * 1024

    @property
    def batch_listing_bytes(self) -> int:
        return self._quarter

    @property
    def listing_entries(self) -> int:
        return self._quarter // 256  # one directory of a file bucket, sorted in memory: 196,608 at the default

    @property
    def batch_bytes(self) -> int:
        return self._quarter // 4  # 12 MiB at the default: 9,830 summaries at BATCH_COST before spilling

    @property
    def log_docks(self) -> int:
        """Docks whose transparency log one run checks (their names kept, up to 1,024 characters each):
        12,288 at the default; past it ``logs_too_many`` names how many were not checked."""
        return max(MAX_LOG_DOCKS, self._quarter // 4096)

    @property
    def retained_bytes(self) -> int:
        return self._quarter - self.batch_bytes


def limits_for(max_memory_mib: int) -> Limits:
    """Limits for ``--max-memory``; ConfigError (exit 2) below the minimum the interpreter itself needs."""
    if max_memory_mib < MIN_MAX_MEMORY_MIB:
        raise ConfigError(f"--max-memory {max_memory_mib} is below the minimum of {MIN_MAX_MEMORY_MIB} MiB")
    return Limits(max_memory_mib)


@dataclass(frozen=True, slots=True)
class Finding:
    problem: str
    message: str
    dock: str | None = None
    batch: str | None = None
    key: str | None = None
    custody_seq: int | None = None


@dataclass(frozen=True, slots=True)
class Erasure:
    """An object a manifest lists and the bucket no longer holds, erased under its agreements' retention
    as a signed custody entry records (docs/formats.md "Retention"): not a finding."""

    key: str
    dock: str
    batch: str  # the batch whose manifest lists the object
    agreements: tuple[str, ...]
    erased_at: str  # the custody entry's time (ISO 8601 UTC)
    retain_until: str  # the manifest's retain-until date
    custody_seq: int
    entry_batch: str  # the batch whose custody segment holds the erasure entry


@dataclass(frozen=True)
class Personal:
    """What a decrypted sidecar says that the report shows (personal data: only with ``--identity``).

    ``officers`` maps (camera serial, recording id) to the officer id or None; ``exercises`` holds
    (id, start, end, site). Values are cut to a bounded length: the sidecar is untrusted input too.
    """

    officers: dict[tuple[str, str], str | None]
    exercises: tuple[tuple[str, str, str, str], ...]

    @classmethod
    def of(cls, doc: dict[str, Any]) -> Personal:
        officers: dict[tuple[str, str], str | None] = {}
        recordings = doc.get("recordings")
        for item in recordings if isinstance(recordings, list) else []:
            if isinstance(item, dict):
                ident = (str(item.get("camera_serial"))[:64], str(item.get("recording_id"))[:32])
                officer = item.get("officer_id")
                officers[ident] = None if officer is None else str(officer)[:200]
        exercises = doc.get("exercises")
        windows = tuple(
            (str(ex.get("id"))[:200], str(ex.get("start"))[:64], str(ex.get("end"))[:64], str(ex.get("site"))[:200])
            for ex in (exercises if isinstance(exercises, list) else [])
            if isinstance(ex, dict)
        )
        return cls(officers, windows)


@dataclass(frozen=True, slots=True)
class RecordingRow:
    """One manifest recording as the HTML report shows it: each value a string cut to a bounded length
    (the manifest is untrusted: a megabyte-long field must not be kept whole), ``None`` where absent."""

    camera_serial: str
    recording_id: str
    camera_model: str | None
    exercise_id: str | None
    start: str
    end: str
    size: str
    plaintext_sha256: str
    ciphertext_sha256: str
    officer_pseudonym: str | None

    @classmethod
    def of(cls, rec: mf.ManifestRecording) -> RecordingRow:
        def opt(value: str | None) -> str | None:
            return None if value is None else value[:80]

        return cls(
            rec.camera_serial[:64], str(rec.recording_id)[:32], opt(rec.camera_model), opt(rec.exercise_id),
            rec.start[:64], rec.end[:64], str(rec.size)[:32], rec.plaintext_sha256[:80],
            rec.ciphertext_sha256[:80], opt(rec.officer_pseudonym),
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class ChainLink:
    """What the chain check needs of a manifest's custody reference (not its key, hash or root): kept
    per batch for the whole run, so the rest of :class:`~bodycam.agent.formats.manifest.CustodyRef` is not."""

    first_seq: int
    last_seq: int
    prev: str
    head: str


@dataclass(slots=True)
class BatchResult:
    dock: str
    batch: str
    seq: int | None = None
    recordings: int = 0
    objects_ok: int = 0
    plaintext_ok: int = 0
    custody_entries: int = 0
    signature_ok: bool = False
    problems: int = 0
    signer: str | None = None  # fingerprint of the key that signed the manifest
    cosigner: str | None = None  # fingerprint of the key that made manifest.json.sig.prev, if any
    manifest_sha256: str | None = None
    # for the checks across batches and the report; not reported. ``previous_manifest_sha256`` and
    # ``custody``: the manifest's link to the batch before (kept once the rest of the manifest is
    # dropped); ``rows``: what the HTML report shows of each recording (only when a report is asked for).
    # Kept for every batch of the run, so shared where batches repeat it (docs/decisions.md, BATCH_COST):
    # the dock id, the signer's fingerprint and key, and a link equal to the batch before's hash or head
    previous_manifest_sha256: str | None = field(default=None, repr=False)
    custody: ChainLink | None = field(default=None, repr=False)
    rows: Sequence[RecordingRow] = field(default=(), repr=False)  # a list once the first row is kept
    signer_key: Ed25519PublicKey | None = field(default=None, repr=False)
    cosigner_key: Ed25519PublicKey | None = field(default=None, repr=False)
    cosign_error: str | None = field(default=None, repr=False)
    sealed_at: dt.datetime | None = field(default=None, repr=False)
    personal: Personal | None = field(default=None, repr=False)  # with --identity, for the report
    handover: dict[str, str] | None = field(default=None, repr=False)  # its custody's dock_handover entry
    #: what its log entry must repeat (``commitment.LOG_FIELDS``' values, in order; () for a 1.0 manifest);
    #: dropped once the log check has compared them
    commitments: tuple[object, ...] = field(default=(), repr=False)


_UNREPORTED = frozenset(
    {
        "previous_manifest_sha256",
        "custody",
        "rows",
        "signer_key",
        "cosigner_key",
        "cosign_error",
        "sealed_at",
        "personal",
        "handover",
        "commitments",
    }
)


def _encode_batch(r: BatchResult) -> tuple[bytes, bytes | None]:
    """A summary as the batch store keeps it once spilled: JSON (ASCII, so a lone surrogate from a key
    survives), what the report alone reads (rows, personal data) apart. Decoded by :func:`_decode_batch`
    to an equal summary: the findings and reports do not depend on where it was kept."""
    link = r.custody
    main = [
        r.dock, r.batch, r.seq, r.recordings, r.objects_ok, r.plaintext_ok, r.custody_entries, r.signature_ok,
        r.signer, r.cosigner, r.manifest_sha256, r.previous_manifest_sha256,
        None if link is None else [link.first_seq, link.last_seq, link.prev, link.head],
        None if r.signer_key is None else r.signer_key.public_bytes_raw().hex(),
        None if r.cosigner_key is None else r.cosigner_key.public_bytes_raw().hex(),
        r.cosign_error, None if r.sealed_at is None else r.sealed_at.isoformat(), r.handover, list(r.commitments),
    ]  # fmt: skip
    extra = None
    if r.rows or r.personal is not None:
        personal = r.personal
        extra = [
            [[getattr(row, f.name) for f in fields(RecordingRow)] for row in r.rows],
            None
            if personal is None
            else [[[c, i, o] for (c, i), o in personal.officers.items()], [list(x) for x in personal.exercises]],
        ]
    return _json(main), None if extra is None else _json(extra)


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("ascii")


def _decode_batch(data: bytes, extra: bytes | None) -> BatchResult:
    (dock, batch, seq, recordings, objects_ok, plaintext_ok, custody_entries, signature_ok, signer, cosigner,
     manifest_sha256, previous, link, signer_key, cosigner_key, cosign_error, sealed_at, handover,
     commitments) = json.loads(data)  # fmt: skip
    r = BatchResult(
        dock, batch, seq, recordings, objects_ok, plaintext_ok, custody_entries, signature_ok, 0, signer, cosigner,
        manifest_sha256, previous, None if link is None else ChainLink(*link), (),
        None if signer_key is None else Ed25519PublicKey.from_public_bytes(bytes.fromhex(signer_key)),
        None if cosigner_key is None else Ed25519PublicKey.from_public_bytes(bytes.fromhex(cosigner_key)),
        cosign_error, None if sealed_at is None else dt.datetime.fromisoformat(sealed_at), None, handover,
        tuple(commitments),
    )  # fmt: skip
    if extra is not None:
        rows, personal = json.loads(extra)
        r.rows = [RecordingRow(*row) for row in rows]
        if personal is not None:
            officers, exercises = personal
            r.personal = Personal({(c, i): o for c, i, o in officers}, tuple(tuple(x) for x in exercises))
    return r


def _hands_over_to(r: BatchResult) -> str | None:
    """The dock id a validly signed batch's custody hands its dock over to (docs/formats.md "Dock handover")."""
    to_dock = (r.handover or {}).get("to_dock")
    return to_dock if to_dock is not None and r.signature_ok and to_dock != r.dock else None


def batch_store(budget: int, work_dir: Path | None = None) -> BatchStore[BatchResult]:
    """Where a run keeps its batch summaries: in memory up to ``budget`` bytes, then spilled to a private
    temporary database under ``work_dir`` (None: ``$TMPDIR``)."""
    return BatchStore(_encode_batch, _decode_batch, _hands_over_to, budget, work_dir)


def _unbounded() -> BatchStore[BatchResult]:
    return batch_store(1 << 62)


class _Streamed(list[dict[str, object]]):
    """The report's batches as ``json`` encodes them, one at a time from the batch store: a list to the
    encoder (``emit_json``'s ``iterencode``), never all in memory at once."""

    def __init__(self, store: BatchStore[BatchResult]) -> None:
        super().__init__()
        self._store = store

    def __iter__(self) -> Iterator[dict[str, object]]:
        for b in self._store:
            yield {f.name: getattr(b, f.name) for f in fields(b) if f.name not in _UNREPORTED}

    def __len__(self) -> int:
        return len(self._store)

    def __bool__(self) -> bool:
        return bool(self._store)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, list)
            and len(other) == len(self)
            and all(a == b for a, b in zip(self, other, strict=False))
        )

    __hash__ = None


@dataclass(frozen=True)
class AuditContext:
    """What the audit was run against and when: the report's header (an audit document names its inputs)."""

    bucket_url: str
    allowed_signers: str  # the file as named on the command line
    allowed_signers_sha256: str  # of its bytes as read
    signers: tuple[AllowedSigner, ...]
    decrypted: bool  # an --identity was given: plaintexts and the personal sidecars were opened
    started: str  # ISO 8601 UTC
    finished: str
    version: str  # of bodycam-sync

    def to_json(self) -> dict[str, object]:
        return {
            "bucket": self.bucket_url,
            "allowed_signers": self.allowed_signers,
            "allowed_signers_sha256": self.allowed_signers_sha256,
            "signers": [
                {
                    "principals": list(s.principals),
                    "fingerprint": fingerprint(s.key),
                    "namespaces": None if s.namespaces is None else list(s.namespaces),
                    "valid_after": None if s.valid_after is None else s.valid_after.isoformat(),
                    "valid_before": None if s.valid_before is None else s.valid_before.isoformat(),
                }
                for s in self.signers
            ],
            "decrypted": self.decrypted,
            "started": self.started,
            "finished": self.finished,
            "version": self.version,
        }


@dataclass
class VerifyReport:
    """What a run found. ``batches`` may lie in a temporary database (a run of many batches): read it
    before :meth:`close` (or the end of a ``with`` block), which removes it."""

    batches: BatchStore[BatchResult] = field(default_factory=_unbounded)
    findings: list[Finding] = field(default_factory=list)
    objects_seen: int = 0
    audit: AuditContext | None = None
    erasures: list[Erasure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def close(self) -> None:
        self.batches.close()

    def __enter__(self) -> VerifyReport:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def to_json(self) -> dict[str, object]:
        """The report as one JSON document; its batches are read from the store as it is encoded."""
        return {
            "verified": self.ok,
            "objects_seen": self.objects_seen,
            "batches": _Streamed(self.batches),
            "findings": [asdict(f) for f in self.findings],
            "erasures": [asdict(e) for e in self.erasures],
            **({"audit": self.audit.to_json()} if self.audit is not None else {}),
        }


class Verifier:
    def __init__(
        self,
        bucket: Bucket,
        signers: list[AllowedSigner],
        identities: list[str] | None = None,
        expected_heads: dict[str, str] | None = None,
        limits: Limits | None = None,
        policy: Policy | None = None,
        *,
        ask_witnesses: bool = True,
        workers: int = READ_WORKERS,
        work_dir: Path | None = None,
        batch_budget: int | None = None,
    ) -> None:
        self.bucket = bucket
        #: recording objects read in parallel (1: one after another); findings are recorded in manifest
        #: order either way, so the report does not depend on it
        self.workers = max(1, workers)
        self._pool: ThreadPoolExecutor | None = None
        #: --policy: the dock keys, witnesses and quorum that say which checkpoints count as witnessed
        self.policy = policy
        self.ask_witnesses = ask_witnesses
        #: one per run: a witness that did not answer is not asked again for every other dock of the policy
        self._asker: bool | witnesscheck.Asker = witnesscheck.Asker() if ask_witnesses else False
        self.signers = signers
        self.identities = identities or []
        #: the age recipients the identities belong to: an identity of a manifest's ``recipients`` (the
        #: archive, or every party without agreements) must open all of its batch; another party's only
        #: its share, and what it cannot open is not a finding (the ciphertext is still hashed)
        self._own_recipients = _recipients_of(self.identities)
        self._opens_all = True  #: for the batch being judged: the identities hold one of its manifest's recipients
        #: recordings judged with identities; of them, those opened and the intact ones they could not open
        self._judged = self._opened = self._not_ours = 0
        #: dock -> SHA-256 of a manifest the auditor recorded earlier: it must still be in the chain, so
        #: deleting the newest batches (which no later batch links to) is caught too
        self.expected_heads = expected_heads or {}
        self.limits = limits or Limits()
        #: the batch summaries: in memory up to ``batch_budget`` bytes (default ``Limits.batch_bytes``), then
        #: spilled to a private temporary database under ``work_dir`` (None: $TMPDIR)
        budget = self.limits.batch_bytes if batch_budget is None else batch_budget
        self.report = VerifyReport(batch_store(budget, work_dir))
        self._sizes: dict[str, int] = {}  # the listing of the batch being checked: key -> size
        self._retained = 0  # bytes (estimated) of what is kept for the whole run: batch summaries, findings
        self._untold: Counter[str] = Counter()  # findings past the retained budget, by problem
        self._report_rows = 0
        #: where manifests stand: at <dock>/<batch>/ (this bucket's layout) or one level deeper (the
        #: auditor pointed verify one level above the prefix); the latter names the prefix to use
        self._manifests_here = 0
        self._manifests_deeper: Counter[str] = Counter()
        self._log_docks: set[str] = set()  # docks with objects under <dock>/log/ (their transparency log)
        self._logs_over = 0  # docks with a log past Limits.log_docks (not checked): counted, named in a finding
        self._log_over_last = ""  # the last of them (a listing keeps each dock's keys together)
        #: objects a manifest lists with a retain-until date that the bucket lacks (key -> what the manifest
        #: says), and the signed erasure entries seen (key -> the dock whose custody holds it -> the first
        #: such entry): matched once the whole bucket is read, when the docks' handovers are known too
        self._gone: dict[str, dict[str, Any]] = {}
        self._erasures: dict[str, dict[str, dict[str, Any]]] = {}
        #: sees each custody disclosure entry with its batch and the manifest's plaintext SHA-256 of the
        #: object (``bodycam-sync disclosures``); ``check_objects=False`` skips hashing the objects
        self.on_disclosure: DisclosureSink | None = None
        self.check_objects = True
        #: keep each recording's row for the HTML report (``verify --report``); off, nothing is kept per
        #: recording and the report, if written anyway, lists none
        self.keep_rows = True
        #: one object per value many batches repeat (dock ids, signer fingerprints): kept for every batch
        self._shared: dict[str, str] = {}
        #: the agreement versions the manifests name, by SHA-256 (None: not in the bucket as signed)
        self._agreement_docs: dict[str, ag.Agreement | None] = {}

    def _share(self, value: str) -> str:
        """The one copy of ``value`` kept for the run (a dock id or fingerprint each batch repeats)."""
        if len(self._shared) >= MAX_SHARED:
            return self._shared.get(value, value)
        return self._shared.setdefault(value, value)

    def _find(self, problem: str, message: str, **where: Any) -> None:
        """Record a finding; past the memory budget only count it (reported as ``findings_truncated``)."""
        self._record(problem, message, where, always=False)

    def _record(self, problem: str, message: str, where: dict[str, Any], *, always: bool) -> None:
        """``always``: a finding that says the run itself was cut short, kept whatever the budget."""
        if len(message) > MAX_MESSAGE_CHARS:
            message = message[:MAX_MESSAGE_CHARS] + "..."
        key = where.get("key")
        if isinstance(key, str) and len(key) > MAX_KEY_CHARS:
            where["key"] = key[:MAX_KEY_CHARS] + "..."
        cost = 512 + len(message) + len(where.get("key") or "")
        if not always and (self._untold or self._retained + cost > self.limits.retained_bytes):
            self._untold[problem] += 1
            return
        self._retained += cost
        finding = Finding(problem, message, **where)
        self.report.findings.append(finding)
        LOG.info("finding: %s", finding)

    def run(self) -> VerifyReport:
        """Stream the listing once, checking each batch as its keys end; then each dock's chain.

        The report's batches may have spilled to a temporary database: the caller closes the report
        (``with verifier.run() as report:``) once it is written; on any error or Ctrl-C here it is
        removed before the exception goes on."""
        try:
            self._listing()
            self._finish(self.report.batches)
        except BaseException:
            self.report.close()
            raise
        return self.report

    def _listing(self) -> None:
        try:
            if self.workers > 1:
                with ThreadPoolExecutor(self.workers, thread_name_prefix="verify-read") as pool:
                    self._pool = pool
                    try:
                        self._groups(self.report.batches)
                    finally:
                        self._pool = None
                        pool.shutdown(cancel_futures=True)
            else:
                self._groups(self.report.batches)
            self.report.batches.flush()
        except (OSError, sqlite3.Error) as err:
            self._unkept(self.report.batches, err)
        except BodycamError as err:
            self._record(
                "listing_failed", f"listing the bucket failed, so not all of it was checked: {err}", {}, always=True
            )

    def _unkept(
        self, store: BatchStore[BatchResult], err: Exception, dock: str | None = None, batch: str | None = None
    ) -> None:
        """``bucket_too_large``: the temporary database refused a write (no room). The summaries not yet
        written are left out of the report and, when a batch is named, the listing stops there."""
        lost = store.drop_pending()
        if dock is not None:
            before = f" and the {lost - 1} checked before it are" if lost > 1 else " is"
            which = f"{dock}/{batch}/{before} not reported, and the batches after it were not checked"
        else:
            which = f"the last {counted(lost, 'batch', 'batches')} checked {'is' if lost == 1 else 'are'} not reported"
        self._record(
            "bucket_too_large",
            f"verify could not write its batch summaries to its temporary database under {store.where} ({err}): "
            f"{which} (free space there, or set TMPDIR to a directory with room)",
            {"dock": dock, "batch": batch},
            always=True,
        )

    def _groups(self, store: BatchStore[BatchResult]) -> None:
        """Check each run of the listing: a batch, or keys outside any."""
        for group, sizes, overflow in self._batches():
            if group is None:  # keys outside any dock/batch directory
                for key in sizes:
                    self._unlisted(key)
                continue
            dock, batch = group
            if store.has(dock, batch):
                self._find(
                    "listing_unordered",
                    f"the bucket listed keys of {dock}/{batch}/ apart from one another: not in key order, so this "
                    "batch cannot be checked as a whole",
                    dock=dock,
                    batch=batch,
                )
                continue
            if overflow:
                self._find(
                    "batch_too_large",
                    f"{dock}/{batch}/ holds {overflow} objects, more than the listing of one batch may take within "
                    f"--max-memory {self.limits.max_memory_mib} MiB: not checked (raise --max-memory)",
                    dock=dock,
                    batch=batch,
                )
                continue
            if f"{dock}/{batch}/{mf.MANIFEST}" not in sizes:
                for key in sizes:
                    self._unlisted(key)
                continue
            dock = self._share(dock)
            self._sizes = sizes
            listed: set[str] = set()
            result = self._batch(dock, batch, listed, store.last(dock))
            try:
                store.add(result, _cost(result))
            except (OSError, sqlite3.Error) as err:
                self._unkept(store, err, dock, batch)
                return
            for key in sizes:
                if key not in listed:
                    self._unlisted(key)
            self._sizes = {}

    def _note_manifest_depth(self, key: str) -> None:
        parts = key.split("/")
        if parts[-1] != mf.MANIFEST:
            return
        if len(parts) == 3:
            self._manifests_here += 1
        elif len(parts) == 4 and len(self._manifests_deeper) < 16:
            self._manifests_deeper[parts[0]] += 1

    def _wrong_prefix(self) -> bool:
        """No manifest where this layout puts them, but some one level deeper: say which prefix to verify
        instead of naming every object as unlisted (what an auditor sees is a hint, not 21 findings)."""
        if self._manifests_here or not self._manifests_deeper:
            return False
        url = self.bucket.url.rstrip("/")
        where = ", ".join(f"{url}/{name}" for name in sorted(self._manifests_deeper))
        self.report.findings.clear()
        self._untold.clear()
        self.report.findings.append(
            Finding(
                "wrong_prefix",
                f"{url} holds no batch at its top level, but batches one level down: verify --bucket {where}",
            )
        )
        return True

    def _finish(self, store: BatchStore[BatchResult]) -> None:
        """After the listing: the chain of each dock, the expected heads, and the findings' totals. Each
        dock's summaries are read back from the store in chain order, one dock at a time."""
        if self._wrong_prefix():
            return
        if not self.report.objects_seen:
            url = self.bucket.url
            self._find("nothing_to_verify", f"{url} holds no objects: nothing was verified (wrong bucket or prefix?)")
        heads_seen: set[str] = set()  # docks whose --expect-head is one of their manifests
        for dock in store.docks():
            self._chain(dock, store, heads_seen)
        for dock in sorted(self._log_docks):
            self._log(dock, store)
        if self._logs_over:
            self._find(
                "logs_too_many",
                f"{self._logs_over} more {'dock has' if self._logs_over == 1 else 'docks have'} a transparency "
                f"log than the {self.limits.log_docks} one run "
                f"checks within --max-memory {self.limits.max_memory_mib} MiB: their logs were not checked, nor "
                "whether another dock's log was deleted; run verify with a larger --max-memory",
            )
        self._witnessed_without_log()
        self._resolve_erasures(store)
        self._identity_opened_nothing()
        for dock, head in sorted(self.expected_heads.items()):
            if dock not in heads_seen:
                self._find(
                    "expected_head_missing",
                    f"dock {dock}: the manifest recorded earlier (SHA-256 {head[:16]}...) is not in the bucket: "
                    "its batch, or the newest batches, were deleted or replaced",
                    dock=dock,
                )
        if self._untold:
            counts = ", ".join(f"{n} {problem}" for problem, n in sorted(self._untold.items()))
            self._untold.clear()
            self.report.findings.append(
                Finding(
                    "findings_truncated",
                    f"more findings than fit within --max-memory {self.limits.max_memory_mib} MiB; not listed: {counts}",
                )
            )
        store.problems = Counter((f.dock, f.batch) for f in self.report.findings)

    def _log(self, dock: str, store: BatchStore[BatchResult]) -> None:
        """The dock's transparency log (agent/audit/logcheck.py): each checkpoint signed by a key allowed for the
        dock now or when one of its batches was sealed (a kept checkpoint by a key retired since)."""
        keys: dict[bytes, Ed25519PublicKey] = {
            k.public_bytes_raw(): k for k in keys_for(self.signers, dock, mf.NAMESPACE)
        }
        last: dt.datetime | None = None
        for r in store.ordered(dock):
            when = _second(r.sealed_at)
            if when is not None and when != last:
                keys.update((k.public_bytes_raw(), k) for k in keys_for(self.signers, dock, mf.NAMESPACE, at=when))
            last = when
        # in batch_seq order, made one at a time as the log check's merge with the entries reaches them
        manifests = _for_log(r for r in store.ordered(dock) if r.seq is not None)
        try:
            found = logcheck.check(
                self.bucket,
                dock,
                list(keys.values()),
                manifests,
                policy=self.policy,
                fetch=self._asker,
            )
        except BodycamError as err:
            found = [logcheck.LogFinding("log_unreadable", f"{dock}/log: {err}")]
        for f in found:
            self._find(f.problem, f.message, dock=dock, batch=f.batch, key=f.key)

    def _witnessed_without_log(self) -> None:
        """A dock of the policy whose log is not in the bucket at all: its witnesses may still hold a
        checkpoint of it (then the whole log was deleted)."""
        if self.policy is None:
            return
        for origin in self.policy.origins():
            dock = witnesscheck.dock_of(origin)
            if dock is None or dock in self._log_docks:
                continue
            try:
                found = logcheck.witnessed(self.bucket, dock, self.policy, None, [], fetch=self._asker)
            except BodycamError as err:
                found = [logcheck.LogFinding("log_unreadable", f"{dock}/log: {err}")]
            for f in found:
                self._find(f.problem, f.message, dock=dock, batch=f.batch, key=f.key)

    def _batches(self) -> Iterator[tuple[tuple[str, str] | None, dict[str, int], int]]:
        """The listing as runs of keys: ``((dock, batch), {key: size}, 0)`` per ``dock/batch/`` directory,
        ``(None, {key: size}, 0)`` for a key outside one; a run over the listing budget comes as
        ``(group, {}, number of its keys)``. S3's key order keeps each directory's keys together."""
        group: tuple[str, str] | None = None
        sizes: dict[str, int] = {}
        cost = count = 0
        for info in self.bucket.iter_objects(""):
            self.report.objects_seen += 1
            self._note_manifest_depth(info.key)
            parts = info.key.split("/", 2)
            if parts[0] == FLEET_PREFIX and len(parts) > 1:
                if not _fleet_document(parts):  # §12 names every object the force puts there; others are added
                    yield None, {info.key: info.size}, 0
                continue  # the force's signed agreements and register (docs/formats.md §12): no dock's batch
            if len(parts) == 3 and parts[1] == LOG_DIR:
                self._note_log_dock(parts[0][:MAX_KEY_CHARS])
                continue  # the dock's transparency log (docs/formats.md §9), checked after the chains
            here = (parts[0], parts[1]) if len(parts) == 3 else None
            if here is None:
                yield None, {info.key: info.size}, 0
                continue
            if here != group:
                if group is not None:
                    yield group, sizes, (count if cost > self.limits.batch_listing_bytes else 0)
                group, sizes, cost, count = here, {}, 0, 0
            count += 1
            if cost <= self.limits.batch_listing_bytes:
                cost += len(info.key) + 256
                sizes[info.key] = info.size
                if cost > self.limits.batch_listing_bytes:
                    sizes = {}
        if group is not None:
            yield group, sizes, (count if cost > self.limits.batch_listing_bytes else 0)

    def _note_log_dock(self, dock: str) -> None:
        """A dock with objects under ``<dock>/log/``: its log is checked after the chains, up to
        ``Limits.log_docks`` docks; past that it is counted, and ``logs_too_many`` says so, for a log not
        checked (or deleted unnoticed: ``log_missing`` cannot be told either) must not pass silently."""
        if dock in self._log_docks:
            return
        if len(self._log_docks) < self.limits.log_docks:
            self._log_docks.add(dock)
        elif dock != self._log_over_last:
            self._logs_over += 1
            self._log_over_last = dock

    def _unlisted(self, key: str) -> None:
        parts = key.split("/")
        why = (
            "is under _fleet/ but is none of the force's agreements, revocations or registers (docs/formats.md §12)"
            if parts[0] == FLEET_PREFIX
            else "is in the bucket but no manifest lists it (added, or left from a batch whose manifest is gone)"
        )
        self._find(
            "unlisted_object",
            f"{key} {why}",
            dock=parts[0] if len(parts) > 1 else None,
            batch=parts[1] if len(parts) > 2 else None,
            key=key,
        )

    # -- one batch ----------------------------------------------------------------------------
    def _manifest(self, mkey: str, where: dict[str, Any], listed: set[str]) -> bytes | None:
        """The manifest's bytes, refused (``manifest_too_large``) before reading when over the limits: then
        the batch as a whole is the finding, not each of its objects."""
        size = self._sizes.get(mkey, 0)
        if size > self.limits.manifest_bytes:
            self._too_large(f"{mkey} is {size} bytes, over the {self.limits.manifest_bytes}", where, listed)
            return None
        try:
            raw: bytes = self.bucket.get_bytes(mkey, max_size=self.limits.manifest_bytes)
        except BodycamError as err:
            self._find("manifest_unreadable", f"{mkey}: {err}", **where)
            return None
        values = strictjson.count_values(raw)
        if values > self.limits.manifest_values:
            what = f"{mkey} holds up to {values} JSON values, over the {self.limits.manifest_values}"
            self._too_large(what, where, listed)
            return None
        return raw

    def _too_large(self, what: str, where: dict[str, Any], listed: set[str]) -> None:
        """``manifest_too_large``: the batch as a whole is the finding, its objects are not each named."""
        self._find(
            "manifest_too_large",
            f"{what} a manifest may have within --max-memory {self.limits.max_memory_mib} MiB: its batch was not checked",
            **where,
        )
        listed.update(self._sizes)

    def _batch(self, dock: str, batch: str, listed: set[str], before: BatchResult | None = None) -> BatchResult:
        """Check one batch; ``before`` is the dock's batch listed before it, whose manifest hash and custody
        head this one's links share when equal (one string kept, not two)."""
        result = BatchResult(dock, batch)
        prefix = mf.batch_prefix(dock, batch)
        mkey, skey, pkey = f"{prefix}/{mf.MANIFEST}", f"{prefix}/{mf.SIGNATURE}", f"{prefix}/{mf.PREV_SIGNATURE}"
        listed.update({mkey, skey})
        where = {"dock": dock, "batch": batch, "key": mkey}
        raw = self._manifest(mkey, where, listed)
        if raw is None:
            return result
        result.manifest_sha256 = hashlib.sha256(raw).hexdigest()
        manifest = self._parse(raw, mkey, where, listed)
        result.sealed_at = manifest.sealed_at if manifest is not None else None
        self._signature(raw, mkey, skey, result, result.sealed_at)
        if manifest is None:
            return result
        if pkey in self._sizes:
            listed.add(pkey)
            self._cosignature(raw, pkey, result, result.sealed_at)
        self._claims(manifest, result, where)
        self._coverage(manifest, result)
        self._opens_all = any(r.age in self._own_recipients for r in manifest.recipients)
        result.seq = manifest.batch_seq
        result.previous_manifest_sha256 = manifest.previous_manifest_sha256
        result.custody = _link(manifest.custody)
        if before is not None:
            result.previous_manifest_sha256, result.custody = _shared_links(before, result)
        self._custody(manifest, prefix, result, listed)
        self._sidecar(manifest, prefix, result, listed, where)
        result.recordings = len(manifest.recordings)
        for rec in manifest.recordings:
            if not rec.key.startswith(f"{prefix}/recordings/"):
                self._find(
                    "manifest_invalid", f"{mkey} lists a recording outside its batch: {_short(rec.key)}", **where
                )
        self._party_sidecars(manifest, prefix, result, listed)
        result.recordings = len(manifest.recordings)
        # Objects are read ahead by the pool, at most 2 x workers at once, and judged here in manifest
        # order, so the findings and their order are those of a sequential run.
        window: deque[tuple[mf.ManifestRecording, Future[_Read] | None]] = deque()
        for rec in manifest.recordings:
            if not rec.key.startswith(f"{prefix}/recordings/"):
                while window:
                    self._judge(window.popleft(), result, dock, batch)
                self._find(
                    "manifest_invalid", f"{mkey} lists a recording outside its batch: {_short(rec.key)}", **where
                )
                continue
            listed.add(rec.key)
            self._keep_row(result, rec)
            window.append((rec, self._read_ahead(rec)))
            if len(window) > 2 * self.workers:
                self._judge(window.popleft(), result, dock, batch)
        while window:
            self._judge(window.popleft(), result, dock, batch)
        self._commitments(manifest, result, where)
        return result

    def _commitments(self, manifest: mf.Manifest, result: BatchResult, where: dict[str, Any]) -> None:
        """Format 1.1: ``recordings_root`` is the Merkle root of the recordings listed (proof bundles prove
        one recording against it); the log entry must repeat it (logcheck)."""
        if manifest.recordings_root is None:
            return
        if manifest.recordings_root != commitment.recordings_root([r.to_json() for r in manifest.recordings]):
            self._find(
                "commitment_mismatch",
                f"{where['key']}: recordings_root is not the Merkle root of the recordings it lists",
                **where,
            )
        fields_ = commitment.log_fields(manifest)
        if fields_:
            result.commitments = tuple(fields_[k] for k in commitment.LOG_FIELDS)

    def _read_ahead(self, rec: mf.ManifestRecording) -> Future[_Read] | None:
        """Start reading a recording object in the pool when it will be read at all (listed, of the size
        the manifest says); None without a pool, and for those ``_object_hash`` judges without reading."""
        if not self.check_objects or self._pool is None or self._sizes.get(rec.key) != rec.ciphertext_size:
            return None
        return self._pool.submit(_read_object, self.bucket, rec.key, rec.ciphertext_size, self.identities)

    def _judge(
        self, item: tuple[mf.ManifestRecording, Future[_Read] | None], result: BatchResult, dock: str, batch: str
    ) -> None:
        rec, read = item
        ok = self._recording(rec, dock, batch, read)
        result.objects_ok += ok[0]
        result.plaintext_ok += ok[1]

    def _parse(self, raw: bytes, mkey: str, where: dict[str, Any], listed: set[str]) -> mf.Manifest | None:
        """The manifest (docs/formats.md §3), or None with a finding naming the field that breaks it; then
        its batch as a whole is the finding (as for ``manifest_too_large``), not each of its objects. A
        manifest that is not canonical JSON is named too, even where it parses."""
        try:
            doc = mf.parse_document(raw, mkey, self.limits.manifest_values)
            if isinstance(doc, dict) and canonical(doc) != raw:
                self._find("manifest_not_canonical", f"{mkey} is not canonical JSON (edited or re-serialised)", **where)
            return mf.Manifest.from_json(doc, mkey)
        except mf.ManifestError as err:
            problem = "manifest_format" if isinstance(err, mf.ManifestFormatError) else "manifest_invalid"
            self._find(problem, f"{err}: its batch was not checked", **where)
            listed.update(self._sizes)
            return None

    def _claims(self, manifest: mf.Manifest, result: BatchResult, where: dict[str, Any]) -> None:
        """What the manifest says about itself against where it lies and who signed it."""
        dock, batch, mkey = result.dock, result.batch, where["key"]
        if manifest.dock_id != dock or manifest.batch_id != batch:
            self._find(
                "manifest_misplaced",
                f"{mkey} describes dock {_short(manifest.dock_id)} batch {_short(manifest.batch_id)}, not {dock} {batch}: "
                "a manifest copied or replayed from elsewhere",
                **where,
            )
        if result.signer_key is not None and manifest.signing_key != public_key_line(result.signer_key):
            self._find(
                "signing_key_mismatch",
                f"{mkey} names signing key {manifest.signing_key[:80]!r} but was signed by {result.signer}",
                **where,
            )

    def _coverage(self, manifest: mf.Manifest, result: BatchResult) -> None:
        """Each party a recording was encrypted to is named by an agreement the manifest names for it, one
        that covers the recording (docs/formats.md §10.2): the dock signed whom it disclosed to, and the
        agreement it names by SHA-256 says whom it may. Judged from what the bucket holds: the versions in
        ``_fleet/agreements/`` (a dock's local agreements are not there, and are not judged); a recording's
        site is not in the manifest, nor when the disclosure was made, so the site and the end of validity
        are not judged, and validity's start only against the batch's sealing (it was disclosed before)."""
        sealed = manifest.sealed_at.timestamp()
        for rec in manifest.recordings:
            if not rec.parties or rec.agreements is None:
                continue
            why = self._uncovered(rec, sealed)
            if why is not None:
                self._find("disclosure_uncovered", f"{_short(rec.key, 300)}: {why}", dock=result.dock,
                           batch=result.batch, key=rec.key)  # fmt: skip

    def _uncovered(self, rec: mf.ManifestRecording, sealed: float) -> str | None:
        """Why a party of ``rec`` had no covering agreement, or None (covered, or not judged here)."""
        docs = [self._agreement_doc(ref) for ref in (rec.agreements or ())[:64]]
        start, end = parse_or_none(rec.start), parse_or_none(rec.end)
        if any(d is None for d in docs) or start is None or end is None:
            return None
        for party in rec.parties or ():
            reasons: list[str] = []
            for doc in docs:
                assert doc is not None
                if party not in {p.name for p in doc.parties}:
                    reasons.append(f"{doc.id}: does not name it")
                    continue
                site = doc.scope.sites[0] if doc.scope.sites else None  # not in the manifest: not judged
                facts = ag.RecordingFacts(rec.camera_serial, rec.exercise_id, site, start.timestamp(), end.timestamp())
                now = sealed if sealed < doc.not_before else min(sealed, doc.not_after)
                code = ag.coverage(doc, facts, now)
                if code == ag.COVERED:
                    break
                reasons.append(f"{doc.id}: {code}")
            else:
                listed = "; ".join(reasons[:8]) or "it names none"
                return (
                    f"it was encrypted to party {_short(party, 64)}, but no agreement it names covers that ({listed})"
                )
        return None

    def _agreement_doc(self, ref: mf.AgreementRef) -> ag.Agreement | None:
        """The agreement version ``ref`` names, as the bucket's ``_fleet/agreements/`` holds it with the
        SHA-256 the manifest signs; None when it holds no such document (read once per version)."""
        if ref.sha256 in self._agreement_docs:
            return self._agreement_docs[ref.sha256]
        if len(self._agreement_docs) >= MAX_AGREEMENT_DOCS or ag.ID.fullmatch(ref.id) is None:
            return None
        doc: ag.Agreement | None = None
        try:
            raw = self.bucket.get_bytes(f"{fl.AGREEMENTS}/{ref.id}.v{ref.version}.json", ag.MAX_FILE_BYTES)
            if hashlib.sha256(raw).hexdigest() == ref.sha256:
                full = ag.parse(raw, strings=False)  # kept without its bytes and keys: the cache stays small
                parties = tuple(replace(p, recipients=()) for p in full.parties)
                doc = replace(full, parties=parties, raw=b"")
        except BodycamError:  # absent, unreadable or not an agreement: nothing to judge by
            doc = None
        self._agreement_docs[ref.sha256] = doc
        return doc

    def _sidecar(
        self, manifest: mf.Manifest, prefix: str, result: BatchResult, listed: set[str], where: dict[str, Any]
    ) -> None:
        """The personal sidecar: in its batch, hashing to the signed value; with an identity, opened."""
        key = manifest.personal.key
        listed.add(key)
        if key != f"{prefix}/{mf.PERSONAL}":
            self._find("manifest_invalid", f"{where['key']} names sidecar {_short(key)} outside its batch", **where)
        kept = _batch_retain_until(manifest.recordings)
        if self._object_hash(key, manifest.personal.sha256, None, result.dock, result.batch, kept) is not None:
            self._personal(key, manifest.personal.sha256, result, manifest.recordings)

    def _signature(self, raw: bytes, mkey: str, skey: str, result: BatchResult, sealed: dt.datetime | None) -> None:
        """manifest.json.sig: an SSHSIG over the manifest bytes by a key allowed for the dock when sealed."""
        dock, batch = result.dock, result.batch
        try:
            signature = self.bucket.get_bytes(skey, max_size=MAX_SIGNATURE_BYTES).decode("ascii", "replace")
        except BodycamError as err:
            self._find("signature_missing", f"{skey}: {err}", dock=dock, batch=batch, key=skey)
            return
        allowed = keys_for(self.signers, dock, mf.NAMESPACE, at=_second(sealed))
        when = f" at {sealed.isoformat()}" if sealed else " now"
        embedded = _signature_key(signature)
        if embedded is None:
            self._find(
                "signature_invalid", f"{skey} is not a well-formed SSH signature", dock=dock, batch=batch, key=skey
            )
            return
        if not any(k.public_bytes_raw() == embedded.public_bytes_raw() for k in allowed):
            self._find(
                "signature_untrusted",
                f"{skey} was made by key {fingerprint(embedded)}, which allowed_signers does not allow for dock "
                f"{dock!r} (namespace {mf.NAMESPACE}){when}",
                dock=dock,
                batch=batch,
                key=skey,
            )
            return
        try:
            result.signer_key = verify(raw, signature, mf.NAMESPACE, allowed)
        except IntegrityError as err:
            if "does not match the data" not in str(err):
                self._find("signature_invalid", f"{skey}: {err}", dock=dock, batch=batch, key=skey)
                return
            self._find(
                "signature_mismatch",
                f"{mkey} does not match its signature by trusted key {fingerprint(embedded)}: "
                f"the manifest (or {skey}) was altered",
                dock=dock,
                batch=batch,
                key=mkey,
            )
            return
        result.signature_ok = True
        result.signer = self._share(fingerprint(result.signer_key))

    def _cosignature(self, raw: bytes, pkey: str, result: BatchResult, sealed: dt.datetime | None) -> None:
        """manifest.json.sig.prev: checked here against every allowed key; _chain decides whose it must be."""
        try:
            text = self.bucket.get_bytes(pkey, max_size=MAX_SIGNATURE_BYTES).decode("ascii", "replace")
            result.cosigner_key = verify(
                raw, text, mf.NAMESPACE, keys_for(self.signers, result.dock, mf.NAMESPACE, at=_second(sealed))
            )
            result.cosigner = self._share(fingerprint(result.cosigner_key))
        except BodycamError as err:
            result.cosign_error = f"{pkey} does not verify: {err}"

    def _custody(self, manifest: mf.Manifest, prefix: str, result: BatchResult, listed: set[str]) -> None:
        dock, batch, info = result.dock, result.batch, manifest.custody
        key = info.key
        listed.add(key)
        if key != f"{prefix}/{mf.CUSTODY}":
            self._find("manifest_invalid", f"{prefix}/{mf.MANIFEST} names custody segment {_short(key)} outside its batch",
                       dock=dock, batch=batch, key=f"{prefix}/{mf.MANIFEST}")  # fmt: skip
        where = {"dock": dock, "batch": batch, "key": key}
        size = self._sizes.get(key)
        if size is None:
            self._find("custody_missing", f"{key} is named by the manifest but not in the bucket", **where)
            return
        limits = self.limits
        if size > limits.custody_bytes:
            self._find(
                "custody_too_large",
                f"{key} is {size} bytes, over the {limits.custody_bytes} a custody segment may have within "
                f"--max-memory {limits.max_memory_mib} MiB: not checked",
                **where,
            )
            return
        collector = Collector(bound=len(manifest.recordings) + len(manifest.sidecars or ()))
        check = CustodyCheck(info.to_json(), limits.custody_entries, on_entry=collector.entry)
        try:
            for chunk in _chunks(self.bucket, key, size):
                check.feed(chunk)
                if check.too_many:
                    break
        except OtherSize as err:
            self._find("object_size", f"{err}, its listing says {size}", **where)
            return
        except BodycamError as err:
            self._find("custody_missing", f"{key}: {err}", **where)
            return
        problems = [] if check.too_many else check.finish()  # finish() may count a last unterminated line
        if check.too_many:
            self._find(
                "custody_too_large",
                f"{key} holds more than the {limits.custody_entries} entries a custody segment may have "
                f"within --max-memory {limits.max_memory_mib} MiB: not checked",
                **where,
            )
            return
        if check.sha256.hexdigest() != info.sha256:
            self._find("custody_altered", f"{key} does not hash to the value its manifest signs", **where)
        else:
            if info.root is not None and check.root.root().hex() != info.root:  # bytes as signed, root not theirs
                self._find(
                    "commitment_mismatch", f"{key}: its lines do not give the custody root the manifest signs", **where
                )
            # only a signed, unaltered segment's erasures account for missing objects, and only its handover
            # hands the dock over (the chain, and who may erase the dock's objects, follow it)
            if result.signature_ok:
                for entry in check.erasures:
                    self._note_erasure(entry, dock, batch)
            result.handover = check.handover
        result.custody_entries = check.lines
        for seq, problem, message in problems:
            self._find(problem, f"{key}: {message}", dock=dock, batch=batch, key=key, custody_seq=seq)
        self._disclosures(manifest, collector, result, key)

    def _disclosures(self, manifest: mf.Manifest, collector: Collector, result: BatchResult, key: str) -> None:
        """The segment's disclosure entries against the manifest, both ways (docs/formats.md §10.4)."""
        for seq, problem, message in collector.match(manifest):
            self._find(problem, f"{key}: {message}", dock=result.dock, batch=result.batch, key=key, custody_seq=seq)
        if self.on_disclosure is None:
            return
        plain = {r.key: r.plaintext_sha256 for r in manifest.recordings}
        for found in collector.found:
            self.on_disclosure(result, found, plain.get(found.key))

    def _personal(self, key: str, sha256: str, result: BatchResult, recordings: Sequence[mf.ManifestRecording]) -> None:
        """With an identity: the sidecar decrypts to a JSON object naming this batch, with an entry for
        each manifest recording whose ``officer_id`` is null exactly where ``officer_pseudonym`` is. The
        bytes decrypted are read again, so they are checked against the signed ``sha256`` once more: the
        bucket may serve the signed ones to the hash and a forgery to the decryption (:func:`_signed`).

        What it holds for the report (officer ids, exercise windows) is kept in ``result.personal``, while
        the retained budget lasts; the sidecar is bounded like a manifest.
        """
        if not self.identities:
            return
        dock, batch = result.dock, result.batch
        limit = self.limits.personal_bytes
        try:
            decrypt = Decryptor(self.identities)
            try:
                data = decrypt.update(_signed(self.bucket.get_bytes(key, max_size=limit), sha256, key))
                data += decrypt.finalize()
            except AgeNoMatchError:
                if not self._opens_all:
                    return  # the archive's sidecar, and these identities are a party's: not theirs to open
                raise
            doc = strictjson.parse_json(data, key, self.limits.manifest_values)
            if not isinstance(doc, dict) or doc.get("batch_id") != batch:
                named = doc.get("batch_id") if isinstance(doc, dict) else None
                raise ValueError(f"it names batch {_short(named)}")
            personal = Personal.of(doc)
            result.personal = personal  # for the report; charged to its batch's summary (``_cost``)
            mismatch = _officer_mismatch(personal, recordings)
            if mismatch:
                raise ValueError(mismatch)
        except _Unsigned as err:
            self._find("object_altered", str(err), dock=dock, batch=batch, key=key)
        except (BodycamError, ValueError) as err:
            self._find("personal_invalid", f"{key}: {err}", dock=dock, batch=batch, key=key)

    def _party_sidecars(self, manifest: mf.Manifest, prefix: str, result: BatchResult, listed: set[str]) -> None:
        """The manifest's ``sidecars`` (docs/formats.md §5.3): each a numbered object of the batch with
        the signed hash; with an identity that opens one, it must hold exactly the recordings its parties
        were encrypted to, and an officer id only where the manifest has a pseudonym."""
        if manifest.sidecars is None:
            return
        dock, batch = result.dock, result.batch
        mkey = f"{prefix}/{mf.MANIFEST}"
        names = {f"{prefix}/{mf.party_sidecar_name(n)}" for n in range(1, len(manifest.sidecars) + 1)}
        kept = _batch_retain_until(manifest.recordings)  # erased with the archive's sidecar (§13)
        for item in manifest.sidecars:
            if item.key not in names:
                self._find("manifest_invalid", f"{mkey} names sidecar {_short(item.key)}, not one of its batch's "
                           "numbered party sidecars", dock=dock, batch=batch, key=mkey)  # fmt: skip
                continue
            names.discard(item.key)
            listed.add(item.key)
            if self._object_hash(item.key, item.sha256, None, dock, batch, kept) is not None and self.identities:
                self._party_sidecar(item.key, item.sha256, item.parties, result, manifest.recordings)

    def _party_sidecar(
        self,
        key: str,
        sha256: str,
        parties: tuple[str, ...],
        result: BatchResult,
        recordings: Sequence[mf.ManifestRecording],
    ) -> None:
        dock, batch = result.dock, result.batch
        try:
            decrypt = Decryptor(self.identities)
            data = decrypt.update(_signed(self.bucket.get_bytes(key, max_size=self.limits.personal_bytes), sha256, key))
            data += decrypt.finalize()
        except AgeNoMatchError:
            return  # another party's view: not ours to open
        except _Unsigned as err:
            self._find("object_altered", str(err), dock=dock, batch=batch, key=key)
            return
        except BodycamError as err:
            self._find("personal_invalid", f"{key}: {err}", dock=dock, batch=batch, key=key)
            return
        try:
            sidecar = strictjson.parse_json(data, key, self.limits.manifest_values)
            if not isinstance(sidecar, dict) or sidecar.get("batch_id") != batch:
                raise ValueError("it does not name this batch")
            problem = _view_mismatch(sidecar, parties, recordings)
            if problem:
                raise ValueError(problem)
        except (BodycamError, ValueError) as err:
            self._find("personal_invalid", f"{key}: {err}", dock=dock, batch=batch, key=key)

    def _keep_row(self, result: BatchResult, rec: mf.ManifestRecording) -> None:
        """Keep what the HTML report shows of one recording, up to the report's ``MAX_REPORT_ROWS``."""
        if not self.keep_rows or self._report_rows >= MAX_REPORT_ROWS:
            return
        self._report_rows += 1
        if isinstance(result.rows, list):
            result.rows.append(RecordingRow.of(rec))
        else:
            result.rows = [RecordingRow.of(rec)]

    def _recording(
        self, rec: mf.ManifestRecording, dock: str, batch: str, read: Future[_Read] | None = None
    ) -> tuple[int, int]:
        key = rec.key
        self._judged += 1
        plain = self._object_hash(key, rec.ciphertext_sha256, rec.ciphertext_size, dock, batch, rec.retain_until, read)
        if plain is None:
            return 0, 0
        if not self.identities:
            return 1, 0
        if plain is NOT_OURS:  # intact ciphertext no identity given could open
            if self._opens_all:
                self._find("decrypt_failed", f"{key}: {NOT_OURS_TEXT}", dock=dock, batch=batch, key=key)
            self._not_ours += 1
            return 1, 0  # another party's share: checked as ciphertext only
        if plain != rec.plaintext_sha256 or plain != rec.camera_sha256:
            self._find(
                "plaintext_mismatch",
                f"{key} decrypts to SHA-256 {plain[:16]}..., the manifest says {rec.plaintext_sha256[:16]}...",
                dock=dock,
                batch=batch,
                key=key,
            )
            return 1, 0
        self._opened += 1
        return 1, 1

    def _identity_opened_nothing(self) -> None:
        """A party's key opens only its share, so what it cannot open is no finding by itself; but keys
        that open no recording at all are the wrong keys (a typo'd file, another force's), not a party's."""
        if self.identities and self._not_ours and self._not_ours == self._judged:
            self._find(
                "decrypt_failed",
                f"none of the --identity keys opens any of the {counted(self._not_ours, 'recording')} checked: "
                "they are no key of this bucket's archive or of any party",
            )

    def _object_hash(
        self,
        key: str,
        expected: str,
        size_signed: int | None,
        dock: str,
        batch: str,
        retain_until: str | None = None,
        read: Future[_Read] | None = None,
    ) -> str | None:
        """Stream one object (or take what ``read`` read of it ahead): check size and ciphertext SHA-256;
        with identities and a recording (whose ``size_signed`` is given), return the plaintext SHA-256
        (``""`` without identities) or None when a problem was recorded (or, for a missing object with a
        retain-until date, deferred until the erasure entries are all read)."""
        where = {"dock": dock, "batch": batch, "key": key}
        size = self._sizes.get(key)
        if size is None:
            if not self._defer_missing(key, retain_until, expected, where):
                self._find("object_missing", f"{key} is listed in the manifest but not in the bucket", **where)
            return None
        if size_signed is not None and size != size_signed:
            self._find("object_size", f"{key} is {size} bytes, the manifest says {size_signed}", **where)
            return None
        if size_signed is None and size > self.limits.personal_bytes:  # a sidecar: its hash alone is signed
            self._find(
                "object_size",
                f"{key} is {size} bytes, over the {self.limits.personal_bytes} a sidecar may have within "
                f"--max-memory {self.limits.max_memory_mib} MiB (it is read whole to be decrypted): not read",
                **where,
            )
            return None
        if not self.check_objects:
            return ""  # listed with the right size; its bytes are verify's to hash
        # read no further than the size the manifest signs (a sidecar's: the listing's) and one byte past
        # it: the bucket's answer to the read may claim, and send, far more than its listing said
        limit = size if size_signed is None else size_signed
        done = (
            read.result()
            if read is not None
            else _read_object(self.bucket, key, limit, self.identities, size_signed is not None)
        )
        if done.served is not None:
            said = "the listing says" if size_signed is None else "the manifest says"
            self._find("object_size", f"{key}: the bucket serves {done.served}, {said} {limit}", **where)
            return None
        if done.not_ours:
            if done.sha256 != expected:
                self._find("object_altered", f"{key} does not hash to its manifest value", **where)
                return None
            return NOT_OURS
        if isinstance(done.error, IntegrityError):
            if done.sha256 != expected:
                self._find("object_altered", f"{key} does not hash to its manifest value", **where)
            else:
                self._find("decrypt_failed", f"{key}: {done.error}", **where)
            return None
        if done.error is not None:
            self._find("object_unreadable", f"{key}: {done.error}", **where)
            return None
        if done.sha256 != expected:
            self._find("object_altered", f"{key} does not hash to its manifest value", **where)
            return None
        return done.plaintext_sha256 if done.plaintext_sha256 is not None else ""

    # -- retention: erased objects ---------------------------------------------------------------
    def _defer_missing(self, key: str, retain_until: str | None, sha256: str, where: dict[str, Any]) -> bool:
        """Keep a missing object that carries a retain-until date for matching with an erasure entry
        (a later batch's custody holds it); False when it cannot be (no date, or over the budget)."""
        if not isinstance(retain_until, str) or parse_or_none(retain_until) is None or key in self._gone:
            return False
        cost = 512 + len(key)
        if self._retained + cost > self.limits.retained_bytes:
            return False
        self._retained += cost
        self._gone[key] = {"dock": where["dock"], "batch": where["batch"], "retain_until": retain_until,
                           "sha256": sha256}  # fmt: skip
        return True

    def _note_erasure(self, entry: dict[str, Any], dock: str, batch: str) -> None:
        """Keep a signed erasure entry, the first per object and dock: which dock may account for the
        object is known only once every batch (and handover) is read (:meth:`_resolve_erasures`)."""
        key = entry.get("key")
        if not isinstance(key, str) or dock in self._erasures.get(key, {}):
            return
        cost = 512 + len(key)
        if self._retained + cost > self.limits.retained_bytes:
            return  # an erasure not kept leaves its object reported missing: never the other way round
        self._retained += cost
        self._erasures.setdefault(key, {})[dock] = {**entry, "dock": dock, "batch": batch}

    def _resolve_erasures(self, store: BatchStore[BatchResult]) -> None:
        """Each missing object with a retain-until date: erased (reported, not a finding) when an erasure
        entry signed by the dock that uploaded it (or the dock it handed over to) names it, its hash, and
        a time on or after that date; a finding otherwise. Every dock of a force is in allowed_signers, so
        another dock's signature vouches for nothing about this dock's footage (docs/formats.md §13)."""
        for key, gone in sorted(self._gone.items()):
            where = {"dock": gone["dock"], "batch": gone["batch"], "key": key}
            named = self._erasures.get(key, {})
            owner = next((d for d in sorted(named) if _erases_for(store, d, gone["dock"])), None)
            if owner is None:
                why = ""
                if named:
                    other = named[min(named)]
                    why = (
                        f"; the erasure entry {other.get('seq')} in {other['dock']}/{other['batch']} that names it "
                        f"is not {gone['dock']}'s (only the dock that uploaded an object, or the dock it handed "
                        "over to, records its erasure)"
                    )
                self._find("object_missing", f"{key} is listed in the manifest but not in the bucket{why}", **where)
                continue
            entry = named[owner]
            seq, in_batch = entry.get("seq"), f"{entry['dock']}/{entry['batch']}"
            agreements = tuple(entry.get("agreements") or ())
            erased_at, until = parse_or_none(entry.get("ts")), parse_or_none(gone["retain_until"])
            if entry.get("sha256") != gone["sha256"]:
                self._find(
                    "erasure_mismatch",
                    f"{key} is gone; erasure entry {seq} in {in_batch} names another object (SHA-256 "
                    f"{_short(entry.get('sha256'), 16)}...)",
                    **where,
                    custody_seq=seq,
                )
            elif erased_at is None or until is None or erased_at < until:
                self._find(
                    "erased_early",
                    f"{key} was erased at {_short(entry.get('ts'))} under {', '.join(agreements) or 'no agreement'}, "
                    f"before its retention ended at {gone['retain_until']} (custody entry {seq} in {in_batch})",
                    **where,
                    custody_seq=seq,
                )
            else:
                self.report.erasures.append(
                    Erasure(key, gone["dock"], gone["batch"], agreements, iso_utc(erased_at, "microseconds"), gone["retain_until"],
                            int(seq) if isinstance(seq, int) else 0, str(entry["batch"]))
                )  # fmt: skip
        self._gone.clear()

    # -- across batches -------------------------------------------------------------------------
    def _chain(self, dock: str, store: BatchStore[BatchResult], heads_seen: set[str]) -> None:
        """The dock's batches in sequence: no gap, no fork, each linking to the one before. Notes the dock
        in ``heads_seen`` when one of its manifests is the ``--expect-head`` given for it."""
        head = self.expected_heads.get(dock)
        # a dock renamed by 'dock handover' continues the chain of the batch that recorded the handover
        previous: BatchResult | None = store.handover_to(dock)
        logged: str | None = None  # the first signed 1.1 manifest: a dock sealing those publishes a log
        for r in store.ordered(dock):
            if head is not None and r.manifest_sha256 == head:
                heads_seen.add(dock)
            if logged is None and r.commitments and r.signature_ok:
                logged = r.batch
            if r.seq is None:
                continue
            mkey = f"{mf.batch_prefix(dock, r.batch)}/{mf.MANIFEST}"
            where: dict[str, Any] = {"dock": dock, "batch": r.batch, "key": mkey}
            if previous is not None and r.seq == previous.seq:
                self._find(
                    "batch_duplicate",
                    f"batches {previous.batch} and {r.batch} both claim sequence {r.seq} (a fork, or a replayed manifest)",
                    **where,
                )
                continue
            expected = (previous.seq or 0) + 1 if previous is not None else 1
            if r.seq != expected and not (previous is None and _opens_bucket(r, self.bucket.url)):
                self._missing(dock, previous, r, expected)
            elif r.seq != expected:
                pass  # the chain moved here from another bucket: its earlier batches are audited there
            elif previous is not None:
                self._link(previous, r, where)
            else:
                self._first(r, where)
            self._rotation(previous if r.seq == expected else None, r)
            if previous is not None and previous.sealed_at and r.sealed_at and r.sealed_at < previous.sealed_at:
                self._find(
                    "batch_time",
                    f"{r.batch} says it was sealed at {r.sealed_at.isoformat()}, before {previous.batch} "
                    f"({previous.sealed_at.isoformat()})",
                    **where,
                )
            previous = r
        if logged is not None and dock not in self._log_docks and not self._logs_over:
            self._find(
                "log_missing",
                f"dock {dock}: its batches from {logged} on are sealed with an entry in the dock's transparency "
                f"log each (manifest format 1.1), but nothing is under {dock}/{LOG_DIR}/: the log was deleted",
                dock=dock,
                batch=logged,
            )

    def _first(self, r: BatchResult, where: dict[str, Any]) -> None:
        """The dock's first batch links to no manifest, and its custody starts the chain."""
        if r.previous_manifest_sha256 is not None:
            self._find("batch_link", f"{r.batch} is batch 1 but links to a previous manifest", **where)
        first_seq = r.custody.first_seq if r.custody is not None else None
        if r.custody is None or r.custody.prev != GENESIS or first_seq != 1:
            self._find(
                "custody_gap",
                f"custody of {r.batch}, the dock's first batch, does not start at entry 1 from the genesis hash",
                **where,
                custody_seq=first_seq,
            )

    def _missing(self, dock: str, previous: BatchResult | None, r: BatchResult, expected: int) -> None:
        seqs = f"{expected}" if r.seq == expected + 1 else f"{expected}..{(r.seq or 0) - 1}"
        after = f"between {previous.batch} and {r.batch}" if previous is not None else f"before {r.batch}"
        first_lost: int | None = 1
        if previous is not None:
            first_lost = previous.custody.last_seq + 1 if previous.custody is not None else None
        last_lost = r.custody.first_seq - 1 if r.custody is not None else None
        known = first_lost is not None and last_lost is not None and last_lost >= first_lost
        lost = f"; custody entries {first_lost}..{last_lost} are gone with it" if known else ""
        link = str(r.previous_manifest_sha256)[:16]
        moved = (r.handover or {}).get("to_bucket") if previous is None else None
        if moved is not None:  # a copy of the bucket the dock moved to, read under another URL, comes here too
            lost += f" ({r.batch} moved the dock to {_short(moved)}: the chain starts there only when verify reads that URL)"
        self._find(
            "batch_missing",
            f"dock {dock}: batch {seqs} is missing {after}: {r.batch} (seq {r.seq}) links to manifest "
            f"{link}..., which is not in the bucket{lost}",
            dock=dock,
            batch=r.batch,
            key=f"{mf.batch_prefix(dock, r.batch)}/{mf.MANIFEST}",
            custody_seq=first_lost if known else None,
        )

    def _link(self, previous: BatchResult, r: BatchResult, where: dict[str, Any]) -> None:
        if r.previous_manifest_sha256 != previous.manifest_sha256:
            self._find(
                "batch_link",
                f"{r.batch} does not link to the manifest of {previous.batch} (that manifest was replaced or replayed)",
                **where,
            )
        pc, cc = previous.custody, r.custody
        if pc is None or cc is None:
            return
        if cc.prev != pc.head or cc.first_seq != pc.last_seq + 1:
            self._find(
                "custody_gap",
                f"custody of {r.batch} (from entry {cc.first_seq}) does not continue from {previous.batch} "
                f"(to entry {pc.last_seq}): a gap or a fork",
                **where,
                custody_seq=cc.first_seq,
            )

    def _rotation(self, previous: BatchResult | None, r: BatchResult) -> None:
        """A change of signing key must be proven by the previous key's co-signature (.sig.prev), and a
        co-signature belongs only where the key changed (docs/formats.md §7).

        ``previous`` is the batch right before ``r`` in the chain (None when ``r`` is the first, or the
        one before is missing). Where either batch's signer is unknown (its signature failed, already a
        finding) whether the key changed cannot be told: only a co-signature that does not verify is
        reported."""
        pkey = f"{mf.batch_prefix(r.dock, r.batch)}/{mf.PREV_SIGNATURE}"
        where = {"dock": r.dock, "batch": r.batch, "key": pkey}
        cosigned = r.cosigner_key is not None or r.cosign_error is not None  # a .sig.prev is present
        old, new = (previous.signer_key, r.signer_key) if previous is not None else (None, None)
        if previous is None and r.seq == 1 and cosigned:
            self._find(
                "cosignature_unexpected",
                f"{pkey} is present in the dock's first batch, where no earlier key can hand over",
                **where,
            )
            return
        if old is None or new is None or previous is None:
            if r.cosign_error is not None:
                self._find("signature_invalid", r.cosign_error, **where)
            return
        if old.public_bytes_raw() == new.public_bytes_raw():
            if cosigned:
                self._find(
                    "cosignature_unexpected",
                    f"{pkey} is present but {r.batch} is signed by the same key as {previous.batch} "
                    f"({r.signer}): a co-signature belongs only to the first batch of a new key",
                    **where,
                )
            return
        if r.cosign_error is not None:
            self._find("key_rotation_unproven", r.cosign_error, **where)
            return
        if r.cosigner_key is None or r.cosigner_key.public_bytes_raw() != old.public_bytes_raw():
            why = (
                f"{pkey} is missing"
                if r.cosigner_key is None
                else f"{pkey} was made by {r.cosigner}, not by the previous key"
            )
            self._find(
                "key_rotation_unproven",
                f"{r.batch} is signed by {r.signer} but {previous.batch} by {previous.signer}, and {why}: "
                "nothing in the bucket shows the old key handing over to the new one",
                **where,
            )


#: docks renamed one after another that an erasure entry's dock is followed back through to the owner
MAX_HANDOVERS = 64


def _erases_for(store: BatchStore[BatchResult], by: str, owner: str) -> bool:
    """Whether dock ``by`` may record the erasure of ``owner``'s objects: it is ``owner``, or ``owner``'s
    signed custody handed over to it, directly or through renamed docks (docs/formats.md §8)."""
    dock, seen = by, set[str]()
    while dock != owner:
        if dock in seen or len(seen) >= MAX_HANDOVERS:
            return False
        seen.add(dock)
        before = store.handover_to(dock)
        if before is None:
            return False
        dock = before.dock
    return True


def _fleet_document(parts: Sequence[str]) -> bool:
    """Whether ``_fleet/<dir>/<name>`` (a key split in three) is where docs/formats.md §12 puts the force's
    documents: an agreement or revocation under ``agreements/``, a register under ``register/``, or the
    ``.sig`` of one. verify does not check their signatures (``fleet show`` does, with the controller's keys)."""
    if len(parts) != 3:
        return False
    name = parts[2].removesuffix(SIG_SUFFIX)
    if parts[1] == fl.AGREEMENTS.rsplit("/", 1)[-1]:
        return fl.AGREEMENT_NAME.fullmatch(name) is not None
    return parts[1] == fl.REGISTER.rsplit("/", 1)[-1] and fl.REGISTER_NAME.fullmatch(name) is not None


def _signature_key(text: str) -> Ed25519PublicKey | None:
    """The public key embedded in an armored SSHSIG (the signer it claims), or None if malformed."""
    lines = [line.strip() for line in text.strip().splitlines()]
    if len(lines) < 3 or lines[0] != "-----BEGIN SSH SIGNATURE-----" or lines[-1] != "-----END SSH SIGNATURE-----":
        return None
    try:
        blob = base64.b64decode("".join(lines[1:-1]), validate=True)
        if blob[:6] != b"SSHSIG":
            return None
        (n,) = struct.unpack_from(">I", blob, 10)  # after magic and version: string publickey
        key_blob = blob[14 : 14 + n]
        (t,) = struct.unpack_from(">I", key_blob, 0)
        if key_blob[4 : 4 + t] != b"ssh-ed25519":
            return None
        (k,) = struct.unpack_from(">I", key_blob, 4 + t)
        raw = key_blob[8 + t : 8 + t + k]
        return Ed25519PublicKey.from_public_bytes(raw) if len(raw) == 32 else None
    except (ValueError, struct.error):
        return None


def _officer_mismatch(personal: Personal, recordings: Sequence[mf.ManifestRecording]) -> str | None:
    """Why the sidecar's recordings do not match the manifest's, or None: one entry per recording, and
    a null ``officer_id`` exactly where the manifest's ``officer_pseudonym`` is null (docs/formats.md §5.3)."""
    seen: set[tuple[str, str]] = set()
    for rec in recordings:
        ident = (rec.camera_serial[:64], str(rec.recording_id)[:32])
        seen.add(ident)
        if ident not in personal.officers:
            return f"it has no entry for recording {ident[0]} #{ident[1]} of the manifest"
        if (personal.officers[ident] is None) != (rec.officer_pseudonym is None):
            side = "null" if personal.officers[ident] is None else "set"
            signed = "null" if rec.officer_pseudonym is None else "set"
            return (
                f"recording {ident[0]} #{ident[1]}: officer_id is {side} but the manifest's officer_pseudonym "
                f"is {signed} (one is null exactly when the other is)"
            )
    extra = sorted(set(personal.officers) - seen)
    if extra:
        return f"it has an entry for recording {extra[0][0]} #{extra[0][1]}, which the manifest does not list"
    return None


def _view_mismatch(
    sidecar: strictjson.JSONObject, parties: tuple[str, ...], recordings: Sequence[mf.ManifestRecording]
) -> str | None:
    """Why a party sidecar does not hold exactly the recordings its parties were encrypted to (with an
    officer id only where the manifest has a pseudonym), or None."""
    if not parties:
        return "the manifest names no parties for it"
    theirs = {
        (r.camera_serial[:64], str(r.recording_id)[:32]): r
        for r in recordings
        if r.parties is not None and all(p in r.parties for p in parties)
    }
    entries = sidecar.get("recordings")
    seen = set()
    for item in entries if isinstance(entries, list) else []:
        if not isinstance(item, dict):
            return "a recording entry is not an object"
        ident = (str(item.get("camera_serial"))[:64], str(item.get("recording_id"))[:32])
        rec = theirs.get(ident)
        if rec is None:
            return f"it has an entry for recording {ident[0]} #{ident[1]}, which its parties were not encrypted to"
        seen.add(ident)
        if "officer_id" in item and (item["officer_id"] is None) != (rec.officer_pseudonym is None):
            return f"recording {ident[0]} #{ident[1]}: officer_id and the manifest's officer_pseudonym disagree"
    missing = sorted(set(theirs) - seen)
    if missing:
        return f"it has no entry for recording {missing[0][0]} #{missing[0][1]}, which its parties received"
    return None


def _for_log(ordered: Iterator[BatchResult]) -> Iterator[logcheck.Manifest]:
    """Each batch as the log check takes it, made when its merge reaches it; its commitments are then
    dropped (nothing after the log check reads them)."""
    for r in ordered:
        commitments = dict(zip(commitment.LOG_FIELDS, r.commitments, strict=True)) if r.commitments else {}
        yield logcheck.Manifest(r.batch, r.seq, r.manifest_sha256, commitments)
        r.commitments = ()


def _link(custody: mf.CustodyRef) -> ChainLink:
    return ChainLink(custody.first_seq, custody.last_seq, custody.prev, custody.head)


def _shared_links(before: BatchResult, r: BatchResult) -> tuple[str | None, ChainLink | None]:
    """``r``'s link to the manifest before and its custody link, using ``before``'s strings where equal."""
    previous = r.previous_manifest_sha256
    if previous is not None and previous == before.manifest_sha256:
        previous = before.manifest_sha256
    link = r.custody
    if link is not None and before.custody is not None and link.prev == before.custody.head:
        link = ChainLink(link.first_seq, link.last_seq, before.custody.head, link.head)
    return previous, link


def _cost(r: BatchResult) -> int:
    """What a summary holds in memory: ``BATCH_COST``, its report rows and its personal data."""
    personal = 0 if r.personal is None else 512 + 384 * (len(r.personal.officers) + len(r.personal.exercises))
    return BATCH_COST + ROW_COST * len(r.rows) + personal


def _opens_bucket(r: BatchResult, here: str) -> bool:
    """A batch that moved the dock to this bucket (a copy of it is here): the chain starts there. The
    same batch is published to the bucket the dock left, where it closes the chain: there it opens
    nothing (else every batch before it could be deleted unnoticed)."""
    return r.signature_ok and _same_bucket((r.handover or {}).get("to_bucket"), here)


def _same_bucket(named: str | None, here: str) -> bool:
    """Whether a bucket URL from custody names the bucket verify reads (file URLs by their real path)."""
    if named is None:
        return False
    try:  # a signed entry's text all the same: one urlsplit or realpath refuses (a NUL, '[') names no bucket
        a, b = urlsplit(named), urlsplit(here)
        if a.scheme == b.scheme == "file":
            return os.path.realpath(unquote(a.path)) == os.path.realpath(unquote(b.path))
    except ValueError:
        return False
    return (a.scheme, a.netloc, a.path.strip("/")) == (b.scheme, b.netloc, b.path.strip("/"))


def _short(value: Any, limit: int = 80) -> str:
    """``repr`` of a value from the bucket, cut short: messages must not carry megabytes of it."""
    text = repr(value) if not isinstance(value, str) or len(value) <= limit else repr(value[:limit]) + "..."
    return text if len(text) <= limit + 8 else text[:limit] + "..."


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _batch_retain_until(recordings: Sequence[mf.ManifestRecording]) -> str | None:
    """The personal sidecar's retain-until: the latest of its recordings' (None unless all have one)."""
    dates = [r.retain_until for r in recordings]
    if not dates or any(d is None for d in dates):
        return None
    return max((d for d in dates if d is not None), key=lambda d: parse_or_none(d) or _EPOCH)


def manifest_signer(
    raw: bytes, signature: str, dock: str, sealed: object, signers: Sequence[AllowedSigner]
) -> Ed25519PublicKey:
    """The key that signed a manifest, checked as ``verify`` checks it (docs/formats.md §6): a key
    allowed for ``dock`` in namespace ``bodycam-manifest`` at the manifest's ``sealed`` second.

    For another reader of the bucket (``receive``); raises IntegrityError naming what failed."""
    when = parse_or_none(sealed)
    if when is None:
        raise IntegrityError("the manifest has no valid 'sealed' time")
    return verify(raw, signature, mf.NAMESPACE, keys_for(signers, dock, mf.NAMESPACE, at=_second(when)))


def _second(sealed: dt.datetime | None) -> dt.datetime | None:
    """The sealing time as ``ssh-keygen -O verify-time`` sees it: whole seconds, the fraction dropped.

    allowed_signers validity has one-second resolution and ssh-keygen takes the verify time in whole
    seconds (``valid-before`` inclusive), so a batch sealed at 10:00:00.4 with a key valid before
    10:00:00 is accepted by ssh-keygen; verify must agree with the stock tool (docs/formats.md §6).
    """
    return None if sealed is None else sealed.replace(microsecond=0)


class _Unsigned(IntegrityError):
    """Bytes read again that no longer hash to the signed value."""


def _signed(data: bytes, sha256: str, key: str) -> bytes:
    """``data`` if it hashes to the signed ``sha256``; the bucket answers each read anew, so bytes read a
    second time (a sidecar, to decrypt it) prove nothing by the first read's hash. Raises _Unsigned."""
    if hashlib.sha256(data).hexdigest() != sha256:
        raise _Unsigned(
            f"{key}: the bucket served other bytes when it was read again to decrypt it; they do not hash to the "
            "manifest's value (the first read did)"
        )
    return data


class OtherSize(StorageError):
    """The bucket serves an object of another size than it must have; ``served`` says what it served."""

    def __init__(self, key: str, served: str) -> None:
        super().__init__(f"{key}: the bucket serves {served}")
        self.served = served


@overload
def _chunks(bucket: Bucket, key: str, size: int) -> Iterator[bytes]: ...
@overload
def _chunks(bucket: Bucket, key: str, size: int, buffer: memoryview | None) -> Iterator[bytes | memoryview]: ...
def _chunks(bucket: Bucket, key: str, size: int, buffer: memoryview | None = None) -> Iterator[bytes | memoryview]:
    """The object's bytes, which must be ``size`` (the manifest signs a recording's; a custody segment's or
    sidecar's is the listing's, checked against its limit): an answer announcing another length is not
    read at all, and the read stops one byte past ``size`` whatever the answer sends, so a hostile bucket
    cannot make verify download and hash more than that. Raises OtherSize, or what reading raises.

    With ``buffer`` (at least CHUNK bytes), each chunk is a view of it, read in place and valid only until
    the next: a fresh 1 MiB of bytes per chunk cost a page fault per 4 KiB touched (twice: the read's
    buffer, then its copy), about a quarter of verify's CPU on 1 MiB objects."""
    with bucket.open_read(key) as reader:
        if reader.size != size:
            raise OtherSize(key, f"a Content-Length of {reader.size} bytes")
        got = 0
        while chunk := (
            reader.read(min(CHUNK, size + 1 - got))
            if buffer is None
            else buffer[: reader.readinto(buffer[: min(CHUNK, size + 1 - got)])]
        ):
            got += len(chunk)
            if got > size:
                raise OtherSize(key, f"more than {size} bytes")
            yield chunk
        if got < size:
            raise OtherSize(key, f"{got} bytes")


_BUFFERS = threading.local()


def _thread_buffer() -> memoryview:
    """This thread's CHUNK-byte read buffer (one per reader of the pool, kept for the run)."""
    buffer: memoryview | None = getattr(_BUFFERS, "chunk", None)
    if buffer is None:
        buffer = _BUFFERS.chunk = memoryview(bytearray(CHUNK))
    return buffer


@dataclass(frozen=True, slots=True)
class _Read:
    """One object as read: its SHA-256 (as far as it was read, when ``error`` stopped it), its plaintext's
    SHA-256 when decrypted, and the error that stopped it (IntegrityError: decryption refused a byte)."""

    sha256: str
    plaintext_sha256: str | None = None
    error: BodycamError | None = None
    #: no identity matched a stanza of its header: read to the end as ciphertext only (another party's)
    not_ours: bool = False
    #: what the bucket served when that was not the size expected (``"12 bytes"``, ``"more than 10 bytes"``,
    #: ``"a Content-Length of 20 bytes"``): the read stopped there
    served: str | None = None


#: what ``_object_hash`` returns for an intact object the identities cannot open (compared by identity)
NOT_OURS = "not-ours"
NOT_OURS_TEXT = (
    "none of the identities opens it, though they hold a recipient every object of the batch is encrypted to"
)


def _recipients_of(identities: Sequence[str]) -> frozenset[str]:
    """The ``age1``/``age1pq1`` recipients of the identities (an identity that does not parse has none here;
    the decryptor reports it)."""
    found = set()
    for identity in identities:
        try:
            found.add(recipient_of(identity))
        except BodycamError:
            continue
    return frozenset(found)


def _read_object(bucket: Bucket, key: str, size: int, identities: list[str], decrypt: bool = True) -> _Read:
    """Stream one object of ``size`` bytes once (no further: :func:`_chunks`), hashing it (and, with
    ``identities``, decrypting and hashing the plaintext); no shared state, so the pool runs several.
    Holds one CHUNK at a time."""
    digest = hashlib.sha256()
    decryptor = Decryptor(identities) if (identities and decrypt) else None
    plain = hashlib.sha256()
    not_ours = False
    # ciphertext only: each chunk is hashed and dropped, so it is read into this thread's one buffer (a
    # decryptor may keep part of a chunk, so with one the chunks stay bytes of their own)
    buffer = _thread_buffer() if decryptor is None else None
    try:
        for chunk in _chunks(bucket, key, size, buffer):
            digest.update(chunk)
            if decryptor is not None:
                try:
                    plain.update(decryptor.update(chunk))
                except AgeNoMatchError:  # not encrypted to these identities: still hash every byte
                    decryptor, not_ours = None, True
        if decryptor is not None:
            plain.update(decryptor.finalize())
    except OtherSize as err:
        return _Read(digest.hexdigest(), served=err.served)
    except BodycamError as err:
        return _Read(digest.hexdigest(), None, err)
    if not_ours:
        return _Read(digest.hexdigest(), not_ours=True)
    return _Read(digest.hexdigest(), plain.hexdigest() if decryptor is not None else None)


#: ``on_disclosure(batch, entry, plaintext SHA-256 the manifest gives its object)``
DisclosureSink = Callable[["BatchResult", Disclosure, "str | None"], None]

#: ``on_progress(bytes_read, objects_listed)``: how far a verify run has got
VerifyProgressFn = Callable[[int, int], None]


class _CountedBucket(BucketWrapper):
    """The bucket as verify reads it, counting objects listed and bytes read for ``on_progress``;
    everything else passes through (verify opens its bucket read-only)."""

    def __init__(self, inner: Bucket, on_progress: VerifyProgressFn) -> None:
        super().__init__(inner)
        self._on_progress = on_progress
        self._bytes = self._objects = 0
        self._lock = threading.Lock()

    def _note(self, nbytes: int = 0, objects: int = 0) -> None:
        with self._lock:
            self._bytes += nbytes
            self._objects += objects
            done, seen = self._bytes, self._objects
        self._on_progress(done, seen)

    def iter_objects(self, prefix: str = "", *, page_size: int = 1000) -> Iterator[ObjectInfo]:
        for info in self.inner.iter_objects(prefix, page_size=page_size):
            self._note(objects=1)
            yield info

    def get_bytes(self, key: str, max_size: int) -> bytes:
        data = self.inner.get_bytes(key, max_size)
        self._note(len(data))
        return data

    def open_read(self, key: str, *, version_id: str | None = None) -> ObjectReader:
        """The inner reader, read through one that reports every byte it hands out."""
        inner = self.inner.open_read(key, version_id=version_id)

        def read(size: int) -> bytes:
            data = inner.read(size)
            self._note(len(data))
            return data

        def readinto(buffer: memoryview) -> int:
            n = inner.readinto(buffer)
            self._note(n)
            return n

        return ObjectReader(
            inner.info, read, inner.close, lambda err: StorageError(f"{self.url}: {key!r}: {err}"), readinto=readinto
        )


def run_verify(
    bucket_url: str,
    endpoint_url: str | None,
    allowed_signers: Path | str,
    identity: Path | str | None = None,
    expect_heads: Sequence[str] = (),
    max_memory_mib: int = DEFAULT_MAX_MEMORY_MIB,
    on_progress: VerifyProgressFn | None = None,
    policy_path: Path | str | None = None,
    configure: Callable[[Verifier], None] | None = None,
    report_rows: bool = True,
    work_dir: Path | None = None,
) -> VerifyReport:
    """Open the bucket and the trust anchors named on the command line, and verify everything.

    ``configure`` may set up the :class:`Verifier` before it runs (``bodycam-sync disclosures`` collects
    the disclosure entries and skips hashing footage). ``report_rows``: keep what the HTML report lists of
    each recording (``verify --report``); without, each batch keeps less and more of them fit in memory
    before they spill to a temporary database under ``work_dir`` (None: ``$TMPDIR``). Close the report
    (``with``) once it is written.

    ``bucket_url`` is ``s3://...``, ``file:///DIR`` or a plain directory path; a file bucket is opened
    read-only (verify never creates, tidies or writes anything in it, so a read-only copy verifies).
    Raises ConfigError (exit 2) for an unreadable or malformed allowed_signers or identity file, a
    malformed bucket URL, a file bucket whose directory does not exist, or a ``max_memory_mib`` below
    the minimum.
    """
    started = dt.datetime.now(dt.UTC)
    signers_bytes, signers = inputs.allowed_signers(allowed_signers)
    identities = inputs.identities(identity) if identity is not None else []
    limits = limits_for(max_memory_mib)
    policy = witnesspolicy.load(Path(policy_path)) if policy_path is not None else None
    bucket = inputs.open_read_only(bucket_url, endpoint_url, max_dir_entries=limits.listing_entries)
    heads: dict[str, str] = {}
    for item in expect_heads:
        dock, sep, digest = item.partition("=")
        if not sep or len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
            raise ConfigError(f"--expect-head {item!r} must be DOCK=SHA256 (the manifest's sha256sum, 64 hex digits)")
        heads[dock] = digest
    if on_progress is not None:
        bucket = _CountedBucket(bucket, on_progress)
    verifier = Verifier(
        bucket, signers, identities, heads, limits, policy, work_dir=None if work_dir is None else Path(work_dir)
    )
    verifier.keep_rows = report_rows
    if configure is not None:
        configure(verifier)
    report = verifier.run()
    report.audit = AuditContext(
        bucket_url,
        str(allowed_signers),
        hashlib.sha256(signers_bytes).hexdigest(),
        tuple(signers),
        bool(identities),
        iso_utc(started, "microseconds"),
        iso_utc(dt.datetime.now(dt.UTC), "microseconds"),
        __version__,
    )
    return report
