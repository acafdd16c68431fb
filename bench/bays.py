"""Eight bays at once: aggregate ingest MB/s as a ratio to one camera alone, and the daemon's peak RSS.

Also the daemon's own CPU seconds per GiB ingested (utime + stime from /proc/PID/stat, from the moment
its control socket is up to the moment every bay is synced) against the floor measured in the same run
(SHA-256 + ChaCha20-Poly1305 in 64 KiB chunks + SHA-256, one thread: bench/ingest.py's floor_cpu).

Each virtual camera runs in its own process over USB/IP (as real cameras are their own devices);
the daemon (`bodycam-sync daemon`, as systemd runs it) ingests into a local-directory bucket.
The clock stops when the control socket reports every bay synced with no upload in flight.

    .venv/bin/python bench/bays.py [--cameras 8] [--size-mib 64] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ingest import floor_cpu  # noqa: E402
from tests.dock import CLI, iso_window, make_dock, window  # noqa: E402
from tests.sims import SimProcess  # noqa: E402


def cpu_s(pid: int) -> float:
    """User + system CPU seconds the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run(cameras: int, size: int, training: int, workdir: Path) -> dict[str, Any]:
    win = window()
    sims = [
        SimProcess("usbip", f"BAY-{i:02d}", "--recordings", str(training), "--training", str(training),
                   "--size", str(size), "--exercise", iso_window(win), truth_dir=workdir)
        for i in range(cameras)
    ]  # fmt: skip
    try:
        dock = make_dock(workdir / "dock", (workdir / "bucket").as_uri())
        with dock.config_path.open("a") as f:
            f.write("[cameras]\nusbip = [" + ", ".join(f'"{s.address}"' for s in sims) + "]\n")
        dock.enroll(*(s.serial for s in sims))
        dock.exercise("EX-BENCH", win, *(s.serial for s in sims))
        daemon = subprocess.Popen([CLI, "--config", str(dock.config_path), "daemon", "--rescan", "0.2"],
                                  stderr=(workdir / "daemon.log").open("w"))  # fmt: skip
        peak = 0
        try:
            sock = dock.config.state_dir / "run" / "control.sock"
            while not sock.exists():  # the clock starts when the daemon is ready, not at interpreter start
                time.sleep(0.02)
            started = time.perf_counter()
            cpu_before = cpu_s(daemon.pid)
            while True:
                peak = max(peak, peak_rss_kib(daemon.pid))
                if sock.exists():
                    status = json.loads(dock.cli("status", "--json").stdout or "{}")
                    bays = status.get("bays", [])
                    if (
                        len(bays) == cameras
                        and all(b["state"] == "synced" for b in bays)
                        and not status["queue"]["uploads_in_progress"]
                    ):
                        break
                    if any(b["state"] == "error" for b in bays):
                        raise RuntimeError(f"a bay failed: {bays}")
                time.sleep(0.1)
            elapsed = time.perf_counter() - started
            cpu = cpu_s(daemon.pid) - cpu_before
            peak = max(peak, peak_rss_kib(daemon.pid))
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(60)
        total = cameras * training * size
        return {"cameras": cameras, "bytes": total, "seconds": round(elapsed, 2), "MBps": round(total / elapsed / 1e6, 1),
                "daemon_peak_rss_MiB": round(peak / 1024, 1), "daemon_cpu_s": round(cpu, 2),
                "daemon_cpu_s_per_GiB": round(cpu / (total / 2**30), 2)}  # fmt: skip
    finally:
        for s in sims:
            s.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=8)
    parser.add_argument("--size-mib", type=int, default=64, help="size of each training recording")
    parser.add_argument("--recordings", type=int, default=2, help="training recordings per camera")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    size = args.size_mib * 1024 * 1024
    results = {}
    for n in (1, args.cameras):
        with tempfile.TemporaryDirectory(prefix="bodycam-bays-") as tmp:
            results[n] = run(n, size, args.recordings, Path(tmp))
    floor = min(floor_cpu(256 * 1024 * 1024), floor_cpu(256 * 1024 * 1024)) * 4  # s/GiB
    one, many = results[1], results[args.cameras]
    ratio = many["MBps"] / one["MBps"]
    for r in (one, many):
        r["daemon_cpu_x_floor"] = round(r["daemon_cpu_s_per_GiB"] / floor, 2)
    if args.json:
        doc = {"one": one, "many": many, "aggregate_ratio": round(ratio, 2), "floor_cpu_s_per_GiB": round(floor, 2)}
        print(json.dumps(doc, indent=2))
    else:
        print(
            f"{args.cameras} cameras x {args.recordings} training recordings x {args.size_mib} MiB, daemon -> local bucket"
        )
        for label, r in (("1 camera ", one), (f"{args.cameras} cameras", many)):
            print(
                f"  {label}: {r['MBps']:8.1f} MB/s in {r['seconds']:6.2f} s, daemon peak RSS {r['daemon_peak_rss_MiB']} MiB, "
                f"daemon CPU {r['daemon_cpu_s_per_GiB']:.2f} s/GiB = {r['daemon_cpu_x_floor']:.2f}x the floor"
            )
        print(f"  floor (SHA-256 + ChaCha20-Poly1305 + SHA-256, one thread) {floor:.2f} s/GiB, this run")
        print(f"  aggregate ratio {ratio:.2f} (all bays progress; the pipeline is CPU-bound on {os.cpu_count()} cores)")
    shutil.rmtree(ROOT / "build" / "bays", ignore_errors=True)


if __name__ == "__main__":
    main()
