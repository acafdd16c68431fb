"""The same Camera code over USB/IP and over a pty: every operation, every fault, resume after re-plug."""

from __future__ import annotations

import hashlib
import time

import pytest

from bodycam.drivers.errors import AuthenticationError, DeviceError, DisconnectedError, LinkTimeoutError, ProtocolError
from bodycam.drivers.protocol.frames import Status
from bodycam.drivers.protocol.messages import Category
from bodycam.drivers.virtual.faults import Faults

from .sims import MEDIA, serve, spec

MiB = 1024 * 1024


@pytest.fixture(params=MEDIA)
def medium(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_identify_auth_clock_status_list_read_erase(medium: str) -> None:
    with serve(medium, spec("CAM-A1", recordings=4, training=2, size=3 * MiB + 123, clock_drift_s=-37.0)) as sim:
        with sim.connect() as cam:
            ident = cam.open()
            assert ident.serial == "CAM-A1" and ident.device_key == sim.enrolled_key
            with pytest.raises(AuthenticationError, match="not enrolled"):
                cam.authenticate(None)
            with pytest.raises(AuthenticationError):
                cam.list_recordings() if hasattr(cam, "list_recordings") else cam.recordings()
            cam.authenticate(sim.enrolled_key)
            before, after = cam.set_clock()
            assert before.offset_s == pytest.approx(-37.0, abs=0.5)
            assert after.offset_s == pytest.approx(0.0, abs=0.5)
            status = cam.status()
            assert status.recording_count == 4 and 0 <= status.battery_percent <= 100
            recs = cam.recordings()
            assert [r.category for r in recs].count(Category.TRAINING) >= 2
            rec = recs[0]
            digest = hashlib.sha256()
            for chunk in cam.iter_read(rec, span=512 * 1024):
                digest.update(chunk)
            assert digest.digest() == rec.sha256
            # ranged reads reproduce the same bytes
            middle = cam.read(rec, 1_000_000, 70_000)
            assert middle == sim.camera.content.read(sim.camera.recordings[rec.id], 1_000_000, 70_000)
            with pytest.raises(DeviceError) as refused:
                cam.erase(rec.id, bytes(32))
            assert refused.value.status == Status.HASH_MISMATCH
            assert rec.id in sim.camera.recordings
            cam.erase(rec.id, rec.sha256)
            assert rec.id not in sim.camera.recordings


def test_impostor_and_wrong_enrolment_are_refused(medium: str) -> None:
    with serve(medium, spec("CAM-IMP", faults=Faults(impostor=True))) as sim:
        with sim.connect() as cam:
            cam.open()
            with pytest.raises(AuthenticationError, match="could not prove"):
                cam.authenticate(sim.enrolled_key)
    with serve(medium, spec("CAM-OTHER")) as sim:
        with sim.connect() as cam:
            cam.open()
            with pytest.raises(AuthenticationError, match="differs from the enrolled"):
                cam.authenticate(bytes(range(32)))


@pytest.mark.parametrize(
    ("faults", "error", "match"),
    [
        (Faults(hostile_names=True), ProtocolError, "name"),
        (Faults(endless_list=True), ProtocolError, "count"),
    ],
)
def test_listing_faults_are_typed_errors(medium: str, faults: Faults, error: type[Exception], match: str) -> None:
    with serve(medium, spec("CAM-LIST", faults=faults, recordings=5)) as sim, sim.connect() as cam:
        cam.open()
        cam.authenticate(sim.enrolled_key)
        with pytest.raises(error, match=match):
            cam.recordings()


def test_lying_length_is_caught_at_the_end(medium: str) -> None:
    with serve(medium, spec("CAM-LIE", faults=Faults(lie_length=True), size=MiB)) as sim, sim.connect() as cam:
        cam.open()
        cam.authenticate(sim.enrolled_key)
        rec = cam.recordings()[0]
        assert rec.size == MiB + 4096
        with pytest.raises(ProtocolError, match="misreports"):
            for _ in cam.iter_read(rec):
                pass


def test_wrong_hash_is_visible_to_the_dock(medium: str) -> None:
    with serve(medium, spec("CAM-HASH", faults=Faults(wrong_hash=True), size=MiB)) as sim, sim.connect() as cam:
        cam.open()
        cam.authenticate(sim.enrolled_key)
        rec = cam.recordings()[0]
        pulled = hashlib.sha256(b"".join(cam.iter_read(rec))).digest()
        assert pulled != rec.sha256
        with pytest.raises(DeviceError) as refused:
            cam.erase(rec.id, rec.sha256)  # the camera refuses its own wrong listing too
        assert refused.value.status == Status.HASH_MISMATCH


def test_stall_gives_a_timeout(medium: str) -> None:
    with serve(medium, spec("CAM-STALL", faults=Faults(stall_ms=1500), size=MiB)) as sim:
        with sim.connect(timeout=0.5) as cam:
            cam.retries = 0
            cam.open()
            cam.authenticate(sim.enrolled_key)
            rec = cam.recordings()[0]
            started = time.monotonic()
            with pytest.raises(LinkTimeoutError):
                cam.read(rec, 0, 4096)
            assert time.monotonic() - started < 5


def test_bit_flips_are_caught_by_crc_and_retried(medium: str) -> None:
    with serve(medium, spec("CAM-FLIP", faults=Faults(flip_rate=2e-7), size=8 * MiB)) as sim:
        with sim.connect(timeout=2.0) as cam:
            cam.retries = 5
            cam.open()
            cam.authenticate(sim.enrolled_key)
            rec = cam.recordings()[0]
            data = hashlib.sha256()
            for chunk in cam.iter_read(rec, span=256 * 1024):
                data.update(chunk)
            assert data.digest() == rec.sha256  # every flipped frame was detected and re-read


def test_unplug_mid_read_then_resume_at_the_offset(medium: str) -> None:
    size = 6 * MiB
    with serve(medium, spec("CAM-UNPLUG", faults=Faults(unplug_at=2 * MiB), size=size)) as sim:
        cam = sim.connect(timeout=2.0)
        cam.open()
        cam.authenticate(sim.enrolled_key)
        rec = cam.recordings()[0]
        received = bytearray()
        with pytest.raises(DisconnectedError):
            for chunk in cam.iter_read(rec, span=512 * 1024):
                received += chunk
        cam.close()
        assert 0 < len(received) < size
        cam = sim.connect_when_back(timeout=2.0)
        cam.authenticate(sim.enrolled_key)
        rec2 = next(r for r in cam.recordings() if r.id == rec.id)
        for chunk in cam.iter_read(rec2, start=len(received)):
            received += chunk
        cam.close()
        assert hashlib.sha256(received).digest() == rec.sha256
