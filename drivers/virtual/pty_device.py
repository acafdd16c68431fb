"""Serve a ByteLink on a pseudo-terminal, the way a CDC-ACM camera appears to a dock.

The dock opens ``device`` (``/dev/pts/N``) with the real serial transport. A simulated unplug
closes both ends of the pty, so the dock's next read fails exactly as on a pulled cable; the
camera then re-appears on a new pty, and the stable symlink ``link_path`` (like
``/dev/serial/by-id/...``) is moved to it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
import tty
from pathlib import Path

from bodycam.drivers.virtual.link import ByteLink, LinkClosed

LOG = logging.getLogger(__name__)
CHUNK = 1024 * 1024


class PtyCameraServer:
    def __init__(self, link: ByteLink, *, link_path: Path | None = None, replug_delay: float = 0.5) -> None:
        self.link = link
        self.link_path = link_path
        self.replug_delay = replug_delay
        self.device = ""
        self._master = -1
        self._slave = -1
        self._stop = threading.Event()
        self._plugged = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def start(self) -> str:
        self._plug()
        for target in (self._reader, self._writer):
            thread = threading.Thread(target=target, daemon=True, name=f"pty-{target.__name__}")
            thread.start()
            self._threads.append(thread)
        return self.device

    def _plug(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, True)
        with self._lock:
            self._master, self._slave = master, slave
            self.device = os.ttyname(slave)
            reset = getattr(self.link, "reset", None)
            if callable(reset):
                reset()
        if self.link_path is not None:
            tmp = self.link_path.with_name(self.link_path.name + ".new")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            tmp.symlink_to(self.device)
            tmp.replace(self.link_path)
        self._plugged.set()
        LOG.info("virtual camera plugged on %s", self.device)

    def unplug(self) -> None:
        """Pull the cable: both ends close, the dock's reads fail; re-plug after ``replug_delay``."""
        with self._lock:
            self._plugged.clear()
            for fd in (self._master, self._slave):
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._master = self._slave = -1
        LOG.info("virtual camera unplugged from %s", self.device)
        if not self._stop.wait(self.replug_delay):
            self._plug()

    def _reader(self) -> None:
        while not self._stop.is_set():
            if not self._plugged.wait(0.2):
                continue
            master = self._master
            try:
                ready, _, _ = select.select([master], [], [], 0.2)
                if not ready:
                    continue
                data = os.read(master, CHUNK)
            except (OSError, ValueError):
                continue  # unplugged under us
            if not data:
                continue
            try:
                self.link.receive(data)
            except LinkClosed:
                threading.Thread(target=self.unplug, daemon=True).start()
                self._plugged.clear()

    def _writer(self) -> None:
        while not self._stop.is_set():
            if not self._plugged.wait(0.2):
                continue
            try:
                data = self.link.transmit(CHUNK, 0.2)
            except LinkClosed:
                self.unplug()
                continue
            view = memoryview(data)
            while view and self._plugged.is_set():
                try:
                    view = view[os.write(self._master, view) :]
                except OSError:
                    break

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            for fd in (self._master, self._slave):
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._master = self._slave = -1
        for thread in self._threads:
            thread.join(timeout=2)
        if self.link_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.link_path.unlink()
