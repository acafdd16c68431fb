"""Bay workers: the daemon runs each docking session in a process of its own (``daemon.bay_processes``).

Why (docs/decisions.md): in one interpreter the bays take turns on one GIL for everything that is
Python (the camera link's framing, the age chunking, the upload's bookkeeping), so eight bays on a
dock with eight cores moved barely more than one. A worker per session uses a core of its own, and a
worker that wedges where no deadline reaches can be killed and its bay retried, where a thread could
only be left behind.

What stays shared although the workers are separate processes:
- the journal: SQLite in WAL mode, each step one ``BEGIN IMMEDIATE`` transaction, whichever process;
- the batch lock, the upload pool (``upload.workers``) and the bandwidth cap: files under the runtime
  directory guarded by ``flock`` (agent/storage/interprocess.py), given back by the kernel if a
  worker dies holding one;
- which recordings are being pulled: the worker tells the daemon before it reads a recording's row
  and waits for the answer, so the daemon's scheduled seal never moves a live pull out of its batch.

The pipe between the daemon and a worker carries, from the worker: ``("progress", kind, data)`` (the
session's progress events; byte counts at most one per 50 ms), ``("pulling", ident, alive)``,
``("log", level, name, message)``, ``("report", CameraReport)`` at the end, or ``("error", text)`` when
the camera could not be opened; from the daemon: ``("cancel",)``, ``("config", Config)`` after a reload,
``("ack", parts_in_flight, ring_buffers, read_ahead)`` (the bay's share of the dock's part buffers for the recording
it is about to pull). A worker whose pipe closes (the daemon died) stops as if cancelled.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import multiprocessing
import multiprocessing.context
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, cast

from bodycam.agent.config import Config
from bodycam.agent.pipeline.ingest import Agent, CameraReport
from bodycam.agent.storage.bucket import open_bucket
from bodycam.agent.storage.interprocess import PooledUploads, ProcessLock, SharedRate, SharedSlots, batch_lock_path
from bodycam.drivers import transport as transports
from bodycam.drivers.device.api import CameraDevice
from bodycam.drivers.device.camera import Camera
from bodycam.drivers.device.massstorage import MassStorageCamera
from bodycam.drivers.errors import BodycamError, ServiceError, TransportError

LOG = logging.getLogger(__name__)
PROGRESS_EVERY_S = 0.05  #: byte counts are coalesced: the daemon needs them for status and stall detection only
ACK_TIMEOUT_S = 30.0
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
    if busy_bays > (cores or os.cpu_count() or 1):
        return Share(1, 1, 1)
    return Share(1, 2)


def open_camera(kind: str, address: str) -> CameraDevice:
    """The camera docked at ``kind:address`` (the caller closes it); TransportError if none is there."""
    if kind == "mass-storage":
        return MassStorageCamera(Path(address))
    if kind == "usbip":
        opened = transports.open_usbip(address)
        if not opened:
            raise TransportError(f"no camera exported at {address}")
        for extra in opened[1:]:
            extra.close()
        return Camera(opened[0])
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
    """One session for a worker: what to open, with which config and shared limits."""

    kind: str
    address: str
    config: Config
    limits: SharedLimits
    parts_in_flight: int
    log_level: int
    ring_buffers: int | None = None  #: until the daemon's first ack says otherwise
    read_ahead: int = 4


# -- the worker's side ---------------------------------------------------------------------------
class _Link:
    """The worker's end of the pipe: sends from any thread; a reader thread applies what the daemon sends."""

    def __init__(self, conn: Connection, cancel: threading.Event) -> None:
        self.conn = conn
        self.cancel = cancel
        self.agent: Agent | None = None
        self._send_lock = threading.Lock()
        self._ack = threading.Event()
        self._last_bytes = 0.0
        self.share: Share | None = None  #: the latest from the daemon's acks (None: the job's)

    def send(self, *msg: Any) -> None:
        with self._send_lock:
            try:
                self.conn.send(msg)
            except (OSError, ValueError):
                self.cancel.set()  # the daemon is gone: stop at the next checkpoint

    def read(self) -> None:
        while True:
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):
                self.cancel.set()
                self._ack.set()
                return
            if msg[0] == "cancel":
                self.cancel.set()
            elif msg[0] == "ack":
                if len(msg) == 4:
                    self.share = Share(int(msg[1]), None if msg[2] is None else int(msg[2]), int(msg[3]))
                self._ack.set()
            elif msg[0] == "config" and self.agent is not None:
                self.agent.config = msg[1]  # as in the daemon: the next upload and seal see it

    def progress(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "recording_bytes" and data.get("done") != data.get("size"):
            now = time.monotonic()
            if now - self._last_bytes < PROGRESS_EVERY_S:
                return
            self._last_bytes = now
        self.send("progress", kind, data)

    def pulling(self, ident: Ident, alive: bool) -> None:
        """Tell the daemon; a start waits for its answer (then its scheduled seal knows of the pull)."""
        if not alive:
            self.send("pulling", ident, False)
            return
        self._ack.clear()
        self.send("pulling", ident, True)
        if not self._ack.wait(ACK_TIMEOUT_S):
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
    (copy-on-write). Fewer malloc arenas: the worker's threads (camera reader, uploader, daemon link)
    would otherwise each grow an arena of their own, kept mostly empty by the GIL-serialised work."""
    gc.freeze()
    try:
        ctypes.CDLL(None).mallopt(M_ARENA_MAX, WORKER_ARENAS)
    except (OSError, AttributeError):  # not glibc: its allocator keeps its own arenas
        pass


def worker_main(conn: Connection, job: WorkerJob) -> None:
    """The worker process: one session on one camera, then exit."""
    _lean()
    cancel = threading.Event()
    link = _Link(conn, cancel)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the daemon, which cancels us
    signal.signal(signal.SIGTERM, lambda *_: cancel.set())  # a stop checkpoints, as in the daemon
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(_PipeLog(link))
    root.setLevel(job.log_level)
    threading.Thread(target=link.read, name="daemon-link", daemon=True).start()
    try:
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
        link.agent = agent
        first = Share(job.parts_in_flight, job.ring_buffers, job.read_ahead)
        agent.parts_in_flight = lambda: (link.share or first).parts_in_flight
        agent.ring_buffers = lambda: (link.share or first).ring_buffers
        agent.read_ahead = lambda: (link.share or first).read_ahead
        agent.on_pulling = link.pulling
        try:
            with open_camera(job.kind, job.address) as camera:
                report = agent.session(camera, progress=link.progress, cancel=cancel)
        finally:
            agent.close()
        link.send("report", report)
    except BodycamError as err:
        link.send("error", str(err))
    except Exception as err:
        LOG.exception("bay %s:%s crashed", job.kind, job.address)
        link.send("error", f"internal error: {type(err).__name__}: {err}")
    finally:
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


def context() -> multiprocessing.context.ForkServerContext:
    """forkserver, with this module (and so the pipeline, the drivers and boto3) imported once in the
    server: a worker starts in milliseconds and shares those pages with its siblings. Never plain fork:
    the daemon has threads. ``__main__`` (the ``bodycam-sync`` script) is preloaded too: otherwise
    each worker runs it again to rebuild the main module, importing the whole CLI (0.35 CPU s a worker)."""
    global _CONTEXT
    if _CONTEXT is None:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["__main__", __name__, *_TRANSPORTS])
        _CONTEXT = ctx
    return _CONTEXT


def start_server() -> None:
    """Start the forkserver and wait until it has imported what it preloads (the daemon does before it
    says it is ready), so the first docking does not wait for the pipeline's imports: the server takes
    requests only once its preload is done, so a first no-op worker returning says it is."""
    proc = context().Process(target=_nothing, name="forkserver-ready", daemon=True)
    proc.start()
    proc.join(120)


def _nothing() -> None:
    """A worker that does nothing (start_server's probe)."""


class BayWorker:
    """One worker process running one session, seen from the daemon's bay thread."""

    def __init__(
        self,
        job: WorkerJob,
        *,
        cancel: threading.Event,
        on_progress: Callable[[str, dict[str, Any]], None],
        on_pulling: Callable[[Ident, float | None], None],
        kill_after_s: Callable[[], float],
        on_started: Callable[[int | None], None] = lambda _pid: None,
        share: Callable[[], Share] | None = None,
    ) -> None:
        self.job = job
        self.cancel = cancel
        self.on_progress = on_progress
        self.on_pulling = on_pulling
        self.kill_after_s = kill_after_s
        self.on_started = on_started
        #: the bay's share of the dock's part buffers now, sent with each ack (the worker applies it to the
        #: recording it is about to pull: bays that docked after this one's worker started count)
        self.share = share or (lambda: Share(job.parts_in_flight, job.ring_buffers, job.read_ahead))
        self.pid: int | None = None
        self._conn: Connection | None = None
        self._send_lock = threading.Lock()
        self._pulling: Ident | None = None

    def send(self, *msg: Any) -> None:
        with self._send_lock:
            if self._conn is not None:
                try:
                    self._conn.send(msg)
                except (OSError, ValueError):
                    pass  # the worker is gone; run() sees its end

    def run(self) -> CameraReport:
        """Start the worker and relay until it ends; its report, or ServiceError/TransportError."""
        ctx = context()
        ours, theirs = ctx.Pipe()
        proc = ctx.Process(target=worker_main, args=(theirs, self.job), name=f"bay-{self.job.address}", daemon=True)
        proc.start()
        theirs.close()
        self.pid, self._conn = proc.pid, ours
        self.on_started(proc.pid)
        outcome: tuple[Any, ...] | None = None
        cancelled_at: float | None = None
        try:
            while True:
                if self.cancel.is_set() and cancelled_at is None:
                    cancelled_at = time.monotonic()
                    self.send("cancel")
                if (
                    cancelled_at is not None
                    and proc.is_alive()
                    and time.monotonic() - cancelled_at > self.kill_after_s()
                ):
                    LOG.error(
                        "bay %s: its worker (pid %s) did not stop when asked; killing it", self.job.address, proc.pid
                    )
                    proc.kill()
                try:
                    if not ours.poll(0.2):
                        if not proc.is_alive() and not ours.poll(0.5):
                            break
                        continue
                    msg = ours.recv()
                except (EOFError, OSError):
                    break
                if msg[0] in ("report", "error"):
                    outcome = msg
                else:
                    self._relay(msg)
        finally:
            self._release()
            with self._send_lock:
                self._conn = None
            ours.close()
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
            self.on_started(None)
        if outcome is not None and outcome[0] == "report":
            return cast(CameraReport, outcome[1])
        if outcome is not None:
            raise ServiceError(str(outcome[1]))
        raise ServiceError(
            f"the worker process of bay {self.job.address} ended without a report ({_ended(proc.exitcode)})"
        )

    def _relay(self, msg: tuple[Any, ...]) -> None:
        if msg[0] == "progress":
            if msg[1] == "recording_bytes" and self._pulling is not None:
                self.on_pulling(self._pulling, time.monotonic())
            self.on_progress(msg[1], msg[2])
        elif msg[0] == "pulling":
            ident = cast(Ident, tuple(msg[1]))
            if msg[2]:
                self._pulling = ident
                self.on_pulling(ident, time.monotonic())
                now = self.share()
                self.send("ack", now.parts_in_flight, now.ring_buffers, now.read_ahead)
            else:
                self._release()
        elif msg[0] == "log":
            logging.getLogger(str(msg[2])).log(int(msg[1]), "%s", msg[3])

    def _release(self) -> None:
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
