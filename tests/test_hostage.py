"""No camera can hold evidence hostage (issue 8, item 3): hostile cameras served over USB/IP and a pty.

Each hostile behaviour is a virtual-camera fault (docs/protocol.md, "Virtual camera faults"). A read
that never ends runs in a thread with a generous bound: before the fixes these reads never returned.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from bodycam.drivers.errors import LinkTimeoutError, ProtocolError
from bodycam.drivers.virtual.faults import Faults, parse_faults

from .sims import MEDIA, serve, spec

KiB = 1024
MiB = 1024 * KiB
BOUND_S = 90.0  # far above what the fixed dock takes on a loaded machine; the unfixed one never returns


def bounded(fn: Callable[[], Any]) -> BaseException | None:
    """Run ``fn`` in a thread; the exception it ended with (None if it returned). Fails if it hangs."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            fn()
        except BaseException as err:
            outcome.append(err)
        else:
            outcome.append(None)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(BOUND_S)
    assert outcome, f"the read was still running after {BOUND_S:.0f} s: a camera held its bay hostage"
    return outcome[0]


def test_new_faults_parse() -> None:
    faults = parse_faults(["empty-more-follows", "trickle-bps=100", "hang-read-at=1048576"])
    assert faults == Faults(empty_more_follows=True, trickle_bps=100, hang_read_at=MiB)
    assert faults.names == ["empty-more-follows", "trickle-bps", "hang-read-at"]


@pytest.mark.parametrize("medium", MEDIA)
def test_empty_more_follows_frames_are_a_protocol_error(medium: str) -> None:
    with serve(medium, spec("SIM-EMPTY", Faults(empty_more_follows=True), recordings=1, training=1, size=MiB)) as sim:
        with sim.connect(timeout=2.0) as cam:
            cam.open()
            cam.authenticate(sim.enrolled_key)
            rec = cam.recordings()[0]
            cam.retries = 0  # the first error names the fault; retries meet the same endless answer
            err = bounded(lambda: b"".join(cam.iter_read(rec)))
            assert isinstance(err, ProtocolError), err
            assert "empty MORE_FOLLOWS" in str(err)
            cam.retries = 2
            err = bounded(lambda: cam.read(rec, 0, 64 * KiB))
            assert isinstance(err, ProtocolError), err


@pytest.mark.parametrize("medium", MEDIA)
def test_a_trickling_camera_fails_the_whole_answer_deadline(medium: str) -> None:
    """Every frame arrives well inside the per-frame deadline; the answer as a whole never would."""
    with serve(medium, spec("SIM-TRICKLE", Faults(trickle_bps=100), recordings=1, training=1, size=MiB)) as sim:
        with sim.connect(timeout=1.0) as cam:
            cam.open()
            cam.authenticate(sim.enrolled_key)
            rec = cam.recordings()[0]
            cam.retries = 0  # the first error names the cause; a retry waits behind the trickle still queued
            err = bounded(lambda: cam.read(rec, 0, 64 * KiB))  # 64 KiB at 100 B/s: 11 minutes
            assert isinstance(err, LinkTimeoutError), err
            assert "slower than 512 KiB/s" in str(err)
            cam.retries = 2
            err = bounded(lambda: b"".join(cam.iter_read(rec, 0, span=64 * KiB)))
            assert isinstance(err, LinkTimeoutError), err


def test_a_camera_that_hangs_mid_recording_times_out() -> None:
    with serve("usbip", spec("SIM-HANG", Faults(hang_read_at=MiB), recordings=1, training=1, size=4 * MiB)) as sim:
        with sim.connect(timeout=1.0) as cam:
            cam.open()
            cam.authenticate(sim.enrolled_key)
            rec = cam.recordings()[0]
            got = bytearray()

            def read_all() -> None:
                for chunk in cam.iter_read(rec):
                    got.extend(chunk)

            err = bounded(read_all)
            assert isinstance(err, LinkTimeoutError), err
            assert 0 < len(got) <= MiB
