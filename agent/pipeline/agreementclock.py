"""The time a dock judges data-sharing agreements by: never earlier than a time it judged by before.

An agreement's validity (``not_before``/``not_after``) is judged against the dock's wall clock
(docs/formats.md §10.2). A clock that goes backwards (an RTC reset, a bad NTP answer, someone setting
the date) would make an agreement that had expired cover new footage again, and its parties receive
footage it no longer covers. So the journal keeps a high-water mark of the latest time the dock has
judged agreements by (``meta`` key ``agreement_clock``, private like the rest of the journal, surviving
restarts), and:

* within ``TOLERANCE_S`` behind the mark (an NTP step, two bays racing) the dock judges by the mark,
  so an expiry once passed stays passed;
* further behind, it judges nothing: ``ClockBehindError``, one line naming the fix (correct the dock's
  clock). Nothing new is disclosed under any agreement (default deny); the footage stays on the camera,
  or in the journal for a later retry, and leaves once the clock is right again.

A clock once set far *forward* by mistake (a date typed as 2030) and then corrected leaves the mark
ahead of every true time: the dock would disclose nothing until real time caught up, years perhaps,
with the footage held on the cameras. :func:`reset` is the operator's way out (``bodycam-sync clock
reset-mark --yes``): it lowers the mark to the clock's time, only when that time is behind the mark,
with a custody ``agreement_clock_reset`` entry naming both marks in the same transaction, so an auditor
sees every time the dock was told to forget a time it had judged by.

docs/decisions.md "The dock's clock going backwards" says why a mark and not a trusted time source.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bodycam.agent.formats.times import iso_utc
from bodycam.agent.storage.custody_log import CustodyLog
from bodycam.agent.storage.journal import Journal
from bodycam.drivers.errors import BodycamError, ConfigError, StorageError

#: the journal ``meta`` key holding the mark (seconds since the epoch, as text)
MARK_KEY = "agreement_clock"
#: how far behind the mark the clock may read and still be judged by (the mark then)
TOLERANCE_S = 120.0
#: the mark is written when the clock passes it by this much (not one commit per recording)
STEP_S = 1.0
#: what an operator runs when the clock is right and the mark is not (named in ``ClockBehindError``)
RESET_COMMAND = "bodycam-sync clock reset-mark --yes"


class ClockBehindError(BodycamError):
    """The dock's clock reads earlier than a time it has already judged agreements by."""


def judge(journal: Journal, now: float) -> float:
    """The time to judge agreements by at wall-clock ``now``: ``max(now, mark)``, the mark raised to
    ``now``; ``ClockBehindError`` when ``now`` is more than ``TOLERANCE_S`` behind the mark."""
    if not math.isfinite(now):
        raise ClockBehindError("the dock's clock gives no usable time; correct the dock's clock")
    mark = high_water(journal)
    if mark is not None and now < mark - TOLERANCE_S:
        raise ClockBehindError(
            f"the dock's clock reads {readable(now)}, {mark - now:.0f} s earlier than {readable(mark)}, "
            "the latest time it has judged data-sharing agreements by: nothing new is disclosed under them "
            "until the dock's clock is corrected (check chrony/NTP), or, if it is right now and was once set "
            f"ahead, the mark is reset with '{RESET_COMMAND}' (recorded in custody); the footage stays on the camera"
        )
    if mark is None or now > mark + STEP_S:
        with journal.transaction() as db:  # MAX in SQL: two bays raising it at once keep the later
            db.execute(
                "INSERT INTO meta VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=CASE "
                "WHEN CAST(value AS REAL) < CAST(excluded.value AS REAL) THEN excluded.value ELSE value END",
                (MARK_KEY, repr(now)),
            )
    return now if mark is None else max(now, mark)


def high_water(journal: Journal) -> float | None:
    """The mark, or None before the dock first judged an agreement."""
    return _parse(journal.meta(MARK_KEY))


@dataclass(frozen=True, slots=True)
class Reset:
    """A reset of the mark: the time it held (``previous``) and the clock's time it holds now (``mark``)."""

    previous: float
    mark: float


def pending(journal: Journal, now: float) -> Reset:
    """What :func:`reset` would do at wall-clock ``now``, without doing it (the CLI shows it before
    ``--yes``). Raises ConfigError when there is nothing to reset (see :func:`reset`)."""
    return _check(high_water(journal), now)


def reset(journal: Journal, custody: CustodyLog, now: float) -> Reset:
    """Lower the mark to wall-clock ``now``, with its custody ``agreement_clock_reset`` entry (no s.62
    operation: a clock is the dock's bookkeeping) in the same transaction.

    Only a mark *ahead* of ``now`` is reset: the command exists to undo a time that was never true, not
    to move the mark at will, and a clock that has caught up needs nothing. Read and written in one
    transaction, so a bay raising the mark meanwhile is judged against the mark it raised.

    Raises ConfigError (usage: nothing to reset) when the dock has no mark yet or ``now`` is not behind
    it, StorageError when the mark in the journal is not a time or the journal cannot be written.
    """
    with journal.transaction() as db:
        done = _check(high_water(journal), now)  # the journal's one connection: read inside this transaction
        db.execute(
            "INSERT INTO meta VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value", (MARK_KEY, repr(now))
        )
        custody.append_in(db, "agreement_clock_reset", previous_mark=readable(done.previous), mark=readable(done.mark))
    return done


def _check(mark: float | None, now: float) -> Reset:
    if not math.isfinite(now):
        raise ConfigError("the dock's clock gives no usable time; correct the dock's clock first")
    if mark is None:
        raise ConfigError(
            "the dock has not judged a data-sharing agreement yet: there is no agreement clock mark to reset"
        )
    if now >= mark:
        raise ConfigError(
            f"the agreement clock mark {readable(mark)} is not ahead of the dock's clock ({readable(now)}): "
            "there is nothing to reset"
        )
    return Reset(mark, now)


def _parse(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        mark = float(text[:64])
    except ValueError:
        mark = math.nan
    if not math.isfinite(mark):
        raise StorageError(f"the journal's {MARK_KEY} mark is not a time; restore the journal from its backup")
    return mark


def readable(when: float) -> str:
    """``when`` as ISO 8601 UTC to the second; a mark beyond datetime's range (a clock set to year
    10000) as seconds since 1970, so the error, the CLI and the custody entry still say it in one line."""
    try:
        return iso_utc(when, "seconds")
    except (OverflowError, ValueError, OSError):  # a mark out of datetime's range: still one line
        return f"{when:.0f} s after 1970"
