"""``bodycam-sync verify``: prove from the bucket alone what was pulled, and that nothing was altered,
added or removed (docs/auditing.md). Trusts only the allowed_signers file and, optionally, an age
identity; never the dock.

Checks, per dock and batch: the manifest's SSH signature; that batches form one unbroken chain
(sequence numbers, previous-manifest hashes, custody segments that link end to start); the custody
segment's bytes, chain and head; every listed object's size and ciphertext SHA-256 (streamed);
with an identity, each plaintext SHA-256; and any object under the prefix that no manifest lists.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from bodycam.drivers.errors import BodycamError, IntegrityError

from . import manifest as mf
from .agecrypt import Decryptor
from .custody import canonical, check_segment
from .sshsig import AllowedSigner, keys_for, verify

LOG = logging.getLogger(__name__)
MAX_SIGNATURE_BYTES = 16 * 1024
MAX_CUSTODY_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Finding:
    problem: str
    message: str
    dock: str | None = None
    batch: str | None = None
    key: str | None = None
    custody_seq: int | None = None


@dataclass
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
    manifest: dict[str, Any] | None = field(default=None, repr=False)


@dataclass
class VerifyReport:
    batches: list[BatchResult] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    objects_seen: int = 0

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_json(self) -> dict[str, Any]:
        return {
            "verified": self.ok,
            "objects_seen": self.objects_seen,
            "batches": [{k: v for k, v in asdict(b).items() if k != "manifest"} for b in self.batches],
            "findings": [asdict(f) for f in self.findings],
        }


class Verifier:
    def __init__(self, bucket: Any, signers: list[AllowedSigner], identities: list[str] | None = None) -> None:
        self.bucket = bucket
        self.signers = signers
        self.identities = identities or []
        self.report = VerifyReport()

    def _find(self, problem: str, message: str, **where: Any) -> None:
        finding = Finding(problem, message, **where)
        self.report.findings.append(finding)
        LOG.info("finding: %s", finding)

    def run(self) -> VerifyReport:
        keys = [info.key for info in self.bucket.iter_objects("")]
        self.report.objects_seen = len(keys)
        listed: set[str] = set()
        docks: dict[str, list[BatchResult]] = {}
        for key in sorted(keys):
            parts = key.split("/")
            if len(parts) == 3 and parts[2] == mf.MANIFEST:
                result = self._batch(parts[0], parts[1], listed)
                docks.setdefault(parts[0], []).append(result)
        for dock, results in sorted(docks.items()):
            self._chain(dock, results)
            self.report.batches.extend(sorted(results, key=lambda r: (r.seq or 0, r.batch)))
        for key in sorted(set(keys) - listed):
            self._find("unlisted_object", f"{key} is in the bucket but no manifest lists it", key=key)
        return self.report

    # -- one batch ----------------------------------------------------------------------------
    def _batch(self, dock: str, batch: str, listed: set[str]) -> BatchResult:
        result = BatchResult(dock, batch)
        prefix = mf.batch_prefix(dock, batch)
        before = len(self.report.findings)
        mkey = f"{prefix}/{mf.MANIFEST}"
        listed.update({mkey, f"{prefix}/{mf.SIGNATURE}"})
        try:
            raw = self.bucket.get_bytes(mkey, max_size=mf.MAX_MANIFEST_BYTES)
        except BodycamError as err:
            self._find("manifest_unreadable", f"{mkey}: {err}", dock=dock, batch=batch, key=mkey)
            return result
        where = {"dock": dock, "batch": batch, "key": mkey}
        self._signature(raw, dock, batch, result)
        try:
            doc = json.loads(raw)
            if not isinstance(doc, dict):
                raise ValueError("not an object")
        except ValueError:
            self._find("manifest_invalid", f"{mkey} is not a JSON object", **where)
            return result
        result.manifest = doc
        if canonical(doc) != raw:
            self._find("manifest_not_canonical", f"{mkey} is not canonical JSON (edited?)", **where)
        if doc.get("format") != mf.FORMAT:
            self._find("manifest_format", f"{mkey} has format {doc.get('format')!r}, expected {mf.FORMAT}", **where)
        if doc.get("dock_id") != dock or doc.get("batch_id") != batch:
            self._find(
                "manifest_misplaced",
                f"{mkey} describes dock {doc.get('dock_id')!r} batch {doc.get('batch_id')!r}: "
                "a manifest copied or replayed from elsewhere",
                **where,
            )
        seq = doc.get("batch_seq")
        result.seq = seq if isinstance(seq, int) else None
        self._custody(doc, prefix, result, listed)
        personal = doc.get("personal") or {}
        if isinstance(personal, dict) and isinstance(personal.get("key"), str):
            listed.add(personal["key"])
            self._object_hash(personal["key"], personal.get("sha256"), None, dock, batch)
        recordings = doc.get("recordings")
        if not isinstance(recordings, list):
            self._find("manifest_invalid", f"{mkey} has no recordings list", **where)
            recordings = []
        result.recordings = len(recordings)
        for rec in recordings:
            key = rec.get("key") if isinstance(rec, dict) else None
            if not isinstance(key, str) or not key.startswith(f"{prefix}/recordings/"):
                self._find("manifest_invalid", f"{mkey} lists a recording outside its batch: {key!r}", **where)
                continue
            listed.add(key)
            ok = self._recording(rec, key, dock, batch)
            result.objects_ok += ok[0]
            result.plaintext_ok += ok[1]
        result.problems = len(self.report.findings) - before
        return result

    def _signature(self, raw: bytes, dock: str, batch: str, result: BatchResult) -> None:
        skey = f"{mf.batch_prefix(dock, batch)}/{mf.SIGNATURE}"
        try:
            signature = self.bucket.get_bytes(skey, max_size=MAX_SIGNATURE_BYTES).decode("ascii", "replace")
        except BodycamError as err:
            self._find("signature_missing", f"{skey}: {err}", dock=dock, batch=batch, key=skey)
            return
        allowed = keys_for(self.signers, dock, mf.NAMESPACE)
        if not allowed:
            self._find(
                "signer_unknown",
                f"allowed_signers has no key for dock {dock!r} in namespace {mf.NAMESPACE}",
                dock=dock,
                batch=batch,
                key=skey,
            )
            return
        try:
            verify(raw, signature, mf.NAMESPACE, allowed)
        except IntegrityError as err:
            self._find("signature_invalid", f"{skey}: {err}", dock=dock, batch=batch, key=skey)
            return
        result.signature_ok = True

    def _custody(self, doc: dict[str, Any], prefix: str, result: BatchResult, listed: set[str]) -> None:
        info = doc.get("custody")
        dock, batch = result.dock, result.batch
        if not isinstance(info, dict) or not isinstance(info.get("key"), str):
            self._find("manifest_invalid", f"{prefix}/{mf.MANIFEST} names no custody segment", dock=dock, batch=batch)
            return
        key = info["key"]
        listed.add(key)
        try:
            data = self.bucket.get_bytes(key, max_size=MAX_CUSTODY_BYTES)
        except BodycamError as err:
            self._find("custody_missing", f"{key}: {err}", dock=dock, batch=batch, key=key)
            return
        if hashlib.sha256(data).hexdigest() != info.get("sha256"):
            self._find(
                "custody_altered",
                f"{key} does not hash to the value its manifest signs",
                dock=dock,
                batch=batch,
                key=key,
            )
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        result.custody_entries = len(lines)
        first_seq = info.get("first_seq")
        first = first_seq if isinstance(first_seq, int) else 1
        head, last, problems = check_segment(lines, str(info.get("prev")), first)
        for p in problems:
            self._find(
                "custody_chain", f"{key} line {p.line}: {p.message}", dock=dock, batch=batch, key=key, custody_seq=p.seq
            )
        if head != info.get("head") or last != info.get("last_seq"):
            self._find(
                "custody_head",
                f"{key} ends at seq {last} hash {head[:16]}..., the manifest signs seq {info.get('last_seq')} "
                f"hash {str(info.get('head'))[:16]}...",
                dock=dock,
                batch=batch,
                key=key,
                custody_seq=last,
            )

    def _recording(self, rec: dict[str, Any], key: str, dock: str, batch: str) -> tuple[int, int]:
        plain = self._object_hash(key, rec.get("ciphertext_sha256"), rec, dock, batch)
        if plain is None:
            return 0, 0
        if not self.identities:
            return 1, 0
        if plain != rec.get("plaintext_sha256") or plain != rec.get("camera_sha256"):
            self._find(
                "plaintext_mismatch",
                f"{key} decrypts to SHA-256 {plain[:16]}..., the manifest says {str(rec.get('plaintext_sha256'))[:16]}...",
                dock=dock,
                batch=batch,
                key=key,
            )
            return 1, 0
        return 1, 1

    def _object_hash(self, key: str, expected: Any, rec: dict[str, Any] | None, dock: str, batch: str) -> str | None:
        """Stream one object: check size and ciphertext SHA-256; with identities (and a recording), return
        the plaintext SHA-256 (``""`` without identities) or None when a problem was recorded."""
        info = self.bucket.head(key)
        if info is None:
            self._find(
                "object_missing",
                f"{key} is listed in the manifest but not in the bucket",
                dock=dock,
                batch=batch,
                key=key,
            )
            return None
        if rec is not None and info.size != rec.get("ciphertext_size"):
            self._find(
                "object_size",
                f"{key} is {info.size} bytes, the manifest says {rec.get('ciphertext_size')}",
                dock=dock,
                batch=batch,
                key=key,
            )
            return None
        digest = hashlib.sha256()
        decrypt = Decryptor(self.identities) if (self.identities and rec is not None) else None
        plain = hashlib.sha256()
        try:
            for chunk in _chunks(self.bucket, key):
                digest.update(chunk)
                if decrypt is not None:
                    plain.update(decrypt.update(chunk))
            if decrypt is not None:
                plain.update(decrypt.finalize())
        except IntegrityError as err:
            if digest.hexdigest() != expected:
                self._find(
                    "object_altered", f"{key} does not hash to its manifest value", dock=dock, batch=batch, key=key
                )
            else:
                self._find("decrypt_failed", f"{key}: {err}", dock=dock, batch=batch, key=key)
            return None
        if digest.hexdigest() != expected:
            self._find("object_altered", f"{key} does not hash to its manifest value", dock=dock, batch=batch, key=key)
            return None
        return plain.hexdigest() if decrypt is not None else ""

    # -- across batches -------------------------------------------------------------------------
    def _chain(self, dock: str, results: list[BatchResult]) -> None:
        ordered = sorted((r for r in results if r.seq is not None), key=lambda r: r.seq or 0)
        seen: dict[int, BatchResult] = {}
        for r in ordered:
            if r.seq in seen:
                self._find(
                    "batch_duplicate",
                    f"batches {seen[r.seq].batch} and {r.batch} both claim sequence {r.seq} (fork or replay)",
                    dock=dock,
                    batch=r.batch,
                )
            seen[r.seq or 0] = r
        previous: BatchResult | None = None
        for r in ordered:
            doc = r.manifest or {}
            expected_seq = (previous.seq or 0) + 1 if previous else 1
            if r.seq != expected_seq and (previous is None or r.seq != previous.seq):
                self._find(
                    "batch_missing",
                    f"dock {dock}: batch sequence jumps to {r.seq} at {r.batch}, expected {expected_seq}: "
                    "a whole batch is missing",
                    dock=dock,
                    batch=r.batch,
                )
            if previous is not None and previous.manifest is not None:
                prev_hash = hashlib.sha256(canonical(previous.manifest)).hexdigest()
                if doc.get("previous_manifest_sha256") != prev_hash:
                    self._find(
                        "batch_link",
                        f"{r.batch} does not link to the manifest of {previous.batch} (missing, replaced or replayed)",
                        dock=dock,
                        batch=r.batch,
                    )
                pc, cc = previous.manifest.get("custody") or {}, doc.get("custody") or {}
                if cc.get("prev") != pc.get("head") or cc.get("first_seq") != (pc.get("last_seq") or 0) + 1:
                    self._find(
                        "custody_gap",
                        f"custody of {r.batch} does not continue from {previous.batch} (gap or fork)",
                        dock=dock,
                        batch=r.batch,
                        custody_seq=cc.get("first_seq"),
                    )
            elif r.seq == 1 and doc.get("previous_manifest_sha256") is not None:
                self._find(
                    "batch_missing",
                    f"{r.batch} links to a previous manifest that is not in the bucket",
                    dock=dock,
                    batch=r.batch,
                )
            previous = r


def _chunks(bucket: Any, key: str) -> Iterator[bytes]:
    reader = bucket.open_read(key)
    try:
        while True:
            chunk = reader.read(1024 * 1024)
            if not chunk:
                return
            yield chunk
    finally:
        close = getattr(reader, "close", None)
        if callable(close):
            close()


def run_verify(
    bucket_url: str, endpoint_url: str | None, allowed_signers: Any, identity: Any | None = None
) -> VerifyReport:
    """Open the bucket and the trust anchors named on the command line, and verify everything."""
    from pathlib import Path

    from bodycam.drivers.errors import ConfigError

    from .agecrypt import read_identities
    from .bucket import open_bucket
    from .sshsig import parse_allowed_signers

    try:
        signers = parse_allowed_signers(Path(allowed_signers).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read --allowed-signers {allowed_signers}: {err}") from err
    identities: list[str] = []
    if identity is not None:
        try:
            identities = read_identities(Path(identity).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"cannot read --identity {identity}: {err}") from err
    bucket = open_bucket(bucket_url, endpoint_url)
    return Verifier(bucket, signers, identities).run()
