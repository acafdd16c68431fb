"""Where SeaweedFS's CPU goes while each tool uploads the same bytes (issue 14, the stock-chain peer).

On these 2 shared cores SeaweedFS spends 10-13 CPU s per GiB stored, three to four times the agent's own
CPU, so an ingest's wall time is about (agent + SeaweedFS) CPU / 2 cores on an idle box and SeaweedFS's
share of the cores under load. This bench asks whether the agent's requests make SeaweedFS do more work
than the stock chain's upload step does: for each tool, in turn, a fresh SeaweedFS started exactly as
tests/s3server.py starts it for every test and bench (plus ``-cpuprofile``), a warm-up of 4 parts (its
first volumes), then the tool:

  agent     `bodycam-sync ingest --once` of one --size-mib recording from `sim serve` over USB/IP
            (a dock as shipped: default part size and upload workers)
  aws       `aws s3 cp` of a file of the same ciphertext size (the stock chain's last step; its defaults:
            8 MiB parts, 10 in flight)
  stage     the agent's own S3Bucket.upload_part from memory, parts and parts in flight as an ingest cuts
            and keeps them (no camera, no encryption: the upload alone)

For each: wall seconds, the tool's own CPU s/GiB, SeaweedFS's CPU s/GiB while the tool ran (/proc), the
camera's for the agent, and (with Go's `go tool pprof`, Debian golang-go) SeaweedFS's CPU split by what
it did: MD5, CRC, the kernel's writes to the volume files and its socket receives and sends, clearing
fresh buffers, copies, the garbage collector, the rest. The profile covers the server's whole life (start,
warm-up and the tool: about 0.4 CPU s more than the /proc figure). Tools alternate, --runs times.

    .venv/bin/python bench/seaweedfs.py [--size-mib 1024] [--runs 3] [--tools agent,aws,stage] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ingest import SERIAL, CpuMeter, _dock, _run, _sim, byte_compile, cli_ingest, upload_stage  # noqa: E402
from bodycam.agent.formats.agecrypt import Encryptor  # noqa: E402
from bodycam.agent.pipeline.ingest import PARTS_IN_FLIGHT  # noqa: E402
from bodycam.agent.pipeline.pull import part_size_for  # noqa: E402
from tests.dock import window  # noqa: E402
from tests.s3server import SeaweedFS  # noqa: E402

MiB = 1024 * 1024
GiB = 1024 * MiB
TOOLS = ("agent", "aws", "stage")

#: what SeaweedFS's CPU went to, from `go tool pprof -top`: (label, "flat" or "cum", function names); flat
#: counts a function's own samples, cum those under it (a system call's kernel time is its wrapper's flat
#: time, so the kernel's work is told apart by the Go function that made the call)
SPLIT: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("MD5", "flat", ("crypto/md5.block",)),
    ("CRC-32/32C", "flat", ("hash/crc32.castagnoliSSE42Triple", "hash/crc32.castagnoliSSE42", "hash/crc32.ieeeCLMUL")),
    ("kernel: writes to the volume files", "cum", ("internal/poll.(*FD).Pwrite",)),
    ("kernel: socket receives", "cum", ("net.(*netFD).Read",)),
    ("kernel: socket sends", "cum", ("net.(*netFD).Write", "net.(*netFD).writeBuffers")),
    ("clearing fresh buffers", "flat", ("runtime.memclrNoHeapPointers",)),
    ("copies", "flat", ("runtime.memmove",)),
    ("garbage collector", "cum", ("runtime.gcBgMarkWorker",)),
)
_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "min": 60.0,
    "mins": 60.0,
    "h": 3600.0,
    "hrs": 3600.0,
}
_ROW = re.compile(r"^\s*([\d.]+)([a-zµ]*)\s+[\d.]+%\s+[\d.]+%\s+([\d.]+)([a-zµ]*)\s+[\d.]+%\s+(\S.*?)\s*$")
_TOTAL = re.compile(r"Total samples = ([\d.]+)([a-zµ]*)")


def _seconds(value: str, unit: str) -> float:
    if unit not in _UNITS and unit != "":
        raise ValueError(f"unknown pprof unit {unit!r}")
    return float(value) * _UNITS.get(unit, 1.0)


def pprof_split(top: str) -> dict[str, float]:
    """CPU seconds per :data:`SPLIT` label, ``total`` and ``rest`` (total less the labels), from the text of
    ``go tool pprof -top -nodecount=N``; a function missing from the table counts 0."""
    total_match = _TOTAL.search(top)
    if total_match is None:
        raise ValueError("not a pprof -top listing: no 'Total samples' line")
    flat: dict[str, float] = {}
    cum: dict[str, float] = {}
    for line in top.splitlines():
        row = _ROW.match(line)
        if row:
            name = row[5].removesuffix(" (inline)")
            flat[name] = flat.get(name, 0.0) + _seconds(row[1], row[2])
            cum[name] = max(cum.get(name, 0.0), _seconds(row[3], row[4]))
    split = {"total": _seconds(total_match[1], total_match[2])}
    for label, kind, names in SPLIT:
        table = flat if kind == "flat" else cum
        split[label] = sum(table.get(name, 0.0) for name in names)
    split["rest"] = split["total"] - sum(split[label] for label, _, _ in SPLIT)
    return split


class ProfiledSeaweedFS(SeaweedFS):
    """tests/s3server.py's SeaweedFS, flags unchanged, writing a Go CPU profile when stopped gracefully."""

    def __init__(self, workdir: Path, profile: Path | None) -> None:
        super().__init__(workdir)
        self.profile = profile

    def _command(self) -> list[str]:
        extra = [f"-cpuprofile={self.profile}"] if self.profile is not None else []
        return [*super()._command(), *extra]


def one(tool: str, size: int, work: Path, profile: bool) -> dict[str, Any]:
    """``tool`` into a fresh SeaweedFS: seconds, CPU seconds (the tool's, SeaweedFS's, the camera's) and,
    with ``profile``, SeaweedFS's CPU split (:func:`pprof_split`)."""
    work.mkdir(parents=True)
    go = shutil.which("go") if profile else None
    prof = work / "weed.pprof" if go else None
    server = ProfiledSeaweedFS(work / "seaweedfs", prof)
    result: dict[str, Any] = {"tool": tool, "load": os.getloadavg()[0]}
    try:
        server.start()
        assert server.process is not None
        env = {**{k: v for k, v in os.environ.items() if k != "AWS_PROFILE"}, **server.env()}
        os.environ.update(server.env())  # the agent's S3Bucket in this process (stage) reads the same chain
        bucket = server.make_bucket("bench-seaweedfs")
        win = window()
        sim = _sim(SERIAL, size, win, work) if tool == "agent" else None
        dock = _dock(work / "dock", f"s3://{bucket}/ingest", server.endpoint_url, SERIAL, win)
        cfg = dock.config
        encrypted = Encryptor([cfg.recipients[0].age]).encrypted_size(size)
        part_size = part_size_for(encrypted, cfg.part_size)
        in_flight = min(cfg.upload_workers, PARTS_IN_FLIGHT)
        upload_stage(server, bucket, 4 * part_size, part_size, in_flight)  # its first volumes: not timed
        pids = {"seaweedfs": server.process.pid}
        if sim is not None:
            try:
                run = cli_ingest(dock, sim.address, env, work, others={**pids, "camera": sim.proc.pid})
            finally:
                sim.stop()
            result |= {
                "s": run["total_s"],
                "cpu_s": run["cpu_s"],
                **{f"{k}_cpu_s": v for k, v in run["others_cpu_s"].items()},
            }
        elif tool == "aws":
            aws = shutil.which("aws")
            if aws is None:
                raise RuntimeError("aws is not installed: .venv/bin/pip install awscli")
            blob = work / "recording.age"
            with open(blob, "wb") as out:  # the ciphertext's size; SeaweedFS neither compresses nor dedupes
                for offset in range(0, encrypted, MiB):
                    out.write(os.urandom(min(MiB, encrypted - offset)))
            cmd = [aws, "s3", "cp", "--only-show-errors", "--endpoint-url", server.endpoint_url, str(blob),
                   f"s3://{bucket}/stock/recording.age"]  # fmt: skip
            meter = CpuMeter(pids)
            wall = _run(cmd, env)
            used = meter.read()
            blob.unlink()
            result |= {"s": wall, "cpu_s": used["tools"], "seaweedfs_cpu_s": used["seaweedfs"]}
        else:
            meter = CpuMeter(pids)
            started = time.perf_counter()
            upload_stage(server, bucket, encrypted, part_size, in_flight)
            wall = time.perf_counter() - started
            used = meter.read()
            result |= {"s": wall, "cpu_s": used["tools"], "seaweedfs_cpu_s": used["seaweedfs"]}
    finally:
        server.stop(graceful=True)  # SIGTERM: weed writes its profile on the way out
        shutil.rmtree(server.data_dir, ignore_errors=True)
    if go is not None and prof is not None and prof.exists():
        top = subprocess.run(
            [go, "tool", "pprof", "-top", "-nodecount=100000", str(server.binary), str(prof)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        result["seaweedfs_split_s"] = pprof_split(top)
    return result


def figures(runs: list[dict[str, Any]], size: int) -> dict[str, Any]:
    """Per tool: the median of its runs' CPU s/GiB (own, SeaweedFS's, the camera's), seconds and split."""
    gib = size / GiB
    out: dict[str, Any] = {}
    for tool in dict.fromkeys(r["tool"] for r in runs):
        mine = [r for r in runs if r["tool"] == tool]
        fig: dict[str, Any] = {
            "runs": len(mine),
            "s": [round(r["s"], 2) for r in mine],
            "own_cpu_s_per_GiB": median(r["cpu_s"] for r in mine) / gib,
            "seaweedfs_cpu_s_per_GiB": median(r["seaweedfs_cpu_s"] for r in mine) / gib,
            "seaweedfs_cpu_s_per_GiB_each": [round(r["seaweedfs_cpu_s"] / gib, 2) for r in mine],
        }
        if "camera_cpu_s" in mine[0]:
            fig["camera_cpu_s_per_GiB"] = median(r["camera_cpu_s"] for r in mine) / gib
        splits = [r["seaweedfs_split_s"] for r in mine if "seaweedfs_split_s" in r]
        if splits:
            fig["seaweedfs_split_s_per_GiB"] = {k: median(s[k] for s in splits) / gib for k in splits[0]}
        out[tool] = fig
    if "agent" in out and "aws" in out:
        out["seaweedfs_agent_over_aws"] = (
            out["agent"]["seaweedfs_cpu_s_per_GiB"] / out["aws"]["seaweedfs_cpu_s_per_GiB"]
        )
    return out


def print_table(f: dict[str, Any], size: int, load: tuple[float, float], runs: int) -> None:
    print(f"SeaweedFS's CPU per GiB stored, by the tool uploading ({size // MiB} MiB, {runs} runs each, medians; "
          f"load {load[0]:.1f} -> {load[1]:.1f})")  # fmt: skip
    tools = [t for t in TOOLS if t in f]
    print(f"{'':44}" + "".join(f"{t:>18}" for t in tools))
    rows: list[tuple[str, str, str | None]] = [
        ("wall s (each run)", "s", None),
        ("the tool's own CPU s/GiB", "own_cpu_s_per_GiB", None),
        ("the camera's CPU s/GiB", "camera_cpu_s_per_GiB", None),
        ("SeaweedFS CPU s/GiB (/proc, the tool's run)", "seaweedfs_cpu_s_per_GiB", None),
        ("  each run", "seaweedfs_cpu_s_per_GiB_each", None),
    ]
    labels = ["total", *(label for label, _, _ in SPLIT), "rest"]
    rows += [(f"  profile: {label}", "seaweedfs_split_s_per_GiB", label) for label in labels]
    for title, key, sub in rows:
        cells = []
        for t in tools:
            value = f[t].get(key)
            if sub is not None and isinstance(value, dict):
                value = value.get(sub)
            if value is None:
                cells.append(f"{'-':>18}")
            elif isinstance(value, list):
                cells.append(f"{'/'.join(f'{v:.1f}' for v in value):>18}")
            else:
                cells.append(f"{value:18.2f}")
        print(f"{title:44}" + "".join(cells))
    if "seaweedfs_agent_over_aws" in f:
        print(f"SeaweedFS's CPU per GiB under the agent / under aws s3 cp: {f['seaweedfs_agent_over_aws']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="bytes each tool uploads (default 1024)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each tool, alternating (default 3)")
    parser.add_argument("--tools", default=",".join(TOOLS), help=f"comma-separated, of {', '.join(TOOLS)}")
    parser.add_argument("--no-profile", action="store_true", help="no Go CPU profile of SeaweedFS")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch directory (default: a temporary one)")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = parser.parse_args()
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    if not tools or any(t not in TOOLS for t in tools):
        parser.error(f"--tools takes names from {', '.join(TOOLS)}")
    if args.runs < 1 or args.size_mib < 1:
        parser.error("--runs and --size-mib must be positive")
    byte_compile()
    size = args.size_mib * MiB
    load_before = os.getloadavg()[0]
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bodycam-bench-seaweedfs-", dir=args.workdir) as tmp:
        for i in range(args.runs):
            for tool in tools:
                runs.append(one(tool, size, Path(tmp) / f"{tool}-{i}", not args.no_profile))
    load = (load_before, os.getloadavg()[0])
    f = figures(runs, size)
    if args.json:
        print(json.dumps({"size_bytes": size, "loadavg_1m": load, "runs": runs, "figures": f}, indent=2))
    else:
        print_table(f, size, load, args.runs)


if __name__ == "__main__":
    main()
