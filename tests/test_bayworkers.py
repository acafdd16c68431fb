"""Bays in a pool of worker processes (daemon.bay_processes, the default; at most daemon.bay_workers
processes, one per core by default): every bay completes and verifies in no more processes than the
budget, a worker killed mid-pull resumes cleanly, a wedged session's worker is killed and the bays it
shared resume, and the upload pool and bandwidth cap are shared across the workers (checked on the
accounting and on the processes alive, never on timing)."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from bodycam.agent.config import parse, restart_only_changes
from bodycam.agent.service import control
from bodycam.agent.service.bayworker import Share, _Link, _Session, share
from bodycam.agent.storage.interprocess import SharedRate, SharedSlots
from bodycam.drivers.errors import ConfigError, ServiceError

from .dock import CLI, Dock, iso_window, make_dock, window
from .sims import SimProcess

MiB = 1024 * 1024


def _status(dock: Dock) -> dict[str, Any]:
    try:
        return control.request(control.socket_path(dock.config.state_dir), {"cmd": "status"})
    except ServiceError:
        return {"bays": [], "queue": {"uploads_in_progress": 0}}


def _all_synced(status: dict[str, Any], n: int) -> bool:
    bays = status["bays"]
    return len(bays) == n and all(b["state"] == "synced" for b in bays) and not status["queue"]["uploads_in_progress"]


def _start(dock: Dock, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [CLI, "--config", str(dock.config_path), "daemon", "--rescan", "0.3"], stderr=log.open("ab")
    )


def _stop(daemon: subprocess.Popen[bytes], log: Path) -> None:
    daemon.send_signal(signal.SIGTERM)
    try:
        assert daemon.wait(90) == 0, log.read_text()[-3000:]
    except subprocess.TimeoutExpired:
        daemon.kill()
        raise AssertionError("daemon did not stop:\n" + log.read_text()[-3000:]) from None


def _stored(bucket: Path) -> dict[tuple[str, int], int]:
    stored: dict[tuple[str, int], int] = {}
    for path in bucket.rglob("*.age"):
        if "recordings" in path.parts:
            key = (path.parent.name, int(path.stem))
            stored[key] = stored.get(key, 0) + 1
    return stored


def _verify(dock: Dock) -> None:
    verified = dock.cli("verify", "--bucket", dock.bucket_url, "--allowed-signers", str(dock.allowed_signers),
                        "--identity", str(dock.identity_path))  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr


def _worker_processes(daemon_pid: int) -> set[int]:
    """The daemon's bay worker processes alive now: the forkserver's children that are not zombies."""
    found: set[int] = set()
    for server in _children(daemon_pid):
        try:
            if b"forkserver" not in Path(f"/proc/{server}/cmdline").read_bytes():
                continue
        except OSError:
            continue
        for pid in _children(server):
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if state != "Z":
                found.add(pid)
    return found


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            kids += [int(k) for k in (task / "children").read_text().split()]
    except OSError:
        pass
    return kids


def test_eight_bays_on_a_two_worker_budget_run_in_two_processes_complete_verify_and_share_one_cap(
    tmp_path: Path,
) -> None:
    """Eight cameras at once on a dock of two worker processes (``daemon.bay_workers = 2``, as a 2-core dock
    gets by default): the sessions run in processes other than the daemon, never more than two of them at
    any time although more than two bays are busy at once (several sessions share a worker), every
    training recording arrives exactly once and verifies, and every byte uploaded went through the one
    shared bandwidth cap (its count equals the ciphertext in the bucket)."""
    win = window()
    sims = [
        SimProcess("usbip", f"BAY-{i}", "--recordings", "3", "--training", "2", "--size", str(2 * MiB),
                   "--exercise", iso_window(win), truth_dir=tmp_path)
        for i in range(8)
    ]  # fmt: skip
    bucket = tmp_path / "bucket"
    log = tmp_path / "daemon.log"
    try:
        dock = make_dock(tmp_path / "dock", bucket.as_uri())
        with dock.config_path.open("a") as f:  # still in [upload]: a cap high enough not to slow the test
            f.write("workers = 3\nbandwidth_limit_mbps = 100000\n")
            f.write("[cameras]\nusbip = [" + ", ".join(f'"{s.address}"' for s in sims) + "]\n")
            f.write("[daemon]\nbay_workers = 2\n")
        dock.enroll(*(s.serial for s in sims))
        dock.exercise("EX-BAYS", win, *(s.serial for s in sims))
        daemon = _start(dock, log)
        workers: set[int] = set()
        most_busy = 0
        try:
            deadline = time.monotonic() + 240
            status = _status(dock)
            while not _all_synced(status, 8) and time.monotonic() < deadline:
                now = {b["worker_pid"] for b in status["bays"] if b.get("worker_pid")}
                alive = _worker_processes(daemon.pid)
                assert len(now) <= 2 and len(alive) <= 2, (now, alive, status)
                most_busy = max(most_busy, sum(1 for b in status["bays"] if b.get("worker_pid")))
                workers |= now
                assert not any(b["state"] == "error" for b in status["bays"]), status
                time.sleep(0.2)
                status = _status(dock)
            assert _all_synced(status, 8), f"{status}\n{log.read_text()[-3000:]}"
            assert workers and daemon.pid not in workers, workers  # sessions ran in processes of their own
            assert most_busy > 2, most_busy  # so the two processes did run several sessions each
            assert all(b["worker_pid"] is None for b in status["bays"])  # and ended with them
            run_dir = control.socket_path(dock.config.state_dir).parent / "bays"
            granted = SharedRate(run_dir / "upload.rate", 1.0).granted()
        finally:
            _stop(daemon, log)
    finally:
        for s in sims:
            s.stop()
    expected = {(s.serial, rid) for s in sims for rid in s.training()}
    stored = _stored(bucket)
    assert set(stored) == expected and all(n == 1 for n in stored.values()), stored
    rows = dock.journal().query("SELECT SUM(ciphertext_size), COUNT(*) FROM recordings WHERE state='verified'")
    assert rows[0][1] == len(expected)
    assert granted == rows[0][0]  # every part of every worker was counted against the one cap
    _verify(dock)


def test_a_worker_killed_mid_pull_resumes_cleanly(tmp_path: Path) -> None:
    """SIGKILL the worker of a bay in the middle of a pull, with one upload slot for the whole dock: the
    daemon reports the bay's failure, retries it, and the retry resumes (the slot and the batch lock the
    dead worker held are free again: flock dies with it); each recording is in the bucket once."""
    win = window()
    sim = SimProcess("usbip", "CAM-KILL", "--recordings", "2", "--training", "2", "--size", str(24 * MiB),
                     "--exercise", iso_window(win), truth_dir=tmp_path)  # fmt: skip
    bucket = tmp_path / "bucket"
    log = tmp_path / "daemon.log"
    try:
        dock = make_dock(tmp_path / "dock", bucket.as_uri())
        with dock.config_path.open("a") as f:  # one slot, and slow enough (5 MB/s) to be caught mid-pull
            f.write("workers = 1\nbandwidth_limit_mbps = 40\n")
            f.write(f'[cameras]\nusbip = ["{sim.address}"]\n')
        dock.enroll(sim.serial)
        dock.exercise("EX-KILL", win, sim.serial)
        daemon = _start(dock, log)
        try:
            deadline = time.monotonic() + 120
            victim = None
            while victim is None and time.monotonic() < deadline:
                for bay in _status(dock)["bays"]:
                    if bay["worker_pid"] and 0 < bay["bytes_done"] < bay["bytes_total"]:
                        victim = bay["worker_pid"]
                time.sleep(0.05)
            assert victim is not None, log.read_text()[-3000:]
            os.kill(victim, signal.SIGKILL)
            deadline = time.monotonic() + 180
            seen_error = False
            status = _status(dock)
            while not _all_synced(status, 1) and time.monotonic() < deadline:
                seen_error |= any("SIGKILL" in (b["last_error"] or "") for b in status["bays"])
                time.sleep(0.2)
                status = _status(dock)
            assert _all_synced(status, 1), f"{status}\n{log.read_text()[-3000:]}"
            assert seen_error or "killed by SIGKILL" in log.read_text(), log.read_text()[-3000:]
            assert status["bays"][0]["sessions"] >= 2
        finally:
            _stop(daemon, log)
    finally:
        sim.stop()
    stored = _stored(bucket)
    assert set(stored) == {(sim.serial, rid) for rid in sim.training()} and all(n == 1 for n in stored.values())
    custody = [json.loads(r[0]) for r in dock.journal().query("SELECT line FROM custody ORDER BY seq")]
    assert sum(1 for e in custody if e["event"] == "verified") == 2
    _verify(dock)


def _reserve(path: str, n: int, out: Any) -> None:
    out.put(SharedRate(Path(path), 1.0).reserve(n))


def _hold_slot(directory: str, ready: Any) -> None:
    with SharedSlots(Path(directory), 1).slot():
        ready.set()
        time.sleep(600)


def test_the_bandwidth_cap_and_upload_slots_are_shared_across_processes(tmp_path: Path) -> None:
    """Two processes reserve against one cap of 1 byte/s: the second waits for the first's bytes too
    (about 199 s, not 99: computed, never slept). A slot held by a process killed with SIGKILL is free."""
    ctx = multiprocessing.get_context("spawn")
    rate_path = tmp_path / "upload.rate"
    SharedRate(rate_path, 1.0).reset()
    out = ctx.Queue()
    waits = []
    for _ in range(2):
        proc = ctx.Process(target=_reserve, args=(str(rate_path), 100, out))
        proc.start()
        waits.append(out.get(timeout=60))
        proc.join(60)
    assert SharedRate(rate_path, 1.0).granted() == 200
    assert 90 < waits[0] <= 99 and 190 < waits[1] <= 199, waits

    slots = SharedSlots(tmp_path, 1)
    ready = ctx.Event()
    holder = ctx.Process(target=_hold_slot, args=(str(tmp_path), ready))
    holder.start()
    try:
        assert ready.wait(60)
        assert slots.held() == 1
    finally:
        assert holder.pid is not None
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(60)
    assert slots.held() == 0
    with slots.slot() as number:
        assert number == 0


def test_each_recording_takes_the_bays_share_of_the_docks_part_buffers() -> None:
    """One part-buffer budget for the dock: a bay alone keeps pull's whole ring, bays that share the dock
    get two buffers each (one filling, one uploading), one each once they outnumber the cores. The daemon sends the share with the ack to each
    recording's start, so a worker started while its bay was alone takes the smaller share for the next
    recording once other bays are busy; an ack without one (an older daemon) keeps what the worker had."""
    assert share(1, cores=2) == share(0, cores=2) == share(1, cores=8) == Share(2, None)
    assert share(2, cores=2) == share(8, cores=8) == Share(1, 2)
    assert share(3, cores=2) == share(8, cores=2) == Share(1, 1, 1)
    daemon_end, worker_end = multiprocessing.Pipe()
    link = _Link(worker_end)
    link.sessions[7] = _Session()
    threading.Thread(target=link.serve, daemon=True).start()
    try:
        for ack, expected in (
            (("ack", 7, 1, 1, 1), Share(1, 1, 1)),
            (("ack", 7), Share(1, 1, 1)),
            (("ack", 7, 2, None, 4), Share(2, None)),
        ):

            def pull() -> None:
                link.bind(7)
                link.pulling(("CAM", 1, "x"), True)

            done = threading.Thread(target=pull)
            done.start()
            assert daemon_end.poll(30)
            assert daemon_end.recv() == ("pulling", 7, ("CAM", 1, "x"), True)
            daemon_end.send(ack)
            done.join(30)
            assert not done.is_alive() and link.share == expected
    finally:
        daemon_end.close()
        worker_end.close()


def test_a_pulls_byte_counts_reach_the_daemon_at_most_twice_a_second() -> None:
    """Each message to the daemon costs the worker and the daemon CPU (pickle, pipe, wake-up, relay), so a
    session's byte counts are coalesced to one per ``PROGRESS_EVERY_S`` (0.5 s): a 256 MiB recording read
    in 1 MiB frames at 40 MB/s (USB 2.0) sends 15 messages, its last count always among them, where at one
    per 50 ms it sent 135. Other events (a recording's start and end) always go. The link's clock is
    driven by the test: it counts messages, never times them."""
    daemon_end, worker_end = multiprocessing.Pipe()
    now = [1000.0]
    link = _Link(worker_end, clock=lambda: now[0])
    session = _Session()
    size, frame, rate = 256 * 2**20, 2**20, 40e6
    try:
        link.progress(7, session, "recording_start", {"recording": 1, "size": size})
        for done in range(frame, size + 1, frame):
            now[0] += frame / rate
            link.progress(7, session, "recording_bytes", {"recording": 1, "done": done, "size": size})
        link.progress(7, session, "recording_done", {"recording": 1})
        sent = []
        while daemon_end.poll(0):
            sent.append(daemon_end.recv())
    finally:
        daemon_end.close()
        worker_end.close()
    counts = [m[3]["done"] for m in sent if m[2] == "recording_bytes"]
    assert [m[2] for m in sent[:2]] == ["recording_start", "recording_bytes"] and sent[-1][2] == "recording_done"
    assert counts[0] == frame and counts[-1] == size and counts == sorted(counts)
    assert len(counts) <= size / rate / 0.5 + 2  # 15 here; 135 at 20 a second


def _signed(bucket: Path, serial: str) -> set[int]:
    """The camera's recordings listed in a manifest in the bucket."""
    return {
        r["recording_id"]
        for path in bucket.rglob("manifest.json")
        for r in json.loads(path.read_text())["recordings"]
        if r["camera_serial"] == serial
    }


def test_a_wedged_bay_s_worker_is_killed_and_the_bay_sharing_it_resumes(tmp_path: Path) -> None:
    """One worker process for the dock (``daemon.bay_workers = 1``): a good camera and one that hangs
    mid-read share it. The hanging session is given up after ``daemon.stall_timeout_s`` and, as it does
    not stop when asked (its read is still inside the link's own 3 x 5 s), its worker is killed; the good
    bay it shared is requeued at once (never an error), resumes from the journal, and its footage is signed
    on schedule and verifies, each recording once; the hanging bay is retried in a worker of its own."""
    win = window()
    good = SimProcess("usbip", "CAM-SHARE", "--recordings", "2", "--training", "2", "--size", str(64 * MiB),
                      "--exercise", iso_window(win), "--fault", "stall-ms=400", truth_dir=tmp_path)  # fmt: skip
    bad = SimProcess("usbip", "CAM-WEDGE", "--recordings", "1", "--training", "1", "--size", str(8 * MiB),
                     "--exercise", iso_window(win), "--fault", f"hang-read-at={MiB}", truth_dir=tmp_path)  # fmt: skip
    bucket = tmp_path / "bucket"
    log = tmp_path / "daemon.log"
    try:
        dock = make_dock(tmp_path / "dock", bucket.as_uri())
        with dock.config_path.open("a") as f:
            f.write(f'[cameras]\nusbip = ["{bad.address}", "{good.address}"]\n')
            f.write("[daemon]\nbay_workers = 1\nstall_timeout_s = 4\n")  # below the link's own 3 x 5 s
            f.write("[batch]\nmax_age_s = 1\n")  # the batch is sealed on schedule without the hanging upload
        dock.enroll(good.serial, bad.serial)
        dock.exercise("EX-WEDGE", win, good.serial, bad.serial)
        daemon = _start(dock, log)
        try:
            deadline = time.monotonic() + 240
            shared = alone = False
            mine: dict[str, Any] | None = None
            status = _status(dock)
            while time.monotonic() < deadline:
                bays = {b["camera"]: b for b in status["bays"]}
                mine = bays.get(good.serial)
                if mine is not None:
                    assert mine["state"] != "error", f"{mine}\n{log.read_text()[-3000:]}"
                    other = bays.get(bad.serial)
                    shared |= bool(other and mine["worker_pid"] and mine["worker_pid"] == other["worker_pid"])
                    # retried after the kill, the hanging bay runs in a second process while the good one's
                    # runs: beyond the budget of one, which only a bay that must run alone gets
                    alone |= bool(
                        other and other["sessions"] >= 2 and other["worker_pid"] and mine["worker_pid"]
                        and other["worker_pid"] != mine["worker_pid"]
                    )  # fmt: skip
                    if mine["state"] == "synced" and _signed(bucket, good.serial) == set(good.training()):
                        break
                time.sleep(0.1)
                status = _status(dock)
            text = log.read_text()
            assert mine is not None and mine["state"] == "synced", f"{status}\n{text[-3000:]}"
            assert shared, text[-3000:]  # the two sessions did run in one worker
            assert alone, text[-3000:]  # the hanging bay's retry did not share the good bay's worker
            assert "killing its worker" in text and "requeueing the 1 other bay" in text, text[-3000:]
            assert "killed to give up bay" in text, text[-3000:]
            assert mine["sessions"] >= 2, mine
        finally:
            _stop(daemon, log)
    finally:
        good.stop()
        bad.stop()
    stored = _stored(bucket)
    assert {k: n for k, n in stored.items() if k[0] == good.serial} == {(good.serial, r): 1 for r in good.training()}
    rows = dock.journal().query("SELECT COUNT(*) FROM recordings WHERE state='verified' AND serial=?", (good.serial,))
    assert rows[0][0] == 2
    _verify(dock)


_PRELOAD_PROBE = """
import json
import sys

from bodycam.agent.service import bayworker


def probe(conn):
    from bodycam.agent.storage import bucket

    conn.send([bucket._LOADER is not None, "botocore.client" in sys.modules, "bodycam.agent.storage.s3put" in sys.modules])


if __name__ == "__main__":
    bayworker.start_server(s3=sys.argv[1] == "s3")
    ctx = bayworker.context()
    ours, theirs = ctx.Pipe()
    worker = ctx.Process(target=probe, args=(theirs,))
    worker.start()
    print(json.dumps(ours.recv()))
    worker.join(60)
"""


def test_workers_of_a_daemon_on_s3_start_with_botocore_and_its_models_loaded(tmp_path: Path) -> None:
    """A daemon on an S3 bucket has its forkserver load botocore and S3's models once, so a bay worker
    only builds its client (each worker imported and parsed them at every docking: 0.27-0.48 CPU s, a
    second per GiB of a 256 MiB docking; issue 14); on a local bucket neither is loaded at all."""
    script = tmp_path / "probe.py"
    script.write_text(_PRELOAD_PROBE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") or k == "AWS_CA_BUNDLE"}
    static = {**env, "AWS_ACCESS_KEY_ID": "key", "AWS_SECRET_ACCESS_KEY": "secret"}
    seen = {}
    for bucket, environ in (("s3", env), ("local", env), ("s3-static", static)):
        out = subprocess.run(
            [sys.executable, str(script), bucket.split("-")[0]],
            capture_output=True, text=True, timeout=180, check=True, env=environ,
        )  # fmt: skip
        seen[bucket] = json.loads(out.stdout.strip().splitlines()[-1])
    # with static keys in its environment (as /etc/bodycam/environment gives them) a docking's S3 requests are
    # the agent's own (agent/storage/s3http.py): its modules are preloaded, botocore is not
    assert seen == {"s3": [True, True, True], "local": [False, False, False], "s3-static": [False, False, True]}


def test_the_worker_budget_is_one_per_core_by_default_bounded_and_reloadable() -> None:
    """``daemon.bay_workers``: 0 (one worker per core) unless set; a negative, boolean or too large value is
    one line naming the key; a reload may change it (it applies to the sessions that start after)."""
    base = {"dock_id": "dock-1", "state_dir": "/tmp/x"}
    assert parse(base).bay_workers == 0
    assert parse({**base, "daemon": {"bay_workers": 2}}).bay_workers == 2
    for bad in (-1, 65, True, "2"):
        with pytest.raises(ConfigError, match=r"daemon\.bay_workers.*between 0 \(one per core\) and 64"):
            parse({**base, "daemon": {"bay_workers": bad}})
    assert restart_only_changes(parse(base), parse({**base, "daemon": {"bay_workers": 3}})) == []
