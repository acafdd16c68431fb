"""Eight bays at once: aggregate ingest MB/s as a ratio to one camera alone, and the daemon's peak RSS.

Also the daemon's CPU seconds per GiB ingested (utime + stime from /proc/PID/stat of the daemon and of
every process under it, its bay workers and their forkserver included, from the moment its control
socket is up to the moment every bay is synced) against the floor measured in the same run (SHA-256 +
ChaCha20-Poly1305 in 64 KiB chunks + SHA-256, one thread: bench/ingest.py's floor_cpu), and the same
for the virtual cameras, to show they are not what limits the run.

Each virtual camera runs in its own process over USB/IP (as real cameras are their own devices);
the daemon (`bodycam-sync daemon`, as systemd runs it) ingests into a local-directory bucket (``--bucket
local``, the default), into SeaweedFS (``--bucket s3``: started by the bench as tests/s3server.py runs it,
its own process and not the daemon's, so never in the daemon's CPU; its CPU per GiB is shown beside), or
one run of each, with its bays in worker processes (`daemon.bay_processes = true`, the default), in
threads, or one run of each.
The daemon runs as bodycam-agent.service runs it (``--polling shipped``): ``bodycam-sync daemon`` with
its shipped defaults (no ``--rescan``: a scan every 2 s), ``$NOTIFY_SOCKET`` and ``$WATCHDOG_USEC`` (30 s)
as ``Type=notify`` and ``WatchdogSec=`` give them; the bench is its systemd: the clock starts at
``READY=1``, and it asks the control socket for status once on each ``STATUS=`` change (the bay summary)
and otherwise once a second, as an operator's ``watch -n 1 bodycam-sync status`` would (the bench sends
the request itself: a fresh interpreter per poll would cost the machine 0.15 CPU s, none of it the
daemon's). ``--polling busy`` is the earlier bench: ``--rescan 0.2`` and a status request every 0.1 s,
whose work scales with wall time, not with bytes; ``both`` (the default) runs each, one after the other,
so the report shows what that polling costs the daemon. The clock stops when the control socket reports
every bay synced with no upload in flight; the bench then keeps polling as before for ``--idle-s`` (10 s)
and reports the daemon's CPU per wall second then (cores): the part of its cost that scales with time.
Beside that whole-run figure (``busy_cores``: the daemon tree's CPU s / wall s from READY=1 to every bay
synced, the scan, docking and seal included), the cores while every bay moves bytes at once
(``moving_cores``, from the first to the last status poll that finds every bay syncing with bytes moved
and bytes left, with each camera's MB/s over the same window): with ``--camera-mbps 40`` the daemon's
cost at USB 2.0 line rate, measured rather than derived from CPU s/GiB x a rate.
Peak memory: the daemon's own VmHWM, and the sum over its processes of VmRSS and of PSS (shared pages
counted once), sampled every 0.1 s.

    .venv/bin/python bench/bays.py [--cameras 8] [--size-mib 64] [--mode both] [--bucket local|s3|both]
                                   [--polling shipped|busy|both] [--runs 1] [--json] [--py-spy DIR] [--perf DIR]

``--perf DIR`` records each run's daemon tree with ``perf record -g`` (the daemon and its forkserver,
attached at READY=1; the bay workers the forkserver forks are recorded with it) and splits its CPU s/GiB by
process, by thread (from what each thread's samples are: the encrypting threads SHA-256 + ChaCha20-Poly1305,
the part threads SHA-256 + CRC-32C, the readers and uploaders kernel and interpreter) and by kind of work
(bench/ingest.py's ``_PERF_KINDS``): where the daemon's CPU goes, so the accounting of issue 14 can be
repeated. perf's own sampling adds a little to the figures of those runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ingest import _PERF_KINDS, floor_cpu, upload_stage  # noqa: E402
from bodycam.agent.service import control  # noqa: E402
from bodycam.drivers.errors import BodycamError  # noqa: E402
from tests.dock import CLI, iso_window, make_dock, window  # noqa: E402
from tests.s3server import SeaweedFS  # noqa: E402
from tests.sims import SimProcess  # noqa: E402


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_s(pid: int) -> float:
    """User + system CPU seconds the process has used so far."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    """The process's children, theirs, and so on (the daemon's bay workers and their forkserver)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            for task in Path(f"/proc/{parent}/task").iterdir():
                kids = [int(k) for k in (task / "children").read_text().split()]
                found += kids
                todo += kids
        except OSError:
            continue
    return found


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of the process, of its children it has reaped (cutime, cstime) and of those alive:
    the daemon's own work wherever its bays run."""
    fields = _stat(pid)
    total = sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    for child in descendants(pid):  # each with the children it reaped (the forkserver reaps the workers)
        try:
            total += sum(int(f) for f in _stat(child)[11:15]) / os.sysconf("SC_CLK_TCK")
        except OSError:
            continue  # reaped meanwhile: now counted in the parent's cutime
    return total


def tree_rss_kib(pid: int) -> int:
    """Resident set size of the process and its descendants, summed (shared pages counted in each)."""
    total = 0
    for p in [pid, *descendants(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def tree_pss_kib(pid: int) -> int:
    """Proportional set size of the process and its descendants, summed: the memory they take together
    (pages shared between workers, such as the forkserver's preloaded modules, are counted once)."""
    total = 0
    for p in [pid, *descendants(pid)]:
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def peak_rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _py_spy(pid: int, directory: Path | None, name: str) -> subprocess.Popen[bytes] | None:
    """``py-spy record`` of the daemon and every process under it (its bay workers), collapsed stacks
    written to DIR/NAME.txt when the run ends; py-spy is not in the daemon's tree, so not in its CPU."""
    if directory is None:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    spy = str(Path(sys.executable).with_name("py-spy"))
    out = directory / f"{name}.txt"
    return subprocess.Popen([spy, "record", "--subprocesses", "--threads", "--native", "--format", "raw",
                             "--rate", "200", "-o", str(out), "--pid", str(pid)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


def _perf(pid: int, directory: Path | None, name: str) -> tuple[subprocess.Popen[bytes], Path] | None:
    """``perf record -g`` of the daemon from its start, so the forkserver it starts and every bay worker
    that forks are recorded with it (perf follows the children of what it records, not those a process
    had before perf came). Timestamps on CLOCK_MONOTONIC: ``perf_split`` keeps the samples of the measured
    window only (from READY=1). perf is not in the daemon's tree."""
    if directory is None:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    data = directory / f"{name}.data"
    cmd = ["perf", "record", "-q", "-F", "499", "-g", "-k", "CLOCK_MONOTONIC", "-o", str(data), "-p", str(pid)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), data


def _thread_role(pid: str, tid: str, daemon: str, kinds: dict[str, int]) -> str:
    """What a thread of the daemon's tree is, from its process and what its samples are."""
    n = sum(kinds.values())
    if pid == daemon:
        return "daemon process"
    if pid == tid:
        return "workers' main threads (the daemon link)"
    if kinds.get("ChaCha20-Poly1305", 0) > 0.1 * n:  # with a one-buffer ring also the part's hashes and upload
        return "encrypting (bay) threads"
    if kinds.get("SHA-256", 0) > 0.3 * n:
        return "part threads (ciphertext SHA-256, CRC-32C)"
    return "camera readers, uploaders, other"


#: a sample's first line in ``perf script -F pid,tid,time,ip,dso``: pid/tid (right-aligned: a pid shorter
#: than its column starts with spaces) and time; its call chain follows, one frame a line, leaf first
_SAMPLE = re.compile(r"^\s*(\d+)/(\d+)\s+(\d+\.\d+):")


def perf_samples(out: str, window: tuple[float, float]) -> dict[tuple[str, str], dict[str, int]]:
    """``perf script`` output -> each (pid, tid)'s samples within ``window``, counted by the kind of their
    leaf function (``_PERF_KINDS``). A sample is told from a frame by its pid/tid and time, not by where
    the line starts: ``perf`` pads a short pid with spaces, and a line starting with one was once taken for
    a frame, so every sample of a daemon with 4-digit pids was lost and the split silently not printed."""
    threads: dict[tuple[str, str], dict[str, int]] = {}
    current: tuple[str, str] | None = None
    for line in out.splitlines():
        if not line.strip():
            continue
        sample = _SAMPLE.match(line)
        if sample is not None:
            pid, tid, at = sample.group(1), sample.group(2), float(sample.group(3))
            current = (pid, tid) if window[0] <= at <= window[1] else None
            continue
        if current is None:
            continue
        kind = next((name for key, name in _PERF_KINDS if key in line), "other")
        per = threads.setdefault(current, {})
        per[kind] = per.get(kind, 0) + 1
        current = None  # the leaf only
    return threads


def perf_split(
    data: Path, daemon_pid: int, cpu_s_per_gib: float, window: tuple[float, float]
) -> dict[str, dict[str, float]] | None:
    """The run's CPU s/GiB split by thread role and kind of work, from perf's samples within ``window``
    (CLOCK_MONOTONIC seconds: the run's measured window), each by its leaf function; None when ``perf
    script`` cannot read the file or it holds no sample of the window."""
    try:
        out = subprocess.run(["perf", "script", "-i", str(data), "-F", "pid,tid,time,ip,dso"],
                             capture_output=True, text=True, timeout=600).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    threads = perf_samples(out, window)
    total = sum(sum(k.values()) for k in threads.values())
    if not total:
        return None
    roles: dict[str, dict[str, float]] = {}
    for (pid, tid), kinds in threads.items():
        role = roles.setdefault(_thread_role(pid, tid, str(daemon_pid), kinds), {})
        for kind, n in kinds.items():
            role[kind] = role.get(kind, 0.0) + n / total * cpu_s_per_gib
    return {
        role: {k: round(v, 3) for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])}
        for role, kinds in sorted(roles.items(), key=lambda kv: -sum(kv[1].values()))
    }


class S3:
    """SeaweedFS for the daemons of ``--bucket s3``: one server and one bucket for the whole bench, each
    run under a prefix of its own."""

    def __init__(self, workdir: Path) -> None:
        self.server = SeaweedFS(workdir / "seaweedfs")
        self.server.start()
        os.environ.update(self.server.env())  # boto3's standard chain, as in production (this bench's own uploads)
        os.environ.pop("AWS_PROFILE", None)
        self.bucket = self.server.make_bucket("bench-bays")
        self.runs = 0
        # SeaweedFS creates a bucket's first volumes on its first write: not something to count in any run
        upload_stage(self.server, self.bucket, 4 * 5 * 2**20, 5 * 2**20, 2)

    def next_url(self) -> str:
        self.runs += 1
        return f"s3://{self.bucket}/bays-{self.runs}"

    def env(self) -> dict[str, str]:
        """The daemon's environment: boto3's standard chain pointed at this server only."""
        return {**{k: v for k, v in os.environ.items() if k != "AWS_PROFILE"}, **self.server.env()}

    def cpu_s(self) -> float:
        assert self.server.process is not None
        return tree_cpu_s(self.server.process.pid)

    def stop(self) -> None:
        self.server.stop()


#: the earlier bench's pace: a scan every 0.2 s and a status request every 0.1 s
BUSY_RESCAN_S = 0.2
SAMPLE_S = 0.1
#: shipped polling: a status request on each STATUS= change and otherwise once a second
SHIPPED_POLL_S = 1.0
#: bodycam-agent.service's WatchdogSec=30s, as systemd passes it
WATCHDOG_USEC = 30_000_000


class Notify:
    """The bench as the daemon's systemd (``Type=notify``): a datagram socket for ``$NOTIFY_SOCKET``, so
    the daemon sends READY=1, STATUS= and its WATCHDOG=1 pings as it does in service, and the bench
    learns of a bay's state change without asking."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.ready = False

    def env(self) -> dict[str, str]:
        return {"NOTIFY_SOCKET": str(self.path), "WATCHDOG_USEC": str(WATCHDOG_USEC)}

    def _drain(self) -> bool:
        """Read every pending datagram; whether one carried STATUS=."""
        changed = False
        while True:
            try:
                message = self.sock.recv(4096).decode(errors="replace")
            except BlockingIOError:
                return changed
            fields = message.splitlines()
            self.ready = self.ready or "READY=1" in fields
            changed = changed or any(f.startswith("STATUS=") for f in fields)

    def status_changed(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for a notification; whether a STATUS= came."""
        select.select([self.sock], [], [], timeout)
        return self._drain()

    def wait_ready(self, daemon: subprocess.Popen[bytes], deadline_s: float = 120.0) -> None:
        end = time.monotonic() + deadline_s
        while not self.ready:
            if daemon.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"the daemon did not send READY=1 (exit {daemon.returncode})")
            self.status_changed(0.02)

    def close(self) -> None:
        self.sock.close()
        self.path.unlink(missing_ok=True)


def idle(pid: int, sock: Path, notify: Notify, polling: str, seconds: float) -> float | None:
    """The daemon's CPU per wall second (cores) once every bay is synced, polled as during the run: the
    work that scales with time (scans, status requests, watchdog pings), not with bytes."""
    if seconds <= 0:
        return None
    started = time.perf_counter()
    before = tree_cpu_s(pid)
    last_poll = started
    while time.perf_counter() - started < seconds:
        changed = notify.status_changed(SAMPLE_S)
        if polling == "busy" or changed or time.perf_counter() - last_poll >= SHIPPED_POLL_S:
            last_poll = time.perf_counter()
            try:
                control.request(sock, {"cmd": "status"})
            except BodycamError:
                pass
    return round((tree_cpu_s(pid) - before) / (time.perf_counter() - started), 4)


def moving(bays: list[dict[str, Any]], cameras: int) -> bool:
    """Whether every bay is mid-transfer: all syncing, each with bytes moved and bytes still to move."""
    return len(bays) == cameras and all(
        b["state"] == "syncing" and 0 < b["bytes_done"] < b["bytes_total"] for b in bays
    )


def moving_figures(window: list[tuple[float, float, int]], cameras: int) -> dict[str, Any]:
    """The daemon's cores and each camera's MB/s while every bay moves bytes at once: from the first to the
    last status poll that found them all mid-transfer, so the scan that finds the cameras, their docking
    and the seal (a fixed cost per docking, in ``busy_cores``) are left out. None when fewer than two
    polls fell in that window."""
    if len(window) < 2 or window[-1][0] - window[0][0] <= 0:
        return {"moving_s": None, "moving_cores": None, "moving_MBps_per_camera": None, "moving_cpu_s_per_GiB": None}
    (t0, c0, b0), (t1, c1, b1) = window[0], window[-1]
    seconds, cpu, moved = t1 - t0, c1 - c0, b1 - b0
    return {"moving_s": round(seconds, 2), "moving_cores": round(cpu / seconds, 3),
            "moving_MBps_per_camera": round(moved / cameras / seconds / 1e6, 1),
            "moving_cpu_s_per_GiB": round(cpu / (moved / 2**30), 2) if moved > 0 else None}  # fmt: skip


def run(
    cameras: int,
    size: int,
    training: int,
    workdir: Path,
    *,
    processes: bool,
    py_spy: Path | None = None,
    perf: Path | None = None,
    s3: S3 | None = None,
    bay_workers: int | None = None,
    polling: str = "shipped",
    idle_s: float = 0.0,
    camera_mbps: float | None = None,
) -> dict[str, Any]:
    win = window()
    # a camera at USB 2.0 line rate: the virtual camera's trickle-bps fault paces its READ answers
    pace = ["--fault", f"trickle-bps={int(camera_mbps * 1e6)}"] if camera_mbps else []
    sims = [
        SimProcess("usbip", f"BAY-{i:02d}", "--recordings", str(training), "--training", str(training),
                   "--size", str(size), "--exercise", iso_window(win), *pace, truth_dir=workdir)
        for i in range(cameras)
    ]  # fmt: skip
    try:
        if s3 is None:
            dock = make_dock(workdir / "dock", (workdir / "bucket").as_uri())
        else:
            dock = make_dock(workdir / "dock", s3.next_url(), s3.server.endpoint_url)
        with dock.config_path.open("a") as f:
            f.write("[cameras]\nusbip = [" + ", ".join(f'"{s.address}"' for s in sims) + "]\n")
            f.write(f"[daemon]\nbay_processes = {'true' if processes else 'false'}\n")
            if bay_workers is not None:
                f.write(f"bay_workers = {bay_workers}\n")
        dock.enroll(*(s.serial for s in sims))
        dock.exercise("EX-BENCH", win, *(s.serial for s in sims))
        notify = Notify(workdir / "notify")
        rescan = ["--rescan", str(BUSY_RESCAN_S)] if polling == "busy" else []  # shipped: the unit's ExecStart
        env = {**(s3.env() if s3 is not None else os.environ), **notify.env()}
        daemon = subprocess.Popen([CLI, "--config", str(dock.config_path), "daemon", *rescan],
                                  stderr=(workdir / "daemon.log").open("w"), env=env)  # fmt: skip
        recorder = _perf(daemon.pid, perf, f"{'processes' if processes else 'threads'}-{cameras}-{workdir.name}")
        peak = peak_pss = peak_tree = polls = 0
        try:
            sock = dock.config.state_dir / "run" / "control.sock"
            notify.wait_ready(daemon)  # the clock starts when the daemon is ready, not at interpreter start
            spy = _py_spy(daemon.pid, py_spy, f"{'processes' if processes else 'threads'}-{cameras}")
            started = time.perf_counter()
            ready_at = time.monotonic()
            cpu_before = tree_cpu_s(daemon.pid)
            sims_before = sum(cpu_s(s.proc.pid) for s in sims)
            store_before = s3.cpu_s() if s3 is not None else 0.0
            last_poll = started
            #: (time, daemon tree CPU s, bytes done) at each poll that finds every bay mid-transfer
            moved: list[tuple[float, float, int]] = []
            while True:
                peak = max(peak, peak_rss_kib(daemon.pid))  # /proc reads: the bench's CPU, not the daemon's
                peak_pss = max(peak_pss, tree_pss_kib(daemon.pid))
                peak_tree = max(peak_tree, tree_rss_kib(daemon.pid))
                changed = notify.status_changed(SAMPLE_S)  # also the 0.1 s memory-sampling pace
                due = polling == "busy" or changed or time.perf_counter() - last_poll >= SHIPPED_POLL_S
                if not due:
                    continue
                last_poll = time.perf_counter()
                polls += 1
                # the control socket itself, not 'bodycam-sync status' (a fresh interpreter per poll
                # costs 0.15 CPU s, none of it the daemon's but all of it taken from the same two cores)
                try:
                    status = control.request(sock, {"cmd": "status"})
                except BodycamError:
                    status = {}
                bays = status.get("bays", [])
                if moving(bays, cameras):
                    moved.append((time.perf_counter(), tree_cpu_s(daemon.pid), sum(b["bytes_done"] for b in bays)))
                if (
                    len(bays) == cameras
                    and all(b["state"] == "synced" for b in bays)
                    and not status["queue"]["uploads_in_progress"]
                ):
                    break
                if any(b["state"] == "error" for b in bays):
                    raise RuntimeError(f"a bay failed: {bays}")
            elapsed = time.perf_counter() - started
            cpu = tree_cpu_s(daemon.pid) - cpu_before
            synced_at = time.monotonic()
            sims_cpu = sum(cpu_s(s.proc.pid) for s in sims) - sims_before
            store_cpu = s3.cpu_s() - store_before if s3 is not None else 0.0
            peak = max(peak, peak_rss_kib(daemon.pid))
            if spy is not None:
                spy.send_signal(signal.SIGINT)  # py-spy writes its profile on SIGINT
                spy.wait(60)
            if recorder is not None:
                recorder[0].send_signal(signal.SIGINT)  # perf writes its file on SIGINT
                recorder[0].wait(120)
            idle_cores = idle(daemon.pid, sock, notify, polling, idle_s)
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(60)
            notify.close()
        total = cameras * training * size
        split = (
            None
            if recorder is None
            else perf_split(recorder[1], daemon.pid, cpu / (total / 2**30), (ready_at, synced_at))
        )
        return {"perf_split": split,"cameras": cameras, "bucket": "local" if s3 is None else "s3", "polling": polling, "polls": polls,
                "idle_cores": idle_cores,
                "bytes": total, "seconds": round(elapsed, 2), "MBps": round(total / elapsed / 1e6, 1),
                "MBps_per_camera": round(total / cameras / elapsed / 1e6, 1),
                # cores measured, not derived from s/GiB x a rate: the daemon tree's CPU s per wall s of the run
                "busy_cores": round(cpu / elapsed, 3),
                "daemon_peak_rss_MiB": round(peak / 1024, 1),
                "tree_peak_rss_MiB": round(peak_tree / 1024, 1), "tree_peak_pss_MiB": round(peak_pss / 1024, 1), "daemon_cpu_s": round(cpu, 2),
                "daemon_cpu_s_per_GiB": round(cpu / (total / 2**30), 2),
                "cameras_cpu_s_per_GiB": round(sims_cpu / (total / 2**30), 2),
                "seaweedfs_cpu_s_per_GiB": round(store_cpu / (total / 2**30), 2) if s3 is not None else None,
                **moving_figures(moved, cameras)}  # fmt: skip
    finally:
        for s in sims:
            s.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=8)
    parser.add_argument("--size-mib", type=int, default=64, help="size of each training recording")
    parser.add_argument("--recordings", type=int, default=2, help="training recordings per camera")
    parser.add_argument(
        "--mode",
        choices=("processes", "threads", "both"),
        default="both",
        help="daemon.bay_processes true, false, or one run of each (alternating)",
    )
    parser.add_argument(
        "--bucket",
        choices=("local", "s3", "both"),
        default="local",
        help="the daemon into a local bucket, into SeaweedFS, or one run of each (alternating)",
    )
    parser.add_argument("--bay-workers", type=int, default=None,
                        help="daemon.bay_workers (default: the daemon's, one worker process per core)")  # fmt: skip
    parser.add_argument(
        "--polling",
        choices=("shipped", "busy", "both"),
        default="both",
        help="the daemon's shipped defaults with a status poll a second (and on each STATUS= change), "
        "the earlier --rescan 0.2 with 10 status polls a second, or one run of each (alternating)",
    )
    parser.add_argument("--idle-s", type=float, default=10.0,
                        help="then keep polling the synced daemon this long: its CPU per wall second (cores)")  # fmt: skip
    parser.add_argument("--camera-mbps", type=float, default=None,
                        help="each virtual camera serves READ answers at about N MB/s (its trickle-bps fault)")  # fmt: skip
    parser.add_argument("--runs", type=int, default=1, help="repeat (the machine is shared: quote CPU s/GiB)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--py-spy", type=Path, default=None, help="profile the daemon's tree with py-spy into DIR")
    parser.add_argument("--perf", type=Path, default=None,
                        help="record the daemon's tree with perf record -g into DIR; split its CPU s/GiB by thread and kind")  # fmt: skip
    args = parser.parse_args()  # fmt: skip
    size = args.size_mib * 1024 * 1024
    modes = ["threads", "processes"] if args.mode == "both" else [args.mode]
    pollings = ["shipped", "busy"] if args.polling == "both" else [args.polling]
    floor = min(floor_cpu(256 * 1024 * 1024), floor_cpu(256 * 1024 * 1024)) * 4  # s/GiB
    buckets = ["local", "s3"] if args.bucket == "both" else [args.bucket]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bodycam-bays-s3-") as store:
        s3 = S3(Path(store)) if "s3" in buckets else None
        try:
            for run_no in range(args.runs):
                for mode in modes:
                    for where in buckets:
                        pair = []
                        for polling in pollings:
                            row = compare(args, size, run_no, mode, s3 if where == "s3" else None, floor, polling)
                            rows.append(row)
                            pair.append(row)
                            if not args.json:
                                report(row, args)
                        if len(pair) == 2 and not args.json:
                            polling_cost(*pair, args)
        finally:
            if s3 is not None:
                s3.stop()
    if args.json:
        print(json.dumps({"floor_cpu_s_per_GiB": round(floor, 2), "runs": rows}, indent=2))
    else:
        print(f"floor (SHA-256 + ChaCha20-Poly1305 + SHA-256, one thread) {floor:.2f} s/GiB, this run; "
              f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")  # fmt: skip
    shutil.rmtree(ROOT / "build" / "bays", ignore_errors=True)


def compare(
    args: argparse.Namespace, size: int, run_no: int, mode: str, s3: S3 | None, floor: float, polling: str
) -> dict[str, Any]:
    """One camera, then ``args.cameras``, into the same kind of bucket: the row's two runs and their ratios
    (one run when ``--cameras 1``)."""
    results = {}
    for n in sorted({1, args.cameras}):
        with tempfile.TemporaryDirectory(prefix="bodycam-bays-") as tmp:
            results[n] = run(
                n, size, args.recordings, Path(tmp), processes=mode == "processes", py_spy=args.py_spy,
                perf=args.perf, s3=s3,
                bay_workers=args.bay_workers,
                polling=polling, idle_s=args.idle_s, camera_mbps=args.camera_mbps,
            )  # fmt: skip
    one, many = results[1], results[args.cameras]
    for r in (one, many):
        r["daemon_cpu_x_floor"] = round(r["daemon_cpu_s_per_GiB"] / floor, 2)
    return {"run": run_no + 1, "mode": mode, "bucket": one["bucket"], "polling": polling, "one": one, "many": many,
            "aggregate_ratio": round(many["MBps"] / one["MBps"], 2),
            "cpu_ratio": round(many["daemon_cpu_s_per_GiB"] / one["daemon_cpu_s_per_GiB"], 2)}  # fmt: skip


POLLING = {
    "shipped": "shipped defaults (a scan every 2 s), status on each STATUS= change and at most 1/s",
    "busy": "--rescan 0.2 and 10 status polls a second (the earlier bench)",
}


def polling_cost(shipped: dict[str, Any], busy: dict[str, Any], args: argparse.Namespace) -> None:
    """What the earlier bench's scans and polls cost the daemon, from the two runs just made."""
    for label, key in (("1 camera ", "one"), (f"{args.cameras} cameras", "many")):
        s, b = shipped[key]["daemon_cpu_s_per_GiB"], busy[key]["daemon_cpu_s_per_GiB"]
        print(f"  10 polls/s + --rescan 0.2, {label}: {b:.2f} vs {s:.2f} s/GiB shipped: {b - s:+.2f} s/GiB "
              f"({b / s:.2f}x), over {busy[key]['seconds']:.1f} vs {shipped[key]['seconds']:.1f} s", flush=True)  # fmt: skip
        si, bi = shipped[key]["idle_cores"], busy[key]["idle_cores"]
        if si is not None and bi is not None:
            print(f"    idle, every bay synced: {bi:.4f} vs {si:.4f} cores shipped: {bi - si:+.4f} cores, "
                  f"{(bi - si) / 0.28:+.3f} s/GiB at 8 USB 2.0 bays' 0.28 GiB/s", flush=True)  # fmt: skip
        if args.cameras == 1:
            return


def report(row: dict[str, Any], args: argparse.Namespace) -> None:
    where = "local bucket" if row["bucket"] == "local" else "SeaweedFS (its CPU not the daemon's)"
    print(f"run {row['run']}, bays in {row['mode']}: {args.cameras} cameras x {args.recordings} training recordings "
          f"x {args.size_mib} MiB, daemon -> {where}; {POLLING[row['polling']]}")  # fmt: skip
    pairs = [("1 camera ", row["one"])] + ([(f"{args.cameras} cameras", row["many"])] if args.cameras != 1 else [])
    for label, r in pairs:
        store = r["seaweedfs_cpu_s_per_GiB"]
        print(
            f"  {label}: {r['MBps']:7.1f} MB/s ({r['MBps_per_camera']:.1f} per camera) in {r['seconds']:6.2f} s; "
            f"daemon busy {r['busy_cores']:.3f} cores; daemon CPU {r['daemon_cpu_s_per_GiB']:.2f} s/GiB "
            f"= {r['daemon_cpu_x_floor']:.2f}x the floor; cameras {r['cameras_cpu_s_per_GiB']:.2f} s/GiB; "
            + (f"SeaweedFS {store:.2f} s/GiB; " if store is not None else "")
            + f"peak RSS daemon {r['daemon_peak_rss_MiB']} MiB, all its processes {r['tree_peak_rss_MiB']} MiB "
            f"(PSS {r['tree_peak_pss_MiB']} MiB); {r['polls']} status polls"
            + (f"; idle {r['idle_cores']:.4f} cores" if r["idle_cores"] is not None else "")
        )
        for role, kinds in (r["perf_split"] or {}).items():  # --perf
            print(f"    {role}: {sum(kinds.values()):.2f} s/GiB = "
                  + ", ".join(f"{kind} {v:.2f}" for kind, v in kinds.items()))  # fmt: skip
        if r["moving_cores"] is not None:
            print(f"    while every bay moved ({r['moving_s']:.1f} s): daemon busy {r['moving_cores']:.3f} cores at "
                  f"{r['moving_MBps_per_camera']:.1f} MB/s per camera, {r['moving_cpu_s_per_GiB']:.2f} CPU s/GiB")  # fmt: skip
    if args.cameras == 1:
        return
    print(f"  {args.cameras} cameras / 1: throughput {row['aggregate_ratio']:.2f}x, CPU per GiB {row['cpu_ratio']:.2f}x",
          flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
