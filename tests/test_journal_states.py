"""The journal's recording seam: ``RecordingState`` and the methods keyed by ``RecordingKey``
(agent/storage/journal.py). The states are the text already in every journal, so an existing journal
keeps working; the docs and the SQL that name states name only these."""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from bodycam.agent.storage.journal import (
    DONE_STATES,
    IN_FLIGHT_STATES,
    RESTART_STATES,
    Journal,
    RecordingKey,
    RecordingState,
)
from bodycam.drivers.errors import StorageError
from bodycam.drivers.protocol.messages import Category, RecordingInfo

ROOT = Path(__file__).resolve().parents[1]
KEY = RecordingKey("CAM-J1", 7, "ab" * 32)
OTHER = RecordingKey("CAM-J1", 7, "cd" * 32)  # the same id rewritten by the camera: another recording


@dataclass(frozen=True)
class FakePart:
    number: int
    size: int
    checksum: str | None
    etag: str


def add_row(journal: Journal, key: RecordingKey, state: str, upload_id: str | None = "u1") -> None:
    """A row as every agent so far wrote it: the state as plain text."""
    with journal.transaction() as db:
        db.execute(
            "INSERT INTO recordings(serial, recording_id, camera_sha256, state, batch_id, size, start_us, end_us, "
            "clock_offset_s, category, name, object_key, upload_id, file_key, age_header, updated_at) "
            "VALUES(?,?,?,?,'b1',10,0,1,0.0,'training','n','k',?,x'00',x'00','t')",
            (*key.params, state, upload_id),
        )


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "state" / "journal.sqlite")


def test_states_are_the_text_existing_journals_hold() -> None:
    assert {s.value for s in RecordingState} == {
        "out_of_scope", "uploading", "completing", "verified", "erased", "failed", "pending"
    }  # fmt: skip
    assert DONE_STATES | IN_FLIGHT_STATES | RESTART_STATES == set(RecordingState)
    assert not (DONE_STATES & IN_FLIGHT_STATES or DONE_STATES & RESTART_STATES or IN_FLIGHT_STATES & RESTART_STATES)


def test_a_row_written_as_text_reads_back_as_its_state_and_a_state_is_stored_as_the_same_bytes(
    journal: Journal,
) -> None:
    add_row(journal, KEY, "uploading")
    assert journal.state(KEY) is RecordingState.UPLOADING and journal.state(OTHER) is None
    with journal.transaction():
        journal.mark_failed(KEY, "plaintext hash differs")
    (row,) = journal.query("SELECT typeof(state), hex(state), upload_id, error FROM recordings")
    assert (row[0], bytes.fromhex(row[1])) == ("text", b"failed")
    assert row["upload_id"] is None and row["error"] == "plaintext hash differs"


def test_each_transition_changes_only_its_recording(journal: Journal) -> None:
    add_row(journal, KEY, "uploading")
    add_row(journal, OTHER, "uploading")
    with journal.transaction():
        journal.mark_completing(KEY, "11" * 32, "22" * 32, 99)
    with journal.transaction():
        journal.mark_verified(KEY, "v1")
    row = journal.recording(KEY)
    assert row is not None and row["state"] == RecordingState.VERIFIED and row["file_key"] is None
    assert (row["plaintext_sha256"], row["ciphertext_size"], row["version_id"]) == ("11" * 32, 99, "v1")
    with journal.transaction():
        journal.mark_erased(KEY)
    assert journal.state(KEY) is RecordingState.ERASED and journal.state(OTHER) is RecordingState.UPLOADING
    assert journal.keys_in(RecordingState.UPLOADING) == [OTHER]
    assert journal.keys_in(RecordingState.UPLOADING, batch_id="b2") == []


def test_parts_are_journaled_only_while_the_recording_owns_the_upload(journal: Journal) -> None:
    add_row(journal, KEY, "uploading", upload_id="u1")
    journal.add_part(KEY, "u1", FakePart(2, 5, "s2", "e2"))
    journal.add_part(KEY, "u1", FakePart(1, 5, "s1", "e1"))
    journal.add_part(KEY, "u-old", FakePart(3, 5, "s3", "e3"))  # a stalled pull that lost its upload
    assert [p["part_number"] for p in journal.parts(KEY)] == [1, 2] and journal.parts(OTHER) == []
    with journal.transaction():
        journal.replace_parts(KEY, [FakePart(1, 7, "t1", "f1")])
    assert [(p["part_number"], p["size"]) for p in journal.parts(KEY)] == [(1, 7)]
    with journal.transaction():
        journal.mark_pending(KEY, "moved out of batch b1, sealed on schedule")
    row = journal.recording(KEY)
    assert row is not None and row["state"] == RecordingState.PENDING and journal.parts(KEY) == []
    assert (row["batch_id"], row["object_key"], row["upload_id"], row["file_key"]) == (None, None, None, None)


#: run in a child process: the journal's syncs are SQLite's own, seen only as system calls; ``uname``
#: marks where each phase starts (a system call nothing else here makes)
_SYNCS_CHILD = """
import os, sys
from dataclasses import dataclass
from pathlib import Path
from bodycam.agent.storage.journal import Journal, RecordingKey

@dataclass(frozen=True)
class Part:
    number: int
    size: int
    checksum: str
    etag: str

key = RecordingKey("CAM-J1", 7, "ab" * 32)
journal = Journal(Path(sys.argv[1]))
with journal.transaction() as db:
    db.execute(
        "INSERT INTO recordings(serial, recording_id, camera_sha256, state, batch_id, size, start_us, end_us, "
        "clock_offset_s, category, name, object_key, upload_id, updated_at) "
        "VALUES(?,?,?,'uploading','b1',10,0,1,0.0,'training','n','k','u1','t')", key.params)
os.uname()
for n in range(1, 21):
    journal.add_part(key, "u1", Part(n, 5, "c%d" % n, "e%d" % n))
os.uname()
with journal.transaction():
    journal.mark_completing(key, "aa" * 32, "bb" * 32, 100)
os.uname()
if sys.argv[2] == "kill":
    os.kill(os.getpid(), 9)
"""


def test_a_part_row_costs_no_fsync_and_survives_a_kill_9_and_a_state_change_still_syncs(tmp_path: Path) -> None:
    """A part's row commits without an fsync of its own (``synchronous=NORMAL`` for that transaction
    only): 20 parts, no fsync or fdatasync (before: one fdatasync each, 0.3 ms of CPU and 3 ms of the
    uploader's time a part). It is in the WAL file once committed, so a kill -9 keeps every row; a state
    change still syncs before it counts (and so makes the part rows before it durable against a power
    cut too: crash-safety.md), and the connection is back at ``synchronous=FULL`` after each part."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed")
    path = tmp_path / "state" / "journal.sqlite"
    trace = tmp_path / "trace"
    traced = subprocess.run(
        [strace, "-f", "-qq", "-e", "trace=fsync,fdatasync,uname", "-o", str(trace),
         sys.executable, "-c", _SYNCS_CHILD, str(path), "exit"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if traced.returncode != 0 and "ptrace" in traced.stderr.lower():
        pytest.skip(f"strace cannot trace here: {traced.stderr.strip()}")  # a container without ptrace
    assert traced.returncode == 0, traced.stderr
    phases: list[list[str]] = [[]]
    for line in trace.read_text().splitlines():
        if "uname(" in line:
            phases.append([])
        elif "fsync(" in line or "fdatasync(" in line:
            phases[-1].append(line)
    assert len(phases) == 4, trace.read_text()
    assert phases[1] == [], "20 part rows, no sync"
    assert phases[2], "the state change syncs before it counts"
    after = Journal(path)
    key = RecordingKey("CAM-J1", 7, "ab" * 32)
    assert [p["part_number"] for p in after.parts(key)] == list(range(1, 21))
    assert after.query("PRAGMA synchronous")[0][0] == 2  # FULL: every other write syncs
    after.close()
    killed = tmp_path / "killed" / "journal.sqlite"
    run = subprocess.run([sys.executable, "-c", _SYNCS_CHILD, str(killed), "kill"], timeout=120)
    assert run.returncode == -9
    again = Journal(killed)
    assert [p["part_number"] for p in again.parts(key)] == list(range(1, 21))
    assert again.state(key) is RecordingState.COMPLETING
    again.close()


def test_a_part_leaves_the_connection_syncing_in_full_even_when_it_fails(journal: Journal) -> None:
    """``add_part`` sets ``synchronous=NORMAL`` for its own transaction only: after a part, and after a
    part whose write failed, the next state change on the connection syncs in FULL."""
    add_row(journal, KEY, "uploading", upload_id="u1")
    journal.add_part(KEY, "u1", FakePart(1, 5, "s1", "e1"))
    assert journal.query("PRAGMA synchronous")[0][0] == 2
    with pytest.raises(StorageError):
        journal.add_part(KEY, "u1", FakePart(2, 5, None, "e2"))  # NOT NULL: the insert fails
    assert journal.query("PRAGMA synchronous")[0][0] == 2
    assert [p["part_number"] for p in journal.parts(KEY)] == [1]


def test_the_first_listing_offset_is_noted_once(journal: Journal) -> None:
    with journal.transaction():
        assert journal.first_listing_offset(KEY, 12.5) == 12.5
        assert journal.first_listing_offset(KEY, 99.0) == 12.5  # later dockings reuse the first
        assert journal.first_listing_offset(OTHER, None) is None  # the clock was invalid then: never placed
        assert journal.first_listing_offset(OTHER, 3.0) is None


def test_a_recording_write_outside_a_transaction_is_refused(journal: Journal) -> None:
    add_row(journal, KEY, "uploading")
    with pytest.raises(RuntimeError, match="inside Journal"):
        journal.mark_failed(KEY, "x")
    assert journal.state(KEY) is RecordingState.UPLOADING


def test_the_key_of_a_listed_recording() -> None:
    rec = RecordingInfo(7, 10, 0, 1, Category.TRAINING, bytes.fromhex("ab" * 32), "n.mp4")
    assert RecordingKey.of("CAM-J1", rec) == KEY and KEY.params == ("CAM-J1", 7, "ab" * 32)


def test_the_docs_and_the_sql_name_only_these_states() -> None:
    """journal.py's docstring and crash-safety.md list every state; every state SQL compares a recording
    with is one of them (a typo there would silently match nothing)."""
    states = {s.value for s in RecordingState}
    import bodycam.agent.storage.journal as journal_module

    assert journal_module.__doc__ is not None
    doc = (ROOT / "docs" / "crash-safety.md").read_text()
    # the "Recording states" section's table only: other sections' tables name files, not states
    states_section = doc.split("## Recording states", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", states_section, re.M))
    assert documented == states
    assert all(re.search(rf"\b{s}\b", journal_module.__doc__) for s in states)
    named: set[str] = set()
    for path in (ROOT / "agent").rglob("*.py"):
        source = path.read_text()
        for sql in re.findall(r"FROM recordings[^\"]*(?:\"\s*\"[^\"]*)*", source):
            # the recordings row's own state (``state``, ``r.state``), not a joined batch's (``b.state``)
            for group in re.findall(r"(?:(?<![\w.])|(?<=\br\.))state\s*(?:=|!=|IN)\s*\(?((?:'[a-z_]+',?\s*)+)", sql):
                named.update(re.findall(r"'([a-z_]+)'", group))
    assert named and named <= states, named - states


def test_an_old_journal_file_opens_and_reads(tmp_path: Path) -> None:
    """A journal written before the enum (states as literals) opens and its rows read as states."""
    path = tmp_path / "state" / "journal.sqlite"
    Journal(path).close()
    db = sqlite3.connect(path)
    db.execute(
        "INSERT INTO recordings(serial, recording_id, camera_sha256, state, size, start_us, end_us, clock_offset_s, "
        "category, name, updated_at) VALUES(?,?,?,'out_of_scope',1,0,1,0.0,'training','','t')",
        KEY.params,
    )
    db.commit()
    db.close()
    journal = Journal(path)
    try:
        assert journal.state(KEY) is RecordingState.OUT_OF_SCOPE
        assert journal.keys_in(RecordingState.OUT_OF_SCOPE) == [KEY]
    finally:
        journal.close()
