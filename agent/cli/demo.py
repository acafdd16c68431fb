"""``bodycam-sync demo``: the whole job on the embedded default, end to end, in one command.

Virtual cameras (USB/IP and a pty, the same driver code as on a dock) with mixed footage, an
exercise, enrolment and allocation, ingest into a local-directory bucket, verification with the
recipient's identity, and a summary that says how to check it all with stock tools.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bodycam.agent.audit.verify import Verifier, VerifyReport
from bodycam.agent.config import Config, DockAuth, Recipient
from bodycam.agent.formats.agecrypt import generate_identity
from bodycam.agent.formats.sshsig import allowed_signers_line, generate_key, parse_public_key_line
from bodycam.agent.pipeline.dockauth import init_authority, init_dock_key, issue
from bodycam.agent.pipeline.ingest import Agent, IngestReport, ingest_once
from bodycam.agent.pipeline.policy import Exercise, add_exercise
from bodycam.drivers.models import MODELS
from bodycam.drivers.virtual.camera import VirtualCamera
from bodycam.drivers.virtual.pty_device import PtyCameraServer
from bodycam.drivers.virtual.server import SimSpec, build_camera, device_key_hex, truth, usbip_server

DOCK_ID = "dock-demo"


@dataclass
class DemoResult:
    workdir: Path
    config_path: Path
    bucket_dir: Path
    identity_path: Path
    allowed_signers: Path
    ingest: IngestReport
    verify: VerifyReport
    expected_training: int
    cameras: list[dict[str, Any]] = field(default_factory=list)
    #: serials of the virtual cameras now paired with the demo force's dock authority
    paired: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        arrived = sum(c.verified + c.already_done for c in self.ingest.cameras)
        everyone_paired = len(self.paired) == len(self.ingest.cameras)
        return self.ingest.ok and self.verify.ok and arrived == self.expected_training and everyone_paired


def run_demo(
    workdir: Path,
    *,
    cameras: int = 3,
    recordings: int = 6,
    training: int = 3,
    size: int = 8 * 1024 * 1024,
    progress: Callable[[str, dict[str, Any]], None] | None = None,
) -> DemoResult:
    workdir.mkdir(parents=True, exist_ok=True)
    keys = workdir / "keys"
    keys.mkdir(mode=0o700, exist_ok=True)
    identity, recipient = generate_identity()
    identity_path = keys / "recipient.agekey"
    identity_path.write_text(f"# demo recipient (a party of the agreement)\n# public key: {recipient}\n{identity}\n")
    identity_path.chmod(0o600)
    key_path = keys / "dock_ed25519"
    pub = generate_key(key_path, DOCK_ID)
    allowed = keys / "allowed_signers"
    allowed.write_text(allowed_signers_line(DOCK_ID, parse_public_key_line(pub)) + "\n")
    dock_auth = _dock_authority(workdir, keys)

    now = time.time()
    window = (now - 7200, now - 60)
    exercise_text = "/".join(dt.datetime.fromtimestamp(t, dt.UTC).isoformat() for t in window)
    sims: list[tuple[VirtualCamera, Any]] = []
    usbip: list[str] = []
    serial: list[str] = []
    try:
        for i in range(cameras):
            sn = f"BWC-DEMO-{i + 1:02d}"
            spec = SimSpec(
                sn,
                MODELS[i % len(MODELS)],
                recordings,
                training,
                size,
                exercise_text,
                clock_drift_s=[-41.5, 12.25, 3.0][i % 3],
            )
            cam = build_camera(spec, now)
            if i == cameras - 1:
                pty = PtyCameraServer(cam)
                serial.append(pty.start())
                sims.append((cam, pty))
            else:
                server = usbip_server(cam)
                host, port = server.start()
                usbip.append(f"{host}:{port}")
                sims.append((cam, server))
        config = Config(
            dock_id=DOCK_ID,
            state_dir=workdir / "state",
            bucket_url=(workdir / "bucket").resolve().as_uri(),
            signing_key=key_path,
            recipients=(Recipient("training-unit", recipient),),
            usbip=tuple(usbip),
            serial=tuple(serial),
            dock_auth=dock_auth,
        )
        config_path = workdir / "agent.toml"
        config_path.write_text(_toml(config))
        agent = Agent(config)
        try:
            add_exercise(
                agent.journal,
                Exercise(
                    "EX-DEMO-RANGE", "Demo firing range", window[0], window[1], frozenset(c.serial for c, _ in sims)
                ),
            )
            for n, (cam, _server) in enumerate(sims):
                agent.journal.enroll(cam.serial, bytes.fromhex(device_key_hex(cam.serial)), cam.model.name)
                agent.journal.allocate(cam.serial, f"PC-{4711 + n}", window[0] - 3600)
            report = ingest_once(agent, usbip, serial, discover=False, progress=progress)
        finally:
            agent.close()
        (workdir / "truth.json").write_text(json.dumps({c.serial: truth(c) for c, _ in sims}, indent=2))
        from bodycam.agent.storage.bucket import open_bucket

        verify = Verifier(open_bucket(config.bucket_url), _signers(allowed), [identity]).run()
        return DemoResult(
            workdir,
            config_path,
            workdir / "bucket",
            identity_path,
            allowed,
            report,
            verify,
            expected_training=training * cameras,
            paired=[c.serial for c, _ in sims if c.pairing.paired],
        )
    finally:
        for _cam, server in sims:
            server.stop()


def _dock_authority(workdir: Path, keys: Path) -> DockAuth:
    """A demo force's dock authority and this dock's certificate, so the cameras pair on first docking."""
    authority = init_authority(workdir / "force" / "dock-authority")
    dock_key = keys / "dock_auth_ed25519"
    certificate = keys / "dock.cert"
    issue(workdir / "force" / "dock-authority", DOCK_ID, init_dock_key(dock_key, DOCK_ID), 30, certificate)
    return DockAuth(certificate=certificate, authority=authority, key=dock_key)


def _signers(path: Path) -> Any:
    from bodycam.agent.formats.sshsig import parse_allowed_signers

    return parse_allowed_signers(path.read_text())


def _toml(config: Config) -> str:
    lines = [
        f'dock_id = "{config.dock_id}"',
        f'state_dir = "{config.state_dir}"',
        "[bucket]",
        f'url = "{config.bucket_url}"',
        "[signing]",
        f'key = "{config.signing_key}"',
    ]
    for r in config.recipients:
        lines += ["[[recipients]]", f'name = "{r.name}"', f'age = "{r.age}"']
    if config.dock_auth is not None:
        auth = config.dock_auth
        lines += ["[dock_auth]", f'certificate = "{auth.certificate}"', f'authority = "{auth.authority}"']
        if auth.key is not None:
            lines.append(f'key = "{auth.key}"')
    return "\n".join(lines) + "\n"
