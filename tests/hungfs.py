"""A disk that hangs in the kernel: a FUSE mount whose server never answers (no FUSE library needed).

The kernel queues every request on the mount (``lstat``, ``open``, ``read``) and the caller waits in it until
the connection answers or is aborted, as a read from a dead USB disk waits in the block layer; no Python
timeout interrupts it. ``release`` detaches the mount and closes the connection, which fails every waiting
call with ENOTCONN, so the threads that waited return.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

MS_NOSUID, MS_NODEV = 2, 4
MNT_DETACH = 2


@contextmanager
def hung_mount(target: Path) -> Iterator[Path]:
    """``target`` (an empty directory) becomes a mount point every access to which hangs until the end of the
    block; skips the test where the kernel refuses FUSE mounts (no /dev/fuse, no CAP_SYS_ADMIN)."""
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        fd = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
    except OSError as err:
        pytest.skip(f"no FUSE here to hang a disk with: /dev/fuse: {err.strerror}")
    options = f"fd={fd},rootmode=40000,user_id={os.getuid()},group_id={os.getgid()}".encode()
    if libc.mount(b"bodycam-hung", str(target).encode(), b"fuse.bodycam-hung", MS_NOSUID | MS_NODEV, options) != 0:
        code = ctypes.get_errno()
        os.close(fd)
        pytest.skip(f"the kernel refused a FUSE mount here: {errno.errorcode.get(code, code)}")
    try:
        yield target
    finally:
        libc.umount2(str(target).encode(), MNT_DETACH)
        os.close(fd)  # aborts the connection: every call waiting on the mount fails with ENOTCONN
