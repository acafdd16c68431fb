"""Link throughput: bulk reads of one recording over USB/IP and over a pty, protocol vs raw bytes.

For each medium, in one run and on the same machine:
  protocol  Camera.iter_read() of a 256 MiB recording (frames of --chunk-kib, CRC-32C, sequence numbers)
  raw       the same transport moving the same number of bytes with no protocol at all
and the ratio protocol/raw (target >= 0.9). The camera side runs in its own process, as it would
on real hardware. The protocol run reads as the pull does, ``iter_read(..., lend=--lend)`` (views of
the camera's reused receive buffers, the pull's read-ahead + 1); ``--lend 0`` takes a copy of each
chunk instead (older code without ``lend`` reads the only way it can).

    .venv/bin/python bench/link.py [--size-mib 256] [--chunk-kib 1024] [--repeat 3] [--lend 5] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MiB = 1024 * 1024


class RawLink:
    """A ByteLink that streams ``total`` bytes of a fixed pattern once asked (no frames, no CRC)."""

    def __init__(self, total: int, chunk: int) -> None:
        import threading

        self.total = total
        self.chunk = chunk
        self.sent = 0
        self.block = hashlib.shake_256(b"raw").digest(4 * MiB)
        self.go = threading.Event()

    def reset(self) -> None:
        self.sent = 0

    def receive(self, data: bytes) -> None:
        self.sent = 0
        self.go.set()

    def transmit(self, max_bytes: int, timeout: float) -> bytes:
        if not self.go.wait(timeout) or self.sent >= self.total:
            time.sleep(min(timeout, 0.05))
            return b""
        n = min(max_bytes, self.chunk, self.total - self.sent)
        start = self.sent % (3 * MiB)
        self.sent += n
        if self.sent >= self.total:
            self.go.clear()
        return self.block[start : start + n]


def _model(chunk: int) -> Any:
    """The registry's model whose frames carry ``chunk`` bytes, so both runs move equal transfers."""
    from dataclasses import replace

    from bodycam.drivers.models import DEFAULT_MODEL

    return replace(DEFAULT_MODEL, max_read=chunk)


def serve(medium: str, kind: str, size: int, chunk: int, conn: Any) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bodycam.drivers.virtual.pty_device import PtyCameraServer
    from bodycam.drivers.virtual.server import SimSpec, build_camera
    from bodycam.drivers.virtual.usbip_device import UsbipCameraServer

    link: Any = (
        build_camera(SimSpec("BENCH-01", recordings=1, training=1, size=size))
        if kind == "protocol"
        else RawLink(size, chunk)
    )
    if kind == "protocol":
        link.content.sha256(next(iter(link.recordings.values())))  # precompute outside the timing
    if medium == "usbip":
        server: Any = UsbipCameraServer(link, vid=0x1209, pid=0xBC02, manufacturer="b", product="p", serial="BENCH-01")
        host, port = server.start()
        conn.send(f"{host}:{port}")
    else:
        tmp = tempfile.mkdtemp()
        server = PtyCameraServer(link, link_path=Path(tmp) / "cam")
        server.start()
        conn.send(str(server.link_path))
    conn.recv()  # wait for "stop"
    server.stop()


def measure(medium: str, kind: str, size: int, chunk: int, lend: int = 5) -> tuple[float, float]:
    """(MB/s, the dock process's CPU seconds per GiB) for one read of ``size`` bytes."""
    from bodycam.drivers import transport as transports
    from bodycam.drivers.device.camera import Camera
    from bodycam.drivers.virtual.camera import public_bytes, sim_device_key

    parent, child = mp.Pipe()
    proc = mp.get_context("spawn").Process(target=serve, args=(medium, kind, size, chunk, child), daemon=True)
    proc.start()
    address = parent.recv()
    try:
        transport = transports.open_usbip(address)[0] if medium == "usbip" else transports.open_serial(address)
        if kind == "protocol":
            cam = Camera(transport, timeout=10)
            cam.open()
            cam.authenticate(public_bytes(sim_device_key("BENCH-01")))
            rec = cam.recordings()[0]
            lends = {"lend": lend} if "lend" in inspect.signature(cam.iter_read).parameters else {}
            started = time.perf_counter()
            cpu = time.process_time()
            got = 0
            for data in cam.iter_read(rec, **lends):
                got += len(data)
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu
        else:
            transport.write(b"go")
            started = time.perf_counter()
            cpu = time.process_time()
            got = 0
            while got < size:
                got += len(transport.read_some(10))
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu
        transport.close()
        assert got == size, (got, size)
        return size / elapsed / 1e6, cpu / (size / 1024**3)
    finally:
        parent.send("stop")
        proc.join(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--chunk-kib", type=int, default=1024, help="bytes per frame / per raw transfer")
    parser.add_argument("--media", default="usbip,serial")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the best is kept")
    parser.add_argument("--lend", type=int, default=5, help="chunks lent by iter_read (the pull's: read-ahead + 1)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    size, chunk = args.size_mib * MiB, args.chunk_kib * 1024
    results: dict[str, dict[str, float]] = {}
    for medium in args.media.split(","):
        raws, protos = [], []
        for _ in range(args.repeat):  # alternate, and keep the best of each: the machine may be shared
            raws.append(measure(medium, "raw", size, chunk))
            protos.append(measure(medium, "protocol", size, chunk, args.lend))
        (raw, raw_cpu), (proto, proto_cpu) = max(raws), max(protos)
        results[medium] = {
            "protocol_MBps": round(proto, 1),
            "raw_MBps": round(raw, 1),
            "ratio": round(proto / raw, 3),
            "dock_cpu_s_per_GiB": {"protocol": round(proto_cpu, 3), "raw": round(raw_cpu, 3)},
        }
    if args.json:
        print(json.dumps({"size_bytes": size, "chunk_bytes": chunk, "results": results}, indent=2))
    else:
        print(f"bulk read of a {args.size_mib} MiB recording, {args.chunk_kib} KiB per frame or transfer")
        for medium, r in results.items():
            print(
                f"  {medium:7} protocol {r['protocol_MBps']:8.1f} MB/s   raw {r['raw_MBps']:8.1f} MB/s   ratio {r['ratio']:.2f} (target >= 0.9)"
            )
            cpu = r["dock_cpu_s_per_GiB"]
            print(f"          the dock's CPU per GiB read: protocol {cpu['protocol']:.3f} s, raw {cpu['raw']:.3f} s")


if __name__ == "__main__":
    main()
