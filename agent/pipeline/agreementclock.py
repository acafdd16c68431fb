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

docs/decisions.md "The dock's clock going backwards" says why a mark and not a trusted time source.
"""

from __future__ import annotations

import math

from bodycam.agent.formats.times import iso_utc
from bodycam.agent.storage.journal import Journal
from bodycam.drivers.errors import BodycamError, StorageError

#: the journal ``meta`` key holding the mark (seconds since the epoch, as text)
MARK_KEY = "agreement_clock"
#: how far behind the mark the clock may read and still be judged by (the mark then)
TOLERANCE_S = 120.0
#: the mark is written when the clock passes it by this much (not one commit per recording)
STEP_S = 1.0


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
            f"the dock's clock reads {_iso(now)}, {mark - now:.0f} s earlier than {_iso(mark)}, "
            "the latest time it has judged data-sharing agreements by: nothing new is disclosed under them "
            "until the dock's clock is corrected (check chrony/NTP); the footage stays on the camera"
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
    text = journal.meta(MARK_KEY)
    if text is None:
        return None
    try:
        mark = float(text[:64])
    except ValueError:
        mark = math.nan
    if not math.isfinite(mark):
        raise StorageError(f"the journal's {MARK_KEY} mark is not a time; restore the journal from its backup")
    return mark


def _iso(when: float) -> str:
    try:
        return iso_utc(when, "seconds")
    except (OverflowError, ValueError, OSError):  # a mark out of datetime's range: still one line
        return f"{when:.0f} s after 1970"
