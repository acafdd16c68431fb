"""The one-pass custody check (agent/audit/custodycheck.py): the same verdict however the bytes arrive, and
missing entries named from the gaps between those present, never by walking the signed range."""

from __future__ import annotations

from typing import Any

from bodycam.agent.audit.custodycheck import MAX_LINE_BYTES, CustodyCheck
from bodycam.agent.formats.custody import GENESIS, line_hash

from .hostile import custody_lines


def info(lines: list[bytes], first: int = 1, last: int | None = None) -> dict[str, Any]:
    return {
        "first_seq": first,
        "last_seq": first + len(lines) - 1 if last is None else last,
        "prev": GENESIS,
        "head": line_hash(lines[-1]) if lines else GENESIS,
    }


def check(data: bytes, meta: dict[str, Any], piece: int | None = None, max_entries: int = 10_000) -> list[Any]:
    c = CustodyCheck(meta, max_entries)
    step = piece or max(len(data), 1)
    for at in range(0, len(data), step):
        c.feed(data[at : at + step])
    return c.finish()


def test_a_valid_segment_passes_however_it_is_split() -> None:
    lines = list(custody_lines(50))
    data = b"".join(line + b"\n" for line in lines)
    for piece in (None, 1, 7, 4096):
        assert check(data, info(lines), piece) == []


def test_missing_entries_are_named_from_the_gaps_then_counted() -> None:
    lines = list(custody_lines(300))
    kept = [lines[0], lines[49], lines[299]]  # entries 1, 50, 300 of 1..400
    meta = info(lines, last=400)
    meta["head"] = "0" * 64
    problems = check(b"".join(line + b"\n" for line in kept), meta)
    missing = [p for p in problems if p[1] == "custody_missing_entry"]
    assert [p[0] for p in missing[:3]] == [2, 3, 4] and missing[99][0] == 102
    assert missing[100][0] == 103 and "297 more entries are missing" in missing[100][2]  # 397 in all
    assert len(missing) == 101


def test_duplicates_out_of_range_and_overlong_lines_are_named() -> None:
    lines = list(custody_lines(5))
    extra = list(custody_lines(1, first=9, prev=line_hash(lines[-1])))
    data = b"".join(line + b"\n" for line in [*lines, lines[2], *extra])
    data += b"{" + b" " * MAX_LINE_BYTES + b"}\n"
    problems = {(p[0], p[1]) for p in check(data, info(lines))}
    assert (3, "custody_entry") in problems  # appears twice
    assert (3, "custody_order") in problems  # and the copy comes after entry 5
    assert (9, "custody_entry") in problems  # outside 1..5
    assert (None, "custody_entry") in problems  # the overlong line, refused unparsed


def test_more_lines_than_allowed_stops_the_check() -> None:
    lines = list(custody_lines(20))
    c = CustodyCheck(info(lines), max_entries=10)
    c.feed(b"".join(line + b"\n" for line in lines))
    assert c.too_many and c.lines == 11
