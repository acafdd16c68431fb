"""A camera that answers just within every deadline holds the seal of the other cameras' footage for one of
its recordings at most, not for all of them (review of the daemon's bay lifecycle).

A batch past ``batch.max_age_s`` waits only for the pulls in it that progress (docs/crash-safety.md); a
camera that never stalls, only crawls, kept one going, and each of its next recordings joined the same
batch as the last ended, so the batch was sealed only once that camera had no footage left: a slow camera
with enough recordings kept every other camera's verified footage unsigned for as long as it liked. A new
upload now waits for a due batch's seal (``Agent._await_due_seal``). Real parts: two virtual cameras over
USB/IP (one paced with the ``trickle-bps`` fault), the shipped daemon, a local bucket, ``verify``.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from .dock import make_dock, window
from .test_daemon import Camera, start_daemon

MiB = 1024 * 1024
SLOW_RECORDINGS = 4


def _manifests(bucket: Path) -> list[dict[str, object]]:
    """Every signed manifest in the bucket, oldest batch first (batch ids sort by their sequence)."""
    return [json.loads(p.read_text()) for p in sorted(bucket.rglob("manifest.json"), key=lambda p: p.parent.name)]


def _of(manifest: dict[str, object], serial: str) -> set[int]:
    recordings = manifest["recordings"]
    assert isinstance(recordings, list)
    return {r["recording_id"] for r in recordings if r["camera_serial"] == serial}


def test_a_crawling_camera_holds_the_others_footage_unsigned_for_one_recording_at_most(tmp_path: Path) -> None:
    """A fast camera (2 recordings) and one paced at 1 MB/s (4 recordings of 8 MiB, about 8 s each), batches
    due after 2 s: the batch that signs the fast camera's footage holds at most 2 of the slow camera's
    recordings, and the slow camera's others follow in later batches; verify passes. Before the fix that
    batch held all 4 (it was sealed only once the slow camera had nothing left to pull)."""
    win = window()
    fast, slow = Camera("usbip", "CAM-FAST", win, tmp_path), Camera("usbip", "CAM-CRAWL", win, tmp_path)
    slow.args = ["--recordings", str(SLOW_RECORDINGS), "--training", str(SLOW_RECORDINGS), "--size", str(8 * MiB),
                 "--exercise", slow.args[-1], "--fault", "trickle-bps=1000000"]  # fmt: skip
    fast.args[fast.args.index("--size") + 1] = str(MiB)
    bucket = tmp_path / "bucket"
    dock = make_dock(tmp_path / "dock", bucket.as_uri())
    with dock.config_path.open("a") as f:
        f.write(f'[cameras]\nusbip = ["{fast.address}", "{slow.address}"]\n[batch]\nmax_age_s = 2\n')
    dock.enroll(fast.serial, slow.serial)
    dock.exercise("EX-CRAWL", win, fast.serial, slow.serial)
    log = tmp_path / "daemon.log"
    slow.dock()
    fast.dock()
    daemon = start_daemon(dock, tmp_path / "notify.sock", log)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            signed = set().union(*(_of(m, slow.serial) for m in _manifests(bucket)))
            if signed == set(slow.training):
                break
            time.sleep(0.5)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)
        fast.undock()
        slow.undock()
    manifests = _manifests(bucket)
    first = next((m for m in manifests if _of(m, fast.serial)), None)
    assert first is not None and _of(first, fast.serial) == set(fast.training), log.read_text()[-3000:]
    assert len(_of(first, slow.serial)) <= 2, [sorted(_of(m, slow.serial)) for m in manifests]
    assert set().union(*(_of(m, slow.serial) for m in manifests)) == set(slow.training), log.read_text()[-3000:]
    verified = dock.cli("verify", "--bucket", dock.bucket_url, "--allowed-signers", str(dock.allowed_signers))
    assert verified.returncode == 0, verified.stdout + verified.stderr
