"""bodycam-sync command line."""
from __future__ import annotations


def main() -> None:
    print("bodycam-sync")  # noqa: T201
