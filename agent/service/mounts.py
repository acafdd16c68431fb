"""The daemon's look at its mass-storage directory, off the scan's thread (docs/mass-storage.md, "A hung disk").

A read from a dead USB disk can block in the kernel, where no timeout reaches it: even the ``lstat`` of
``BODYCAM/device.json`` that tells a camera volume from any other directory. Done in the daemon's scan,
that one call held every bay: no camera was discovered or started, no batch was sealed on schedule, and
the watchdog, fed by the same loop, had systemd restart the daemon into the same hang.

So each entry of the directory (and the directory itself) is looked at by a probe thread of its own,
which the scan waits for a short while (``WAIT_S``) and then leaves: a probe that answers later is
used by the next scan; one that has not answered after ``HUNG_AFTER_S`` marks its volume as not
answering, and is never started again while it hangs, so a hung disk costs one thread (at most one an
entry, ``MAX_MOUNTS`` entries), never the scan, and never a worker per retry. The threads are daemon
threads: a thread stuck in the kernel cannot be killed, only abandoned.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bodycam.drivers.device.massstorage import MAX_MOUNTS, is_volume, mount_names

LOG = logging.getLogger(__name__)
#: how long one scan waits for the probes it started (a healthy disk answers in milliseconds)
WAIT_S = 0.5
#: a probe running this long marks its volume as not answering (status shows it; no session is started)
HUNG_AFTER_S = 5.0
#: probes kept at once (those of names gone from the directory included, while they hang)
MAX_PROBES = 2 * MAX_MOUNTS


@dataclass
class _Probe:
    """One look at one path, in a thread that may never come back."""

    started: float
    done: threading.Event = field(default_factory=threading.Event)
    result: object = None


class MountWatch:
    """Which entries of ``root`` are camera volumes, and which do not answer, without ever blocking the caller
    for more than ``WAIT_S``."""

    def __init__(self, root: Path, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.root = root
        self.clock = clock
        self._lock = threading.Lock()
        self._listing: _Probe | None = None
        self._names: list[str] = []  #: the directory's entries, as last listed
        self._probes: dict[str, _Probe] = {}
        self._volumes: dict[str, bool] = {}  #: each entry's last answer: a camera volume or not
        self._said: set[str] = set()  #: entries already logged as not answering (one line each)

    def scan(self) -> tuple[list[Path], list[Path]]:
        """(volumes that answered, volumes that do not answer now): the second are entries last seen as
        camera volumes whose probe has hung ``HUNG_AFTER_S``; an entry never seen answering is left out."""
        deadline = self.clock() + WAIT_S
        listing = self._listing
        if listing is None or listing.done.is_set():
            if listing is not None and isinstance(listing.result, list):
                self._names = listing.result
            self._listing = listing = self._start(self._list_root)
        listing.done.wait(max(0.0, deadline - self.clock()))
        if listing.done.is_set() and isinstance(listing.result, list):
            self._names = listing.result
        started: list[_Probe] = []
        for name in self._names:
            probe = self._probes.get(name)
            if probe is None and len(self._probes) >= MAX_PROBES:
                continue  # as many probes as hung disks can hold: a new name waits for one to end
            if probe is None or probe.done.is_set():
                if probe is not None:
                    self._volumes[name] = probe.result is True
                path = self.root / name
                self._probes[name] = self._start(functools.partial(is_volume, path))
                started.append(self._probes[name])
        for probe in started:
            probe.done.wait(max(0.0, deadline - self.clock()))
        return self._results()

    def _results(self) -> tuple[list[Path], list[Path]]:
        now = self.clock()
        answering: list[Path] = []
        hung: list[Path] = []
        present = set(self._names)
        for name in list(self._probes):
            if name not in present and self._probes[name].done.is_set():
                del self._probes[name]  # gone from the directory, and its probe ended: forget it
                self._volumes.pop(name, None)
        for name in sorted(present):
            probe = self._probes.get(name)
            if probe is None:
                continue
            if probe.done.is_set():
                self._volumes[name] = probe.result is True
                self._said.discard(name)
                if self._volumes[name]:
                    answering.append(self.root / name)
            elif now - probe.started >= HUNG_AFTER_S:
                if name not in self._said:
                    self._said.add(name)
                    LOG.error(
                        "mass-storage volume %s has not answered for %.0f s (a hung disk?); no session is started "
                        "on it until it does, the other bays go on; unplug it",
                        self.root / name,
                        now - probe.started,
                    )
                if self._volumes.get(name):
                    hung.append(self.root / name)
            elif self._volumes.get(name):
                answering.append(self.root / name)  # slow this time, answered before: its bay stays
        return answering, hung

    def _start(self, work: Callable[[], object]) -> _Probe:
        probe = _Probe(self.clock())

        def run() -> None:
            try:
                probe.result = work()
            finally:
                probe.done.set()

        threading.Thread(target=run, name="mass-storage-probe", daemon=True).start()
        return probe

    def _list_root(self) -> list[str]:
        """The names of the directory's first ``MAX_MOUNTS`` entries (reading the directory itself; each
        entry's own look is its probe's)."""
        return mount_names(self.root)
