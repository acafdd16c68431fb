"""The auditor's check of one custody segment, in one pass over its bytes (docs/formats.md, "Custody").

``verify`` runs on buckets from other organisations, so nothing here trusts a count the bucket states:
the segment is read in chunks and split into lines as it streams (a line over :data:`MAX_LINE_BYTES`
is refused, not buffered), each entry is parsed once and kept only as its sequence number and two
32-byte digests (its own hash and the ``prev`` it records), and the manifest's ``first_seq..last_seq``
is never walked or materialised: missing entries are found from the gaps between the sequence numbers
actually present, so ``last_seq = 10**15`` costs what the file holds, not what it claims. Memory is at
most ``max_entries`` small records (the caller derives it from ``verify --max-memory``); time is linear
in the segment's size (plus one sort of the numbers present).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping

from bodycam.agent.audit.wording import counted
from bodycam.agent.formats.commitment import RootBuilder
from bodycam.agent.formats.custody import canonical
from bodycam.agent.formats.retention import EVENT as ERASURE_EVENT

MAX_LINE_BYTES = 64 * 1024  # a real entry is a few hundred bytes
MAX_ERASURES = 10_000  # erasure entries kept per segment (each a few hundred bytes)
MAX_NAMED_MISSING = 100  # missing entries named one by one; the rest are counted
_HEX64 = re.compile(r"[0-9a-f]{64}")

#: (custody seq or None, problem, message): what the caller turns into findings
Problem = tuple[int | None, str, str]


def _digest(value: object, otherwise: bytes) -> bytes:
    """A 64-hex-digit hash as its 32 bytes; anything else as ``otherwise`` (which never equals a digest)."""
    return bytes.fromhex(value) if isinstance(value, str) and _HEX64.fullmatch(value) else otherwise


class CustodyCheck:
    """Feed the segment's bytes in any pieces, then :meth:`finish` for the problems found.

    Every entry must be canonical JSON; the segment must hold exactly entries ``first_seq..last_seq``,
    in order, once each; entry ``s`` must carry the SHA-256 of entry ``s-1``'s line (``prev`` of the
    manifest for the first); and entry ``last_seq`` must hash to ``head``. Links are followed by
    sequence number, not by position, so a removed, reordered or edited entry is named as itself.
    ``too_many`` turns true (and feeding stops counting) once the segment holds more than
    ``max_entries`` lines; the caller reports that and stops reading.
    """

    def __init__(
        self,
        info: Mapping[str, object],
        max_entries: int,
        on_entry: Callable[[Mapping[str, object]], None] | None = None,
    ) -> None:
        self.info = info
        #: sees each parsed entry once (the disclosure check collects its ``disclosed`` entries)
        self.on_entry = on_entry
        self.max_entries = max_entries
        self.sha256 = hashlib.sha256()
        self.lines = 0
        self.too_many = False
        self._problems: list[Problem] = []
        self.root = RootBuilder()  # the segment's Merkle root (manifest format 1.1), line by line
        self._partial = bytearray()
        self._overlong = False  # the line being read is over MAX_LINE_BYTES: skip to its end
        self._seen: dict[int, bytes] = {}  # seq -> its line's digest + the digest its prev names
        self._copies: dict[int, int] = {}  # seq -> how many times it appears, only when more than once
        self._highest: int | None = None
        #: the segment's dock_handover entry (docs/formats.md "Dock handover"), as short strings only
        self.handover: dict[str, str] | None = None
        #: the segment's erasure entries (docs/formats.md "Retention"), as short strings only, at most
        #: MAX_ERASURES; verify matches them to the objects its manifests list and the bucket lacks
        self.erasures: list[dict[str, object]] = []

    def feed(self, chunk: bytes) -> None:
        self.sha256.update(chunk)
        start = 0
        while not self.too_many:
            end = chunk.find(b"\n", start)
            if end < 0:
                self._buffer(chunk[start:])
                return
            self._buffer(chunk[start:end])
            self._line()
            start = end + 1

    def _buffer(self, piece: bytes) -> None:
        if self._overlong:
            return
        if len(self._partial) + len(piece) > MAX_LINE_BYTES:
            self._overlong = True
            self._partial.clear()
            return
        self._partial += piece

    def _line(self) -> None:
        self.lines += 1
        if self.lines > self.max_entries:
            self.too_many = True
            return
        line, overlong = bytes(self._partial), self._overlong
        self._partial.clear()
        self._overlong = False
        self.root.add(b"\xff" if overlong else line)  # an overlong line is not kept; no line is 0xFF
        if overlong:
            self._problems.append(
                (None, "custody_entry", f"line {self.lines} is longer than {MAX_LINE_BYTES} bytes: not a custody entry")
            )
            return
        self._entry(line)

    def _entry(self, line: bytes) -> None:
        try:
            entry = json.loads(line)
        except (ValueError, RecursionError):  # RecursionError: hostile nesting
            entry = None
        seq = entry.get("seq") if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or not isinstance(seq, int) or isinstance(seq, bool):
            self._problems.append(
                (None, "custody_entry", f"line {self.lines} is not a custody entry (JSON object with a seq)")
            )
            return
        if canonical(entry) != line:
            self._problems.append(
                (seq, "custody_entry", f"custody entry {seq} is not in canonical form: it was edited")
            )
        if self._highest is not None and seq < self._highest:
            self._problems.append(
                (seq, "custody_order", f"custody entry {seq} comes after entry {self._highest}: entries were reordered")
            )
        self._highest = seq if self._highest is None else max(self._highest, seq)
        if self.on_entry is not None:
            self.on_entry(entry)
        if entry.get("event") == "dock_handover" and self.handover is None:
            self.handover = {
                k: v
                for k in ("to_dock", "from_bucket", "to_bucket")
                if isinstance(v := entry.get(k), str) and len(v) <= 1024
            }
        if entry.get("event") == ERASURE_EVENT and len(self.erasures) < MAX_ERASURES:
            self.erasures.append(_erasure(entry, seq))
        if seq in self._seen:
            self._copies[seq] = self._copies.get(seq, 1) + 1
        else:
            self._seen[seq] = hashlib.sha256(line).digest() + _digest(entry.get("prev"), b"entry")

    def finish(self) -> list[Problem]:
        """The problems found; call once, after the last :meth:`feed`."""
        out = self._problems
        if self._partial or self._overlong:
            out.append((None, "custody_entry", "the segment does not end with a newline"))
            self._line()
        first, last = self.info.get("first_seq"), self.info.get("last_seq")
        if (
            not isinstance(first, int)
            or not isinstance(last, int)
            or isinstance(first, bool)
            or isinstance(last, bool)
            or last < first - 1
        ):
            return [
                (None, "manifest_invalid", f"the manifest's custody range {_short(first)}..{_short(last)} is not valid")
            ]
        present = sorted(self._seen)
        for seq in present:
            if seq in self._copies:
                out.append((seq, "custody_entry", f"custody entry {seq} appears {self._copies[seq]} times"))
            if not first <= seq <= last:
                out.append((seq, "custody_entry", f"custody entry {seq} is outside the signed range {first}..{last}"))
        out += _missing(present, first, last)
        out += self._links(present, first)
        tail = self._seen.get(last)
        if tail is not None and tail[:32] != _digest(self.info.get("head"), b"head"):
            out.append(
                (
                    last,
                    "custody_head",
                    f"custody entry {last} does not hash to the head the manifest signs: it was altered",
                )
            )
        return out

    def _links(self, present: list[int], first: int) -> list[Problem]:
        out: list[Problem] = []
        expected_first = _digest(self.info.get("prev"), b"manifest")
        for seq in present:
            if seq == first:
                if self._seen[seq][32:] != expected_first:
                    out.append(
                        (seq, "custody_link", f"custody entry {seq} does not link to the head of the previous batch")
                    )
                continue
            before = self._seen.get(seq - 1)
            if before is None or self._seen[seq][32:] == before[:32]:
                continue  # the entry before is missing (already reported), or the link holds
            out.append(
                (
                    seq - 1,
                    "custody_link",
                    f"custody entry {seq - 1} no longer hashes to the link entry {seq} records: "
                    f"entry {seq - 1} was altered (or entry {seq}'s link)",
                )
            )
        return out


def _missing(present: list[int], first: int, last: int) -> list[Problem]:
    """Entries of ``first..last`` not present, from the gaps between the sorted numbers that are."""
    out: list[Problem] = []
    total, expected = 0, first
    for seq in [*(s for s in present if first <= s <= last), last + 1]:
        if seq > expected:
            for gone in range(expected, min(seq, expected + MAX_NAMED_MISSING - len(out))):
                out.append((gone, "custody_missing_entry", f"custody entry {gone} is missing (removed)"))
            total += seq - expected
        expected = seq + 1
    if total > len(out):
        first_unnamed = _nth_missing(present, first, last, len(out))
        out.append(
            (
                first_unnamed,
                "custody_missing_entry",
                f"... and {counted(total - len(out), 'more entry', 'more entries')} {'is' if total - len(out) == 1 else 'are'} missing",
            )
        )
    return out


def _nth_missing(present: list[int], first: int, last: int, n: int) -> int:
    """The ``n``-th (0-based) missing entry of ``first..last``."""
    expected = first
    for seq in [*(s for s in present if first <= s <= last), last + 1]:
        if seq > expected:
            if n < seq - expected:
                return expected + n
            n -= seq - expected
        expected = seq + 1
    return last


def _erasure(entry: Mapping[str, object], seq: int) -> dict[str, object]:
    """What verify needs of an erasure entry: bounded strings (anything else reads as absent)."""

    def text(name: str, limit: int = 1024) -> str | None:
        value = entry.get(name)
        return value if isinstance(value, str) and len(value) <= limit else None

    agreements = entry.get("agreements")
    ids = [a for a in agreements[:16] if isinstance(a, str) and len(a) <= 64] if isinstance(agreements, list) else []
    return {
        "seq": seq,
        "key": text("key"),
        "ts": text("ts", 40),
        "sha256": text("sha256", 64),
        "retain_until": text("retain_until", 40),
        "object": text("object", 16),
        "agreements": ids,
    }


def _short(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
