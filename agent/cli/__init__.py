"""The bodycam-sync command line: a thin shim over the library, plus rendering.

``bodycam.agent.cli:main`` stays the console entry point, so an install made before the layout
moved the commands into ``cli/main.py`` keeps starting.
"""

from bodycam.agent.cli.main import cli, main

__all__ = ["cli", "main"]
