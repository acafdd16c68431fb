"""Bounded reads of small files a person or another host hands us (keys, policies, certificates, agreements).

One copy of the rule every such read follows: read at most ``limit + 1`` bytes, so a file that is huge,
or endless (``/dev/zero``, a log still growing), costs no more than the limit, and refuse it when it is
over; each caller names the file as its user knows it (a config key, a command-line option, a cache).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def read_bounded(
    path: Path, limit: int, *, unreadable: Callable[[OSError], Exception], too_large: Callable[[], Exception]
) -> bytes:
    """The bytes of ``path``, at most ``limit`` of them.

    Raises ``unreadable(err)`` when the file cannot be opened or read, ``too_large()`` when it holds
    more than ``limit`` bytes (the caller's errors, so its messages name what the user gave)."""
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except OSError as err:
        raise unreadable(err) from None
    if len(data) > limit:
        raise too_large()
    return data
