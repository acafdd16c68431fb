"""A dock whose clock goes backwards discloses nothing new under its agreements (agent/pipeline/agreementclock.py).

The dock judges agreements by its wall clock; a high-water mark in its journal of the latest time it
judged by keeps an expiry once passed passed: within a small tolerance behind the mark it judges by the
mark, further behind it judges nothing and says so, and the footage stays on the camera.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from bodycam.agent.pipeline import agreementclock
from bodycam.agent.storage.journal import Journal

from .agreement_setup import draft, make_force, share_under_agreements
from .dock import Dock, iso_window, make_dock, window
from .sims import SimProcess


def test_the_mark_survives_a_restart_and_a_clock_behind_it_judges_nothing(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    journal = Journal(path)
    t = 1_900_000_000.0
    assert agreementclock.judge(journal, t) == t
    assert agreementclock.judge(journal, t - 60) == t  # an NTP step inside the tolerance: judged by the mark
    journal.close()
    journal = Journal(path)  # a restart (or a reboot that reset the RTC) keeps the mark
    try:
        with pytest.raises(agreementclock.ClockBehindError) as err:
            agreementclock.judge(journal, t - 3600)
        message = str(err.value)
        assert "\n" not in message and "3600 s earlier" in message and "dock's clock is corrected" in message
        assert agreementclock.judge(journal, t + 10) == t + 10  # the clock set right: judged by it again
        assert agreementclock.high_water(journal) == t + 10
        journal.set_meta(agreementclock.MARK_KEY, "nan")  # a damaged journal is one line, never a free pass
        with pytest.raises(agreementclock.StorageError):
            agreementclock.judge(journal, t + 20)
    finally:
        journal.close()


def _dock_sharing_under(tmp_path: Path, name: str, expiry: float, mark: float, serial: str) -> tuple[Path, Dock, str]:
    """A dock sharing EX-1 with P1 under agreement ``name`` (ending at ``expiry``), its journal's agreement
    clock mark set to ``mark`` (a time it has already judged by), and camera ``serial`` enrolled on EX-1:
    the bucket, the dock and the exercise window as the sim takes it."""
    bucket = tmp_path / "bucket"
    dock = make_dock(tmp_path / "dock", bucket.as_uri())
    force = make_force(tmp_path, ("P1", "archive"))
    agreements = tmp_path / "agreements"
    share_under_agreements(dock, force, agreements)
    unsigned = draft(tmp_path / f"{name}.json", name, "EX-1", {"P1": force.recipients["P1"]}, expiry)
    signed = dock.cli("agreement", "sign", str(unsigned), "--key", str(force.keys / "controller"), "--out",
                      str(agreements))  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    journal = dock.journal()
    try:
        journal.set_meta("agreement_clock", repr(mark))
    finally:
        journal.close()
    win = window()
    dock.enroll(serial)
    dock.exercise("EX-1", win, serial)
    return bucket, dock, iso_window(win)


def test_an_expired_agreement_does_not_cover_footage_again_when_the_docks_clock_goes_back(tmp_path: Path) -> None:
    # DSA-T ends in an hour. The dock has already judged agreements at two hours on (then DSA-T had
    # expired and nothing went out under it); its clock has since been set back to now.
    bucket, dock, exercise = _dock_sharing_under(tmp_path, "DSA-T", time.time() + 3600, time.time() + 7200, "CAM-T1")
    args = ("--recordings", "2", "--training", "2", "--size", "40000", "--exercise", exercise)
    with SimProcess("usbip", "CAM-T1", *args, truth_dir=tmp_path) as sim:
        proc = dock.cli("ingest", "--once", "--json", "--usbip", sim.address)
        listed = json.loads(dock.cli("devices", "--json", "--usbip", sim.address).stdout)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    errors = [e for c in report["cameras"] for e in c["errors"]]
    assert len(errors) == 1 and "earlier than" in errors[0] and "until the dock's clock is corrected" in errors[0]
    assert report["cameras"][0]["out_of_scope_reasons"]["no_agreement"] == 2
    assert not [p for p in bucket.rglob("*.age") if "recordings" in p.parts]  # nothing went to P1
    assert listed["cameras"][0]["recordings"] == 2  # nothing lost: both wait on the camera
    stayed = dock.custody("skipped_out_of_scope")
    assert [(s["code"], s["reason"]) for s in stayed] == [("no_agreement", "the dock's clock is behind a time it "
                                                          "has judged data-sharing agreements by")] * 2  # fmt: skip


#: a clock once set to 2030 by mistake left the mark there (2030-01-01T00:00:00Z)
MARK_2030 = 1_893_456_000.0


def test_a_mark_left_in_the_future_by_a_clock_set_ahead_is_reset_by_the_operator_and_footage_leaves_again(
    tmp_path: Path,
) -> None:
    """The dock's clock once read 2030 and was corrected: the mark stayed in 2030 and every docking
    disclosed nothing for years, the footage held on the camera, with no way out but editing the journal.
    The docking's one line now names 'clock reset-mark --yes', which resets the mark (custody entry with
    both marks), and the next docking discloses again; the command changes nothing without --yes, and
    refuses once the mark is not ahead of the clock."""
    bucket, dock, exercise = _dock_sharing_under(tmp_path, "DSA-F", time.time() + 86400, MARK_2030, "CAM-F1")
    args = ("--recordings", "2", "--training", "2", "--size", "40000", "--exercise", exercise)
    with SimProcess("usbip", "CAM-F1", *args, truth_dir=tmp_path) as sim:
        held = dock.cli("ingest", "--once", "--json", "--usbip", sim.address)
        assert held.returncode == 1, held.stdout + held.stderr
        errors = [e for c in json.loads(held.stdout)["cameras"] for e in c["errors"]]
        assert len(errors) == 1 and "'bodycam-sync clock reset-mark --yes'" in errors[0], errors
        assert not [p for p in bucket.rglob("*.age") if "recordings" in p.parts]

        asked = dock.cli("clock", "reset-mark")  # without --yes: says what it would do, changes nothing
        assert asked.returncode == 2 and asked.stdout == "", asked
        assert len(asked.stderr.splitlines()) == 1 and "Traceback" not in asked.stderr
        assert "2030-01-01T00:00:00Z" in asked.stderr and "clock reset-mark --yes" in asked.stderr
        assert dock.custody("agreement_clock_reset") == []

        reset = dock.cli("clock", "reset-mark", "--yes", "--json")
        assert reset.returncode == 0, reset.stderr
        shown = json.loads(reset.stdout)
        assert shown["previous_mark"] == "2030-01-01T00:00:00Z" and shown["mark"] < "2030"

        code, report = dock.ingest_json(sim.address)
    assert code == 0, report
    assert len([p for p in bucket.rglob("*.age") if "recordings" in p.parts]) == 2  # both left, to P1
    (entry,) = dock.custody("agreement_clock_reset")
    assert (entry["previous_mark"], entry["mark"]) == (shown["previous_mark"], shown["mark"])
    assert entry["actor"].startswith("operator:")  # an auditor sees a person did it, and when
    journal = dock.journal()
    try:
        mark = agreementclock.high_water(journal)
        assert mark is not None and mark < MARK_2030
    finally:
        journal.close()

    again = dock.cli("clock", "reset-mark", "--yes")  # the mark is not ahead now: refused, one line
    assert again.returncode == 2 and again.stdout == "", again
    assert len(again.stderr.splitlines()) == 1 and "nothing to reset" in again.stderr
    assert len(dock.custody("agreement_clock_reset")) == 1


def test_reset_mark_is_refused_on_a_dock_that_has_judged_no_agreement(tmp_path: Path) -> None:
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    proc = dock.cli("clock", "reset-mark", "--yes")
    assert proc.returncode == 2 and proc.stdout == "", proc
    assert len(proc.stderr.splitlines()) == 1 and "no agreement clock mark to reset" in proc.stderr
    assert dock.custody("agreement_clock_reset") == []
