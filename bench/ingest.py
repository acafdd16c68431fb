"""End-to-end ingest throughput against its bounds, against stock tools and restic, and peak memory.

In ONE run, on the same recording served by the same virtual camera and the same SeaweedFS:

  ingest    Agent + ingest_once in this process (nothing else runs in it meanwhile), pulling a
            --size-mib training recording from a `bodycam-sync sim serve` camera (its own process)
            over USB/IP into SeaweedFS (its own process): read, SHA-256, age, multipart upload,
            complete, verify, batch manifest. Timed from ingest_once's call to its return; the span
            from the recording's first to its last event is printed too.
  (a)       a bare SHA-256 + age-encrypt loop over the same bytes read in-process from the
            simulator's ContentSource, output discarded (one thread): the CPU bound
  (b)       the slower of (a) and the raw USB/IP read rate (Camera.iter_read, discarding)
  (c)       the same job with stock tools one after another, as an operator would script it:
            copy the recording off the camera to a file (counted), sha256sum, age -r, then
            `aws s3 cp` (boto3 upload_file if the aws CLI is missing or fails) to SeaweedFS
  (d)       `restic backup` of that plaintext file (already on disk; the copy-off is NOT counted)
            into a restic repository on the same SeaweedFS (init not counted)
  upload    the upload stage alone: the same number of ciphertext bytes from memory through the
            agent's S3Bucket.upload_part, parts and parts in flight as the pipeline, checksums
            precomputed (informative: the S3 server shares this machine's CPUs)
  RSS       `bodycam-sync ingest --once` as a subprocess on a --rss-size-mib recording: peak RSS
            from wait4() (ru_maxrss, via a small launcher process) and /proc/PID/status VmHWM

Every tool writes into the same SeaweedFS bucket, warmed by one small upload before any timing.
--repeat N runs each measurement but the RSS one N times and keeps the fastest (the machine may be
shared). Scratch space: about 4 x --size-mib per repeat, plus --rss-size-mib (SeaweedFS data, the
plaintext and .age files), in a temporary directory removed at the end.

Targets (DESIGN §6, issue 3): (a) >= 0.8, (b) >= 0.8, (c) ingest >= 2x faster, (d) ingest at
least as fast as restic, peak RSS < 128 MiB. Figures are printed as measured, targets missed or not.

    .venv/bin/python bench/ingest.py [--size-mib 1024] [--rss-size-mib 4096] [--skip-rss] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests/ holds the SeaweedFS runner, the dock and the simulator process

from bodycam.agent.agecrypt import Encryptor  # noqa: E402
from bodycam.agent.ingest import ingest_once  # noqa: E402
from bodycam.agent.pull import READ_SPAN, part_size_for  # noqa: E402
from tests.dock import CLI, Dock, iso_window, make_dock, window  # noqa: E402
from tests.s3server import SeaweedFS  # noqa: E402
from tests.sims import SimProcess  # noqa: E402

MiB = 1024 * 1024
MB = 1e6
SERIAL = "BENCH-ING1"
RSS_SERIAL = "BENCH-RSS1"
TARGET_A = 0.8
TARGET_B = 0.8
TARGET_C = 2.0
TARGET_D = 1.0
TARGET_RSS_MIB = 128


# -- helpers ----------------------------------------------------------------------------------------
def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def _run(cmd: list[str], env: dict[str, str] | None = None) -> float:
    """Run a stock tool, return its wall time; any failure stops the bench with the tool's stderr."""
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return elapsed


def _dock(root: Path, bucket_url: str, endpoint: str, serial: str, win: tuple[float, float]) -> Dock:
    """A dock configured as shipped (default part size and upload workers), the camera enrolled."""
    dock = make_dock(root, bucket_url, endpoint)
    text = dock.config_path.read_text().replace("part_size = 5242880\n", "")  # the tests' 5 MiB: use the default
    dock.config_path.write_text(text)
    dock.enroll(serial)
    dock.exercise(f"EX-{serial}", win, serial)
    return dock


@contextlib.contextmanager
def _camera(address: str, serial: str) -> Iterator[Any]:
    """An authenticated Camera over USB/IP and its only recording."""
    from bodycam.drivers import transport as transports
    from bodycam.drivers.device import Camera
    from bodycam.drivers.virtual.camera import public_bytes, sim_device_key

    found = transports.open_usbip(address)
    assert len(found) == 1, f"expected one camera at {address}, found {len(found)}"
    cam = Camera(found[0], timeout=10)
    try:
        cam.open()
        cam.authenticate(public_bytes(sim_device_key(serial)))
        recs = [r for r in cam.recordings() if str(r.category) == "training"]
        assert len(recs) == 1, recs
        yield cam, recs[0]
    finally:
        cam.close()


# -- the measurements -------------------------------------------------------------------------------
def cpu_bound(serial: str, size: int, win: tuple[float, float], recipient: str, expect_sha: str) -> float:
    """(a): SHA-256 + age encryption of the recording's bytes from an in-process source, in 1 MiB pieces
    (the camera's frame size); seconds."""
    from bodycam.agent.agecrypt import Encryptor
    from bodycam.drivers.protocol import MAX_READ
    from bodycam.drivers.virtual.scenario import ContentSource, make_recordings

    rec = make_recordings(1, 1, size, win, serial=serial)[0]  # content depends on serial and id only
    content = ContentSource(serial)
    started = time.perf_counter()
    h = hashlib.sha256()
    enc = Encryptor([recipient])
    for offset in range(0, size, MAX_READ):
        piece = content.read(rec, offset, MAX_READ)
        h.update(piece)
        enc.update(piece)
    enc.finalize()
    elapsed = time.perf_counter() - started
    if h.hexdigest() != expect_sha:
        raise RuntimeError("the in-process content differs from the camera's recording: not the same bytes")
    return elapsed


def raw_read(address: str, serial: str, size: int) -> float:
    """Camera.iter_read of the whole recording over USB/IP, bytes discarded; seconds."""
    with _camera(address, serial) as (cam, rec):
        started = time.perf_counter()
        got = 0
        for data in cam.iter_read(rec, 0, READ_SPAN):
            got += len(data)
        elapsed = time.perf_counter() - started
    assert got == size, (got, size)
    return elapsed


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds used from construction to :meth:`read`: this process and its waited-for children
    ("tools"), and each of ``others`` (name -> pid, e.g. SeaweedFS and the camera)."""

    def __init__(self, others: dict[str, int]) -> None:
        self.others = others
        self.start = self._now()

    def _now(self) -> dict[str, float]:
        t = os.times()
        now = {"tools": t.user + t.system + t.children_user + t.children_system}
        return now | {name: _cpu_s(pid) for name, pid in self.others.items()}

    def read(self) -> dict[str, float]:
        return {name: value - self.start[name] for name, value in self._now().items()}


def ingest(dock: Dock, address: str, others: dict[str, int]) -> dict[str, Any]:
    """ingest_once in this process: the whole call's seconds, the recording's own span, and the CPU
    seconds this process and ``others`` (name -> pid: SeaweedFS, the camera) used meanwhile."""
    agent = dock.agent()
    marks: dict[str, float] = {}

    def progress(kind: str, data: dict[str, Any]) -> None:
        if kind in ("recording_start", "recording_done"):
            marks[kind] = time.perf_counter()

    try:
        meter = CpuMeter(others)
        started = time.perf_counter()
        report = ingest_once(agent, [address], [], discover=False, progress=progress)
        elapsed = time.perf_counter() - started
        cpu = meter.read()
        cpu = {"agent": cpu.pop("tools"), **cpu}  # no child processes: this process's own CPU
    finally:
        agent.close()
    if not report.ok or sum(c.verified for c in report.cameras) != 1:
        raise RuntimeError(f"ingest did not verify the recording: {json.dumps(report.to_json())}")
    return {"total_s": elapsed, "recording_s": marks["recording_done"] - marks["recording_start"], "cpu_s": cpu}


def upload_stage(server: SeaweedFS, bucket: str, total: int, part_size: int, in_flight: int) -> float:
    """Multipart upload of ``total`` bytes from memory with the agent's own S3Bucket, parts as the pipeline
    cuts them and as many in flight, checksums computed beforehand: the upload stage alone; seconds."""
    from bodycam.agent.bucket import S3Bucket, b64_sha256

    s3 = S3Bucket(bucket, "upload-stage", endpoint_url=server.endpoint_url)
    key = f"bare-{time.monotonic_ns()}.bin"
    upload_id = s3.start_upload(key)
    full = os.urandom(part_size)
    parts = [(full, b64_sha256(full))] * (total // part_size)
    if total % part_size:
        tail = full[: total % part_size]
        parts.append((tail, b64_sha256(tail)))
    try:
        with ThreadPoolExecutor(max_workers=in_flight) as pool:
            started = time.perf_counter()
            sent = pool.map(
                lambda n: s3.upload_part(key, upload_id, n + 1, parts[n][0], sha256_b64=parts[n][1]), range(len(parts))
            )
            assert sum(p.size for p in sent) == total
            return time.perf_counter() - started
    finally:
        s3.abort_upload(key, upload_id)


def stock(
    address: str,
    serial: str,
    plain: Path,
    recipient: str,
    expect_sha: str,
    server: SeaweedFS,
    bucket: str,
    uploader: str,
    others: dict[str, int],
) -> dict[str, Any]:
    """(c): copy off the camera, sha256sum, age, upload; seconds per step, and CPU seconds in all."""
    steps: dict[str, Any] = {}
    meter = CpuMeter(others)
    with _camera(address, serial) as (cam, rec), open(plain, "wb") as f:
        started = time.perf_counter()
        for data in cam.iter_read(rec, 0, READ_SPAN):
            f.write(data)
        f.flush()
        steps["copy_off_s"] = time.perf_counter() - started
    started = time.perf_counter()
    out = subprocess.run(["sha256sum", str(plain)], capture_output=True, text=True, check=True).stdout
    steps["sha256sum_s"] = time.perf_counter() - started
    if out.split()[0] != expect_sha:
        raise RuntimeError("the file copied off the camera does not hash to the camera's SHA-256")
    encrypted = plain.with_suffix(".age")
    steps["age_s"] = _run(["age", "-r", recipient, "-o", str(encrypted), str(plain)])
    env = {**os.environ, **server.env()}
    key = f"stock/{serial}-{time.monotonic_ns()}.age"
    aws = shutil.which("aws")
    if uploader in ("auto", "aws") and aws:
        try:
            cmd = [aws, "s3", "cp", "--only-show-errors", "--endpoint-url", server.endpoint_url]
            steps["upload_s"] = _run([*cmd, str(encrypted), f"s3://{bucket}/{key}"], env)
            steps["uploader"] = "aws s3 cp"
        except RuntimeError as err:
            if uploader == "aws":
                raise
            print(f"note: aws s3 cp failed ({err}); using boto3 upload_file", file=sys.stderr)
    elif uploader == "aws":
        raise RuntimeError("--uploader aws: no aws CLI on PATH")
    if "upload_s" not in steps:
        client = server.client()
        steps["upload_s"], _ = _timed(lambda: client.upload_file(str(encrypted), bucket, key))
        steps["uploader"] = "boto3 upload_file"
    steps["cpu_s"] = meter.read()
    encrypted.unlink()
    steps["total_s"] = steps["copy_off_s"] + steps["sha256sum_s"] + steps["age_s"] + steps["upload_s"]
    return steps


def restic(
    plain: Path, server: SeaweedFS, bucket: str, work: Path, repo: str, others: dict[str, int]
) -> dict[str, Any]:
    """(d): restic init of a new repository ``repo`` (not counted: a repeat into the same one would only
    deduplicate) then restic backup of the plaintext file; seconds, and the backup's CPU seconds."""
    exe = shutil.which("restic")
    if exe is None:
        raise RuntimeError("restic is not installed: apt-get install -y restic")
    env = {
        **os.environ,
        **server.env(),
        "RESTIC_PASSWORD": "bodycam-bench",
        "RESTIC_CACHE_DIR": str(work / f"{repo}-cache"),
        "RESTIC_REPOSITORY": f"s3:{server.endpoint_url}/{bucket}/{repo}",
    }
    init_s = _run([exe, "init"], env)
    meter = CpuMeter(others)
    backup_s = _run([exe, "backup", "--quiet", "--host", "bench", str(plain)], env)
    return {"init_s": init_s, "backup_s": backup_s, "cpu_s": meter.read()}


# Starts the command, prints its pid, waits for it with wait4() and prints its exit code and ru_maxrss.
# Linux carries the ru_maxrss of the mm a process had before exec() over to its child's ru_maxrss: a
# child spawned straight from this bench (which holds the in-process ingest's buffers) would report the
# bench's own peak. This small launcher is the CLI's parent instead, so the figure is the CLI's.
_LAUNCHER = """
import json, os, subprocess, sys
with open(sys.argv[1], "wb") as out, open(sys.argv[2], "wb") as err:
    proc = subprocess.Popen(sys.argv[3:], stdin=subprocess.DEVNULL, stdout=out, stderr=err)
    print(proc.pid, flush=True)
    _, status, usage = os.wait4(proc.pid, 0)
print(json.dumps({"rc": os.waitstatus_to_exitcode(status), "ru_maxrss_kib": usage.ru_maxrss}), flush=True)
"""


def peak_rss(dock: Dock, address: str, env: dict[str, str], work: Path) -> dict[str, float]:
    """`bodycam-sync ingest --once` as a subprocess: its peak RSS (wait4's ru_maxrss, and VmHWM polled
    every 20 ms from /proc) and its wall time."""
    cmd = [CLI, "--config", str(dock.config_path), "ingest", "--once", "--json", "--usbip", address]
    out_path, err_path = work / "rss-ingest.out", work / "rss-ingest.err"
    started = time.perf_counter()
    launcher = subprocess.Popen(
        [sys.executable, "-c", _LAUNCHER, str(out_path), str(err_path), *cmd],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert launcher.stdout is not None
    pid = int(launcher.stdout.readline())
    status = Path(f"/proc/{pid}/status")
    hwm_kib = 0
    while launcher.poll() is None:
        with contextlib.suppress(OSError, ValueError):  # gone between poll() and the read
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    hwm_kib = max(hwm_kib, int(line.split()[1]))
        time.sleep(0.02)
    elapsed = time.perf_counter() - started
    result = json.loads(launcher.stdout.read())
    launcher.wait()
    if result["rc"] != 0:
        raise RuntimeError(
            f"{shlex.join(cmd)} exited {result['rc']}: {out_path.read_text()[-2000:]} {err_path.read_text()[-2000:]}"
        )
    return {"ru_maxrss_mib": result["ru_maxrss_kib"] / 1024, "vmhwm_mib": hwm_kib / 1024, "total_s": elapsed}


# -- the run ----------------------------------------------------------------------------------------
def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    size = args.size_mib * MiB
    win = window()
    server = SeaweedFS(work / "seaweedfs")
    results: dict[str, Any] = {"size_bytes": size, "repeat": args.repeat}
    sims: list[SimProcess] = []
    try:
        server.start()
        os.environ.update(server.env())  # boto3's standard chain, as in production
        os.environ.pop("AWS_PROFILE", None)
        bucket = server.make_bucket("bench-ingest")
        sim = SimProcess(
            "usbip", SERIAL, "--recordings", "1", "--training", "1", "--size", str(size),
            "--exercise", iso_window(win), truth_dir=work,
        )  # fmt: skip
        sims.append(sim)
        expect_sha = next(iter(sim.training().values()))
        docks = [
            _dock(work / f"dock-{i}", f"s3://{bucket}/ingest-{i}", server.endpoint_url, SERIAL, win)
            for i in range(args.repeat)
        ]
        recipient = docks[0].config.recipients[0].age
        cfg = docks[0].config
        encrypted = Encryptor([recipient]).encrypted_size(size)
        part_size = part_size_for(encrypted, cfg.part_size)  # as Agent._ingest_recording cuts and sends parts
        in_flight = min(cfg.upload_workers, 2)
        # SeaweedFS creates a bucket's first volumes on its first write: not something to time in any tool
        upload_stage(server, bucket, 4 * part_size, part_size, in_flight)

        best = min  # of several repeats, the fastest: the machine may be shared
        assert server.process is not None
        others = {"seaweedfs": server.process.pid, "camera": sim.proc.pid}
        results["ingest"] = best((ingest(d, sim.address, others) for d in docks), key=lambda r: r["total_s"])
        results["cpu_bound_s"] = best(cpu_bound(SERIAL, size, win, recipient, expect_sha) for _ in range(args.repeat))
        results["raw_read_s"] = best(raw_read(sim.address, SERIAL, size) for _ in range(args.repeat))
        results["upload_stage"] = {"bytes": encrypted, "part_size": part_size, "in_flight": in_flight}
        results["upload_stage"]["s"] = best(
            upload_stage(server, bucket, encrypted, part_size, in_flight) for _ in range(args.repeat)
        )
        plain = work / f"{SERIAL}.mp4"
        results["stock"] = best(
            (
                stock(sim.address, SERIAL, plain, recipient, expect_sha, server, bucket, args.uploader, others)
                for _ in range(args.repeat)
            ),
            key=lambda r: r["total_s"],
        )  # the last repeat leaves the plaintext file in place for restic
        results["restic"] = best(
            (
                restic(plain, server, bucket, work, f"restic-{i}", {"seaweedfs": others["seaweedfs"]})
                for i in range(args.repeat)
            ),
            key=lambda r: r["backup_s"],
        )
        plain.unlink()
        sim.stop()
        sims.remove(sim)
        if not args.skip_rss:
            rss_size = args.rss_size_mib * MiB
            rsim = SimProcess(
                "usbip", RSS_SERIAL, "--recordings", "1", "--training", "1", "--size", str(rss_size),
                "--exercise", iso_window(win), truth_dir=work,
            )  # fmt: skip
            sims.append(rsim)
            rdock = _dock(work / "dock-rss", f"s3://{bucket}/rss", server.endpoint_url, RSS_SERIAL, win)
            results["rss"] = {
                "size_bytes": rss_size,
                **peak_rss(rdock, rsim.address, {**os.environ, **server.env()}, work),
            }
    finally:
        for s in sims:
            s.stop()
        server.stop()
    return results


def figures(r: dict[str, Any]) -> dict[str, Any]:
    size = r["size_bytes"]
    ingest_s, rec_s = r["ingest"]["total_s"], r["ingest"]["recording_s"]
    cpu = size / r["cpu_bound_s"] / MB
    raw = size / r["raw_read_s"] / MB
    e2e = size / ingest_s / MB
    f: dict[str, Any] = {
        "ingest_MBps": e2e,
        "ingest_recording_only_MBps": size / rec_s / MB,
        "cpu_bound_MBps": cpu,
        "raw_usbip_read_MBps": raw,
        "a_ratio": e2e / cpu,
        "b_bound_MBps": min(cpu, raw),
        "b_ratio": e2e / min(cpu, raw),
        "c_stock_s": r["stock"]["total_s"],
        "c_speedup": r["stock"]["total_s"] / ingest_s,
        "d_restic_s": r["restic"]["backup_s"],
        "d_speedup": r["restic"]["backup_s"] / ingest_s,
        "upload_stage_MBps": size / r["upload_stage"]["s"] / MB,
        "cpu_ms_per_MB": {k: v * 1000 / (size / MB) for k, v in r["ingest"]["cpu_s"].items()},
    }
    f["cpu_s"] = {
        "ingest": sum(r["ingest"]["cpu_s"].values()),
        "stock": sum(r["stock"]["cpu_s"].values()),
        "restic": sum(r["restic"]["cpu_s"].values()),
    }
    f["info_bound_MBps"] = min(cpu, raw, f["upload_stage_MBps"])
    f["info_ratio"] = e2e / f["info_bound_MBps"]
    f["pass"] = {
        "a": f["a_ratio"] >= TARGET_A,
        "b": f["b_ratio"] >= TARGET_B,
        "c": f["c_speedup"] >= TARGET_C,
        "d": f["d_speedup"] >= TARGET_D,
    }
    if "rss" in r:
        f["peak_rss_MiB"] = max(r["rss"]["ru_maxrss_mib"], r["rss"]["vmhwm_mib"])
        f["rss_ingest_MBps"] = r["rss"]["size_bytes"] / r["rss"]["total_s"] / MB
        f["pass"]["rss"] = f["peak_rss_MiB"] < TARGET_RSS_MIB
    return f


def command(args: argparse.Namespace) -> str:
    cmd = [".venv/bin/python", "bench/ingest.py", "--size-mib", str(args.size_mib)]
    cmd += ["--skip-rss"] if args.skip_rss else ["--rss-size-mib", str(args.rss_size_mib)]
    if args.repeat != 1:
        cmd += ["--repeat", str(args.repeat)]
    if args.uploader != "auto":
        cmd += ["--uploader", args.uploader]
    return shlex.join(cmd)


def print_table(args: argparse.Namespace, r: dict[str, Any], f: dict[str, Any], load: tuple[float, float]) -> None:
    def mark(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    st, rs, up = r["stock"], r["restic"], r["upload_stage"]
    wall = r["ingest"]["total_s"]
    cpu_line = ", ".join(
        f"{name} {secs:.1f} s ({f['cpu_ms_per_MB'][name]:.1f} ms/MB)" for name, secs in r["ingest"]["cpu_s"].items()
    )
    cpu_line += f"; the bare loop {1000 / f['cpu_bound_MBps']:.1f} ms/MB"
    busy = sum(r["ingest"]["cpu_s"].values()) / (wall * (os.cpu_count() or 1))
    cpu_line += f"; {busy:.0%} of {os.cpu_count()} CPUs x {wall:.1f} s"
    print(
        f"ingest of one {args.size_mib} MiB training recording: camera = `bodycam-sync sim serve` over USB/IP "
        f"(own process), SeaweedFS on loopback, ingest = Agent+ingest_once in the bench process; "
        f"{os.cpu_count()} CPUs, load {load[0]:.2f} before / {load[1]:.2f} after"
        + (f"; best of {args.repeat}" if args.repeat > 1 else "")
    )
    rows = [
        ("ingest end to end (ingest_once call)", f"{f['ingest_MBps']:7.1f} MB/s", f"{r['ingest']['total_s']:6.1f} s", "", ""),
        ("  of which the recording's own span", f"{f['ingest_recording_only_MBps']:7.1f} MB/s", f"{r['ingest']['recording_s']:6.1f} s", "", ""),
        ("SHA-256 + age loop, in-process source", f"{f['cpu_bound_MBps']:7.1f} MB/s", f"{r['cpu_bound_s']:6.1f} s", "", ""),
        ("raw USB/IP read (Camera.iter_read)", f"{f['raw_usbip_read_MBps']:7.1f} MB/s", f"{r['raw_read_s']:6.1f} s", "", ""),
        ("bare multipart upload, same bytes", f"{f['upload_stage_MBps']:7.1f} MB/s", f"{r['upload_stage']['s']:6.1f} s", "", ""),
        (f"    S3Bucket.upload_part, {up['part_size'] // MiB} MiB parts, {up['in_flight']} in flight, checksums precomputed", "", "", "", ""),
        ("(a) ingest / CPU bound", f"{f['a_ratio']:7.2f}", "", f">= {TARGET_A}", mark(f["pass"]["a"])),
        ("(b) ingest / slower of loop and read", f"{f['b_ratio']:7.2f}", "", f">= {TARGET_B}", mark(f["pass"]["b"])),
        ("(info) ingest / slowest of loop, read, upload", f"{f['info_ratio']:7.2f}", "", "", ""),
        (f"    CPU during ingest: {cpu_line}", "", "", "", ""),
        ("(c) stock tools / ingest (time)", f"{f['c_speedup']:7.2f}x", f"{st['total_s']:6.1f} s", f">= {TARGET_C}x", mark(f["pass"]["c"])),
        (f"    copy-off {st['copy_off_s']:.1f} + sha256sum {st['sha256sum_s']:.1f} + age {st['age_s']:.1f} + {st['uploader']} {st['upload_s']:.1f} s", "", "", "", ""),
        (f"    CPU s, SeaweedFS's included: stock tools {f['cpu_s']['stock']:.1f}, restic {f['cpu_s']['restic']:.1f}, ingest {f['cpu_s']['ingest']:.1f}", "", "", "", ""),
        ("(d) restic backup / ingest (time)", f"{f['d_speedup']:7.2f}x", f"{rs['backup_s']:6.1f} s", f">= {TARGET_D}x", mark(f["pass"]["d"])),
        ("    restic backup of the file already on disk (copy-off and init not counted)", "", "", "", ""),
    ]  # fmt: skip
    if "rss" in r:
        rss = r["rss"]
        rows += [
            (f"peak RSS, {rss['size_bytes'] // MiB} MiB recording (CLI subprocess)", f"{f['peak_rss_MiB']:7.1f} MiB", f"{rss['total_s']:6.1f} s", f"< {TARGET_RSS_MIB} MiB", mark(f["pass"]["rss"])),
            (f"    ru_maxrss {rss['ru_maxrss_mib']:.1f} MiB, VmHWM {rss['vmhwm_mib']:.1f} MiB; that run at {f['rss_ingest_MBps']:.1f} MB/s", "", "", "", ""),
        ]  # fmt: skip
    for name, value, secs, target, verdict in rows:
        if not value and not secs:
            print(f"  {name}")
            continue
        print(f"  {name:42} {value:>13} {secs:>9}  {target:>12}  {verdict}")
    print(f"reproduce: {command(args)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="the training recording (default 1024)")
    parser.add_argument("--rss-size-mib", type=int, default=4096, help="the recording for peak RSS (default 4096)")
    parser.add_argument("--skip-rss", action="store_true", help="skip the peak-RSS run")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each measurement but RSS; the fastest counts")
    parser.add_argument("--uploader", choices=("auto", "aws", "boto3"), default="auto", help="stock upload tool")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch directory (default: a temporary one)")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = parser.parse_args()
    if args.repeat < 1 or args.size_mib < 1 or args.rss_size_mib < 1:
        parser.error("sizes and --repeat must be positive")
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bodycam-bench-ingest-", dir=args.workdir) as tmp:
        raw = run(args, Path(tmp))
    load = (load_before, os.getloadavg()[0])
    f = figures(raw)
    if args.json:
        doc = {
            "command": command(args),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "loadavg_1m": load},
            "measured": raw,
            "figures": f,
            "targets": {"a": TARGET_A, "b": TARGET_B, "c": TARGET_C, "d": TARGET_D, "rss_MiB": TARGET_RSS_MIB},
        }
        print(json.dumps(doc, indent=2))
    else:
        print_table(args, raw, f, load)


if __name__ == "__main__":
    main()
