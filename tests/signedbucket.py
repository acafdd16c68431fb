"""Small signed buckets written by hand, for ``verify`` tests about what one batch's custody may claim
about another's objects (erasures), and what a bucket serves against what a manifest signs.

Unlike ``tests/hostile.py`` (one dock, built to exhaust the verifier) these hold several docks, each
with its own Ed25519 key that the ``allowed_signers`` file trusts for its dock id alone, batches with
recordings (ciphertext objects of a few bytes, written or left out) and custody entries of the test's
choosing, each chained and signed as a dock would (docs/formats.md §3, §4, §6).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bodycam.agent.formats.custody import GENESIS, canonical, line_hash
from bodycam.agent.formats.sshsig import allowed_signers_line, public_key_line, sign

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def iso(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Recording:
    """One recording a batch lists: its ciphertext (``stored``: written to the bucket) and retain-until."""

    serial: str
    number: int
    ciphertext: bytes = b"ciphertext of a recording"
    retain_until: str | None = None
    stored: bool = True
    exercise_id: str | None = None
    #: whom it was disclosed to and under which agreements (``{"id", "version", "sha256"}``), as a dock
    #: under data-sharing agreements signs them (docs/formats.md §3); None: a dock without agreements
    parties: tuple[str, ...] | None = None
    agreements: tuple[dict[str, Any], ...] = ()

    def sha256(self) -> str:
        return hashlib.sha256(self.ciphertext).hexdigest()


@dataclass
class Dock:
    """A dock's chain so far: its key, and what the next batch links to."""

    name: str
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    seq: int = 0
    previous: str | None = None
    head: str = GENESIS
    last: int = 0

    def continue_from(self, other: Dock) -> None:
        """This dock continues ``other``'s chain (docs/formats.md §8, dock handover): same key, next seq."""
        self.key, self.seq, self.previous, self.head, self.last = (
            other.key, other.seq, other.previous, other.head, other.last,
        )  # fmt: skip


class SignedBucket:
    """A file bucket at ``root`` and the ``allowed_signers`` beside it, batch by batch."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.allowed_signers = root.parent / f"{root.name}.allowed_signers"
        self._lines: list[str] = []

    @property
    def url(self) -> str:
        return self.root.as_uri()

    def trust(self, dock: Dock) -> None:
        self._lines.append(allowed_signers_line(dock.name, dock.key.public_key()))
        self.allowed_signers.write_text("\n".join(self._lines) + "\n")

    @staticmethod
    def key_of(dock: Dock, batch: str, rec: Recording) -> str:
        return f"{dock.name}/{batch}/recordings/{rec.serial}/{rec.number}.age"

    def seal(self, dock: Dock, entries: Sequence[dict[str, Any]] = (), recordings: Sequence[Recording] = ()) -> str:
        """Write the dock's next batch: each entry gets ``seq``, ``prev``, ``ts`` and ``dock``; returns its id."""
        dock.seq += 1
        batch = f"20260101T000000Z-{dock.seq:06d}"
        prefix = f"{dock.name}/{batch}"
        where = self.root / prefix
        where.mkdir(parents=True)
        sealed = START + dt.timedelta(minutes=dock.seq)
        lines = []
        first, prev = dock.last + 1, dock.head
        for n, extra in enumerate([{"event": "docked"}, *entries]):
            entry = {"ts": iso(sealed - dt.timedelta(seconds=30 - n)), "dock": dock.name, **extra}
            line = canonical({**entry, "seq": first + n, "prev": prev})
            prev = line_hash(line)
            lines.append(line)
        custody = b"".join(line + b"\n" for line in lines)
        (where / "custody.jsonl").write_bytes(custody)
        personal = b"a sidecar no identity here opens"
        (where / "personal.json.age").write_bytes(personal)
        listed = []
        for rec in recordings:
            key = self.key_of(dock, batch, rec)
            if rec.stored:
                (self.root / key).parent.mkdir(parents=True, exist_ok=True)
                (self.root / key).write_bytes(rec.ciphertext)
            item: dict[str, Any] = {
                "camera_serial": rec.serial, "camera_model": "BWC-TEST", "recording_id": rec.number,
                "start_camera": iso(START), "end_camera": iso(START + dt.timedelta(seconds=10)),
                "clock_offset_s": 0.0, "start": iso(START), "end": iso(START + dt.timedelta(seconds=10)),
                "exercise_id": None, "size": 10, "plaintext_sha256": "ab" * 32, "camera_sha256": "ab" * 32,
                "ciphertext_sha256": rec.sha256(), "ciphertext_size": len(rec.ciphertext), "key": key,
                "version_id": None, "officer_pseudonym": None,
            }  # fmt: skip
            if rec.retain_until is not None:
                item["retain_until"] = rec.retain_until
            item["exercise_id"] = rec.exercise_id
            if rec.parties is not None:
                item["parties"], item["agreements"] = list(rec.parties), list(rec.agreements)
            listed.append(item)
        doc: dict[str, Any] = {
            "format": "bodycam-manifest/1", "dock_id": dock.name, "agent_version": "test", "batch_id": batch,
            "batch_seq": dock.seq, "opened": iso(START), "sealed": iso(sealed),
            "previous_manifest_sha256": dock.previous, "signing_key": public_key_line(dock.key.public_key()),
            "custody": {"key": f"{prefix}/custody.jsonl", "first_seq": first, "last_seq": first + len(lines) - 1,
                        "prev": dock.head, "head": prev, "sha256": hashlib.sha256(custody).hexdigest()},
            "personal": {"key": f"{prefix}/personal.json.age", "sha256": hashlib.sha256(personal).hexdigest()},
            "recipients": [], "recordings": listed,
        }  # fmt: skip
        manifest = canonical(doc)
        (where / "manifest.json").write_bytes(manifest)
        (where / "manifest.json.sig").write_text(sign(manifest, dock.key, "bodycam-manifest"))
        dock.previous, dock.head, dock.last = hashlib.sha256(manifest).hexdigest(), prev, first + len(lines) - 1
        return batch


def erasure(key: str, sha256: str, ts: str, retain_until: str) -> dict[str, Any]:
    """A custody ``bucket_erased`` entry's fields (docs/formats.md §13), as ``retention apply`` writes them."""
    return {
        "event": "bucket_erased", "operation": "erasure", "object": "recording", "key": key,
        "batch": key.split("/")[1], "sha256": sha256, "retain_until": retain_until, "agreements": ["DSA-1"],
        "version_id": None, "camera": None, "recording": None, "ts": ts,
    }  # fmt: skip
