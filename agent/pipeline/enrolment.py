"""Enrolment: which device key the dock trusts for a camera serial, and every change to it in custody.

A trusted key comes from the vendor's enrolment sheet, never from what a docked camera presents
(``devices`` shows only the presented key's fingerprint, to compare with the sheet). Replacing the
key of an enrolled serial needs an explicit ``replace`` and is a custody entry, so an auditor sees
when the dock started trusting another key for the same camera.
"""

from __future__ import annotations

from bodycam.agent.formats.manifest import pseudonym
from bodycam.agent.storage.custody_log import CustodyLog
from bodycam.agent.storage.journal import Journal, utc_now
from bodycam.drivers.device.camera import key_fingerprint
from bodycam.drivers.errors import ConfigError


def enroll(
    journal: Journal, custody: CustodyLog, serial: str, device_key: bytes, model: str | None, *, replace: bool
) -> str:
    """Trust ``device_key`` for ``serial``; returns 'enrolled', 'unchanged' or 'replaced'.

    Raises ConfigError when the serial is enrolled with another key and ``replace`` is not given.
    """
    with journal.transaction() as db:
        row = db.execute("SELECT device_key FROM cameras WHERE serial=?", (serial,)).fetchone()
        previous = bytes.fromhex(row[0]) if row else None
        if previous == device_key:
            return "unchanged"
        if previous is not None and not replace:
            raise ConfigError(
                f"camera {serial} is already enrolled with device key {key_fingerprint(previous)}; to trust "
                f"{key_fingerprint(device_key)} instead, check it against the vendor's enrolment sheet and run "
                f"'bodycam-sync enroll {serial} --key HEX --replace' (recorded in custody)"
            )
        db.execute(
            "INSERT INTO cameras(serial, device_key, model, enrolled_at) VALUES(?,?,?,?) "
            "ON CONFLICT(serial) DO UPDATE SET device_key=excluded.device_key, model=excluded.model, "
            "enrolled_at=excluded.enrolled_at",
            (serial, device_key.hex(), model, utc_now()),
        )
        custody.append_in(
            db,
            "enrolled",
            camera=serial,
            device_key=device_key.hex(),
            replaces=previous.hex() if previous is not None else None,
        )
        return "replaced" if previous is not None else "enrolled"


def allocate(journal: Journal, custody: CustodyLog, serial: str, officer: str, at: float, secret: bytes) -> None:
    """Allocate ``serial`` to ``officer`` from ``at``, with its custody ``allocated`` entry in the same
    transaction: a DPA 2018 s.62 collection of the officer's data, which the shared custody log names
    by pseudonym only (docs/formats.md §4, §5.2)."""
    with journal.transaction() as db:
        journal.allocate_in(db, serial, officer, at)
        custody.append_in(db, "allocated", camera=serial, officer_pseudonym=pseudonym(secret, officer), at=_iso(at))


def consulted(custody: CustodyLog, register: str, camera: str | None = None) -> None:
    """Log that an operator was shown personal data the dock holds (officer ids, exercise sites): a
    s.62 consultation, named by register (``allocations``, ``exercises``), never by what was shown."""
    custody.append("consulted", register=register, camera=camera)


def _iso(ts: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
