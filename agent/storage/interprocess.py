"""What the daemon's bay workers share although each is its own process: the batch lock, the upload
pool and the bandwidth cap (docs/decisions.md, "bays in worker processes").

Each lives in a small file under the daemon's run directory and is guarded by ``flock(2)``. A lock
taken with ``flock`` belongs to an open file description, and the kernel drops it when the last
descriptor closes, so a worker killed with SIGKILL while it holds the batch lock or an upload slot
gives it back: no lock or slot leaks, unlike a POSIX semaphore, which has no undo. Within one process
a thread lock is taken first, since two threads of a process share their descriptors.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import random
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType

from bodycam.agent.storage.bucket import Bucket, Part, PartData
from bodycam.agent.storage.wrapper import BucketWrapper
from bodycam.drivers.errors import StorageError

#: the rate file: the theoretical arrival time of the next byte (monotonic seconds) and the bytes granted
_RATE = struct.Struct("<dQ")
BURST_S = 1.0  #: one second's worth of bytes may go at once, as the in-process TokenBucket allows
MAX_AHEAD_S = 600.0  #: a rate file from another boot (monotonic time restarts) cannot make anyone wait longer


def _open(path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as err:
        raise StorageError(f"cannot open {path} (shared by the bay workers): {err.strerror}") from err


def batch_lock_path(state_dir: Path) -> Path:
    """The one batch lock of a journal, whichever process takes it: the daemon and its bay workers,
    ``ingest --once`` and ``retention apply`` (which seals its erasure entries at once) may all run on one
    state directory, and a seal must never land between another's choice of batch and its journal row."""
    return state_dir / "batch.lock"


class ProcessLock:
    """A mutex across threads and processes: a thread lock, then ``flock`` on one descriptor per process.

    Used as the agent's batch lock, so a worker's "choose the open batch and journal the upload" and the
    daemon's "seal the open batch" never interleave (agent/pipeline/ingest.py ``Agent._start_upload``).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread = threading.Lock()
        self._fd: int | None = None

    def __enter__(self) -> ProcessLock:
        self._thread.acquire()
        try:
            if self._fd is None:
                self._fd = _open(self.path)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._thread.release()
            raise
        return self

    @property
    def fd(self) -> int:
        """The descriptor the lock is held on (valid inside the ``with`` block)."""
        assert self._fd is not None, "ProcessLock.fd outside the lock"
        return self._fd

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread.release()


class SharedSlots:
    """At most ``n`` holders at once across processes: slot files ``0..n-1``, each held by an exclusive ``flock``.

    Each acquisition opens its own descriptor (threads of one process must not share a slot's lock).
    """

    def __init__(self, directory: Path, n: int) -> None:
        self.directory = directory
        self.n = max(1, n)
        self._next = 0

    @contextlib.contextmanager
    def slot(self) -> Iterator[int]:
        """Hold one slot for the block; yields its number. A free slot is taken at once; when all are
        taken, the caller sleeps in the kernel on one of them (chosen at random, so waiters spread over
        the slots): polling cost 8 waiting workers a measurable share of a core."""
        fd, number = self._try_each()
        if fd is None:
            number = random.randrange(self.n)  # spreading waiters, not a secret
            fd = _open(self.directory / f"slot-{number}")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                raise
        try:
            yield number
        finally:
            os.close(fd)  # closing drops the lock

    def _try_each(self) -> tuple[int | None, int]:
        start = self._next
        self._next = (self._next + 1) % self.n
        for i in range(self.n):
            number = (start + i) % self.n
            fd = _open(self.directory / f"slot-{number}")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                os.close(fd)
                if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise StorageError(f"cannot lock upload slot {number} in {self.directory}: {err}") from err
                continue
            return fd, number
        return None, -1

    def held(self) -> int:
        """How many slots are held now (for tests and status; a slot may change hands meanwhile)."""
        busy = 0
        for number in range(self.n):
            fd = _open(self.directory / f"slot-{number}")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                busy += 1
            finally:
                os.close(fd)
        return busy


class SharedRate:
    """A bandwidth cap across processes: bytes per second with one second of burst.

    Kept as a virtual schedule (the "theoretical arrival time" of GCRA) in a 16-byte file: ``reserve(n)``
    pushes the schedule ``n / rate`` seconds on and tells the caller how long to wait, so the bytes of
    every worker are counted against one rate and each waiter sleeps without holding the lock. The
    file also counts the bytes granted, which is what the tests check (accounting, never timing).
    """

    def __init__(self, path: Path, rate_bytes_per_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if rate_bytes_per_s <= 0:
            raise ValueError("the rate must be positive")
        self.path = path
        self.rate = rate_bytes_per_s
        self._clock = clock
        self._lock = ProcessLock(path)

    def reset(self) -> None:
        """Start a fresh schedule (the daemon does at start: monotonic time restarts with the machine)."""
        with self._lock:
            self._write(0.0, 0)

    def reserve(self, n: int) -> float:
        """Count ``n`` bytes against the cap; returns the seconds to wait before sending them."""
        with self._lock:
            tat, granted = self._read()
            now = self._clock()
            tat = min(max(tat, now), now + MAX_AHEAD_S) + n / self.rate
            self._write(tat, granted + n)
        return max(0.0, tat - now - BURST_S)

    def take(self, n: int, sleep: Callable[[float], object] = time.sleep) -> None:
        wait = self.reserve(n)
        if wait > 0:
            sleep(wait)

    def granted(self) -> int:
        """Bytes counted against the cap since the last reset, by every process."""
        with self._lock:
            return self._read()[1]

    def _read(self) -> tuple[float, int]:
        data = os.pread(self._lock.fd, _RATE.size, 0)
        if len(data) != _RATE.size:
            return 0.0, 0
        tat, granted = _RATE.unpack(data)
        return float(tat), int(granted)

    def _write(self, tat: float, granted: int) -> None:
        os.pwrite(self._lock.fd, _RATE.pack(tat, granted), 0)


class PooledUploads(BucketWrapper):
    """``bucket`` whose ``upload_part`` takes a slot of the pool shared by every worker (and the shared
    cap); everything else goes straight through (the in-process twin is throttle.py's SharedUploads)."""

    def __init__(self, bucket: Bucket, slots: SharedSlots, rate: SharedRate | None = None) -> None:
        super().__init__(bucket)
        self._slots = slots
        self._rate = rate

    def upload_part(
        self, key: str, upload_id: str, part_number: int, data: PartData, *, checksum: str | None = None
    ) -> Part:
        with self._slots.slot():
            if self._rate is not None:
                self._rate.take(len(data))
            return self.inner.upload_part(key, upload_id, part_number, data, checksum=checksum)
