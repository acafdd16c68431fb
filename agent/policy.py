"""Scope policy, default deny: only training-exercise footage ever leaves the dock.

A recording is in scope only if its time can be placed (agent/clocks.py: the offset in force when
it was stamped), it then lies wholly inside the window of a registered exercise that the camera was
allocated to, and the camera did not tag it operational. Everything else is never read past its
metadata.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass

from bodycam.drivers.errors import ConfigError
from bodycam.drivers.messages import Category, RecordingInfo

from .clocks import Placement
from .journal import Journal, utc_now

MAX_EXERCISE_HOURS = 72
#: an exercise id is a non-personal reference: it stands in clear in the shared manifest
EXERCISE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
MIN_MATCH = 3  # shortest site or officer id looked for inside an exercise id


@dataclass(frozen=True, slots=True)
class Exercise:
    id: str
    site: str  # free text: personal-ish data, kept on the dock and in the encrypted sidecar only
    start: float
    end: float
    cameras: frozenset[str]


@dataclass(frozen=True, slots=True)
class ScopeDecision:
    in_scope: bool
    reason: str
    exercise_id: str | None
    start: float  # corrected (dock clock) seconds since the epoch
    end: float


def decide(rec: RecordingInfo, serial: str, placement: Placement, exercises: Sequence[Exercise]) -> ScopeDecision:
    offset = placement.offset_s if placement.offset_s is not None else 0.0
    start = rec.start_us / 1e6 - offset
    end = rec.end_us / 1e6 - offset
    if rec.category == Category.OPERATIONAL:
        return ScopeDecision(False, "tagged operational by the camera", None, start, end)
    if placement.offset_s is None:  # default deny: a time that cannot be placed is in no window
        return ScopeDecision(False, placement.reason, None, start, end)
    allocated = [e for e in exercises if serial in e.cameras]
    if not allocated:
        return ScopeDecision(False, "camera is not allocated to any registered exercise", None, start, end)
    for ex in allocated:
        if ex.start <= start and end <= ex.end:
            return ScopeDecision(True, f"inside exercise {ex.id}", ex.id, start, end)
    return ScopeDecision(False, "outside every exercise window of this camera", None, start, end)


def parse_time(text: str, option: str) -> float:
    try:
        value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as err:
        raise ConfigError(f"{option} {text!r} is not an ISO 8601 time (e.g. 2026-11-24T09:00:00Z)") from err
    if value.tzinfo is None:
        raise ConfigError(f"{option} {text!r} needs a time zone (e.g. Z or +01:00)")
    return value.timestamp()


def add_exercise(journal: Journal, exercise: Exercise) -> None:
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
