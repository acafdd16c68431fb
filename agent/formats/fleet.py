"""The force's shared documents in the bucket (issue 12 item 2, docs/formats.md §12): what every dock of
the force loads from the one object store, so a camera allocated to an exercise can dock at any dock.

Under ``_fleet/`` in the bucket (beside the docks' own ``<dock_id>/`` directories; ``_fleet`` is not a
dock id): the signed data-sharing agreements and revocations, exactly as ``agreement sign``/``revoke``
wrote them (agent/formats/agreements.py), and the **fleet register**: one canonical JSON document per
version, signed by the controller (SSHSIG, namespace ``bodycam-fleet-register``), listing the training
exercises (id, window, cameras) and the enrolled cameras (serial, device key, model).

The bucket is shared with other organisations, so nothing here may name an officer, a site or a file:
the register carries no site and no officer allocation (those stay on the dock that registered them),
a published agreement may not scope by site, and ``check_private`` refuses a document in which any
string value contains a site or officer id the publishing dock knows (docs/decisions.md).

Pure: bytes in, bytes out (the dock's side, with the bucket and the cache, is agent/pipeline/fleet.py).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from bodycam.agent.config import FLEET_PREFIX
from bodycam.agent.formats import agreements as ag
from bodycam.agent.formats.custody import canonical
from bodycam.agent.formats.sshsig import sign
from bodycam.agent.formats.times import iso_utc
from bodycam.drivers.errors import ProtocolError
from bodycam.drivers.strictjson import JSONObject, JSONValue, parse_json

PREFIX = FLEET_PREFIX  # reserved: config refuses it as a dock_id, verify leaves it to 'fleet show'
AGREEMENTS = f"{PREFIX}/agreements"
REGISTER = f"{PREFIX}/register"
REGISTER_FORMAT = "bodycam-fleet-register/1"
REGISTER_NAMESPACE = "bodycam-fleet-register"

MAX_SIGNATURE_BYTES = 8 * 1024  # an Ed25519 SSHSIG is about 300 bytes
MAX_REGISTER_BYTES = 4 * 1024 * 1024
MAX_REGISTER_VALUES = 400_000
MAX_EXERCISES = 10_000
MAX_CAMERAS = 20_000
MAX_CAMERAS_PER_EXERCISE = 256
MAX_EXERCISE_S = 72 * 3600  # as policy.MAX_EXERCISE_HOURS: a longer window is not a training exercise
MAX_LISTED = 2 * ag.MAX_FILES + 64  # objects under _fleet/agreements/ a dock reads (documents and signatures)
MAX_REGISTER_VERSION = 10**10 - 1
SERIAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")  # as docs/formats.md §1 <camera_serial>
EXERCISE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
MODEL = re.compile(r"[A-Za-z0-9 ._+-]{1,64}")
REGISTER_NAME = re.compile(r"v([0-9]{10})\.json")
AGREEMENT_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}\.(v[0-9]{1,10}|revoked)\.json")
MIN_MATCH = 3  # shortest site or officer id looked for in a published string


@dataclass(frozen=True, slots=True)
class RegisteredExercise:
    id: str
    start: float
    end: float
    cameras: frozenset[str]


@dataclass(frozen=True, slots=True)
class RegisteredCamera:
    serial: str
    device_key: bytes
    model: str | None


@dataclass(frozen=True, slots=True)
class Register:
    version: int
    issued: str
    exercises: tuple[RegisteredExercise, ...]
    cameras: tuple[RegisteredCamera, ...]
    raw: bytes = field(repr=False)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()

    def device_key(self, serial: str) -> bytes | None:
        return next((c.device_key for c in self.cameras if c.serial == serial), None)


def register_key(version: int) -> str:
    """``_fleet/register/v<10 digits>.json``: key order is version order."""
    return f"{REGISTER}/{register_name(version)}"


def register_name(version: int) -> str:
    return f"v{version:010d}.json"


def build_register(
    version: int, issued: float, exercises: Iterable[RegisteredExercise], cameras: Iterable[RegisteredCamera]
) -> bytes:
    """The canonical register document (checked by ``parse_register`` before it is returned)."""
    doc = {
        "format": REGISTER_FORMAT,
        "version": version,
        "issued": iso_utc(issued, "seconds"),
        "exercises": [
            {
                "id": e.id,
                "start": iso_utc(e.start, "seconds"),
                "end": iso_utc(e.end, "seconds"),
                "cameras": sorted(e.cameras),
            }
            for e in sorted(exercises, key=lambda e: e.id)
        ],
        "cameras": [
            {"serial": c.serial, "device_key": c.device_key.hex(), "model": c.model}
            for c in sorted(cameras, key=lambda c: c.serial)
        ],
    }
    raw = canonical(doc)
    parse_register(raw)
    return raw


def _fields(doc: JSONValue, where: str, names: set[str]) -> JSONObject:
    if not isinstance(doc, dict):
        raise ProtocolError(f"{where} must be a JSON object")
    missing, unknown = sorted(names - set(doc)), sorted(set(doc) - names)
    if missing:
        raise ProtocolError(f"{where}.{missing[0]} is missing")
    if unknown:
        raise ProtocolError(f"{where}.{unknown[0][:40]} is not a known field")
    return doc


def _match(pattern: re.Pattern[str], value: JSONValue, where: str) -> str:
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        raise ProtocolError(f"{where} is not valid ({str(value)[:40]!r})")
    return value


def _exercise(item: JSONValue, i: int) -> RegisteredExercise:
    where = f"exercises[{i}]"
    doc = _fields(item, where, {"id", "start", "end", "cameras"})
    cams = doc["cameras"]
    if not isinstance(cams, list) or not 1 <= len(cams) <= MAX_CAMERAS_PER_EXERCISE:
        raise ProtocolError(f"{where}.cameras must list 1 to {MAX_CAMERAS_PER_EXERCISE} serials")
    start, end = ag._time(doc["start"], f"{where}.start"), ag._time(doc["end"], f"{where}.end")
    if not 0 < end - start <= MAX_EXERCISE_S:
        raise ProtocolError(f"{where}: the window must end after it starts, within {MAX_EXERCISE_S // 3600} h")
    serials = frozenset(_match(SERIAL, s, f"{where}.cameras[]") for s in cams)
    return RegisteredExercise(_match(EXERCISE_ID, doc["id"], f"{where}.id"), start, end, serials)


def _camera(item: JSONValue, i: int) -> RegisteredCamera:
    where = f"cameras[{i}]"
    doc = _fields(item, where, {"serial", "device_key", "model"})
    key = doc["device_key"]
    if not isinstance(key, str) or re.fullmatch(r"[0-9a-f]{64}", key) is None:
        raise ProtocolError(f"{where}.device_key must be 64 lowercase hex digits")
    model = None if doc["model"] is None else _match(MODEL, doc["model"], f"{where}.model")
    return RegisteredCamera(_match(SERIAL, doc["serial"], f"{where}.serial"), bytes.fromhex(key), model)


def parse_register(raw: bytes) -> Register:
    """A register document, strictly checked and bounded; ProtocolError names the field."""
    if len(raw) > MAX_REGISTER_BYTES:
        raise ProtocolError(f"register is {len(raw)} bytes, over the {MAX_REGISTER_BYTES} limit")
    doc = _fields(
        parse_json(raw, "register", MAX_REGISTER_VALUES),
        "register",
        {"format", "version", "issued", "exercises"} | {"cameras"},
    )
    if doc["format"] != REGISTER_FORMAT:
        raise ProtocolError(f"register format must be {REGISTER_FORMAT!r}")
    version = doc["version"]
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= MAX_REGISTER_VERSION:
        raise ProtocolError(f"register version must be an integer from 1 to {MAX_REGISTER_VERSION}")
    issued = doc["issued"]
    if not isinstance(issued, str):
        raise ProtocolError("register.issued must be an ISO 8601 time string")
    ag._time(issued, "register.issued")
    listed = {}
    for name, limit in (("exercises", MAX_EXERCISES), ("cameras", MAX_CAMERAS)):
        items = doc[name]
        if not isinstance(items, list) or len(items) > limit:
            raise ProtocolError(f"register.{name} must be a list of at most {limit} items")
        listed[name] = items
    exercises = tuple(_exercise(e, i) for i, e in enumerate(listed["exercises"]))
    cameras = tuple(_camera(c, i) for i, c in enumerate(listed["cameras"]))
    for what, ids in (("exercise", [e.id for e in exercises]), ("camera", [c.serial for c in cameras])):
        if len(set(ids)) != len(ids):
            raise ProtocolError(f"register lists a {what} twice")
    register = Register(version, issued, exercises, cameras, canonical(doc))
    if register.raw != raw:
        raise ProtocolError("register is not in canonical form")
    return register


def sign_register(raw: bytes, key: Ed25519PrivateKey) -> str:
    return sign(raw, key, REGISTER_NAMESPACE)


def check_register(raw: bytes, signature: str, name: str, trusted: Sequence[Ed25519PublicKey]) -> Register:
    """A register object verified against the controller keys, then parsed; its name must carry its
    version (so an old signed register cannot be replayed as a newer one)."""
    if len(raw) > MAX_REGISTER_BYTES:
        raise ProtocolError(f"register {name} is over the {MAX_REGISTER_BYTES}-byte limit")
    ag.check_signature(raw, signature, REGISTER_NAMESPACE, trusted, f"register {name}")
    try:
        register = parse_register(raw)
    except ProtocolError as err:
        raise ProtocolError(f"register {name}: {err}") from None
    if name != register_name(register.version):
        raise ProtocolError(f"register {name} holds version {register.version}; it must be named so")
    return register


def check_publishable(agreement: ag.Agreement) -> None:
    """An agreement published in the shared bucket may not scope by site: a site name would stand in
    clear there (keep a site-scoped agreement in a dock's local agreements.dir)."""
    if agreement.scope.sites:
        raise ProtocolError(
            f"agreement {agreement.id} scopes by site, and a site may not be named in the shared bucket: "
            "scope it by exercise or camera, or keep it in the docks' local agreements.dir"
        )


def _folded(text: str) -> str:
    return "".join(c for c in text.casefold() if c.isalnum())


def _strings(value: JSONValue) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def check_private(raw: bytes, what: str, personal: Sequence[str]) -> None:
    """Refuse a document to be published when one of its text values contains a site or an officer
    id the publisher knows (letters and digits compared, case folded), as ``exercise add`` does for
    exercise ids. Keys (age recipients, device keys) are skipped: they are random, not text."""
    needles = {_folded(p) for p in personal if len(_folded(p)) >= MIN_MATCH}
    if not needles:
        return
    doc = parse_json(raw, what, MAX_REGISTER_VALUES)
    for text in _strings(doc):
        if text.startswith("age1") or re.fullmatch(r"[0-9a-f]{64}", text):
            continue
        folded = _folded(text)
        if any(n in folded for n in needles):
            raise ProtocolError(
                f"{what} contains a site or an officer id in clear ({text[:40]!r}), and the bucket is shared: "
                "use references (e.g. EX-2026-0142) instead"
            )
