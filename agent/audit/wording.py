"""How the auditor's outputs count things: "1 batch", "2 batches", never "1 batches".

An audit document is read by people who decide on what it says (a court, a data protection officer);
a count in the wrong number reads as a tool that was not checked, so every count verify, the HTML
report, disclosures and receive print goes through :func:`counted`.
"""

from __future__ import annotations


def counted(count: int, word: str, many: str | None = None) -> str:
    """``count`` and ``word`` in the number it takes: ``many`` for the plural, else ``word + "s"``
    (``counted(1, "entry", "entries")`` is ``"1 entry"``, ``counted(0, "batch", "batches")``
    ``"0 batches"``)."""
    if count == 1:
        return f"1 {word}"
    return f"{count} {many if many is not None else word + 's'}"
