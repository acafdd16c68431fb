"""sd_notify over a real AF_UNIX datagram socket: a filesystem path and an abstract name."""

from __future__ import annotations

import logging
import os
import pathlib
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from bodycam.agent.service import sdnotify


@dataclass
class Listener:
    sock: socket.socket
    env_value: str

    def recv(self, timeout: float = 2.0) -> dict[str, str]:
        self.sock.settimeout(timeout)
        data = self.sock.recv(4096).decode()
        return dict(line.split("=", 1) for line in data.split("\n"))

    def drain(self) -> list[dict[str, str]]:
        messages = []
        self.sock.setblocking(False)
        try:
            while True:
                data = self.sock.recv(4096).decode()
                messages.append(dict(line.split("=", 1) for line in data.split("\n")))
        except BlockingIOError:
            pass
        return messages


@pytest.fixture(params=["path", "abstract"])
def listener(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Listener]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    tmp = None
    if request.param == "path":
        # short directory: sun_path holds 108 bytes, pytest's tmp_path can be longer
        tmp = tempfile.mkdtemp(prefix="sdn-", dir="/tmp")
        path = os.path.join(tmp, "notify")
        sock.bind(path)
        env_value = path
    else:
        name = f"bodycam-test-{uuid.uuid4().hex}"
        sock.bind(b"\0" + name.encode())
        env_value = "@" + name
    monkeypatch.setenv("NOTIFY_SOCKET", env_value)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    try:
        yield Listener(sock, env_value)
    finally:
        sock.close()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def test_ready_arrives(listener: Listener) -> None:
    assert sdnotify.ready() is True
    assert listener.recv() == {"READY": "1"}


def test_ready_with_status(listener: Listener) -> None:
    assert sdnotify.ready("3 bays: 1 docked, 2 idle")
    assert listener.recv() == {"READY": "1", "STATUS": "3 bays: 1 docked, 2 idle"}


def test_status_text_arrives_on_one_line(listener: Listener) -> None:
    assert sdnotify.status("bay 1: BWC-2 S123 uploading 40%\nbay 2: idle")
    assert listener.recv() == {"STATUS": "bay 1: BWC-2 S123 uploading 40% bay 2: idle"}


def test_stopping_reloading_and_ping(listener: Listener) -> None:
    assert sdnotify.stopping()
    assert listener.recv() == {"STOPPING": "1"}
    assert sdnotify.reloading()
    assert listener.recv() == {"RELOADING": "1"}
    assert sdnotify.watchdog_ping()
    assert listener.recv() == {"WATCHDOG": "1"}


def test_notify_preformatted_and_fields(listener: Listener) -> None:
    assert sdnotify.notify("READY=1\n", STATUS="up", MAINPID=os.getpid())
    assert listener.recv() == {"READY": "1", "STATUS": "up", "MAINPID": str(os.getpid())}


def test_bad_field_name_is_a_programming_error(listener: Listener) -> None:
    with pytest.raises(ValueError, match="field name"):
        sdnotify.notify(status="lower case")


def test_no_socket_is_a_noop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.ready("x") is False
    assert sdnotify.status("x") is False
    assert sdnotify.stopping() is False
    assert sdnotify.watchdog_ping() is False
    assert sdnotify.notify("READY=1") is False


def test_send_failure_does_not_raise(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", f"/tmp/bodycam-no-such-socket-{uuid.uuid4().hex}")
    with caplog.at_level(logging.DEBUG, logger="bodycam.agent.service.sdnotify"):
        assert sdnotify.ready("x") is False
    assert "sd_notify" in caplog.text
    monkeypatch.setenv("NOTIFY_SOCKET", f"@bodycam-no-such-abstract-{uuid.uuid4().hex}")
    assert sdnotify.watchdog_ping() is False
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")
    assert sdnotify.ready() is False


def test_watchdog_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert sdnotify.watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    assert sdnotify.watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert sdnotify.watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert sdnotify.watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_PID", "junk")
    assert sdnotify.watchdog_interval() is None
    monkeypatch.delenv("WATCHDOG_PID")
    for bad in ("0", "-5", "junk", ""):
        monkeypatch.setenv("WATCHDOG_USEC", bad)
        assert sdnotify.watchdog_interval() is None


def wait_until(condition: Callable[[], bool], within: float = 30.0) -> None:
    """Poll (a busy CI machine may not run a 50 ms timer thread for a while); fail after ``within``."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_watchdog_pings_at_the_interval(listener: Listener, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "100000")  # 0.1 s -> a ping every 0.05 s
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    dog = sdnotify.Watchdog()
    assert dog.interval == pytest.approx(0.05)
    started = time.monotonic()
    assert dog.start() is True
    assert dog.running
    wait_until(lambda: dog.pings >= 3)
    dog.stop()
    elapsed = time.monotonic() - started
    assert not dog.running
    got = listener.drain()
    # a loaded machine may ping less often, never more often than the interval allows
    assert 3 <= len(got) <= elapsed / 0.05 + 1
    assert all(m == {"WATCHDOG": "1"} for m in got)
    assert dog.pings == len(got)
    time.sleep(0.15)
    assert listener.drain() == [], "pings continued after stop()"


def test_unhealthy_withholds_pings(listener: Listener) -> None:
    healthy = True
    with sdnotify.Watchdog(lambda: healthy, interval=0.05) as dog:
        wait_until(lambda: dog.pings >= 2)
        healthy = False
        wait_until(lambda: dog.skipped >= 1)  # one tick read False: none that read True is still in flight
        pings = dog.pings
        wait_until(lambda: dog.skipped >= 3)
        assert dog.pings == pings
        assert len(listener.drain()) == pings
        healthy = True
        wait_until(lambda: dog.pings >= pings + 2)
    assert len(listener.drain()) >= 2, "pings did not resume once healthy again"


def test_health_check_that_raises_withholds_pings(listener: Listener) -> None:
    def broken() -> bool:
        raise RuntimeError("scheduler gone")

    with sdnotify.Watchdog(broken, interval=0.05) as dog:
        time.sleep(0.3)
    assert listener.drain() == []
    assert dog.pings == 0
    assert dog.skipped >= 2


def test_watchdog_without_watchdog_usec_does_nothing(listener: Listener) -> None:
    dog = sdnotify.Watchdog()
    assert dog.start() is False
    assert not dog.running
    dog.stop()
    with pytest.raises(ValueError):
        sdnotify.Watchdog(interval=0)


def test_a_listener_that_stops_reading_never_blocks_the_service(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "full.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    try:
        assert sdnotify.status("first") is True
        for _ in range(5000):  # far more than a datagram queue holds
            started = time.monotonic()
            if not sdnotify.status("x" * 200):
                break
        else:
            raise AssertionError("the queue never filled up")
        assert time.monotonic() - started < 2 * sdnotify.SEND_TIMEOUT + 1  # dropped, not waited for
    finally:
        listener.close()
