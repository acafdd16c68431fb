"""Firmware push over real media (USB/IP on loopback, a pty): good images install, tampered, foreign
and older ones are refused before a byte is sent, an unplug mid-push resumes where the camera stopped."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from bodycam.agent.formats.sshsig import public_key_line
from bodycam.agent.pipeline import firmware as fw
from bodycam.agent.storage.custody_log import CustodyLog
from bodycam.agent.storage.journal import Journal
from bodycam.drivers.errors import AuthenticationError, ConfigError, FirmwareError, TransportError
from bodycam.drivers.models import by_name
from bodycam.drivers.protocol.frames import Command
from bodycam.drivers.protocol.messages import MAX_FIRMWARE_CHUNK, MAX_FIRMWARE_SIZE
from bodycam.drivers.virtual.camera import public_bytes, sim_vendor_key
from bodycam.drivers.virtual.faults import Faults, parse_faults

from .dock import Dock, make_dock
from .sims import MEDIA, ServedCamera, serve, spec

MODEL = "Sentinel BWC-2"  # the virtual camera's default model; it runs firmware 1.4.0 in slot 0
PAYLOAD_SIZE = 4 * MAX_FIRMWARE_CHUNK + 12_345  # five chunks, the last one short


def payload(size: int = PAYLOAD_SIZE, seed: int = 7) -> bytes:
    return bytes((i * 31 + seed) & 0xFF for i in range(size))


def build(tmp: Path, version: str = "1.5.0", *, key: Ed25519PrivateKey | None = None, **kw: Any) -> Path:
    path = tmp / f"fw-{version}-{os.urandom(3).hex()}.img"
    fw.make_image(path, kw.pop("data", payload()), version, kw.pop("models", (MODEL,)), key or sim_vendor_key())
    return path


def verified(path: Path) -> fw.FirmwareImage:
    image = fw.load_image(path)
    fw.verify_image(image, [sim_vendor_key().public_key()])
    return image


def spy(sim: ServedCamera) -> list[Command]:
    """Every firmware command the virtual camera handles from now on."""
    seen: list[Command] = []
    real = sim.camera._firmware

    def wrapper(command: Command, data: bytes) -> tuple[int, bytes]:
        seen.append(command)
        return real(command, data)

    sim.camera._firmware = wrapper  # type: ignore[method-assign]
    return seen


def untouched(sim: ServedCamera, seen: list[Command]) -> None:
    """Nothing was transferred: no firmware command at all, the old firmware still active."""
    assert seen == []
    assert sim.camera.firmware.pending_meta is None and not sim.camera.firmware.pending
    assert (sim.camera.firmware.active_version, sim.camera.firmware.active_slot) == ("1.4.0", 0)


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(tmp_path / "state" / "journal.sqlite")
    yield j
    j.close()


def custody_events(journal: Journal) -> list[dict[str, Any]]:
    return [json.loads(row[0]) for row in journal.query("SELECT line FROM custody ORDER BY seq")]


# -- the format -------------------------------------------------------------------------------
def test_versions_follow_semver_precedence() -> None:
    ordered = ["0.9.9", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta.2", "1.0.0-beta.11",
               "1.0.0-rc.1", "1.0.0", "1.4.0", "1.10.0", "2.0.0"]  # fmt: skip
    for i, a in enumerate(ordered):
        for j, b in enumerate(ordered):
            assert fw.compare_versions(a, b) == (i > j) - (i < j), (a, b)
    assert fw.compare_versions("1.5.0+build.1", "1.5.0+build.2") == 0
    for bad in ("1.5", "01.2.3", "1.2.3-", "v1.2.3", "1.2.3\n", "1.2.\uff13", "1." * 20 + "1"):
        with pytest.raises(FirmwareError, match="not a semantic version"):
            fw.compare_versions(bad, "1.0.0")


def test_image_header_is_bounded_and_strict(tmp_path: Path) -> None:
    good = build(tmp_path).read_bytes()
    lines = good.split(b"\n", 4)
    assert lines[0] == b"BODYCAM-FW1" and len(lines[2]) == len(lines[3]) == 88
    meta = json.loads(lines[1])
    assert meta == {"models": [MODEL], "sha256": meta["sha256"], "size": PAYLOAD_SIZE, "version": "1.5.0"}

    def refused(data: bytes, match: str) -> None:
        path = tmp_path / "bad.img"
        path.write_bytes(data)
        with pytest.raises(FirmwareError, match=match):
            fw.load_image(path)

    def with_meta(**changes: Any) -> bytes:
        doc = {**meta, **changes}
        line = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        return b"\n".join([lines[0], line, lines[2], lines[3], lines[4]])

    refused(b"MZ\x90\x00" + good[4:], "not a bodycam firmware image")
    refused(good[:-1], "truncated or padded")
    refused(good + b"\0", "truncated or padded")
    refused(good.replace(b'{"models"', b'{ "models"', 1), "not canonical")
    refused(with_meta(size=MAX_FIRMWARE_SIZE + 1), "size must be")
    refused(with_meta(size=True), "size must be")
    refused(with_meta(version="1.5"), "not a semantic version")
    refused(with_meta(version="1.5.0-" + "x" * 40), "longer than 32 bytes")
    refused(with_meta(models=[]), "models must list")
    refused(with_meta(models=["A\x1b[31m"]), "control characters")
    refused(with_meta(sha256="AB" * 32), "lower-case hex")
    refused(with_meta(extra=1), "exactly the keys")
    refused(b"\n".join([lines[0], b"{" * 5000]), "longer than 4096")
    refused(b"\n".join([lines[0], lines[1], b"A" * 86 + b"=", lines[3], lines[4]]), "signature line")
    refused(b"\n".join([lines[0], lines[1], b"!" * 86 + b"==", lines[3], lines[4]]), "canonical base64")
    duplicate = lines[1].replace(b'{"models"', b'{"size":1,"models"', 1)
    refused(b"\n".join([lines[0], duplicate, *lines[2:]]), "duplicate key")
    with pytest.raises(ConfigError, match="not a semantic version"):
        fw.make_image(tmp_path / "x.img", b"abc", "latest", [MODEL], sim_vendor_key())
    with pytest.raises(ConfigError, match="size must be"):
        fw.make_image(tmp_path / "x.img", b"", "1.0.0", [MODEL], sim_vendor_key())


def test_verify_catches_tampered_bytes_header_and_wrong_signer(tmp_path: Path) -> None:
    path = build(tmp_path)
    verified(path)  # the good one passes
    data = bytearray(path.read_bytes())
    data[-PAYLOAD_SIZE // 2] ^= 0x01  # one bit of the image
    tampered = tmp_path / "tampered.img"
    tampered.write_bytes(data)
    with pytest.raises(FirmwareError, match="does not match the signed SHA-256"):
        verified(tampered)
    # another model list under the same camera signature: the header signature catches it
    retargeted = tmp_path / "retargeted.img"
    retargeted.write_bytes(path.read_bytes().replace(MODEL.encode(), b"Warden W9", 1))
    with pytest.raises(FirmwareError, match="wrong signer or altered header"):
        verified(retargeted)
    foreign = build(tmp_path, key=Ed25519PrivateKey.generate())
    with pytest.raises(FirmwareError, match="wrong signer"):
        verified(foreign)
    unverified = fw.load_image(path)
    with pytest.raises(FirmwareError, match="not been verified"):
        fw.push(None, unverified)  # type: ignore[arg-type]


def test_vendor_key_file_forms(tmp_path: Path) -> None:
    key = sim_vendor_key().public_key()
    keys = tmp_path / "vendor.pub"
    keys.write_text(f"# vendor keys\n\n{public_key_line(key)} vendor-2025\n{public_bytes(key).hex()}\n")
    assert [public_bytes(k) for k in fw.load_vendor_keys(keys)] == [public_bytes(key)] * 2
    keys.write_text("ssh-rsa AAAAB3NzaC1yc2E= x\n")
    with pytest.raises(ConfigError, match="line 1"):
        fw.load_vendor_keys(keys)
    with pytest.raises(ConfigError, match="does not exist; pass --vendor-key"):
        fw.load_vendor_keys(tmp_path / "missing.pub")
    assert parse_faults(["unplug-fw-at=1000"]) == Faults(unplug_fw_at=1000)


# -- pushes over real media -------------------------------------------------------------------
@pytest.mark.parametrize("medium", MEDIA)
def test_good_image_installs_then_is_already_installed(medium: str, tmp_path: Path, journal: Journal) -> None:
    image = verified(build(tmp_path))
    custody = CustodyLog(journal, "dock-test")
    with serve(medium, spec("CAM-FW1")) as sim:
        journal.enroll("CAM-FW1", sim.enrolled_key)
        with sim.connect() as cam:
            cam.open()
            progress: list[tuple[int, int]] = []
            result = fw.install(cam, image, journal, custody, on_progress=lambda d, t: progress.append((d, t)))
            assert (result.status, result.previous_version, result.version, result.slot) == (
                "installed", "1.4.0", "1.5.0", 1)  # fmt: skip
            assert result.resumed_from == 0 and result.bytes_sent == PAYLOAD_SIZE
            assert progress[0] == (0, PAYLOAD_SIZE) and progress[-1] == (PAYLOAD_SIZE, PAYLOAD_SIZE)
            assert cam.open().firmware == "1.5.0"
        camera_fw = sim.camera.firmware
        assert (camera_fw.active_version, camera_fw.active_slot, camera_fw.pending_meta) == ("1.5.0", 1, None)
        seen = spy(sim)
        with sim.connect() as cam:
            cam.open()
            again = fw.install(cam, image, journal, custody)
        assert again.status == "already_installed" and seen == []
    events = custody_events(journal)
    installed = [e for e in events if e["event"] == "firmware_installed"]
    assert len(installed) == 1 and installed[0]["camera"] == "CAM-FW1"
    assert installed[0]["to_version"] == "1.5.0" and installed[0]["image_sha256"] == image.sha256.hex()


@pytest.mark.parametrize("medium", MEDIA)
def test_unplug_mid_push_resumes_where_the_camera_stopped(medium: str, tmp_path: Path, journal: Journal) -> None:
    image = verified(build(tmp_path))
    custody = CustodyLog(journal, "dock-test")
    cut = 2 * MAX_FIRMWARE_CHUNK + 1  # the third chunk is stored, then the cable is pulled
    with serve(medium, spec("CAM-FW2", faults=Faults(unplug_fw_at=cut))) as sim:
        journal.enroll("CAM-FW2", sim.enrolled_key)
        with sim.connect(timeout=2.0) as cam:
            cam.open()
            with pytest.raises(TransportError, match="push again to resume"):
                fw.install(cam, image, journal, custody)
        held = len(sim.camera.firmware.pending)
        assert held == 3 * MAX_FIRMWARE_CHUNK and sim.camera.firmware.active_version == "1.4.0"
        seen = spy(sim)
        with sim.connect_when_back() as cam:
            result = fw.install(cam, image, journal, custody)
        assert result.status == "installed" and result.resumed_from == held
        assert result.bytes_sent == PAYLOAD_SIZE - held  # not restarted from 0
        assert seen.count(Command.FW_BEGIN) == 1 and seen.count(Command.FW_CHUNK) == 2
        assert (sim.camera.firmware.active_version, sim.camera.firmware.active_slot) == ("1.5.0", 1)
    events = [e["event"] for e in custody_events(journal)]
    assert events == ["error", "firmware_installed"]


def test_lost_chunk_answer_resyncs_at_the_cameras_offset(tmp_path: Path, journal: Journal) -> None:
    image = verified(build(tmp_path))
    with serve("usbip", spec("CAM-FW3")) as sim:
        journal.enroll("CAM-FW3", sim.enrolled_key)
        with sim.connect() as cam:
            cam.open()
            real = cam.firmware_chunk
            repeated: list[int] = []

            def chunk_answer_lost_once(offset: int, data: bytes) -> int:
                held = real(offset, data)
                if offset == MAX_FIRMWARE_CHUNK and not repeated:
                    repeated.append(offset)  # as if the answer was lost and the dock retried
                    return real(offset, data)
                return held

            cam.firmware_chunk = chunk_answer_lost_once  # type: ignore[method-assign]
            result = fw.install(cam, image, journal, CustodyLog(journal, "dock-test"))
        assert repeated and result.status == "installed"
        assert sim.camera.firmware.active_version == "1.5.0"


@pytest.mark.parametrize("medium", MEDIA)
def test_refusals_before_transfer(medium: str, tmp_path: Path, journal: Journal) -> None:
    custody = CustodyLog(journal, "dock-test")
    with serve(medium, spec("CAM-FW4")) as sim:
        seen = spy(sim)
        with sim.connect() as cam:
            cam.open()
            with pytest.raises(AuthenticationError, match="not enrolled"):
                fw.install(cam, verified(build(tmp_path)), journal, custody)
        journal.enroll("CAM-FW4", sim.enrolled_key)
        cases = [
            (build(tmp_path, "1.3.9"), "older than the installed 1.4.0"),
            (build(tmp_path, "1.4.0+rebuild"), "a different build of the installed 1.4.0"),
            (build(tmp_path, models=("Warden W9",)), "is a Sentinel BWC-2"),
        ]
        for path, match in cases:
            with sim.connect() as cam:
                cam.open()
                with pytest.raises(FirmwareError, match=match):
                    fw.install(cam, verified(path), journal, custody)
        untouched(sim, seen)
        # the camera checks the vendor signature itself: a dock that trusts a wrong key gets nowhere
        rogue = Ed25519PrivateKey.generate()
        image = fw.load_image(build(tmp_path, "9.9.9", key=rogue))
        fw.verify_image(image, [rogue.public_key()])
        with sim.connect() as cam:
            cam.open()
            with pytest.raises(FirmwareError, match="its vendor key does not accept"):
                fw.install(cam, image, journal, custody)
        assert seen == [Command.FW_BEGIN] and sim.camera.firmware.pending_meta is None
        assert sim.camera.firmware.active_version == "1.4.0"
    assert [e["event"] for e in custody_events(journal)] == ["error"] * 5


# -- the CLI ------------------------------------------------------------------------------------
@pytest.fixture
def dock(tmp_path: Path) -> Dock:
    d = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    (d.root / "vendor.pub").write_text(public_key_line(sim_vendor_key().public_key()) + "\n")
    return d


def push_cli(dock: Dock, sim: ServedCamera | list[ServedCamera], image: Path, *extra: str) -> tuple[int, str, str]:
    links = []
    for one in sim if isinstance(sim, list) else [sim]:
        links += ["--serial-port" if one.medium == "serial" else "--usbip", one.address]
    proc = dock.cli("firmware", "push", str(image), "--vendor-key", str(dock.root / "vendor.pub"), *links, *extra)
    assert "Traceback" not in proc.stderr
    return proc.returncode, proc.stdout, proc.stderr


def test_cli_build_and_push(tmp_path: Path, dock: Dock) -> None:
    key_path = tmp_path / "vendor_ed25519"
    key_path.write_bytes(sim_vendor_key().private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()))
    key_path.chmod(0o600)
    (tmp_path / "payload.bin").write_bytes(payload())
    built = dock.cli("firmware", "build", "--key", str(key_path), "--version", "1.5.0", "--model", MODEL,
                     str(tmp_path / "payload.bin"), str(tmp_path / "fw.img"))  # fmt: skip
    assert built.returncode == 0, built.stderr
    assert "firmware 1.5.0 for Sentinel BWC-2" in built.stdout
    with serve("serial", spec("CAM-FW5")) as sim, serve("usbip", spec("CAM-W9", model=by_name("Warden W9"))) as w9:
        dock.enroll("CAM-FW5", "CAM-W9")
        rc, out, err = push_cli(dock, [sim, w9], tmp_path / "fw.img", "--camera", "CAM-FW5", "--json")
        assert rc == 0, err
        doc = json.loads(out)
        assert doc["ok"] and doc["image"]["version"] == "1.5.0" and doc["skipped"] == []
        assert [(c["serial"], c["status"], c["previous_version"], c["slot"]) for c in doc["cameras"]] == [
            ("CAM-FW5", "installed", "1.4.0", 1)]  # fmt: skip
        assert sim.camera.firmware.active_version == "1.5.0"
        assert w9.camera.firmware.active_version == "1.4.0"
        rc, out, err = push_cli(dock, [sim, w9], tmp_path / "fw.img", "--all")
        assert (rc, err) == (0, "")
        assert sorted(out.splitlines()) == [
            "CAM-FW5: firmware 1.5.0 already installed",
            "CAM-W9: skipped (a Warden W9; the image is not for it)",
        ]


def test_cli_refuses_with_one_line_and_exit_codes(tmp_path: Path, dock: Dock) -> None:
    good = build(tmp_path, "1.5.0")
    data = bytearray(good.read_bytes())
    data[-1] ^= 0x80
    tampered = tmp_path / "tampered.img"
    tampered.write_bytes(data)
    with serve("usbip", spec("CAM-FW6")) as sim:
        dock.enroll("CAM-FW6")
        seen = spy(sim)
        cases = [
            (tampered, (), 1, "tampered or corrupt"),
            (build(tmp_path, key=Ed25519PrivateKey.generate()), (), 1, "wrong signer"),
            (build(tmp_path, "1.2.0"), (), 1, "older than the installed 1.4.0; refused (pass --allow-downgrade"),
            (good, ("--camera", "NOPE-1"), 1, "camera NOPE-1 is not reachable"),
            (good, ("--vendor-key", str(tmp_path / "none.pub")), 2, "does not exist; pass --vendor-key"),
            (good, ("--all", "--camera", "CAM-FW6"), 2, "--camera SN (repeatable) or --all"),
        ]
        for image, extra, code, match in cases:
            target = () if "--camera" in extra or "--all" in extra else ("--camera", "CAM-FW6")
            rc, out, err = push_cli(dock, sim, image, *target, *extra)
            assert rc == code and out == "", (image, rc, out, err)
            assert len(err.splitlines()) == 1 and match in err, err
            assert err.startswith("bodycam-sync: error: ")
        untouched(sim, seen)
        rc, out, err = push_cli(dock, sim, build(tmp_path, "1.2.0"), "--camera", "CAM-FW6", "--allow-downgrade")
        assert rc == 0 and out.strip() == "CAM-FW6: firmware 1.4.0 -> 1.2.0 (slot 1)", err
        assert (sim.camera.firmware.active_version, sim.camera.firmware.active_slot) == ("1.2.0", 1)
    journal = dock.journal()
    try:
        events = custody_events(journal)
    finally:
        journal.close()
    assert [e["event"] for e in events] == ["error", "firmware_installed"]
    assert events[1]["from_version"] == "1.4.0" and events[1]["to_version"] == "1.2.0"


def test_signature_line_is_base64_of_the_camera_signature(tmp_path: Path) -> None:
    image = fw.load_image(build(tmp_path))
    line = image.path.read_bytes().split(b"\n")[2]
    assert base64.b64decode(line) == image.signature


def test_a_paired_camera_takes_firmware_only_from_a_dock_of_its_force(tmp_path: Path, journal: Journal) -> None:
    """FW_BEGIN/CHUNK/COMMIT need the dock proof on a paired camera (issue 9); install proves the dock first."""
    from .test_dockauth import Force, dock

    image = verified(build(tmp_path))
    custody = CustodyLog(journal, "dock-test")
    force = Force()
    creds = force.dock("dock-test")
    with serve("usbip", spec("CAM-FWP")) as sim:
        journal.enroll("CAM-FWP", sim.enrolled_key)
        dock(sim, creds)[0].close()  # the first docking paired it
        with sim.connect() as cam:
            cam.open()
            with pytest.raises(AuthenticationError, match="configure \\[dock_auth\\]"):
                fw.install(cam, image, journal, custody)  # a host without a dock certificate
        assert sim.camera.firmware.pending_meta is None and sim.camera.firmware.active_version == "1.4.0"
        with sim.connect() as cam:
            cam.open()
            assert fw.install(cam, image, journal, custody, credentials=creds).status == "installed"
    assert sim.camera.firmware.active_version == "1.5.0"
    assert "dock_proven" in [e["event"] for e in custody_events(journal)]
