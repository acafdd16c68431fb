"""A bucket wrapper that bounds part uploads across all bays: a shared pool and an optional bandwidth cap."""

from __future__ import annotations

import threading
import time
from typing import Any


class TokenBucket:
    """Bytes per second, with one second of burst; ``take`` blocks until the bytes may go."""

    def __init__(self, rate_bytes_per_s: float) -> None:
        self.rate = rate_bytes_per_s
        self._tokens = rate_bytes_per_s
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def take(self, n: int) -> None:
        while True:
            with self._lock:
                now = time.monotonic()
                self._tokens = min(self.rate, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= min(n, self.rate):
                    self._tokens -= n
                    return
                wait = (min(n, self.rate) - self._tokens) / self.rate
            time.sleep(min(wait, 1.0))


class SharedUploads:
    """Delegates to ``bucket``; ``upload_part`` waits for a slot in the pool (and the bandwidth cap)."""

    def __init__(self, bucket: Any, slots: int, bandwidth_mbps: float | None = None) -> None:
        self._bucket = bucket
        self._slots = threading.BoundedSemaphore(max(1, slots))
        self._cap = TokenBucket(bandwidth_mbps * 1e6 / 8) if bandwidth_mbps else None

    def upload_part(
        self,
        key: str,
        upload_id: str,
        part_number: int,
        data: bytes | bytearray | memoryview,
        *,
        sha256_b64: str | None = None,
    ) -> Any:
        with self._slots:
            if self._cap is not None:
                self._cap.take(len(data))
            return self._bucket.upload_part(key, upload_id, part_number, data, sha256_b64=sha256_b64)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bucket, name)
