"""The written protocol (docs/protocol.md, docs/firmware.md) against the code it describes.

An independent firmware is built from these documents alone, so every value they state that the code
also holds (model ids, the simulator's vendor key, limits) is checked here: a change to one without the
other fails.
"""

from __future__ import annotations

import re
from pathlib import Path

from bodycam.agent.sshsig import fingerprint, public_key_line
from bodycam.drivers import models
from bodycam.drivers.virtual.camera import public_bytes, sim_vendor_key

DOCS = Path(__file__).resolve().parent.parent / "docs"
PROTOCOL = (DOCS / "protocol.md").read_text(encoding="utf-8")
FIRMWARE = (DOCS / "firmware.md").read_text(encoding="utf-8")


def generated_block(text: str, command: str) -> str:
    match = re.search(rf"<!-- BEGIN generated: {re.escape(command)} -->\n(.*?)<!-- END generated -->", text, re.DOTALL)
    assert match, f"no generated block for {command!r}"
    return match.group(1)


def test_the_model_table_is_the_registry() -> None:
    """Model ids live only in drivers/models.py; the spec's table is generated from it."""
    assert generated_block(PROTOCOL, "python -m bodycam.drivers.models --markdown") == models.markdown_table()


def test_no_model_id_is_written_outside_the_generated_table() -> None:
    outside = re.sub(r"<!-- BEGIN generated.*?<!-- END generated -->", "", PROTOCOL, flags=re.DOTALL)
    for model in models.MODELS:
        for text in (model.name, model.usb_id, f"0x{model.pid:04X}", f"0x{model.pid:04x}"):
            assert text not in outside, f"{text} is written by hand in docs/protocol.md"


def test_the_simulator_vendor_key_is_given_as_bytes() -> None:
    key = sim_vendor_key().public_key()
    rows = dict(re.findall(r"^\| (raw 32 bytes, hex|OpenSSH line[^|]*|fingerprint) \| `([^`]+)` \|$", FIRMWARE, re.M))
    assert rows["raw 32 bytes, hex"] == public_bytes(key).hex()
    ssh = next(value for name, value in rows.items() if name.startswith("OpenSSH line"))
    assert ssh == public_key_line(key)
    assert rows["fingerprint"] == fingerprint(key)
