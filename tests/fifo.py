"""A call that opens a named pipe nothing writes to, run so that a test fails instead of hanging."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def outcome_on_a_fifo(call: Callable[[], T], fifo: Path, what: str) -> T | BaseException:
    """What ``call`` (which opens ``fifo``) returned or raised. Fails the test when it is still in open()
    after 60 s, once a writer has let that open return so the thread ends rather than outlives the test."""
    outcome: list[T | BaseException] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as err:  # recorded for the caller's assertion
            outcome.append(err)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(60)
    hung = thread.is_alive()
    if hung:  # release the open before failing: a writer lets it return
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(60)
    assert not hung, f"{what} was still opening the named pipe after 60 s"
    assert outcome, f"{what} ended without a result"
    return outcome[0]
