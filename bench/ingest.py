"""What users pay to ingest: `bodycam-sync ingest --once`'s own CPU seconds per GiB, against the floor.

In ONE run, on the same recording served by the same virtual camera (`bodycam-sync sim serve`, its
own process, over USB/IP):

  floor     the least CPU any agent must spend per GiB, measured in this run, one thread:
            SHA-256 of the plaintext + age's ChaCha20-Poly1305 in 64 KiB chunks + one SHA-256 of the
            ciphertext, over bytes already in memory (thread CPU time)
  s3        `bodycam-sync ingest --once` as a subprocess, as shipped, into SeaweedFS (its own process):
            the CLI's own user+system CPU seconds from wait4() (a small launcher is its parent), its
            wall time, and its peak RSS; reported as CPU s/GiB and as a ratio to the floor
  local     the same into a local bucket (file://, the embedded default) on tmpfs
  RSS       the same into SeaweedFS on a --rss-size-mib recording: peak RSS (ru_maxrss and VmHWM)

With --compare, also the older comparisons, all against the CLI's wall time into SeaweedFS:
  (a)       a bare SHA-256 + age-encrypt loop (Encryptor) over the same bytes from the simulator's
            ContentSource, 1 MiB pieces, output discarded (one thread)
  (b)       the slower of (a) and the raw USB/IP read rate (Camera.iter_read, discarding)
  (c)       stock tools one after another: copy-off, sha256sum, age -r, `aws s3 cp` (or boto3)
  (d)       `restic backup` of that plaintext file into a restic repository on the same SeaweedFS
  peers     the same plaintext file into the same SeaweedFS by `rclone copyto`, by `rclone` through a
            `crypt` remote, and by `aws s3 cp` (plaintext: no hashing, no encryption), each as wall time
            and the tool's own CPU s/GiB (Debian `rclone`; `aws` from PyPI), skipped when not installed
  pace      each of (c), (d) and the peers runs between two more `ingest --once` runs of the same bytes
            into the same SeaweedFS, and its time is compared with theirs (their mean): on a shared box
            the load moves within minutes, and a peer timed minutes after the CLI's one run was compared
            with another machine. For every tool, the CLI included, SeaweedFS's own CPU s/GiB while it ran
            (/proc): the server's work per GiB, to show each tool was served alike
  upload    the upload stage alone: S3Bucket.upload_part from memory, checksums precomputed

--repeat N runs each measurement but RSS N times and keeps the least CPU (or the fastest).
The agent's modules are byte-compiled first, as installing a wheel (or a Debian package) does, so that the
CLI's runs measure what a dock runs: an editable install under PYTHONDONTWRITEBYTECODE (as on the CI
machines) would otherwise compile some 80 modules from source in every run (0.15-0.3 CPU s);
--no-compile leaves them as they are.
Scratch: about 2 x --size-mib on disk per repeat (4 x with --compare) plus --rss-size-mib, and
--size-mib on tmpfs (/dev/shm) per repeat for the local bucket.

Targets (issue 14): agent CPU/GiB into S3 <= 2.0x the floor, into the local bucket <= 2.2x, peak RSS
<= 128 MiB on a 4 GiB recording. Figures are printed as measured, targets missed or not.

    .venv/bin/python bench/ingest.py [--size-mib 1024] [--rss-size-mib 4096] [--skip-rss] [--compare] [--json]
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

from bodycam.agent.formats.agecrypt import Encryptor  # noqa: E402
from bodycam.agent.pipeline.ingest import PARTS_IN_FLIGHT  # noqa: E402
from bodycam.agent.pipeline.pull import READ_SPAN, part_size_for  # noqa: E402
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
TARGET_D = 1.5  # restic backup's time / the CLI's (issue 14: at least 1.5x)
TARGET_CRYPT = 1.3  # rclone through a crypt remote, likewise
TARGET_RSS_MIB = 128
TARGET_S3_X = 2.0  # agent CPU per GiB into S3 / the floor (issue 14)
TARGET_LOCAL_X = 2.2  # into the local bucket
GiB = 1024 * MiB
AGE_CHUNK = 64 * 1024


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
    from bodycam.drivers.device.camera import Camera
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
    from bodycam.agent.formats.agecrypt import Encryptor
    from bodycam.drivers.protocol.frames import MAX_READ
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


def floor_cpu(size: int) -> float:
    """The floor: CPU seconds (this thread) for SHA-256 of ``size`` plaintext bytes, age's payload
    encryption (ChaCha20-Poly1305, 64 KiB chunks, counter nonces) and one SHA-256 of the ciphertext."""
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    aead = ChaCha20Poly1305(os.urandom(32))
    piece = memoryview(os.urandom(MiB))
    plain, cipher = hashlib.sha256(), hashlib.sha256()
    counter = 0
    started = time.thread_time()
    for offset in range(0, size, MiB):
        data = piece[: min(MiB, size - offset)]
        plain.update(data)
        for i in range(0, len(data), AGE_CHUNK):
            counter += 1
            cipher.update(aead.encrypt(counter.to_bytes(11, "big") + b"\0", data[i : i + AGE_CHUNK], None))
    elapsed = time.thread_time() - started
    plain.hexdigest(), cipher.hexdigest()
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


def upload_stage(server: SeaweedFS, bucket: str, total: int, part_size: int, in_flight: int) -> float:
    """Multipart upload of ``total`` bytes from memory with the agent's own S3Bucket, parts as the pipeline
    cuts them and as many in flight, checksums computed beforehand: the upload stage alone; seconds."""
    from bodycam.agent.storage.bucket import S3Bucket, part_checksum

    s3 = S3Bucket(bucket, "upload-stage", endpoint_url=server.endpoint_url)
    key = f"bare-{time.monotonic_ns()}.bin"
    upload_id = s3.start_upload(key)
    full = os.urandom(part_size)
    parts = [(full, part_checksum(full))] * (total // part_size)
    if total % part_size:
        tail = full[: total % part_size]
        parts.append((tail, part_checksum(tail)))
    try:
        with ThreadPoolExecutor(max_workers=in_flight) as pool:
            started = time.perf_counter()
            sent = pool.map(
                lambda n: s3.upload_part(key, upload_id, n + 1, parts[n][0], checksum=parts[n][1]), range(len(parts))
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


PEERS = ("rclone copyto", "rclone crypt", "aws s3 cp")


def peer(name: str, plain: Path, server: SeaweedFS, bucket: str, others: dict[str, int]) -> dict[str, Any] | None:
    """One of :data:`PEERS` (rclone copyto, rclone through a crypt remote, aws s3 cp): the plaintext file into
    the same SeaweedFS with the tool's defaults; its wall seconds, its own CPU seconds (this process's
    waited-for children) and those of ``others`` (SeaweedFS) meanwhile; None when the tool is missing or fails."""
    env = {**os.environ, **server.env()}
    tag = time.monotonic_ns()
    if name.startswith("rclone"):
        rclone = shutil.which("rclone")
        if rclone is None:
            return None
        password = subprocess.run([rclone, "obscure", "bodycam-bench"], capture_output=True, text=True, check=True)
        env |= {
            "RCLONE_CONFIG_SW_TYPE": "s3", "RCLONE_CONFIG_SW_PROVIDER": "Other",
            "RCLONE_CONFIG_SW_ENDPOINT": server.endpoint_url, "RCLONE_CONFIG_SW_ACCESS_KEY_ID": server.access_key,
            "RCLONE_CONFIG_SW_SECRET_ACCESS_KEY": server.secret_key, "RCLONE_CONFIG_SW_REGION": "us-east-1",
            "RCLONE_CONFIG_SWC_TYPE": "crypt", "RCLONE_CONFIG_SWC_REMOTE": f"sw:{bucket}/peers-crypt-{tag}",
            "RCLONE_CONFIG_SWC_PASSWORD": password.stdout.strip(),
            "RCLONE_CONFIG": str(plain.with_name("no-rclone.conf")),
        }  # fmt: skip
        env = {k: v for k, v in env.items() if k != "AWS_CA_BUNDLE"}  # plain http on loopback
        dest = f"sw:{bucket}/peers/rclone-{tag}" if name == "rclone copyto" else "swc:rec"
        cmd = [rclone, "copyto", "-q", "--s3-no-check-bucket", str(plain), dest]
    else:
        aws = shutil.which("aws")
        if aws is None:
            return None
        cmd = [aws, "s3", "cp", "--only-show-errors", "--endpoint-url", server.endpoint_url, str(plain),
               f"s3://{bucket}/peers/aws-{tag}"]  # fmt: skip
    meter = CpuMeter(others)
    try:
        wall = _run(cmd, env)
    except RuntimeError as err:
        print(f"note: {name} failed, left out: {err}", file=sys.stderr)
        return None
    used = meter.read()
    return {"s": wall, "cpu_s": used.pop("tools"), "others_cpu_s": used, "load": os.getloadavg()[0]}


# Starts the command, prints its pid, waits for it with wait4() and prints its exit code, ru_maxrss and
# CPU seconds (user + system). Linux carries the ru_maxrss of the mm a process had before exec() over to
# its child's: a child spawned straight from this bench would report the bench's own peak. This small
# launcher is the CLI's parent instead, so both figures are the CLI's own.
_LAUNCHER = """
import json, os, subprocess, sys
with open(sys.argv[1], "wb") as out, open(sys.argv[2], "wb") as err:
    proc = subprocess.Popen(sys.argv[3:], stdin=subprocess.DEVNULL, stdout=out, stderr=err)
    print(proc.pid, flush=True)
    _, status, usage = os.wait4(proc.pid, 0)
print(json.dumps({"rc": os.waitstatus_to_exitcode(status), "ru_maxrss_kib": usage.ru_maxrss,
                  "user_s": usage.ru_utime, "sys_s": usage.ru_stime,
                  "minflt": usage.ru_minflt, "nvcsw": usage.ru_nvcsw, "nivcsw": usage.ru_nivcsw}), flush=True)
"""


def cli_ingest(
    dock: Dock,
    address: str,
    env: dict[str, str],
    work: Path,
    profile: Path | None = None,
    perf: Path | None = None,
    others: dict[str, int] | None = None,
) -> dict[str, Any]:
    """`bodycam-sync ingest --once` as a subprocess: its own CPU seconds (wait4), wall time, peak RSS
    (wait4's ru_maxrss, and VmHWM polled every 20 ms from /proc); the recording must verify.

    ``profile``: run it under ``py-spy record`` (native frames, every thread), writing a flame graph and
    collapsed stacks there named after the dock; its CPU figures then include py-spy's sampling.
    ``perf``: run it under ``perf record -g`` (native call graphs, kernel included: where the CPU goes,
    page faults and copies, which py-spy's wall-clock samples hide), writing DIR/<dock>.data, and split its
    CPU by thread and kind of work (:func:`perf_threads`); its CPU figures then include perf's own.
    ``others``: name -> pid of processes whose CPU seconds over the run are reported too (SeaweedFS)."""
    cmd = [CLI, "--config", str(dock.config_path), "ingest", "--once", "--json", "--usbip", address]
    if profile is not None:
        spy = str(Path(sys.executable).with_name("py-spy"))
        profile.mkdir(parents=True, exist_ok=True)
        out = profile / f"{dock.root.name}.txt"
        cmd = [spy, "record", "--native", "--threads", "-r", "100", "-f", "raw", "-o", str(out), "--", *cmd]
    if perf is not None:
        perf.mkdir(parents=True, exist_ok=True)
        cmd = ["perf", "record", "-q", "-F", "999", "-g", "-o", str(perf / f"{dock.root.name}.data"), "--", *cmd]
    out_path, err_path = work / "cli-ingest.out", work / "cli-ingest.err"
    meter = CpuMeter(others or {})
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
    served = {name: cpu for name, cpu in meter.read().items() if name != "tools"}
    result = json.loads(launcher.stdout.read())
    launcher.wait()
    out = out_path.read_text()
    if result["rc"] != 0:
        raise RuntimeError(f"{shlex.join(cmd)} exited {result['rc']}: {out[-2000:]} {err_path.read_text()[-2000:]}")
    report = json.loads("\n".join(line for line in out.splitlines() if not line.startswith("py-spy> ")))
    verified = sum(c.get("verified", 0) for c in report.get("cameras", []))
    if verified != 1:
        raise RuntimeError(f"ingest did not verify the recording: {out[-2000:]}")
    threads = perf_threads(perf / f"{dock.root.name}.data") if perf is not None else None
    return {
        **({"perf_threads": threads} if threads is not None else {}),
        "total_s": elapsed,
        "cpu_s": result["user_s"] + result["sys_s"],
        "user_s": result["user_s"],
        "sys_s": result["sys_s"],
        "minflt": result["minflt"],
        "ru_maxrss_mib": result["ru_maxrss_kib"] / 1024,
        "vmhwm_mib": hwm_kib / 1024,
        "others_cpu_s": served,
        "load": os.getloadavg()[0],
    }


#: where a perf sample's leaf function lives -> what the bench calls that work
_PERF_KINDS = (
    ("libcrypto", "SHA-256"),  # hashlib's OpenSSL (the part checksums are not SHA-256: crc32c below)
    ("_rust.abi3", "ChaCha20-Poly1305"),  # cryptography's bundled OpenSSL, encrypt_into
    ("crc32c", "CRC-32C"),
    ("libpython", "interpreter"),
    ("kernel", "kernel"),
    ("libc.so", "libc (copies)"),
)


def perf_threads(data: Path) -> list[dict[str, Any]] | None:
    """The CLI's CPU per thread from a ``perf record`` file, each thread's samples sorted by what their
    leaf function is (``_PERF_KINDS``): shares of all samples, so times the run's CPU s/GiB they are its
    split. Python 3.11 gives its threads no OS names: the kinds tell them apart (the encrypting thread is
    SHA-256 + ChaCha20-Poly1305, the part thread SHA-256 + CRC-32C, the camera reader kernel receive and
    the interpreter, the uploads kernel send). None when ``perf script`` cannot read it."""
    try:
        out = subprocess.run(
            ["perf", "script", "-i", str(data), "-F", "tid,ip,dso"], capture_output=True, text=True, timeout=600
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    counts: dict[str, dict[str, int]] = {}
    tid, leaf_seen = None, True
    for line in out.splitlines():
        if not line.strip():
            continue
        if not line.startswith("\t"):  # a sample: its thread id; its call chain follows, leaf first
            tid, leaf_seen = line.split()[0], False
            continue
        if tid is None or leaf_seen:
            continue
        leaf_seen = True
        kind = next((name for key, name in _PERF_KINDS if key in line), "other")
        per = counts.setdefault(tid, {})
        per[kind] = per.get(kind, 0) + 1
    total = sum(sum(per.values()) for per in counts.values())
    if not total:
        return None
    threads = [
        {
            "tid": t,
            "share": sum(per.values()) / total,
            "kinds": {k: n / total for k, n in sorted(per.items(), key=lambda kv: -kv[1])},
        }
        for t, per in counts.items()
    ]
    return sorted(threads, key=lambda th: -th["share"])


# -- the run ----------------------------------------------------------------------------------------
def byte_compile() -> None:
    """Write the .pyc files of bodycam.agent and bodycam.drivers where the CLI will import them from, as pip
    does when it installs a wheel (py_compile writes them whatever PYTHONDONTWRITEBYTECODE says)."""
    import compileall
    import importlib.util

    for package in ("bodycam.agent", "bodycam.drivers"):
        spec = importlib.util.find_spec(package)
        for location in (spec.submodule_search_locations or []) if spec else []:
            compileall.compile_dir(location, quiet=1)


def _tmpfs() -> Path | None:
    """A tmpfs directory for the local bucket (as the embedded default on a dock with its state in RAM)."""
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else None


def _sim(serial: str, size: int, win: tuple[float, float], work: Path) -> SimProcess:
    return SimProcess(
        "usbip", serial, "--recordings", "1", "--training", "1", "--size", str(size),
        "--exercise", iso_window(win), truth_dir=work,
    )  # fmt: skip


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    size = args.size_mib * MiB
    win = window()
    server = SeaweedFS(work / "seaweedfs")
    results: dict[str, Any] = {"size_bytes": size, "repeat": args.repeat}
    sims: list[SimProcess] = []
    shm = tempfile.TemporaryDirectory(prefix="bodycam-bench-bucket-", dir=_tmpfs())
    try:
        server.start()
        os.environ.update(server.env())  # boto3's standard chain, as in production
        os.environ.pop("AWS_PROFILE", None)
        env = {**os.environ, **server.env()}
        bucket = server.make_bucket("bench-ingest")
        sim = _sim(SERIAL, size, win, work)
        sims.append(sim)
        expect_sha = next(iter(sim.training().values()))
        s3_docks = [
            _dock(work / f"dock-{i}", f"s3://{bucket}/ingest-{i}", server.endpoint_url, SERIAL, win)
            for i in range(args.repeat)
        ]
        local_docks = [
            _dock(work / f"local-{i}", (Path(shm.name) / f"bucket-{i}").as_uri(), None, SERIAL, win)
            for i in range(args.repeat)
        ]
        recipient = s3_docks[0].config.recipients[0].age
        cfg = s3_docks[0].config
        encrypted = Encryptor([recipient]).encrypted_size(size)
        part_size = part_size_for(encrypted, cfg.part_size)  # as Agent._ingest_recording cuts and sends parts
        in_flight = min(cfg.upload_workers, PARTS_IN_FLIGHT)  # as `ingest --once` keeps them
        # SeaweedFS creates a bucket's first volumes on its first write: not something to time in any tool
        upload_stage(server, bucket, 4 * part_size, part_size, in_flight)

        least_cpu = {"key": lambda r: r["cpu_s"]}  # of several repeats, the least: the machine may be shared
        results["floor_s"] = min(floor_cpu(size) for _ in range(args.repeat))

        assert server.process is not None
        served = {"seaweedfs": server.process.pid}

        def fresh(dock: Dock) -> dict[str, Any]:
            """A camera of its own per run: docking sets its clock (a new epoch) which another dock never
            measured, so a second dock would rightly leave the recording unplaceable."""
            cam = _sim(SERIAL, size, win, work)
            sims.append(cam)
            try:
                return cli_ingest(dock, cam.address, env, work, args.py_spy, args.perf, served)
            finally:
                cam.stop()
                sims.remove(cam)

        def paced() -> dict[str, Any]:
            """One more `ingest --once` into SeaweedFS, between two peers (see "pace" above)."""
            n = len(results.setdefault("pace", []))
            dock = _dock(work / f"pace-{n}", f"s3://{bucket}/pace-{n}", server.endpoint_url, SERIAL, win)
            run = fresh(dock)
            results["pace"].append(run)
            shutil.rmtree(dock.root, ignore_errors=True)
            return run

        results["s3"] = min((fresh(d) for d in s3_docks), **least_cpu)
        results["local"] = min((fresh(d) for d in local_docks), **least_cpu)
        results["floor_after_s"] = min(floor_cpu(size) for _ in range(args.repeat))
        for i in range(args.repeat):
            shutil.rmtree(Path(shm.name) / f"bucket-{i}", ignore_errors=True)
        others = {"seaweedfs": server.process.pid, "camera": sim.proc.pid}
        if args.compare:
            best = min
            results["cpu_bound_s"] = best(
                cpu_bound(SERIAL, size, win, recipient, expect_sha) for _ in range(args.repeat)
            )
            results["raw_read_s"] = best(raw_read(sim.address, SERIAL, size) for _ in range(args.repeat))
            results["upload_stage"] = {"bytes": encrypted, "part_size": part_size, "in_flight": in_flight}
            results["upload_stage"]["s"] = best(
                upload_stage(server, bucket, encrypted, part_size, in_flight) for _ in range(args.repeat)
            )
            plain = work / f"{SERIAL}.mp4"
            bracket: dict[str, tuple[int, int]] = {}  # peer -> the pace runs before and after it
            paced()
            results["stock"] = best(
                (
                    stock(sim.address, SERIAL, plain, recipient, expect_sha, server, bucket, args.uploader, others)
                    for _ in range(args.repeat)
                ),
                key=lambda r: r["total_s"],
            )  # the last repeat leaves the plaintext file in place for restic
            paced()
            bracket["stock chain"] = (len(results["pace"]) - 2, len(results["pace"]) - 1)
            results["restic"] = best(
                (
                    restic(plain, server, bucket, work, f"restic-{i}", {"seaweedfs": others["seaweedfs"]})
                    for i in range(args.repeat)
                ),
                key=lambda r: r["backup_s"],
            )
            paced()
            bracket["restic backup"] = (len(results["pace"]) - 2, len(results["pace"]) - 1)
            results["peers"] = {}
            for name in PEERS:
                got = peer(name, plain, server, bucket, served)
                if got is not None:
                    results["peers"][name] = got
                    paced()
                    bracket[name] = (len(results["pace"]) - 2, len(results["pace"]) - 1)
            results["bracket"] = bracket
            plain.unlink()
        sim.stop()
        sims.remove(sim)
        if not args.skip_rss:
            rss_size = args.rss_size_mib * MiB
            rsim = _sim(RSS_SERIAL, rss_size, win, work)
            sims.append(rsim)
            rdock = _dock(work / "dock-rss", f"s3://{bucket}/rss", server.endpoint_url, RSS_SERIAL, win)
            results["rss"] = {"size_bytes": rss_size, **cli_ingest(rdock, rsim.address, env, work)}
    finally:
        for s in sims:
            s.stop()
        server.stop()
        shm.cleanup()
    return results


def figures(r: dict[str, Any]) -> dict[str, Any]:
    size = r["size_bytes"]
    gib = size / GiB
    floor = min(r["floor_s"], r["floor_after_s"]) / gib
    f: dict[str, Any] = {
        "floor_cpu_s_per_GiB": floor,
        "floor_before_after_s_per_GiB": [r["floor_s"] / gib, r["floor_after_s"] / gib],
        "s3_cpu_s_per_GiB": r["s3"]["cpu_s"] / gib,
        "local_cpu_s_per_GiB": r["local"]["cpu_s"] / gib,
        "s3_MBps": size / r["s3"]["total_s"] / MB,
        "local_MBps": size / r["local"]["total_s"] / MB,
    }
    f["s3_x_floor"] = f["s3_cpu_s_per_GiB"] / floor
    f["local_x_floor"] = f["local_cpu_s_per_GiB"] / floor
    f["pass"] = {"s3": f["s3_x_floor"] <= TARGET_S3_X, "local": f["local_x_floor"] <= TARGET_LOCAL_X}
    if "stock" in r:
        first_s = r["s3"]["total_s"]
        pace = [run["total_s"] for run in r["pace"]]

        def beside(name: str) -> float:
            """The CLI's time in the runs just before and after peer ``name`` (their mean)."""
            before, after = r["bracket"][name]
            return (pace[before] + pace[after]) / 2

        def served(run: dict[str, Any]) -> float:
            """SeaweedFS's CPU seconds while ``run`` ran (the stock chain and restic meter it with their own)."""
            used = run["cpu_s"] if isinstance(run["cpu_s"], dict) else run["others_cpu_s"]
            return float(used["seaweedfs"])

        peer_s = {
            "stock chain": r["stock"]["total_s"],
            "restic backup": r["restic"]["backup_s"],
            **{name: p["s"] for name, p in r.get("peers", {}).items()},
        }
        cpu = size / r["cpu_bound_s"] / MB
        raw = size / r["raw_read_s"] / MB
        e2e = f["s3_MBps"]
        f |= {
            "cpu_bound_MBps": cpu,
            "raw_usbip_read_MBps": raw,
            "a_ratio": e2e / cpu,
            "b_bound_MBps": min(cpu, raw),
            "b_ratio": e2e / min(cpu, raw),
            "c_stock_s": r["stock"]["total_s"],
            "c_speedup": r["stock"]["total_s"] / beside("stock chain"),
            "d_restic_s": r["restic"]["backup_s"],
            "d_speedup": r["restic"]["backup_s"] / beside("restic backup"),
            "pace_s": pace,
            "pace_cpu_s_per_GiB": [run["cpu_s"] / gib for run in r["pace"]],
            "upload_stage_MBps": size / r["upload_stage"]["s"] / MB,
            "cpu_s": {"stock": sum(r["stock"]["cpu_s"].values()), "restic": sum(r["restic"]["cpu_s"].values())},
            "own_cpu_s_per_GiB": {
                "agent (ingest --once)": r["s3"]["cpu_s"] / gib,
                "stock chain": r["stock"]["cpu_s"]["tools"] / gib,
                "restic backup": r["restic"]["cpu_s"]["tools"] / gib,
                **{name: p["cpu_s"] / gib for name, p in r.get("peers", {}).items()},
            },
            # the peer's time / the CLI's in the runs just before and after it (the targets' figure)
            "peer_time_ratio": {name: s / beside(name) for name, s in peer_s.items()},
            # the same against the CLI's first run alone, minutes earlier (how it was measured before)
            "peer_time_ratio_first_run": {name: s / first_s for name, s in peer_s.items()},
            "seaweedfs_cpu_s_per_GiB": {
                "agent (ingest --once)": served(r["s3"]) / gib,
                "agent, the runs beside peers": sum(served(run) for run in r["pace"]) / len(pace) / gib,
                "stock chain": served(r["stock"]) / gib,
                "restic backup": served(r["restic"]) / gib,
                **{name: served(p) / gib for name, p in r.get("peers", {}).items()},
            },
        }
        # CPU the box spends per GiB moved, the tool's own and SeaweedFS's, as a ratio to the CLI's (the
        # runs beside the peers): what the time ratio tends to on an idle box where both run in parallel;
        # under load each session gets its share and the time ratio tends to own CPU / SeaweedFS's instead
        agent_box = sum(run["cpu_s"] + served(run) for run in r["pace"]) / len(pace) / gib
        f["box_cpu_ratio"] = {
            name: (f["own_cpu_s_per_GiB"][name] + f["seaweedfs_cpu_s_per_GiB"][name]) / agent_box for name in peer_s
        }
        f["pass"] |= {
            "a": f["a_ratio"] >= TARGET_A,
            "b": f["b_ratio"] >= TARGET_B,
            "c": f["c_speedup"] >= TARGET_C,
            "d": f["d_speedup"] >= TARGET_D,
            "crypt": f["peer_time_ratio"].get("rclone crypt", 0.0) >= TARGET_CRYPT,
        }
    if "rss" in r:
        f["peak_rss_MiB"] = max(r["rss"]["ru_maxrss_mib"], r["rss"]["vmhwm_mib"])
        f["rss_ingest_MBps"] = r["rss"]["size_bytes"] / r["rss"]["total_s"] / MB
        f["pass"]["rss"] = f["peak_rss_MiB"] <= TARGET_RSS_MIB
    return f


def command(args: argparse.Namespace) -> str:
    cmd = [".venv/bin/python", "bench/ingest.py", "--size-mib", str(args.size_mib)]
    cmd += ["--skip-rss"] if args.skip_rss else ["--rss-size-mib", str(args.rss_size_mib)]
    if args.repeat != 1:
        cmd += ["--repeat", str(args.repeat)]
    if args.compare:
        cmd += ["--compare"]
    if args.uploader != "auto":
        cmd += ["--uploader", args.uploader]
    if args.no_compile:
        cmd += ["--no-compile"]
    return shlex.join(cmd)


def print_table(args: argparse.Namespace, r: dict[str, Any], f: dict[str, Any], load: tuple[float, float]) -> None:
    def mark(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    def detail(run: dict[str, Any]) -> str:
        line = (
            f"    user {run['user_s']:.2f} + sys {run['sys_s']:.2f} s, {run['minflt']:,} minor faults, "
            f"peak RSS {max(run['ru_maxrss_mib'], run['vmhwm_mib']):.0f} MiB"
        )
        per_gib = run["cpu_s"] * GiB / r["size_bytes"]
        for th in run.get("perf_threads", [])[:8]:  # --perf: the CPU s/GiB split by thread and kind of work
            kinds = ", ".join(f"{k} {v * per_gib:.2f}" for k, v in th["kinds"].items() if v * per_gib >= 0.01)
            line += f"\n      thread {th['tid']}: {th['share'] * per_gib:.2f} s/GiB ({kinds})"
        return line

    print(
        f"`bodycam-sync ingest --once` of one {args.size_mib} MiB training recording as a subprocess: camera = "
        f"`bodycam-sync sim serve` over USB/IP (own process), SeaweedFS on loopback; CPU = the CLI's own "
        f"(wait4); {os.cpu_count()} CPUs, load {load[0]:.2f} before / {load[1]:.2f} after"
        + (f"; least of {args.repeat}" if args.repeat > 1 else "")
    )
    s3, loc = r["s3"], r["local"]
    fb, fa = f["floor_before_after_s_per_GiB"]
    rows = [
        ("floor: SHA-256 + ChaCha20-Poly1305 + SHA-256", f"{f['floor_cpu_s_per_GiB']:6.2f} s/GiB", "", "", ""),
        (f"    one thread, bytes in memory; {fb:.2f} before, {fa:.2f} after the CLI runs (the lesser counts)", "", "", "", ""),
        ("ingest --once into SeaweedFS (CPU)", f"{f['s3_cpu_s_per_GiB']:6.2f} s/GiB", f"{f['s3_x_floor']:5.2f}x", f"<= {TARGET_S3_X}x", mark(f["pass"]["s3"])),
        (f"    wall {s3['total_s']:.1f} s ({f['s3_MBps']:.0f} MB/s)", "", "", "", ""),
        (detail(s3), "", "", "", ""),
        ("ingest --once into a local bucket on tmpfs", f"{f['local_cpu_s_per_GiB']:6.2f} s/GiB", f"{f['local_x_floor']:5.2f}x", f"<= {TARGET_LOCAL_X}x", mark(f["pass"]["local"])),
        (f"    wall {loc['total_s']:.1f} s ({f['local_MBps']:.0f} MB/s)", "", "", "", ""),
        (detail(loc), "", "", "", ""),
    ]  # fmt: skip
    if "stock" in r:
        st, rs, up = r["stock"], r["restic"], r["upload_stage"]
        rows += [
            ("SHA-256 + age loop (Encryptor), in-process", f"{f['cpu_bound_MBps']:7.1f} MB/s", f"{r['cpu_bound_s']:6.1f} s", "", ""),
            ("raw USB/IP read (Camera.iter_read)", f"{f['raw_usbip_read_MBps']:7.1f} MB/s", f"{r['raw_read_s']:6.1f} s", "", ""),
            ("bare multipart upload, same bytes", f"{f['upload_stage_MBps']:7.1f} MB/s", f"{up['s']:6.1f} s", "", ""),
            (f"    S3Bucket.upload_part, {up['part_size'] // MiB} MiB parts, {up['in_flight']} in flight, checksums precomputed", "", "", "", ""),
            ("(a) CLI ingest / CPU bound (time)", f"{f['a_ratio']:7.2f}", "", f">= {TARGET_A}", mark(f["pass"]["a"])),
            ("(b) CLI ingest / slower of loop and read", f"{f['b_ratio']:7.2f}", "", f">= {TARGET_B}", mark(f["pass"]["b"])),
            ("(c) stock tools / CLI ingest (time)", f"{f['c_speedup']:7.2f}x", f"{st['total_s']:6.1f} s", f">= {TARGET_C}x", mark(f["pass"]["c"])),
            (f"    copy-off {st['copy_off_s']:.1f} + sha256sum {st['sha256sum_s']:.1f} + age {st['age_s']:.1f} + {st['uploader']} {st['upload_s']:.1f} s", "", "", "", ""),
            (f"    CPU s, SeaweedFS's included: stock tools {f['cpu_s']['stock']:.1f}, restic {f['cpu_s']['restic']:.1f}", "", "", "", ""),
            ("(d) restic backup / CLI ingest (time)", f"{f['d_speedup']:7.2f}x", f"{rs['backup_s']:6.1f} s", f">= {TARGET_D}x", mark(f["pass"]["d"])),
            ("peers, same bytes and SeaweedFS: own CPU, time / the CLI's runs beside it", "", "", "", ""),
            (f"    the CLI's runs beside the peers: {', '.join(f'{t:.1f}' for t in f['pace_s'])} s; first run {s3['total_s']:.1f} s", "", "", "", ""),
        ]  # fmt: skip
        targets = {
            "stock chain": ("c", TARGET_C),
            "restic backup": ("d", TARGET_D),
            "rclone crypt": ("crypt", TARGET_CRYPT),
        }
        for name, cpu in f["own_cpu_s_per_GiB"].items():
            ratio = f["peer_time_ratio"].get(name)
            verdict = targets.get(name)
            rows.append(
                (
                    f"    {name} (SeaweedFS {f['seaweedfs_cpu_s_per_GiB'][name]:.1f} s/GiB)",
                    f"{cpu:6.2f} s/GiB",
                    f"{ratio:5.2f}x" if ratio else "",
                    f">= {verdict[1]}x" if verdict else "",
                    mark(f["pass"][verdict[0]]) if verdict else "",
                )
            )
        beside_cli = f["seaweedfs_cpu_s_per_GiB"]["agent, the runs beside peers"]
        box = ", ".join(f"{name} {ratio:.2f}x" for name, ratio in f["box_cpu_ratio"].items())
        rows += [
            (f"    SeaweedFS beside the CLI's runs: {beside_cli:.1f} CPU s/GiB", "", "", "", ""),
            (f"    CPU of tool + SeaweedFS per GiB / the CLI's: {box}", "", "", "", ""),
        ]  # fmt: skip
    if "rss" in r:
        rss = r["rss"]
        rows += [
            (f"peak RSS, {rss['size_bytes'] // MiB} MiB recording into SeaweedFS", f"{f['peak_rss_MiB']:6.1f} MiB", "", f"<= {TARGET_RSS_MIB} MiB", mark(f["pass"]["rss"])),
            (f"    ru_maxrss {rss['ru_maxrss_mib']:.1f} MiB, VmHWM {rss['vmhwm_mib']:.1f} MiB; {rss['cpu_s'] / (rss['size_bytes'] / GiB):.2f} CPU s/GiB, {f['rss_ingest_MBps']:.0f} MB/s", "", "", "", ""),
        ]  # fmt: skip
    for name, value, secs, target, verdict in rows:
        if not value and not secs:
            print(f"  {name}")
            continue
        print(f"  {name:44} {value:>13} {secs:>9}  {target:>12}  {verdict}")
    print(f"reproduce: {command(args)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="the training recording (default 1024)")
    parser.add_argument("--rss-size-mib", type=int, default=4096, help="the recording for peak RSS (default 4096)")
    parser.add_argument("--skip-rss", action="store_true", help="skip the peak-RSS run")
    parser.add_argument("--compare", action="store_true", help="also time stock tools, restic, read, upload stage")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each measurement but RSS; the least counts")
    parser.add_argument("--uploader", choices=("auto", "aws", "boto3"), default="auto", help="stock upload tool")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch directory (default: a temporary one)")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    parser.add_argument("--py-spy", type=Path, default=None, help="profile each CLI run with py-spy into DIR")
    parser.add_argument("--perf", type=Path, default=None, help="profile each CLI run with perf record -g into DIR")
    parser.add_argument("--no-compile", action="store_true", help="do not byte-compile the agent first")
    args = parser.parse_args()
    if args.repeat < 1 or args.size_mib < 1 or args.rss_size_mib < 1:
        parser.error("sizes and --repeat must be positive")
    if not args.no_compile:
        byte_compile()
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
            "targets": {
                "s3_x_floor": TARGET_S3_X,
                "local_x_floor": TARGET_LOCAL_X,
                "rss_MiB": TARGET_RSS_MIB,
                **(
                    {"a": TARGET_A, "b": TARGET_B, "c": TARGET_C, "d": TARGET_D, "crypt": TARGET_CRYPT}
                    if args.compare
                    else {}
                ),
            },
        }
        print(json.dumps(doc, indent=2))
    else:
        print_table(args, raw, f, load)


if __name__ == "__main__":
    main()
