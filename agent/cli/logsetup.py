"""Logging set-up for the CLI and the daemon: plain lines on a terminal, sd-daemon priorities under journald.

When systemd connects stderr to the journal it sets ``JOURNAL_STREAM=<dev>:<inode>`` of that stream
(systemd.exec(5)). A line that starts with ``<N>`` (sd-daemon(3)) is then stored at priority N, so
``journalctl -p err -u bodycam-agent`` finds the errors. The check compares device and inode, so a
child whose stderr was redirected elsewhere does not print prefixes into a file.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

#: sd-daemon(3) priorities for the logging levels we use
_PRIORITY = {
    logging.CRITICAL: 2,  # SD_CRIT
    logging.ERROR: 3,  # SD_ERR
    logging.WARNING: 4,  # SD_WARNING
    logging.INFO: 6,  # SD_INFO
    logging.DEBUG: 7,  # SD_DEBUG
}


def stream_is_journal(stream: TextIO) -> bool:
    """True when ``stream`` is the journald stream systemd announced in ``$JOURNAL_STREAM``."""
    announced = os.environ.get("JOURNAL_STREAM", "")
    dev, sep, inode = announced.partition(":")
    if not sep or not dev.isdigit() or not inode.isdigit():
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(inode))


def priority_prefix(levelno: int) -> str:
    """``<3>`` for ERROR and so on; levels between the named ones take the next more severe priority."""
    for level in sorted(_PRIORITY, reverse=True):
        if levelno >= level:
            return f"<{_PRIORITY[level]}>"
    return f"<{_PRIORITY[logging.DEBUG]}>"


class JournalFormatter(logging.Formatter):
    """``<N>name: message``: journald adds the time, unit and pid itself, and reads N as the priority."""

    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        prefix = priority_prefix(record.levelno)
        # journald splits on newlines: each continuation line (a stack dump) keeps the priority
        return "\n".join(prefix + line for line in text.splitlines() or [""])


def configure(level: int, stream: TextIO | None = None) -> bool:
    """Set up the root logger once; return True when lines go to journald with priorities."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    journal = stream_is_journal(stream)
    handler.setFormatter(JournalFormatter() if journal else logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return journal


def error_line(text: str, stream: TextIO | None = None) -> str:
    """The CLI's one error line, with ``<3>`` in front when it goes to journald."""
    return ("<3>" if stream_is_journal(stream or sys.stderr) else "") + text
