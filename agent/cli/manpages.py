"""What the generated man pages call each command (scripts/manpages.sh, tests/test_manpages.py).

click-man names a page with click's short help, cut at 45 characters and ended with "...": `man -k
bodycam` and each group's COMMANDS section then read "Pull in-scope footage from every reachable...".
The page's NAME gets the command's first clause instead, whole; ``--help`` keeps click's own listing.
"""

from __future__ import annotations

import re

import click

#: a NAME line longer than this is cut at a word (apropos shows one line)
MAX_NAME = 100


def first_clause(text: str) -> str:
    """The help's first sentence or clause (up to '. ' or '; ' or a blank line), whole words, no "..."."""
    paragraph = " ".join(text.split("\n\n", 1)[0].split())
    clause = re.split(r"(?<=[a-z0-9)])\. |; ", paragraph, maxsplit=1)[0].rstrip(".")
    if len(clause) <= MAX_NAME:
        return clause
    head = clause[:MAX_NAME]
    for marks in ((": ", " ("), (", ",)):  # end on a phrase, not mid-way (nor inside its parentheses)
        cut = max((i for i in _outside_parentheses(head) if head.startswith(marks, i)), default=-1)
        if cut > MAX_NAME // 3:
            return head[:cut]
    return head.rsplit(" ", 1)[0]


def _outside_parentheses(text: str) -> list[int]:
    """The positions of ``text`` not inside parentheses (an opening one counts as outside)."""
    depth, found = 0, []
    for i, ch in enumerate(text):
        if depth == 0:
            found.append(i)
        depth += (ch == "(") - (ch == ")")
    return found


def name_commands(group: click.Group) -> None:
    """Give ``group`` and every command under it a short help of its first clause, for the man pages only."""
    if group.help and not group.short_help:
        group.short_help = first_clause(group.help)
    ctx = click.Context(group, info_name="bodycam-sync")
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None:
            continue
        if isinstance(command, click.Group):
            name_commands(command)
        elif command.help and not command.short_help:
            command.short_help = first_clause(command.help)
