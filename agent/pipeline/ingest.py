"""Docking sessions: identify, authenticate, set the clock, list, apply the scope policy, pull each
in-scope recording once, verify it in the bucket, erase it from the camera only after that, and
seal and publish the batch. Every step is journaled so a crash, an unplug, a full disk or a bucket
outage resumes on the next run (docs/crash-safety.md).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bodycam.agent.config import Config, Recipient
from bodycam.agent.formats import manifest as mf
from bodycam.agent.formats.agecrypt import Encryptor, check_recipients
from bodycam.agent.formats.sshsig import load_private_key
from bodycam.agent.pipeline import agreementclock, clocks
from bodycam.agent.pipeline import batch as batches
from bodycam.agent.pipeline.agreementclock import ClockBehindError
from bodycam.agent.pipeline.dockauth import DockCredentials, load_credentials, secure_link
from bodycam.agent.pipeline.intake import Intake
from bodycam.agent.pipeline.policy import STAY_REASONS, Exercise, Miss, ScopeDecision, decide, list_exercises
from bodycam.agent.pipeline.pull import PartBuffers, PullResult, part_size_for, pull
from bodycam.agent.storage.bucket import (
    PART_CHECKSUM,
    Bucket,
    Part,
    UploadNotFoundError,
    checksum_algorithm,
    composite_checksum,
    open_bucket,
)
from bodycam.agent.storage.custody_log import CustodyLog
from bodycam.agent.storage.interprocess import ProcessLock, batch_lock_path
from bodycam.agent.storage.journal import (
    DONE_STATES,
    IN_FLIGHT_STATES,
    RESTART_STATES,
    Journal,
    RecordingKey,
    RecordingState,
    utc_now,
)
from bodycam.drivers.device.api import CameraDevice
from bodycam.drivers.errors import BodycamError, ConfigError, IntegrityError, ProtocolError, StorageError, UploadError
from bodycam.drivers.protocol.messages import RecordingInfo

if TYPE_CHECKING:  # imported where used: most docks have no [agreements], [fleet] or [witnesses] (issue 14, start-up)
    from bodycam.agent.formats import agreements as ag
    from bodycam.agent.pipeline.fleet import FleetSource, FleetView
    from bodycam.agent.pipeline.witnessing import Outcome as WitnessOutcome
    from bodycam.agent.pipeline.witnessing import Witnessing

LOG = logging.getLogger(__name__)
#: parts one recording may have in flight outside the daemon (``ingest --once``), at most upload.workers:
#: an S3 server that hashes each part in its own request (SeaweedFS: three MD5 passes) keeps both cores of
#: a small box busy only with more than two requests open (docs/decisions.md, "four parts in flight")
PARTS_IN_FLIGHT = 4
#: ... from no more part buffers than two in flight held (2 + 3): the memory of ``ingest --once`` is unchanged
RING_BUFFERS = 5
#: how often a new upload waiting for a due batch's seal looks again (Agent._await_due_seal)
SEAL_WAIT_S = 0.5


class DeferredError(BodycamError):
    """A stalled upload was moved out of its batch (a scheduled seal) while its pull was still running."""


class UploadLostError(UploadError):
    """A recording's bytes were all sent, but the bucket lost its multipart upload before it was completed
    (a lifecycle rule, an abort by hand) and holds no object in its place: the recording left its batch
    (``pending``) and is read from the camera again, which still holds it (it was never verified)."""


class IdTakenError(IntegrityError):
    """The camera lists other footage under the id of a recording already in the open batch (an id reused
    after an erase, a re-encoded clip): both would need the one object key that names the id, so this one
    waits on the camera for the next batch."""


ProgressFn = Callable[[str, dict[str, Any]], None]


@dataclass
class CameraReport:
    """What one docking did, as ``ingest`` and the daemon report it."""

    serial: str = "?"
    address: str = ""
    recordings: int = 0
    in_scope: int = 0
    out_of_scope: int = 0
    verified: int = 0
    already_done: int = 0
    erased: int = 0
    bytes_read: int = 0
    errors: list[str] = field(default_factory=list)
    #: why footage stayed: reason code (policy.STAY_REASONS) -> recordings; dock-side only
    stayed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STAY_REASONS, 0))
    #: of the recordings outside every window, the one that missed its nearest window by least
    nearest: Miss | None = None

    @property
    def complete(self) -> bool:
        return not self.errors and self.verified + self.already_done == self.in_scope

    def note_stayed(self, decision: ScopeDecision) -> None:
        self.out_of_scope += 1
        self.stayed[decision.code] = self.stayed.get(decision.code, 0) + 1
        miss = decision.nearest
        if miss is not None and (self.nearest is None or miss.off_by_s < self.nearest.off_by_s):
            self.nearest = miss

    def stayed_json(self) -> dict[str, object]:
        """``out_of_scope_reasons`` and ``nearest_window`` as ingest, sync and status show them."""
        return {
            "out_of_scope_reasons": dict(self.stayed),
            "nearest_window": self.nearest.to_json() if self.nearest is not None else None,
        }


@dataclass(frozen=True, slots=True)
class _Job:
    """One in-scope recording of a docking on its way to the bucket: what each step of its ingest needs."""

    camera: CameraDevice
    rec: RecordingInfo
    decision: ScopeDecision
    offset: float  # the clock offset in force when it was stamped (agent/pipeline/clocks.py)
    report: CameraReport
    emit: ProgressFn
    cancel: threading.Event | None
    buffers: PartBuffers | None = None  #: the session's part buffers, kept from one recording to the next

    @property
    def serial(self) -> str:
        return self.camera.identity.serial

    @property
    def key(self) -> RecordingKey:
        return RecordingKey.of(self.camera.identity.serial, self.rec)


@dataclass
class IngestReport:
    """What ``ingest --once`` did: the batch, each camera's report and the errors outside any camera."""

    batch_id: str | None = None
    cameras: list[CameraReport] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and all(c.complete for c in self.cameras)

    def to_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "batch_id": self.batch_id,
            "errors": self.errors,
            "cameras": [
                {
                    "serial": c.serial,
                    "address": c.address,
                    "recordings": c.recordings,
                    "in_scope": c.in_scope,
                    "out_of_scope": c.out_of_scope,
                    "verified": c.verified,
                    "already_done": c.already_done,
                    "erased": c.erased,
                    "bytes_read": c.bytes_read,
                    "errors": c.errors,
                    **c.stayed_json(),
                }
                for c in self.cameras
            ],
        }


class Agent:
    """Everything a docking session needs, built once from the config (the library behind the CLI and daemon)."""

    def __init__(
        self,
        config: Config,
        *,
        bucket: Bucket | None = None,
        check: bool = True,
        batch_lock: AbstractContextManager[Any] | None = None,
    ) -> None:
        self.config = config
        self.journal = Journal(config.journal_path)
        if check:  # dock_id and bucket.url change only through 'dock handover' (agent/pipeline/handover.py)
            from bodycam.agent.pipeline.handover import check_identity

            try:
                check_identity(self.journal, config)
            except BaseException:
                self.journal.close()
                raise
        self.custody = CustodyLog(self.journal, config.dock_id)
        self.bucket = bucket or open_bucket(
            config.bucket_url, config.bucket_endpoint_url, retention_days=config.retention_days
        )
        #: held from choosing the open batch to journaling an upload, and while sealing; every process on
        #: this journal (the daemon and its bay workers, ingest --once, retention apply, which seals its
        #: erasure entries at once) shares one through a file lock (agent/storage/interprocess.py)
        self._batch_lock: AbstractContextManager[Any] = batch_lock or ProcessLock(batch_lock_path(config.state_dir))
        #: parts one recording may have in flight; the daemon lowers it while several bays share the
        #: upload pool, so memory grows with the pool, not with the number of bays
        self.parts_in_flight: Callable[[], int] = lambda: min(self.config.upload_workers, PARTS_IN_FLIGHT)
        #: part buffers one recording's pull may hold (None: pull's own parts_in_flight + 3); the daemon
        #: gives each busy bay its share of the dock's budget (agent/service/bayworker.py ``share``)
        self.ring_buffers: Callable[[], int | None] = lambda: min(self.parts_in_flight() + 3, RING_BUFFERS)
        #: camera frames (up to 1 MiB each) one pull may read ahead of its encryption
        self.read_ahead: Callable[[], int] = lambda: 4
        #: recordings being pulled now -> monotonic time of their last progress; a scheduled seal
        #: moves an upload out of its batch only when it is absent here or stalled (changed under _batch_lock)
        self._pulling: dict[RecordingKey, float] = {}
        self._fleet: FleetSource | None = None if config.fleet is None else _fleet_source(config)
        self.witnessing = self.make_witnessing(config)
        #: told when a recording starts (True) and stops (False) being pulled here, after it is registered
        #: in ``_pulling``: a bay worker passes it to the daemon, whose scheduled seal must see it
        self.on_pulling: Callable[[tuple[str, int, str], bool], None] | None = None
        load_credentials(config)  # a broken [dock_auth] is a ConfigError now, not at the first docking

    # -- configuration that must be complete before footage moves -----------------------------
    def recipients(self, config: Config | None = None) -> list[Recipient]:
        """The agreement's parties (config first, then the journal's), each key valid and all of one kind.

        ``config`` defaults to the running one; a reload passes the fresh one to refuse it early. With
        ``[agreements]``, each recording goes to the parties of its covering agreements (``disclosure``)
        and the batch's own artefacts (the personal sidecar) to the controller's archive alone.
        """
        cfg = config or self.config
        if cfg.agreements is not None:
            from bodycam.agent.formats import agreements as ag

            ag.controller_keys(cfg.agreements.controller_keys)
            check_recipients([cfg.agreements.archive], [ag.ARCHIVE_NAME])
            return [Recipient(ag.ARCHIVE_NAME, cfg.agreements.archive)]
        found = {r.name: r for r in cfg.recipients}
        for name, age in self.journal.recipients():
            found.setdefault(name, Recipient(name, age))
        if not found:
            raise ConfigError(
                "no recipients configured: footage cannot be encrypted for anyone; add [[recipients]] to the "
                "config or run 'bodycam-sync recipients add NAME AGE_PUBKEY'"
            )
        parties = sorted(found.values(), key=lambda r: r.name)
        check_recipients([r.age for r in parties], [r.name for r in parties])
        return parties

    def agreements(self) -> ag.Loaded | None:
        """The signed agreements in ``agreements.dir`` and, with ``[fleet]``, those published in the
        bucket (agent/pipeline/fleet.py), read afresh for each docking (a new agreement or revocation
        applies at the next docking); None without ``[agreements]`` (every in-scope recording goes to
        ``[[recipients]]``, as before agreements existed)."""
        if self.config.agreements is None:
            return None
        from bodycam.agent.pipeline.fleet import dock_agreements

        return dock_agreements(self.config, self.fleet(), self.bucket)

    def fleet(self) -> FleetSource | None:
        """The link to the bucket's ``_fleet/`` documents with ``[fleet]`` (rebuilt when a reload changed it)."""
        cfg = self.config.fleet
        if cfg is None:
            return None
        current = self._fleet
        if current is None or (current.cache, current.controller_lines, current.refresh_s) != (
            self.config.fleet_cache,
            cfg.controller_keys,
            cfg.refresh_s,
        ):
            self._fleet = current = _fleet_source(self.config)
        return current

    def fleet_view(self) -> FleetView | None:
        """The fleet's documents as this dock now uses them; each one it uses for the first time is a
        custody ``fleet_loaded`` entry (names and hashes), so an auditor sees from which register a
        camera's key was trusted and from when a revocation was known."""
        source = self.fleet()
        if source is None:
            return None
        from bodycam.agent.pipeline.fleet import note_fleet

        view = source.view(self.bucket)
        note_fleet(self.journal, self.custody, view)
        return view

    def exercises(self, view: FleetView | None = None) -> list[Exercise]:
        """The exercises this dock registered, then those of the fleet register it does not know (their
        site is not published: it stays with the dock that registered them)."""
        local = list_exercises(self.journal)
        register = view.register if view is not None else None
        if register is None:
            return local
        known = {e.id for e in local}
        shared = [Exercise(e.id, "", e.start, e.end, e.cameras) for e in register.exercises if e.id not in known]
        return local + shared

    def enrolled_key(self, serial: str, view: FleetView | None = None) -> bytes | None:
        """The device key enrolled on this dock, else the one in the fleet register (a local enrolment
        wins: replacing it is a custody entry on this dock, 'enroll --replace')."""
        local = self.journal.enrolled_key(serial)
        if local is not None or view is None or view.register is None:
            return local
        return view.register.device_key(serial)

    def disclosure(
        self, loaded: ag.Loaded, serial: str, decision: ScopeDecision, exercises: list[Exercise], now: float
    ) -> ag.Disclosure:
        """Who may receive one in-scope recording now, under which agreements (agent/formats/agreements.py)."""
        from bodycam.agent.formats import agreements as ag

        assert self.config.agreements is not None
        site = next((e.site for e in exercises if e.id == decision.exercise_id), None)
        facts = ag.RecordingFacts(serial, decision.exercise_id, site, decision.start, decision.end)
        return ag.disclosure(loaded, facts, now, self.config.agreements.archive)

    def dock_credentials(self) -> DockCredentials | None:
        """[dock_auth], read for each docking: a renewed certificate or a new revocation list copied to
        the dock reaches the next camera without a restart or reload."""
        return load_credentials(self.config)

    def check_ready(self, config: Config | None = None) -> None:
        """Fail before touching a camera if keys or recipients are missing (ConfigError). ``config``
        defaults to the running one; the daemon's reload passes the fresh one, which it refuses alike."""
        cfg = config or self.config
        self.recipients(cfg)
        own = load_private_key(cfg.key_path, cfg.KEY_MISSING).public_key()
        if cfg.agreements is not None or cfg.fleet is not None:
            from bodycam.agent.formats.agreements import refuse_own_key

            for option, section in (("agreements", cfg.agreements), ("fleet", cfg.fleet)):
                if section is not None:
                    refuse_own_key(section.controller_keys, own, f"{option}.controller_keys")
        mf.load_pseudonym_key(cfg.pseudonym_key_path, create=True)
        load_credentials(cfg)

    # -- recovery of work a previous run left ---------------------------------------------------
    def recover(self) -> list[str]:
        """Finish uploads whose bytes are all in the bucket; abort multipart uploads nobody owns;
        publish sealed batches. Returns problems (outages) that keep the run from being complete."""
        problems: list[str] = []
        for key in self.journal.keys_in(RecordingState.COMPLETING):
            try:
                self._complete(key)
            except UploadLostError as err:  # nothing to do without the camera; its next docking pulls it
                LOG.warning("camera %s recording %d: %s", key.serial, key.recording_id, err)
            except BodycamError as err:
                problems.append(str(err))
        try:
            self._abort_orphans()
        except BodycamError as err:
            problems.append(str(err))
        for batch_id in batches.pending_publication(self.journal):
            try:
                batches.publish(self.journal, self.bucket, self.config.dock_id, batch_id)
            except BodycamError as err:
                problems.append(str(err))
        return problems

    def _abort_orphans(self) -> None:
        """Abort the multipart uploads under the dock's prefix that no journal row holds (a crash between
        CreateMultipartUpload and its journal commit). A ``completing`` row holds its upload as much as an
        ``uploading`` one: its completion may just have failed (an S3 completion slower than the read
        timeout) while the listing works, and aborting it left the row with no upload to complete, for
        good. Under the batch lock, which is held from creating an upload to journaling it, so an upload
        another process (the daemon beside an ``ingest --once``) is starting is never taken for an orphan."""
        with self._batch_lock:
            owned = {
                r["upload_id"]
                for r in self.journal.query(
                    "SELECT upload_id FROM recordings WHERE state IN (?,?)",
                    (RecordingState.UPLOADING, RecordingState.COMPLETING),
                )
            }
            for pending in self.bucket.open_uploads(prefix=f"{self.config.dock_id}/"):
                if pending.upload_id not in owned:
                    LOG.info("aborting orphaned multipart upload of %s", pending.key)
                    self.bucket.abort_upload(pending.key, pending.upload_id)

    # -- one camera -----------------------------------------------------------------------------
    def session(
        self,
        camera: CameraDevice,
        *,
        progress: ProgressFn | None = None,
        cancel: threading.Event | None = None,
    ) -> CameraReport:
        report = CameraReport(address=f"{camera.transport.kind}:{camera.transport.address}")
        emit = progress or (lambda _kind, _data: None)
        try:
            self._session(camera, report, emit, cancel)
        except BodycamError as err:
            report.errors.append(f"{camera.name}: {err}")
            # the report carries it to the one who shows it (ingest prints it, the daemon logs it once)
            LOG.debug("%s: %s", camera.name, err)
            try:
                self.custody.error(err, camera=report.serial)
            except StorageError:
                pass
        finally:
            emit("camera_done", {"serial": report.serial})
        return report

    def _session(
        self, camera: CameraDevice, report: CameraReport, emit: ProgressFn, cancel: threading.Event | None
    ) -> None:
        ident = camera.open()
        report.serial = ident.serial
        self.custody.append(
            "docked",
            camera=ident.serial,
            model=ident.model,
            firmware=ident.firmware,
            transport=camera.transport.kind,
        )
        fleet = self.fleet_view()
        camera.authenticate(self.enrolled_key(ident.serial, fleet))
        self.custody.append("authenticated", camera=ident.serial, device_key=ident.device_key.hex())
        secure_link(camera, self.dock_credentials(), self.custody.append)
        intake = Intake.open(self.journal, ident.serial, self.config)
        docked = clocks.read_list_and_set(self.journal, self.custody, ident.serial, camera, intake)
        listing, placements = docked.listing, docked.placements
        report.recordings = len(listing)
        exercises = self.exercises(fleet)
        loaded = self.agreements()
        judged = _SessionClock(self.journal, ident.serial, report)
        todo: list[tuple[RecordingInfo, ScopeDecision, float]] = []
        for rec in listing:
            placement = placements[rec.id]
            decision = decide(rec, ident.serial, placement, exercises)
            if decision.in_scope and placement.offset_s is not None and loaded is not None:
                decision = self._agreement_gate(loaded, ident.serial, rec, decision, exercises, judged)
            if not decision.in_scope or placement.offset_s is None:
                report.note_stayed(decision)
                self._note_out_of_scope(ident.serial, rec, decision, placement.offset_s or 0.0, intake)
                continue
            report.in_scope += 1
            todo.append((rec, decision, placement.offset_s))
        pending = [
            (r.id, r.size)
            for r, _, _ in todo
            if self.journal.state(RecordingKey.of(ident.serial, r)) not in DONE_STATES
        ]
        emit("camera_listed", {"serial": ident.serial, "recordings": pending})  # what is left to move, not all
        try:
            buffers = PartBuffers(self.bucket.part_buffer)  # freed with the session
            for rec, decision, offset in todo:
                if cancel is not None and cancel.is_set():
                    report.errors.append(f"camera {ident.serial}: stopped before recording {rec.id}; resumes next run")
                    break
                try:
                    state = self._ingest_recording(_Job(camera, rec, decision, offset, report, emit, cancel, buffers))
                except (IntegrityError, UploadError, ProtocolError) as err:
                    report.errors.append(f"camera {ident.serial} recording {rec.id}: {err}")
                    LOG.debug("camera %s recording %d: %s", ident.serial, rec.id, err)
                    self.custody.error(err, camera=ident.serial, recording=rec.id)
                    if isinstance(err, UploadError):
                        break  # the bucket is unreachable: the rest would fail too
                    self._give_up(ident.serial, rec, str(err))
                    if isinstance(err, ProtocolError):
                        break  # the camera broke the protocol: nothing more is taken from it this session
                    continue  # an IntegrityError concerns this recording's bytes (damaged or lied about): go on
                if self.config.erase_after_upload and state == RecordingState.VERIFIED:
                    self._erase(camera, rec, report)
        finally:  # after the admitted recordings moved (or failed): the bound holds back only what is new
            self._report_held(intake, report)
        self.custody.append("undocked", camera=ident.serial)

    def _report_held(self, intake: Intake, report: CameraReport) -> None:
        """The docking's one error for what the intake bound held back on the camera (nothing if none)."""
        held = intake.error()
        if held is None:
            return
        report.errors.append(str(held))  # the daemon logs it, ingest prints it: once
        with contextlib.suppress(StorageError):  # a full state disk is the error the session reports
            self.custody.error(held, camera=intake.serial)

    def _agreement_gate(
        self,
        loaded: ag.Loaded,
        serial: str,
        rec: RecordingInfo,
        decision: ScopeDecision,
        exercises: list[Exercise],
        judged: _SessionClock,
    ) -> ScopeDecision:
        """An in-scope recording leaves only under a covering agreement; one whose upload already
        started finishes under the disclosure journaled then (it is encrypted to those parties). With
        the dock's clock behind a time it judged by (agent/pipeline/agreementclock.py) none covers it."""
        from bodycam.agent.formats import agreements as ag

        if self.journal.state(RecordingKey.of(serial, rec)) in IN_FLIGHT_STATES | DONE_STATES:
            return decision
        try:
            found = self.disclosure(loaded, serial, decision, exercises, judged())
        except ClockBehindError:  # the session's error says it once, with the fix; custody gets the code
            return ScopeDecision(False, CLOCK_BEHIND_REASON, None, decision.start, decision.end, ag.NO_AGREEMENT, None)
        except ag.MixedKindsError as err:  # this recording stays; the camera's others may still leave
            LOG.warning("camera %s recording %d stays on the camera: %s", serial, rec.id, err)
            ids = ", ".join(err.ids[:8])
            reason = f"covering agreements ({ids}) mix post-quantum and X25519 recipients"
            return ScopeDecision(False, reason, None, decision.start, decision.end, ag.NO_AGREEMENT, None)
        if found.covered:
            return decision
        return ScopeDecision(False, found.why_not(), None, decision.start, decision.end, ag.NO_AGREEMENT, None)

    def _note_out_of_scope(
        self, serial: str, rec: RecordingInfo, decision: ScopeDecision, offset: float, intake: Intake
    ) -> None:
        """Journal the decision once, with its custody entry; a later docking that decides it for
        another reason (an exercise registered since, a clock it can no longer place) records that
        reason too, so custody always says why the footage stayed. A changed reason counts against the
        camera's intake (a camera flipping its recordings' epochs must not write custody without end);
        past it the older reason stands, and the docking's error says so."""
        key = RecordingKey.of(serial, rec)
        with self.journal.transaction() as db:
            exists = self.journal.recording(key)
            if exists:
                if (
                    exists["state"] == RecordingState.OUT_OF_SCOPE
                    and exists["error"] != decision.reason
                    and intake.take_reason()
                ):
                    intake.commit_in(db)
                    self.journal.note_stay_reason(key, decision.reason, offset)
                    self.custody.append_in(
                        db, "skipped_out_of_scope", camera=serial, recording=rec.id, size=rec.size,
                        reason=decision.reason, code=decision.code,
                    )  # fmt: skip
                return
            db.execute(
                "INSERT INTO recordings(serial, recording_id, camera_sha256, state, size, start_us, end_us, "
                "clock_offset_s, category, name, error, updated_at) VALUES(?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    *key.params,
                    RecordingState.OUT_OF_SCOPE,
                    rec.size,
                    rec.start_us,
                    rec.end_us,
                    offset,
                    str(rec.category),
                    "",  # the name of footage that never leaves is not kept
                    decision.reason,
                    utc_now(),
                ),
            )
            self.custody.append_in(
                db, "skipped_out_of_scope", camera=serial, recording=rec.id, size=rec.size, reason=decision.reason,
                code=decision.code,
            )  # fmt: skip

    def _ingest_recording(self, job: _Job) -> RecordingState:
        """Ingest one in-scope recording, registered as being pulled while it runs, so a scheduled seal
        moves it out of its batch only if it stalls (registered before its row is read)."""
        with self._batch_lock:
            self._pulling[job.key] = time.monotonic()
        try:
            if self.on_pulling is not None:
                self.on_pulling(job.key.params, True)
            return self._ingest_registered(job)
        finally:
            with self._batch_lock:
                self._pulling.pop(job.key, None)
            if self.on_pulling is not None:
                self.on_pulling(job.key.params, False)

    def note_pulling(self, ident: tuple[str, int, str], seen: float | None) -> None:
        """A recording another process pulls for us: ``seen`` is its last progress (monotonic), None once
        it stops. The daemon notes its bay workers' pulls so its scheduled seal does not move them."""
        key = RecordingKey(*ident)
        if seen is None:
            self._pulling.pop(key, None)
        else:
            self._pulling[key] = seen

    def _ingest_registered(self, job: _Job) -> RecordingState:
        """Carry the recording on from its journaled state: done, only to complete, or to pull."""
        row = self.journal.recording(job.key)
        if row is not None and row["state"] in DONE_STATES:
            job.report.already_done += 1
            return RecordingState(row["state"])
        if row is not None and row["state"] == RecordingState.COMPLETING:
            try:
                self._complete(job.key)
                job.report.verified += 1
                return RecordingState.VERIFIED
            except UploadLostError as err:  # the camera is here: read it again now
                LOG.warning("camera %s recording %d: %s", job.serial, job.rec.id, err)
                row = self.journal.recording(job.key)
        if row is None or row["state"] in RESTART_STATES:
            row = self._start_upload(job)
            encryptor = Encryptor.resume(bytes(row["age_header"]), bytes(row["file_key"]))
            existing: dict[int, Part] = {}
        else:
            row, encryptor, existing = self._resumable_upload(job, row)
        result = self._pull(job, row, encryptor, existing)
        self._journal_pulled(job, row, result)
        self._complete(job.key)
        job.report.verified += 1
        job.emit("recording_done", {"serial": job.serial, "recording": job.rec.id})
        return RecordingState.VERIFIED

    def _resumable_upload(self, job: _Job, row: sqlite3.Row) -> tuple[sqlite3.Row, Encryptor, dict[int, Part]]:
        """The upload to pull into, its encryptor (the journaled age header and file key, so a resumed
        pass produces the same ciphertext) and the parts it already holds; when the bucket lost it
        (lifecycle rule, manual abort), or it is not known to take our part checksum (an older agent began
        it with SHA-256 parts, and S3 refuses CRC-32C parts into such an upload), a new upload in the same
        batch, from its first part, the old one aborted: no recording is held by an upload it cannot finish."""
        encryptor = Encryptor.resume(bytes(row["age_header"]), bytes(row["file_key"]))
        existing = self._existing_parts(job.key, row["object_key"], row["upload_id"])
        if existing is not None and self._takes_our_checksum(job.key):
            return row, encryptor, existing
        if existing is not None:
            LOG.info("restarting the upload of %s: no journaled part shows it takes %s parts", row["object_key"],
                     PART_CHECKSUM)  # fmt: skip
            self.bucket.abort_upload(row["object_key"], row["upload_id"])
        row = self._start_upload(job, batch_id=str(row["batch_id"]))
        return row, Encryptor.resume(bytes(row["age_header"]), bytes(row["file_key"])), {}

    def _pull(self, job: _Job, row: sqlite3.Row, encryptor: Encryptor, existing: dict[int, Part]) -> PullResult:
        """One streaming pass from the camera into the upload (agent/pipeline/pull.py), journaling each
        part as the bucket takes it and marking the pull alive at each step; IntegrityError (after
        aborting the upload and marking the row failed) when the bytes are not the ones listed."""
        rec, serial, key = job.rec, job.serial, job.key
        encrypted_size = encryptor.encrypted_size(rec.size)
        resumed = _resumed_plaintext(existing, rec.size, encrypted_size)
        job.emit("recording_start", {"serial": serial, "recording": rec.id, "size": rec.size, "resumed_bytes": resumed})

        def progress(done: int) -> None:
            self._pulling[key] = time.monotonic()
            job.emit("recording_bytes", {"serial": serial, "recording": rec.id, "done": done, "size": rec.size})

        def part_done(part: Part) -> None:
            self._pulling[key] = time.monotonic()
            self.journal.add_part(key, row["upload_id"], part)

        result = pull(
            job.camera,
            rec,
            encryptor,
            self.bucket,
            row["object_key"],
            row["upload_id"],
            part_size=part_size_for(encrypted_size, self.config.part_size),
            existing_parts=existing,
            parts_in_flight=self.parts_in_flight(),
            ring_buffers=self.ring_buffers(),
            read_ahead=self.read_ahead(),
            on_part=part_done,
            on_progress=progress,
            cancel=job.cancel,
            buffers=job.buffers,
        )
        job.report.bytes_read += rec.size
        if result.plaintext_sha256 != key.camera_sha256:
            self.bucket.abort_upload(row["object_key"], row["upload_id"])
            with self.journal.transaction():
                self.journal.mark_failed(key, "plaintext hash differs from the camera's")
            raise IntegrityError(
                f"pulled bytes hash to {result.plaintext_sha256[:16]}... but the camera lists "
                f"{key.camera_sha256[:16]}...; not uploaded, not erased"
            )
        return result

    def _journal_pulled(self, job: _Job, row: sqlite3.Row, result: PullResult) -> None:
        """Journal the whole pass (``completing``, its exact parts, custody ``pulled``), unless the
        recording was moved out of its batch while it was pulled (DeferredError)."""
        with self.journal.transaction() as db:
            owner = self.journal.recording(job.key)
            if owner is None or owner["upload_id"] != row["upload_id"]:
                raise DeferredError(
                    f"camera {job.serial} recording {job.rec.id} stalled and was moved to a later batch while it was "
                    "being pulled; it starts afresh at the next docking"
                )
            self.journal.replace_parts(job.key, result.parts)  # exactly the parts of this pass, in order
            self.journal.mark_completing(
                job.key, result.plaintext_sha256, result.ciphertext_sha256, result.ciphertext_size
            )
            self.custody.append_in(
                db,
                "pulled",
                camera=job.serial,
                recording=job.rec.id,
                size=job.rec.size,
                plaintext_sha256=result.plaintext_sha256,
                ciphertext_sha256=result.ciphertext_sha256,
            )

    def _give_up(self, serial: str, rec: RecordingInfo, reason: str) -> None:
        """A camera that lies about a recording: abort its upload so the batch can still be sealed.

        The row becomes ``failed`` (never erased); a later docking starts that recording afresh.
        Transport errors and outages do not come here: those uploads stay resumable.
        """
        key = RecordingKey.of(serial, rec)
        row = self.journal.recording(key)
        if row is None or row["state"] not in IN_FLIGHT_STATES:
            return
        try:
            self.bucket.abort_upload(row["object_key"], row["upload_id"])
        except BodycamError as err:
            LOG.warning("could not abort the upload of %s (recover() retries): %s", row["object_key"], err)
        with self.journal.transaction():
            self.journal.mark_failed(key, reason[:500])

    def _start_upload(self, job: _Job, *, batch_id: str | None = None) -> sqlite3.Row:
        """Begin (or, with ``batch_id``, restart within its batch) the upload of one recording.

        Holds the batch lock from choosing the batch to journaling the upload, so a batch is never
        sealed between the two (its manifest would miss the recording).
        """
        rec, serial = job.rec, job.serial
        restart = batch_id is not None
        file_key = os.urandom(16)
        shared: ag.Disclosure | None = None
        loaded = self.agreements()
        if loaded is None:
            encryptor = Encryptor([r.age for r in self.recipients()], file_key=file_key)
        else:
            now = agreementclock.judge(self.journal, time.time())  # ClockBehindError: it stays, a later run retries
            shared = self.disclosure(loaded, serial, job.decision, self.exercises(), now)
            if not shared.covered:  # an agreement expired or was revoked since the listing
                raise ConfigError(f"camera {serial} recording {rec.id}: {shared.why_not()}; it stays on the camera")
            encryptor = Encryptor(list(shared.recipients), file_key=file_key)
        keep_until = None if shared is None else _retain_until(shared, job.decision.end)
        if batch_id is None:
            self._await_due_seal(job)
        with self._batch_lock:
            if batch_id is not None and batch_id != batches.open_id(self.journal):
                batch_id = None  # its batch was sealed meanwhile: the recording joins the one open now
            batch_id = batch_id or batches.open_batch(self.journal)
            self._claim_id(job, batch_id)
            key = mf.recording_key(self.config.dock_id, batch_id, serial, rec.id)
            # No journal transaction is open across this network call (an outage would hold the
            # journal's write lock for every bay); a crash right after it leaves an orphaned upload,
            # which recover() aborts.
            upload_id = self.bucket.start_upload(key, retain_until=keep_until)
            with self.journal.transaction() as db:
                db.execute(
                    "INSERT INTO recordings(serial, recording_id, camera_sha256, state, batch_id, model, size, start_us, "
                    "end_us, clock_offset_s, exercise_id, category, name, object_key, upload_id, file_key, age_header, "
                    "updated_at) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
                    "ON CONFLICT(serial, recording_id, camera_sha256) DO UPDATE SET state=excluded.state, "
                    "batch_id=excluded.batch_id, exercise_id=excluded.exercise_id, name=excluded.name, "
                    "clock_offset_s=excluded.clock_offset_s, object_key=excluded.object_key, "
                    "upload_id=excluded.upload_id, file_key=excluded.file_key, age_header=excluded.age_header, "
                    "error=NULL, attempts=attempts+1, updated_at=excluded.updated_at",
                    (
                        *job.key.params,
                        RecordingState.UPLOADING,
                        batch_id,
                        job.camera.identity.model,
                        rec.size,
                        rec.start_us,
                        rec.end_us,
                        job.offset,
                        job.decision.exercise_id,
                        str(rec.category),
                        rec.name,
                        key,
                        upload_id,
                        file_key,
                        encryptor.header,
                        utc_now(),
                    ),
                )
                self.journal.delete_parts(job.key)  # a new upload holds none: no part of an older one stays
                if shared is not None:
                    db.execute(
                        "INSERT OR REPLACE INTO recording_agreements VALUES(?,?,?,?)",
                        (*job.key.params, mf.encode(_journaled(shared, keep_until)).decode()),
                    )
                self.custody.append_in(
                    db, "pull_started", camera=serial, recording=rec.id, key=key, restart=True if restart else None
                )
        row = self.journal.recording(job.key)
        assert row is not None  # just written
        return row

    def _await_due_seal(self, job: _Job) -> None:
        """A new upload does not join a batch that is due to be sealed: it waits until that batch is sealed.

        A due batch (``batch.max_age_s`` old, a verified recording in it) waits only for the pulls in it
        that still progress (``_defer_stalled``). A camera answering just within every deadline kept one
        going, and each of its next recordings joined the same batch as the last ended: the other
        cameras' verified footage stayed unsigned for as long as that camera had footage (65,535
        recordings at the protocol's slowest pace: years). Now the seal waits for one recording a bay at
        most, and the bays pause that long at most (a hanging camera's pull ends at its link deadline).
        Several open batches would spare the pause, but a custody entry belongs to the batch that seals
        next, and verify matches each recording's ``disclosed`` entry in its own batch's segment.
        In a process that knows every live pull (``ingest --once``, the daemon's threads) the waiting
        session seals itself; a bay worker waits for the daemon's scheduled seal. Progress is reported
        while waiting (the daemon must not give the bay up); a cancel ends the wait (DeferredError), and so
        does ``daemon.stall_timeout_s`` without a seal (a seal that fails must not stop every upload).
        """
        give_up = time.monotonic() + self.config.stall_timeout_s
        warned = False
        while True:
            with self._batch_lock:
                open_id = self._open_batch_due(time.time())
            if open_id is None:
                return
            if job.cancel is not None and job.cancel.is_set():
                raise DeferredError(
                    f"camera {job.serial} recording {job.rec.id}: stopped while batch {open_id} was due to be "
                    "sealed; it resumes at the next docking"
                )
            if time.monotonic() >= give_up:  # the seal itself fails (logged where it does): uploads go on
                LOG.warning("batch %s was not sealed in %.0f s; recording %d of camera %s joins it",
                            open_id, self.config.stall_timeout_s, job.rec.id, job.serial)  # fmt: skip
                return
            job.emit("waiting_for_seal", {"serial": job.serial, "recording": job.rec.id, "batch": open_id})
            if self.on_pulling is None:  # every live pull is this process's: sealing here moves none of them
                try:
                    if self.seal_and_publish() is not None:
                        continue
                except BodycamError as err:
                    if not warned:
                        LOG.warning("sealing batch %s before a new upload: %s", open_id, err)
                    warned = True
            time.sleep(SEAL_WAIT_S)

    def _claim_id(self, job: _Job, batch_id: str) -> None:
        """Under _batch_lock: make sure no other recording of ``batch_id`` holds this one's object key, which
        names only the camera and the recording id. A camera may list other footage under an id (reused
        after an erase, a clip re-encoded): the create-only completion of a second object at that key
        would be refused at every run, its row left ``completing`` and the batch never sealed. An upload
        the camera no longer lists under the id, and that nobody is pulling, is moved out of the batch
        (as a scheduled seal moves a stalled one); one completed or completing keeps the key, and this
        recording waits on the camera for the next batch (IdTakenError)."""
        held = self.journal.query(
            "SELECT camera_sha256, state FROM recordings WHERE serial=? AND recording_id=? AND batch_id=? "
            "AND camera_sha256<>? AND state IN ('uploading','completing','verified','erased')",
            (job.serial, job.rec.id, batch_id, job.key.camera_sha256),
        )
        for row in held:
            other = RecordingKey(job.serial, job.rec.id, str(row["camera_sha256"]))
            if row["state"] != RecordingState.UPLOADING or other in self._pulling:
                raise IdTakenError(
                    f"the camera lists other footage under recording id {job.rec.id} than the recording of that id "
                    f"already in batch {batch_id}; it stays on the camera and leaves in the next batch"
                )
            with self.journal.transaction() as db:
                moved = batches.move_out(self.journal, db, self.custody, batch_id, other, "its id was reused")
            for object_key, upload_id in moved:
                try:
                    self.bucket.abort_upload(object_key, upload_id)
                except BodycamError as err:
                    LOG.warning("could not abort the upload of %s (recover() retries): %s", object_key, err)

    def _takes_our_checksum(self, key: RecordingKey) -> bool:
        """True when the recording's journaled parts (written only once the bucket took them under its
        upload) are all ``PART_CHECKSUM``: the proof an upload takes our parts. The journal row names no
        algorithm and SeaweedFS's ListParts reports none, so an upload with no journaled part is not
        trusted; restarting it keeps nothing and so loses nothing (docs/decisions.md)."""
        parts = self.journal.parts(key)
        try:
            return bool(parts) and all(checksum_algorithm(p["sha256_b64"]) == PART_CHECKSUM for p in parts)
        except UploadError:  # not a checksum of either kind
            return False

    def _existing_parts(self, key: RecordingKey, object_key: str, upload_id: str) -> dict[int, Part] | None:
        """Parts both the bucket and the journal know (same number, size and ETag); None if the upload is gone."""
        try:
            in_bucket = {p.number: p for p in self.bucket.list_parts(object_key, upload_id)}
        except UploadNotFoundError:
            return None
        out: dict[int, Part] = {}
        for j in self.journal.parts(key):
            b = in_bucket.get(j["part_number"])
            if b is not None and b.size == j["size"] and b.etag == j["etag"]:
                out[b.number] = Part(b.number, b.etag, j["sha256_b64"], b.size)  # the column holds the part's checksum
        return out

    def _complete(self, key: RecordingKey) -> None:
        """Complete the multipart upload (or find it completed), verify size and checksum, journal it."""
        row = self.journal.recording(key)
        assert row is not None  # only journaled recordings are completed
        object_key = row["object_key"]
        parts = [Part(p["part_number"], p["etag"], p["sha256_b64"], p["size"]) for p in self.journal.parts(key)]
        try:
            self.bucket.complete_upload(object_key, row["upload_id"], parts)
        except UploadNotFoundError as err:  # gone, and no object holds these parts (complete_upload looked)
            self._lost_before_completion(key, row)
            raise UploadLostError(
                f"the bucket lost the upload of {object_key} before it was completed (no object holds it); "
                "the recording leaves its batch and is read from the camera again"
            ) from err
        info = self.bucket.head(object_key)
        if info is None:
            raise UploadError(
                f"{object_key} is missing from the bucket after completing its upload; it will be retried"
            )
        if info.size != row["ciphertext_size"]:
            raise IntegrityError(f"{object_key} in the bucket is {info.size} bytes, expected {row['ciphertext_size']}")
        expected = composite_checksum(parts)
        if info.checksum and info.checksum not in (expected, expected.split("-")[0]):
            raise IntegrityError(f"{object_key} in the bucket has checksum {info.checksum}, expected {expected}")
        with self.journal.transaction() as db:
            self.journal.mark_verified(key, info.version_id)
            self.custody.append_in(
                db,
                "verified",
                camera=key.serial,
                recording=key.recording_id,
                key=object_key,
                size=info.size,
                ciphertext_sha256=row["ciphertext_sha256"],
                version_id=info.version_id,
            )
            self._disclosed_in(db, key, row)

    def _lost_before_completion(self, key: RecordingKey, row: sqlite3.Row) -> None:
        """The row of an upload the bucket lost while ``completing`` goes back to ``pending`` (custody
        ``pull_deferred``): left ``completing``, every run failed on it, the recording never left the camera
        and its batch, busy with it, was never sealed (docs/crash-safety.md)."""
        with self.journal.transaction() as db:
            now = self.journal.recording(key)
            if now is None or now["state"] != RecordingState.COMPLETING or now["upload_id"] != row["upload_id"]:
                return  # another process got there first
            batches.move_out(self.journal, db, self.custody, str(row["batch_id"]), key, "its upload was lost")

    def _disclosed_in(self, db: sqlite3.Connection, key: RecordingKey, row: sqlite3.Row) -> None:
        """The s.62 disclosure entry of a recording now in the bucket, encrypted to its covering agreements'
        parties (docs/formats.md §4): what ``bodycam-sync disclosures`` reports and ``verify`` matches
        against the manifest. A recording sent to ``[[recipients]]`` (no agreement) has none."""
        shared = self.journal.disclosure(key)
        if shared is None:
            return
        fields = json.loads(shared)
        self.custody.append_in(
            db,
            "disclosed",
            camera=row["serial"],
            recording=row["recording_id"],
            key=row["object_key"],
            ciphertext_sha256=row["ciphertext_sha256"],
            parties=fields.get("parties"),
            agreements=fields.get("agreements"),
            under={p: share["agreements"] for p, share in fields.get("shares", {}).items()} or None,
        )

    def _erase(self, camera: CameraDevice, rec: RecordingInfo, report: CameraReport) -> None:
        serial = camera.identity.serial
        key = RecordingKey.of(serial, rec)
        row = self.journal.recording(key)
        if row is None or row["state"] != RecordingState.VERIFIED or row["plaintext_sha256"] != key.camera_sha256:
            return
        try:
            self._check_still_held(key, row)
        except BodycamError as err:
            report.errors.append(f"camera {serial} recording {rec.id}: {err}")
            self.custody.error(err, camera=serial, recording=rec.id)
            return
        try:
            camera.erase(rec.id, bytes.fromhex(row["plaintext_sha256"]))
        except BodycamError as err:
            report.errors.append(f"camera {serial} refused to erase recording {rec.id}: {err}")
            self.custody.error(err, camera=serial, recording=rec.id)
            return
        with self.journal.transaction() as db:
            self.journal.mark_erased(key)
            self.custody.append_in(db, "erased", camera=serial, recording=rec.id, sha256=row["plaintext_sha256"])
        report.erased += 1

    def _check_still_held(self, key: RecordingKey, row: sqlite3.Row) -> None:
        """The bucket holds the verified object now, as it was verified (size and checksum): the erase may
        come dockings after the verification (erase_after_upload turned on, a refusal before), and an object
        deleted meanwhile (by hand, a lifecycle rule; not by 'retention apply') must not be erased from the
        camera as well. IntegrityError otherwise (the recording stays on the camera); UploadError when the bucket cannot say."""
        object_key = str(row["object_key"])
        if self.journal.query("SELECT 1 FROM erasures WHERE key=?", (object_key,)):
            return  # 'retention apply' erased it from the bucket on purpose: its time is up everywhere
        info = self.bucket.head(object_key, version_id=row["version_id"] or None)
        if info is None and self._moved_bucket_since(str(row["updated_at"])):
            return  # verified in the bucket this dock used before a handover, which keeps it
        parts = [Part(p["part_number"], p["etag"], p["sha256_b64"], p["size"]) for p in self.journal.parts(key)]
        expected = composite_checksum(parts) if parts else None
        if (
            info is None
            or info.size != row["ciphertext_size"]
            or (info.checksum and expected is not None and info.checksum not in (expected, expected.split("-")[0]))
        ):
            raise IntegrityError(
                f"{object_key} is no longer in the bucket as it was verified; recording {key.recording_id} is not "
                "erased from the camera"
            )

    def _moved_bucket_since(self, verified_at: str) -> bool:
        """Whether a ``dock handover`` to another bucket came after ``verified_at`` (the journal's UTC text,
        as custody's ``ts``): objects verified before it are in the old bucket, not the one this dock uses.
        Read only when an object is missing, so its scan of the custody log costs nothing on the way."""
        for (line,) in self.journal.query(
            "SELECT line FROM custody WHERE line LIKE ? ORDER BY seq DESC", ('%"event":"dock_handover"%',)
        ):
            entry = json.loads(line)
            if entry.get("event") == "dock_handover" and entry.get("from_bucket") and str(entry["ts"]) > verified_at:
                return True
        return False

    # -- batches --------------------------------------------------------------------------------
    def seal_and_publish(self, *, now: float | None = None, flush_custody: bool = False) -> str | None:
        """Seal the open batch when it is ready, then publish every sealed batch (docs/crash-safety.md).

        Ready: it lists at least one verified recording and nothing in it is in flight. Once the batch
        is ``batch.max_age_s`` old, uploads in it that are not being pulled with progress are moved to
        a later batch first, so no camera keeps the others' verified footage unsigned. A batch with no
        recording is sealed only when custody entries have waited ``batch.custody_only_interval_s``, or at
        once with ``flush_custody`` (``retention apply`` publishes its erasure entries so).
        """
        now = time.time() if now is None else now
        with self._batch_lock:
            cfg = self.config
            open_id = batches.open_id(self.journal)
            since = batches.unsealed_custody_since(self.journal)
            custody_due = since is not None and (flush_custody or now - since >= cfg.custody_only_interval_s)
            if open_id is None and custody_due:
                open_id = batches.open_batch(self.journal)
            sealed_id = None
            if open_id is not None and (custody_due or batches.recordings_ready(self.journal, open_id)):
                if (
                    not flush_custody  # another process's live pulls are not in self._pulling: never move them
                    and batches.busy(self.journal, open_id)
                    and batches.age_s(self.journal, open_id, now) >= cfg.batch_max_age_s
                ):
                    self._defer_stalled(open_id)
                if batches.busy(self.journal, open_id) == 0:
                    sealed_id = open_id
                    batches.seal(
                        self.journal,
                        self.custody,
                        sealed_id,
                        dock_id=cfg.dock_id,
                        key=load_private_key(cfg.key_path, cfg.KEY_MISSING),
                        recipients=self.recipients(),
                        pseudonym_secret=mf.load_pseudonym_key(cfg.pseudonym_key_path, create=True),
                    )
            for batch_id in batches.pending_publication(self.journal):
                batches.publish(self.journal, self.bucket, cfg.dock_id, batch_id)
            return sealed_id

    def seal_due(self, *, now: float | None = None) -> bool:
        """Whether a scheduled seal has work: custody-only is due, or the open batch is past its age
        bound with a verified recording to sign."""
        now = time.time() if now is None else now
        since = batches.unsealed_custody_since(self.journal)
        if since is not None and now - since >= self.config.custody_only_interval_s:
            return True
        return self._open_batch_due(now) is not None

    def _open_batch_due(self, now: float) -> str | None:
        """The open batch when it is past its age bound with a verified recording to sign, else None."""
        open_id = batches.open_id(self.journal)
        if open_id is None or batches.age_s(self.journal, open_id, now) < self.config.batch_max_age_s:
            return None
        return open_id if batches.recordings_ready(self.journal, open_id) > 0 else None

    def _defer_stalled(self, batch_id: str) -> None:
        """Under _batch_lock: finish uploads that need only the bucket, and move the rest that are not
        progressing (no live pull, or none for ``daemon.stall_timeout_s``) out of ``batch_id``."""
        fresh = time.monotonic() - self.config.stall_timeout_s
        keep = frozenset(k for k, seen in list(self._pulling.items()) if seen >= fresh)
        for rk in self.journal.keys_in(RecordingState.COMPLETING, batch_id=batch_id):
            if rk not in keep:
                try:
                    self._complete(rk)
                except BodycamError as err:
                    LOG.warning("completing %s recording %s before the seal: %s", rk.serial, rk.recording_id, err)
        for key, upload_id in batches.defer(self.journal, self.custody, batch_id, keep=keep):
            LOG.warning("batch %s sealed on schedule without %s (stalled); it restarts in a later batch", batch_id, key)
            try:
                self.bucket.abort_upload(key, upload_id)
            except BodycamError as err:
                LOG.warning("could not abort the upload of %s (recover() retries): %s", key, err)

    def make_witnessing(self, config: Config) -> Witnessing | None:
        """The dock's witnesses (``[witnesses]``), their policy read now: a bad file is a ConfigError at start."""
        if config.witnesses is None:
            return None
        from bodycam.agent.formats import witnesspolicy
        from bodycam.agent.pipeline.witnessing import Witnessing

        policy = witnesspolicy.load(config.witnesses.policy)
        return Witnessing(
            self.journal,
            self.bucket,
            config.dock_id,
            policy,
            timeout=config.witnesses.timeout_s,
            retry_s=config.witnesses.retry_s,
        )

    def witness(self) -> list[WitnessOutcome]:
        """Ask the witnesses that lack the newest published checkpoint (those not waiting out a failure).
        Sealing never calls this: the daemon runs it in its own thread, ``ingest --once`` after publishing."""
        if self.witnessing is None:
            return []
        return self.witnessing.run()

    def close(self) -> None:
        self.journal.close()


#: the custody reason of a recording held back by a clock behind its mark (no time in it: it may be shared)
CLOCK_BEHIND_REASON = "the dock's clock is behind a time it has judged data-sharing agreements by"


class _SessionClock:
    """The time one docking judges agreements by, taken when the first recording needs it (a docking
    with nothing new to disclose says nothing about the clock); a clock behind its mark is the
    session's one error, then ``ClockBehindError`` for each recording it would have judged."""

    def __init__(self, journal: Journal, serial: str, report: CameraReport) -> None:
        self._journal, self._serial, self._report = journal, serial, report
        self._now: float | None = None
        self._error: ClockBehindError | None = None

    def __call__(self) -> float:
        if self._now is None and self._error is None:
            try:
                self._now = agreementclock.judge(self._journal, time.time())
            except ClockBehindError as err:
                self._error = err
                self._report.errors.append(f"camera {self._serial}: {err}")
                LOG.warning("camera %s: %s", self._serial, err)
        if self._error is not None:
            raise self._error
        assert self._now is not None
        return self._now


def _fleet_source(config: Config) -> FleetSource | None:
    """The dock's link to the fleet's documents (agent/pipeline/fleet.py), imported only for a dock with
    ``[fleet]`` (issue 14, start-up: the fleet and agreement formats and their some 10 dataclasses)."""
    from bodycam.agent.pipeline.fleet import fleet_source

    return fleet_source(config)


def _retain_until(shared: ag.Disclosure, end: float) -> float | None:
    """How long the bucket must keep a recording its agreements disclose (agent/formats/retention.py)."""
    from bodycam.agent.formats import retention

    return retention.retain_until(shared.agreements, shared.parties, end)


def _disclosed(shared: ag.Disclosure, keep_until: float | None) -> dict[str, Any]:
    """The manifest's disclosure fields of one recording: its agreements, parties and, when they set a
    retention, ``retain_until`` (agent/formats/retention.py)."""
    from bodycam.agent.formats import retention

    fields = shared.manifest_fields()
    if keep_until is not None:
        fields["retain_until"] = retention.iso(keep_until)
    return fields


def _resumed_plaintext(existing: dict[int, Part], size: int, encrypted_size: int) -> int:
    """Roughly how many plaintext bytes the parts already in the bucket (1..k, contiguous) cover.

    A resumed pull reads those bytes from the camera again only to check them; progress shows them
    as done but does not count them in the rate (they were not moved now)."""
    covered, number = 0, 1
    while number in existing:
        covered += existing[number].size
        number += 1
    if not covered or encrypted_size <= 0:
        return 0
    return min(size, size * covered // encrypted_size)


def ingest_once(
    agent: Agent,
    usbip: Sequence[str],
    serial: Sequence[str],
    *,
    discover: bool = True,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
) -> IngestReport:
    """Recover leftovers, run one session per reachable camera (concurrently), seal and publish."""
    from bodycam.agent.pipeline.inventory import opened_cameras

    agent.check_ready()
    report = IngestReport()
    report.errors.extend(agent.recover())
    with opened_cameras(usbip, serial, discover=discover) as cams:
        results: list[CameraReport] = [CameraReport(errors=["session did not run"]) for _ in cams]

        def run(index: int, cam: CameraDevice) -> None:
            try:
                results[index] = agent.session(cam, progress=progress, cancel=cancel)
            except Exception as err:  # a bug must fail the run loudly, never read as "nothing to do"
                LOG.exception("session on %s crashed", cam.name)
                results[index] = CameraReport(errors=[f"{cam.name}: internal error: {type(err).__name__}: {err}"])

        threads = [threading.Thread(target=run, args=(i, c), name=f"session-{i}") for i, c in enumerate(cams)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        report.cameras = results
    try:
        report.batch_id = agent.seal_and_publish()
    except BodycamError as err:
        report.errors.append(f"publishing the batch: {err}")
    try:  # a witness that is down is asked again by the next run or the daemon: not an ingest error
        agent.witness()
    except BodycamError as err:
        LOG.warning("writing the witnesses' cosignatures to the bucket: %s", err)
    if report.batch_id is None:
        open_rows = agent.journal.query("SELECT batch_id FROM batches WHERE state='open' LIMIT 1")
        report.batch_id = open_rows[0][0] if open_rows else None
    return report


def _journaled(shared: ag.Disclosure, keep_until: float | None) -> dict[str, Any]:
    """What the journal keeps of a recording's disclosure: the manifest's fields and, under ``shares``,
    each party's agreements, data items and recipients (for its sidecar and its disclosure entry)."""
    return {**_disclosed(shared, keep_until), "shares": shared.shares()}
