"""systemd's notify protocol, by hand: one datagram of ``KEY=value`` lines to ``$NOTIFY_SOCKET``.

No libsystemd binding: the protocol is a single ``sendto`` on an ``AF_UNIX`` datagram socket
(``sd_notify(3)``). A ``$NOTIFY_SOCKET`` that starts with ``@`` names a socket in the abstract
namespace (the ``@`` stands for the leading NUL byte).

Every function is a no-op that returns ``False`` when the agent does not run under systemd
(no ``$NOTIFY_SOCKET``), and none of them raises when the send fails: a lost notification is
logged at debug level, never a reason to stop ingesting evidence.

The service (``bodycam-agent.service``, ``Type=notify``, ``WatchdogSec=``) uses:

* :func:`ready` once the bays are up, with a one-line bay summary as ``STATUS=``;
* :func:`status` whenever that summary changes;
* a :class:`Watchdog` thread that sends ``WATCHDOG=1`` at half of ``$WATCHDOG_USEC`` for as long
  as its ``healthy`` callback says the scheduler is making progress;
* :func:`reloading` and :func:`ready` around a ``SIGHUP`` config reload;
* :func:`stopping` when ``SIGTERM`` starts the drain.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from types import TracebackType

LOG = logging.getLogger(__name__)

__all__ = [
    "Watchdog",
    "notify",
    "ready",
    "reloading",
    "status",
    "stopping",
    "watchdog_interval",
    "watchdog_ping",
]

#: systemd caps STATUS= at what fits in its notify buffer; keep the bay summary well under it
MAX_STATUS = 1024
#: how long one notification may wait for room in the listener's queue before it is dropped
SEND_TIMEOUT = 0.5


def _socket_address() -> str | bytes | None:
    """``$NOTIFY_SOCKET`` as an ``AF_UNIX`` address, or ``None`` when unset or unusable."""
    raw = os.environ.get("NOTIFY_SOCKET", "")
    if not raw:
        return None
    if raw.startswith("@"):
        # abstract namespace: the name is a leading NUL plus the rest, not NUL-terminated
        return b"\0" + os.fsencode(raw[1:])
    if raw.startswith("/"):
        return raw
    # vsock:CID:PORT (systemd >= 254) and anything else we do not speak
    LOG.debug("NOTIFY_SOCKET=%r is not an AF_UNIX socket path; notifications disabled", raw)
    return None


def _one_line(value: object) -> str:
    """A field value on one line: a newline would start a new KEY=value assignment."""
    return " ".join(str(value).splitlines())


def _format(message: str | None, fields: dict[str, str | int]) -> str:
    lines = [message.rstrip("\n")] if message else []
    for key, value in fields.items():
        if not key or not key.replace("_", "").isalnum() or not key.isupper():
            raise ValueError(f"sd_notify field name {key!r} must be upper-case letters, digits and '_'")
        lines.append(f"{key}={_one_line(value)}")
    return "\n".join(lines)


def notify(message: str | None = None, /, **fields: str | int) -> bool:
    """Send one notification; ``True`` when the datagram went out.

    Either a preformatted ``message`` (``"READY=1\\nSTATUS=ok"``) or keyword fields
    (``notify(READY=1, STATUS="ok")``), or both (the message first). Field values are flattened
    to one line. Without ``$NOTIFY_SOCKET`` nothing is sent and the result is ``False``; a failed
    send is logged at debug level and also gives ``False``.
    """
    text = _format(message, fields)
    address = _socket_address()
    if address is None or not text:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            # never block the service on a listener that stopped reading (a full queue): drop instead
            sock.settimeout(SEND_TIMEOUT)
            sock.sendto(text.encode("utf-8"), address)
    except OSError as err:
        LOG.debug("sd_notify to %r failed: %s", os.environ.get("NOTIFY_SOCKET"), err)
        return False
    return True


def ready(status: str | None = None) -> bool:
    """``READY=1`` (the service leaves "activating"), with an optional ``STATUS=`` line."""
    if status is None:
        return notify(READY=1)
    return notify(READY=1, STATUS=status[:MAX_STATUS])


def status(text: str) -> bool:
    """``STATUS=``: the one line ``systemctl status bodycam-agent`` shows (the bay summary)."""
    return notify(STATUS=text[:MAX_STATUS])


def reloading() -> bool:
    """``RELOADING=1``: a config reload started; send :func:`ready` when it is done."""
    return notify(RELOADING=1)


def stopping() -> bool:
    """``STOPPING=1``: the drain after ``SIGTERM`` started."""
    return notify(STOPPING=1)


def watchdog_ping() -> bool:
    """``WATCHDOG=1``: keep-alive for ``WatchdogSec=``."""
    return notify(WATCHDOG=1)


def watchdog_interval() -> float | None:
    """Seconds between keep-alive pings (half of ``$WATCHDOG_USEC``), or ``None`` without a watchdog.

    ``None`` as well when ``$WATCHDOG_PID`` names another process: the variables were meant for a
    parent (a wrapper script), not for us.
    """
    raw_usec = os.environ.get("WATCHDOG_USEC", "")
    try:
        usec = int(raw_usec)
    except ValueError:
        return None
    if usec <= 0:
        return None
    raw_pid = os.environ.get("WATCHDOG_PID", "")
    if raw_pid:
        try:
            pid = int(raw_pid)
        except ValueError:
            return None
        if pid != os.getpid():
            return None
    return usec / 2 / 1_000_000


class Watchdog:
    """A daemon thread that sends ``WATCHDOG=1`` every ``interval`` seconds while ``healthy()`` holds.

    Each tick calls ``healthy``; a ``False`` (or an exception, logged) skips that ping, so a stuck
    scheduler stops feeding the watchdog and systemd restarts the service after ``WatchdogSec=``.
    A later healthy tick resumes the pings. ``interval`` defaults to :func:`watchdog_interval`;
    without one :meth:`start` does nothing and returns ``False``.

    Usable as a context manager (``with Watchdog(bays.progressing): ...``).
    """

    def __init__(self, healthy: Callable[[], bool] | None = None, interval: float | None = None) -> None:
        if interval is not None and interval <= 0:
            raise ValueError(f"watchdog interval must be positive, not {interval!r}")
        self._healthy = healthy
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.pings = 0  #: pings sent (diagnostics and tests)
        self.skipped = 0  #: ticks on which ``healthy`` said no

    @property
    def interval(self) -> float | None:
        return self._interval if self._interval is not None else watchdog_interval()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> bool:
        """Start pinging; ``False`` (and no thread) when there is no watchdog to feed."""
        if self.running:
            return True
        interval = self.interval
        if interval is None:
            LOG.debug("no systemd watchdog (WATCHDOG_USEC unset or for another pid)")
            return False
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(interval,), name="sd-watchdog", daemon=True)
        self._thread.start()
        return True

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop pinging and wait (up to ``timeout``) for the thread to end."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _is_healthy(self) -> bool:
        if self._healthy is None:
            return True
        try:
            return bool(self._healthy())
        except Exception:
            LOG.exception("watchdog health check raised; withholding the ping")
            return False

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            if self._is_healthy():
                if watchdog_ping():
                    self.pings += 1
            else:
                self.skipped += 1
                LOG.debug("watchdog: unhealthy, ping withheld")

    def __enter__(self) -> Watchdog:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
