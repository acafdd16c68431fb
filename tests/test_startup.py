"""What a command costs before it does any work (issue 14): the modules it imports, pinned without timing.

About 1 CPU s of every ``bodycam-sync`` run was interpreter start-up and imports (botocore's service model,
every command module, ...). These tests run the CLI's ``main`` in a fresh interpreter, as the console
script does, and look at ``sys.modules`` once it returns: a command loads what it uses and nothing else.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import click

from .dock import Dock, iso_window, make_dock, window
from .s3server import SeaweedFS
from .sims import SimProcess

MiB = 1024 * 1024
#: S3's client stack: loaded only once an S3 bucket is opened
S3_STACK = ("boto3", "botocore", "s3transfer", "urllib3", "jmespath", "dateutil")
#: what every command loads of bodycam.agent.cli: the group, the shared context, the error line and the
#: collector's start-up threshold
CLI_CORE = {
    "bodycam.agent.cli",
    "bodycam.agent.cli.main",
    "bodycam.agent.cli.common",
    "bodycam.agent.cli.logsetup",
    "bodycam.agent.cli.startup",
}

# Runs bodycam-sync's main() in-process, then writes the names of the loaded modules to argv[1].
_PROBE = """
import json, sys
out = sys.argv.pop(1)
sys.argv[0] = "bodycam-sync"
from bodycam.agent.cli import main
try:
    main()
except SystemExit as done:
    code = done.code
else:
    code = 0
with open(out, "w") as f:
    json.dump(sorted(sys.modules), f)
sys.exit(code)
"""


def run_cli(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """``bodycam-sync ARGS`` in a fresh interpreter: the finished process and the modules it had loaded."""
    out = tmp_path / "modules.json"
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, str(out), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ},
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc, json.loads(out.read_text())


def loaded(modules: list[str], *packages: str) -> list[str]:
    return [m for m in modules if m.split(".")[0] in packages]


def cli_modules(modules: list[str]) -> set[str]:
    """The command modules (bodycam.agent.cli.*) loaded, not counting what every command needs nor the
    shared rendering helpers."""
    helpers = {"bodycam.agent.cli.render", "bodycam.agent.cli.progress"}
    return {m for m in modules if m.startswith("bodycam.agent.cli")} - CLI_CORE - helpers


def test_version_imports_no_command_module(tmp_path: Path) -> None:
    """``--version`` (and any one command) no longer imports every command group's module up front."""
    proc, modules = run_cli(tmp_path, "--version")
    assert proc.returncode == 0 and "0.1.0" in proc.stdout, proc
    assert cli_modules(modules) == set()
    assert loaded(modules, *S3_STACK, "cryptography") == []


def test_status_imports_neither_the_pipeline_nor_cryptography(tmp_path: Path) -> None:
    """``status`` (scripts and benches poll it) asks the daemon's control socket: nothing more to load."""
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    proc, modules = run_cli(tmp_path, "--config", str(dock.config_path), "status")
    assert proc.returncode == 1 and "bodycam-sync: error:" in proc.stderr, proc  # no daemon is running
    assert cli_modules(modules) == {"bodycam.agent.cli.service"}
    assert [m for m in modules if m.startswith("bodycam.agent.pipeline")] == []
    assert loaded(modules, *S3_STACK, "cryptography", "usb") == []


def test_a_command_imports_its_own_module_only(tmp_path: Path) -> None:
    proc, modules = run_cli(tmp_path, "keys", "--help")
    assert proc.returncode == 0 and "dock-auth" in proc.stdout, proc
    assert cli_modules(modules) == {"bodycam.agent.cli.keys"}


def test_every_lazy_command_resolves_to_the_command_of_its_name() -> None:
    """The COMMANDS table names each command and where it lives; a wrong entry fails here, not in the
    field (--help and the man pages, tests/test_manpages.py, also list every command)."""
    from bodycam.agent.cli.main import COMMANDS, cli

    assert list(cli.commands) == [name for name, _ in COMMANDS]
    for name, command in cli.commands.items():
        assert command.name == name
    agreement = cli.commands["agreement"]
    assert isinstance(agreement, click.Group) and "publish" in agreement.commands


def test_ingest_into_a_local_bucket_never_imports_the_s3_client(tmp_path: Path) -> None:
    """``ingest --once`` of a real recording into a local bucket (the embedded default): no boto3, botocore
    or urllib3, which cost about 0.2 CPU s a run and serve only S3 buckets."""
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    win = window()
    dock.enroll("CAM-LAZY")
    dock.exercise("EX-LAZY", win, "CAM-LAZY")
    args = ("--recordings", "1", "--training", "1", "--size", str(MiB), "--exercise", iso_window(win))
    with SimProcess("usbip", "CAM-LAZY", *args, truth_dir=tmp_path) as cam:
        proc, modules = run_cli(
            tmp_path, "--config", str(dock.config_path), "ingest", "--once", "--json", "--usbip", cam.address
        )
    assert proc.returncode == 0, proc.stderr
    report: dict[str, Any] = json.loads(proc.stdout)
    assert [c["verified"] for c in report["cameras"]] == [1], report
    assert "bodycam.agent.storage.bucket" in modules  # the bucket was opened, and written
    assert loaded(modules, *S3_STACK) == []
    assert cli_modules(modules) == {"bodycam.agent.cli.ingest"}
    # crc32c's __init__ asks importlib.metadata for its version; the witness client's HTTP is for witnesses
    assert [m for m in ("importlib.metadata", "http.client", "ssl") if m in modules] == []
    assert [m for m in modules if "witness" in m] == []  # this dock has no [witnesses]
    # nor [agreements] nor [fleet]: their formats (some 10 dataclasses, ~0.02 s) and retention stay unloaded
    assert [m for m in modules if m.split(".")[-1] in ("agreements", "fleet", "retention")] == []
    # the dock's Ed25519 key is read by sshsig itself: cryptography's serialization imports every key type's
    # module (~20 ms)
    assert "cryptography.hazmat.primitives.serialization" not in modules


def test_the_crc32c_extension_loaded_alone_is_the_packages_crc32c() -> None:
    import crc32c as package

    from bodycam.drivers.crc import crc32c

    assert crc32c.crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    assert crc32c.crc32c(b"6789", crc32c.crc32c(b"12345")) == package.crc32c(b"123456789")


def _ingest_into_s3(tmp_path: Path, seaweedfs: SeaweedFS, s3_bucket: str) -> tuple[Dock, list[str]]:
    """``ingest --once`` of one real recording into SeaweedFS, with the credentials operators set
    (environment, as /etc/bodycam/environment gives them): the dock and the modules the run loaded."""
    dock = make_dock(tmp_path / "dock", f"s3://{s3_bucket}/lazy", seaweedfs.endpoint_url)
    win = window()
    dock.enroll("CAM-S3LAZY")
    dock.exercise("EX-S3LAZY", win, "CAM-S3LAZY")
    args = ("--recordings", "1", "--training", "1", "--size", str(6 * MiB), "--exercise", iso_window(win))
    with SimProcess("usbip", "CAM-S3LAZY", *args, truth_dir=tmp_path) as cam:
        proc, modules = run_cli(
            tmp_path, "--config", str(dock.config_path), "ingest", "--once", "--json", "--usbip", cam.address
        )
    assert proc.returncode == 0, proc.stderr
    report: dict[str, Any] = json.loads(proc.stdout)
    assert [c["verified"] for c in report["cameras"]] == [1], report
    return dock, modules


def test_ingest_into_s3_never_imports_botocore(tmp_path: Path, seaweedfs: SeaweedFS, s3_bucket: str) -> None:
    """Every request an ingest into S3 makes (list uploads, start, parts, complete, head, the batch's puts)
    is signed and sent by agent/storage/s3http.py, so botocore, its S3 model and urllib3 (about 0.3 CPU s
    a run) are never loaded; they still are for anything else."""
    _, modules = _ingest_into_s3(tmp_path, seaweedfs, s3_bucket)
    assert "bodycam.agent.storage.s3http" in modules  # the bucket was S3, and written
    assert loaded(modules, *S3_STACK) == []
    assert cli_modules(modules) == {"bodycam.agent.cli.ingest"}
    assert (
        "configparser" not in modules
    )  # it reads a profile's files: this dock has none, its keys are the environment's
    # what only a local bucket (shutil and its compressors, the part index), HTML entities other than XML's
    # five (html) or a key file other than the dock's plain Ed25519 (serialization) need: ~10 ms of start-up
    unused = (
        "shutil",
        "bz2",
        "lzma",
        "bodycam.agent.storage.partindex",
        "html",
        "cryptography.hazmat.primitives.serialization",
    )
    assert [m for m in unused if m in modules] == []


def test_verify_of_s3_never_imports_botocore(tmp_path: Path, seaweedfs: SeaweedFS, s3_bucket: str) -> None:
    """``verify`` of an S3 bucket with static credentials: the listings (ListObjectsV2, page after page),
    the reads and the heads are the bucket's own requests (agent/storage/s3xml.py reads the listings), so
    auditing a force no longer loads botocore (0.3-0.5 CPU s) nor pays its machinery per request."""
    dock, _ = _ingest_into_s3(tmp_path, seaweedfs, s3_bucket)
    proc, modules = run_cli(
        tmp_path, "verify", "--bucket", f"s3://{s3_bucket}/lazy", "--endpoint-url", seaweedfs.endpoint_url,
        "--allowed-signers", str(dock.allowed_signers), "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["findings"] == []
    assert "bodycam.agent.storage.s3xml" in modules  # the bucket was listed
    assert loaded(modules, *S3_STACK) == []
    assert cli_modules(modules) == {"bodycam.agent.cli.verify"}


#: what ``ingest --once`` imports of the agent (tests above pin the rest)
INGEST_MODULES = (
    "bodycam.agent.cli.ingest",
    "bodycam.agent.cli.progress",
    "bodycam.agent.pipeline.ingest",
    "bodycam.agent.pipeline.inventory",
    "bodycam.agent.pipeline.handover",
    "bodycam.agent.storage.s3http",
    "bodycam.drivers.transport.usbip_backend",
)


def test_every_dataclass_an_ingest_loads_has_a_docstring() -> None:
    """A dataclass without a docstring gets one made at import, from ``inspect.signature`` of its
    ``__init__``: about 0.2 ms for each of the 40 an ingest loaded (~8 ms of every run's start-up)."""
    probe = f"import sys, {', '.join(INGEST_MODULES)}; print(' '.join(sorted(sys.modules)))"
    names = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    made = []
    for name in names.stdout.split():
        if not name.startswith("bodycam."):
            continue
        module = importlib.import_module(name)
        for cls in vars(module).values():
            if dataclasses.is_dataclass(cls) and isinstance(cls, type) and cls.__module__ == name:
                if (cls.__doc__ or "").startswith(f"{cls.__name__}("):
                    made.append(f"{name}.{cls.__qualname__}")
    assert made == []


# Runs the console script's main() in a fresh interpreter and prints what the collector did meanwhile.
_GC_PROBE = """
import gc, json, sys
default = gc.get_threshold()
before = gc.get_stats()[0]["collections"]
from bodycam.agent.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps({"collections": gc.get_stats()[0]["collections"] - before, "default": default,
                  "after": gc.get_threshold(), "frozen": gc.get_freeze_count()}))
"""


def test_start_up_imports_with_the_collector_held_back() -> None:
    """Importing click and the commands allocates tens of thousands of objects, none garbage: the console
    script raises the generation-0 threshold first (agent/cli/startup.py), so the collector does not walk
    them some 30 times, and when the command is done (or has its config) the threshold is as it was and
    start-up's objects are frozen out of later collections."""
    proc = subprocess.run(
        [sys.executable, "-c", _GC_PROBE, "--version"], capture_output=True, text=True, timeout=300, check=True
    )
    seen = json.loads(proc.stdout.splitlines()[-1])
    assert seen["collections"] <= 2, seen
    assert seen["after"] == seen["default"] and seen["frozen"] > 0, seen
