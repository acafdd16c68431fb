"""Issue 12 item 6: custody entries name their DPA 2018 s.62 operation and their actor.

Real parts: the CLI run as the operator would run it, the dock's journal, the custody segment check.
"""

from __future__ import annotations

import json
import os
import pwd
import re
from pathlib import Path

from bodycam.agent.formats.custody import (
    EVENT_OPERATIONS,
    EVENTS,
    GENESIS,
    OPERATIONS,
    canonical,
    check_segment,
    entry_version,
    line_hash,
)
from bodycam.drivers.virtual.server import device_key_hex

from .dock import make_dock, window


def test_the_vocabulary_is_the_six_operations_of_s62_and_every_mapped_event_exists() -> None:
    assert OPERATIONS == ("collection", "alteration", "consultation", "disclosure", "combination", "erasure")
    assert set(EVENT_OPERATIONS) <= EVENTS
    assert set(EVENT_OPERATIONS.values()) <= set(OPERATIONS)
    assert EVENT_OPERATIONS["disclosed"] == "disclosure" and EVENT_OPERATIONS["erased"] == "erasure"


def test_a_cli_action_names_the_operator_by_pseudonym_and_keeps_the_user_for_the_archive(tmp_path: Path) -> None:
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    user = pwd.getpwuid(os.getuid()).pw_name
    assert dock.cli("enroll", "CAM-OP", "--key", device_key_hex("CAM-OP")).returncode == 0
    dock.exercise("EX-OP", window(), "CAM-OP")
    amended = dock.cli("exercise", "amend", "EX-OP", "--camera", "CAM-OP", "--camera", "CAM-OQ")
    assert amended.returncode == 0, amended.stderr
    entries = {e["event"]: e for e in dock.custody()}
    enrolled, amend = entries["enrolled"], entries["exercise_amended"]
    for entry in (enrolled, amend):
        assert entry["v"] == 2
        assert re.fullmatch(r"operator:[0-9a-f]{64}", str(entry["actor"])), entry
        assert user not in canonical(entry).decode()  # the bucket never sees the Unix user in clear
    assert enrolled["actor"] == amend["actor"]  # one operator, one pseudonym
    assert "operation" not in enrolled  # the dock's own bookkeeping, not processing of personal data
    assert amend["operation"] == "alteration"
    journal = dock.journal()
    try:
        rows = journal.query("SELECT seq, user FROM custody_operator ORDER BY seq")
    finally:
        journal.close()
    assert {(r[0], r[1]) for r in rows} == {(enrolled["seq"], user), (amend["seq"], user)}


def test_version_1_entries_without_operation_or_actor_still_form_a_valid_chain() -> None:
    """A log written before s.62 fields existed stays verifiable: the chain never depended on them."""
    lines, prev = [], GENESIS
    for seq, extra in enumerate(
        [{"event": "docked", "camera": "C"}, {"event": "error", "operation": "firmware_push", "error": "X"}], 1
    ):
        line = canonical({"seq": seq, "ts": "2026-01-01T00:00:00.000000Z", "dock": "d", "prev": prev, **extra})
        lines.append(line + b"\n")
        prev = line_hash(line)
    v2 = {"seq": 3, "ts": "2026-01-01T00:00:01.000000Z", "dock": "d", "prev": prev, "event": "erased", "v": 2}
    lines.append(canonical({**v2, "actor": "d", "operation": "erasure"}) + b"\n")
    _head, last, problems = check_segment(lines, GENESIS, 1)
    assert (last, problems) == (3, [])
    assert [entry_version(json.loads(x)) for x in lines] == [1, 1, 2]


def test_allocating_an_officer_and_showing_officer_ids_or_sites_are_logged(tmp_path: Path) -> None:
    """s.62: an allocation is a collection of the officer's data, showing it (or a site) a consultation;
    the shared log names the officer by pseudonym only and records what was consulted, not its content."""
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    assert dock.cli("enroll", "CAM-AL", "--key", device_key_hex("CAM-AL")).returncode == 0
    assert dock.cli("allocate", "CAM-AL", "--officer", "PC-9876").returncode == 0
    dock.exercise("EX-AL", window(), "CAM-AL", site="Range 9, Gravesend")
    assert dock.cli("exercise", "list", "--json").returncode == 0
    entries = dock.custody()
    allocated = [e for e in entries if e["event"] == "allocated"]
    consulted = [(e["register"], e.get("camera")) for e in entries if e["event"] == "consulted"]
    assert len(allocated) == 1 and allocated[0]["operation"] == "collection"
    assert allocated[0]["camera"] == "CAM-AL" and re.fullmatch(r"[0-9a-f]{64}", str(allocated[0]["officer_pseudonym"]))
    assert str(allocated[0]["actor"]).startswith("operator:")
    assert consulted == [("allocations", "CAM-AL"), ("exercises", None)]  # the history shown, then the sites
    assert all(e["operation"] == "consultation" for e in entries if e["event"] == "consulted")
    text = "".join(canonical(e).decode() for e in entries)
    assert "PC-9876" not in text and "Gravesend" not in text
