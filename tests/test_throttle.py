"""The daemon's shared upload pool (agent/storage/throttle.py): the token bucket's rate and burst, one cap
shared by every bay, the pool's slots, and the wrapper being a whole bucket.

The token bucket runs on an injected clock whose ``sleep`` advances it, so the rate is measured in the
clock's seconds: no real sleeping, nothing depends on how busy the machine is. The bucket under the
pool is a real local bucket.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from bodycam.agent.storage.bucket import Bucket, LocalBucket, Part, PartData
from bodycam.agent.storage.throttle import SharedUploads, TokenBucket
from bodycam.agent.storage.wrapper import BucketWrapper

KEY = "dock-01/b1/recordings/CAM1/1.age"


class FakeClock:
    """A monotonic clock that moves only when someone sleeps on it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0, "a waiter must never spin without sleeping"
        self.sleeps.append(seconds)
        self.now += seconds


def bucket_at(rate: float) -> tuple[TokenBucket, FakeClock]:
    clock = FakeClock()
    return TokenBucket(rate, clock=clock, sleep=clock.sleep), clock


def test_one_second_of_burst_goes_at_once_then_the_rate_holds() -> None:
    cap, clock = bucket_at(1000)
    cap.take(1000)
    assert clock.now == 0.0  # a full bucket: one second's worth without waiting
    for _ in range(90):
        cap.take(100)
    assert clock.now == pytest.approx(9.0, abs=0.01)  # 9,000 more bytes at 1,000 B/s


def test_an_idle_bucket_refills_only_up_to_one_second() -> None:
    cap, clock = bucket_at(1000)
    cap.take(1000)
    clock.now += 60.0  # idle for a minute: the burst is still one second, not sixty
    cap.take(1000)
    start = clock.now
    cap.take(1000)
    assert clock.now - start == pytest.approx(1.0, abs=0.01)


def test_a_part_larger_than_a_second_goes_and_leaves_a_debt() -> None:
    """A 5-second part is not refused or split: it waits for a full bucket, goes, and the next bytes
    wait for the debt to be paid, so the average stays at the rate."""
    cap, clock = bucket_at(1000)
    cap.take(5000)
    assert clock.now == 0.0
    cap.take(1000)
    assert clock.now == pytest.approx(5.0, abs=0.01)
    assert max(clock.sleeps) <= 1.0  # waits in steps of at most a second (a cancelled pull notices)


def test_bays_share_one_cap(tmp_path: Path) -> None:
    """Two bays uploading through the one pool get the cap between them, not each."""
    cap, clock = bucket_at(10_000)
    pool = SharedUploads(LocalBucket(tmp_path / "bucket"), slots=4, cap=cap)
    keys = [f"dock-01/b1/recordings/CAM{n}/1.age" for n in (1, 2)]
    uploads = {key: pool.start_upload(key) for key in keys}
    for number in range(1, 6):
        for key in keys:  # the bays take turns, as their threads would
            pool.upload_part(key, uploads[key], number, bytes(5000))
    # 50,000 bytes at 10,000 B/s, the first 10,000 from the burst: 4 s for both bays together
    assert clock.now == pytest.approx(4.0, abs=0.01)
    for key in keys:
        assert [p.size for p in pool.list_parts(key, uploads[key])] == [5000] * 5


def test_the_bandwidth_is_given_in_megabits(tmp_path: Path) -> None:
    pool = SharedUploads(LocalBucket(tmp_path / "bucket"), slots=1, bandwidth_mbps=8)
    assert pool._cap is not None and pool._cap.rate == 1_000_000  # 8 Mbit/s is 1 MB/s


class Gate(BucketWrapper):
    """A real bucket whose part uploads wait at a gate, counting how many are inside at once."""

    def __init__(self, inner: Bucket) -> None:
        super().__init__(inner)
        self.open = threading.Event()
        self.inside = self.most = 0
        self._lock = threading.Lock()

    def upload_part(
        self, key: str, upload_id: str, part_number: int, data: PartData, *, checksum: str | None = None
    ) -> Part:
        with self._lock:
            self.inside += 1
            self.most = max(self.most, self.inside)
        try:
            assert self.open.wait(60), "the gate was never opened"
            return super().upload_part(key, upload_id, part_number, data, checksum=checksum)
        finally:
            with self._lock:
                self.inside -= 1


def test_the_pool_lets_only_its_slots_upload_at_once(tmp_path: Path) -> None:
    gate = Gate(LocalBucket(tmp_path / "bucket"))
    pool = SharedUploads(gate, slots=2)
    upload_id = pool.start_upload(KEY)
    threads = [
        threading.Thread(target=pool.upload_part, args=(KEY, upload_id, n, bytes(10)), daemon=True)
        for n in (1, 2, 3, 4)
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while gate.inside < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert gate.inside == 2
    gate.open.set()
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive()
    assert gate.most == 2  # never more than the pool's slots, though four bays wanted to
    assert [p.number for p in pool.list_parts(KEY, upload_id)] == [1, 2, 3, 4]


def test_the_pool_is_a_whole_bucket(tmp_path: Path) -> None:
    """Everything but upload_part goes straight through: the pool stands wherever a Bucket does (it used
    to forward through __getattr__, and was patched onto the agent with a type: ignore)."""
    inner = LocalBucket(tmp_path / "bucket")
    pool = SharedUploads(inner, slots=1)
    assert isinstance(pool, Bucket) and pool.url == inner.url and pool.min_part_size == inner.min_part_size
    info = pool.put_object("dock-01/b1/custody.jsonl", b"entry\n")
    assert pool.head(info.key) is not None
    assert pool.get_bytes(info.key, max_size=100) == b"entry\n"
    assert [o.key for o in pool.iter_objects("dock-01/")] == [info.key]
    with pool.open_read(info.key) as reader:
        assert reader.read() == b"entry\n"
    upload_id = pool.start_upload(KEY)
    assert [u.upload_id for u in pool.open_uploads("dock-01/")] == [upload_id]
    pool.abort_upload(KEY, upload_id)
    pool.delete(info.key)
    assert pool.head(info.key) is None
    pool.close()
