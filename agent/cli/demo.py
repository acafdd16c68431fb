"""``bodycam-sync demo``: the whole job on the embedded default, end to end, in one command.

Virtual cameras (USB/IP and a pty, the same driver code as on a dock) with mixed footage; two
exercises; two parties under two signed data-sharing agreements with different scopes (a training
platform whose agreement covers exercise A, the Home Office whose agreement covers A and B);
enrolment and allocation; ingest into a local-directory bucket; then proof of who received what
(each party's own key opens exactly the recordings its agreement covers), verification with the
controller's archive key, and a summary that says how to check it all with stock tools.

``run_demo`` is a list of steps, one function each, so the demo reads like the job it shows.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bodycam.agent.audit.verify import Verifier, VerifyReport
from bodycam.agent.cli.common import command_name
from bodycam.agent.config import AgreementsConfig, Config, DockAuth
from bodycam.agent.formats import agreements as ag
from bodycam.agent.formats.agecrypt import Decryptor, generate_identity
from bodycam.agent.formats.manifest import MANIFEST, MAX_MANIFEST_BYTES, Manifest, ManifestRecording
from bodycam.agent.formats.sshsig import (
    allowed_signers_line,
    generate_key,
    load_private_key,
    parse_allowed_signers,
    parse_public_key_line,
)
from bodycam.agent.pipeline.dockauth import init_authority, init_dock_key, issue
from bodycam.agent.pipeline.ingest import Agent, IngestReport, ingest_once
from bodycam.agent.pipeline.policy import Exercise, add_exercise
from bodycam.agent.storage.bucket import Bucket, open_bucket
from bodycam.drivers.errors import BodycamError
from bodycam.drivers.models import MODELS
from bodycam.drivers.virtual.camera import VirtualCamera
from bodycam.drivers.virtual.pty_device import PtyCameraServer
from bodycam.drivers.virtual.server import SimSpec, build_camera, device_key_hex, truth, usbip_server

if TYPE_CHECKING:
    from bodycam.drivers.virtual.usbip_device import UsbipCameraServer

DOCK_ID = "dock-demo"
EXERCISE_A = "EX-DEMO-RANGE-A"
EXERCISE_B = "EX-DEMO-RANGE-B"
HEADER_PROBE = 16 * 1024  # bytes of an object read to see whether an identity opens its age header


@dataclass(frozen=True)
class DemoParty:
    """One party of the demo and the agreement it receives footage under."""

    name: str
    role: str
    agreement: str
    exercises: tuple[str, ...]
    retention_days: int


PARTIES = (
    DemoParty("training-platform", "processor: trains detection models", "DSA-DEMO-PLATFORM", (EXERCISE_A,), 90),
    DemoParty("home-office", "controller: firearms policy", "DSA-DEMO-HOME-OFFICE", (EXERCISE_A, EXERCISE_B), 365),
)


@dataclass
class DemoKeys:
    """Every key of the demo: the dock's, the force's (controller and archive) and each party's."""

    dock_key: Path
    allowed_signers: Path
    controller_key: Path
    controller_pub: str
    archive_identity: Path
    archive_recipient: str
    party_identities: dict[str, Path] = field(default_factory=dict)
    party_recipients: dict[str, str] = field(default_factory=dict)


@dataclass
class Sim:
    """One running virtual camera and the address the dock reaches it at."""

    camera: VirtualCamera
    server: UsbipCameraServer | PtyCameraServer
    usbip: str | None = None
    serial: str | None = None


@dataclass
class PartyShare:
    """What one party received: the recordings its agreement covers (``serial/id`` as in the bucket),
    and how many of the bucket's recordings its own key opens (all of its share, none of the rest)."""

    party: DemoParty
    identity: Path
    recordings: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)  # their object keys in the bucket
    opened: int = 0  # of its share, opened with its key
    refused: int = 0  # of the other recordings, NOT opened with its key (as it must be)
    others: int = 0  # recordings in the bucket outside its share

    @property
    def exact(self) -> bool:
        return self.opened == len(self.recordings) and self.refused == self.others


@dataclass
class DemoResult:
    workdir: Path
    config_path: Path
    bucket_dir: Path
    identity_path: Path  # the controller's archive identity: opens every disclosed recording
    allowed_signers: Path
    ingest: IngestReport
    verify: VerifyReport
    expected_training: int
    cameras: list[dict[str, object]] = field(default_factory=list)
    #: serials of the virtual cameras now paired with the demo force's dock authority
    paired: list[str] = field(default_factory=list)
    #: camera serial -> the exercise it was allocated to
    exercise_of: dict[str, str] = field(default_factory=dict)
    shares: list[PartyShare] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        arrived = sum(c.verified + c.already_done for c in self.ingest.cameras)
        everyone_paired = len(self.paired) == len(self.ingest.cameras)
        exact = bool(self.shares) and all(s.exact for s in self.shares)
        return self.ingest.ok and self.verify.ok and arrived == self.expected_training and everyone_paired and exact

    def to_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "ingest": self.ingest.to_json(),
            "verify": self.verify.to_json(),
            "exercises": dict(sorted(self.exercise_of.items())),
            "disclosures": [
                {
                    "party": s.party.name,
                    "agreement": s.party.agreement,
                    "exercises": list(s.party.exercises),
                    "retention_days": s.party.retention_days,
                    "recordings": s.recordings,
                    "opened_with_its_key": s.opened,
                    "others_refused": s.refused,
                    "others": s.others,
                }
                for s in self.shares
            ],
            "stayed_on_camera": {c.serial: c.out_of_scope for c in self.ingest.cameras},
        }


def run_demo(
    workdir: Path,
    *,
    cameras: int = 3,
    recordings: int = 6,
    training: int = 3,
    size: int = 8 * 1024 * 1024,
    progress: Callable[[str, dict[str, Any]], None] | None = None,
) -> DemoResult:
    """The steps of the job, in order; the virtual cameras stop whatever happens."""
    workdir.mkdir(parents=True, exist_ok=True)
    keys = make_keys(workdir)
    now = time.time()
    window = (now - 7200, now - 60)
    agreements_dir = sign_agreements(workdir, keys, now)
    sims = start_cameras(cameras, recordings, training, size, window, now)
    try:
        config = write_config(workdir, keys, sims, agreements_dir, _dock_authority(workdir, keys.dock_key.parent))
        exercise_of = exercise_plan([s.camera.serial for s in sims])
        report = ingest(config, sims, exercise_of, window, progress)
        (workdir / "truth.json").write_text(json.dumps({s.camera.serial: truth(s.camera) for s in sims}, indent=2))
        bucket = open_bucket(config.bucket_url, read_only=True)
        return DemoResult(
            workdir,
            workdir / "agent.toml",
            workdir / "bucket",
            keys.archive_identity,
            keys.allowed_signers,
            report,
            verify(bucket, keys),
            expected_training=training * cameras,
            paired=[s.camera.serial for s in sims if s.camera.pairing.paired],
            exercise_of=exercise_of,
            shares=shares(bucket, keys),
        )
    finally:
        for sim in sims:
            sim.server.stop()


# -- the steps ------------------------------------------------------------------------------------


def _identity_file(path: Path, label: str) -> str:
    """Write a fresh age identity (0600) with a comment naming whose it is; returns its recipient."""
    identity, recipient = generate_identity()
    path.write_text(f"# {label}\n# public key: {recipient}\n{identity}\n")
    path.chmod(0o600)
    return recipient


def make_keys(workdir: Path) -> DemoKeys:
    """The dock's signing key and allowed_signers line; the force's controller key (signs agreements)
    and archive identity; one age identity per party (in real life each party keeps its own)."""
    keys = workdir / "keys"
    keys.mkdir(mode=0o700, exist_ok=True)
    dock_key = keys / "dock_ed25519"
    pub = generate_key(dock_key, DOCK_ID)
    allowed = keys / "allowed_signers"
    allowed.write_text(allowed_signers_line(DOCK_ID, parse_public_key_line(pub)) + "\n")
    controller = keys / "controller_ed25519"
    controller_pub = generate_key(controller, "demo-force-controller").strip()
    archive = keys / "force-archive.agekey"
    demo = DemoKeys(
        dock_key, allowed, controller, controller_pub, archive, _identity_file(archive, "the force's own archive")
    )
    for party in PARTIES:
        path = keys / f"{party.name}.agekey"
        demo.party_identities[party.name] = path
        demo.party_recipients[party.name] = _identity_file(path, f"{party.name} (a party of {party.agreement})")
    return demo


def sign_agreements(workdir: Path, keys: DemoKeys, now: float) -> Path:
    """One signed agreement per party (``agreement sign`` does the same from a draft file)."""
    drafts = workdir / "drafts"
    drafts.mkdir(exist_ok=True)
    signed = workdir / "agreements"
    controller = load_private_key(keys.controller_key)
    for party in PARTIES:
        draft = drafts / f"{party.agreement}.json"
        draft.write_text(json.dumps(_draft(party, keys.party_recipients[party.name], now), indent=2))
        ag.sign_draft(draft, controller, signed)
    return signed


def _draft(party: DemoParty, recipient: str, now: float) -> dict[str, object]:
    return {
        "format": ag.FORMAT,
        "id": party.agreement,
        "version": 1,
        "controller": {"name": "Demo Constabulary"},
        "parties": [
            {
                "name": party.name,
                "role": party.role,
                "lawful_basis": "DPA 2018 s.35 (law enforcement purposes)",
                "recipients": [recipient],
                "retention_days": party.retention_days,
            }
        ],
        "purpose": "firearms-training review",
        "data_items": ["footage", "times", "camera_model", "officer_pseudonym"],
        "scope": {"exercises": list(party.exercises)},
        "validity": {"not_before": ag._iso(now - 86400), "not_after": ag._iso(now + 365 * 86400)},
        "review_date": dt.datetime.fromtimestamp(now + 180 * 86400, dt.UTC).date().isoformat(),
        "dpia": "DPIA-DEMO-1",
    }


def start_cameras(
    cameras: int, recordings: int, training: int, size: int, window: tuple[float, float], now: float
) -> list[Sim]:
    """Virtual cameras with mixed footage, all but the last over USB/IP, the last over a serial pty."""
    exercise_text = "/".join(dt.datetime.fromtimestamp(t, dt.UTC).isoformat() for t in window)
    sims: list[Sim] = []
    try:
        for i in range(cameras):
            spec = SimSpec(
                f"BWC-DEMO-{i + 1:02d}",
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
                sims.append(Sim(cam, pty, serial=pty.start()))
            else:
                server = usbip_server(cam)
                host, port = server.start()
                sims.append(Sim(cam, server, usbip=f"{host}:{port}"))
    except BaseException:
        for sim in sims:
            sim.server.stop()
        raise
    return sims


def exercise_plan(serials: list[str]) -> dict[str, str]:
    """The last camera (of two or more) was at exercise B, the others at exercise A."""
    return {
        sn: EXERCISE_B if len(serials) > 1 and i == len(serials) - 1 else EXERCISE_A for i, sn in enumerate(serials)
    }


def write_config(workdir: Path, keys: DemoKeys, sims: list[Sim], agreements_dir: Path, dock_auth: DockAuth) -> Config:
    """The dock's config: the local bucket, the cameras' addresses and ``[agreements]`` (so each
    recording goes to the parties whose agreement covers it, plus the force's archive)."""
    usbip = tuple(s.usbip for s in sims if s.usbip)
    serial = tuple(s.serial for s in sims if s.serial)
    config = Config(
        dock_id=DOCK_ID,
        state_dir=workdir / "state",
        bucket_url=(workdir / "bucket").resolve().as_uri(),
        signing_key=keys.dock_key,
        usbip=usbip,
        serial=serial,
        dock_auth=dock_auth,
        agreements=AgreementsConfig((keys.controller_pub,), agreements_dir, keys.archive_recipient),
    )
    (workdir / "agent.toml").write_text(_toml(config))
    return config


def ingest(
    config: Config,
    sims: list[Sim],
    exercise_of: dict[str, str],
    window: tuple[float, float],
    progress: Callable[[str, dict[str, Any]], None] | None,
) -> IngestReport:
    """Register the exercises, enrol and allocate the cameras (the armourer's part), then ingest once."""
    agent = Agent(config)
    try:
        for ex_id in sorted(set(exercise_of.values())):
            cams = frozenset(sn for sn, ex in exercise_of.items() if ex == ex_id)
            add_exercise(agent.journal, Exercise(ex_id, f"Demo firing range ({ex_id[-1]})", window[0], window[1], cams))
        for n, cam in enumerate(s.camera for s in sims):
            agent.journal.enroll(cam.serial, bytes.fromhex(device_key_hex(cam.serial)), cam.model.name)
            agent.journal.allocate(cam.serial, f"PC-{4711 + n}", window[0] - 3600)
        return ingest_once(agent, config.usbip, config.serial, discover=False, progress=progress)
    finally:
        agent.close()


def verify(bucket: Bucket, keys: DemoKeys) -> VerifyReport:
    """The auditor's check, with the force's archive key (it opens every disclosed recording)."""
    signers = parse_allowed_signers(keys.allowed_signers.read_text())
    return Verifier(bucket, signers, [keys.archive_identity.read_text().strip().splitlines()[-1]]).run()


def _manifest_entries(bucket: Bucket) -> Iterator[ManifestRecording]:
    for info in bucket.iter_objects(f"{DOCK_ID}/"):
        if info.key.endswith(f"/{MANIFEST}"):
            yield from Manifest.parse(bucket.get_bytes(info.key, max_size=MAX_MANIFEST_BYTES), info.key).recordings


def _opens(bucket: Bucket, key: str, identity: str) -> bool:
    """Whether ``identity`` opens the age header of ``key`` (a wrong key fails on the header)."""
    with bucket.open_read(key) as reader:
        head = reader.read(HEADER_PROBE)
    try:
        Decryptor([identity]).update(head)
    except BodycamError:
        return False
    return True


def shares(bucket: Bucket, keys: DemoKeys) -> list[PartyShare]:
    """Who received what: from the signed manifests (each recording names its parties), proven by
    trying every party's own key on every recording in the bucket."""
    entries = list(_manifest_entries(bucket))
    out = []
    for party in PARTIES:
        path = keys.party_identities[party.name]
        identity = path.read_text().strip().splitlines()[-1]
        share = PartyShare(party, path)
        for e in entries:
            label = f"{e.camera_serial}/{e.recording_id}"
            opened = _opens(bucket, e.key, identity)
            if party.name in (e.parties or ()):
                share.recordings.append(label)
                share.keys.append(e.key)
                share.opened += opened
            else:
                share.others += 1
                share.refused += not opened
        out.append(share)
    return out


def _dock_authority(workdir: Path, keys: Path) -> DockAuth:
    """A demo force's dock authority and this dock's certificate, so the cameras pair on first docking."""
    authority = init_authority(workdir / "force" / "dock-authority")
    dock_key = keys / "dock_auth_ed25519"
    certificate = keys / "dock.cert"
    issue(workdir / "force" / "dock-authority", DOCK_ID, init_dock_key(dock_key, DOCK_ID), 30, certificate)
    return DockAuth(certificate=certificate, authority=authority, key=dock_key)


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
    if config.agreements is not None:
        a = config.agreements
        keys = ", ".join(f'"{k}"' for k in a.controller_keys)
        lines += ["[agreements]", f"controller_keys = [{keys}]", f'dir = "{a.dir}"', f'archive = "{a.archive}"']
    return "\n".join(lines) + "\n"


# -- the summary ----------------------------------------------------------------------------------


def summary_lines(result: DemoResult) -> list[str]:
    """What the demo shows, in words: per camera what left and what stayed, per party what it received."""
    from bodycam.agent.cli.render import stayed_text

    lines = [f"Demo dock {result.workdir}"]
    for cam in result.ingest.cameras:
        lines.append(
            f"  {cam.serial:<13} {cam.address:<24} {cam.recordings} recordings: {cam.verified} training footage "
            f"of {result.exercise_of.get(cam.serial, '?')} uploaded and verified"
        )
        if cam.out_of_scope:
            why = (stayed_text(cam.stayed_json()) or "").removeprefix("stayed on the camera: ")
            lines.append(f"      {cam.out_of_scope} stayed on the camera, never read or uploaded: {why}")
        lines += [f"    error: {err}" for err in cam.errors]
    lines.append(
        f"  {len(result.paired)} of {len(result.ingest.cameras)} cameras paired with the demo force's dock "
        "authority: they now refuse any host without a dock certificate"
    )
    lines.append(f"  batch {result.ingest.batch_id} in {result.bucket_dir}")
    lines.append("Who received what (each recording is encrypted only to the parties whose agreement covers it):")
    for s in result.shares:
        p = s.party
        proof = "its key opens exactly these" + (f", none of the other {s.others}" if s.others else "")
        lines.append(
            f"  {p.name} under {p.agreement} (exercises {', '.join(p.exercises)}; kept {p.retention_days} days): "
            f"{_n(len(s.recordings), 'recording')}; {proof}" + ("" if s.exact else "  <- NOT AS AGREED")
        )
        lines.append(f"      {_compact(s.recordings)}")
    disclosed = len({label for s in result.shares for label in s.recordings})
    stayed = sum(c.out_of_scope for c in result.ingest.cameras)
    lines.append(f"  the force's own archive key opens all {disclosed} disclosed recordings (verify uses it below)")
    lines.append(f"  {stayed} out-of-scope recordings stayed on the cameras: no party received any of them")
    return lines


def check_lines(result: DemoResult) -> list[str]:
    """The stock-tool commands that check the result (as an auditor or a party runs them)."""
    batch_dir = result.bucket_dir / DOCK_ID / str(result.ingest.batch_id)
    party = result.shares[-1] if result.shares else None
    lines = [
        "Check it with stock tools:",
        f"  ssh-keygen -Y verify -f {result.allowed_signers} -I {DOCK_ID} -n bodycam-manifest "
        f"-s {batch_dir}/manifest.json.sig < {batch_dir}/manifest.json",
    ]
    if party is not None:
        lines.append(
            f'  jq -r \'.recordings[] | select(.parties | index("{party.party.name}")) | .plaintext_sha256 + "  " + .key\' '
            f"{batch_dir}/manifest.json"
        )
        if party.keys:
            lines.append(f"  age -d -i {party.identity} {result.bucket_dir}/{party.keys[0]} | sha256sum")
    lines.append(
        f"  {command_name()} verify --bucket {result.bucket_dir.resolve().as_uri()} "
        f"--allowed-signers {result.allowed_signers} --identity {result.identity_path}"
    )
    return lines


def _n(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def _compact(labels: list[str]) -> str:
    """``BWC-DEMO-01 #1 #3, BWC-DEMO-02 #2`` from ``serial/id`` labels."""
    by_camera: dict[str, list[str]] = {}
    for label in labels:
        serial, _, rid = label.partition("/")
        by_camera.setdefault(serial, []).append(f"#{rid}")
    return ", ".join(f"{sn} {' '.join(ids)}" for sn, ids in sorted(by_camera.items())) or "none"
