"""The control socket: JSON lines over AF_UNIX between the daemon and ``bodycam-sync status/sync/eject``.

The socket lives in the runtime directory, mode 0660; every connection's peer is checked with
``SO_PEERCRED``: root, the daemon's own user, or a member of the daemon's group may talk to it.
One request line in, one response line out; requests and responses are bounded in size.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import struct
import threading
from collections.abc import Callable
from pathlib import Path

from bodycam.drivers.errors import BodycamError, ServiceError
from bodycam.drivers.strictjson import JSONObject

LOG = logging.getLogger(__name__)
MAX_REQUEST = 64 * 1024
MAX_RESPONSE = 16 * 1024 * 1024
#: a request (parsed from the socket: narrowed by the handler) -> the reply
Handler = Callable[[JSONObject], dict[str, object]]


#: the shipped unit's ``RuntimeDirectory=bodycam``: where a daemon run by systemd listens. systemd sets
#: ``RUNTIME_DIRECTORY`` for the daemon only, never in an operator's shell, so ``status`` looks here too.
SYSTEMD_RUNTIME = Path("/run/bodycam")


def socket_path(state_dir: Path) -> Path:
    runtime = os.environ.get("RUNTIME_DIRECTORY")
    base = Path(runtime.split(":")[0]) if runtime else state_dir / "run"
    return base / "control.sock"


def client_socket_paths(state_dir: Path, system_runtime: Path = SYSTEMD_RUNTIME) -> list[Path]:
    """Where ``status``/``sync``/``eject``/``watch`` look for the daemon, in order.

    The daemon's own path first (``$RUNTIME_DIRECTORY`` when the caller has it, else ``STATE_DIR/run``);
    without ``$RUNTIME_DIRECTORY``, also the systemd unit's runtime directory: an armourer's shell on a
    deployed dock has no such variable, and without this fallback ``status`` said "not running" while
    the service ran."""
    own = socket_path(state_dir)
    system = system_runtime / "control.sock"
    if os.environ.get("RUNTIME_DIRECTORY") or system == own:
        return [own]
    return [own, system]


def find_socket(candidates: list[Path]) -> Path | None:
    """The first candidate that exists (or that we may not even look at: then the error says why)."""
    for path in candidates:
        try:
            path.stat()
        except PermissionError:
            return path  # the group's directory: request() then says to join the daemon's group
        except OSError:
            continue
        return path
    return None


def peer_allowed(uid: int, gid: int, pid: int) -> bool:
    """root, our user, or a member of our group (primary or supplementary, read from /proc)."""
    if uid in (0, os.getuid()) or gid == os.getgid():
        return True
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Groups:"):
                return str(os.getgid()) in line.split()[1:]
    except OSError:
        pass
    return False


class ControlServer:
    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = path
        self.handler = handler
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(self.path))
        os.chmod(self.path, 0o660)
        sock.listen(16)
        sock.settimeout(0.5)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="control", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            try:
                creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
                pid, uid, gid = struct.unpack("3i", creds)
                if not peer_allowed(uid, gid, pid):
                    LOG.warning("control socket: refused uid %d (not in the daemon's group)", uid)
                    _send(conn, {"ok": False, "error": "permission denied: join the daemon's group"})
                    return
                conn.settimeout(5)
                request = _recv_line(conn, MAX_REQUEST)
                try:
                    doc = json.loads(request)
                    if not isinstance(doc, dict):
                        raise ValueError("not an object")
                    response = self.handler(doc)
                except (ValueError, BodycamError) as err:
                    response = {"ok": False, "error": str(err)}
                _send(conn, response)
            except (OSError, ValueError) as err:
                LOG.debug("control connection failed: %s", err)

    def stop(self) -> None:
        self._stop.set()
        if self._sock is not None:
            self._sock.close()
        if self._thread is not None:
            self._thread.join(timeout=2)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def request(path: Path, doc: dict[str, object], timeout: float = 10.0) -> JSONObject:
    """Send one request to the daemon; ServiceError (exit 1) when it is not running or refuses us."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
        _send(sock, doc)
        reply = json.loads(_recv_line(sock, MAX_RESPONSE))
    except FileNotFoundError as err:
        raise ServiceError(
            f"the daemon is not running (no control socket at {path}); start it with 'systemctl start bodycam-agent'"
        ) from err
    except ConnectionRefusedError as err:
        raise ServiceError(f"the daemon is not running (control socket {path} refuses connections)") from err
    except PermissionError as err:
        raise ServiceError(f"no permission to use {path}: join the daemon's group (bodycam)") from err
    except (OSError, ValueError) as err:
        raise ServiceError(f"control socket {path}: {err}") from err
    finally:
        sock.close()
    if not isinstance(reply, dict):
        raise ServiceError(f"control socket {path} answered with something that is not a JSON object")
    if reply.get("ok") is False:
        raise ServiceError(f"the daemon refused: {reply.get('error')}")
    return reply


def _send(sock: socket.socket, doc: dict[str, object]) -> None:
    sock.sendall(json.dumps(doc, default=str).encode() + b"\n")


def _recv_line(sock: socket.socket, limit: int) -> bytes:
    buf = bytearray()
    while b"\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
        if len(buf) > limit:
            raise ValueError(f"message over {limit} bytes")
    return bytes(buf.split(b"\n", 1)[0])
