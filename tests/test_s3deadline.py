"""Whole-answer deadlines on the bucket's own S3 requests (agent/storage/s3http.py ``Alarm``).

Each socket read had a timeout (30 s, ``BODYCAM_S3_TIMEOUT_S`` here 1 s) and nothing bounded an answer as
a whole: an endpoint that sends its answer a byte every half second, each within the timeout, held the
reader as long as it liked. Here a proxy in front of a real SeaweedFS drips the answer of one chosen
request (from its first byte, or once its headers went through) and each command must end with one line
naming that object's key and the deadline, the rest of its work done. Subprocess timeouts are generous;
nothing here asserts on elapsed time.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bodycam.agent.storage.bucket import open_bucket

from .agreement_setup import draft as _draft
from .agreement_setup import make_force
from .dock import iso_window, make_dock, window
from .fleet import build_fleet
from .s3server import SeaweedFS
from .sims import SimProcess

#: what a dripping answer waits between two bytes: within every socket timeout the commands are given
DRIP_S = 0.5
CLI = str(Path(sys.executable).parent / "bodycam-sync")


class Drip:
    """A TCP proxy to ``upstream`` that passes everything, except the answer to the first request whose
    line contains ``match`` (``every``: to each such request): that one goes a byte every :data:`DRIP_S`
    (``mode`` ``head``: from its first byte; ``body``: its status line and headers at once, then the
    body), for as long as the client reads. ``dripped`` is the first such request's line; ``match`` may
    be changed at any time (``b""``: nothing drips)."""

    def __init__(self, upstream: tuple[str, int], match: bytes, mode: str, every: bool = False) -> None:
        self.upstream, self.match, self.mode, self.every = upstream, match, mode, every
        self.dripped: str | None = None
        self._guard = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            dripping = threading.Event()
            threading.Thread(target=self._up, args=(client, server, dripping), daemon=True).start()
            threading.Thread(target=self._down, args=(server, client, dripping), daemon=True).start()

    def _up(self, client: socket.socket, server: socket.socket, dripping: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                line = data.split(b"\r\n", 1)[0]
                if self.match and self.match in line:
                    with self._guard:
                        if self.dripped is None or self.every:
                            self.dripped = self.dripped or line.decode("ascii", "replace")
                            dripping.set()  # before the request goes on: its answer is the next bytes down
                server.sendall(data)
        _close(client, server)

    def _down(self, server: socket.socket, client: socket.socket, dripping: threading.Event) -> None:
        head_done = self.mode == "body"
        with contextlib.suppress(OSError):
            while data := server.recv(65536):
                if not dripping.is_set():
                    client.sendall(data)
                    continue
                if head_done and b"\r\n\r\n" in data:  # the status line and headers at once
                    end = data.index(b"\r\n\r\n") + 4
                    client.sendall(data[:end])
                    data, head_done = data[end:], False
                for i in range(len(data)):
                    client.sendall(data[i : i + 1])
                    time.sleep(DRIP_S)
        _close(client, server)

    def close(self) -> None:
        self._closing = True
        with contextlib.suppress(OSError):
            self._listener.close()


def _close(*socks: socket.socket) -> None:
    for sock in socks:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()


@pytest.fixture
def drip(seaweedfs: SeaweedFS) -> Iterator[type[Drip]]:
    made: list[Drip] = []

    class Made(Drip):
        def __init__(self, match: bytes, mode: str, every: bool = False) -> None:
            super().__init__(("127.0.0.1", seaweedfs.ports["s3"]), match, mode, every)
            made.append(self)

    yield Made
    for proxy in made:
        proxy.close()


def run(seaweedfs: SeaweedFS, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **seaweedfs.env(), "BODYCAM_S3_TIMEOUT_S": "1"}
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.parametrize("mode", ["head", "body"])
def test_verify_gives_up_a_recording_whose_answer_drips_and_checks_the_rest(
    tmp_path: Path, seaweedfs: SeaweedFS, s3_bucket: str, drip: type[Drip], mode: str
) -> None:
    """One dock's batch of 4 recordings of 64 KiB; the GET of one drips a byte every 0.5 s (its head, or
    its body once the headers went through): about nine hours to the end, and verify was still in that
    read after 40 s when this ran before the fix. Now it ends (exit 1) with one object_unreadable finding naming the
    dripped key and the deadline; the 3 other recordings and the batch verify."""
    built = open_bucket(f"s3://{s3_bucket}/force", seaweedfs.endpoint_url)
    fleet = build_fleet(tmp_path / "docks", built, docks=1, per_dock=4, size=64 * 1024)
    built.close()
    proxy = drip(b"/recordings/", mode)
    proc = run(
        seaweedfs, "verify", "--bucket", f"s3://{s3_bucket}/force", "--endpoint-url", proxy.url,
        "--allowed-signers", str(fleet.allowed_signers), "--json",
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    findings = json.loads(proc.stdout)["findings"]
    assert [f["problem"] for f in findings] == ["object_unreadable"], findings
    assert proxy.dripped is not None
    key = proxy.dripped.split()[1].split("?")[0].removeprefix(f"/{s3_bucket}/")
    assert findings[0]["key"] == key.removeprefix("force/")
    message = findings[0]["message"]
    assert f"s3://{s3_bucket}/{key} " in message and "did not come within its deadline" in message
    assert "BODYCAM_S3_TIMEOUT_S" in message and "\n" not in message


def test_a_read_timeout_out_of_its_bounds_is_one_line(seaweedfs: SeaweedFS, s3_bucket: str) -> None:
    """``BODYCAM_S3_TIMEOUT_S`` is checked (1 .. 600 s): 0 would give every answer up at once, and a huge
    value would bring the drip back; either is exit 2 with one line naming the variable."""
    for bad in ("0", "601", "1e9", "nan"):
        env = {**os.environ, **seaweedfs.env(), "BODYCAM_S3_TIMEOUT_S": bad}
        proc = subprocess.run(
            [CLI, "verify", "--bucket", f"s3://{s3_bucket}/x", "--endpoint-url", seaweedfs.endpoint_url,
             "--allowed-signers", os.devnull],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert proc.returncode == 2, proc.stderr
        assert (
            proc.stderr.count("\n") == 1
            and "BODYCAM_S3_TIMEOUT_S must be a number of seconds from 1 to 600" in proc.stderr
        )


def test_an_ingest_whose_part_upload_drips_is_an_outage_and_resumes_after(
    tmp_path: Path, seaweedfs: SeaweedFS, s3_bucket: str, drip: type[Drip]
) -> None:
    """``ingest --once`` (erase after upload on) of a camera with two training recordings of 64 KiB, every
    part PUT answered a byte every 0.5 s: before the fix the run was still in the first PUT's answer after
    40 s (its head alone, some 300 bytes, takes minutes at that pace, and nothing bounded a longer one).
    Now it ends, exit 1, with one line naming the part's bucket key and the deadline; nothing is erased
    from the camera. The same dock's next run, the endpoint well again, uploads, verifies and erases both."""
    proxy = drip(b"partNumber=", "head", every=True)
    dock = make_dock(tmp_path / "dock", f"s3://{s3_bucket}/drip", proxy.url, erase=True)
    win = window()
    dock.enroll("CAM-DRIP")
    dock.exercise("EX-DRIP", win, "CAM-DRIP")
    args = ("--recordings", "2", "--training", "2", "--size", str(64 * 1024), "--exercise", iso_window(win))
    env = {**seaweedfs.env(), "BODYCAM_S3_TIMEOUT_S": "1"}
    with SimProcess("usbip", "CAM-DRIP", *args, truth_dir=tmp_path) as cam:
        code, report = dock.ingest_json(cam.address, env=env)
        assert code == 1, report
        assert proxy.dripped is not None and dock.custody("erased") == []
        assert [e["error"] for e in dock.custody("error")] == ["UploadError"]
        errors = report["cameras"][0]["errors"]
        part = proxy.dripped.split()[1].split("?")[0].removeprefix(f"/{s3_bucket}/")
        assert len(errors) == 1 and f"s3://{s3_bucket}/{part} " in errors[0], errors
        assert "did not come within its deadline" in errors[0] and "\n" not in errors[0]
        proxy.match = b""
        code, report = dock.ingest_json(cam.address, env=env)
    assert code == 0, report
    assert [c["verified"] for c in report["cameras"]] == [2], report
    assert len(dock.custody("erased")) == 2


def test_verify_gives_up_a_listing_whose_answer_drips_in_one_line(
    tmp_path: Path, seaweedfs: SeaweedFS, s3_bucket: str, drip: type[Drip]
) -> None:
    """The bucket's listing (ListObjectsV2), its answer's head sent a byte every 0.5 s: verify ends with
    a listing_failed finding naming the bucket and the deadline (exit 1; nothing_to_verify besides, as
    nothing was listed), instead of waiting on the listing: before the fix, still listing after 40 s."""
    built = open_bucket(f"s3://{s3_bucket}/force", seaweedfs.endpoint_url)
    fleet = build_fleet(tmp_path / "docks", built, docks=1, per_dock=2, size=1024)
    built.close()
    proxy = drip(b"list-type=2", "head")
    proc = run(
        seaweedfs, "verify", "--bucket", f"s3://{s3_bucket}/force", "--endpoint-url", proxy.url,
        "--allowed-signers", str(fleet.allowed_signers), "--json",
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    findings = json.loads(proc.stdout)["findings"]
    assert [f["problem"] for f in findings] == ["listing_failed", "nothing_to_verify"], findings
    message = findings[0]["message"]
    assert f"s3://{s3_bucket}/force " in message and "did not come within its deadline" in message, message
    assert "\n" not in message


def test_receive_gives_up_a_recording_whose_answer_drips_and_receives_the_rest(
    tmp_path: Path, seaweedfs: SeaweedFS, s3_bucket: str, drip: type[Drip]
) -> None:
    """A party receives its share of two recordings from S3 while the GET of one drips its body a byte
    every 0.5 s (still in that read after 40 s before the fix): now receive ends, exit 1, with one
    problem naming that recording's key and the deadline, and the other recording received."""
    dock = make_dock(tmp_path / "dock", f"s3://{s3_bucket}/share", seaweedfs.endpoint_url)
    made = make_force(tmp_path, ("P1", "archive"))
    with dock.config_path.open("a") as f:
        f.write(f'[agreements]\ncontroller_keys = ["{made.controller_pub.strip()}"]\n')
        f.write(f'archive = "{made.recipients["archive"]}"\n[fleet]\nrefresh_s = 0\n')
    (tmp_path / "drafts").mkdir()
    draft = _draft(
        tmp_path / "drafts" / "DSA-D.json", "DSA-D", "EX-D", {"P1": made.recipients["P1"]}, time.time() + 86400
    )
    signed = tmp_path / "signed"
    assert dock.cli("agreement", "sign", str(draft), "--key", str(made.keys / "controller"),
                    "--out", str(signed)).returncode == 0  # fmt: skip
    assert dock.cli("agreement", "publish", "--dir", str(signed)).returncode == 0
    win = window()
    dock.enroll("CAM-D1")
    dock.exercise("EX-D", win, "CAM-D1")
    args = ("--recordings", "2", "--training", "2", "--size", str(64 * 1024), "--exercise", iso_window(win))
    with SimProcess("usbip", "CAM-D1", *args, truth_dir=tmp_path) as cam:
        code, report = dock.ingest_json(cam.address)
    assert code == 0, report
    proxy = drip(b"/recordings/", "body")
    out = tmp_path / "p1"
    proc = dock.cli(
        "receive", "--bucket", dock.bucket_url, "--endpoint-url", proxy.url, "--allowed-signers",
        str(dock.allowed_signers), "--identity", str(made.identities["P1"]), "--agreement", "DSA-D",
        "--out", str(out), "--json", env={"BODYCAM_S3_TIMEOUT_S": "1"},
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    got = json.loads(proc.stdout)
    assert len(got["received"]) == 1 and len(got["problems"]) == 1, got
    assert proxy.dripped is not None
    key = proxy.dripped.split()[1].split("?")[0].removeprefix(f"/{s3_bucket}/")
    problem = got["problems"][0]
    assert f"s3://{s3_bucket}/{key} " in problem and "did not come within its deadline" in problem, problem
    assert "\n" not in problem
