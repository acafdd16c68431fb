"""Witnesses (issue 13 items 2-3), each a separate ``bodycam-sync witness serve`` process: the dock's
checkpoints are cosigned by both, a witness that was down catches up, a forked log is refused, and
verify --policy catches the newest batches deleted from the bucket without --expect-head."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import stat
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bodycam.agent.formats import cosignature, note, witnessapi, witnesspolicy
from bodycam.agent.formats.sshsig import generate_key, load_private_key
from bodycam.agent.storage import docklog, witnessclient
from bodycam.drivers.virtual.server import device_key_hex

from . import tlogcheck as gocheck
from .dock import CLI, DOCK_ID, Dock, make_dock

ORIGIN = docklog.origin(DOCK_ID)


class WitnessProcess:
    """``bodycam-sync witness serve`` in its own process; ``restart`` keeps its port and state."""

    def __init__(self, root: Path, name: str, policy: Path, port: int = 0) -> None:
        self.root, self.name, self.policy = root, name, policy
        self.key = root / "witness_ed25519"
        if not self.key.exists():
            root.mkdir(parents=True, exist_ok=True)
            out = subprocess.run(
                [CLI, "witness", "init", "--out", str(self.key), "--name", name],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
            self.vkey = out.stdout.strip()
        self.port = port
        self.proc: subprocess.Popen[str] | None = None

    def start(self, *, umask: int | None = None) -> WitnessProcess:
        cmd = [CLI, "-v", "witness", "serve", "--listen", f"127.0.0.1:{self.port}", "--key", str(self.key)]
        cmd += ["--name", self.name, "--state", str(self.root / "state"), "--policy", str(self.policy)]
        preexec = (lambda: os.umask(umask)) if umask is not None else None
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=preexec)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(
                f"witness serve {self.name} failed: {self.proc.stderr.read() if self.proc.stderr else ''}"
            )
        info = json.loads(line)
        self.port = int(info["listen"].rsplit(":", 1)[1])
        self.vkey = info["vkey"]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> str:
        """Stop it (SIGTERM) and return what it wrote on stderr."""
        if self.proc is None:
            return ""
        self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        self.proc = None
        return err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def witnessed_dock(
    root: Path, *, timeout_s: int, config: str = ""
) -> tuple[Dock, str, WitnessProcess, WitnessProcess, Path]:
    """A dock (bucket ``root/bucket``) whose [witnesses] policy names two witness processes, ``ho`` and
    ``auditor``, and needs both (group ``both``); the witnesses are not started yet. Returns the dock,
    its log's verifier key, the two witnesses and the policy file. ``config`` goes before [witnesses]."""
    dock = make_dock(root / "dock", (root / "bucket").as_uri())
    dock_vkey = docklog.verifier_key(DOCK_ID, load_private_key(dock.root / "keys" / "dock_ed25519"))
    policy = root / "witness.policy"
    policy.write_text(f"log {dock_vkey}\n")  # what the witnesses read; completed below for the dock
    a = WitnessProcess(root / "wa", "witness.example/home-office", policy, _free_port())
    b = WitnessProcess(root / "wb", "witness.example/auditor", policy, _free_port())
    policy.write_text(
        f"log {dock_vkey}\nwitness ho {a.vkey} {a.url}\nwitness auditor {b.vkey} {b.url}\n"
        "group both all ho auditor\nquorum both\n"
    )
    with dock.config_path.open("a") as f:
        f.write(f'{config}[witnesses]\npolicy = "{policy}"\ntimeout_s = {timeout_s}\n')
    return dock, dock_vkey, a, b, policy


@pytest.fixture
def two_witnesses(tmp_path: Path) -> Any:
    """A dock with [witnesses] and two witness processes; the policy needs both (quorum all)."""
    dock, _, a, b, policy = witnessed_dock(tmp_path, timeout_s=5, config="[batch]\ncustody_only_interval_s = 0\n")
    a.start()
    b.start()
    try:
        yield dock, a, b, policy
    finally:
        a.stop()
        b.stop()


def add_batch(dock: Dock, serial: str) -> None:
    """One more sealed and published batch: a custody entry (an enrolment), then ingest --once."""
    enrolled = dock.cli("enroll", serial, "--key", device_key_hex(serial))
    assert enrolled.returncode == 0, enrolled.stderr
    proc = dock.cli("ingest", "--once", "--json", timeout=120)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr


def witnessed(bucket: Path, policy: Path) -> tuple[int, set[str]]:
    data = (bucket / DOCK_ID / "log" / docklog.WITNESSED).read_bytes()
    p = witnesspolicy.load(policy)
    return note.open_checkpoint(data, p.log_verifiers(ORIGIN)).size, p.witnessed(data)


def verify(dock: Dock, policy: Path, *extra: str) -> tuple[int, list[tuple[str, str]]]:
    proc = dock.cli(
        "verify", "--bucket", dock.bucket_url, "--allowed-signers", str(dock.allowed_signers), "--json",
        "--policy", str(policy), *extra,
    )  # fmt: skip
    assert proc.returncode in (0, 1) and "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, [(f["problem"], f["message"]) for f in json.loads(proc.stdout)["findings"]]


def test_two_witnesses_cosign_a_witness_down_catches_up_and_verify_checks_them(two_witnesses: Any) -> None:
    dock, a, b, policy = two_witnesses
    bucket = Path(dock.bucket_url.removeprefix("file://"))
    add_batch(dock, "CAM-W1")
    assert witnessed(bucket, policy) == (1, {"ho", "auditor"})
    assert verify(dock, policy) == (0, [])
    # the auditor's witness is down: sealing and publishing go on, the home office's cosigns alone
    b.stop()
    add_batch(dock, "CAM-W2")
    add_batch(dock, "CAM-W3")
    log = bucket / DOCK_ID / "log"
    assert (log / "checkpoints" / "3").is_file()
    assert witnessed(bucket, policy) == (3, {"ho"})
    rc, findings = verify(dock, policy, "--max-memory", "256")
    assert rc == 1
    assert {p for p, _ in findings} == {"manifest_not_witnessed", "witness_unreachable"}, findings
    assert sum(p == "manifest_not_witnessed" for p, _ in findings) == 2  # batches 2 and 3 (entries 1, 2)
    # back on its port with its state: the next submission proves 1 -> 4 and both cosign again
    b.start()
    add_batch(dock, "CAM-W4")
    assert witnessed(bucket, policy) == (4, {"ho", "auditor"})
    assert witnesspolicy.load(policy).witnessed((log / "witnessed" / "1").read_bytes()) == {"ho", "auditor"}
    assert witnesspolicy.load(policy).witnessed((log / "witnessed" / "3").read_bytes()) == {"ho"}
    served = witnessclient.latest(b.url, ORIGIN)
    assert served is not None and note.parse_checkpoint(note.split_note(served)[0]).size == 4
    assert verify(dock, policy) == (0, [])
    # Go's note.Open, with a cosignature/v1 verifier of its own, reads the same cosigned checkpoints
    dock_vkey = witnesspolicy.load(policy).log_verifiers(ORIGIN)[0]
    go = {"vkey": docklog.verifier_key(DOCK_ID, load_private_key(dock.root / "keys" / "dock_ed25519"))}
    go |= {"origin": ORIGIN, "tiles": str(log), "all_tiles": True, "cosigners": [a.vkey, b.vkey]}
    assert dock_vkey.name == ORIGIN
    assert gocheck.run({**go, "checkpoint": str(log / docklog.WITNESSED)}) == ["checkpoint OK", "tiles OK"]
    lines = gocheck.run({**go, "checkpoint": str(log / "witnessed" / "3")})
    assert lines == ["checkpoint FAIL: no valid cosignature by witness.example/auditor"], lines


def test_deleting_the_newest_batch_is_caught_by_verify_policy_without_expect_head(two_witnesses: Any) -> None:
    dock, _, _, policy = two_witnesses
    bucket = Path(dock.bucket_url.removeprefix("file://"))
    for serial in ("CAM-T1", "CAM-T2"):
        add_batch(dock, serial)
    log = bucket / DOCK_ID / "log"
    # a careful truncation: the newest batch, its tiles, checkpoints and cosigned checkpoints go, and the
    # previous checkpoint is put back as the latest, so the bucket alone is a consistent log of 1 entry
    newest = max((p.parent for p in bucket.rglob("manifest.json")), key=lambda d: d.name)
    shutil.rmtree(newest)
    for name in ("tile/0/000.p/2", "tile/entries/000.p/2", "checkpoints/2", "witnessed/2"):
        (log / name).unlink()
    (log / "checkpoint").write_bytes((log / "checkpoints" / "1").read_bytes())
    (log / docklog.WITNESSED).write_bytes((log / "witnessed" / "1").read_bytes())
    plain = dock.cli("verify", "--bucket", dock.bucket_url, "--allowed-signers", str(dock.allowed_signers))
    assert plain.returncode == 0, plain.stdout  # what the bucket alone cannot show
    rc, findings = verify(dock, policy)
    assert rc == 1
    truncated = [m for p, m in findings if p == "log_truncated"]
    assert len(truncated) == 2 and all("has 2 entries, the bucket's log only 1" in m for m in truncated), findings
    # a sloppier truncation that leaves the newest tile behind is caught from the bucket alone
    (log / "tile/0/000.p/2").write_bytes(b"\0" * 64)
    (log / "notes.txt").write_text("added")
    plain = dock.cli("verify", "--bucket", dock.bucket_url, "--allowed-signers", str(dock.allowed_signers), "--json")
    strays = [f["key"] for f in json.loads(plain.stdout)["findings"] if f["problem"] == "log_unlisted_object"]
    assert sorted(strays) == [f"{DOCK_ID}/log/notes.txt", f"{DOCK_ID}/log/tile/0/000.p/2"], plain.stdout


def test_a_forked_log_is_refused_by_the_witnesses(two_witnesses: Any, tmp_path: Path) -> None:
    dock, a, b, policy = two_witnesses
    add_batch(dock, "CAM-F1")
    # a second journal with the same dock id and key, whose first leaf is another batch
    fork = make_dock(tmp_path / "fork", (tmp_path / "fork-bucket").as_uri())
    shutil.copy(dock.root / "keys" / "dock_ed25519", fork.root / "keys" / "dock_ed25519")
    with fork.config_path.open("a") as f:
        f.write(f'[batch]\ncustody_only_interval_s = 0\n[witnesses]\npolicy = "{policy}"\ntimeout_s = 5\n')
    add_batch(fork, "CAM-OTHER")
    fork_log = tmp_path / "fork-bucket" / DOCK_ID / "log"
    assert not (fork_log / docklog.WITNESSED).exists()  # neither witness cosigned the fork's size 1
    signed_1 = (fork_log / "checkpoint").read_bytes()
    for w in (a, b):
        with pytest.raises(witnessclient.WitnessConflict) as conflict:
            witnessclient.add_checkpoint(w.url, 1, [], signed_1)  # same size, another root: 409
        assert conflict.value.size == 1
    add_batch(fork, "CAM-OTHER2")
    assert not (fork_log / docklog.WITNESSED).exists()
    signed_2 = (fork_log / "checkpoint").read_bytes()
    fork_agent = fork.agent()
    try:
        from bodycam.agent.formats import tlog
        from bodycam.agent.storage.docklog import JournalHashStore

        tree = tlog.Tree.view(JournalHashStore(lambda s, p: fork_agent.journal.query(s, tuple(p)), ORIGIN), 2)
        proof = tree.consistency_proof(1, 2)
    finally:
        fork_agent.close()
    for w in (a, b):
        with pytest.raises(witnessclient.WitnessRefused) as refused:
            witnessclient.add_checkpoint(w.url, 1, proof, signed_2)  # its proof is from its own size 1: 422
        assert refused.value.status == 422
    # the honest dock goes on being cosigned
    add_batch(dock, "CAM-F2")
    assert witnessed(Path(dock.bucket_url.removeprefix("file://")), policy) == (2, {"ho", "auditor"})
    err = a.stop()
    assert "refused checkpoint" in err and "the log forked" in err, err


def _post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
    req = urllib.request.Request(url + "/add-checkpoint", data=body, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type", ""), err.read()


def test_the_witness_answers_as_tlog_witness_says_and_keeps_its_state_private(tmp_path: Path) -> None:
    log_key = Ed25519PrivateKey.generate()
    policy = tmp_path / "policy"
    policy.write_text(f"log {note.verifier_key(ORIGIN, log_key.public_key())}\n")
    w = WitnessProcess(tmp_path / "w", "witness.example/w", policy).start(umask=0o022)
    try:
        cosigner = cosignature.parse_verifier_key(w.vkey)
        from bodycam.agent.formats import tlog

        tree = tlog.Tree(tlog.MemoryHashStore())
        for i in range(5):
            tree.append(f"entry {i}".encode())

        def signed(size: int, key: Ed25519PrivateKey = log_key, origin: str = ORIGIN) -> bytes:
            return note.sign_checkpoint(note.Checkpoint(origin, size, tree.root(size)), origin, key)

        status, _, body = _post(w.url, witnessapi.encode_request(0, [], signed(3)))
        assert status == 200
        cp_text = note.Checkpoint(ORIGIN, 3, tree.root(3)).text()
        assert cosignature.verify_line(body.decode().rstrip("\n"), cp_text, [cosigner]) is not None
        status, ctype, body = _post(w.url, witnessapi.encode_request(0, [], signed(4)))
        assert (status, ctype, body) == (409, "text/x.tlog.size", b"3\n")
        status, _, _ = _post(w.url, witnessapi.encode_request(3, [bytes(32)], signed(5)))
        assert status == 422
        status, _, _ = _post(w.url, witnessapi.encode_request(3, tree.consistency_proof(3, 5), signed(5)))
        assert status == 200
        assert _post(w.url, witnessapi.encode_request(5, [], signed(5)))[0] == 200  # the same again
        assert _post(w.url, witnessapi.encode_request(5, [], signed(4)))[0] == 400  # old > size
        other = Ed25519PrivateKey.generate()
        assert _post(w.url, witnessapi.encode_request(5, [], signed(5, other)))[0] == 403
        assert _post(w.url, witnessapi.encode_request(0, [], signed(1, other, "elsewhere/log")))[0] == 404
        assert _post(w.url, b"old 01\n\n" + signed(5))[0] == 400
        assert _post(w.url, b"x" * (witnessapi.MAX_REQUEST + 1))[0] == 413
        served = witnessclient.latest(w.url, ORIGIN)
        assert served is not None and cosignature.cosignatures(served, [cosigner])
        assert witnessclient.latest(w.url, "elsewhere/log") is None
    finally:
        w.stop()
    state = tmp_path / "w" / "state"
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in state.iterdir()), list(state.iterdir())


def test_witness_serve_refuses_a_bad_policy_or_key_in_one_line(tmp_path: Path) -> None:
    policy = tmp_path / "policy"
    policy.write_text("witness a b\n")
    key = tmp_path / "k"
    generate_key(key, "w")
    proc = subprocess.run(
        [CLI, "witness", "serve", "--listen", "127.0.0.1:0", "--key", str(key), "--name", "w", "--state",
         str(tmp_path / "s"), "--policy", str(policy)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2 and "line 1" in proc.stderr and len(proc.stderr.splitlines()) == 1, proc.stderr


def test_a_hanging_witness_holds_nothing_back(tmp_path: Path) -> None:
    """A witness that accepts the connection and never answers costs the dock its timeout after
    publishing: the batch is sealed and published, the run succeeds, and the next run asks again."""
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # connections complete in the backlog and are never read
    port = silent.getsockname()[1]
    wkey = Ed25519PrivateKey.generate()
    dock_vkey = docklog.verifier_key(DOCK_ID, load_private_key(dock.root / "keys" / "dock_ed25519"))
    policy = tmp_path / "policy"
    policy.write_text(
        f"log {dock_vkey}\nwitness w {cosignature.verifier_key('w', wkey.public_key())} http://127.0.0.1:{port}\n"
        "quorum w\n"
    )
    with dock.config_path.open("a") as f:
        f.write(f'[batch]\ncustody_only_interval_s = 0\n[witnesses]\npolicy = "{policy}"\ntimeout_s = 1\n')
    try:
        add_batch(dock, "CAM-H1")
        add_batch(dock, "CAM-H2")
    finally:
        silent.close()
    log = tmp_path / "bucket" / DOCK_ID / "log"
    assert (log / "checkpoints" / "2").is_file() and not (log / docklog.WITNESSED).exists()
    rc, findings = verify(dock, policy)
    assert rc == 1 and {p for p, _ in findings} == {"manifest_not_witnessed", "witness_unreachable"}, findings


def test_a_long_log_is_read_whatever_max_memory_and_only_an_absurd_size_is_refused(tmp_path: Path) -> None:
    """The log is checked in one pass in O(log n) memory (issue 14 item 6), so --max-memory no longer
    caps the entries a checkpoint may claim: 300,000 at the minimum 128 MiB are read and found wanting
    (before, 128 MiB refused them as ``log_too_large``); only a size over logcheck.MAX_ENTRIES is refused
    before anything is read."""
    from bodycam.agent.audit import logcheck

    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    with dock.config_path.open("a") as f:
        f.write("[batch]\ncustody_only_interval_s = 0\n")
    add_batch(dock, "CAM-M1")
    key = load_private_key(dock.root / "keys" / "dock_ed25519")
    checkpoint = tmp_path / "bucket" / DOCK_ID / "log" / "checkpoint"

    def problems(size: int, *extra: str) -> set[str]:
        checkpoint.write_bytes(note.sign_checkpoint(note.Checkpoint(ORIGIN, size, bytes(32)), ORIGIN, key))
        proc = dock.cli(
            "verify", "--bucket", dock.bucket_url, "--allowed-signers", str(dock.allowed_signers), "--json", *extra
        )
        return {f["problem"] for f in json.loads(proc.stdout)["findings"]}

    found = problems(300_000, "--max-memory", "128")
    assert "log_entries_unreadable" in found and "log_too_large" not in found, found
    assert "log_too_large" in problems(logcheck.MAX_ENTRIES + 1)


def test_witnesses_config_is_checked_and_a_bad_policy_stops_the_dock_in_one_line(tmp_path: Path) -> None:
    from bodycam.agent import config as config_mod
    from bodycam.drivers.errors import ConfigError

    base = {"dock_id": "d", "state_dir": str(tmp_path / "s")}
    cfg = config_mod.parse({**base, "witnesses": {"policy": "/p", "retry_s": 5}})
    assert cfg.witnesses is not None and cfg.witnesses.retry_s == 5 and cfg.witnesses.timeout_s == 10
    for bad, error in (
        ({"policy": "/p", "retries": 1}, "unknown config key 'witnesses.retries'"),
        ({"policy": "/p", "timeout_s": 301}, "witnesses.timeout_s"),
        ({"timeout_s": 1}, "witnesses.policy' is required"),
    ):
        with pytest.raises(ConfigError, match=error):
            config_mod.parse({**base, "witnesses": bad})
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    policy = tmp_path / "policy"
    policy.write_text("witness w not-a-key\n")
    with dock.config_path.open("a") as f:
        f.write(f'[witnesses]\npolicy = "{policy}"\n')
    proc = dock.cli("ingest", "--once")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert f"witness policy {policy} line 1" in proc.stderr


def test_concurrent_submissions_never_roll_the_witness_back(tmp_path: Path) -> None:
    """tlog-witness's race: requests with the same old size and different new sizes, all at once. Only
    one may be cosigned; the others learn the new size (409), and the stored size never goes back."""
    import threading

    from bodycam.agent.formats import tlog
    from bodycam.agent.service.witness import Witness
    from bodycam.agent.storage.witnessstate import WitnessState

    log_key = Ed25519PrivateKey.generate()
    policy = witnesspolicy.parse(f"log {note.verifier_key(ORIGIN, log_key.public_key())}\n")
    w = Witness("w", Ed25519PrivateKey.generate(), policy, WitnessState(tmp_path / "state"))
    tree = tlog.Tree(tlog.MemoryHashStore())
    for i in range(40):
        tree.append(b"%d" % i)
    answers: dict[int, int] = {}
    start = threading.Barrier(20)

    def submit(size: int) -> None:
        signed = note.sign_checkpoint(note.Checkpoint(ORIGIN, size, tree.root(size)), ORIGIN, log_key)
        start.wait()
        answers[size] = w.add_checkpoint(witnessapi.encode_request(0, [], signed)).status

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(21, 41)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [n for n, status in answers.items() if status == 200]
    assert len(winners) == 1 and sorted(set(answers.values())) == [200, 409], answers
    latest = w.state.latest(ORIGIN)
    assert latest is not None and latest.size == winners[0]
    w.state.close()


def _wait_for(path: Path, within: float, what: str, log: Path, text: str | None = None) -> None:
    """Poll until ``path`` exists (and, with ``text``, holds it)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if path.exists() and (text is None or text in path.read_text()):
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} never appeared: {log.read_text()[-3000:]}")


def test_the_daemon_publishes_while_its_witness_is_down_and_catches_it_up_from_its_loop(tmp_path: Path) -> None:
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    dock_vkey = docklog.verifier_key(DOCK_ID, load_private_key(dock.root / "keys" / "dock_ed25519"))
    policy = tmp_path / "witness.policy"
    policy.write_text(f"log {dock_vkey}\n")
    w = WitnessProcess(tmp_path / "w", "witness.example/w", policy, _free_port())
    policy.write_text(f"log {dock_vkey}\nwitness w {w.vkey} {w.url}\nquorum w\n")
    with dock.config_path.open("a") as f:
        f.write(f'[batch]\ncustody_only_interval_s = 0\n[witnesses]\npolicy = "{policy}"\ntimeout_s = 2\nretry_s = 1\n')
    assert dock.cli("enroll", "CAM-D1", "--key", device_key_hex("CAM-D1")).returncode == 0
    log = tmp_path / "daemon.log"
    daemon = subprocess.Popen([CLI, "-v", "--config", str(dock.config_path), "daemon"], stderr=log.open("ab"))
    bucket_log = tmp_path / "bucket" / DOCK_ID / "log"
    try:
        _wait_for(bucket_log / "checkpoints" / "1", 120, "the custody-only batch", log)  # sealed, witness down
        # the daemon's submission runs in a thread of its own: on a busy machine it may not have tried yet, so
        # wait until it has failed against the witness that is down (once per retry) before starting it
        deadline = time.monotonic() + 120
        while "witness w:" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "witness w:" in log.read_text(), log.read_text()[-3000:]
        assert not (bucket_log / docklog.WITNESSED).exists()
        w.start()
        _wait_for(bucket_log / docklog.WITNESSED, 120, "the cosigned checkpoint", log)
    finally:
        daemon.terminate()
        daemon.wait(60)
        w.stop()
    assert witnessed(tmp_path / "bucket", policy) == (1, {"w"})


def test_a_client_that_never_sends_its_body_is_dropped_and_holds_no_one_else_up(tmp_path: Path) -> None:
    log_key = Ed25519PrivateKey.generate()
    policy = tmp_path / "policy"
    policy.write_text(f"log {note.verifier_key(ORIGIN, log_key.public_key())}\n")
    w = WitnessProcess(tmp_path / "w", "witness.example/w", policy).start()
    try:
        stuck = [socket.create_connection(("127.0.0.1", w.port), timeout=60) for _ in range(20)]
        for s in stuck:  # more than the 16 requests handled at once, each promising a body it never sends
            s.sendall(b"POST /add-checkpoint HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nold")
        signed = note.sign_checkpoint(note.Checkpoint(ORIGIN, 0, tlog_empty_root()), ORIGIN, log_key)
        status, _, _ = _post(w.url, witnessapi.encode_request(0, [], signed))
        assert status == 200  # served while the others wait
        for s in stuck:  # each is dropped by the witness's deadline (10 s), not kept open
            assert s.recv(1024) == b""
            s.close()
    finally:
        w.stop()


def tlog_empty_root() -> bytes:
    from bodycam.agent.formats import tlog

    return tlog.EMPTY_ROOT


class TricklingWitness:
    """A hostile witness: answers one byte at a time, each well within the socket timeout, of its status
    line (``where="status"``), its headers or its body, for as long as the client keeps reading."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.stop = threading.Event()
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(8)
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        head = {"status": b"", "headers": b"HTTP/1.1 200 OK\r\n", "body": b"HTTP/1.1 200 OK\r\n\r\n"}[self.where]
        with conn, contextlib.suppress(OSError):
            conn.recv(65536)
            conn.sendall(head)
            while not self.stop.is_set():
                conn.sendall(b"H" if self.where == "status" else b"x")
                time.sleep(0.2)

    def close(self) -> None:
        self.stop.set()
        self.server.close()


@pytest.mark.parametrize("where", ["status", "headers", "body"])
def test_a_witness_trickling_its_answer_costs_the_timeout_not_a_hang(where: str) -> None:
    """The timeout bounds a whole exchange with a witness: a socket timeout alone let a witness sending a
    byte every 0.2 s hold the dock (or verify --policy) for hours. One line, WitnessUnavailable."""
    witness = TricklingWitness(where)
    outcome: dict[str, BaseException] = {}

    def ask(name: str, call: Any) -> None:
        try:
            call()
        except BaseException as err:  # recorded for the assertion below
            outcome[name] = err

    calls = {
        "latest": lambda: witnessclient.latest(witness.url, ORIGIN, timeout=1),
        "add": lambda: witnessclient.add_checkpoint(witness.url, 0, [], b"x\n", timeout=1),
    }
    threads = [threading.Thread(target=ask, args=item, daemon=True) for item in calls.items()]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)  # generous on a busy machine; before the fix these ran for hours
        assert not any(t.is_alive() for t in threads), f"a call to a trickling witness ({where}) did not return"
    finally:
        witness.close()
    for name in calls:
        err = outcome.get(name)
        assert isinstance(err, witnessclient.WitnessUnavailable), (name, err)
        assert "did not answer within 1 s" in str(err) and "\n" not in str(err), str(err)


def test_a_witness_s_bad_status_line_is_one_line() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def answer() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 99999999999 x\r\n\r\n")

    threading.Thread(target=answer, daemon=True).start()
    try:
        with pytest.raises(witnessclient.WitnessUnavailable) as err:
            witnessclient.latest(f"http://127.0.0.1:{server.getsockname()[1]}", ORIGIN, timeout=30)
    finally:
        server.close()
    assert "\n" not in str(err.value) and "99999999999 x" in str(err.value), repr(str(err.value))


class LyingOnceWitness:
    """A real witness (agent/service/witness.py, in this process) behind an HTTP front that answers the
    first ``lies`` add-checkpoint requests with a 409 claiming a size far beyond the dock's log (a
    misbehaving, restored or hostile witness), then passes every request through."""

    def __init__(self, root: Path, policy: witnesspolicy.Policy, lies: int = 1) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from bodycam.agent.service.witness import Witness
        from bodycam.agent.storage.witnessstate import WitnessState

        self.witness = Witness("w.example/lying", Ed25519PrivateKey.generate(), policy, WitnessState(root))
        self.lies, self.asked = lies, 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.asked += 1
                if outer.asked <= outer.lies:
                    status, ctype, data = 409, witnessapi.SIZE_TYPE, b"1000000\n"
                else:
                    answer = outer.witness.add_checkpoint(body)
                    status, ctype, data = answer.status, answer.content_type, answer.body
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.witness.state.close()


def test_a_witness_s_409_beyond_the_log_is_not_kept_so_the_next_attempt_asks_again(tmp_path: Path) -> None:
    """A 409 naming a size larger than the dock's log was journaled as the witness's view, and every
    later attempt stopped at 'has cosigned size 1000000, larger than this dock's log' without asking the
    witness: one bad answer ended the dock's witnessing by it until the log grew past that size. Now
    that answer is an error of its attempt only, and the next run is cosigned."""
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    dock_vkey = docklog.verifier_key(DOCK_ID, load_private_key(dock.root / "keys" / "dock_ed25519"))
    witness = LyingOnceWitness(tmp_path / "wstate", witnesspolicy.parse(f"log {dock_vkey}\n"))
    policy = tmp_path / "policy"
    policy.write_text(f"log {dock_vkey}\nwitness w {witness.witness.vkey()} {witness.url}\nquorum w\n")
    with dock.config_path.open("a") as f:
        f.write(f'[batch]\ncustody_only_interval_s = 0\n[witnesses]\npolicy = "{policy}"\ntimeout_s = 5\n')
    log = tmp_path / "bucket" / DOCK_ID / "log"
    try:
        add_batch(dock, "CAM-L1")  # the witness lies: nothing cosigned
        assert witness.asked == 1 and not (log / docklog.WITNESSED).exists()
        add_batch(dock, "CAM-L2")  # asked again, from 0; cosigns the whole log
        assert witness.asked == 2, "the dock did not ask the witness again after its one bad answer"
        size, names = witnessed(tmp_path / "bucket", policy)
        assert (size, names) == (2, {"w"})
    finally:
        witness.close()


def _threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads line")


def test_clients_trickling_their_headers_are_dropped_and_cost_a_bounded_number_of_threads(tmp_path: Path) -> None:
    """Each connection cost the witness a thread, and its request line and headers had no deadline in all
    (the socket timeout bounds each read): 300 clients sending a byte a second held 300 threads for as
    long as they kept sending. Now a request's headers are read within 10 s, and at most 64 connections
    are served at once (more are closed on arrival); a well-behaved request is still answered after."""
    log_key = Ed25519PrivateKey.generate()
    policy = tmp_path / "policy"
    policy.write_text(f"log {note.verifier_key(ORIGIN, log_key.public_key())}\n")
    w = WitnessProcess(tmp_path / "w", "witness.example/w", policy).start()
    assert w.proc is not None
    clients = [socket.create_connection(("127.0.0.1", w.port), timeout=60) for _ in range(300)]
    for s in clients:
        s.setblocking(False)  # recv answers at once: b"" once the witness closed it, else BlockingIOError
    most = 0
    try:
        for _ in range(60):  # a byte a second to each client the witness has not closed
            for s in list(clients):
                try:
                    if s.recv(1) != b"":
                        continue  # an answer (the witness refusing): it closes next
                except BlockingIOError:
                    with contextlib.suppress(OSError):
                        s.send(b"G")
                    continue
                except OSError:
                    pass
                clients.remove(s)
                s.close()
            most = max(most, _threads(w.proc.pid))
            if not clients:
                break
            time.sleep(1)
        assert most <= 2 * 64 + 16, f"the witness ran {most} threads for 300 trickling clients"
        assert not clients, f"{len(clients)} trickling clients still held open after 60 s"
        signed = note.sign_checkpoint(note.Checkpoint(ORIGIN, 0, tlog_empty_root()), ORIGIN, log_key)
        status, _, _ = _post(w.url, witnessapi.encode_request(0, [], signed))
        assert status == 200
    finally:
        for s in clients:
            s.close()
        w.stop()


def test_verify_asks_a_witness_that_did_not_answer_once_not_once_per_dock(tmp_path: Path) -> None:
    """verify --policy asks each witness for each dock of the policy, each ask bounded by 10 s: a witness
    that swallowed connections cost a force's policy (thousands of docks) that long per dock. A witness
    that could not be reached is now asked once per run; every dock still gets its witness_unreachable
    finding. Before: one connection per dock (3 here)."""
    from bodycam.agent.formats.sshsig import public_key_line

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[int] = []

    def hang_up() -> None:  # accepts each connection and closes it unanswered
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            accepted.append(1)
            conn.close()

    threading.Thread(target=hang_up, daemon=True).start()
    docks = ("dock-a", "dock-b", "dock-c")
    wkey = Ed25519PrivateKey.generate().public_key()
    policy = tmp_path / "policy"
    policy.write_text(
        "".join(f"log {docklog.verifier_key(d, Ed25519PrivateKey.generate())}\n" for d in docks)
        + f"witness w {cosignature.verifier_key('w.example', wkey)} http://127.0.0.1:{server.getsockname()[1]}\n"
        + "quorum w\n"
    )
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f"dock-a {public_key_line(Ed25519PrivateKey.generate().public_key())}\n")
    (tmp_path / "bucket").mkdir()
    try:
        proc = subprocess.run(
            [CLI, "verify", "--bucket", str(tmp_path / "bucket"), "--allowed-signers", str(allowed),
             "--policy", str(policy), "--json"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    finally:
        server.close()
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    unreachable = [f["dock"] for f in json.loads(proc.stdout)["findings"] if f["problem"] == "witness_unreachable"]
    assert sorted(unreachable) == list(docks)
    assert len(accepted) == 1, f"the witness was asked {len(accepted)} times"


class SilentWitnesses:
    """Witnesses that read each request and never answer, holding the connection until the client gives
    up; they count how many of their connections are open at once, across all of them."""

    def __init__(self, count: int) -> None:
        self.lock = threading.Lock()
        self.open = self.most = 0
        self.servers = []
        for _ in range(count):
            server = socket.socket()
            server.bind(("127.0.0.1", 0))
            server.listen(8)
            self.servers.append(server)
            threading.Thread(target=self._serve, args=(server,), daemon=True).start()
        self.urls = [f"http://127.0.0.1:{s.getsockname()[1]}" for s in self.servers]

    def _serve(self, server: socket.socket) -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=self._hold, args=(conn,), daemon=True).start()

    def _hold(self, conn: socket.socket) -> None:
        with self.lock:
            self.open += 1
            self.most = max(self.most, self.open)
        with conn, contextlib.suppress(OSError):
            while conn.recv(65536):
                pass
        with self.lock:
            self.open -= 1

    def close(self) -> None:
        for s in self.servers:
            s.close()


def test_the_dock_asks_its_witnesses_at_once_not_one_after_another(tmp_path: Path) -> None:
    """After publishing, the dock asked its witnesses one after another, each ask bounded by
    witnesses.timeout_s: witnesses that do not answer held ingest --once (and the daemon's witnessing
    thread) for the sum of their timeouts. Now they are asked at once. Before: one connection open at a
    time for three silent witnesses; now all three together."""
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    dock_vkey = docklog.verifier_key(DOCK_ID, load_private_key(dock.root / "keys" / "dock_ed25519"))
    silent = SilentWitnesses(3)
    lines = [f"log {dock_vkey}"]
    for i, url in enumerate(silent.urls):
        vkey = cosignature.verifier_key(f"w{i}.example", Ed25519PrivateKey.generate().public_key())
        lines.append(f"witness w{i} {vkey} {url}")
    policy = tmp_path / "policy"
    policy.write_text("\n".join([*lines, "group all3 all w0 w1 w2", "quorum all3"]) + "\n")
    with dock.config_path.open("a") as f:
        f.write(f'[batch]\ncustody_only_interval_s = 0\n[witnesses]\npolicy = "{policy}"\ntimeout_s = 3\n')
    try:
        add_batch(dock, "CAM-S1")  # sealed and published; the witnesses time out
    finally:
        silent.close()
    assert (tmp_path / "bucket" / DOCK_ID / "log" / "checkpoints" / "1").is_file()
    assert silent.most == 3, f"at most {silent.most} witness connection(s) were open at once"
