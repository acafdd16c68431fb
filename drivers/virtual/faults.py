"""Faults the virtual camera injects on demand (``sim serve --fault SPEC``; docs/protocol.md §Faults)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from bodycam.drivers.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Faults:
    unplug_at: int | None = None  # drop the link once this many READ bytes have been served
    flip_rate: float = 0.0  # per-byte probability of a bit flip in answers (the CRC must catch it)
    stall_ms: int = 0  # hold every READ answer this long
    lie_length: bool = False  # LIST claims 4 KiB more than READ will ever deliver
    hostile_names: bool = False  # names with path traversal, control characters, over-long
    wrong_hash: bool = False  # LIST reports a wrong SHA-256 for every recording
    endless_list: bool = False  # LIST always promises one more page
    impostor: bool = False  # IDENTIFY shows the genuine device key, AUTH signs with another one
    rtc_reset: bool = False  # the RTC lost power before the recordings: clock and stamps read 1970, flagged invalid
    v1_only: bool = False  # speaks protocol revision 1 only: no clock epochs, no dock proof (an older firmware)
    accept_any_host: bool = False  # pairs, but never refuses a host that has not proven it is a dock of its force
    unplug_fw_at: int | None = None  # drop the link once, after storing the FW_CHUNK that reaches this many bytes
    empty_more_follows: bool = False  # READ answers are an endless stream of zero-length MORE_FOLLOWS frames
    trickle_bps: int = 0  # READ answers paced at this many bytes per second, on a schedule (10 frames/s up to ~10 MB/s)
    hang_read_at: int | None = None  # once this many READ bytes have been served, answer nothing more (link stays up)
    list_trickle_ms: int = 0  # LIST answers carry one entry each, held this long: each page in time, the listing not
    epoch_stuck: bool = False  # CLOCK_SET sets the clock but leaves the clock epoch as it was (breaks a MUST)

    @property
    def names(self) -> list[str]:
        return [f.name.replace("_", "-") for f in fields(self) if getattr(self, f.name) not in (None, 0, 0.0, False)]


def parse_faults(specs: list[str] | tuple[str, ...]) -> Faults:
    """``["unplug-at=1048576", "wrong-hash"]`` -> Faults; ConfigError naming the bad spec otherwise.

    Each value is parsed by its field's declared type (``_PARSERS``), so a field of a new type fails
    here, by name, instead of being read as an integer.
    """
    #: field name -> a value of that field's declared type (mypy cannot follow a name chosen at run time)
    values: dict[str, Any] = {}
    known = {f.name.replace("_", "-"): f for f in fields(Faults)}
    for spec in specs:
        key, sep, raw = spec.partition("=")
        field = known.get(key.strip())
        if field is None:
            raise ConfigError(f"unknown fault {key!r}; known faults: {', '.join(known)}")
        try:
            values[field.name] = _PARSERS[str(field.type)](raw if sep else None)
        except ValueError as err:
            raise ConfigError(f"fault {spec!r}: {err}") from err
    return Faults(**values)


def _flag(raw: str | None) -> bool:
    if raw is not None:
        raise ValueError("takes no value")
    return True


def _rate(raw: str | None) -> float:
    rate = float(raw or "")
    if not 0.0 <= rate <= 1.0:
        raise ValueError("must be between 0 and 1")
    return rate


def _count(raw: str | None) -> int:
    number = int(raw or "")
    if number < 0:
        raise ValueError("must not be negative")
    return number


#: a Faults field's declared type (a string: annotations are postponed) -> the parser of its value
_PARSERS: dict[str, Callable[[str | None], bool | float | int]] = {
    "bool": _flag,
    "float": _rate,
    "int": _count,
    "int | None": _count,
}
