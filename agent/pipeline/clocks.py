"""Placing recordings in true time: the clock offset in force when each recording was stamped.

A camera may dock several times, and have its clock set each time, before its footage leaves
(guarantee 5 in docs/ARCHITECTURE.md). The offset measured at *this* docking is right only for footage stamped since the
last CLOCK_SET; older footage carries the older clock's error. So the journal keeps history:

* every authenticated clock reading, with the camera's clock epoch (protocol revision 2: a counter
  the camera bumps at each CLOCK_SET and stamps into each recording) and whether the clock was valid;
* for cameras without epochs (revision 1, mass storage), the offset measured at the docking that
  first listed each recording, before that docking set the clock.

A recording is corrected with its epoch's offset (the reading nearest its stamp), or with its
first-listing offset. When neither exists, or the clock was invalid (an RTC reset reads 1970), the
recording cannot be placed: it is out of scope, and the reason goes into custody (docs/protocol.md
"Clock epochs", docs/decisions.md).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from bodycam.agent.pipeline.intake import Intake
from bodycam.agent.storage.custody_log import CustodyLog
from bodycam.agent.storage.journal import Journal, RecordingKey, utc_now
from bodycam.drivers.device.api import CameraDevice, ClockReading
from bodycam.drivers.protocol.messages import RecordingInfo

#: revision-2 epoch value meaning "stamped before this firmware kept epochs": placed as a revision-1 recording
NO_EPOCH = 0


@dataclass(frozen=True, slots=True)
class Placement:
    """How one recording's camera times map to true time: subtract ``offset_s``, or, when it is None,
    they cannot be placed (``reason`` says why; ids only, it goes into custody)."""

    offset_s: float | None
    reason: str


@dataclass(frozen=True, slots=True)
class Docked:
    """What a docking learnt about the camera's clock and footage, in the order it learnt it."""

    before: ClockReading
    after: ClockReading
    listing: list[RecordingInfo]
    placements: dict[int, Placement]


def read_list_and_set(
    journal: Journal, custody: CustodyLog, serial: str, camera: CameraDevice, intake: Intake
) -> Docked:
    """Read the clock, list, place the listing, then set the clock: each step journaled before the next.

    The order is what makes it crash-safe: the old epoch's reading, and the first-listing offsets of
    recordings without epochs, are committed *before* CLOCK_SET destroys the clock they describe. A
    crash at any point leaves either the old clock on the camera or its reading in the journal.
    The camera must be authenticated (LIST, CLOCK_SET).

    Only what ``intake`` admits is placed and returned (agent/pipeline/intake.py); when it held any
    recording back, the clock is not set: those recordings are first listed at a later docking, whose
    reading must still be of the clock they were stamped under (``after`` is then ``before``).
    """
    before = camera.clock()
    record_reading(journal, custody, serial, before)
    listed = camera.recordings()
    custody.append("listed", camera=serial, count=len(listed))
    listing = intake.admit(journal, listed)
    placements = place_listing(journal, serial, listing, before, intake)
    if intake.held:
        return Docked(before, before, listing, placements)
    _, after = camera.set_clock()
    with journal.transaction() as db:
        _insert_reading(db, serial, after, set_by_dock=True)
        _check_epoch_advanced(db, custody, serial, before, after)
        custody.append_in(
            db,
            "clock_set",
            camera=serial,
            offset_s=round(before.offset_s, 6),
            offset_after_s=round(after.offset_s, 6),
            round_trip_s=round(before.round_trip_s, 6),
            epoch=before.epoch,
            epoch_after=after.epoch,
            clock_valid=before.valid,
        )
    return Docked(before, after, listing, placements)


def record_reading(journal: Journal, custody: CustodyLog, serial: str, before: ClockReading) -> None:
    """Journal a reading taken before the dock sets the clock (and, for an invalid clock, say so)."""
    with journal.transaction() as db:
        _check_epoch_order(db, custody, serial, before)
        if not before.valid:
            custody.append_in(
                db,
                "clock_invalid",
                camera=serial,
                camera_time_s=round(before.camera_time, 6),
                epoch=before.epoch,
                reason="camera clock not set since its RTC lost power (or outside 2000..2100); the dock sets "
                "it, footage stamped under it stays on the camera",
            )
        _insert_reading(db, serial, before, set_by_dock=False)


def _check_epoch_order(db: sqlite3.Connection, custody: CustodyLog, serial: str, before: ClockReading) -> None:
    """An epoch lower than one already seen means the camera's counter restarted (reflashed, replaced
    board): every epoch number seen so far may now name two clocks, so their readings are retired and
    footage stamped under any of those numbers is not placed (default deny; fresh numbers are)."""
    if before.epoch is None:
        return
    (top,) = db.execute("SELECT MAX(epoch) FROM clock_readings WHERE serial=? AND superseded=0", (serial,)).fetchone()
    if top is not None and before.epoch < top:
        db.execute("UPDATE clock_readings SET superseded=1 WHERE serial=?", (serial,))
        custody.append_in(db, "clock_epoch_reset", camera=serial, epoch=before.epoch, highest_seen=int(top))


def _check_epoch_advanced(
    db: sqlite3.Connection, custody: CustodyLog, serial: str, before: ClockReading, after: ClockReading
) -> None:
    """A CLOCK_SET must advance the epoch (docs/protocol.md "Clock epochs"). A camera whose epoch stayed
    (or went back) across the set now names two clocks with one number: the one its older footage was
    stamped under and the one just set. Placing by the reading nearest a stamp would then correct that
    footage with the new clock's offset, and a drift could carry footage made outside an exercise into
    its window; so those numbers' readings are retired (custody ``clock_epoch_reset``) and footage
    stamped under them stays on the camera (default deny)."""
    if before.epoch is None or after.epoch is None or after.epoch > before.epoch:
        return
    db.execute(
        "UPDATE clock_readings SET superseded=1 WHERE serial=? AND epoch BETWEEN ? AND ?",
        (serial, after.epoch, before.epoch),
    )
    custody.append_in(db, "clock_epoch_reset", camera=serial, epoch=after.epoch, highest_seen=before.epoch)


def _insert_reading(db: sqlite3.Connection, serial: str, reading: ClockReading, set_by_dock: bool) -> None:
    db.execute(
        "INSERT INTO clock_readings(serial, epoch, valid, camera_time, offset_s, round_trip_s, set_by_dock, "
        "measured_at) VALUES(?,?,?,?,?,?,?,?)",
        (
            serial,
            reading.epoch,
            int(reading.valid),
            reading.camera_time,
            reading.offset_s,
            reading.round_trip_s,
            int(set_by_dock),
            utc_now(),
        ),
    )


def place_listing(
    journal: Journal, serial: str, listing: Sequence[RecordingInfo], before: ClockReading, intake: Intake
) -> dict[int, Placement]:
    """Each listed recording's placement; notes the first-listing offset of recordings without epochs.

    ``before`` is this docking's reading taken before it set the clock: for a recording this dock
    lists for the first time, the clock it was stamped under is still (at best) the one read then.
    The recordings ``intake`` admitted as new are counted against the camera in the same transaction.
    """
    out: dict[int, Placement] = {}
    with journal.transaction() as db:
        for rec in listing:
            out[rec.id] = _place(journal, db, serial, rec, before)
        intake.commit_in(db)
    return out


def _place(
    journal: Journal, db: sqlite3.Connection, serial: str, rec: RecordingInfo, before: ClockReading
) -> Placement:
    if not rec.stamped_validly:
        return Placement(None, "clock not placeable: stamped under an invalid camera clock (RTC reset, before 2000)")
    if rec.clock_epoch is not None and rec.clock_epoch != NO_EPOCH:
        return _place_by_epoch(db, serial, rec, rec.clock_epoch)
    return _place_by_first_listing(journal, serial, rec, before)


def _place_by_epoch(db: sqlite3.Connection, serial: str, rec: RecordingInfo, epoch: int) -> Placement:
    rows = db.execute(
        "SELECT valid, camera_time, offset_s, superseded FROM clock_readings WHERE serial=? AND epoch=?",
        (serial, epoch),
    ).fetchall()
    if any(r["superseded"] for r in rows):  # the number names two clocks: footage of either cannot be told apart
        return Placement(
            None,
            f"clock not placeable: clock epoch {epoch} is ambiguous (the camera's epoch counter restarted, or "
            "did not advance when its clock was set)",
        )
    readings = rows
    if not readings:
        return Placement(None, f"clock not placeable: this dock never measured clock epoch {epoch} of the camera")
    if not all(r["valid"] for r in readings):
        return Placement(None, f"clock not placeable: the camera clock was invalid (RTC reset) in epoch {epoch}")
    stamp = rec.start_us / 1e6
    nearest = min(readings, key=lambda r: abs(r["camera_time"] - stamp))  # the drift nearest the recording
    return Placement(float(nearest["offset_s"]), f"clock epoch {epoch}")


def _place_by_first_listing(journal: Journal, serial: str, rec: RecordingInfo, before: ClockReading) -> Placement:
    """In place_listing's transaction: the offset noted when this dock first listed the recording (now,
    the first time)."""
    offset = journal.first_listing_offset(RecordingKey.of(serial, rec), before.offset_s if before.valid else None)
    if offset is None:
        return Placement(None, "clock not placeable: the camera clock was invalid when this dock first listed it")
    return Placement(float(offset), "offset at first listing")
