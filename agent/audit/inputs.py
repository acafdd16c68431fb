"""What the auditor's commands (verify, disclosures, receive, proof) read from their command line, read
one way: the docks' allowed signers, the auditor's or party's age identities, and the bucket, opened
read-only (a plain path is a directory).

Each failure is one ConfigError (exit 2) naming the option it came from, so the auditor sees which
argument to fix. The formats and the bucket are imported when called, as the commands were before.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from bodycam.drivers.errors import ConfigError
from bodycam.drivers.files import read_bounded

if TYPE_CHECKING:
    from bodycam.agent.formats.sshsig import AllowedSigner
    from bodycam.agent.storage.bucket import Bucket

#: bytes of ``--allowed-signers`` read at most: sshsig.MAX_ALLOWED_SIGNERS characters (1 Mi) of up to 4 UTF-8
#: bytes each, so every file the parser accepts is read, and one that never ends (``/dev/zero``, a FIFO)
#: costs no more than this
MAX_ALLOWED_SIGNERS_FILE = 4 * 1024 * 1024
#: bytes of ``--identity`` read at most: hundreds of ``age-keygen`` outputs, post-quantum ones included
MAX_IDENTITY_FILE = 1024 * 1024


def allowed_signers(path: Path | str) -> tuple[bytes, list[AllowedSigner]]:
    """The docks' keys in ``--allowed-signers`` (OpenSSH allowed_signers), with the file's bytes (verify's
    report names their SHA-256, so an audit says which trust anchors it used)."""
    from bodycam.agent.formats.sshsig import parse_allowed_signers

    raw = read_bounded(
        Path(path), MAX_ALLOWED_SIGNERS_FILE,
        unreadable=lambda err: ConfigError(f"cannot read --allowed-signers {path}: {err.strerror or err}"),
        too_large=lambda: ConfigError(
            f"--allowed-signers {path} is larger than {MAX_ALLOWED_SIGNERS_FILE} bytes; not an allowed_signers file"
        ),
    )  # fmt: skip
    try:
        return raw, parse_allowed_signers(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"cannot read --allowed-signers {path}: {err}") from err
    except ConfigError as err:
        raise ConfigError(f"--allowed-signers {path}: {err}") from None


def identities(path: Path | str) -> list[str]:
    """The age identities in ``--identity`` (X25519 or post-quantum)."""
    from bodycam.agent.formats.agecrypt import read_identities

    raw = read_bounded(
        Path(path), MAX_IDENTITY_FILE,
        unreadable=lambda err: ConfigError(f"cannot read --identity {path}: {err.strerror or err}"),
        too_large=lambda: ConfigError(
            f"--identity {path} is larger than {MAX_IDENTITY_FILE} bytes; not an age identity file"
        ),
    )  # fmt: skip
    try:
        return read_identities(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"cannot read --identity {path}: {err}") from err
    except ConfigError as err:
        raise ConfigError(f"--identity {path}: {err}") from None


def open_read_only(bucket_url: str, endpoint_url: str | None, max_dir_entries: int | None = None) -> Bucket:
    """``--bucket`` (``s3://...``, ``file:///DIR`` or a plain directory path), opened read-only: nothing is
    created, tidied or written, so a read-only copy of the evidence can be checked. ``max_dir_entries``
    bounds a file bucket's listing (verify's ``--max-memory``)."""
    from urllib.parse import unquote, urlsplit

    from bodycam.agent.storage.bucket import open_bucket

    url = bucket_url if "://" in bucket_url else Path(bucket_url).absolute().as_uri()  # a plain path
    parts = urlsplit(url)
    if parts.scheme == "file" and parts.path.startswith("/") and not Path(unquote(parts.path)).is_dir():
        raise ConfigError(f"--bucket {bucket_url}: no such directory")
    try:
        return open_bucket(url, endpoint_url, read_only=True, max_dir_entries=max_dir_entries)
    except ConfigError as err:
        raise ConfigError(f"--bucket {bucket_url}: {err}") from None
