"""The collector during start-up (issue 14): rare collections while a command imports its modules.

Imports allocate tens of thousands of objects (modules, classes, functions, some 100 dataclasses' generated
methods), none of them garbage. At Python's default generation-0 threshold (700) the collector ran about 80
times over them during an ``ingest --once`` (~0.01 CPU s). ``collect_rarely`` raises the threshold before
the console script imports the CLI; ``started`` restores it once the command has loaded its config (it has
imported what it runs) and moves what start-up made out of the collector's reach (``gc.freeze``). Only the
console script calls ``collect_rarely``: the library used in-process (tests, benches) keeps its collector
as it is. This module imports nothing else, so it runs before click and the agent are loaded.
"""

from __future__ import annotations

import gc

#: the generation-0 threshold while start-up imports (Python's default is 700)
STARTUP_GEN0 = 100_000
_threshold: list[tuple[int, int, int]] = []  # the thresholds to restore, while raised


def collect_rarely() -> None:
    """Raise the collector's generation-0 threshold until ``started`` (idempotent)."""
    if not _threshold:
        _threshold.append(gc.get_threshold())
        gen0, gen1, gen2 = _threshold[0]
        gc.set_threshold(max(STARTUP_GEN0, gen0), gen1, gen2)


def started() -> None:
    """Start-up is over: the thresholds as they were, and what start-up made frozen (the process keeps
    its modules and classes to the end: no later collection need walk them). A no-op unless raised."""
    if _threshold:
        gc.set_threshold(*_threshold.pop())
        gc.freeze()
