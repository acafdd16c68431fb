"""``sim serve --fault SPEC`` parsing (drivers/virtual/faults.py): every fault the virtual camera knows
parses to a value of its field's declared type, and a bad spec is one ConfigError naming it."""

from __future__ import annotations

from dataclasses import Field, fields

import pytest

from bodycam.drivers.errors import ConfigError
from bodycam.drivers.protocol.frames import MAX_READ
from bodycam.drivers.virtual.camera import trickle_hold_s
from bodycam.drivers.virtual.faults import Faults, parse_faults

EXAMPLE = {"bool": None, "float": "0.25", "int": "7", "int | None": "1048576"}
TYPES = {"bool": bool, "float": float, "int": int, "int | None": int}


@pytest.mark.parametrize("field", fields(Faults), ids=lambda f: f.name)
def test_every_fault_parses_to_its_declared_type(field: Field[object]) -> None:
    name, kind = field.name, str(field.type)
    raw = EXAMPLE[kind]
    spec = name.replace("_", "-") + ("" if raw is None else f"={raw}")
    value = getattr(parse_faults([spec]), name)
    assert type(value) is TYPES[kind] and value == (True if raw is None else TYPES[kind](raw))
    assert parse_faults([spec]).names == [name.replace("_", "-")]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("melt", "unknown fault 'melt'"),
        ("wrong-hash=1", "takes no value"),
        ("flip-rate=2", "between 0 and 1"),
        ("flip-rate", "could not convert"),
        ("stall-ms=-1", "must not be negative"),
        ("unplug-at=lots", "invalid literal"),
    ],
)
def test_a_bad_fault_spec_is_one_config_error_naming_it(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_faults([spec])


def test_no_fault_is_the_default() -> None:
    assert parse_faults([]) == Faults() and Faults().names == []


def test_a_trickle_frame_is_held_for_its_length_at_the_trickle_rate() -> None:
    """A fixed 0.1 s hold capped a camera at 10 frames x 1 MiB = ~10 MB/s, below USB 2.0 line rate
    (issue 14); the hold now follows the frame, and slow trickles keep their 0.1 s frames."""
    assert trickle_hold_s(1048576, 40_000_000) == pytest.approx(1048576 / 40e6)
    assert trickle_hold_s(10, 100) == pytest.approx(0.1)
    assert MAX_READ / trickle_hold_s(MAX_READ, 40_000_000) == pytest.approx(40e6)
    assert trickle_hold_s(40_000_000 // 10, 40_000_000) == pytest.approx(0.1)
