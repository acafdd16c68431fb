"""Times as the evidence formats write them: ISO 8601 in UTC with a ``Z`` (docs/formats.md §3).

One home for the conversions the manifest, the journal, the policy, the agreements and the CLI each
used to carry a copy of, so a time is written the same way wherever it is signed or shown.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

Timespec = Literal["auto", "seconds", "microseconds"]


def iso_utc(when: float | dt.datetime, timespec: Timespec = "auto") -> str:
    """``when`` (seconds since the epoch, or an aware datetime) as ISO 8601 UTC ending in ``Z``.

    ``auto`` shows microseconds only when there are some (``2026-03-01T10:15:00Z``); the manifest and
    the journal use ``microseconds`` so every time has the same width; agreements use ``seconds``.
    """
    moment = when.astimezone(dt.UTC) if isinstance(when, dt.datetime) else dt.datetime.fromtimestamp(when, dt.UTC)
    return moment.isoformat(timespec=timespec).replace("+00:00", "Z")


def parse_iso(text: str) -> dt.datetime:
    """An ISO 8601 time with its zone (``Z`` or an offset); ValueError when it is not one."""
    when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if when.tzinfo is None:
        raise ValueError(f"{text[:64]!r} has no time zone")
    return when


def parse_or_none(value: object, limit: int = 64) -> dt.datetime | None:
    """``parse_iso`` for a value read from an untrusted document (a manifest, a custody entry): None
    unless it is a string of at most ``limit`` characters holding an ISO 8601 time with its zone, since
    there a malformed time is a finding, not an error. The time comes back in UTC, and one whose UTC time
    falls outside years 1-9999 (``9999-12-31T23:59:59-01:00``) is None too: writing it (``iso_utc``) or
    moving it would raise OverflowError wherever it went next."""
    if not isinstance(value, str) or len(value) > limit:
        return None
    try:
        return parse_iso(value).astimezone(dt.UTC)
    except (ValueError, OverflowError):
        return None
