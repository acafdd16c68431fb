"""agent/formats/times.py: the one way the agent writes a time (docs/formats.md §3), in the precisions its
callers used to write with their own copies: auto (policy, CLI), seconds (agreements, fleet, retention,
dock certificates) and microseconds (manifests, the journal, verify's report)."""

from __future__ import annotations

import datetime as dt

import pytest

from bodycam.agent.formats.times import iso_utc, parse_iso

T = 1_772_360_100.25  # 2026-03-01T10:15:00.25Z


def test_each_precision_writes_utc_with_a_z() -> None:
    assert iso_utc(T) == "2026-03-01T10:15:00.250000Z"
    assert iso_utc(float(int(T))) == "2026-03-01T10:15:00Z"  # auto: no fraction when there is none
    assert iso_utc(T, "seconds") == "2026-03-01T10:15:00Z"
    assert iso_utc(float(int(T)), "microseconds") == "2026-03-01T10:15:00.000000Z"
    moment = dt.datetime(2026, 3, 1, 11, 15, 0, 250000, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert iso_utc(moment, "microseconds") == "2026-03-01T10:15:00.250000Z"  # an offset is converted


def test_parse_needs_a_zone() -> None:
    assert parse_iso("2026-03-01T10:15:00.250000Z").timestamp() == T
    with pytest.raises(ValueError, match="no time zone"):
        parse_iso("2026-03-01T10:15:00")
    with pytest.raises(ValueError):
        parse_iso("yesterday")
