"""Bounded reads of small files a person or another host hands us (keys, policies, certificates, agreements).

One copy of the rule every such read follows: read at most ``limit + 1`` bytes, so a file that is huge,
or endless (``/dev/zero``, a log still growing), costs no more than the limit, and refuse it when it is
over; each caller names the file as its user knows it (a config key, a command-line option, a cache).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path

from bodycam.drivers.errors import ConfigError


def read_bounded(
    path: Path, limit: int, *, unreadable: Callable[[OSError], Exception], too_large: Callable[[], Exception]
) -> bytes:
    """The bytes of ``path``, at most ``limit`` of them.

    Opened with O_NONBLOCK, then read blocking: a named pipe at ``path`` with no writer (planted, or a
    mistaken config) held a plain open() for ever, and with it the daemon's start, each reload or each
    docking that reads the file; now it reads as empty and is refused, while one a writer feeds (a shell's
    ``<(...)``) is read to its end as before.

    Raises ``unreadable(err)`` when the file cannot be opened or read, ``too_large()`` when it holds
    more than ``limit`` bytes (the caller's errors, so its messages name what the user gave)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            os.set_blocking(fd, True)
            data = f.read(limit + 1)
            if not data and stat.S_ISFIFO(os.fstat(fd).st_mode):
                raise OSError(errno.EPIPE, "a named pipe that nothing writes to")
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


#: what the CLI's output files holding footage, personal data or the recordings' names are made, and the
#: directories it makes for them: the dock's state is private to its user whatever the umask, and so is
#: what an auditor or a party writes from the bucket (decrypted footage, reports, proof bundles)
PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700


def create_private(path: Path, *, exclusive: bool = False, follow_symlinks: bool = True) -> int:
    """Open ``path`` for writing (created, or truncated) as a file only its owner can read, whatever the
    umask: a umask of 000 made such files world-readable and one of 0277 left their owner unable to write
    them again. An existing regular file is narrowed to 0600 too (not a device the user named, such as
    /dev/stdout, which is not ours to change). ``exclusive``: refuse an existing file (FileExistsError);
    ``follow_symlinks=False`` for a name taken from untrusted input. Returns the descriptor; raises OSError.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags if follow_symlinks else flags | os.O_NOFOLLOW, PRIVATE_FILE_MODE)
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            os.fchmod(fd, PRIVATE_FILE_MODE)
    except OSError:
        os.close(fd)
        raise
    return fd


def make_dirs(path: Path, mode: int, *, exact: bool) -> None:
    """``mkdir -p`` where each directory it makes gets ``mode`` (``Path.mkdir(parents=True)`` gives the
    parents the umask's mode); with ``exact`` the mode whatever the umask (``mkdir``'s mode is only ever
    narrowed by it), else narrowed by the umask, never widened. Directories that exist are left as they
    are. Raises OSError (FileExistsError or NotADirectoryError where a part is a file)."""
    missing: list[Path] = []
    while not path.is_dir() and path.parent != path:
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode)
        except FileExistsError:
            if not directory.is_dir():
                raise
            continue  # another process made it meanwhile: its mode is its own
        if exact:
            os.chmod(directory, mode)


def make_private_dirs(path: Path) -> None:
    """``mkdir -p`` where each directory it makes is 0700 whatever the umask (:func:`make_dirs`)."""
    make_dirs(path, PRIVATE_DIR_MODE, exact=True)
