"""The custody log: an append-only chain of JSON lines, each carrying the SHA-256 of the line before.

Entries live in the journal and are written in the same transaction as the state change they
record, so the log and the state can never disagree after a crash. Each batch publishes the
contiguous segment of the chain since the previous batch, and its signed manifest names the
segment's head: a gap, fork, reordering or edit anywhere is detectable (docs/formats.md).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

GENESIS = "0" * 64
MAX_DETAIL = 500  # characters of an error's clear text kept for the sidecar
EVENTS = frozenset(
    {
        "docked",
        "identified",
        "authenticated",
        "clock_set",
        "clock_invalid",
        "clock_epoch_reset",
        "listed",
        "skipped_out_of_scope",
        "pull_started",
        "pull_deferred",
        "pulled",
        "uploaded",
        "verified",
        "erased",
        "error",
        "undocked",
        "batch_sealed",
        "key_rotated",
        "firmware_installed",
        "enrolled",
        "paired",
        "revocations_sent",
        "dock_proven",
        "camera_unprotected",
        "dock_handover",
        "exercise_amended",
        "exercise_removed",
        "disclosed",
        "bucket_erased",  # retention apply: an object past its agreements' retention (formats/retention.py)
        "fleet_loaded",  # a fleet document from the bucket used for the first time (pipeline/fleet.py)
        "allocated",  # an operator allocated a camera to an officer (pipeline/enrolment.py)
        "consulted",  # an operator was shown officer ids or exercise sites on the dock
        "agreement_clock_reset",  # an operator lowered the agreement clock mark (pipeline/agreementclock.py)
    }
)

#: Entry versions (docs/formats.md §4): entries without ``v`` are version 1 (written before the s.62
#: fields existed) and stay valid as they are; version 2 entries carry ``v``, ``actor`` and, for an
#: event that processes personal data, ``operation``.
ENTRY_VERSION = 2

# The processing operations DPA 2018 s.62(1) asks a log of. Every other branch that writes custody uses
# these names (retention's erasure entries included), so the disclosure report and a DPO read one list.
COLLECTION = "collection"
ALTERATION = "alteration"
CONSULTATION = "consultation"
DISCLOSURE = "disclosure"
COMBINATION = "combination"
ERASURE = "erasure"
OPERATIONS = (COLLECTION, ALTERATION, CONSULTATION, DISCLOSURE, COMBINATION, ERASURE)

#: The s.62 operation each event records; an event not listed here is the dock's own bookkeeping
#: (a camera docking, a clock, a key, an error) and its version 2 entry has no ``operation``.
EVENT_OPERATIONS: dict[str, str] = {
    "listed": CONSULTATION,  # the camera's index: names and times of recordings
    "skipped_out_of_scope": CONSULTATION,  # read past no further than its metadata
    "pull_started": COLLECTION,
    "pulled": COLLECTION,
    "uploaded": COLLECTION,
    "verified": COLLECTION,
    "disclosed": DISCLOSURE,
    "batch_sealed": COMBINATION,  # footage joined to officer allocations and exercise sites (manifest, sidecars)
    "allocated": COLLECTION,  # an officer's allocation to a camera, entered by an operator
    "consulted": CONSULTATION,  # an operator shown officer ids or exercise sites on the dock
    "exercise_amended": ALTERATION,
    "exercise_removed": ALTERATION,
    "erased": ERASURE,
    "bucket_erased": ERASURE,  # retention apply: an object past its agreements' retention (formats/retention.py)
}

#: ``actor`` of an entry a person caused through the CLI: this prefix, then the operator's pseudonym
#: (:func:`operator_pseudonym`); the dock's own actions name the dock id (which never contains ``:``)
OPERATOR_PREFIX = "operator:"


def operator_pseudonym(secret: bytes, user: str) -> str:
    """The ``actor`` of an operator: the bucket is shared, so a Unix user name stands there only as the
    HMAC-SHA-256 of ``operator:<user>`` under the force's pseudonym secret (the officers' one, with its
    own prefix so an operator and an officer of the same id do not share a pseudonym); the clear name
    travels only in the controller archive's sidecar (docs/formats.md §5.3)."""
    return OPERATOR_PREFIX + hmac.new(secret, f"operator:{user}".encode(), hashlib.sha256).hexdigest()


def entry_version(entry: Mapping[str, object]) -> int:
    """1 for an entry written before ``v`` existed; the stated version otherwise (0 when unusable)."""
    v = entry.get("v", 1)
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 1 else 0


def canonical(obj: object) -> bytes:
    """Canonical JSON: sorted keys, UTF-8, no insignificant whitespace (the bytes that get hashed/signed)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def line_hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


@dataclass(frozen=True, slots=True)
class Head:
    """The last entry of a custody chain: its sequence number and hash, what the next entry links to."""

    seq: int
    hash: str


@dataclass(frozen=True, slots=True)
class ChainProblem:
    """One break in a custody segment, named for the auditor: the line, its seq if readable, what is wrong."""

    line: int  # 1-based line number in the segment
    seq: int | None
    message: str


def check_segment(lines: Iterable[bytes], prev: str, first_seq: int) -> tuple[str, int, list[ChainProblem]]:
    """Walk a custody segment: each line parses, numbers follow on, and links to the one before.

    Returns (head hash, last seq, problems). ``prev``/``first_seq`` are where the segment must start.
    """
    problems: list[ChainProblem] = []
    head, expected_seq = prev, first_seq
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip(b"\n")
        try:
            entry = json.loads(line)
        except ValueError:
            problems.append(ChainProblem(number, None, "custody entry is not valid JSON"))
            head = line_hash(line)
            expected_seq += 1
            continue
        seq = entry.get("seq") if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or canonical(entry) != line:
            problems.append(ChainProblem(number, seq, "custody entry is not in canonical form (edited?)"))
        if seq != expected_seq:
            problems.append(ChainProblem(number, seq, f"custody entry has seq {seq}, expected {expected_seq}"))
        if isinstance(entry, dict) and entry.get("prev") != head:
            problems.append(ChainProblem(number, seq, "custody entry does not link to the entry before it"))
        head = line_hash(line)
        expected_seq = (seq if isinstance(seq, int) else expected_seq) + 1
    return head, expected_seq - 1, problems
