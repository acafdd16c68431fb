"""Scope policy, default deny: only training-exercise footage ever leaves the dock.

A recording is in scope only if its time can be placed (agent/pipeline/clocks.py: the offset in force when
it was stamped), it then lies wholly inside the window of a registered exercise that the camera was
allocated to, and the camera did not tag it operational. Everything else is never read past its
metadata.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass

from bodycam.agent.formats.times import iso_utc
from bodycam.agent.pipeline.clocks import Placement
from bodycam.agent.storage.custody_log import CustodyLog
from bodycam.agent.storage.journal import Journal, RecordingState, utc_now
from bodycam.drivers.errors import ConfigError
from bodycam.drivers.protocol.messages import Category, RecordingInfo

MAX_EXERCISE_HOURS = 72
#: an exercise id is a non-personal reference: it stands in clear in the shared manifest
EXERCISE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
MIN_MATCH = 3  # shortest site or officer id looked for inside an exercise id


@dataclass(frozen=True, slots=True)
class Exercise:
    """A training exercise: its window (dock clock) and the cameras whose footage in it may leave."""

    id: str
    site: str  # free text: personal-ish data, kept on the dock and in the encrypted sidecar only
    start: float
    end: float
    cameras: frozenset[str]


#: why footage stayed on the camera, as a code that may stand in custody (no name, site or time in it)
OPERATIONAL = "operational"  # the camera tagged it operational
NO_EXERCISE = "no_exercise"  # the camera is allocated to no registered exercise
OUTSIDE_WINDOW = "outside_window"  # it is not wholly inside any window of the camera's exercises
CLOCK_UNPLACEABLE = "clock_unplaceable"  # its camera time cannot be placed in true time
#: in scope, but no valid data-sharing agreement covers it (decided by ingest after ``decide``, with
#: ``[agreements]``; the same text as ``formats.agreements.NO_AGREEMENT``, which custody records)
NO_AGREEMENT = "no_agreement"
STAY_REASONS = (OPERATIONAL, NO_EXERCISE, OUTSIDE_WINDOW, CLOCK_UNPLACEABLE, NO_AGREEMENT)
IN_WINDOW = "in_window"


@dataclass(frozen=True, slots=True)
class Miss:
    """How far a recording lies outside the nearest window of its camera's exercises (dock only:
    shown on the dock's terminal and JSON, never written to custody or the bucket)."""

    exercise_id: str
    off_by_s: float  # seconds the recording reaches outside the window
    side: str  # "before" (starts before it opens) or "after" (ends after it closes)

    def to_json(self) -> dict[str, object]:
        return {"exercise": self.exercise_id, "off_by_s": round(self.off_by_s, 1), "side": self.side}

    def describe(self) -> str:
        # "starts 4.0 h before it opens": the side and the distance in one phrase (it read "4.0 h outside
        # (starts before it opens)", two parentheses deep inside the stayed-on-the-camera line)
        if self.side == "before":
            return f"nearest {self.exercise_id}: starts {_duration(self.off_by_s)} before it opens"
        return f"nearest {self.exercise_id}: ends {_duration(self.off_by_s)} after it closes"


@dataclass(frozen=True, slots=True)
class ScopeDecision:
    """Whether one recording may leave the camera, and why (a STAY_REASONS code when it stays)."""

    in_scope: bool
    reason: str
    exercise_id: str | None
    start: float  # corrected (dock clock) seconds since the epoch
    end: float
    code: str = IN_WINDOW  #: one of STAY_REASONS when out of scope
    nearest: Miss | None = None  #: for OUTSIDE_WINDOW, the window it missed by least


def decide(rec: RecordingInfo, serial: str, placement: Placement, exercises: Sequence[Exercise]) -> ScopeDecision:
    offset = placement.offset_s if placement.offset_s is not None else 0.0
    start = rec.start_us / 1e6 - offset
    end = rec.end_us / 1e6 - offset
    if rec.category == Category.OPERATIONAL:
        return ScopeDecision(False, "tagged operational by the camera", None, start, end, OPERATIONAL)
    if placement.offset_s is None:  # default deny: a time that cannot be placed is in no window
        return ScopeDecision(False, placement.reason, None, start, end, CLOCK_UNPLACEABLE)
    allocated = [e for e in exercises if serial in e.cameras]
    if not allocated:
        return ScopeDecision(False, "camera is not allocated to any registered exercise", None, start, end, NO_EXERCISE)
    for ex in allocated:
        if ex.start <= start and end <= ex.end:
            return ScopeDecision(True, f"inside exercise {ex.id}", ex.id, start, end)
    nearest = min((_miss(ex, start, end) for ex in allocated), key=lambda m: m.off_by_s)
    return ScopeDecision(
        False, "outside every exercise window of this camera", None, start, end, OUTSIDE_WINDOW, nearest
    )


def _miss(ex: Exercise, start: float, end: float) -> Miss:
    before, after = ex.start - start, end - ex.end
    return Miss(ex.id, max(before, after), "before" if before >= after else "after")


def _duration(seconds: float) -> str:
    seconds = abs(seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def parse_time(text: str, option: str) -> float:
    try:
        value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as err:
        raise ConfigError(f"{option} {text!r} is not an ISO 8601 time (e.g. 2026-11-24T09:00:00Z)") from err
    if value.tzinfo is None:
        raise ConfigError(f"{option} {text!r} needs a time zone (e.g. Z or +01:00)")
    return value.timestamp()


def _check(exercise: Exercise) -> None:
    if not EXERCISE_ID.fullmatch(exercise.id):
        raise ConfigError(
            "exercise ID must be a reference of 1-64 ASCII letters, digits, '-', '_' or '.' (e.g. EX-2026-0142): "
            "it stands in clear in the shared manifest"
        )
    if exercise.end <= exercise.start:
        raise ConfigError(f"exercise {exercise.id}: --end must be after --start")
    if exercise.end - exercise.start > MAX_EXERCISE_HOURS * 3600:
        raise ConfigError(f"exercise {exercise.id}: a window over {MAX_EXERCISE_HOURS} h is not a training exercise")
    if not exercise.cameras:
        raise ConfigError(f"exercise {exercise.id}: allocate at least one --camera")


def add_exercise(journal: Journal, exercise: Exercise) -> None:
    _check(exercise)
    with journal.transaction() as db:
        officers = [str(r[0]) for r in db.execute("SELECT DISTINCT officer FROM allocations")]
        _refuse_personal_reference(exercise, officers)
        if db.execute("SELECT 1 FROM exercises WHERE id=?", (exercise.id,)).fetchone():
            raise ConfigError(f"exercise {exercise.id} is already registered")
        db.execute(
            "INSERT INTO exercises(id, site, start_ts, end_ts, created_at) VALUES(?,?,?,?,?)",
            (exercise.id, exercise.site, exercise.start, exercise.end, utc_now()),
        )
        db.executemany(
            "INSERT INTO exercise_cameras(exercise_id, serial) VALUES(?,?)",
            [(exercise.id, sn) for sn in sorted(exercise.cameras)],
        )


def _refuse_personal_reference(exercise: Exercise, officers: Sequence[str]) -> None:
    """The exercise id is published in clear, so it must be a reference, not a description.

    It may not spell out the (personal, free-text) site or the id of an officer the dock knows;
    compared on letters and digits only, ignoring case, so 'Hendon_Range' matches 'hendon range'.
    """
    reference = _folded(exercise.id)
    site = _folded(exercise.site)
    if len(site) >= MIN_MATCH and site in reference:
        raise ConfigError(
            f"exercise ID {exercise.id!r} contains its --site, which must stay out of the shared manifest; "
            "use a reference such as EX-2026-0142"
        )
    for officer in officers:
        if len(_folded(officer)) >= MIN_MATCH and _folded(officer) in reference:
            raise ConfigError(
                f"exercise ID {exercise.id!r} contains an officer id, which must stay out of the shared manifest; "
                "use a reference such as EX-2026-0142"
            )


def _folded(text: str) -> str:
    return "".join(c for c in text.casefold() if c.isalnum())


def list_exercises(journal: Journal) -> list[Exercise]:
    cams: dict[str, set[str]] = {}
    for row in journal.query("SELECT exercise_id, serial FROM exercise_cameras"):
        cams.setdefault(row[0], set()).add(row[1])
    return [
        Exercise(r["id"], r["site"], r["start_ts"], r["end_ts"], frozenset(cams.get(r["id"], ())))
        for r in journal.query("SELECT * FROM exercises ORDER BY start_ts, id")
    ]


#: recording states in which footage has begun to leave the dock (its bytes are, or are going, in the bucket)
LEFT_STATES = (RecordingState.UPLOADING, RecordingState.COMPLETING, RecordingState.VERIFIED, RecordingState.ERASED)


def find_exercise(journal: Journal, exercise_id: str) -> Exercise:
    """The registered exercise ``exercise_id``; ConfigError naming ``exercise list`` when there is none."""
    for ex in list_exercises(journal):
        if ex.id == exercise_id:
            return ex
    raise ConfigError(f"no exercise {exercise_id!r} is registered (see 'bodycam-sync exercise list')")


def amend_exercise(journal: Journal, custody: CustodyLog, amended: Exercise) -> Exercise:
    """Replace a registered exercise's window, cameras or site, with a custody entry ``exercise_amended``.

    The entry carries the id, the window and the camera serials (ids and times, never the site), so an
    auditor can see why a later docking placed footage differently. Footage that already left under
    the old window stays where it is: a scope decision is taken once per recording."""
    _check(amended)
    with journal.transaction() as db:
        if not db.execute("SELECT 1 FROM exercises WHERE id=?", (amended.id,)).fetchone():
            raise ConfigError(f"no exercise {amended.id!r} is registered (see 'bodycam-sync exercise list')")
        officers = [str(r[0]) for r in db.execute("SELECT DISTINCT officer FROM allocations")]
        _refuse_personal_reference(amended, officers)
        db.execute(
            "UPDATE exercises SET site=?, start_ts=?, end_ts=? WHERE id=?",
            (amended.site, amended.start, amended.end, amended.id),
        )
        db.execute("DELETE FROM exercise_cameras WHERE exercise_id=?", (amended.id,))
        db.executemany(
            "INSERT INTO exercise_cameras(exercise_id, serial) VALUES(?,?)",
            [(amended.id, sn) for sn in sorted(amended.cameras)],
        )
        custody.append_in(
            db,
            "exercise_amended",
            exercise=amended.id,
            start=iso_utc(amended.start),
            end=iso_utc(amended.end),
            cameras=sorted(amended.cameras),
        )
    return amended


def remove_exercise(journal: Journal, custody: CustodyLog, exercise_id: str) -> None:
    """Unregister an exercise no footage has left under (custody ``exercise_removed``).

    Once footage has left under it, the exercise is the reason that footage is in the bucket: removing
    it would leave evidence whose scope the dock can no longer explain, so it is refused."""
    with journal.transaction() as db:
        if not db.execute("SELECT 1 FROM exercises WHERE id=?", (exercise_id,)).fetchone():
            raise ConfigError(f"no exercise {exercise_id!r} is registered (see 'bodycam-sync exercise list')")
        marks = ",".join("?" * len(LEFT_STATES))
        (left,) = db.execute(
            f"SELECT COUNT(*) FROM recordings WHERE exercise_id=? AND state IN ({marks})",  # noqa: S608 - marks only
            (exercise_id, *LEFT_STATES),
        ).fetchone()
        if left:
            raise ConfigError(
                f"exercise {exercise_id} cannot be removed: {left} recording(s) already left the dock under it; "
                f"correct its window with 'bodycam-sync exercise amend {exercise_id}' instead"
            )
        db.execute("DELETE FROM exercise_cameras WHERE exercise_id=?", (exercise_id,))
        db.execute("DELETE FROM exercises WHERE id=?", (exercise_id,))
        custody.append_in(db, "exercise_removed", exercise=exercise_id)


@dataclass(frozen=True, slots=True)
class Caught:
    """What an exercise caught: recordings in scope under it, and how far they got."""

    recordings: int = 0
    bytes: int = 0
    verified: int = 0  # in the bucket and verified (erased from the camera or not)
    in_progress: int = 0  # started leaving, not yet verified

    def to_json(self) -> dict[str, int]:
        return {
            "recordings": self.recordings,
            "bytes": self.bytes,
            "verified": self.verified,
            "in_progress": self.in_progress,
        }


def caught_by_exercise(journal: Journal) -> dict[str, Caught]:
    """exercise id -> what it caught, from the journal (recordings that started leaving under it)."""
    out: dict[str, Caught] = {}
    for row in journal.query(
        "SELECT exercise_id, COUNT(*), COALESCE(SUM(size), 0), "
        "SUM(state IN ('verified','erased')), SUM(state IN ('uploading','completing')) "
        "FROM recordings WHERE exercise_id IS NOT NULL AND state IN ('uploading','completing','verified','erased') "
        "GROUP BY exercise_id"
    ):
        out[str(row[0])] = Caught(int(row[1]), int(row[2]), int(row[3] or 0), int(row[4] or 0))
    return out
