"""agent/formats/times.py: the one way the agent writes a time (docs/formats.md §3), in the precisions its
callers used to write with their own copies: auto (policy, CLI), seconds (agreements, fleet, retention,
dock certificates) and microseconds (manifests, the journal, verify's report)."""

from __future__ import annotations

import datetime as dt

import pytest

from bodycam.agent.formats import retention as rt
from bodycam.agent.formats.times import iso_utc, parse_iso, parse_or_none

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


def test_a_time_from_an_untrusted_document_is_a_datetime_or_none() -> None:
    """verify, the report, retention and the disclosure report read times out of signed documents this
    one way: anything but a bounded string holding a zoned time is None, never an error."""
    assert parse_or_none("2026-03-01T10:15:00.250000Z") == parse_iso("2026-03-01T10:15:00.250000Z")
    for value in (None, 1772360100, "2026-03-01T10:15:00", "yesterday", ["2026-03-01T10:15:00Z"]):
        assert parse_or_none(value) is None
    long = "2026-03-01T10:15:00." + "0" * 60 + "Z"  # parses, but is longer than a time needs
    assert parse_iso(long) is not None and parse_or_none(long) is None and parse_or_none(long, 100) is not None
    assert rt.parse_iso("2026-03-01T10:15:00.250000Z") == T and rt.parse_iso("x" * 41) is None


@pytest.mark.parametrize("edge", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
def test_a_time_with_no_utc_equivalent_is_none_not_an_overflow_later(edge: str) -> None:
    """datetime parses these, but their UTC time is outside years 1-9999: verify wrote an erasure's time
    from a signed custody entry with iso_utc and stopped with OverflowError (an internal error, not a
    finding). Read from an untrusted document, such a time is no time (verify: ``erased_early``)."""
    assert parse_iso(edge) is not None  # a time for datetime
    assert parse_or_none(edge) is None
    when = parse_or_none("9999-12-31T22:59:59-01:00")  # the last second there is, west of UTC
    assert when is not None and iso_utc(when) == "9999-12-31T23:59:59Z"
