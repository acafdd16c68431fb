"""The daemon as systemd runs it: a real NOTIFY_SOCKET, cameras coming and going, SIGTERM mid-transfer."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from .dock import CLI, Dock, iso_window, make_dock, window
from .sims import SimProcess

MiB = 1024 * 1024


class Notifications:
    """A NOTIFY_SOCKET listener that drains in its own thread, as systemd does.

    The kernel queues only ``net.unix.max_dgram_qlen`` datagrams (10 here) and the daemon drops a
    notification it cannot send within half a second, so a listener that reads only between test
    steps loses messages (STOPPING=1 among them) whenever the machine is busy.
    """

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.05)
        self.messages: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="notify-listener", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.messages.append((time.monotonic(), data.decode()))

    def drain(self) -> None:
        """Kept for the call sites: the thread drains; this only lets it catch up."""
        time.sleep(0.01)

    def count(self, needle: str, since: float = 0.0) -> int:
        with self._lock:
            return sum(1 for t, m in self.messages if needle in m and t >= since)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Camera:
    """A virtual camera that can be docked (process running) and undocked (process stopped)."""

    def __init__(self, medium: str, serial: str, win: tuple[float, float], root: Path) -> None:
        self.medium, self.serial, self.root = medium, serial, root
        self.port = free_port()
        self.args = ["--recordings", "3", "--training", "2", "--size", str(6 * MiB), "--exercise", iso_window(win)]
        self.sim: SimProcess | None = None
        self.training: dict[int, str] = {}
        self.address = f"127.0.0.1:{self.port}" if medium == "usbip" else str(root / f"{serial}.tty")

    def dock(self) -> None:
        extra = ["--port", str(self.port)] if self.medium == "usbip" else []
        self.sim = SimProcess(self.medium, self.serial, *self.args, *extra, truth_dir=self.root)
        self.training = self.sim.training()

    def undock(self) -> None:
        if self.sim is not None:
            self.sim.stop()
            self.sim = None


def status(dock: Dock) -> dict[str, Any]:
    proc = dock.cli("status", "--json", timeout=30)
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


def start_daemon(dock: Dock, notify: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "NOTIFY_SOCKET": str(notify), "WATCHDOG_USEC": "2000000"}
    return subprocess.Popen(
        [CLI, "--config", str(dock.config_path), "daemon", "--rescan", "0.3"], env=env, stderr=log.open("ab")
    )


def test_daemon_hot_plug_watchdog_status_sigterm_and_restart(tmp_path: Path) -> None:
    rng = random.Random(7)
    win = window()
    cams = [Camera(m, f"CAM-H{i}", win, tmp_path) for i, m in enumerate(["usbip", "serial", "usbip", "serial"])]
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    with dock.config_path.open("a") as f:
        usbip = ", ".join(f'"{c.address}"' for c in cams if c.medium == "usbip")
        serial = ", ".join(f'"{c.address}"' for c in cams if c.medium == "serial")
        f.write(f"[cameras]\nusbip = [{usbip}]\nserial = [{serial}]\n")
    dock.enroll(*(c.serial for c in cams))
    dock.exercise("EX-H", win, *(c.serial for c in cams))
    notify = Notifications(tmp_path / "notify.sock")
    log = tmp_path / "daemon.log"
    daemon = start_daemon(dock, tmp_path / "notify.sock", log)
    try:
        deadline = time.monotonic() + 20
        while notify.count("READY=1") == 0 and time.monotonic() < deadline:
            notify.drain()
        assert notify.count("READY=1") == 1, log.read_text()
        # cameras come and go at random for a while; the watchdog keeps being fed
        started = time.monotonic()
        for cam in cams:
            cam.dock()
        saw_syncing = False
        # at least 12 s of random plugging, and on a busy machine until a sync was seen (by a status poll
        # or by a STATUS= datagram, which the daemon sends on every change), at most 90 s
        while time.monotonic() - started < 12 or (not saw_syncing and time.monotonic() - started < 90):
            notify.drain()
            saw_syncing |= notify.count("syncing", since=started) > 0
            cam = rng.choice(cams)
            if cam.sim is not None and rng.random() < 0.4:
                cam.undock()
            elif cam.sim is None:
                cam.dock()
            snapshot = status(dock)
            assert snapshot["bays"] is not None
            for bay in snapshot["bays"]:
                assert bay["state"] in {"docked", "syncing", "synced", "error", "ejecting", "ejected"}
                assert 0 <= bay["bytes_done"] <= max(bay["bytes_total"], 0) or bay["bytes_total"] == 0
                saw_syncing |= bay["state"] == "syncing"
            time.sleep(rng.uniform(0.2, 0.8))
        assert saw_syncing
        pings = notify.count("WATCHDOG=1", since=started)
        assert pings >= 8, f"only {pings} watchdog pings in 12 s at a 1 s interval"
        # SIGTERM mid-transfer, then a restart: nothing lost
        for cam in cams:
            if cam.sim is None:
                cam.dock()
        time.sleep(0.5)
        daemon.send_signal(signal.SIGTERM)
        try:
            code = daemon.wait(60)
        except subprocess.TimeoutExpired:
            daemon.send_signal(signal.SIGUSR1)  # faulthandler: every thread's stack into the log
            time.sleep(1)
            raise AssertionError("daemon did not stop within 60 s:\n" + log.read_text()[-6000:]) from None
        assert code == 0, log.read_text()[-2000:]
        notify.drain()
        assert notify.count("STOPPING=1") == 1
        daemon = start_daemon(dock, tmp_path / "notify.sock", log)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            snapshot = status(dock) if (dock.config.state_dir / "run" / "control.sock").exists() else {"bays": []}
            bays = snapshot["bays"]
            if (
                len(bays) == 4
                and all(b["state"] == "synced" for b in bays)
                and not snapshot["queue"]["uploads_in_progress"]
            ):
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"not all synced: {snapshot}\n{log.read_text()[-3000:]}")
        bays = {b["camera"]: b for b in snapshot["bays"]}
        assert set(bays) == {c.serial for c in cams}
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(60)
        except subprocess.TimeoutExpired:
            daemon.send_signal(signal.SIGUSR1)
            time.sleep(1)
            daemon.kill()
            print(log.read_text()[-6000:])
            raise
        finally:
            notify.close()
            for cam in cams:
                cam.undock()
    # every in-scope recording is in the bucket exactly once, and the bucket verifies
    stored: dict[tuple[str, int], int] = {}
    for path in (tmp_path / "bucket").rglob("*.age"):
        if "recordings" in path.parts:
            key = (path.parent.name, int(path.stem))
            stored[key] = stored.get(key, 0) + 1
    expected = {(c.serial, rid) for c in cams for rid in c.training}
    assert set(stored) == expected
    assert all(n == 1 for n in stored.values()), stored
    verified = dock.cli("verify", "--bucket", dock.bucket_url, "--allowed-signers", str(dock.allowed_signers),
                        "--identity", str(dock.identity_path))  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_daemon_sends_status_only_when_the_bays_change(tmp_path: Path) -> None:
    """A STATUS= every rescan fills systemd's queue (10 datagrams) on a busy machine: send on change only."""
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    notify = Notifications(tmp_path / "notify.sock")
    log = tmp_path / "daemon.log"
    daemon = start_daemon(dock, tmp_path / "notify.sock", log)  # no cameras: nothing changes
    try:
        deadline = time.monotonic() + 30
        while notify.count("READY=1") == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert notify.count("READY=1") == 1, log.read_text()
        ready = time.monotonic()
        while notify.count("WATCHDOG=1", since=ready) < 3 and time.monotonic() < ready + 60:
            time.sleep(0.05)  # three watchdog ticks (1 s each): some 10 rescans at 0.3 s have run
        assert notify.count("WATCHDOG=1", since=ready) >= 3, log.read_text()
        statuses = [m for _t, m in notify.messages if "STATUS=" in m and "READY=1" not in m]
        assert statuses == [], f"{len(statuses)} STATUS= with nothing changed"
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)
        notify.close()
    assert notify.count("STOPPING=1") == 1


def test_a_mass_storage_camera_mounted_under_the_watched_directory_is_ingested(tmp_path: Path) -> None:
    from bodycam.drivers.virtual.massstorage_writer import write_volume
    from bodycam.drivers.virtual.scenario import make_recordings

    win = window()
    mounts = tmp_path / "media"
    mounts.mkdir()
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    with dock.config_path.open("a") as f:
        f.write(f'[cameras]\nmass_storage_dir = "{mounts}"\n')
    dock.enroll("CAM-MS1")
    dock.exercise("EX-MS", win, "CAM-MS1")
    log = tmp_path / "daemon.log"
    daemon = subprocess.Popen(
        [CLI, "--config", str(dock.config_path), "daemon", "--rescan", "30"], stderr=log.open("ab")
    )  # a long rescan: only the directory watch can notice the mount in time
    try:
        sock = dock.config.state_dir / "run" / "control.sock"
        deadline = time.monotonic() + 20
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        staging = tmp_path / "staging" / "CAM-MS1"
        recs = make_recordings(4, 2, 2 * MiB, win, serial="CAM-MS1")
        write_volume(staging, "CAM-MS1", recs)
        staging.rename(mounts / "CAM-MS1")  # appears at once, as a mount does
        deadline = time.monotonic() + 25
        while time.monotonic() < deadline:
            bays = status(dock)["bays"]
            if bays and bays[0]["state"] == "synced":
                break
            time.sleep(0.3)
        else:
            raise AssertionError(f"mass-storage camera not synced: {status(dock)}\n{log.read_text()[-2000:]}")
        assert bays[0]["camera"] == "CAM-MS1" and bays[0]["address"].startswith("mass-storage:")
    finally:
        daemon.send_signal(signal.SIGTERM)
        stopping = time.monotonic()
        daemon.wait(60)
    assert time.monotonic() - stopping < 25  # SIGTERM does not wait for the next rescan (30 s); load-tolerant
    stored = sorted(p.stem for p in (tmp_path / "bucket").rglob("*.age") if "recordings" in p.parts)
    assert stored == sorted(str(r.id) for r in recs if str(r.category) == "training")


def test_eject_sync_and_watch_through_the_control_socket(tmp_path: Path) -> None:
    win = window()
    cam = Camera("usbip", "CAM-E1", win, tmp_path)
    cam.args = ["--recordings", "2", "--training", "2", "--size", str(48 * MiB), "--exercise", iso_window(win),
                "--fault", "stall-ms=40"]  # fmt: skip  # slow enough to eject mid-transfer
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    with dock.config_path.open("a") as f:
        f.write(f'[cameras]\nusbip = ["{cam.address}"]\n')
    dock.enroll(cam.serial)
    dock.exercise("EX-E", win, cam.serial)
    cam.dock()
    log = tmp_path / "daemon.log"
    daemon = subprocess.Popen(
        [CLI, "--config", str(dock.config_path), "daemon", "--rescan", "0.3"], stderr=log.open("ab")
    )

    def wait_for(state: str, within: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if (dock.config.state_dir / "run" / "control.sock").exists():
                bays = status(dock)["bays"]
                if bays and bays[0]["state"] == state:
                    return dict(bays[0])
            time.sleep(0.1)
        raise AssertionError(f"bay never reached {state}: {log.read_text()[-2000:]}")

    try:
        syncing = wait_for("syncing")
        assert syncing["camera"] in ("CAM-E1", "?")
        while status(dock)["bays"][0]["bytes_done"] == 0:
            time.sleep(0.05)
        ejected = dock.cli("eject", "--camera", "CAM-E1")
        assert ejected.returncode == 0, ejected.stderr
        bay = wait_for("ejected")
        assert bay["bytes_done"] < bay["bytes_total"]  # stopped mid-transfer
        watch = dock.cli("watch", "--count", "1")
        assert watch.returncode == 0 and "CAM-E1" in watch.stdout and "ejected" in watch.stdout
        again = dock.cli("sync", "--camera", "CAM-E1")
        assert again.returncode == 0, again.stderr
        wait_for("synced", within=120)
        unknown = dock.cli("sync", "--camera", "NOT-DOCKED")
        assert unknown.returncode != 0 and "not docked" in unknown.stderr
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)
        cam.undock()
    stored = sorted(int(p.stem) for p in (tmp_path / "bucket").rglob("*.age") if "recordings" in p.parts)
    assert stored == sorted(cam.training)


def wait_synced(dock: Dock, serial: str, log: Path, within: float = 120) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if (dock.config.state_dir / "run" / "control.sock").exists():
            snapshot = status(dock)
            if any(b["camera"] == serial and b["state"] == "synced" for b in snapshot["bays"]):
                if not snapshot["queue"]["uploads_in_progress"]:
                    return
        time.sleep(0.2)
    raise AssertionError(f"{serial} never synced: {log.read_text()[-3000:]}")


def manifests_by_camera(bucket: Path) -> dict[str, dict[str, Any]]:
    """camera serial -> the manifest that lists its recordings (one batch per camera in these tests)."""
    found: dict[str, dict[str, Any]] = {}
    for path in bucket.rglob("manifest.json"):
        doc = json.loads(path.read_text())
        for rec in doc["recordings"]:
            found[rec["camera_serial"]] = {**doc, "_dir": str(path.parent)}
    return found


def test_keys_rotate_and_sighup_reach_the_next_manifest(tmp_path: Path) -> None:
    """One config object: after rotate + SIGHUP the daemon's next manifest is signed by the new key."""
    win = window()
    first, second = Camera("usbip", "CAM-R1", win, tmp_path), Camera("serial", "CAM-R2", win, tmp_path)
    bucket = tmp_path / "bucket"
    dock = make_dock(tmp_path / "dock", bucket.as_uri())
    with dock.config_path.open("a") as f:
        f.write(f'[cameras]\nusbip = ["{first.address}"]\nserial = ["{second.address}"]\n')
    dock.enroll(first.serial, second.serial)
    dock.exercise("EX-R", win, first.serial, second.serial)
    log = tmp_path / "daemon.log"
    daemon = subprocess.Popen(
        [CLI, "--config", str(dock.config_path), "daemon", "--rescan", "0.3"], stderr=log.open("ab")
    )
    try:
        first.dock()
        wait_synced(dock, first.serial, log)
        new_key = tmp_path / "dock" / "keys" / "dock_ed25519.next"
        rotated = dock.cli("keys", "rotate", "--out", str(new_key))
        assert rotated.returncode == 0, rotated.stderr
        with dock.allowed_signers.open("a") as f:
            f.write(rotated.stdout)
        original, old_key = dock.config_path.read_text(), str(dock.config.key_path)
        dock.config_path.write_text(original.replace(old_key, str(tmp_path / "missing")))
        daemon.send_signal(signal.SIGHUP)  # a key that cannot sign is refused; the running config stays
        deadline = time.monotonic() + 30
        while "reload refused" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "reload refused" in log.read_text(), log.read_text()[-2000:]
        dock.config_path.write_text(original.replace(old_key, str(new_key)))
        daemon.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while "configuration reloaded" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "configuration reloaded" in log.read_text(), log.read_text()[-2000:]
        second.dock()
        wait_synced(dock, second.serial, log)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)
        first.undock()
        second.undock()
    manifests = manifests_by_camera(bucket)
    new_public = (tmp_path / "dock" / "keys" / "dock_ed25519.next.pub").read_text().split()[:2]
    assert manifests[first.serial]["signing_key"].split()[:2] != new_public
    assert manifests[second.serial]["signing_key"].split()[:2] == new_public, "still signing with the old key"
    assert (Path(manifests[second.serial]["_dir"]) / "manifest.json.sig.prev").exists()
    verified = dock.cli("verify", "--bucket", dock.bucket_url, "--allowed-signers", str(dock.allowed_signers))
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_a_hanging_bay_is_given_up_and_the_other_cameras_footage_is_signed(tmp_path: Path) -> None:
    """One good and one hanging camera (fault hang-read-at): the daemon notices the bay that makes no
    progress, gives it up and logs it, seals the batch on schedule with the good camera's recordings
    (the hanging one's upload moves to a later batch), keeps the watchdog fed, and stops on SIGTERM."""
    win = window()
    good, bad = Camera("usbip", "CAM-OK", win, tmp_path), Camera("serial", "CAM-STUCK", win, tmp_path)
    bad.args += ["--fault", f"hang-read-at={MiB}"]
    bucket = tmp_path / "bucket"
    dock = make_dock(tmp_path / "dock", bucket.as_uri())
    with dock.config_path.open("a") as f:
        f.write(f'[cameras]\nusbip = ["{good.address}"]\nserial = ["{bad.address}"]\n')
        f.write("[batch]\nmax_age_s = 1\n[daemon]\nstall_timeout_s = 4\n")  # below the link's own 3 x 5 s
    dock.enroll(good.serial, bad.serial)
    dock.exercise("EX-STUCK", win, good.serial, bad.serial)
    notify = Notifications(tmp_path / "notify.sock")
    log = tmp_path / "daemon.log"
    bad.dock()
    good.dock()
    daemon = start_daemon(dock, tmp_path / "notify.sock", log)
    try:
        deadline = time.monotonic() + 180
        signed: set[int] = set()
        while time.monotonic() < deadline:
            signed = {
                r["recording_id"]
                for p in bucket.rglob("manifest.json")
                for r in json.loads(p.read_text())["recordings"]
                if r["camera_serial"] == good.serial
            }
            if signed == set(good.training) and "made no progress" in log.read_text():
                break
            time.sleep(0.5)
        assert signed == set(good.training), f"good footage unsigned: {signed}\n{log.read_text()[-3000:]}"
        assert "made no progress" in log.read_text(), log.read_text()[-3000:]
        stuck = [b for b in status(dock)["bays"] if b["camera"] == bad.serial]
        assert stuck and stuck[0]["state"] in ("syncing", "error"), stuck
        hanging = time.monotonic()
        while notify.count("WATCHDOG=1", since=hanging) < 3 and time.monotonic() < hanging + 60:
            time.sleep(0.2)  # the scheduler is healthy while a bay hangs: the watchdog keeps being fed
        assert notify.count("WATCHDOG=1", since=hanging) >= 3
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            code = daemon.wait(60)
        except subprocess.TimeoutExpired:
            daemon.send_signal(signal.SIGUSR1)
            time.sleep(1)
            daemon.kill()
            raise AssertionError("daemon did not stop with a hanging bay:\n" + log.read_text()[-6000:]) from None
        finally:
            notify.close()
            good.undock()
            bad.undock()
    assert code == 0, log.read_text()[-2000:]
    verified = dock.cli("verify", "--bucket", dock.bucket_url, "--allowed-signers", str(dock.allowed_signers))
    assert verified.returncode == 0, verified.stdout + verified.stderr
