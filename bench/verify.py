"""`bodycam-sync verify` on a 1,000-recording bucket in SeaweedFS: objects per second, and peak memory
that does not depend on object size.

For each of two buckets in one SeaweedFS (its own process, started as the tests start it):

  small   --recordings age-encrypted recording objects of --size-kib each (plus the batch's manifest,
          signature, custody segment and personal sidecar)
  large   the same number of objects, --factor times larger

The buckets are built fast, without cameras: random plaintexts are age-encrypted to the dock's recipient
with the agent's Encryptor and uploaded with its S3Bucket (8 in parallel); each recording is journaled as
the pipeline journals a verified one, with its `pulled` and `verified` custody entries; then the real
batch code seals (manifest, SSH signature, custody segment, sidecar) and publishes. A check run of
`verify` must pass before anything is timed.

Then `bodycam-sync verify --json` (no --identity: ciphertext SHA-256 only, no decryption) runs as a
subprocess of a small launcher process, which reports the wall time and the peak RSS of its only child
via resource.getrusage(RUSAGE_CHILDREN) (a launcher, because Linux carries the parent's ru_maxrss over
an exec, and this bench process holds buffers of its own). Best of --runs.

    .venv/bin/python bench/verify.py [--recordings 1000] [--size-kib 16] [--factor 10] [--runs 3] [--json]

With ``--hostile`` it measures instead the hostile buckets of ``tests/hostile.py`` (file buckets, validly
signed, built to exhaust the verifier; issue 8 item 4), each under the same launcher, with verify's
default ``--max-memory`` of 256 MiB unless the case says otherwise: custody segments of 10,000 and
100,000 entries (time must grow linearly: the ratio is printed), a custody range claiming 10^15 entries,
one and three 60 MiB manifests of ``{}`` entries, 100,000 stray objects (findings past the budget are
counted), and 15,000 batches at ``--max-memory 128`` (before, more than the 13,107 that fit: ``bucket_too_large``;
now the summaries past 3,276 spill to verify's temporary database and all verify).

    .venv/bin/python bench/verify.py --hostile [--runs 3] [--json]

With ``--fleet 10,100`` it measures a force instead (issue 14 item 6): for each number of docks, a bucket
in one SeaweedFS holding that many docks' sealed batches of ``--per-dock`` recordings of ``--fleet-size-kib``
(built by tests/fleet.py through the library: each dock its own key, journal and custody, real seal and
publish; the recording objects written to files and put by ``rclone copy`` while the next docks are built),
then `bodycam-sync verify --json` over it as users run it, under the launcher: wall time, objects/s, MB/s of
recording bytes hashed, its CPU per object, SeaweedFS's CPU per object meanwhile, peak RSS. In the same run,
over the same bytes: stock ``sha256sum`` of the local files (wall and CPU), and a peer paying the same GETs,
``rclone hashsum sha256 --download`` (wall, CPU, SeaweedFS's CPU). ``--large 10x20x32`` adds a fleet of
10 docks of 20 recordings of 32 MiB, where hashing, not requests, sets the pace; ``--sequential`` also reads
the smallest fleet one object at a time in-process. CPU per object across fleet sizes shows whether verify
is linear. Fleets are cached under ``--cache`` (SeaweedFS data, keys, objects) and reused; the last run's
rows are kept there as last-run.json. Needs Debian ``rclone``.

    .venv/bin/python bench/verify.py --fleet 10,100 --large 10x20x32 [--per-dock 1000] [--fleet-size-kib 4] [--json]

With ``--sweep`` it finds the object size at which verify hashes as fast as ``sha256sum`` over the same
bytes (issue 14's last verify target): for each size (default 4 KiB, 64 KiB, 256 KiB, 1 MiB, 4 MiB, 32 MiB)
a one-dock bucket in the same SeaweedFS of about ``--sweep-mib`` MiB (768; at least 24 and at most 2,000
objects), built like a fleet's and cached with them; then ``--runs`` rounds, each measuring every size once
(verify under the launcher, then ``sha256sum`` of the same objects as local files, page cache warm), so that
each ratio compares the two in the same minute. It prints each size's MB/s and ratio in every round, verify's
and SeaweedFS's CPU per object, the size where the ratio first reaches 1 in each round (log-log between the
two sizes swept on either side), and ``uptime`` before and after. A small object costs one GET whatever its
size (SeaweedFS about 1 ms of CPU, verify a few tenths), where ``sha256sum`` opens and hashes a 4 KiB file in
tens of microseconds: below the crossover the bound is the request, above it the hashing.

    .venv/bin/python bench/verify.py --sweep [4,64,256,1024,4096,32768] [--sweep-mib 768] [--runs 3] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests/ holds the SeaweedFS runner and the test dock

from bodycam.agent.audit.verify import READ_WORKERS  # noqa: E402
from bodycam.agent.formats import manifest as mf  # noqa: E402
from bodycam.agent.formats.agecrypt import Encryptor  # noqa: E402
from bodycam.agent.formats.sshsig import load_private_key  # noqa: E402
from bodycam.agent.pipeline import batch as batches  # noqa: E402
from bodycam.agent.storage.bucket import open_bucket  # noqa: E402
from bodycam.agent.storage.custody_log import CustodyLog  # noqa: E402
from bodycam.agent.storage.journal import Journal  # noqa: E402
from tests import hostile  # noqa: E402
from tests.dock import CLI, Dock, make_dock  # noqa: E402
from tests.fleet import journal_as_verified  # noqa: E402
from tests.s3server import SeaweedFS  # noqa: E402

KiB, MiB = 1024, 1024 * 1024
SERIAL = "CAM-BENCH"

# Runs the command with its output to files, then prints wall time and RUSAGE_CHILDREN's ru_maxrss (KiB):
# the command is this launcher's only child, so the figure is the command's own peak.
_LAUNCHER = """
import json, resource, subprocess, sys, time
started = time.perf_counter()
with open(sys.argv[1], "wb") as out, open(sys.argv[2], "wb") as err:
    rc = subprocess.run(sys.argv[3:], stdin=subprocess.DEVNULL, stdout=out, stderr=err).returncode
wall = time.perf_counter() - started
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": rc, "wall_s": wall, "ru_maxrss_kib": usage.ru_maxrss}), flush=True)
"""


def build(dock: Dock, recordings: int, size: int) -> dict[str, Any]:
    """Fill the dock's bucket with one sealed, published batch of ``recordings`` objects of ``size`` bytes."""
    started = time.perf_counter()
    cfg = dock.config
    bucket = open_bucket(cfg.bucket_url, cfg.bucket_endpoint_url)
    journal = Journal(cfg.journal_path)
    custody = CustodyLog(journal, cfg.dock_id)
    recipients = [r.age for r in cfg.recipients]
    batch_id = batches.open_batch(journal)
    custody.append("docked", camera=SERIAL, model="Bench", firmware="1.0", transport="usbip")
    custody.append("listed", camera=SERIAL, count=recordings)

    def upload(rid: int) -> dict[str, Any]:
        plain = os.urandom(size)
        enc = Encryptor(recipients)
        blob = enc.header + enc.update(plain) + enc.finalize()
        key = mf.recording_key(cfg.dock_id, batch_id, SERIAL, rid)
        info = bucket.put_object(key, blob)
        return {
            "id": rid,
            "key": key,
            "plain": mf.sha256_hex(plain),
            "cipher": mf.sha256_hex(blob),
            "cipher_size": len(blob),
            "version": info.version_id,
        }

    with ThreadPoolExecutor(8) as pool:
        uploaded = list(pool.map(upload, range(1000, 1000 + recordings)))
    journal_as_verified(journal, custody, uploaded, batch_id, size, "Bench")
    custody.append("undocked", camera=SERIAL)
    batches.seal(
        journal,
        custody,
        batch_id,
        dock_id=cfg.dock_id,
        key=load_private_key(cfg.key_path),
        recipients=list(cfg.recipients),
        pseudonym_secret=mf.load_pseudonym_key(cfg.pseudonym_key_path, create=True),
    )
    batches.publish(journal, bucket, cfg.dock_id, batch_id)
    journal.close()
    bucket.close()
    return {"batch_id": batch_id, "build_s": time.perf_counter() - started}


def run_verify(dock: Dock, work: Path, name: str) -> dict[str, Any]:
    """One `bodycam-sync verify --json` under the launcher: exit code, wall time, peak RSS, its report."""
    import subprocess

    assert dock.endpoint_url is not None
    cmd = [CLI, "verify", "--bucket", dock.bucket_url, "--endpoint-url", dock.endpoint_url,
           "--allowed-signers", str(dock.allowed_signers), "--json"]  # fmt: skip
    out, err = work / f"{name}.out", work / f"{name}.err"
    launched = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, str(out), str(err), *cmd], capture_output=True, text=True, check=True
    )
    result: dict[str, Any] = json.loads(launched.stdout)
    report = json.loads(out.read_text() or "{}")
    if result["rc"] != 0 or not report.get("verified"):
        raise SystemExit(f"verify of {dock.bucket_url} failed (exit {result['rc']}): {err.read_text()[-2000:]}")
    result["objects"] = report["objects_seen"]
    result["recordings"] = sum(b["recordings"] for b in report["batches"])
    return result


HOSTILE_CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("custody 3 entries (start-up)", {"custody_entries": 3}, []),
    ("custody 10,000 entries", {"custody_entries": 10_000}, []),
    ("custody 100,000 entries", {"custody_entries": 100_000}, []),
    ("custody last_seq = 10^15", {"custody_entries": 5, "last_seq": 10**15}, []),
    ("one 60 MiB manifest of {}", {"empty_recordings": 20 * MiB}, []),
    ("three 60 MiB manifests of {}", {"empty_recordings": 20 * MiB, "batches": 3}, []),
    ("100,000 stray objects", {"stray_objects": 100_000}, []),
    ("15,000 batches, --max-memory 128", {"batches": 15_000}, ["--max-memory", "128"]),
]


def hostile_case(root: Path, name: str, build_args: dict[str, Any], extra: list[str], runs: int) -> dict[str, Any]:
    """Build one hostile bucket under ``root``, run verify on it ``runs`` times (best time, highest RSS)."""
    root.mkdir()
    started = time.perf_counter()
    h = hostile.build(root / "bucket", **build_args)
    built = time.perf_counter() - started
    cmd = [CLI, "verify", "--bucket", h.url, "--allowed-signers", str(h.allowed_signers), "--json", *extra]
    measured = [hostile.measure(cmd, root, address_limit=hostile.address_limit(2048)) for _ in range(runs)]
    report = json.loads(measured[0].stdout)
    problems: dict[str, int] = {}
    for f in report["findings"]:
        problems[f["problem"]] = problems.get(f["problem"], 0) + 1
    bucket_bytes = sum(p.stat().st_size for p in h.root.rglob("*") if p.is_file())
    return {
        "case": name,
        "bucket_MiB": bucket_bytes / MiB,
        "build_s": built,
        "rc": measured[0].rc,
        "verify_s": min(m.wall_s for m in measured),
        "peak_rss_MiB": max(m.peak_rss_mib for m in measured),
        "batches_checked": len(report["batches"]),
        "problems": problems,
    }


def main_hostile(runs: int, as_json: bool) -> None:
    rows = []
    with tempfile.TemporaryDirectory(prefix="bodycam-bench-verify-hostile-") as tmp:
        for index, (name, build_args, extra) in enumerate(HOSTILE_CASES):
            root = Path(tmp) / f"case-{index}"
            rows.append(hostile_case(root, name, build_args, extra, runs if index < 3 else 1))
            shutil.rmtree(root)  # some cases take 180 MiB of disk
    start, small, large = rows[0], rows[1], rows[2]
    summary = {
        "rows": rows,
        "custody_time_ratio_100k_to_10k": large["verify_s"] / small["verify_s"],
        "custody_time_ratio_net_of_start_up": (large["verify_s"] - start["verify_s"])
        / max(small["verify_s"] - start["verify_s"], 1e-3),
        "under_256_MiB": all(r["peak_rss_MiB"] < 256 for r in rows),
        "no_crash": all(r["rc"] in (0, 1) for r in rows),
    }
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    print(f"bodycam-sync verify on hostile file buckets (custody cases best of {runs}; default --max-memory 256)")
    print(f"{'case':<34} {'bucket':>9} {'exit':>4} {'verify':>8} {'peak RSS':>9}  findings")
    for r in rows:
        found = ", ".join(f"{n} {p}" for p, n in sorted(r["problems"].items())) or "none"
        print(f"{r['case']:<34} {r['bucket_MiB']:>5.0f} MiB {r['rc']:>4} {r['verify_s']:>7.2f}s "
              f"{r['peak_rss_MiB']:>5.1f} MiB  {found}")  # fmt: skip
    print(
        f"custody 10x larger -> verify time x{summary['custody_time_ratio_100k_to_10k']:.1f}, "
        f"x{summary['custody_time_ratio_net_of_start_up']:.1f} net of start-up; "
        f"every case under 256 MiB: {'yes' if summary['under_256_MiB'] else 'NO'}; "
        f"no crash: {'yes' if summary['no_crash'] else 'NO'}"
    )


def _launch(cmd: list[str], work: Path, name: str) -> dict[str, Any]:
    """``cmd`` under the launcher: exit code, wall time, peak RSS (KiB) of the command alone."""
    import subprocess

    out, err = work / f"{name}.out", work / f"{name}.err"
    launched = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, str(out), str(err), *cmd], capture_output=True, text=True, check=True
    )
    result: dict[str, Any] = json.loads(launched.stdout)
    result["out"], result["err"] = out, err
    return result


def _cpu_children() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _cpu_of(pid: int) -> float:
    """User + system CPU seconds a process (SeaweedFS) has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rclone_env(weed: SeaweedFS) -> dict[str, str] | None:
    """An ``sw:`` rclone remote on this SeaweedFS (Debian ``rclone``), None when rclone is not installed."""
    if shutil.which("rclone") is None:
        return None
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}  # plain http on loopback
    return env | {
        "RCLONE_CONFIG": str(weed.workdir / "no-rclone.conf"), "RCLONE_CONFIG_SW_TYPE": "s3",
        "RCLONE_CONFIG_SW_PROVIDER": "Other", "RCLONE_CONFIG_SW_ENDPOINT": weed.endpoint_url,
        "RCLONE_CONFIG_SW_ACCESS_KEY_ID": weed.access_key, "RCLONE_CONFIG_SW_SECRET_ACCESS_KEY": weed.secret_key,
        "RCLONE_CONFIG_SW_REGION": "us-east-1",
    }  # fmt: skip


class _Uploader:
    """Puts each built dock's staged recording objects with ``rclone copy`` while the next docks are built
    (a Go client: about 1 ms of CPU per small PUT, against about 3 ms for a boto3 put_object)."""

    def __init__(self, env: dict[str, str], stage: Path, dest: str) -> None:
        import queue
        import threading

        self.env, self.stage, self.dest = env, stage, dest
        self.todo: queue.Queue[str | None] = queue.Queue()
        self.failed: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        import subprocess

        while (dock := self.todo.get()) is not None:
            cmd = ["rclone", "copy", "-q", "--s3-no-check-bucket", "--no-check-dest", "--transfers", "16",
                   "--checkers", "16", str(self.stage / dock), f"{self.dest}/{dock}"]  # fmt: skip
            proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True)
            if proc.returncode != 0:
                self.failed.append(f"{dock}: {proc.stderr.strip()[-500:]}")

    def finish(self) -> None:
        self.todo.put(None)
        self.thread.join()
        if self.failed:
            raise SystemExit("rclone copy failed: " + "; ".join(self.failed[:3]))


def fleet_bucket(weed: SeaweedFS, cache: Path, docks: int, per_dock: int, size: int) -> dict[str, Any]:
    """The bucket of ``docks`` docks, built once into the cache (SeaweedFS data is kept there).

    Each dock is built by tests/fleet.py through the library (its own key, journal, custody; real seal and
    publish of the manifest, signature, custody, sidecar and log), its recording objects written to
    ``objects/<key>`` and put by ``rclone copy`` (:class:`_Uploader`): the same bytes under the same keys.
    The local files are what ``sha256sum`` hashes."""
    from tests.fleet import build_fleet

    name = f"force-{docks}x{per_dock}-{size}"  # ("fleet-...": objects put one by one, kept flat)
    home = cache / name
    done = home / "fleet.json"
    if done.exists():
        return dict(json.loads(done.read_text()))
    env = _rclone_env(weed)
    if env is None:
        raise SystemExit("--fleet needs rclone (Debian package 'rclone') to put the objects")
    shutil.rmtree(home, ignore_errors=True)
    stage = home / "objects"
    stage.mkdir(parents=True)
    with contextlib.suppress(Exception):  # a bucket left by a build that was cut short
        weed.make_bucket(name)
    bucket = open_bucket(f"s3://{name}/force", weed.endpoint_url)
    uploader = _Uploader(env, stage, f"sw:{name}/force")
    started = time.perf_counter()

    def progress(n: int) -> None:
        uploader.todo.put(f"dock-{n - 1:03d}")
        if n % 10 == 0 or n == docks:
            print(f"  {name}: {n}/{docks} docks built ({time.perf_counter() - started:.0f} s)", file=sys.stderr)

    fleet = build_fleet(home / "docks", bucket, docks, per_dock, size, stage=stage, on_dock=progress)
    uploader.finish()
    bucket.close()
    info = {"name": name, "url": f"s3://{name}/force", "allowed_signers": str(fleet.allowed_signers),
            "identity": fleet.identity, "objects": fleet.objects, "recording_bytes": fleet.recording_bytes,
            "object_size": size, "build_s": time.perf_counter() - started, "bytes_dir": str(stage)}  # fmt: skip
    print(f"  {name}: built and put in {info['build_s']:.0f} s", file=sys.stderr)
    done.write_text(json.dumps(info))
    return info


def _file_list(directory: Path, work: Path) -> Path:
    """Every recording object's file under ``directory``, one path a line (sorted, as a listing is)."""
    files = work / "files.list"
    paths = sorted(str(Path(root) / f) for root, _, names in os.walk(directory) for f in names)
    files.write_text("".join(p + "\n" for p in paths))
    return files


def sha256sum_over(directory: Path, work: Path) -> dict[str, Any]:
    """Stock ``sha256sum`` over every file of ``directory`` (the recording bytes), as an auditor would run it
    on a local copy: wall and CPU time (page cache warmed by a first pass)."""
    import subprocess

    cmd = ["sh", "-c", f"xargs -d '\\n' sha256sum < {_file_list(directory, work)} > /dev/null"]
    subprocess.run(cmd, check=True)  # warm the page cache: the timed pass reads memory, as verify's server does
    cpu0, started = _cpu_children(), time.perf_counter()
    subprocess.run(cmd, check=True)
    return {"wall_s": time.perf_counter() - started, "cpu_s": _cpu_children() - cpu0}


def rclone_hashsum(weed: SeaweedFS, info: dict[str, Any], work: Path) -> dict[str, Any] | None:
    """A peer doing the same GETs and SHA-256s from the same SeaweedFS: ``rclone hashsum sha256 --download``
    over the recording objects (16 at once); its wall and CPU time, SeaweedFS's CPU meanwhile, and whether
    it found the hashes the manifests sign (its output, against the SHA-256 of the local files)."""
    import subprocess

    env = _rclone_env(weed)
    if env is None:
        return None
    assert weed.process is not None
    cmd = ["rclone", "hashsum", "sha256", "--download", "--transfers", "16", "--checkers", "16",
           "--include", "*/recordings/**", f"sw:{info['name']}/force"]  # fmt: skip
    cpu0, server0, started = _cpu_children(), _cpu_of(weed.process.pid), time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        print(f"note: rclone hashsum failed, left out: {proc.stderr.strip()[-500:]}", file=sys.stderr)
        return None
    return {"wall_s": wall, "cpu_s": _cpu_children() - cpu0, "server_cpu_s": _cpu_of(weed.process.pid) - server0,
            "objects": len(proc.stdout.splitlines())}  # fmt: skip


def measure_fleet(
    weed: SeaweedFS, info: dict[str, Any], work: Path, label: str, *, rclone: bool = True
) -> dict[str, Any]:
    """verify (as users run it, under the launcher), then sha256sum and (``rclone``) rclone over the same
    bytes."""
    assert weed.process is not None
    cmd = [CLI, "verify", "--bucket", info["url"], "--endpoint-url", weed.endpoint_url,
           "--allowed-signers", info["allowed_signers"], "--json"]  # fmt: skip
    cpu0, server0 = _cpu_children(), _cpu_of(weed.process.pid)
    run = _launch(cmd, work, label.replace(" ", "-"))
    verify_cpu, server_cpu = _cpu_children() - cpu0, _cpu_of(weed.process.pid) - server0
    report = json.loads(run["out"].read_text() or "{}")
    if run["rc"] != 0 or not report.get("verified"):
        raise SystemExit(f"verify of {info['url']} failed (exit {run['rc']}): {run['err'].read_text()[-2000:]}")
    n = sum(b["recordings"] for b in report["batches"])
    size = info["recording_bytes"]
    stock = sha256sum_over(Path(info["bytes_dir"]), work)
    peer = rclone_hashsum(weed, info, work) if rclone else None
    row = {
        "case": label, "docks": len({b["dock"] for b in report["batches"]}), "recordings": n,
        "object_bytes": info.get("object_size"), "objects_listed": report["objects_seen"], "recording_bytes": size,
        "build_s": info["build_s"], "verify_s": run["wall_s"], "verify_cpu_s": verify_cpu,
        "verify_cpu_ms_per_object": verify_cpu / n * 1e3, "server_cpu_ms_per_object": server_cpu / n * 1e3,
        "peak_rss_MiB": run["ru_maxrss_kib"] / 1024, "objects_per_s": n / run["wall_s"],
        "MB_per_s": size / run["wall_s"] / 1e6, "us_per_object": run["wall_s"] / n * 1e6,
        "sha256sum_s": stock["wall_s"], "sha256sum_cpu_s": stock["cpu_s"],
        "sha256sum_objects_per_s": n / stock["wall_s"], "sha256sum_MB_per_s": size / stock["wall_s"] / 1e6,
    }  # fmt: skip
    if peer is not None:
        row |= {
            "rclone_s": peer["wall_s"], "rclone_cpu_s": peer["cpu_s"], "rclone_objects": peer["objects"],
            "rclone_cpu_ms_per_object": peer["cpu_s"] / n * 1e3,
            "rclone_server_cpu_ms_per_object": peer["server_cpu_s"] / n * 1e3,
            "rclone_objects_per_s": n / peer["wall_s"], "rclone_MB_per_s": size / peer["wall_s"] / 1e6,
        }  # fmt: skip
    return row


def main_fleet(args: argparse.Namespace) -> None:
    sizes = sorted({int(n) for n in args.fleet.split(",")})
    cases = [(f"{d} docks", d, args.per_dock, args.fleet_size_kib * KiB) for d in sizes]
    if args.large:
        docks, per, mib = (int(x) for x in args.large.lower().split("x"))
        cases.append((f"{docks} docks x {per} of {mib} MiB", docks, per, mib * MiB))
    cache: Path = args.cache
    cache.mkdir(parents=True, exist_ok=True)
    weed = SeaweedFS(cache / "seaweedfs")
    ports = cache / "seaweedfs-ports.json"
    if ports.exists():  # a cached SeaweedFS comes back on its own ports and data
        weed.ports = json.loads(ports.read_text())
    weed.start()
    ports.write_text(json.dumps(weed.ports))
    rows: list[dict[str, Any]] = []
    load = os.getloadavg()
    try:
        os.environ.update(weed.env())
        with tempfile.TemporaryDirectory(prefix="bodycam-bench-fleet-") as tmp:
            work = Path(tmp)
            for label, docks, per_dock, size in cases:
                info = fleet_bucket(weed, cache, docks, per_dock, size)
                row = measure_fleet(weed, info, work, label)
                if args.sequential and docks == sizes[0] and size == args.fleet_size_kib * KiB:
                    row["sequential_s"] = _sequential(info, weed.endpoint_url)
                rows.append(row)
    finally:
        weed.stop()
    small = [r for r in rows if r["object_bytes"] == args.fleet_size_kib * KiB]
    summary = {
        "rows": rows,
        "load_before": load,
        "load_after": os.getloadavg(),
        "cpu_per_object_ratio_largest_to_smallest": small[-1]["verify_cpu_ms_per_object"]
        / small[0]["verify_cpu_ms_per_object"],
    }
    (cache / "last-run.json").write_text(json.dumps(summary, indent=2))
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(f"bodycam-sync verify of a force in SeaweedFS (no decryption; recordings read {READ_WORKERS} at once); "
          f"sha256sum over the same bytes as local files and rclone hashsum --download of the same objects, same run; "
          f"load {load[0]:.1f} before, {summary['load_after'][0]:.1f} after")  # fmt: skip
    print(f"{'case':<28} {'objects':>7} {'verify':>7} {'obj/s':>6} {'MB/s':>6} {'CPU':>6} {'ms/obj':>6} "
          f"{'weed':>5} {'RSS':>7} | {'sha256sum':>9} {'obj/s':>6} {'MB/s':>6} {'CPU':>6} | {'rclone':>7} {'obj/s':>6} "
          f"{'MB/s':>6} {'ms/obj':>6} {'weed':>5}")  # fmt: skip
    for r in rows:
        peer = (f"{r['rclone_s']:>6.1f}s {r['rclone_objects_per_s']:>6.0f} {r['rclone_MB_per_s']:>6.1f} "
                f"{r['rclone_cpu_ms_per_object']:>6.2f} {r['rclone_server_cpu_ms_per_object']:>5.2f}"
                if "rclone_s" in r else "(no rclone)")  # fmt: skip
        print(f"{r['case']:<28} {r['recordings']:>7} {r['verify_s']:>6.1f}s {r['objects_per_s']:>6.0f} "
              f"{r['MB_per_s']:>6.1f} {r['verify_cpu_s']:>5.1f}s {r['verify_cpu_ms_per_object']:>6.2f} "
              f"{r['server_cpu_ms_per_object']:>5.2f} {r['peak_rss_MiB']:>3.0f} MiB | {r['sha256sum_s']:>8.1f}s "
              f"{r['sha256sum_objects_per_s']:>6.0f} {r['sha256sum_MB_per_s']:>6.1f} {r['sha256sum_cpu_s']:>5.1f}s | "
              f"{peer}")  # fmt: skip
    print(
        "ms/obj: CPU per recording of verify (its own process) or rclone; weed: SeaweedFS's CPU per recording meanwhile"
    )
    print(
        f"verify CPU per object, {small[-1]['docks']} docks vs {small[0]['docks']}: "
        f"x{summary['cpu_per_object_ratio_largest_to_smallest']:.2f} (1.00 = linear)"
    )
    for r in rows:
        print(f"{r['case']}: verify hashes at {r['objects_per_s'] / r['sha256sum_objects_per_s']:.2f}x "
              f"sha256sum's rate over the same bytes (wall); its CPU is {r['verify_cpu_s'] / r['sha256sum_cpu_s']:.1f}x "
              f"sha256sum's, {(r['verify_cpu_s'] + r['server_cpu_ms_per_object'] * r['recordings'] / 1e3) / r['sha256sum_cpu_s']:.1f}x "
              "with SeaweedFS's" + (f"; {r['sequential_s']:.1f} s one object at a time (in-process)"
              if "sequential_s" in r else ""))  # fmt: skip


#: --sweep's default sizes (KiB) and the bytes each size's bucket holds (its object count: these bytes over
#: the size, within SWEEP_MIN_OBJECTS..SWEEP_MAX_OBJECTS), so that the run stays within minutes
SWEEP_SIZES_KIB = "4,64,256,1024,4096,32768"
SWEEP_BYTES = 768 * MiB
SWEEP_MIN_OBJECTS, SWEEP_MAX_OBJECTS = 24, 2000


def sweep_cases(sizes_kib: str, total: int) -> list[tuple[int, int]]:
    """(object size in bytes, objects) for each size of ``sizes_kib``: about ``total`` bytes each."""
    cases = []
    for kib in sorted({int(n) for n in sizes_kib.split(",")}):
        size = kib * KiB
        cases.append((size, max(SWEEP_MIN_OBJECTS, min(SWEEP_MAX_OBJECTS, total // size))))
    return cases


def crossover(points: list[tuple[int, float]]) -> dict[str, Any]:
    """Where verify's rate over sha256sum's (``(size, ratio)`` in size order) first reaches 1: the sizes on
    either side and the size interpolated on log-log axes between them (None when no size or every size
    reaches it: ``below`` or ``above`` the sizes swept)."""
    import itertools
    import math

    for (s0, r0), (s1, r1) in itertools.pairwise(points):
        if r0 < 1 <= r1:
            t = (0 - math.log(r0)) / (math.log(r1) - math.log(r0))
            at = math.exp(math.log(s0) + t * (math.log(s1) - math.log(s0)))
            return {"below": s0, "above": s1, "size": at}
    if points and points[0][1] >= 1:
        return {"below": None, "above": points[0][0], "size": None}
    return {"below": points[-1][0] if points else None, "above": None, "size": None}


def main_sweep(args: argparse.Namespace) -> None:
    """verify and sha256sum over the same bytes, object size by object size, ``--runs`` rounds (each
    round measures every size once, so each ratio compares two tools in the same minute): the object size
    at which verify's MB/s reaches sha256sum's, in each round."""
    cases = sweep_cases(args.sweep, args.sweep_mib * MiB)
    cache: Path = args.cache
    cache.mkdir(parents=True, exist_ok=True)
    weed = SeaweedFS(cache / "seaweedfs")
    ports = cache / "seaweedfs-ports.json"
    if ports.exists():
        weed.ports = json.loads(ports.read_text())
    weed.start()
    ports.write_text(json.dumps(weed.ports))
    rounds: list[list[dict[str, Any]]] = []
    load = os.getloadavg()
    uptime = _uptime()
    try:
        os.environ.update(weed.env())
        infos = [fleet_bucket(weed, cache, 1, count, size) for size, count in cases]
        with tempfile.TemporaryDirectory(prefix="bodycam-bench-sweep-") as tmp:
            for index in range(args.runs):
                rows = []
                for info, (size, count) in zip(infos, cases, strict=True):
                    row = measure_fleet(weed, info, Path(tmp), f"sweep {size // KiB} KiB", rclone=False)
                    row["ratio"] = row["MB_per_s"] / row["sha256sum_MB_per_s"]
                    row["load"] = os.getloadavg()[0]
                    rows.append(row)
                    print(f"  round {index + 1}: {size // KiB:>6} KiB x {count:>4}: verify {row['MB_per_s']:7.1f} MB/s, "
                          f"sha256sum {row['sha256sum_MB_per_s']:7.1f} MB/s, x{row['ratio']:.3f}", file=sys.stderr)  # fmt: skip
                rounds.append(rows)
    finally:
        weed.stop()
    found = [crossover([(r["object_bytes"], r["ratio"]) for r in rows]) for rows in rounds]
    summary = {"uptime_before": uptime, "uptime_after": _uptime(), "load_before": load,
               "load_after": os.getloadavg(), "rounds": rounds, "crossover": found}  # fmt: skip
    (cache / "last-sweep.json").write_text(json.dumps(summary, indent=2))
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(f"bodycam-sync verify (no decryption; recordings read {READ_WORKERS} at once) against sha256sum over the "
          f"same bytes as local files (page cache warm), by object size; {args.runs} rounds, each size once a round")  # fmt: skip
    print(f"before: {uptime}")
    print(f"{'size':>9} {'objects':>7} | {'verify MB/s':>24} | {'sha256sum MB/s':>24} | {'verify/sha256sum':>24} | "
          f"{'verify ms/obj':>13} {'weed ms/obj':>11}")  # fmt: skip
    for i, (size, count) in enumerate(cases):
        rows = [r[i] for r in rounds]

        def span(key: str, fmt: str, rows: list[dict[str, Any]] = rows) -> str:
            return " ".join(format(r[key], fmt) for r in rows)

        print(f"{_size(size):>9} {count:>7} | {span('MB_per_s', '7.1f'):>24} | {span('sha256sum_MB_per_s', '7.1f'):>24} | "
              f"{span('ratio', '7.3f'):>24} | {min(r['verify_cpu_ms_per_object'] for r in rows):>5.2f}-"
              f"{max(r['verify_cpu_ms_per_object'] for r in rows):<5.2f} "
              f"{min(r['server_cpu_ms_per_object'] for r in rows):>5.2f}-{max(r['server_cpu_ms_per_object'] for r in rows):<5.2f}")  # fmt: skip
    for index, c in enumerate(found):
        if c["size"] is not None:
            where = f"between {_size(c['below'])} and {_size(c['above'])}, about {_size(int(c['size']))} (log-log)"
        elif c["above"] is not None:
            where = f"at or below {_size(c['above'])}, the smallest size swept"
        else:
            where = "not within the sizes swept"
        print(f"round {index + 1}: verify reaches sha256sum's MB/s {where}")
    print(f"after: {summary['uptime_after']}")


def _size(n: int) -> str:
    return f"{n // MiB} MiB" if n >= MiB and n % MiB == 0 else f"{n / KiB:.0f} KiB"


def _uptime() -> str:
    """``uptime``'s line (the load the figures were measured under)."""
    import subprocess

    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        load = os.getloadavg()
        return f"load average: {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}"


def _sequential(info: dict[str, Any], endpoint: str) -> float:
    """The same verify in this process with one reader (``Verifier(workers=1)``): wall seconds."""
    from bodycam.agent.audit.verify import Verifier
    from bodycam.agent.formats.sshsig import parse_allowed_signers

    signers = parse_allowed_signers(Path(info["allowed_signers"]).read_text())
    bucket = open_bucket(info["url"], endpoint, read_only=True)
    started = time.perf_counter()
    report = Verifier(bucket, signers, workers=1).run()
    assert report.ok, report.findings[:3]
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recordings", type=int, default=1000)
    parser.add_argument("--size-kib", type=int, default=16, help="recording size in the small bucket")
    parser.add_argument("--factor", type=int, default=10, help="how much larger the large bucket's objects are")
    parser.add_argument("--runs", type=int, default=3, help="timed verify runs per bucket (best reported)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--hostile", action="store_true", help="measure the hostile buckets instead")
    parser.add_argument("--fleet", default=None, help="measure fleets of these numbers of docks, e.g. 10,30,100")
    parser.add_argument("--per-dock", type=int, default=1000, help="recordings per dock in --fleet")
    parser.add_argument("--fleet-size-kib", type=int, default=4, help="recording size in --fleet")
    parser.add_argument("--large", default=None, help="also a fleet of large objects, DOCKSxRECORDINGSxMiB (10x20x32)")
    parser.add_argument(
        "--sweep",
        nargs="?",
        const=SWEEP_SIZES_KIB,
        default=None,
        help=f"object sizes in KiB to find where verify reaches sha256sum's MB/s ({SWEEP_SIZES_KIB})",
    )
    parser.add_argument("--sweep-mib", type=int, default=SWEEP_BYTES // MiB, help="MiB each --sweep size holds")
    parser.add_argument("--sequential", action="store_true", help="also the smallest fleet read one at a time")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "bodycam-bench-force",
                        help="where --fleet keeps generated buckets between runs")  # fmt: skip
    args = parser.parse_args()
    if args.sweep:
        main_sweep(args)
        return
    if args.fleet:
        main_fleet(args)
        return
    if args.hostile:
        main_hostile(args.runs, args.json)
        return

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bodycam-bench-verify-") as tmp:
        work = Path(tmp)
        weed = SeaweedFS(work / "seaweedfs")
        weed.start()
        try:
            os.environ.update(weed.env())  # boto3's standard chain, for this process and the CLI
            for label, size in (("small", args.size_kib * KiB), ("large", args.size_kib * KiB * args.factor)):
                name = weed.make_bucket(f"bench-verify-{label}")
                dock = make_dock(work / label, f"s3://{name}/evidence", weed.endpoint_url)
                built = build(dock, args.recordings, size)
                run_verify(dock, work, f"{label}-check")  # must pass; warms SeaweedFS and the page cache
                runs = [run_verify(dock, work, f"{label}-{i}") for i in range(args.runs)]
                best = min(runs, key=lambda r: r["wall_s"])
                rows.append(
                    {
                        "bucket": label,
                        "recordings": best["recordings"],
                        "objects": best["objects"],
                        "object_bytes": size,
                        "bucket_bytes": size * args.recordings,
                        "build_s": built["build_s"],
                        "verify_s": best["wall_s"],
                        "verify_s_all": [r["wall_s"] for r in runs],
                        "objects_per_s": best["objects"] / best["wall_s"],
                        "MB_per_s": size * args.recordings / best["wall_s"] / 1e6,
                        "peak_rss_MiB": max(r["ru_maxrss_kib"] for r in runs) / 1024,
                    }
                )
        finally:
            weed.stop()
    small, large = rows
    summary = {
        "rows": rows,
        "rss_ratio_large_to_small": large["peak_rss_MiB"] / small["peak_rss_MiB"],
        "size_ratio_large_to_small": large["object_bytes"] / small["object_bytes"],
        "under_a_minute": all(r["verify_s"] < 60 for r in rows),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(f"bodycam-sync verify (no decryption) against SeaweedFS, best of {args.runs}")
    print(f"{'bucket':<7} {'recordings':>10} {'objects':>8} {'object':>10} {'verify':>8} {'objects/s':>10} "
          f"{'MB/s':>7} {'peak RSS':>9}")  # fmt: skip
    for r in rows:
        print(f"{r['bucket']:<7} {r['recordings']:>10} {r['objects']:>8} {r['object_bytes'] / KiB:>7.0f} KiB "
              f"{r['verify_s']:>7.2f}s {r['objects_per_s']:>10.0f} {r['MB_per_s']:>7.1f} "
              f"{r['peak_rss_MiB']:>5.1f} MiB")  # fmt: skip
    print(
        f"objects {summary['size_ratio_large_to_small']:.0f}x larger -> peak RSS x{summary['rss_ratio_large_to_small']:.2f}; "
        f"every verify under a minute: {'yes' if summary['under_a_minute'] else 'NO'}"
    )


if __name__ == "__main__":
    main()
