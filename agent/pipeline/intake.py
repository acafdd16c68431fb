"""How much one camera may make the dock remember: its listing, bounded per docking and over its life.

A listing is bounded (65,535 recordings, docs/protocol.md), but an enrolled camera with hostile firmware
can list recordings it makes up, new ids or hashes at every docking, each out of scope. Each one it
lists for the first time costs a journal row (its stay decision, its first-listing clock offset) and a
custody entry, and custody cannot drop them: they are the evidence that footage stayed. Re-docking
over and over, one camera would fill the state disk, and with it stop every other bay.

So the dock journals at most ``cameras.max_new_recordings_per_docking`` recordings new to it at one
docking, and ``cameras.max_recordings_per_camera`` facts (recordings noted, stay reasons changed) for
one camera over its life, counted in the journal (``camera_intake``). What is past the bound is not
read, journaled or touched: it stays on the camera, and the docking ends with one error naming the
camera, the count and the config key (custody ``error``, kind ``ListingLimitError``). A recording the
journal already knows (an upload in flight, one verified and awaiting its erase) is never held back by
the bound: only footage new to the dock is. A docking that leaves recordings unlisted does not set the
camera's clock, so those recordings keep the clock they were stamped under until the docking that
first lists them measures it (docs/crash-safety.md, "What one camera may make the dock store").
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field

from bodycam.agent.config import Config
from bodycam.agent.storage.journal import Journal, RecordingKey
from bodycam.drivers.errors import DeviceError
from bodycam.drivers.protocol.messages import RecordingInfo

PER_DOCKING_KEY = "cameras.max_new_recordings_per_docking"
PER_CAMERA_KEY = "cameras.max_recordings_per_camera"


class ListingLimitError(DeviceError):
    """A camera listed more recordings new to the dock than it may make the dock journal."""


@dataclass
class Intake:
    """One docking's allowance for one camera: ``left`` facts it may still journal (a recording new to
    the dock, or a stay reason that changed), within both bounds; ``held`` counts what it could not."""

    serial: str
    per_docking: int
    per_camera: int
    used: int  #: facts journaled for this camera before this docking
    taken: int = 0  #: facts journaled at this docking
    held: int = 0  #: recordings new to the dock left on the camera, unjournaled, at this docking
    held_reasons: int = 0  #: changed stay reasons not journaled at this docking
    new: set[RecordingKey] = field(default_factory=set)

    @classmethod
    def open(cls, journal: Journal, serial: str, config: Config) -> Intake:
        rows = journal.query("SELECT noted FROM camera_intake WHERE serial=?", (serial,))
        if rows:
            used = int(rows[0][0])
        else:  # a journal written before the count: what it holds of the camera already counts
            used = int(
                journal.query(
                    "SELECT COUNT(*) FROM (SELECT recording_id, camera_sha256 FROM recordings WHERE serial=? "
                    "UNION SELECT recording_id, camera_sha256 FROM recording_clocks WHERE serial=?)",
                    (serial, serial),
                )[0][0]
            )
        return cls(serial, config.max_new_recordings_per_docking, config.max_recordings_per_camera, used)

    @property
    def left(self) -> int:
        return max(0, min(self.per_docking - self.taken, self.per_camera - self.used - self.taken))

    def admit(self, journal: Journal, listing: Sequence[RecordingInfo]) -> list[RecordingInfo]:
        """The recordings this docking considers, in the camera's order: every one the journal knows, and
        the new ones while the allowance lasts. Reads only; ``commit`` counts what was journaled."""
        out: list[RecordingInfo] = []
        for rec in listing:
            key = RecordingKey.of(self.serial, rec)
            if _known(journal, key):
                out.append(rec)
            elif self.left > 0:
                self.taken += 1
                self.new.add(key)
                out.append(rec)
            else:
                self.held += 1
        return out

    def take_reason(self) -> bool:
        """Whether a changed stay reason may be journaled (it costs a custody entry): counts it if so."""
        if self.left > 0:
            self.taken += 1
            return True
        self.held_reasons += 1
        return False

    def commit_in(self, db: sqlite3.Connection) -> None:
        """In the caller's transaction: the camera's count, with what this docking journaled so far."""
        db.execute(
            "INSERT INTO camera_intake(serial, noted) VALUES(?,?) ON CONFLICT(serial) DO UPDATE SET noted=?",
            (self.serial, self.used + self.taken, self.used + self.taken),
        )

    def error(self) -> ListingLimitError | None:
        """What the docking ends with when it left anything unjournaled (None: nothing was held)."""
        if not self.held and not self.held_reasons:
            return None
        what = f"{self.held} recordings new to this dock" if self.held else ""
        if self.held_reasons:
            what += (" and " if what else "") + f"{self.held_reasons} changed stay reasons"
        total = self.used + self.taken
        if total >= self.per_camera:
            return ListingLimitError(
                f"camera {self.serial}: this dock has journaled {total} recordings and stay reasons of it, the "
                f"limit ({PER_CAMERA_KEY} = {self.per_camera}); {what} stay on the camera, untouched. A camera "
                "should not list that much: have an armourer check its firmware, or raise "
                f"{PER_CAMERA_KEY} if it is genuine"
            )
        return ListingLimitError(
            f"camera {self.serial} listed more recordings new to this dock than one docking takes "
            f"({PER_DOCKING_KEY} = {self.per_docking}); {what} stay on the camera, untouched, until the next "
            "docking (the clock was not set, so they keep the clock they were stamped under)"
        )


def _known(journal: Journal, key: RecordingKey) -> bool:
    rows = journal.query(
        "SELECT EXISTS(SELECT 1 FROM recordings WHERE serial=? AND recording_id=? AND camera_sha256=?) "
        "OR EXISTS(SELECT 1 FROM recording_clocks WHERE serial=? AND recording_id=? AND camera_sha256=?)",
        (*key.params, *key.params),
    )
    return bool(rows[0][0])
