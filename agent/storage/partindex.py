"""The part index of a local multipart upload: ``.uploads/<upload_id>/parts``, one checked line per event.

A :class:`~bodycam.agent.storage.bucket.LocalBucket` upload keeps its parts' bytes in the upload's ``data``
file (a part of the upload's stride size, or shorter, at ``(number - 1) x stride``: where the object needs it)
or, rarely, in a file of its own (``NNNNN.part``), and everything it knows about them in this index, appended
to and ``fdatasync``\\ ed once per part. It replaces the two side files per part an earlier agent wrote
(``NNNNN.placed`` and ``NNNNN.checksum``, each a temp file, an fsync and a rename, and a directory fsync on
top: docs/decisions.md, issue 14 item 3).

Three kinds of record, each one line of ASCII ending in the CRC-32C (8 hex digits) of the bytes before it::

    S <stride> <crc>                              the stride: set once, by the first part of at least the
                                                  minimum part size
    P <number> <size> <offset|-> <checksum> <crc> part <number> is stored: <size> bytes at <offset> in
                                                  ``data`` ("-": in its own file ``NNNNN.part``), with the
                                                  base64 CRC-32C (or an older agent's SHA-256) it was sent with
    D <number> <crc>                              part <number> is no longer stored (about to be replaced by
                                                  other bytes at the same place)

The last record of a part number wins. A record is written only after the bytes it describes are durable,
so a record that is there (and checks) describes bytes that are. A crash while appending leaves a torn last
line: its CRC (or its missing newline) fails, it is ignored, and the next writer cuts it off before it
appends. A line that fails its check anywhere else (the file damaged) ends the index there: the records
after it are not trusted either, their parts are simply not listed, and the pipeline sends them again (the
same bytes, to the same place), which loses nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from bodycam.drivers.crc import crc32c

#: the index of one upload is refused beyond this (10,000 parts take ~500 KiB; re-sent parts add lines)
MAX_INDEX_BYTES: Final = 8 * 1024 * 1024
_MAX_NUMBER: Final = 10_000
_MAX_SIZE: Final = 5 * 1024**3  # S3's largest part
_MAX_OFFSET: Final = _MAX_NUMBER * _MAX_SIZE
_B64: Final = r"(?:[A-Za-z0-9+/]{6}==|[A-Za-z0-9+/]{43}=)"  # a CRC-32C or a SHA-256, base64
_INT: Final = r"(?:0|[1-9][0-9]{0,15})"
_BODY: Final = re.compile(
    rf"S (?P<stride>{_INT})|P (?P<number>[0-9]{{5}}) (?P<size>{_INT}) (?P<offset>{_INT}|-) (?P<checksum>{_B64})"
    rf"|D (?P<dropped>[0-9]{{5}})"
)
_LINE: Final = re.compile(rb"(?P<body>[ -~]{1,120}) (?P<crc>[0-9a-f]{8})\n")


@dataclass(frozen=True, slots=True)
class PartRecord:
    """Where one stored part's bytes are and what they were checked against."""

    number: int
    size: int
    offset: int | None  # in the upload's ``data``; None: in its own file ``NNNNN.part``
    checksum: str  # base64, as sent (CRC-32C; an older agent's SHA-256)


@dataclass(slots=True)
class IndexState:
    """What an index says: the stride, the stored parts, and how many of its bytes are whole, checked records."""

    stride: int | None = None
    parts: dict[int, PartRecord] = field(default_factory=dict)
    valid_end: int = 0  #: bytes of whole records that check; anything after them is torn or damaged
    damaged: int = 0  #: bytes after ``valid_end`` (a torn last record, or a damaged file)

    def apply(self, data: bytes) -> None:
        """Apply the records in ``data`` (the bytes of the index after ``valid_end``), up to the first that
        fails its check; ``valid_end`` moves past those applied, ``damaged`` counts the rest."""
        at = 0
        while at < len(data):
            line = _LINE.match(data, at)
            body = _BODY.fullmatch(line["body"].decode("ascii")) if line else None
            if line is None or body is None or int(line["crc"], 16) != crc32c.crc32c(line["body"] + b" "):
                break
            if not self._apply(body):
                break
            at = line.end()
        self.valid_end += at
        self.damaged = len(data) - at

    def _apply(self, body: re.Match[str]) -> bool:
        """Apply one record that checks; False (it ends the index, like a damaged line) when what it says
        is beyond what a writer records: a number, size or stride out of range, a second stride, or a part
        placed anywhere but ``(number - 1) x stride`` or longer than the stride. So a forged index (its CRCs
        recomputed) can name neither a part the bucket never takes nor bytes that overlap another part's."""
        if body["stride"] is not None:
            stride = int(body["stride"])
            if not 0 < stride <= _MAX_SIZE or self.stride not in (None, stride):
                return False
            self.stride = stride
        elif body["number"] is not None:
            number, size = int(body["number"]), int(body["size"])
            offset = None if body["offset"] == "-" else int(body["offset"])
            if not 1 <= number <= _MAX_NUMBER or size > _MAX_SIZE:
                return False
            if offset is not None and (
                self.stride is None or offset != (number - 1) * self.stride or size > self.stride
            ):
                return False
            self.parts[number] = PartRecord(number, size, offset, body["checksum"])
        elif 1 <= int(body["dropped"]) <= _MAX_NUMBER:
            self.parts.pop(int(body["dropped"]), None)
        else:
            return False
        return True


def parse(data: bytes) -> IndexState:
    """The state an index's bytes describe (never raises: what does not check is counted in ``damaged``)."""
    state = IndexState()
    state.apply(data)
    return state


def stride_record(stride: int) -> bytes:
    return _seal(f"S {_bounded(stride, _MAX_SIZE)}")


def part_record(part: PartRecord) -> bytes:
    where = "-" if part.offset is None else str(_bounded(part.offset, _MAX_OFFSET))
    if not re.fullmatch(_B64, part.checksum):
        raise ValueError(f"not a base64 CRC-32C or SHA-256: {part.checksum!r}")
    return _seal(f"P {_number(part.number)} {_bounded(part.size, _MAX_SIZE)} {where} {part.checksum}")


def drop_record(number: int) -> bytes:
    return _seal(f"D {_number(number)}")


def _seal(body: str) -> bytes:
    raw = body.encode("ascii") + b" "
    return raw + f"{crc32c.crc32c(raw):08x}\n".encode("ascii")


def _number(number: int) -> str:
    if not 1 <= number <= _MAX_NUMBER:
        raise ValueError(f"part number {number} out of range")
    return f"{number:05d}"


def _bounded(value: int, limit: int) -> int:
    if not 0 <= value <= limit:
        raise ValueError(f"{value} out of range")
    return value
