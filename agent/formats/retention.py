"""Retention (issue 12 item 7): how long a disclosed recording is kept, and the erasure entry that
records its deletion (docs/formats.md "Retention").

The rule is a pure function, so any party can recompute it from the signed manifest and the signed
agreements: a recording is kept until its **corrected end time** plus the **longest** retention of
any party it was disclosed to, over every covering agreement. The recording's own time, not the upload
time, is the base: the agreement limits how long footage of the people in it exists, whenever the
camera happened to dock, and the end time is a signed fact in the manifest, where the upload time
depends on the dock's clock and queue. The result stands in the manifest as ``retain_until`` and, where
the bucket has S3 Object Lock, as the object's COMPLIANCE retain-until date.

An erasure entry (custody event ``bucket_erased``, operation ``erasure``) names only ids, hashes and
times: DPA 2018 s.62 says an erasure log must not hold the erased data.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from bodycam.agent.formats.agreements import Agreement
from bodycam.agent.formats.custody import ERASURE
from bodycam.agent.formats.times import iso_utc, parse_or_none

EVENT = "bucket_erased"  # the custody event of an erasure from the bucket (the camera's own is "erased")
OPERATION = ERASURE  # DPA 2018 s.62 operation (agent/formats/custody.py vocabulary)
RECORDING = "recording"  # what an erasure entry's ``object`` names: a recording's ciphertext
PERSONAL = "personal"  # ... or a batch's personal sidecar, erased once every recording it describes is
DAY_S = 86400


def iso(ts: float) -> str:
    """``retain_until`` as the manifest writes it: to the second."""
    return iso_utc(ts, "seconds")


def parse_iso(text: object) -> float | None:
    """Seconds since the epoch of an ISO 8601 UTC time, None when it is not one (bounded input)."""
    when = parse_or_none(text, 40)
    return None if when is None else when.timestamp()


def retention_days(covering: Sequence[Agreement], parties: Iterable[str]) -> int:
    """The longest retention, in days, of the ``parties`` a recording went to under ``covering``
    (0 when none of them is a party of a covering agreement)."""
    names = set(parties)
    return max((p.retention_days for a in covering for p in a.parties if p.name in names), default=0)


def retain_until(covering: Sequence[Agreement], parties: Iterable[str], end: float) -> float | None:
    """Until when a recording that ended at ``end`` (corrected, epoch s) is kept; None when no covering
    agreement names a retention for its parties (then nothing says when to erase it)."""
    days = retention_days(covering, parties)
    return end + days * DAY_S if days else None


def erasure_fields(
    *,
    obj: str,
    key: str,
    batch: str,
    sha256: str,
    retain_until_ts: float,
    agreements: Sequence[str],
    version_id: str | None = None,
    camera: str | None = None,
    recording: int | None = None,
) -> dict[str, object]:
    """The custody fields of one erasure: ids, hashes and times only (no footage, no personal data)."""
    fields: dict[str, object] = {
        "operation": OPERATION,
        "object": obj,
        "key": key,
        "batch": batch,
        "sha256": sha256,
        "retain_until": iso(retain_until_ts),
        "agreements": list(agreements),
        "version_id": version_id,
        "camera": camera,
        "recording": recording,
    }
    return {k: v for k, v in fields.items() if v is not None}
