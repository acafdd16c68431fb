"""Mutual authentication (issue 9): a paired camera releases, erases or changes nothing for a host that
cannot prove it is a dock of its force. Virtual cameras over USB/IP and a pty, the real ``Camera``, the
real CLI; the rogue host is the same driver a laptop with a cable would run, minus a dock certificate.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bodycam.agent.pipeline.dockauth import UNPROTECTED_OPEN, UNPROTECTED_V1, DockCredentials, secure_link
from bodycam.drivers.device.camera import Camera
from bodycam.drivers.errors import AuthenticationError, DeviceError, ProtocolError
from bodycam.drivers.protocol import dockauth as da
from bodycam.drivers.protocol.frames import Command, Status, encode_frame
from bodycam.drivers.virtual.camera import sim_vendor_key
from bodycam.drivers.virtual.faults import Faults
from bodycam.drivers.virtual.loopback import LoopbackTransport

from .dock import iso_window, make_dock, window
from .sims import MEDIA, ServedCamera, SimProcess, serve, spec

VECTORS = Path(__file__).parent / "vectors" / "dock_auth.json"
DAY_US = 86_400 * 1_000_000


def now_us() -> int:
    return int(time.time() * 1e6)


class Force:
    """An authority and the docks it certified (keys made here; the CLI path has its own test)."""

    def __init__(self) -> None:
        self.authority = Ed25519PrivateKey.generate()
        self.public = self.authority.public_key().public_bytes_raw()
        self.sequence = 0

    def dock(self, dock_id: str = "dock-a", *, not_before: int | None = None, not_after: int | None = None) -> Any:
        key = Ed25519PrivateKey.generate()
        cert = da.DockCertificate(
            len(dock_id),
            not_before if not_before is not None else now_us() - DAY_US,
            not_after if not_after is not None else now_us() + 30 * DAY_US,
            key.public_key().public_bytes_raw(),
            dock_id,
        ).signed_by(self.authority)
        return DockCredentials(cert, key, self.public)

    def revoke(self, *dock_ids: str) -> da.RevocationList:
        self.sequence += 1
        return da.RevocationList(self.sequence, now_us(), dock_ids).signed_by(self.authority)


def host(sim: ServedCamera) -> Camera:
    """Any host: HELLO, IDENTIFY, AUTH with a random nonce (it reads the device key from IDENTIFY)."""
    cam = sim.connect(timeout=3.0)
    ident = cam.open()
    cam.authenticate(ident.device_key)
    return cam


def dock(sim: ServedCamera, creds: DockCredentials | None) -> tuple[Camera, list[tuple[str, dict[str, Any]]]]:
    """A dock's docking: the rogue-host handshake plus ``secure_link`` with the dock's credentials."""
    cam = host(sim)
    events: list[tuple[str, dict[str, Any]]] = []
    try:
        secure_link(cam, creds, lambda event, **kw: events.append((event, kw)))
    except BaseException:
        cam.close()
        raise
    return cam, events


def status_of(err: pytest.ExceptionInfo[DeviceError]) -> int:
    return err.value.status


@pytest.fixture(params=MEDIA)
def served(request: pytest.FixtureRequest) -> Iterator[ServedCamera]:
    with serve(request.param, spec("CAM-MA1", recordings=3, training=1, size=300_000)) as sim:
        yield sim


# -- the issue's attack, refused ---------------------------------------------------------------------
def test_paired_camera_refuses_a_host_without_a_dock_certificate(served: ServedCamera) -> None:
    force = Force()
    first = served.camera.listing()[0]
    digest = served.camera.content.sha256(served.camera.recordings[first.id])
    with dock(served, force.dock())[0] as cam:  # the first docking pairs the camera
        assert served.camera.pairing.paired
        assert len(cam.recordings()) == 3
    with host(served) as rogue:  # HELLO, IDENTIFY, AUTH with a random nonce: all answered...
        for attempt in (
            rogue.recordings,
            lambda: rogue.read(first, 0, 200_000),
            lambda: rogue.erase(first.id, digest),
            rogue.set_clock,
        ):
            with pytest.raises(AuthenticationError, match="DOCK_NOT_PROVEN") as err:
                attempt()  # ... but nothing is listed, read, erased or changed
            assert err.value.status == Status.DOCK_NOT_PROVEN
        assert rogue.status().recording_count == 3
    assert len(served.camera.recordings) == 3 and served.camera.erased == []
    with dock(served, force.dock("dock-b"))[0] as cam:  # any dock of the force, on its own connection
        assert len(cam.recordings()) == 3


def test_expired_and_revoked_dock_certificates_are_refused(served: ServedCamera) -> None:
    force = Force()
    dock(served, force.dock())[0].close()
    expired = force.dock("dock-old", not_before=now_us() - 60 * DAY_US, not_after=now_us() - DAY_US)
    with pytest.raises(AuthenticationError, match="not valid at the camera's time") as err:
        dock(served, expired)
    assert err.value.status == Status.CERT_EXPIRED
    # an expired dock that lies about the time: the camera's high-water mark (the last good docking) wins
    with host(served) as cam:
        state = cam.dock_challenge()
        assert cam.auth_nonce is not None
        proof = da.make_proof(
            expired.key, expired.certificate_bytes, "CAM-MA1", state.challenge, cam.auth_nonce, now_us() - 2 * DAY_US
        )
        with pytest.raises(DeviceError, match="CERT_EXPIRED"):
            cam.prove(proof)
        with pytest.raises(AuthenticationError, match="DOCK_NOT_PROVEN"):
            cam.recordings()
    # a stolen dock: the force revokes it; the next good docking carries the list to the camera
    stolen = force.dock("dock-stolen")
    dock(served, stolen)[0].close()  # accepted until the camera hears of the revocation
    good = force.dock("dock-good")
    good = DockCredentials(good.certificate, good.key, good.authority, force.revoke("dock-stolen"))
    cam, events = dock(served, good)
    cam.close()
    assert ("revocations_sent", {"camera": "CAM-MA1", "sequence": 1, "revoked": 1}) in events
    with pytest.raises(AuthenticationError, match="revoked this dock") as err:
        dock(served, stolen)
    assert err.value.status == Status.DOCK_REVOKED
    # an older list cannot roll the camera back
    with host(served) as cam:
        stale = da.RevocationList(0, now_us(), ()).signed_by(force.authority)
        assert cam.send_revocations(stale.to_bytes()) == 1
        forged = da.RevocationList(9, now_us(), ()).signed_by(Ed25519PrivateKey.generate())
        with pytest.raises(DeviceError, match="DOCK_REJECTED"):
            cam.send_revocations(forged.to_bytes())


def test_a_proof_replayed_on_another_link_or_camera_is_refused(served: ServedCamera) -> None:
    force = Force()
    creds = force.dock()
    dock(served, creds)[0].close()
    with host(served) as cam:  # a genuine proof, watched on the wire
        state = cam.dock_challenge()
        assert cam.auth_nonce is not None
        nonce = cam.auth_nonce
        recorded = creds.proof("CAM-MA1", state.challenge, nonce)
        cam.prove(recorded)
        with pytest.raises(DeviceError, match="DOCK_REJECTED"):
            cam.prove(recorded)  # one proof per challenge, even on the same link
    with served.connect(timeout=3.0) as rogue:  # another link: same AUTH nonce, same proof bytes
        rogue.open()
        rogue.call(Command.AUTH, nonce)
        rogue.auth_nonce = nonce
        rogue.dock_challenge()
        with pytest.raises(DeviceError, match="DOCK_REJECTED"):
            rogue.prove(recorded)
        with pytest.raises(AuthenticationError, match="DOCK_NOT_PROVEN"):
            rogue.recordings()
    # another camera of the same force: the serial is in the signed message
    with serve(served.medium, spec("CAM-MA2", recordings=1, training=1, size=1000)) as other:
        dock(other, force.dock("dock-c"))[0].close()
        with other.connect(timeout=3.0) as rogue:
            rogue.open()
            rogue.call(Command.AUTH, nonce)
            state = rogue.dock_challenge()
            forged = creds.proof("CAM-MA1", state.challenge, nonce)  # signed for the wrong serial
            with pytest.raises(DeviceError, match="DOCK_REJECTED"):
                rogue.prove(forged)


def test_pairs_on_first_docking_once_and_never_to_a_stranger(served: ServedCamera) -> None:
    force = Force()
    creds = force.dock()
    cam, events = dock(served, creds)
    cam.close()
    assert [e for e, _ in events] == ["paired", "dock_proven"]
    cam, events = dock(served, creds)
    with cam:
        assert [e for e, _ in events] == ["dock_proven"]  # not twice
        state = cam.dock_challenge()
        assert cam.auth_nonce is not None
        with pytest.raises(DeviceError, match="ALREADY_PAIRED"):
            cam.pair(force.public, creds.proof("CAM-MA1", state.challenge, cam.auth_nonce))
    stranger = Force()
    stranger_dock = stranger.dock("dock-evil")
    with host(served) as cam:
        state = cam.dock_challenge()
        assert cam.auth_nonce is not None
        with pytest.raises(DeviceError, match="ALREADY_PAIRED"):
            cam.pair(stranger.public, stranger_dock.proof("CAM-MA1", state.challenge, cam.auth_nonce))
        state = cam.dock_challenge()
        with pytest.raises(DeviceError, match="DOCK_REJECTED"):
            cam.prove(stranger_dock.proof("CAM-MA1", state.challenge, cam.auth_nonce))
    with pytest.raises(AuthenticationError, match="paired to another dock authority"):
        dock(served, stranger_dock)
    assert served.camera.pairing.authority == force.public


def test_unpair_only_by_the_force_or_a_vendor_reset_that_erases_first(served: ServedCamera) -> None:
    force = Force()
    dock(served, force.dock())[0].close()
    with host(served) as rogue, pytest.raises(AuthenticationError, match="DOCK_NOT_PROVEN"):
        rogue.unpair()
    with dock(served, force.dock())[0] as cam:
        cam.unpair()
    assert not served.camera.pairing.paired and len(served.camera.recordings) == 3
    dock(served, force.dock())[0].close()  # paired again
    with host(served) as cam:
        state = cam.dock_challenge()
        stranger = Ed25519PrivateKey.generate()
        with pytest.raises(DeviceError, match="DOCK_REJECTED"):
            cam.vendor_reset(stranger.sign(da.vendor_reset_message("CAM-MA1", state.challenge)))
        assert len(served.camera.recordings) == 3 and served.camera.pairing.paired
        state = cam.dock_challenge()
        assert cam.vendor_reset(sim_vendor_key().sign(da.vendor_reset_message("CAM-MA1", state.challenge))) == 3
    assert served.camera.recordings == {} and not served.camera.pairing.paired
    stranger_force = Force()
    cam, events = dock(served, stranger_force.dock("dock-evil"))  # now anyone may pair it: it holds nothing
    cam.close()
    assert [e for e, _ in events] == ["paired", "dock_proven"]


def test_revision_1_and_open_cameras_are_flagged_in_custody() -> None:
    force = Force()
    with serve("usbip", spec("CAM-V1", faults=Faults(v1_only=True), recordings=1, training=1, size=1000)) as sim:
        cam, events = dock(sim, force.dock())
        with cam:
            assert cam.protocol == 1 and len(cam.recordings()) == 1
        assert events == [("camera_unprotected", {"camera": "CAM-V1", "reason": UNPROTECTED_V1})]
    with serve(
        "serial", spec("CAM-OPEN", faults=Faults(accept_any_host=True), recordings=1, training=1, size=1000)
    ) as sim:
        dock(sim, force.dock())[0].close()
        cam, events = dock(sim, force.dock())
        cam.close()
        assert events[0] == ("camera_unprotected", {"camera": "CAM-OPEN", "reason": UNPROTECTED_OPEN})
        assert events[-1][0] == "dock_proven"


def test_hostile_pairing_payloads_are_bounded() -> None:
    """Oversized or truncated certificates, proofs and lists are BAD_REQUEST, never a crash."""
    from bodycam.drivers.virtual.server import SimSpec, build_camera

    vc = build_camera(SimSpec("CAM-H"))
    cam = Camera(LoopbackTransport(vc), timeout=2.0)
    ident = cam.open()
    cam.authenticate(ident.device_key)
    cam.dock_challenge()
    for command, payload in (
        (Command.PAIR, b"\x00" * 31),
        (Command.PAIR, b"\x00" * 32 + b"\x01" * (72 + da.MAX_CERT + 1)),
        (Command.DOCK_PROVE, b"\x00" * 10),
        (Command.REVOCATIONS, b"\x01" * 5000),
        (Command.VENDOR_RESET, b"\x00" * 65),
    ):
        with pytest.raises(DeviceError) as err:
            cam.call(command, payload)
        assert err.value.status in (Status.BAD_REQUEST, Status.NOT_PAIRED), command
    with pytest.raises(ProtocolError):
        da.DockCertificate.from_bytes(b"\x01" * (da.MAX_CERT + 1))


# -- the documented bytes -------------------------------------------------------------------------------
def _seed_key(seed: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed.encode()).digest())


def test_vectors_match_the_code_and_the_camera_accepts_them() -> None:
    v = json.loads(VECTORS.read_text())
    authority, dock_key = _seed_key(v["authority_seed"]), _seed_key(v["dock_seed"])
    assert authority.public_key().public_bytes_raw().hex() == v["authority_public"]
    assert dock_key.public_key().public_bytes_raw().hex() == v["dock_public"]
    c = v["certificate"]
    cert = da.DockCertificate(
        c["serial_number"],
        c["not_before_us"],
        c["not_after_us"],
        dock_key.public_key().public_bytes_raw(),
        c["dock_id"],
    ).signed_by(authority)
    assert (da.CERT_CONTEXT + cert.tbs()).hex() == c["signed_message"]
    assert cert.to_bytes().hex() == c["bytes"]
    assert da.DockCertificate.from_bytes(bytes.fromhex(c["bytes"])) == cert
    p = v["proof"]
    chal, dchal = bytes.fromhex(p["camera_challenge"]), bytes.fromhex(p["dock_challenge"])
    assert da.proof_message(p["serial"], chal, dchal, p["time_us"], cert.to_bytes()).hex() == p["signed_message"]
    proof = da.make_proof(dock_key, cert.to_bytes(), p["serial"], chal, dchal, p["time_us"])
    assert proof.to_bytes().hex() == p["dock_prove_payload"]
    assert encode_frame(Command.DOCK_PROVE, 7, proof.to_bytes()).hex() == p["dock_prove_frame_seq_7"]
    assert da.PairRequest(authority.public_key().public_bytes_raw(), proof).to_bytes().hex() == p["pair_payload"]
    verdict = da.check_proof(
        da.DockProof.from_bytes(bytes.fromhex(p["dock_prove_payload"])),
        authority_key=bytes.fromhex(v["authority_public"]),
        serial=p["serial"],
        camera_challenge=chal,
        dock_challenge=dchal,
        not_before_floor_us=0,
    )
    assert verdict.status == Status.OK
    r = v["revocations"]
    rl = da.RevocationList(r["sequence"], r["issued_us"], tuple(r["revoked"])).signed_by(authority)
    assert (da.REVOCATION_CONTEXT + rl.tbs()).hex() == r["signed_message"]
    assert rl.to_bytes().hex() == r["bytes"] and da.RevocationList.from_bytes(rl.to_bytes()) == rl
    d = v["dock_challenge_response"]
    answer = da.DockChallenge.from_bytes(bytes.fromhex(d["bytes"]))
    assert answer.paired and answer.revocation_sequence == d["revocation_sequence"] and answer.challenge == chal
    vr = v["vendor_reset"]
    assert da.vendor_reset_message(p["serial"], chal).hex() == vr["signed_message"]
    assert _seed_key(vr["vendor_seed"]).sign(bytes.fromhex(vr["signed_message"])).hex() == vr["payload"]


# -- the real CLI and pipeline -----------------------------------------------------------------------------


def test_authority_cli_certifies_a_dock_that_pairs_and_ingests_and_a_dock_without_one_is_refused(
    tmp_path: Path,
) -> None:
    win = window()
    force_dir = tmp_path / "force"
    d = make_dock(tmp_path / "dock", (tmp_path / "bucket").resolve().as_uri())
    out = d.cli("authority", "init", "--out", str(force_dir / "authority"))
    assert out.returncode == 0, out.stderr
    authority_line = out.stdout.strip()
    pub = d.cli("keys", "dock-auth").stdout.strip()
    assert len(pub) == 64
    cert_path = tmp_path / "dock" / "dock.cert"
    issued = d.cli(
        "authority", "issue", "--key", str(force_dir / "authority"), "--dock-id", "dock-test",
        "--dock-key", pub, "--days", "30", "--out", str(cert_path), "--json",
    )  # fmt: skip
    assert issued.returncode == 0, issued.stderr
    assert json.loads(issued.stdout)["dock_id"] == "dock-test"
    revoked = d.cli("authority", "revoke", "dock-stolen", "--key", str(force_dir / "authority"),
                    "--list", str(force_dir / "revocations.bin"))  # fmt: skip
    assert revoked.returncode == 0 and "sequence 1" in revoked.stdout, revoked.stderr
    with d.config_path.open("a") as fh:
        fh.write(f'[dock_auth]\ncertificate = "{cert_path}"\n{authority_line}\n')
        fh.write(f'revocations = "{force_dir / "revocations.bin"}"\n')
    sims = [
        SimProcess("usbip", "CAM-P1", "--recordings", "3", "--training", "2", "--size", "70000",
                   "--exercise", iso_window(win), truth_dir=tmp_path),
        SimProcess("serial", "CAM-P2", "--recordings", "2", "--training", "1", "--size", "50000",
                   "--exercise", iso_window(win), truth_dir=tmp_path),
    ]  # fmt: skip
    try:
        d.enroll("CAM-P1", "CAM-P2")
        d.exercise("EX-P", win, "CAM-P1", "CAM-P2")
        rc, report = d.ingest_json(*(s.address for s in sims))
        assert rc == 0 and report["ok"] and sum(c["verified"] for c in report["cameras"]) == 3, report
        rc, report = d.ingest_json(*(s.address for s in sims))  # second docking: proves, pairs no more
        assert rc == 0 and report["ok"], report
        listed = d.cli("devices", "--json", "--usbip", sims[0].address, "--serial-port", sims[1].address)
        assert {c["serial"]: c["pairing"] for c in json.loads(listed.stdout)["cameras"]} == {
            "CAM-P1": "paired", "CAM-P2": "paired",
        }, listed.stderr  # fmt: skip
        events = d.custody()
        for sn in ("CAM-P1", "CAM-P2"):
            mine = [e["event"] for e in events if e.get("camera") == sn]
            assert mine.count("paired") == 1 and mine.count("dock_proven") == 2 and "camera_unprotected" not in mine
            assert mine.count("revocations_sent") == 1
        # another dock of no force (no [dock_auth]): the cameras release nothing to it
        rogue = make_dock(tmp_path / "rogue", (tmp_path / "bucket2").resolve().as_uri())
        rogue.enroll("CAM-P1", "CAM-P2")
        rogue.exercise("EX-P", win, "CAM-P1", "CAM-P2")
        proc = rogue.cli("ingest", "--once", "--usbip", sims[0].address)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        assert "refuses a host without a dock certificate: configure [dock_auth]" in proc.stderr
        synced = d.cli("clock", "sync", "--serial-port", sims[1].address)  # CLOCK_SET needs the proof too
        assert synced.returncode == 0 and "CAM-P2" in synced.stdout, synced.stderr
        refused = rogue.cli("clock", "sync", "--serial-port", sims[1].address)
        assert refused.returncode == 1 and "configure [dock_auth]" in refused.stderr, refused.stderr
    finally:
        for s in sims:
            s.stop()


def test_a_new_revocation_list_reaches_the_next_camera_without_a_restart(tmp_path: Path) -> None:
    """The daemon's Agent lives for weeks: a revocation list copied to the dock counts from the next docking."""
    from bodycam.agent.pipeline.dockauth import init_authority, init_dock_key, issue, revoke

    d = make_dock(tmp_path / "dock", (tmp_path / "bucket").resolve().as_uri())
    authority_key = tmp_path / "force" / "authority"
    authority = init_authority(authority_key)
    dock_key = tmp_path / "dock" / "keys" / "dock_auth_ed25519"
    issue(authority_key, "dock-test", init_dock_key(dock_key, "dock-test"), 30, tmp_path / "dock.cert")
    revocations = tmp_path / "revocations.bin"
    with d.config_path.open("a") as fh:
        fh.write(f'[dock_auth]\ncertificate = "{tmp_path / "dock.cert"}"\nauthority = "{authority}"\n')
        fh.write(f'key = "{dock_key}"\nrevocations = "{revocations}"\n')
    win = window()
    with serve("serial", spec("CAM-RV", recordings=2, training=1, exercise=iso_window(win))) as sim:
        d.enroll("CAM-RV")
        agent = d.agent()
        try:
            with sim.connect(timeout=3.0) as cam:
                assert agent.session(cam).errors == []
            assert sim.camera.pairing.paired and sim.camera.pairing.revocations is None
            revoke(authority_key, revocations, ["dock-stolen"])  # copied to the dock while it runs
            sim.unplug()
            with sim.connect_when_back(timeout=3.0) as cam:
                assert agent.session(cam).errors == []
        finally:
            agent.close()
    assert sim.camera.pairing.revocations is not None and sim.camera.pairing.revocations.revoked == ("dock-stolen",)
    assert [e["event"] for e in d.custody() if e["event"] in ("paired", "revocations_sent", "dock_proven")] == [
        "paired", "dock_proven", "revocations_sent", "dock_proven",
    ]  # fmt: skip


def test_a_strangers_far_future_time_does_not_outlive_the_vendor_reset() -> None:
    """The high-water mark belongs to the authority whose docks vouched for it; unpairing forgets it."""
    from bodycam.drivers.virtual.server import SimSpec, build_camera

    vc = build_camera(SimSpec("CAM-FT", recordings=1, training=1, size=1000))
    stranger = Force()
    far = 4_000_000_000_000_000  # 2096
    creds = stranger.dock("dock-evil", not_after=far + DAY_US)
    cam = Camera(LoopbackTransport(vc), timeout=2.0)
    ident = cam.open()
    cam.authenticate(ident.device_key)
    state = cam.dock_challenge()
    assert cam.auth_nonce is not None
    cam.pair(stranger.public, da.make_proof(creds.key, creds.certificate_bytes, "CAM-FT", state.challenge,
                                           cam.auth_nonce, far))  # fmt: skip
    state = cam.dock_challenge()
    cam.vendor_reset(sim_vendor_key().sign(da.vendor_reset_message("CAM-FT", state.challenge)))
    force = Force()
    events: list[str] = []
    secure_link(cam, force.dock(), lambda event, **_kw: events.append(event))
    assert events == ["paired", "dock_proven"]
