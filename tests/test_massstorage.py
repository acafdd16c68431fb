"""Cameras that mount as a disk (docs/mass-storage.md) through the very pipeline the wire cameras use.

A virtual camera's volume is written into ``tmp_path/mnt/CAM-M1``; the real Agent ingests it into a
local bucket, which the auditor's Verifier then checks. Hostile volumes (path traversal, symlinks out
of the mount, bad or missing signatures, size lies, malformed or oversized JSON) must be refused with
a typed error, and nothing outside the dock's state directory and bucket may be read or written.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bodycam.agent.audit.verify import Verifier
from bodycam.agent.formats.agecrypt import Decryptor
from bodycam.agent.formats.sshsig import parse_allowed_signers
from bodycam.agent.pipeline.ingest import Agent, CameraReport
from bodycam.agent.storage.bucket import LocalBucket, open_bucket
from bodycam.drivers.device import massstorage as ms
from bodycam.drivers.device.massstorage import MassStorageCamera, find_mass_storage
from bodycam.drivers.errors import (
    AuthenticationError,
    BodycamError,
    DeviceError,
    IntegrityError,
    ProtocolError,
    UploadError,
)
from bodycam.drivers.protocol.frames import Status
from bodycam.drivers.protocol.messages import MAX_RECORDINGS, Category
from bodycam.drivers.virtual.massstorage_writer import Volume, sign_index, write_volume
from bodycam.drivers.virtual.scenario import make_recordings

from .dock import Dock, make_dock, window

MiB = 1024 * 1024
SERIAL = "CAM-M1"
SIZE = 2 * MiB + 12_345  # three read chunks, not aligned
DRIFT_S = 3 * 3600.0  # uncorrected, every recording would fall outside the exercise window


# -- a dock, a volume, and what lies around them -------------------------------------------------------
class Bench:
    def __init__(self, tmp_path: Path, *, erase: bool = False, enroll: bool = True) -> None:
        self.tmp = tmp_path
        self.window = window()
        self.bucket_dir = tmp_path / "bucket"
        self.dock: Dock = make_dock(tmp_path / "dock", f"file://{self.bucket_dir}", erase=erase)
        if enroll:
            self.dock.enroll(SERIAL)
        self.dock.exercise("EX-M1", self.window, SERIAL)
        self.outside = tmp_path / "outside" / "secret.bin"
        self.outside.parent.mkdir()
        self.outside.write_bytes(hashlib.sha256(b"not camera footage").digest() * 40_000)
        self.state_dir = self.dock.config.state_dir

    def volume(self, *, fault: str | None = None, drift: float = DRIFT_S, serial: str = SERIAL) -> Volume:
        recs = make_recordings(5, 3, SIZE, self.window, serial=serial)
        return write_volume(
            self.tmp / "mnt" / serial, serial, recs, clock_offset_s=drift, fault=fault, outside=self.outside
        )

    def agent(self, **kw: Any) -> Agent:
        return Agent(self.dock.config, **kw)

    def ingest(self, mount: Path, **kw: Any) -> CameraReport:
        agent = self.agent(**kw)
        try:
            report = agent.session(MassStorageCamera(mount))
            agent.seal_and_publish()
            return report
        finally:
            agent.close()

    def uploaded(self) -> dict[int, Path]:
        """recording id -> its object in the bucket (any batch)."""
        found: dict[int, Path] = {}
        for path in self.bucket_dir.rglob("*.age"):
            if "recordings" in path.parts and ms.META_DIR not in path.parts and ".uploads" not in path.parts:
                assert path.parent.name == SERIAL
                rid = int(path.name.removesuffix(".age"))
                assert rid not in found, f"recording {rid} uploaded twice"
                found[rid] = path
        return found

    def decrypted_sha256(self, path: Path) -> bytes:
        dec = Decryptor([self.dock.identity])
        digest = hashlib.sha256()
        with path.open("rb") as f:
            while block := f.read(MiB):
                digest.update(dec.update(block))
        digest.update(dec.finalize())
        return digest.digest()

    def custody(self) -> list[dict[str, Any]]:
        journal = self.dock.journal()
        try:
            return [json.loads(row[0]) for row in journal.query("SELECT line FROM custody ORDER BY seq")]
        finally:
            journal.close()

    def verify(self) -> None:
        signers = parse_allowed_signers(self.dock.allowed_signers.read_text())
        report = Verifier(open_bucket(f"file://{self.bucket_dir}"), signers, [self.dock.identity]).run()
        assert report.ok, report.findings
        assert report.batches and all(b.signature_ok for b in report.batches)

    def snapshot(self) -> dict[str, tuple[int, int, str]]:
        """Every path under tmp_path except the dock's state directory and the bucket: mode, size, content."""
        skip = (self.state_dir, self.bucket_dir)
        out: dict[str, tuple[int, int, str]] = {}
        for dirpath, dirnames, filenames in os.walk(self.tmp):
            here = Path(dirpath)
            dirnames[:] = [d for d in dirnames if here / d not in skip]
            for name in dirnames + filenames:
                path = here / name
                st = path.lstat()
                body = ""
                if path.is_symlink():
                    body = os.readlink(path)
                elif path.is_file():
                    body = hashlib.sha256(path.read_bytes()).hexdigest()
                out[str(path.relative_to(self.tmp))] = (st.st_mode, st.st_size, body)
        return out


def drive(mount: Path, enrolled: bytes | None) -> list[bytes]:
    """Everything a session asks of a camera, directly: open, authenticate, clock, list, read all."""
    digests = []
    with MassStorageCamera(mount) as camera:
        camera.open()
        camera.authenticate(enrolled)
        camera.set_clock()
        for rec in camera.recordings():
            digest = hashlib.sha256()
            for chunk in camera.iter_read(rec):
                digest.update(chunk)
            digests.append(digest.digest())
    return digests


def enrolled_key(serial: str = SERIAL) -> bytes:
    from bodycam.drivers.virtual.server import device_key_hex

    return bytes.fromhex(device_key_hex(serial))


# -- the pipeline --------------------------------------------------------------------------------------
def test_pipeline_ingests_exactly_the_training_recordings_and_erases_only_after_verification(
    tmp_path: Path,
) -> None:
    bench = Bench(tmp_path, erase=True)
    vol = bench.volume()
    training = {r.id: r for r in vol.recordings if r.category == Category.TRAINING}
    operational = [r for r in vol.recordings if r.category != Category.TRAINING]
    assert len(training) == 3 and len(operational) == 2
    before = bench.snapshot()

    report = bench.ingest(vol.mount)

    assert report.errors == []
    assert report.address == f"mass-storage:{vol.mount}"
    assert (report.serial, report.recordings, report.in_scope, report.out_of_scope) == (SERIAL, 5, 3, 2)
    assert (report.verified, report.erased, report.bytes_read) == (3, 3, 3 * SIZE)
    objects = bench.uploaded()
    assert set(objects) == set(training)
    for rid, path in objects.items():
        assert bench.decrypted_sha256(path) == vol.sha256(training[rid])
    bench.verify()

    events = bench.custody()
    (clock,) = [e for e in events if e["event"] == "clock_set"]
    assert abs(clock["offset_s"] - DRIFT_S) < 30, clock  # estimated from written_at_us, then corrected
    assert clock["offset_after_s"] == clock["offset_s"]  # a disk's clock is not set
    (docked,) = [e for e in events if e["event"] == "docked"]
    assert docked["transport"] == "mass-storage"
    for rid in training:
        seqs = {e["event"]: e["seq"] for e in events if e.get("recording") == rid}
        assert seqs["verified"] < seqs["erased"], seqs

    # the volume: training files gone, operational ones untouched, erased.json names what went
    after = bench.snapshot()
    gone = {str(vol.path_of(r).relative_to(tmp_path)) for r in training.values()}
    erased_json = str((vol.mount / ms.META_DIR / ms.ERASED_FILE).relative_to(tmp_path))
    assert set(before) - set(after) == gone
    assert set(after) - set(before) == {erased_json}
    assert {k: v for k, v in before.items() if k not in gone} == {k: v for k, v in after.items() if k != erased_json}
    erased = json.loads((vol.mount / ms.META_DIR / ms.ERASED_FILE).read_text())
    assert erased["serial"] == SERIAL
    assert {e["id"]: e["sha256"] for e in erased["erased"]} == {rid: vol.sha256(r).hex() for rid, r in training.items()}

    # docked again: the erased recordings are no longer listed, nothing moves twice
    again = bench.ingest(vol.mount)
    assert again.errors == []
    assert (again.recordings, again.in_scope, again.verified, again.erased) == (2, 0, 0, 0)
    assert set(bench.uploaded()) == set(training)
    bench.verify()


def test_without_erase_after_upload_the_volume_is_left_as_it_was(tmp_path: Path) -> None:
    bench = Bench(tmp_path, erase=False)
    vol = bench.volume(drift=-45.0)
    before = bench.snapshot()
    report = bench.ingest(vol.mount)
    assert report.errors == [] and (report.verified, report.erased) == (3, 0)
    assert bench.snapshot() == before
    bench.verify()


class UnreachableAtCompletion(LocalBucket):
    def complete_upload(self, key: str, upload_id: str, parts: Any) -> Any:
        raise UploadError(f"{key}: the bucket did not answer (test)")


def test_nothing_is_erased_before_the_bucket_verified_it(tmp_path: Path) -> None:
    bench = Bench(tmp_path, erase=True)
    vol = bench.volume()
    before = bench.snapshot()
    report = bench.ingest(vol.mount, bucket=UnreachableAtCompletion(bench.bucket_dir))
    assert report.erased == 0 and report.verified == 0
    assert any("did not answer" in e for e in report.errors), report.errors
    assert bench.snapshot() == before  # every file still there, no erased.json
    assert not [e for e in bench.custody() if e["event"] == "erased"]


# -- hostile volumes -----------------------------------------------------------------------------------
HOSTILE = [
    # fault, error type, message, raised where (the session's step)
    ("traversal", ProtocolError, "must be a relative path under DCIM/"),
    ("symlink", ProtocolError, "is a symbolic link: refused"),
    ("symlink-dir", ProtocolError, "is a symbolic link: refused"),
    ("size-lie", IntegrityError, "signed index says"),
    ("tampered-index", AuthenticationError, "not its enrolled key's signature"),
    ("bad-signature", AuthenticationError, "not its enrolled key's signature"),
    ("impostor", AuthenticationError, "differs from the enrolled one"),
]


@pytest.mark.parametrize(("fault", "error", "message"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_a_hostile_volume_is_refused_and_nothing_outside_is_read_or_written(
    tmp_path: Path, fault: str, error: type[BodycamError], message: str
) -> None:
    bench = Bench(tmp_path, erase=True)
    vol = bench.volume(fault=fault)
    secret = hashlib.sha256(bench.outside.read_bytes()).digest()
    before = bench.snapshot()

    with pytest.raises(error, match=message):
        drive(vol.mount, enrolled_key())
    report = bench.ingest(vol.mount)

    assert any(message in e for e in report.errors), report.errors
    assert vol.hostile_id is not None
    objects = bench.uploaded()
    assert vol.hostile_id not in objects
    assert all(bench.decrypted_sha256(p) != secret for p in objects.values())
    if fault == "size-lie":  # one recording refused, the other in-scope ones still arrive
        assert report.verified == 2 and len(objects) == 2
    else:
        assert report.verified == 0 and objects == {}
    assert report.erased == 0 or fault == "size-lie"
    # nothing outside the state directory and the bucket changed, but the erasures of verified recordings
    after = bench.snapshot()
    erased = {str(vol.path_of(r).relative_to(tmp_path)) for r in vol.recordings if r.id in objects}
    erased_json = str((vol.mount / ms.META_DIR / ms.ERASED_FILE).relative_to(tmp_path))
    assert {k: v for k, v in after.items() if k != erased_json} == {k: v for k, v in before.items() if k not in erased}
    errors = [e for e in bench.custody() if e["event"] == "error"]  # the kind in the chain, the text apart
    assert errors and any(e["error"] == error.__name__ for e in errors), errors
    journal = bench.dock.journal()
    try:
        details = [str(r[0]) for r in journal.query("SELECT text FROM custody_detail")]
    finally:
        journal.close()
    assert any(message in d for d in details), details
    if list(bench.bucket_dir.rglob("manifest.json")):  # a refused pull keeps its batch open until it resumes
        bench.verify()


def test_an_unenrolled_volume_is_refused(tmp_path: Path) -> None:
    bench = Bench(tmp_path, enroll=False)
    vol = bench.volume()
    before = bench.snapshot()
    with pytest.raises(AuthenticationError, match="is not enrolled"):
        drive(vol.mount, None)
    report = bench.ingest(vol.mount)
    assert any(f"bodycam-sync enroll {SERIAL} --key " in e for e in report.errors), report.errors
    assert report.recordings == 0 and bench.uploaded() == {}
    assert bench.snapshot() == before


def test_a_volume_signed_for_another_serial_is_refused(tmp_path: Path) -> None:
    bench = Bench(tmp_path)
    vol = bench.volume()
    # a genuine index of another camera, copied next to this camera's device.json
    other = bench.volume(serial="CAM-M2")
    for name in (ms.INDEX_FILE, ms.SIGNATURE_FILE):
        (vol.mount / ms.META_DIR / name).write_bytes((other.mount / ms.META_DIR / name).read_bytes())
    with pytest.raises(AuthenticationError, match="signature"):
        drive(vol.mount, enrolled_key())


# -- bounds on every value read from the disk --------------------------------------------------------
def _index(vol: Volume) -> dict[str, Any]:
    return dict(json.loads((vol.mount / ms.META_DIR / ms.INDEX_FILE).read_bytes()))


def _entry_change(**changes: Any) -> Callable[[dict[str, Any]], Any]:
    def change(doc: dict[str, Any]) -> Any:
        doc["recordings"][0].update(changes)
        return doc

    return change


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    def change(doc: dict[str, Any]) -> Any:
        doc[key] = value
        return doc

    return change


def _raw(text: str) -> Callable[[dict[str, Any]], Any]:
    return lambda _doc: text.encode()


MALFORMED_INDEX: list[tuple[str, Callable[[dict[str, Any]], Any], str]] = [
    ("absolute path", _entry_change(file="/etc/passwd"), "relative path"),
    ("dot-dot", _entry_change(file="100BODY/../../../etc/passwd"), "relative path"),
    ("backslash", _entry_change(file="100BODY\\..\\x.mp4"), "relative path"),
    ("into BODYCAM", _entry_change(file="../BODYCAM/device.json"), "relative path"),
    ("too deep", _entry_change(file="a/b/c/d/e.mp4"), "relative path"),
    ("control character", _entry_change(file="100BODY/clip\x1b[31m.mp4"), "relative path"),
    ("over-long name", _entry_change(file="100BODY/" + "A" * 200), "relative path|longer than"),
    ("size over the limit", _entry_change(size=64 * 1024**3 + 1), "'size'"),
    ("negative size", _entry_change(size=-1), "'size'"),
    ("size as float", _entry_change(size=1.0), "'size' must be an integer"),
    ("size as bool", _entry_change(size=True), "'size' must be an integer"),
    ("time before 2000", _entry_change(start_us=0), "outside 2000..2100"),
    ("ends before it starts", _entry_change(end_us=946_684_800_000_000), "ends before it starts"),
    ("sha256 not hex", _entry_change(sha256="zz" * 32), "'sha256'"),
    ("sha256 uppercase", _entry_change(sha256="AB" * 32), "'sha256'"),
    ("id over u32", _entry_change(id=2**32), "'id'"),
    ("unknown field", _entry_change(comment="x"), "unknown fields"),
    ("category with control", _entry_change(category="train\x00"), "control characters"),
    ("serial mismatch", _set("serial", "CAM-OTHER"), "another serial"),
    ("written_at mismatch", _set("written_at_us", 1_000_000_000_000_000), "differs from device.json"),
    ("format 2", _set("format", 2), "'format'"),
    ("recordings not a list", _set("recordings", {}), "must be a list"),
    ("too many recordings", _set("recordings", [{}] * (MAX_RECORDINGS + 1)), "the limit is 65535"),
    ("duplicate key", _raw('{"format": 1, "format": 1}'), "duplicate key"),
    ("NaN", _raw('{"format": NaN}'), "not a JSON number"),
    ("deep nesting", _raw("[" * 200_000 + "]" * 200_000), "nests too deeply|not valid JSON"),
    ("huge integer", _raw('{"format": ' + "9" * 5000 + "}"), "not valid JSON"),
    ("not UTF-8", lambda _doc: b'{"format": "\xff"}', "not valid UTF-8"),
    ("over 16 MiB", lambda _doc: b" " * (ms.MAX_INDEX_JSON + 1), "at most 16777216"),
]


def _duplicates(doc: dict[str, Any]) -> Any:
    doc["recordings"][1]["id"] = doc["recordings"][0]["id"]
    return doc


def _same_file(doc: dict[str, Any]) -> Any:
    doc["recordings"][1]["file"] = doc["recordings"][0]["file"].upper()
    return doc


MALFORMED_INDEX += [("duplicate id", _duplicates, "twice"), ("same file twice", _same_file, "another recording")]


@pytest.mark.parametrize(("change", "message"), [m[1:] for m in MALFORMED_INDEX], ids=[m[0] for m in MALFORMED_INDEX])
def test_a_signed_but_malformed_index_is_a_protocol_error(
    tmp_path: Path, change: Callable[[dict[str, Any]], Any], message: str
) -> None:
    recs = make_recordings(2, 2, 1000, window(), serial=SERIAL)
    vol = write_volume(tmp_path / "mnt" / SERIAL, SERIAL, recs)
    doc = change(_index(vol))
    sign_index(vol.mount, SERIAL, doc if isinstance(doc, bytes) else json.dumps(doc).encode())
    with MassStorageCamera(vol.mount) as camera:
        camera.open()
        with pytest.raises(ProtocolError, match=message):
            camera.authenticate(enrolled_key())
        assert not camera.authenticated
        with pytest.raises(AuthenticationError, match="authenticate first"):
            camera.recordings()


MALFORMED_DEVICE: list[tuple[str, Any, str]] = [
    ("serial", "../../etc", "must be 1 to 32 ASCII letters, digits"),
    ("serial", "A" * 33, "limit is 32"),
    ("model", "Sentinel\u202eBWC", "control characters"),
    ("firmware", 14, "must be a string"),
    ("device_key", "00" * 31, "64 lowercase hexadecimal"),
    ("written_at_us", 4_102_444_800_000_001, "outside 2000..2100"),
    ("vid", 70_000, "'vid'"),
]


@pytest.mark.parametrize(("key", "value", "message"), MALFORMED_DEVICE, ids=[f"{m[0]}" for m in MALFORMED_DEVICE])
def test_a_malformed_device_json_is_a_protocol_error(tmp_path: Path, key: str, value: Any, message: str) -> None:
    vol = write_volume(tmp_path / "mnt" / SERIAL, SERIAL, make_recordings(1, 1, 10, window(), serial=SERIAL))
    path = vol.mount / ms.META_DIR / ms.DEVICE_FILE
    doc = json.loads(path.read_text())
    doc[key] = value
    path.write_text(json.dumps(doc))
    with MassStorageCamera(vol.mount) as camera, pytest.raises(ProtocolError, match=message):
        camera.open()


def test_metadata_files_must_be_regular_files_inside_the_volume(tmp_path: Path) -> None:
    vol = write_volume(tmp_path / "mnt" / SERIAL, SERIAL, make_recordings(1, 1, 10, window(), serial=SERIAL))
    device = vol.mount / ms.META_DIR / ms.DEVICE_FILE
    elsewhere = tmp_path / "device.json"
    device.rename(elsewhere)
    device.symlink_to(elsewhere)
    with MassStorageCamera(vol.mount) as camera, pytest.raises(ProtocolError, match="symbolic link"):
        camera.open()
    device.unlink()
    device.write_bytes(b" " * (ms.MAX_DEVICE_JSON + 1))
    with MassStorageCamera(vol.mount) as camera, pytest.raises(ProtocolError, match="at most 4096"):
        camera.open()
    device.unlink()
    os.mkfifo(device)  # a FIFO would block a naive open(); it is refused without opening
    with MassStorageCamera(vol.mount) as camera, pytest.raises(ProtocolError, match="not a regular file"):
        camera.open()
    device.unlink()
    os.link(elsewhere, device)  # a hard link to a file outside the mount
    with MassStorageCamera(vol.mount) as camera, pytest.raises(ProtocolError, match="hard link"):
        camera.open()
    sig = vol.mount / ms.META_DIR / ms.SIGNATURE_FILE
    device.unlink()
    elsewhere.rename(device)
    sig.write_bytes(sig.read_bytes()[:63])
    with MassStorageCamera(vol.mount) as camera:
        camera.open()
        with pytest.raises(ProtocolError, match="exactly 64"):
            camera.authenticate(enrolled_key())


def test_unknown_category_tags_are_not_training(tmp_path: Path) -> None:
    vol = write_volume(tmp_path / "mnt" / SERIAL, SERIAL, make_recordings(1, 1, 10, window(), serial=SERIAL))
    doc = _index(vol)
    doc["recordings"][0]["category"] = "evidence"
    sign_index(vol.mount, SERIAL, json.dumps(doc).encode())
    with MassStorageCamera(vol.mount) as camera:
        camera.open()
        camera.authenticate(enrolled_key())
        (rec,) = camera.recordings()
        assert rec.category == Category.UNKNOWN
        assert rec.name == vol.recordings[0].name


# -- reading and erasing ------------------------------------------------------------------------------
@pytest.fixture
def opened(tmp_path: Path) -> Iterator[tuple[MassStorageCamera, Volume]]:
    recs = make_recordings(3, 3, 3 * MiB + 7, window(), serial=SERIAL)
    vol = write_volume(tmp_path / "mnt" / SERIAL, SERIAL, recs, clock_offset_s=-120.0)
    with MassStorageCamera(vol.mount) as camera:
        camera.open()
        with pytest.raises(AuthenticationError, match="authenticate first"):
            camera.recordings()
        camera.authenticate(enrolled_key())
        yield camera, vol


def test_reads_match_the_signed_hashes_and_offsets_resume(opened: tuple[MassStorageCamera, Volume]) -> None:
    camera, vol = opened
    listing = camera.recordings()
    assert [r.id for r in listing] == [r.id for r in vol.recordings]
    for rec, truth in zip(listing, vol.recordings, strict=True):
        chunks = list(camera.iter_read(rec))
        assert max(len(c) for c in chunks) <= ms.READ_CHUNK
        assert hashlib.sha256(b"".join(chunks)).digest() == rec.sha256 == vol.sha256(truth)
    rec = listing[0]
    tail = b"".join(camera.iter_read(rec, rec.size - 100, 64))
    assert tail == vol.path_of(vol.recordings[0]).read_bytes()[-100:]
    before, after = camera.set_clock()
    assert before == after and abs(before.offset_s + 120.0) < 30


def test_lent_chunks_are_views_of_a_ring_that_keeps_the_last_n_intact(opened: tuple[MassStorageCamera, Volume]) -> None:
    """``iter_read(lend=N)`` reads into N + 1 reused buffers (no 1 MiB bytes a read), the last N intact."""
    camera, _vol = opened
    rec = max(camera.recordings(), key=lambda r: r.size)
    assert rec.size > 3 * ms.READ_CHUNK
    digest, held, buffers = hashlib.sha256(), [], []
    for chunk in camera.iter_read(rec, lend=2):
        assert isinstance(chunk, memoryview) and chunk.readonly
        for view, snapshot in held[-2:]:
            assert bytes(view) == snapshot
        held.append((chunk, bytes(chunk)))
        if not any(chunk.obj is b for b in buffers):
            buffers.append(chunk.obj)
        digest.update(chunk)
    assert digest.digest() == rec.sha256 and len(buffers) == 3
    with pytest.raises(ValueError, match="lend must be"):
        next(camera.iter_read(rec, lend=-1))


@pytest.mark.parametrize("lend", [0, 2])
@pytest.mark.parametrize("change", ["grow", "shrink"])
def test_a_file_that_changes_size_mid_read_is_an_integrity_error(
    opened: tuple[MassStorageCamera, Volume], change: str, lend: int
) -> None:
    camera, vol = opened
    rec = camera.recordings()[0]
    path = vol.path_of(vol.recordings[0])
    reader = camera.iter_read(rec, lend=lend)
    next(reader)
    with path.open("r+b") as f:
        if change == "grow":
            f.seek(0, os.SEEK_END)
            f.write(b"more")
        else:
            f.truncate(rec.size - 1)
    with pytest.raises(IntegrityError, match=r"bytes but the signed index says|ended at byte"):
        for _ in reader:
            pass


def test_a_missing_file_is_an_integrity_error(opened: tuple[MassStorageCamera, Volume]) -> None:
    camera, vol = opened
    rec = camera.recordings()[1]
    vol.path_of(vol.recordings[1]).unlink()
    with pytest.raises(IntegrityError, match="does not exist"):
        list(camera.iter_read(rec))


def test_erase_needs_the_verified_hash_of_the_bytes_on_the_volume(
    opened: tuple[MassStorageCamera, Volume], monkeypatch: pytest.MonkeyPatch
) -> None:
    camera, vol = opened
    first, second, third = camera.recordings()
    with pytest.raises(DeviceError, match="HASH_MISMATCH") as wrong:
        camera.erase(first.id, b"\0" * 32)
    assert wrong.value.status == Status.HASH_MISMATCH
    with pytest.raises(DeviceError, match="no recording") as unknown:
        camera.erase(99, first.sha256)
    assert unknown.value.status == Status.NO_SUCH_RECORDING

    # the bytes changed since the dock verified them (same size): kept
    path = vol.path_of(vol.recordings[1])
    with path.open("r+b") as f:
        f.write(b"X")
    with pytest.raises(DeviceError, match="no longer hashes") as changed:
        camera.erase(second.id, second.sha256)
    assert changed.value.status == Status.HASH_MISMATCH and path.exists()

    # a read-only mount: refused, kept
    real = os.fstatvfs

    class ReadOnly:
        def __init__(self, fd: int) -> None:
            self._real = real(fd)
            self.f_flag = self._real.f_flag | os.ST_RDONLY

    monkeypatch.setattr(ms.os, "fstatvfs", ReadOnly)
    with pytest.raises(DeviceError, match="read-only") as ro:
        camera.erase(third.id, third.sha256)
    assert ro.value.status == Status.STORAGE_ERROR and vol.path_of(vol.recordings[2]).exists()
    monkeypatch.undo()

    camera.erase(first.id, first.sha256)
    assert not vol.path_of(vol.recordings[0]).exists()
    camera.erase(first.id, first.sha256)  # again (a retry after a crash): already done
    assert [r.id for r in camera.recordings()] == [second.id, third.id]
    erased = json.loads((vol.mount / ms.META_DIR / ms.ERASED_FILE).read_text())
    assert erased["erased"] == [{"id": first.id, "sha256": first.sha256.hex()}]
    assert not list((vol.mount / ms.META_DIR).glob("*.tmp"))


def test_a_malformed_erased_json_is_refused(opened: tuple[MassStorageCamera, Volume]) -> None:
    camera, vol = opened
    erased = vol.mount / ms.META_DIR / ms.ERASED_FILE  # unsigned: anyone with the disk can write it
    erased.write_text('{"format": 1, "serial": "CAM-M1", "erased": 7}')
    with pytest.raises(ProtocolError, match="'erased' must be a list"):
        camera.recordings()
    erased.write_text("[" + "[]," * 1_000_000 + "[]]")  # 3 MB that would build a million lists
    with pytest.raises(ProtocolError, match="more than the 393216 values"):
        camera.recordings()
    erased.write_bytes(b" " * (ms.MAX_ERASED_JSON + 1))
    with pytest.raises(ProtocolError, match="at most 8388608"):
        camera.recordings()


def test_not_a_camera_and_firmware(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with MassStorageCamera(tmp_path / "empty") as camera:
        assert camera.name == f"camera at mass-storage:{tmp_path / 'empty'}"
        with pytest.raises(ProtocolError, match="does not exist"):
            camera.open()
        with pytest.raises(ProtocolError, match="call open"):
            _ = camera.identity
    with MassStorageCamera(tmp_path / "nowhere") as camera, pytest.raises(ProtocolError, match="does not exist"):
        camera.open()
    vol = write_volume(tmp_path / "mnt" / SERIAL, SERIAL, [])
    with MassStorageCamera(vol.mount) as camera:
        assert camera.open().serial == SERIAL
        camera.authenticate(enrolled_key())
        assert camera.recordings() == []
        assert camera.status().recording_count == 0
        with pytest.raises(DeviceError, match="firmware cannot be pushed"):
            camera.firmware_begin(1, b"\0" * 32, "2.0.0", b"\0" * 64)


def test_a_volume_is_a_camera_device_that_cannot_pair_or_refuse_a_host(tmp_path: Path) -> None:
    """The one camera seam (drivers/device/api.py): a volume offers the pairing operations only to refuse them."""
    from bodycam.agent.pipeline.dockauth import UNPROTECTED_MASS_STORAGE, secure_link
    from bodycam.drivers.device.api import CameraDevice

    vol = write_volume(tmp_path / "mnt" / SERIAL, SERIAL, [])
    with MassStorageCamera(vol.mount) as opened:
        camera: CameraDevice = opened
        camera.open()
        camera.authenticate(enrolled_key())
        assert camera.protocol == 0 and not camera.refuses_unproven_host()
        for step in (camera.dock_challenge, lambda: camera.send_revocations(b"")):
            with pytest.raises(DeviceError, match="cannot be paired"):
                step()
        seen: list[tuple[str, dict[str, Any]]] = []
        secure_link(camera, None, lambda event, **fields: seen.append((event, fields)))
        assert seen == [("camera_unprotected", {"camera": SERIAL, "reason": UNPROTECTED_MASS_STORAGE})]


# -- discovery -----------------------------------------------------------------------------------------
def test_find_mass_storage_lists_camera_volumes_only(tmp_path: Path) -> None:
    root = tmp_path / "media"
    assert find_mass_storage(root) == []  # no directory yet
    a = write_volume(root / "CAM-A", "CAM-A", []).mount
    b = write_volume(root / "CAM-B", "CAM-B", []).mount
    (root / "usb-stick" / "DCIM").mkdir(parents=True)  # a disk, but not a camera
    (root / "file").write_text("x")
    (root / "link").symlink_to(a, target_is_directory=True)
    (root / "meta-link" / ms.META_DIR).mkdir(parents=True)
    (root / "meta-link" / ms.META_DIR / ms.DEVICE_FILE).symlink_to(a / ms.META_DIR / ms.DEVICE_FILE)
    assert find_mass_storage(root) == [a, b]
