"""A bucket wrapper that bounds part uploads across all bays: a shared pool and an optional bandwidth cap."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from bodycam.agent.storage.bucket import Bucket, Part, PartData
from bodycam.agent.storage.wrapper import BucketWrapper

_ROUNDING = 1e-6  # bytes: a wait computed in floats may refill a hair short of what it waited for


class TokenBucket:
    """Bytes per second, with one second of burst; ``take`` blocks until the bytes may go.

    A take larger than one second's worth waits for a full bucket and then leaves it in debt, so a
    part of any size goes through and the average stays at the rate. ``clock`` and ``sleep`` are
    injected so the rate can be tested without waiting (tests/test_throttle.py).
    """

    def __init__(
        self,
        rate_bytes_per_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate_bytes_per_s
        self._clock, self._sleep = clock, sleep
        self._tokens = rate_bytes_per_s
        self._last = clock()
        self._lock = threading.Lock()

    def take(self, n: int) -> None:
        while True:
            wait = self._try_take(n)
            if wait <= 0:
                return
            self._sleep(min(wait, 1.0))

    def _try_take(self, n: int) -> float:
        """Take ``n`` tokens and return 0, or return how long to wait before trying again."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.rate, self._tokens + (now - self._last) * self.rate)
            self._last = now
            needed = min(n, self.rate)
            if self._tokens >= needed - _ROUNDING:
                self._tokens -= n
                return 0.0
            return (needed - self._tokens) / self.rate


class SharedUploads(BucketWrapper):
    """``bucket`` whose ``upload_part`` waits for a slot in the pool (and the bandwidth cap); all else
    goes straight through. One instance is shared by every bay of the daemon."""

    def __init__(
        self, bucket: Bucket, slots: int, bandwidth_mbps: float | None = None, *, cap: TokenBucket | None = None
    ) -> None:
        super().__init__(bucket)
        self._slots = threading.BoundedSemaphore(max(1, slots))
        self._cap = cap if cap is not None else TokenBucket(bandwidth_mbps * 1e6 / 8) if bandwidth_mbps else None

    def upload_part(
        self, key: str, upload_id: str, part_number: int, data: PartData, *, checksum: str | None = None
    ) -> Part:
        with self._slots:
            if self._cap is not None:
                self._cap.take(len(data))
            return self.inner.upload_part(key, upload_id, part_number, data, checksum=checksum)
