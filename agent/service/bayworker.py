"""Bay workers: the daemon runs the docking sessions in a pool of worker processes (``daemon.bay_processes``).

Why (docs/decisions.md): in one interpreter the bays take turns on one GIL for everything that is
Python (the camera link's framing, the age chunking, the upload's bookkeeping), so eight bays on a
dock with eight cores moved barely more than one. A pool sized to the cores (``daemon.bay_workers``,
0: one per core) uses every core, at most ``min(busy bays, cores)`` processes, each running its
sessions in threads as the threaded daemon does (one Agent, one journal connection, one bucket client
per worker): a process per session bought nothing on a dock with fewer cores than busy bays but its
memory (about 33 MiB PSS each). A session that wedges where no deadline reaches is still given up: its
worker is killed, and the other bays it ran are requeued at once (their journal is consistent at every
step; they resume where they were), while the wedged bay's next session runs alone in a worker of its
own, so a camera that wedges again costs no other bay its work.

What stays shared although the workers are separate processes:
- the journal: SQLite in WAL mode, each step one ``BEGIN IMMEDIATE`` transaction, whichever process;
- the batch lock, the upload pool (``upload.workers``) and the bandwidth cap: files under the runtime
  directory guarded by ``flock`` (agent/storage/interprocess.py), given back by the kernel if a
  worker dies holding one;
- which recordings are being pulled: the worker tells the daemon before it reads a recording's row
  and waits for the answer, so the daemon's scheduled seal never moves a live pull out of its batch.

The pipe between the daemon and a worker carries, from the worker: ``("progress", sid, kind, data)``
(a session's progress events; byte counts at most one per ``PROGRESS_EVERY_S`` per session), ``("pulling", sid, ident,
alive)``, ``("log", level, name, message)``, ``("report", sid, CameraReport)`` at a session's end, or
``("error", sid, text)`` when its camera could not be opened; from the daemon: ``("start", sid,
SessionJob)``, ``("cancel", sid)``, ``("config", Config)`` after a reload, ``("ack", sid, parts_in_flight,
ring_buffers, read_ahead)`` (the bay's share of the dock's part buffers for the recording it is about to
pull) and ``("exit",)`` once the worker has no session left. A worker whose pipe closes (the daemon
died) stops its sessions as if cancelled.
"""

from __future__ import annotations

import ctypes
import gc
import itertools
import logging
import multiprocessing
import multiprocessing.context
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from bodycam.agent.config import Config
from bodycam.agent.pipeline.ingest import Agent, CameraReport
from bodycam.agent.storage.bucket import open_bucket
from bodycam.agent.storage.interprocess import PooledUploads, ProcessLock, SharedRate, SharedSlots, batch_lock_path
from bodycam.drivers import transport as transports
from bodycam.drivers.device.api import CameraDevice
from bodycam.drivers.device.camera import Camera
from bodycam.drivers.device.massstorage import MassStorageCamera
from bodycam.drivers.errors import BodycamError, ServiceError, TransportError

if TYPE_CHECKING:
    import usb.backend

LOG = logging.getLogger(__name__)
#: byte counts are coalesced to one message per this many seconds a session (its last always goes): the daemon
#: needs them for status (``watch`` redraws every 0.5 s by default) and stall detection (seconds) only. Each
#: message costs the worker and the daemon some 60-70 us of CPU between them (pickle, pipe, wake-up, relay):
#: at 0.05 s, 20 a second a bay, that was 0.04 CPU s/GiB at 40 MB/s a camera and 0.1 at 15 MB/s
PROGRESS_EVERY_S = 0.5
ACK_TIMEOUT_S = 30.0
KILLED_GRACE_S = 30.0  #: a killed worker's reader reports its end within this, or the bay thread stops waiting
Ident = tuple[str, int, str]
M_ARENA_MAX = -8  #: glibc's mallopt parameter
WORKER_ARENAS = 2  #: malloc arenas a worker may use (glibc's default is 8 per core)


@dataclass(frozen=True, slots=True)
class Share:
    """A busy bay's share of the dock's memory for pulls: parts in flight, part buffers in its pull's ring,
    camera frames read ahead."""

    parts_in_flight: int
    ring_buffers: int | None  #: None: pull's own (parts_in_flight + 3)
    read_ahead: int = 4


def dock_cores() -> int:
    """The cores this daemon may run on (its CPU affinity, which a container or systemd's CPUAffinity= may
    narrow), not the machine's."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def share(busy_bays: int, cores: int | None = None) -> Share:
    """One part-buffer budget for the dock (docs/decisions.md, "one part-buffer budget").

    A bay alone keeps pull's whole pipeline: up to 2 parts in flight and their buffers + 3, so reading,
    encrypting and uploading overlap when one camera has the cores. Bays that share the dock get 1 part in
    flight (the pool lets only ``upload.workers`` parts go at once across the dock, however deep each
    ring is) and 2 buffers each: one being filled while the other uploads. Once more bays are busy than
    the dock has cores, each gets 1 buffer and 1 frame of read-ahead (instead of 4): a bay whose part
    is uploading (or waiting for a slot) leaves its core to the others instead of encrypting or reading
    ahead, and the cores, not the rings, set the dock's pace. The dock so holds at most 5 part buffers for one bay, 2 per bay up to its cores, 1 per bay
    beyond (8 bays on 2 cores: 8, where each held 4 before).
    """
    if busy_bays <= 1:
        return Share(2, None)
    if busy_bays > (cores or dock_cores()):
        return Share(1, 1, 1)
    return Share(1, 2)


def open_camera(kind: str, address: str, *, usb_backend: usb.backend.IBackend | None = None) -> CameraDevice:
    """The camera docked at ``kind:address`` (the caller closes it); TransportError if none is there. A ``usb``
    address is the camera's USB serial number, found on the buses ``usb_backend`` sees (libusb when None)."""
    if kind == "mass-storage":
        return MassStorageCamera(Path(address))
    if kind == "usbip":
        opened = transports.open_usbip(address)
        if not opened:
            raise TransportError(f"no camera exported at {address}")
        for extra in opened[1:]:
            extra.close()
        return Camera(opened[0])
    if kind == "usb":
        return Camera(transports.open_usb_camera(address, usb_backend=usb_backend))
    return Camera(transports.open_serial(address))


@dataclass(frozen=True, slots=True)
class SharedLimits:
    """Where the workers' shared batch lock, upload pool and bandwidth cap live, and their sizes."""

    directory: Path
    upload_workers: int
    bandwidth_limit_mbps: float | None
    #: the journal's batch lock, shared with every other process on the state directory (retention apply)
    batch_lock_file: Path | None = None

    @classmethod
    def of(cls, directory: Path, config: Config) -> SharedLimits:
        return cls(directory, config.upload_workers, config.bandwidth_limit_mbps, batch_lock_path(config.state_dir))

    def prepare(self) -> None:
        """The daemon's, once the journal has made the state directory private: make the directory
        (the runtime directory 0750, as the control socket has it; this one 0700) and start the cap's
        schedule afresh."""
        self.directory.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        self.directory.mkdir(exist_ok=True, mode=0o700)
        rate = self.rate()
        if rate is not None:
            rate.reset()

    def batch_lock(self) -> ProcessLock:
        return ProcessLock(self.batch_lock_file or self.directory / "batch.lock")

    def slots(self) -> SharedSlots:
        return SharedSlots(self.directory, self.upload_workers)

    def rate(self) -> SharedRate | None:
        if not self.bandwidth_limit_mbps:
            return None
        return SharedRate(self.directory / "upload.rate", self.bandwidth_limit_mbps * 1e6 / 8)


@dataclass(frozen=True, slots=True)
class WorkerJob:
    """What a worker process starts with: the running config, the shared limits, the daemon's log level."""

    config: Config
    limits: SharedLimits
    log_level: int


@dataclass(frozen=True, slots=True)
class SessionJob:
    """One session for a worker: the camera to open, and the bay's share until the daemon's first ack."""

    kind: str
    address: str
    share: Share


# -- the worker's side ---------------------------------------------------------------------------
@dataclass(eq=False)
class _Session:
    """A session running in a worker: the daemon's cancel and ack reach it through these events."""

    cancel: threading.Event = field(default_factory=threading.Event)
    ack: threading.Event = field(default_factory=threading.Event)
    last_bytes: float = float("-inf")  #: when its last byte count went to the daemon (``_Link.clock``)
    thread: threading.Thread | None = None


class _Link:
    """The worker's end of the pipe: ``serve`` applies what the daemon sends and starts each session in a
    thread of its own; any thread sends. The sessions share the worker's one Agent, as the threaded
    daemon's bays share its Agent (one journal connection, one bucket client, one batch lock)."""

    def __init__(self, conn: Connection, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.conn = conn
        self.clock = clock  #: paces the byte counts (``progress``); a test drives it
        self.agent: Agent | None = None
        self.failure: str | None = None  #: why the worker could not build its Agent (each session is told)
        self.sessions: dict[int, _Session] = {}
        #: the latest share from the daemon: the dock's budget divided by its busy bays, one for every bay
        self.share: Share | None = None
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._local = threading.local()  #: the session the calling thread runs (``bind``)

    def send(self, *msg: Any) -> None:
        with self._send_lock:
            try:
                self.conn.send(msg)
            except (OSError, ValueError):
                self.stop_all()  # the daemon is gone: every session stops at its next checkpoint

    def stop_all(self) -> None:
        """Cancel every session (the daemon went away, or SIGTERM); takes no lock: a signal handler calls it."""
        for session in list(self.sessions.values()):
            session.cancel.set()
            session.ack.set()

    def current(self) -> Share:
        return self.share or Share(2, None)

    def serve(self) -> None:
        """Apply the daemon's messages until it says exit (it has no session left here) or goes away."""
        while True:
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):
                break
            if msg[0] == "exit":
                break
            if msg[0] == "start":
                self.start(int(msg[1]), msg[2])
            elif msg[0] == "config" and self.agent is not None:
                self.agent.config = msg[1]  # as in the daemon: the next upload and seal of every session see it
            elif msg[0] == "ack":
                if len(msg) == 5:
                    self.share = Share(int(msg[2]), None if msg[3] is None else int(msg[3]), int(msg[4]))
                self._event(int(msg[1]), "ack")
            elif msg[0] == "cancel":
                self._event(int(msg[1]), "cancel")
        self.stop_all()

    def _event(self, sid: int, which: str) -> None:
        with self._lock:
            session = self.sessions.get(sid)
        if session is not None:
            (session.ack if which == "ack" else session.cancel).set()

    def start(self, sid: int, job: SessionJob) -> None:
        session = _Session()
        with self._lock:
            self.sessions[sid] = session
        self.share = job.share  # the daemon's share as of now (bays docked since this worker started count)
        session.thread = threading.Thread(
            target=self._run, args=(sid, job, session), name=f"bay-{job.address}", daemon=True
        )
        session.thread.start()

    def join(self, timeout_s: float) -> None:
        """Wait for the sessions to end (each was cancelled), at most ``timeout_s`` in all."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            threads = [s.thread for s in self.sessions.values() if s.thread is not None]
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def bind(self, sid: int) -> None:
        """The calling thread runs session ``sid`` (the agent's ``on_pulling`` hook names no session)."""
        self._local.sid = sid

    def _run(self, sid: int, job: SessionJob, session: _Session) -> None:
        self.bind(sid)
        try:
            self.send(*self._session(sid, job, session))
        finally:
            with self._lock:
                self.sessions.pop(sid, None)

    def _session(self, sid: int, job: SessionJob, session: _Session) -> tuple[Any, ...]:
        """One session on one camera: ``("report", sid, report)`` or ``("error", sid, text)``."""
        if self.agent is None:
            return ("error", sid, self.failure or "the bay worker has no agent")
        try:
            with open_camera(job.kind, job.address) as camera:
                report = self.agent.session(
                    camera, progress=lambda kind, data: self.progress(sid, session, kind, data), cancel=session.cancel
                )
            return ("report", sid, report)
        except BodycamError as err:
            return ("error", sid, str(err))
        except Exception as err:
            LOG.exception("bay %s:%s crashed", job.kind, job.address)
            return ("error", sid, f"internal error: {type(err).__name__}: {err}")

    def progress(self, sid: int, session: _Session, kind: str, data: dict[str, Any]) -> None:
        if kind == "recording_bytes" and data.get("done") != data.get("size"):
            now = self.clock()
            if now - session.last_bytes < PROGRESS_EVERY_S:
                return
            session.last_bytes = now
        self.send("progress", sid, kind, data)

    def pulling(self, ident: Ident, alive: bool) -> None:
        """Tell the daemon; a start waits for its answer (then its scheduled seal knows of the pull)."""
        sid = int(getattr(self._local, "sid", 0))
        if not alive:
            self.send("pulling", sid, ident, False)
            return
        with self._lock:
            session = self.sessions.get(sid)
        if session is None:
            return
        session.ack.clear()
        self.send("pulling", sid, ident, True)
        if not session.ack.wait(ACK_TIMEOUT_S):
            LOG.warning("the daemon did not answer within %.0f s; pulling anyway", ACK_TIMEOUT_S)


class _PipeLog(logging.Handler):
    """The worker's log records go to the daemon, which logs them with its own handlers (journald)."""

    def __init__(self, link: _Link) -> None:
        super().__init__()
        self.link = link

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.link.send("log", record.levelno, record.name, record.getMessage())
        except Exception:  # logging must never break a session
            self.handleError(record)


def _lean() -> None:
    """Keep what the worker inherits from the forkserver shared, and its own heap small.

    ``gc.freeze``: the forkserver's objects (the modules it preloaded) go to the permanent generation, so
    the worker's collections never write to their headers, which would copy their pages into the worker
    (copy-on-write). Fewer malloc arenas: the worker's threads (its sessions, their camera readers and
    uploaders, the daemon link) would otherwise each grow an arena of their own."""
    gc.freeze()
    try:
        ctypes.CDLL(None).mallopt(M_ARENA_MAX, WORKER_ARENAS)
    except (OSError, AttributeError):  # not glibc: its allocator keeps its own arenas
        pass


def _worker_agent(job: WorkerJob, link: _Link) -> Agent:
    """The worker's one Agent, its uploads through the dock's shared pool and cap, its pulls sized by the
    daemon's latest share."""
    limits = job.limits
    bucket = open_bucket(
        job.config.bucket_url, job.config.bucket_endpoint_url, retention_days=job.config.retention_days
    )
    agent = Agent(
        job.config,
        bucket=PooledUploads(bucket, limits.slots(), limits.rate()),
        check=False,  # the daemon checked the dock's identity at start
        batch_lock=limits.batch_lock(),
    )
    agent.parts_in_flight = lambda: link.current().parts_in_flight
    agent.ring_buffers = lambda: link.current().ring_buffers
    agent.read_ahead = lambda: link.current().read_ahead
    agent.on_pulling = link.pulling
    return agent


def worker_main(conn: Connection, job: WorkerJob) -> None:
    """The worker process: the sessions the daemon gives it, each in a thread, until it says exit."""
    _lean()
    link = _Link(conn)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the daemon, which cancels us
    signal.signal(signal.SIGTERM, lambda *_: link.stop_all())  # a stop checkpoints, as in the daemon
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(_PipeLog(link))
    root.setLevel(job.log_level)
    try:
        link.agent = _worker_agent(job, link)
    except BodycamError as err:
        link.failure = str(err)
    except Exception as err:
        LOG.exception("a bay worker could not start")
        link.failure = f"internal error: {type(err).__name__}: {err}"
    try:
        link.serve()
        link.join(ACK_TIMEOUT_S)  # the daemon went away: give the cancelled sessions time to checkpoint
    finally:
        if link.agent is not None:
            link.agent.close()
        conn.close()


# -- the daemon's side ---------------------------------------------------------------------------
_CONTEXT: multiprocessing.context.ForkServerContext | None = None
#: imported lazily by the drivers (a missing optional library never breaks an import), so preloaded
#: here by name: a worker would otherwise import (and, without .pyc files, compile) them each time
_TRANSPORTS = (
    "bodycam.drivers.transport.usb",
    "bodycam.drivers.transport.usbip_backend",
    "bodycam.drivers.transport.serial",
)


_S3_PRELOAD = "bodycam.agent.storage.s3preload"


def context(*, s3: bool = False) -> multiprocessing.context.ForkServerContext:
    """forkserver, with this module (and so the pipeline, the drivers and boto3) imported once in the
    server: a worker starts in milliseconds and shares those pages with its siblings. Never plain fork:
    the daemon has threads. ``__main__`` (the ``bodycam-sync`` script) is preloaded too: otherwise
    each worker runs it again to rebuild the main module, importing the whole CLI (0.35 CPU s a worker).
    ``s3`` (the first call decides): botocore and S3's models too (agent/storage/s3preload.py), which
    each worker on an S3 bucket otherwise imported and parsed at every docking."""
    global _CONTEXT
    if _CONTEXT is None:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["__main__", __name__, *_TRANSPORTS, *([_S3_PRELOAD] if s3 else [])])
        _CONTEXT = ctx
    return _CONTEXT


def start_server(*, s3: bool = False) -> None:
    """Start the forkserver and wait until it has imported what it preloads (the daemon does before it
    says it is ready), so the first docking does not wait for the pipeline's imports: the server takes
    requests only once its preload is done, so a first no-op worker returning says it is."""
    proc = context(s3=s3).Process(target=_nothing, name="forkserver-ready", daemon=True)
    proc.start()
    proc.join(120)


def _nothing() -> None:
    """A worker that does nothing (start_server's probe)."""


class WorkerEnded(ServiceError):
    """A session's worker process ended without its report (killed, crashed)."""


class Requeued(ServiceError):
    """The session's worker was killed to free another bay, whose session did not stop when asked: not
    this bay's fault; it resumes at once from its journal."""


class _Process:
    """One worker process as the daemon sees it: its pipe and the sessions it runs."""

    def __init__(self, process: multiprocessing.process.BaseProcess, conn: Connection, *, alone: bool) -> None:
        self.process = process
        self.conn = conn
        self.alone = alone  #: runs one bay only (one whose last session wedged or took its worker down)
        self.sessions: dict[int, BayWorker] = {}
        self.exiting = False  #: told to exit (no session left) or gone: takes no new session
        self.killed_for: str | None = None  #: the bay whose session it was killed to give up
        self._send_lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def send(self, *msg: Any) -> None:
        with self._send_lock:
            try:
                self.conn.send(msg)
            except (OSError, ValueError):
                pass  # the worker is gone: its reader tells the sessions


class BayPool:
    """The daemon's bay workers: at most ``daemon.bay_workers`` processes (0: one per core) shared by the
    busy bays, each session going to a new process while there are fewer than that, else to the one
    running fewest; plus one process for each bay that must run alone. A worker left with no session
    exits, so an idle dock holds none and a dock with fewer busy bays than cores a process per bay."""

    def __init__(self, config: Config, limits: SharedLimits) -> None:
        self.config = config
        self.limits = limits
        self._lock = threading.Lock()
        self._processes: list[_Process] = []
        self._sids = itertools.count(1)

    def capacity(self) -> int:
        return self.config.bay_workers or dock_cores()

    def pids(self) -> list[int]:
        """The worker processes running sessions now."""
        with self._lock:
            return [p.pid for p in self._processes if p.pid is not None]

    def reconfigure(self, config: Config) -> None:
        """A reload: every worker's next upload and seal see it, and workers started from now start with it."""
        with self._lock:
            self.config = config
            processes = list(self._processes)
        for process in processes:
            process.send("config", config)

    def attach(self, worker: BayWorker, *, alone: bool = False) -> _Process:
        """Start ``worker``'s session in a worker process (a new one, or the least busy at capacity)."""
        with self._lock:
            shared = [p for p in self._processes if not p.alone]
            if alone or len(shared) < self.capacity():
                process = self._spawn(alone=alone)
            else:
                process = min(shared, key=lambda p: len(p.sessions))
            sid = next(self._sids)
            process.sessions[sid] = worker
            worker.bind(process, sid)  # before "start": its first message may come back at once
        process.send("start", sid, worker.job)
        return process

    def detach(self, process: _Process, sid: int) -> None:
        """The session ended; a worker left with none is told to exit."""
        with self._lock:
            process.sessions.pop(sid, None)
            idle = not process.sessions and not process.exiting
            if idle:
                process.exiting = True
                self._processes.remove(process)
        if idle:
            process.send("exit")

    def kill(self, process: _Process, address: str) -> None:
        """Give up the session of bay ``address`` by killing its worker; the worker's other bays are requeued."""
        with self._lock:
            if process.killed_for is None:
                process.killed_for = address
            others = len(process.sessions) - 1
        LOG.error(
            "bay %s: its session did not stop when asked; killing its worker (pid %s)%s",
            address,
            process.pid,
            f" and requeueing the {others} other bay(s) it ran" if others > 0 else "",
        )
        process.process.kill()

    def close(self) -> None:
        """The daemon stops: every worker exits (their sessions have ended or been given up)."""
        with self._lock:
            processes, self._processes = self._processes, []
            for process in processes:
                process.exiting = True
        for process in processes:
            process.send("exit")

    def _spawn(self, *, alone: bool) -> _Process:
        ctx = context()
        ours, theirs = ctx.Pipe()
        job = WorkerJob(self.config, self.limits, logging.getLogger().level)
        proc = ctx.Process(target=worker_main, args=(theirs, job), name="bay-worker", daemon=True)
        try:
            proc.start()
        except OSError as err:
            ours.close()
            raise ServiceError(f"cannot start a bay worker process: {err}") from err
        finally:
            theirs.close()
        process = _Process(proc, ours, alone=alone)
        self._processes.append(process)
        threading.Thread(target=self._read, args=(process,), name=f"bay-worker-{proc.pid}", daemon=True).start()
        return process

    def _read(self, process: _Process) -> None:
        """Relay a worker's messages to its sessions until it ends; then tell the ones left how it ended."""
        while True:
            try:
                msg = process.conn.recv()
            except (EOFError, OSError):
                break
            if msg[0] == "log":
                logging.getLogger(str(msg[2])).log(int(msg[1]), "%s", msg[3])
                continue
            with self._lock:
                worker = process.sessions.get(int(msg[1]))
            if worker is None:
                continue
            try:
                worker.deliver(msg)
            except Exception:  # one bad message must not leave every session of this worker unread
                LOG.exception("bay %s: relaying its worker's %r failed", worker.job.address, msg[0])
        process.process.join(10)
        if process.process.is_alive():
            process.process.kill()
            process.process.join(5)
        with self._lock:
            process.exiting = True
            if process in self._processes:
                self._processes.remove(process)
            orphans = list(process.sessions.values())
        how = _ended(process.process.exitcode)
        for worker in orphans:
            worker.ended(how, process.killed_for)
        process.conn.close()


class BayWorker:
    """One bay's session in a pool worker, seen from the daemon's bay thread."""

    def __init__(
        self,
        job: SessionJob,
        *,
        pool: BayPool,
        cancel: threading.Event,
        on_progress: Callable[[str, dict[str, Any]], None],
        on_pulling: Callable[[Ident, float | None], None],
        kill_after_s: Callable[[], float],
        on_started: Callable[[int | None], None] = lambda _pid: None,
        share: Callable[[], Share] | None = None,
        alone: bool = False,
    ) -> None:
        self.job = job
        self.pool = pool
        self.cancel = cancel
        self.on_progress = on_progress
        self.on_pulling = on_pulling
        self.kill_after_s = kill_after_s
        self.on_started = on_started
        #: the bay's share of the dock's part buffers now, sent with each ack (the worker applies it to the
        #: recording it is about to pull: bays that docked after this session started count)
        self.share = share or (lambda: job.share)
        self.alone = alone
        self.pid: int | None = None
        self._process: _Process | None = None
        self._sid = 0
        self._lock = threading.RLock()  #: the reader's relaying and the bay thread's release never interleave
        self._pulling: Ident | None = None
        self._outcome: tuple[Any, ...] | None = None
        self._done = threading.Event()

    def bind(self, process: _Process, sid: int) -> None:
        self._process, self._sid, self.pid = process, sid, process.pid

    def run(self) -> CameraReport:
        """Run the session in the pool and relay until it ends; its report, or ServiceError/TransportError
        (Requeued when its worker was killed for another bay's sake)."""
        process = self.pool.attach(self, alone=self.alone)
        self.on_started(process.pid)
        cancelled_at: float | None = None
        killed_at: float | None = None
        try:
            while not self._done.wait(0.2):
                if self.cancel.is_set() and cancelled_at is None:
                    cancelled_at = time.monotonic()
                    process.send("cancel", self._sid)
                now = time.monotonic()
                if killed_at is None and cancelled_at is not None and now - cancelled_at > self.kill_after_s():
                    self.pool.kill(process, self.job.address)
                    killed_at = now
                elif killed_at is not None and now - killed_at > KILLED_GRACE_S and not process.process.is_alive():
                    self.ended(_ended(process.process.exitcode), process.killed_for)  # its reader never said so
        finally:
            with self._lock:
                self._finish(("gone",))  # nothing more is relayed
            self._release()
            self.pool.detach(process, self._sid)
            self.on_started(None)
        return self._result()

    def _result(self) -> CameraReport:
        outcome = self._outcome or ("gone",)
        if outcome[0] == "report":
            return cast(CameraReport, outcome[1])
        if outcome[0] == "error":
            raise ServiceError(str(outcome[1]))
        how, killed_for = (outcome[1], outcome[2]) if outcome[0] == "ended" else ("still running", None)
        if killed_for is not None and killed_for != self.job.address:
            raise Requeued(f"its worker process was killed to give up bay {killed_for}, which did not stop when asked")
        raise WorkerEnded(f"the worker process of bay {self.job.address} ended without a report ({how})")

    def deliver(self, msg: tuple[Any, ...]) -> None:
        """A message of this session from its worker (the pool's reader thread calls)."""
        with self._lock:
            if self._done.is_set():
                return
            if msg[0] in ("report", "error"):
                self._finish((msg[0], msg[2]))
            elif msg[0] == "progress":
                if msg[2] == "recording_bytes" and self._pulling is not None:
                    self.on_pulling(self._pulling, time.monotonic())
                self.on_progress(msg[2], msg[3])
            elif msg[0] == "pulling":
                self._pull(cast(Ident, tuple(msg[2])), bool(msg[3]))

    def _pull(self, ident: Ident, alive: bool) -> None:
        if not alive:
            self._release()
            return
        self._pulling = ident
        self.on_pulling(ident, time.monotonic())
        now = self.share()
        if self._process is not None:
            self._process.send("ack", self._sid, now.parts_in_flight, now.ring_buffers, now.read_ahead)

    def ended(self, how: str, killed_for: str | None) -> None:
        """Its worker ended before the session did."""
        with self._lock:
            self._finish(("ended", how, killed_for))

    def _finish(self, outcome: tuple[Any, ...]) -> None:
        if self._outcome is None:
            self._outcome = outcome
        self._done.set()

    def _release(self) -> None:
        with self._lock:
            if self._pulling is not None:
                self.on_pulling(self._pulling, None)
                self._pulling = None


def _ended(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"
