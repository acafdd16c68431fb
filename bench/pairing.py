"""What mutual authentication adds to a docking, through the real Camera over USB/IP.

The camera runs in its own process (``bodycam-sync sim serve``), as on real hardware. Each sample is
one docking on a new USB/IP connection:
  baseline  import the device, HELLO, IDENTIFY, AUTH (the camera proves itself): what revision 1 does
  proof     the same, then secure_link on a paired camera: DOCK_CHALLENGE, the probe, DOCK_PROVE
  pairing   the same on an unpaired camera: DOCK_CHALLENGE, PAIR, DOCK_CHALLENGE, the probe, DOCK_PROVE
            (a vendor reset, outside the timing, unpairs the camera between pairing samples)
It reports the medians and the added milliseconds (target: under 50 ms).

    .venv/bin/python bench/pairing.py [--samples 20] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SERIAL = "BENCH-PAIR-1"


def _credentials() -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from bodycam.agent.pipeline.dockauth import DockCredentials
    from bodycam.drivers.protocol import dockauth as da

    authority, key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    now = int(time.time() * 1e6)
    cert = da.DockCertificate(
        1, now - 86_400_000_000, now + 30 * 86_400_000_000, key.public_key().public_bytes_raw(), "dock-bench"
    ).signed_by(authority)
    return DockCredentials(cert, key, authority.public_key().public_bytes_raw())


def _docking(address: str, then: Callable[[Any], None] | None) -> float:
    from bodycam.drivers import transport as transports
    from bodycam.drivers.device.camera import Camera

    start = time.perf_counter()
    (transport,) = transports.open_usbip(address)
    with Camera(transport) as cam:
        ident = cam.open()
        cam.authenticate(ident.device_key)
        if then is not None:
            then(cam)
        elapsed = time.perf_counter() - start
    return elapsed


def _unpair(address: str) -> None:
    from bodycam.drivers import transport as transports
    from bodycam.drivers.device.camera import Camera
    from bodycam.drivers.protocol import dockauth as da
    from bodycam.drivers.virtual.camera import sim_vendor_key

    (transport,) = transports.open_usbip(address)
    with Camera(transport) as cam:
        cam.open()
        state = cam.dock_challenge()
        cam.vendor_reset(sim_vendor_key().sign(da.vendor_reset_message(SERIAL, state.challenge)))


def run(samples: int) -> dict[str, Any]:
    from bodycam.agent.pipeline.dockauth import secure_link

    cli = str(Path(sys.executable).with_name("bodycam-sync"))
    proc = subprocess.Popen(
        [cli, "sim", "serve", "--transport", "usbip", "--serial", SERIAL, "--recordings", "3", "--training", "1"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        address = json.loads(proc.stdout.readline())["address"]
        creds = _credentials()
        events: list[str] = []

        def secure(cam: Any) -> None:
            secure_link(cam, creds, lambda event, **_kw: events.append(event))

        _docking(address, None)  # warm up imports and the server
        baseline, pairing, proof = [], [], []
        for _ in range(samples):
            baseline.append(_docking(address, None))
            pairing.append(_docking(address, secure))
            proof.append(_docking(address, secure))
            _unpair(address)
        assert events.count("paired") == samples and events.count("dock_proven") == 2 * samples, events
    finally:
        proc.terminate()
        proc.wait(10)
    med = {name: statistics.median(v) * 1000 for name, v in (("baseline", baseline), ("pairing", pairing),
                                                              ("proof", proof))}  # fmt: skip
    return {
        "samples": samples,
        "baseline_ms": round(med["baseline"], 2),
        "proof_ms": round(med["proof"], 2),
        "pairing_ms": round(med["pairing"], 2),
        "proof_adds_ms": round(med["proof"] - med["baseline"], 2),
        "pairing_adds_ms": round(med["pairing"] - med["baseline"], 2),
        "target_ms": 50,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.samples)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"docking over USB/IP, median of {result['samples']}: HELLO+IDENTIFY+AUTH {result['baseline_ms']} ms")
    print(
        f"  + dock proof (paired camera):   {result['proof_ms']} ms, adds {result['proof_adds_ms']} ms "
        f"(target < {result['target_ms']} ms)"
    )
    print(
        f"  + pairing (first docking):      {result['pairing_ms']} ms, adds {result['pairing_adds_ms']} ms "
        f"(target < {result['target_ms']} ms)"
    )


if __name__ == "__main__":
    main()
