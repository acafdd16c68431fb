"""The bodycam-sync command line: a thin shim over the library, plus rendering.

``bodycam.agent.cli:main`` stays the console entry point, so an install made before the layout
moved the commands into ``cli/main.py`` keeps starting. It raises the collector's threshold before it
imports click and the commands (agent/cli/startup.py), so this package imports nothing up front;
``cli`` (the click group) is still here for whoever imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bodycam.agent.cli.startup import collect_rarely

if TYPE_CHECKING:
    from bodycam.agent.cli.main import cli

__all__ = ["cli", "main"]


def main(argv: list[str] | None = None) -> None:
    """The console script: ``bodycam-sync``'s exit codes and error lines are cli/main.py's ``main``."""
    collect_rarely()  # until the command has its config (startup.started), or returns without one
    from bodycam.agent.cli.main import main as run

    run(argv)


def __getattr__(name: str) -> Any:
    """``bodycam.agent.cli.cli``, the click group, imported when asked for."""
    if name == "cli":
        from bodycam.agent.cli.main import cli

        return cli
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
