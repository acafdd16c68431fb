"""Bounded reads of small files a person or another host hands us (keys, policies, certificates, agreements).

One copy of the rule every such read follows: read at most ``limit + 1`` bytes, so a file that is huge,
or endless (``/dev/zero``, a log still growing), costs no more than the limit, and refuse it when it is
over; each caller names the file as its user knows it (a config key, a command-line option, a cache).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

from bodycam.drivers.errors import ConfigError


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


#: how a secret is opened: O_NONBLOCK, so that a named pipe planted at its path is refused by
#: :func:`read_private` (not a regular file) instead of holding the open until something writes to it
PRIVATE_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK


def read_private(fd: int, path: Path, what: str, limit: int, why: str = "") -> bytes:
    """The bytes of the secret ``what`` open at ``fd`` (with :data:`PRIVATE_OPEN_FLAGS`), checked by the
    descriptor, not by whatever the path names a moment later: a regular file that group and others
    cannot reach, of at most ``limit`` bytes; ConfigError otherwise, with the chmod to run (``why``: what
    a reader could do with it). OSError from the read is the caller's to word."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{what} {path} is not a regular file")
    if st.st_mode & 0o077:
        raise ConfigError(
            f"{what} {path} is accessible by group or others (mode {stat.S_IMODE(st.st_mode):04o}){why}; "
            f"run: chmod 600 {path}"
        )
    chunks: list[bytes] = []
    size = 0
    while chunk := os.read(fd, limit + 1 - size):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise ConfigError(f"{what} {path} is larger than {limit} bytes; not a key file")
    return b"".join(chunks)
