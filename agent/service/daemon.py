"""The docking-station service: discovers cameras as they come and go, runs one session per camera
(concurrently, up to eight sessions at once: a docked camera that waits holds no slot), shares one bounded upload pool, talks to systemd and answers the
control socket. SIGTERM checkpoints and exits; SIGHUP reloads the config.

Discovery never disturbs a camera in session: USB/IP servers are asked for their device list (no
import), serial ports are checked by path, and so are the serial interfaces udev links as
``/dev/bodycam/<serial>-tty`` (udev/70-bodycam.rules), and the registry's USB devices on the dock's own
ports are enumerated through pyusb (``usb.core.find``, as ``devices`` and ``ingest --once`` do; only their
serial number descriptor is read), one bay per camera serial. udev (via ``/dev/bodycam``
and ``/dev/serial/by-id``) and the mass-storage mount directory are watched with ``watchdog`` so
a docked camera triggers a rescan at once; a slow periodic rescan catches anything missed.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bodycam.agent import config as config_mod
from bodycam.agent.pipeline.ingest import Agent, CameraReport
from bodycam.agent.service import bayworker, sdnotify
from bodycam.agent.service.bayworker import (
    BayPool,
    BayWorker,
    Requeued,
    SessionJob,
    Share,
    SharedLimits,
    WorkerEnded,
    open_camera,
    share,
)
from bodycam.agent.service.control import ControlServer, socket_path
from bodycam.agent.service.mounts import MountWatch
from bodycam.agent.storage.throttle import SharedUploads
from bodycam.drivers.device.api import CameraDevice
from bodycam.drivers.errors import BodycamError, ConfigError

LOG = logging.getLogger(__name__)
#: sessions the daemon runs at once. It bounds running sessions, not docked cameras: a bay that is synced
#: or waits out a failure holds no slot (a device showing eight volumes nobody enrolled, refused at each
#: retry, held all eight and no camera docked after it was ever started)
MAX_BAYS = 8
#: USB/IP addresses asked for their device list at once by a scan
MAX_PROBES = 16
#: where udev/70-bodycam.rules links each docked camera's serial interface, as ``<serial>-tty``
UDEV_LINKS = Path("/dev/bodycam")
#: links read from it at most (a directory that never ends must not stall discovery)
MAX_UDEV_LINKS = 64
RETRY_AFTER_S = 3.0
#: a camera docked again at an address whose last session started less than this ago waits out the rest: each
#: session costs the journal its custody entries (docked, authenticated, listed, clock_set, undocked) and two
#: clock readings, which custody cannot drop, and a camera re-docking every few seconds (a USB/IP export
#: withdrawn and offered again) wrote them without end; a camera unplugged mid-transfer and plugged back
#: later than this resumes at once (docs/crash-safety.md, "What one camera may make the dock store")
REDOCK_S = 30.0
MAX_RETRY_S = 300.0


@dataclass
class Bay:
    """One docked camera as the daemon sees it."""

    address: str
    kind: str
    serial: str = "?"
    state: str = "docked"  # docked, syncing, synced, error, ejecting
    recording: int | None = None
    done: int = 0
    total: int = 0
    session_done: int = 0
    session_total: int = 0
    started: float = field(default_factory=time.monotonic)
    session_resumed: int = 0  #: bytes of this session's recordings already in the bucket when it began
    resume_mark: int = 0  #: the same, for the recording being pulled now
    moved: int = 0  #: bytes moved by this session (not the resumed ones it only reads again to check)
    moving_since: float | None = None  #: when this session first moved a fresh byte (the rate's clock)
    last_error: str | None = None
    note: str | None = None  #: why a bay stopped when that was no fault (an eject, a shutdown)
    sessions: int = 0  #: sessions started on this bay (``sync --wait`` waits for the next one to end)
    stayed: dict[str, Any] = field(default_factory=dict)  #: why footage stayed, from the last session
    cancel: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    retry_at: float = 0.0
    sync_requested: bool = False
    verified: int = 0
    failures: int = 0
    last_progress: float = field(default_factory=time.monotonic)  #: when the session last moved forward
    given_up_at: float | None = None  #: when the daemon cancelled it for making no progress
    worker_pid: int | None = None  #: the process running its session (daemon.bay_processes), while it runs
    #: its next session runs in a worker process of its own: its last one was given up or took its worker
    #: down, and must not cost the bays sharing a worker their work again (cleared once it syncs)
    alone: bool = False

    def rate(self, now: float) -> float:
        """Bytes per second this session moved; 0 until it moves a fresh byte and whenever it is not syncing."""
        if self.state != "syncing" or self.moving_since is None or self.moved <= 0:
            return 0.0
        return self.moved / max(now - self.moving_since, 1e-3)

    def to_json(self) -> dict[str, Any]:
        """What ``status`` shows. A bar only for a transfer that runs or was cut short (syncing, ejecting,
        ejected, error); a speed and an ETA only while it runs, never a stale one."""
        shown = self.state in ("syncing", "ejecting", "ejected", "error")
        rate = self.rate(time.monotonic())
        remaining = max(self.session_total - self.session_done, 0)
        return {
            "address": f"{self.kind}:{self.address}",
            "camera": self.serial,
            "state": self.state,
            "recording": self.recording,
            "bytes_done": self.session_done if shown else 0,
            "bytes_total": self.session_total if shown else 0,
            "bytes_resumed": self.session_resumed if shown else 0,
            "rate_bytes_per_s": round(rate),
            "eta_s": round(remaining / rate, 1) if rate > 0 else None,
            "verified": self.verified,
            "last_error": self.last_error,
            "note": self.note,
            "sessions": self.sessions,
            "worker_pid": self.worker_pid,
            "out_of_scope_reasons": self.stayed.get("out_of_scope_reasons", {}),
            "nearest_window": self.stayed.get("nearest_window"),
        }


def _usbip_exports(address: str) -> bool:
    """Whether the USB/IP server at ``address`` exports a device now (no import: a camera in session is
    not disturbed); False when it cannot be asked."""
    from bodycam.drivers.transport.usbip_backend import UsbipBackend

    try:
        return bool(UsbipBackend(address).list_exported())
    except BodycamError as err:
        LOG.debug("USB/IP %s not reachable: %s", address, err)
        return False


def tty_usb_serial(path: str, sysfs: Path = Path("/sys/class/tty")) -> str | None:
    """The USB serial number of the device a tty belongs to (a CDC-ACM ``ttyACM``: its interface's parent in
    sysfs holds the device's ``serial``), without opening either; None for a pty or anything else."""
    try:
        device = (sysfs / os.path.basename(os.path.realpath(path)) / "device").resolve(strict=True)
        return (device.parent / "serial").read_text(encoding="ascii", errors="replace").strip()[:64] or None
    except (OSError, ValueError):
        return None


def udev_serial_links(root: Path, configured: Sequence[str] = ()) -> list[str]:
    """The docked cameras' serial interfaces udev linked under ``root`` (``<serial>-tty``, made by the shipped
    rules for the registry's models only), skipping a dangling link and one that names a tty the config
    lists already under another name (one camera, one bay)."""
    try:
        with os.scandir(root) as entries:
            names = sorted(e.name for _, e in zip(range(MAX_UDEV_LINKS), entries, strict=False))
    except OSError:
        return []
    taken = {os.path.realpath(p) for p in configured}
    found = []
    for name in names:
        link = root / name
        if name.endswith("-tty") and link.exists() and os.path.realpath(link) not in taken:
            found.append(str(link))
    return found


class Daemon:
    def __init__(self, config_path: Path | None, *, rescan_s: float = 2.0) -> None:
        self.config_path = config_path
        config = config_mod.load(config_path)
        #: with daemon.bay_processes, the sessions run in a pool of worker processes sized to the cores
        #: (agent/service/bayworker.py); the batch lock, upload pool and cap they share live under the
        #: runtime directory
        self.limits: SharedLimits | None = None
        self.pool: BayPool | None = None
        if config.bay_processes:
            self.limits = SharedLimits.of(socket_path(config.state_dir).parent / "bays", config)
            self.pool = BayPool(config, self.limits)
        self.agent = Agent(config, batch_lock=self.limits.batch_lock() if self.limits else None)
        if self.limits is not None:
            self.limits.prepare()
        self.uploads = SharedUploads(self.agent.bucket, self.config.upload_workers, self.config.bandwidth_limit_mbps)
        self.agent.bucket = self.uploads
        self.agent.parts_in_flight = lambda: self._share().parts_in_flight
        self.agent.ring_buffers = lambda: self._share().ring_buffers
        self.agent.read_ahead = lambda: self._share().read_ahead
        self.rescan_s = rescan_s
        self.bays: dict[str, Bay] = {}
        self.lock = threading.RLock()
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.heartbeat = time.monotonic()
        self.bucket_ok: bool | None = None
        self.control = ControlServer(socket_path(self.config.state_dir), self.handle)
        self.udev_links = UDEV_LINKS  #: the rules' /dev/bodycam (a test points it elsewhere)
        #: pyusb's backend for the dock's own USB ports: libusb when None; a test gives a ``UsbipBackend`` so the
        #: scan finds a virtual camera through the same ``usb.core.find`` (its bays then run in threads: a
        #: worker process enumerates with libusb)
        self.usb_backend: Any = None
        self._usb_serials: dict[tuple[str, int, int], str] = {}  #: serial numbers read, by bus location
        self._usb_said: dict[str, str] = {}  #: USB problems already logged (one line each, not one a scan)
        self._mounts: MountWatch | None = None  #: the mass-storage directory, looked at off the scan's thread
        self._hung: set[str] = set()  #: mass-storage bays whose volume does not answer now
        self._started: dict[str, float] = {}  #: when each address's last session started, within REDOCK_S
        self._observer: Any = None
        self._reload_requested = threading.Event()
        self._sealer: threading.Thread | None = None
        self._witnesser: threading.Thread | None = None

    @property
    def config(self) -> config_mod.Config:
        """The one running configuration: the agent's, so a reload reaches the pipeline (signing key,
        recipients, policy) and the scheduler (camera addresses) at once."""
        return self.agent.config

    # -- lifecycle ------------------------------------------------------------------------------
    def run(self) -> int:
        faulthandler.enable()  # a watchdog SIGABRT leaves every thread's stack in the journal
        faulthandler.register(signal.SIGUSR1, all_threads=True)  # and SIGUSR1 shows them on demand
        self.agent.check_ready()
        signal.signal(signal.SIGTERM, lambda *_: self._request_stop())
        signal.signal(signal.SIGINT, lambda *_: self._request_stop())
        signal.signal(signal.SIGHUP, lambda *_: self._request_reload())
        problems = self.agent.recover()
        for p in problems:
            LOG.warning("recovery: %s", p)
        if self.limits is not None:
            bayworker.start_server(s3=self.config.bucket_url.startswith("s3://"))
        self.control.start()
        self._watch_devices()
        watchdog = sdnotify.Watchdog(healthy=self.healthy)
        watchdog.start()
        sdnotify.ready(self.summary())
        LOG.info("daemon ready: dock %s, control socket %s", self.config.dock_id, self.control.path)
        last_status = self.summary()
        try:
            while not self.stop.is_set():
                self.heartbeat = time.monotonic()
                if self._reload_requested.is_set():
                    self._reload_requested.clear()
                    self._reload()
                self._scan()
                self._reap()
                self._give_up_stalled()
                self._seal_on_schedule()
                self._witness_on_schedule()
                summary = self.summary()
                if summary != last_status:  # on change only: a full listener queue must not drop STOPPING=1
                    sdnotify.status(summary)
                    last_status = summary
                self.wake.wait(self.rescan_s)
                self.wake.clear()
        finally:
            sdnotify.stopping()
            LOG.info("stopping: checkpointing %d active bays", len(self._active()))
            with self.lock:
                for bay in self.bays.values():
                    bay.cancel.set()
            for bay in list(self.bays.values()):
                if bay.thread is not None:
                    bay.thread.join(timeout=60)
            self._publish()
            if self.pool is not None:
                self.pool.close()
            watchdog.stop()
            self.control.stop()
            if self._observer is not None:
                self._observer.stop()
            self.agent.close()
        return 0

    def _request_stop(self) -> None:
        self.stop.set()
        self.wake.set()  # do not sleep until the next rescan

    def _request_reload(self) -> None:
        """SIGHUP: the main loop reloads (never inside the signal handler, which may interrupt a seal)."""
        self._reload_requested.set()
        self.wake.set()

    def _reload(self) -> None:
        """Swap the agent's config for the file's, unless the file is invalid or changes what only a
        restart can (docs/configuration.md). A session already running finishes the recording it is
        on with whatever it read before; everything after (next upload, next seal) sees the new one."""
        sdnotify.reloading()
        try:
            fresh = config_mod.load(self.config_path)  # bounded, never waits on a pipe: this loop starts bays
            blocked = config_mod.restart_only_changes(self.config, fresh)
            if blocked:
                raise ConfigError(f"{', '.join(blocked)} changed; restart the service to apply that")
            # what a fresh start would refuse, refused here, not at the next upload or seal: recipients (none
            # left, bad or mixed agreements), a key that cannot sign, a pseudonym key others can read, [dock_auth]
            self.agent.check_ready(fresh)
            witnessing = self.agent.make_witnessing(fresh)  # a bad witness policy is refused here
            self.agent.config = fresh
            self.agent.witnessing = witnessing
            if self.pool is not None:
                self.pool.reconfigure(fresh)  # each worker's next upload and seal see it, as a thread's would
            LOG.info("configuration reloaded from %s", self.config_path or "the default")
        except BodycamError as err:
            LOG.error("reload refused, keeping the running configuration: %s", err)
        sdnotify.ready(self.summary())

    def _watch_devices(self) -> None:
        """udev's /dev/bodycam and /dev/serial/by-id, and the mass-storage directory, wake a rescan."""
        try:
            from watchdog.events import FileSystemEvent, FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError:  # pragma: no cover - watchdog is a dependency
            return
        daemon = self

        class Poke(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                daemon.wake.set()

        observer = Observer()
        watched = 0
        for path in ("/dev/bodycam", "/dev/serial/by-id", self.config.mass_storage_dir):
            if path is not None and Path(path).is_dir():
                observer.schedule(Poke(), str(path), recursive=False)
                watched += 1
        if watched:
            observer.daemon = True
            observer.start()
            self._observer = observer

    # -- discovery ------------------------------------------------------------------------------
    def _present(self) -> dict[str, str]:
        """address -> kind of every camera that appears to be docked now, without opening any."""
        found: dict[str, str] = {}
        addresses = list(self.config.usbip)
        if len(addresses) > 1:  # side by side: each silent host costs its whole timeout, in the watchdog's loop
            with ThreadPoolExecutor(min(len(addresses), MAX_PROBES), thread_name_prefix="usbip-probe") as pool:
                exported = list(pool.map(_usbip_exports, addresses))
        else:
            exported = [_usbip_exports(a) for a in addresses]
        for address, yes in zip(addresses, exported, strict=True):
            if yes:
                found[address] = "usbip"
        for path in self.config.serial:
            if os.path.exists(path):
                found[path] = "serial"
        # one bay per camera serial (docs/decisions.md): a tty the config names is the operator's choice; a
        # link already in a bay keeps it; otherwise a camera on USB is taken over USB, not by its tty link
        with self.lock:
            in_bay = set(self.bays)
        configured = {s for s in map(tty_usb_serial, self.config.serial) if s is not None}
        links = {Path(p).name.removesuffix("-tty"): p for p in udev_serial_links(self.udev_links, self.config.serial)}
        for serial in self._local_usb():
            if serial in configured or (serial in links and links[serial] in in_bay):
                continue
            links.pop(serial, None)
            found.setdefault(serial, "usb")
        for path in links.values():
            found.setdefault(path, "serial")
        hung: set[str] = set()
        root = self.config.mass_storage_dir
        if root is not None:
            if self._mounts is None or self._mounts.root != root:  # first scan, or a reload moved it
                self._mounts = MountWatch(root)
            answering, not_answering = self._mounts.scan()  # never blocks on a hung disk: probes it can leave
            for mount in (*answering, *not_answering):
                found[str(mount)] = "mass-storage"
            hung = {str(m) for m in not_answering}
        self._hung = hung
        return found

    def _local_usb(self) -> list[str]:
        """Serial numbers of the registry's cameras on the dock's own USB ports (bounded in count and time:
        ``find_cameras``). Whatever fails (no libusb, no permission, a device gone mid-scan) is one log line
        per distinct problem, never an exception into the scan loop the watchdog depends on."""
        problems: list[tuple[str, str]] = []
        serials: list[str] = []
        try:
            from bodycam.drivers.models import MODELS
            from bodycam.drivers.transport.usb import find_cameras

            cams = find_cameras(
                [(m.vid, m.pid) for m in MODELS], self.usb_backend, problems=problems, known=self._usb_serials
            )
            serials = [c.serial for c in cams if c.serial is not None]
        except Exception as err:  # TransportError (libusb missing), ImportError (pyusb), anything pyusb raises
            problems.append(("usb", f"USB scan unavailable: {err}"))
        said = dict(problems)
        for where, what in said.items():
            if self._usb_said.get(where) != what:
                LOG.warning("%s", what)
            else:
                LOG.debug("%s", what)
        self._usb_said = said
        return list(dict.fromkeys(serials))

    def _scan(self) -> None:
        present = self._present()
        now = time.monotonic()
        with self.lock:
            for address, bay in list(self.bays.items()):
                if address not in present and (bay.thread is None or not bay.thread.is_alive()):
                    LOG.info("camera %s undocked from %s", bay.serial, address)
                    del self.bays[address]
            due: list[Bay] = []
            for address, kind in present.items():  # bounded by discovery's own bounds (cameras.*, MAX_MOUNTS)
                found = self.bays.get(address)
                if found is None:
                    # a USB bay is keyed by the camera's serial: status, sync and eject name it before its session
                    found = self.bays[address] = Bay(address, kind, serial=address if kind == "usb" else "?")
                    LOG.info("camera docked at %s:%s", kind, address)
                    last = self._started.get(address)
                    if last is not None and now - last < REDOCK_S:
                        found.retry_at = last + REDOCK_S
                        found.note = (
                            f"docked again {now - last:.0f} s after its last session began; starts after {REDOCK_S:g} s"
                        )
                bay = found
                busy = bay.thread is not None and bay.thread.is_alive()
                if address in self._hung:  # a volume that does not answer: no session (it would hang too)
                    if not busy:
                        bay.state = "error"
                        bay.last_error = f"the volume at {address} does not answer (a hung disk?); unplug it"
                    continue
                if not busy and (bay.sync_requested or (bay.state in ("docked", "error") and now >= bay.retry_at)):
                    due.append(bay)
            for address, started in list(self._started.items()):
                if now - started >= REDOCK_S:
                    del self._started[address]
            self._start_due(due)

    def _start_due(self, due: list[Bay]) -> None:
        """Under the lock: start what the free session slots allow, fresh bays first, then by failures (a camera
        refused at every retry waits behind the others), one session a camera serial at a time (the same
        camera on two addresses, or a device showing one volume many times, runs one session)."""
        running = [b for b in self.bays.values() if b.thread is not None and b.thread.is_alive()]
        serials = {b.serial for b in running if b.serial != "?"}
        for bay in sorted(due, key=lambda b: (b.failures, b.retry_at)):
            if len(running) >= MAX_BAYS:
                return
            if bay.serial != "?" and bay.serial in serials:
                continue
            self._start(bay)
            running.append(bay)
            serials.add(bay.serial)

    def _start(self, bay: Bay) -> None:
        self._started[bay.address] = time.monotonic()
        bay.sync_requested = False
        bay.sessions += 1
        bay.cancel = threading.Event()
        bay.state = "syncing"
        bay.session_done = bay.session_total = bay.session_resumed = bay.resume_mark = bay.moved = 0
        bay.moving_since, bay.note = None, None
        bay.started = bay.last_progress = time.monotonic()
        bay.given_up_at = None
        bay.thread = threading.Thread(target=self._session, args=(bay,), name=f"bay-{bay.address}", daemon=True)
        bay.thread.start()

    def _session(self, bay: Bay) -> None:
        try:
            if self.pool is not None:
                report = self._in_worker(bay, self.pool)
            else:
                camera: CameraDevice
                with open_camera(bay.kind, bay.address, usb_backend=self.usb_backend) as camera:
                    report = self.agent.session(
                        camera, progress=lambda k, d: self._progress(bay, k, d), cancel=bay.cancel
                    )
            self._finish(bay, report)
        except Requeued as err:
            if bay.cancel.is_set() and bay.given_up_at is None:
                self._stopped(bay, str(err))
            else:
                self._requeue(bay, str(err))
        except BodycamError as err:
            if bay.cancel.is_set() and bay.given_up_at is None:
                self._stopped(bay, str(err))
            else:
                bay.alone = bay.alone or bay.given_up_at is not None or isinstance(err, WorkerEnded)
                self._fail(bay, str(err))
        except Exception as err:
            LOG.exception("bay %s crashed", bay.address)
            self._fail(bay, f"internal error: {err}")
        finally:
            self._publish()
            self.wake.set()

    def _in_worker(self, bay: Bay, pool: BayPool) -> CameraReport:
        """The session in one of the pool's worker processes; this thread waits for its end while the
        pool relays its progress. A session that has not stopped ``daemon.stall_timeout_s`` after a
        cancel (eject, give-up, SIGTERM) has its worker killed: every journal is consistent at every step,
        the bay is retried as after any failure (in a worker of its own) and the other bays that worker
        ran are requeued at once (``Requeued``)."""
        worker = BayWorker(
            SessionJob(bay.kind, bay.address, self._share()),
            pool=pool,
            cancel=bay.cancel,
            on_progress=lambda k, d: self._progress(bay, k, d),
            on_pulling=self.agent.note_pulling,
            kill_after_s=lambda: self.config.stall_timeout_s,
            on_started=lambda pid: setattr(bay, "worker_pid", pid),
            share=self._share,
            alone=bay.alone,
        )
        return worker.run()

    def _finish(self, bay: Bay, report: CameraReport) -> None:
        with self.lock:
            bay.serial = report.serial
            bay.verified += report.verified
            bay.recording = None
            if report.recordings or not report.errors:  # one that failed before listing says nothing of it
                bay.stayed = report.stayed_json()
            if report.errors and bay.cancel.is_set() and bay.given_up_at is None:
                self._stopped(bay, report.errors[-1])
            elif report.errors:
                for earlier in report.errors[:-1]:
                    LOG.error("bay %s (camera %s): %s", bay.address, report.serial, earlier)
                self._fail(bay, report.errors[-1])
            else:
                bay.state = "synced"
                bay.last_error = None
                bay.failures = 0
                bay.alone = False
                LOG.info(
                    "camera %s synced: %d verified, %d already done",
                    report.serial,
                    report.verified,
                    report.already_done,
                )

    def _fail(self, bay: Bay, message: str) -> None:
        """A session that failed on its own: logged once, at ERROR, and retried after a back-off."""
        with self.lock:
            if bay.given_up_at is not None:
                message = f"made no progress for {self.config.stall_timeout_s:g} s; given up ({message})"
            bay.state = "error"
            bay.last_error = message
            bay.failures += 1  # back off: a camera that keeps failing must not flood the custody log
            delay = min(MAX_RETRY_S, RETRY_AFTER_S * 2 ** (bay.failures - 1))
            bay.retry_at = time.monotonic() + delay
        LOG.error("bay %s (camera %s): %s; retrying in %.0f s", bay.address, bay.serial, message, delay)

    def _requeue(self, bay: Bay, message: str) -> None:
        """A session ended for another bay's sake (its worker was killed to give that one up): no fault
        and no back-off; it starts again at the next scan and resumes from the journal."""
        with self.lock:
            bay.state = "docked"
            bay.retry_at = 0.0
        LOG.warning("bay %s (camera %s): %s; resuming", bay.address, bay.serial, message)

    def _stopped(self, bay: Bay, message: str) -> None:
        """A session an operator stopped (eject, SIGTERM, Ctrl-C): not an error; it resumes at the next sync."""
        with self.lock:
            bay.state = "ejected" if bay.state in ("ejecting", "syncing") else bay.state
            why = "shutdown" if self.stop.is_set() else "eject"
            bay.note = f"stopped by {why} at {bay.session_done} of {bay.session_total} bytes; resumes at the next sync"
        LOG.info("bay %s (camera %s): %s (%s)", bay.address, bay.serial, bay.note, message)

    def _progress(self, bay: Bay, kind: str, data: dict[str, Any]) -> None:
        with self.lock:
            if kind == "camera_listed":
                bay.serial = data["serial"]
                bay.session_total = sum(size for _rid, size in data["recordings"])
            elif kind == "recording_start":
                bay.recording = data["recording"]
                bay.done, bay.total = 0, data["size"]
                bay.resume_mark = int(data.get("resumed_bytes", 0))
                bay.session_resumed += bay.resume_mark
            elif kind == "recording_bytes":
                done = int(data["done"])
                fresh = max(0, done - max(bay.done, bay.resume_mark))  # bytes read again to check are not moved
                bay.session_done += max(done - bay.done, 0)
                bay.done = done
                if fresh:
                    if bay.moving_since is None:
                        bay.moving_since = bay.last_progress  # the chunk was on its way since the last event
                    bay.moved += fresh
                    bay.last_error = None  # the bay is moving again: an old error no longer describes it
            elif kind == "recording_done":
                bay.recording = None
            bay.last_progress = time.monotonic()

    def _give_up_stalled(self) -> None:
        """Cancel a session that has shown no progress for ``daemon.stall_timeout_s`` (a hanging camera,
        whatever the layer below failed to bound); its upload stays resumable until the batch is due."""
        now = time.monotonic()
        limit = self.config.stall_timeout_s
        with self.lock:
            for bay in self.bays.values():
                alive = bay.thread is not None and bay.thread.is_alive()
                if alive and bay.given_up_at is None and now - bay.last_progress > limit:
                    bay.given_up_at = now
                    bay.cancel.set()
                    LOG.warning(
                        "bay %s (camera %s) made no progress for %.0f s; giving up on it (retried after a back-off)",
                        bay.address,
                        bay.serial,
                        now - bay.last_progress,
                    )

    def wedged(self) -> list[Bay]:
        """Bays given up on whose session still has not ended one more stall period later: a thread
        stuck where no deadline reaches. Only a restart frees it, so the watchdog must say so."""
        now = time.monotonic()
        with self.lock:
            return [
                b
                for b in self.bays.values()
                if b.given_up_at is not None
                and b.thread is not None
                and b.thread.is_alive()
                and now - b.given_up_at > self.config.stall_timeout_s
            ]

    def healthy(self) -> bool:
        """What WATCHDOG=1 vouches for: the scheduler loop turns, and no bay is wedged beyond recovery."""
        if time.monotonic() - self.heartbeat >= 30:
            return False
        stuck = self.wedged()
        if stuck:
            LOG.error(
                "bay %s did not stop %.0f s after being given up; withholding the watchdog so systemd restarts us",
                stuck[0].address,
                self.config.stall_timeout_s,
            )
            return False
        return True

    def _reap(self) -> None:
        with self.lock:
            for bay in self.bays.values():
                if bay.state == "ejecting" and (bay.thread is None or not bay.thread.is_alive()):
                    bay.state = "ejected"

    def _share(self) -> Share:
        """A busy bay's share of the dock's part buffers, from how many bays are busy now."""
        return share(len(self._active()))

    def _active(self) -> list[Bay]:
        with self.lock:
            return [b for b in self.bays.values() if b.thread is not None and b.thread.is_alive()]

    def _seal_on_schedule(self) -> None:
        """Seal a batch that is due (age bound, custody bound) in a thread of its own: publishing may
        wait on the bucket, and the scheduler (and the watchdog it feeds) must not."""
        if self._sealer is not None and self._sealer.is_alive():
            return
        try:
            due = self.agent.seal_due()
        except BodycamError as err:
            LOG.warning("checking whether a batch is due failed: %s", err)
            return
        if due:
            self._sealer = threading.Thread(target=self._publish, name="scheduled-seal", daemon=True)
            self._sealer.start()

    def _witness_on_schedule(self) -> None:
        """Ask the witnesses in a thread of its own when one lacks the newest checkpoint and is not
        waiting out a failure: a witness that is down costs its timeout there, never a seal or a bay."""
        witnessing = self.agent.witnessing
        if witnessing is None or (self._witnesser is not None and self._witnesser.is_alive()):
            return
        try:
            due = witnessing.due()
        except BodycamError as err:
            LOG.warning("checking the witnesses failed: %s", err)
            return
        if due:
            self._witnesser = threading.Thread(target=self._witness, name="witnesses", daemon=True)
            self._witnesser.start()

    def _witness(self) -> None:
        try:
            self.agent.witness()
        except BodycamError as err:
            LOG.warning("writing the witnesses' cosignatures to the bucket failed (retried later): %s", err)

    def _publish(self) -> None:
        """Seal and publish once no session has an upload in flight."""
        try:
            self.agent.seal_and_publish()
            self.bucket_ok = True
        except BodycamError as err:
            self.bucket_ok = False
            LOG.warning("publishing the batch failed (retried later): %s", err)

    # -- control --------------------------------------------------------------------------------
    def summary(self) -> str:
        with self.lock:
            states: dict[str, int] = {}
            for bay in self.bays.values():
                states[bay.state] = states.get(bay.state, 0) + 1
        text = ", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "no cameras"
        return f"bays: {text}"

    def status(self) -> dict[str, Any]:
        with self.lock:
            bays = [b.to_json() for b in sorted(self.bays.values(), key=lambda b: b.address)]
        queue = self.agent.journal.query("SELECT COUNT(*) FROM recordings WHERE state IN ('uploading','completing')")[
            0
        ][0]
        return {
            "ok": True,
            "dock_id": self.config.dock_id,
            "bays": bays,
            "queue": {"uploads_in_progress": queue},
            "bucket": {"url": self.config.bucket_url, "reachable": self.bucket_ok},
            "summary": self.summary(),
        }

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        cmd = request.get("cmd")
        if cmd == "status":
            return self.status()
        if cmd in ("sync", "eject"):
            serial = request.get("camera")
            with self.lock:
                bays = [b for b in self.bays.values() if b.serial == serial]
                if not bays:
                    return {"ok": False, "error": f"camera {serial} is not docked"}
                for bay in bays:
                    if cmd == "sync":
                        bay.sync_requested = True
                    else:
                        bay.cancel.set()
                        bay.state = "ejecting"
            self.wake.set()
            return {"ok": True, "camera": serial, "action": cmd}
        return {"ok": False, "error": f"unknown request {cmd!r}"}
