"""Streaming, strict decoder of age's ASCII armor (``age -a``), so an armored file decrypts like a binary one.

Format (c2sp.org/age, "ASCII armor"; Go's ``filippo.io/age/armor`` is the reference): the line
``-----BEGIN AGE ENCRYPTED FILE-----``, the age file as padded standard base64 in lines of exactly 64
columns, the last one shorter or also full (never empty), then ``-----END AGE ENCRYPTED FILE-----``. Lines
end in LF or CRLF. Whitespace (at most :data:`MAX_WHITESPACE` bytes) may come before and after the armor,
never inside it: no headers, no blank lines, no spaces, no PGP checksum, canonical base64 only. The CCTV
``armor_*`` vectors pin each rule.

The decoder is push-style like :class:`~bodycam.agent.formats.agecrypt.Decryptor`: :meth:`ArmorDecoder.update`
returns the bytes of every complete line so far and keeps at most one partial line, so memory does not grow
with the file. Runs of full lines are checked by one regular expression and decoded in one call, not line
by line in Python.
"""

from __future__ import annotations

import binascii
import re
from typing import Final

from bodycam.drivers.errors import IntegrityError

__all__ = ["BEGIN", "END", "MAX_WHITESPACE", "WHITESPACE", "AgeArmorError", "ArmorDecoder", "is_whitespace"]

BEGIN: Final = b"-----BEGIN AGE ENCRYPTED FILE-----"
END: Final = b"-----END AGE ENCRYPTED FILE-----"
MAX_WHITESPACE: Final = 1024
"""Most whitespace bytes accepted before, and after, the armor (as Go's reader)."""
_COLUMNS: Final = 64
_LINE_BYTES: Final = 48
WHITESPACE: Final = b" \t\r\n\x0b\x0c"
"""What may surround the armor: ASCII space, tab, CR, LF, VT and FF."""
_FULL_LINES: Final = re.compile(rb"(?:[A-Za-z0-9+/]{64}\r?\n)*")
_LONGEST_LINE: Final = _COLUMNS + 2  # 64 columns and CRLF
_HINT: Final = "armor must be exactly as 'age -a' writes it"

_LEADING, _BODY, _LAST, _TRAILING = range(4)


class AgeArmorError(IntegrityError):
    """The ASCII armor around an age file is malformed, truncated or has data around it."""


def is_whitespace(byte: int) -> bool:
    """Whether ``byte`` may come before or after the armor (ASCII space, tab, CR, LF, VT, FF)."""
    return byte in WHITESPACE


class ArmorDecoder:
    """Push-style decoding of one armored age file: :meth:`update` then :meth:`finalize`.

    Every failure is an :class:`AgeArmorError` naming the line; the decoder does not check what the
    decoded bytes are (the age reader behind it does).
    """

    def __init__(self) -> None:
        self._pending = b""  # an incomplete line (at most _LONGEST_LINE bytes) or undecided whitespace
        self._state = _LEADING
        self._space = 0  # whitespace bytes seen before (state _LEADING) or after (_TRAILING) the armor
        self._line = 0  # lines consumed, for messages

    def update(self, data: bytes | bytearray | memoryview) -> bytes:
        """Decode what ``data`` completes; raises :class:`AgeArmorError`."""
        return self._run(self._pending + data if self._pending else bytes(data), final=False)

    def finalize(self) -> bytes:
        """Decode the last line (it may lack its line feed) and check the armor was closed."""
        out = self._run(self._pending, final=True)
        if self._state == _LEADING:
            raise AgeArmorError(f"input is empty or only whitespace: no '{BEGIN.decode()}' line")
        if self._state != _TRAILING:
            raise AgeArmorError(
                f"armored age file ends after line {self._line} without its '{END.decode()}' line: it is truncated"
            )
        return out

    # --------------------------------------------------------------------------------------- internals

    def _run(self, buf: bytes, *, final: bool) -> bytes:
        out: list[bytes] = []
        pos = 0
        while pos < len(buf):
            if self._state == _TRAILING:
                self._trailing(buf[pos:])
                pos = len(buf)
                break
            if self._state == _LEADING:
                pos = self._skip_leading(buf, pos)
                if pos == len(buf):
                    break
            elif self._state == _BODY:
                pos = self._full_lines(buf, pos, out)
                if pos == len(buf):
                    break
            end = buf.find(b"\n", pos, pos + _LONGEST_LINE + 1)
            if end < 0:
                if len(buf) - pos > _LONGEST_LINE:
                    self._line += 1
                    raise AgeArmorError(f"armor line {self._line} is longer than {_COLUMNS} columns; {_HINT}")
                if not final:
                    break
                end = len(buf)
                if self._state in (_BODY, _LAST) and buf[pos:end].rstrip(b"\r") != END:
                    raise AgeArmorError(
                        f"armored age file ends in the middle of line {self._line + 1}, without its "
                        f"'{END.decode()}' line: it is truncated"
                    )
            line = buf[pos:end]
            pos = end + 1
            self._line += 1
            self._one_line(line[:-1] if line.endswith(b"\r") else line, out)
        self._pending = buf[pos:]
        return b"".join(out)

    def _skip_leading(self, buf: bytes, pos: int) -> int:
        window = buf[pos : pos + MAX_WHITESPACE + 1 - self._space]  # never scans more than the bound
        skipped = len(window) - len(window.lstrip(WHITESPACE))
        self._line += window.count(b"\n", 0, skipped)
        self._space += skipped
        if self._space > MAX_WHITESPACE:
            raise AgeArmorError(f"more than {MAX_WHITESPACE} bytes of whitespace before the armor")
        return pos + skipped

    def _full_lines(self, buf: bytes, pos: int, out: list[bytes]) -> int:
        """Decode the run of full 64-column lines at ``pos`` at C speed; returns where it stops.

        Fast path: lines of one width (65 bytes with LF, 66 with CRLF) whose line ends all sit where they
        must and nowhere else, decoded by one strict ``a2b_base64`` to exactly 48 bytes a line. Anything
        else (the short last line, the END line, a defect) takes the regular expression, which stops
        before the first line that is not a full one; the caller then reads that line by itself.
        """
        width = _COLUMNS + (2 if buf[pos + _COLUMNS : pos + _COLUMNS + 1] == b"\r" else 1)
        count = (len(buf) - pos) // width
        end = pos + count * width
        if count and self._aligned(buf, pos, end, width, count):
            try:
                data = binascii.a2b_base64(buf[pos:end].translate(None, b"\r\n"), strict_mode=True)
            except binascii.Error:
                data = b""
            if len(data) == count * _LINE_BYTES:
                self._line += count
                out.append(data)
                return end
        match = _FULL_LINES.match(buf, pos)
        assert match is not None  # the pattern matches the empty string
        end = match.end()
        if end > pos:
            run = buf[pos:end]
            self._line += run.count(b"\n")
            out.append(binascii.a2b_base64(run.translate(None, b"\r\n"), strict_mode=True))
        return end

    @staticmethod
    def _aligned(buf: bytes, pos: int, end: int, width: int, count: int) -> bool:
        """Whether ``buf[pos:end]`` has its line ends exactly every ``width`` bytes, and no other CR or LF."""
        if buf.count(b"\n", pos, end) != count or buf[pos + width - 1 : end : width].count(b"\n") != count:
            return False
        crs = buf.count(b"\r", pos, end)
        return crs == 0 if width == _COLUMNS + 1 else crs == count == buf[pos + _COLUMNS : end : width].count(b"\r")

    def _one_line(self, line: bytes, out: list[bytes]) -> None:
        where = f"armor line {self._line}"
        if self._state == _LEADING:
            if line != BEGIN:
                raise AgeArmorError(f"{where} is {_shown(line)}, not '{BEGIN.decode()}'; {_HINT}")
            self._state = _BODY
            self._space = 0  # the bound after the armor is counted afresh
        elif self._state == _LAST:
            if not line:
                raise AgeArmorError(f"{where} is empty; the END line must follow the short last line directly")
            if line != END:
                raise AgeArmorError(f"{where} is {_shown(line)}, not '{END.decode()}' after a short line; {_HINT}")
            self._state = _TRAILING
        elif line == END:
            self._state = _TRAILING
        elif not line:
            raise AgeArmorError(f"{where} is empty; blank lines are not allowed inside the armor")
        elif len(line) > _COLUMNS:
            raise AgeArmorError(f"{where} is longer than {_COLUMNS} columns; {_HINT}")
        else:
            data = _strict_b64decode(line)
            if data is None:
                raise AgeArmorError(f"{where} is not canonical padded base64 ({_shown(line)}); {_HINT}")
            out.append(data)
            if len(data) < _LINE_BYTES:
                self._state = _LAST

    def _trailing(self, rest: bytes) -> None:
        if rest.strip(WHITESPACE):
            raise AgeArmorError(f"data follows the '{END.decode()}' line (only whitespace may)")
        self._space += len(rest)
        if self._space > MAX_WHITESPACE:
            raise AgeArmorError(f"more than {MAX_WHITESPACE} bytes of whitespace after the armor")


def _strict_b64decode(line: bytes) -> bytes | None:
    """Canonical padded standard base64 (no stray low bits, no whitespace), or ``None``."""
    if len(line) % 4:
        return None
    try:
        data = binascii.a2b_base64(line, strict_mode=True)
    except binascii.Error:
        return None
    return data if binascii.b2a_base64(data, newline=False) == line else None


def _shown(line: bytes) -> str:
    """A short, safe rendering of a bad line for a message."""
    text = line[:40].decode("ascii", "backslashreplace")
    return repr(text + "...") if len(line) > 40 else repr(text)
