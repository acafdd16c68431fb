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
from .dock import iso_window, make_dock, window
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


def test_an_expired_agreement_does_not_cover_footage_again_when_the_docks_clock_goes_back(tmp_path: Path) -> None:
    bucket = tmp_path / "bucket"
    dock = make_dock(tmp_path / "dock", bucket.as_uri())
    force = make_force(tmp_path, ("P1", "archive"))
    agreements = tmp_path / "agreements"
    share_under_agreements(dock, force, agreements)
    # DSA-T ends in an hour. The dock has already judged agreements at two hours on (then DSA-T had
    # expired and nothing went out under it); its clock has since been set back to now.
    unsigned = draft(tmp_path / "DSA-T.json", "DSA-T", "EX-1", {"P1": force.recipients["P1"]}, time.time() + 3600)
    signed = dock.cli("agreement", "sign", str(unsigned), "--key", str(force.keys / "controller"), "--out",
                      str(agreements))  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    journal = dock.journal()
    try:
        journal.set_meta("agreement_clock", repr(time.time() + 7200))
    finally:
        journal.close()
    win = window()
    dock.enroll("CAM-T1")
    dock.exercise("EX-1", win, "CAM-T1")
    args = ("--recordings", "2", "--training", "2", "--size", "40000", "--exercise", iso_window(win))
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
