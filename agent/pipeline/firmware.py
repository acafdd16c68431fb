"""Firmware push: vendor-signed images, checked on the dock before a byte is sent (docs/firmware.md).

An image file is a short text header followed by the raw image bytes::

    BODYCAM-FW1\\n
    {"models":["Sentinel BWC-2"],"sha256":"<hex>","size":1234,"version":"1.5.0"}\\n
    <base64 Ed25519 signature over firmware_message(version, size, sha256)>\\n
    <base64 Ed25519 signature over "bodycam-firmware-header-v1\\0" + the metadata line>\\n
    <size bytes of image>

The first signature is the one the camera checks at FW_BEGIN; the second binds the rest of the
metadata (the models) to the vendor's key, which the camera's signature does not cover. The image
bytes are only ever streamed: hashed in 1 MiB blocks, sent in MAX_FIRMWARE_CHUNK pieces.

The order of a push is fixed: parse and bound the header (:func:`load_image`), verify both
signatures and the SHA-256 of the bytes against the vendor key(s) (:func:`verify_image`), and only
then open cameras, authenticate each against its enrolled key, check model and version, and
transfer with resume (:func:`push`). The camera checks the signature again at FW_BEGIN and the
SHA-256 again at FW_COMMIT; the dock re-identifies it afterwards to see the new version running.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import logging
import os
import re
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from bodycam.agent.formats.custody import canonical
from bodycam.agent.formats.sshsig import fingerprint, parse_public_key_line
from bodycam.agent.pipeline.dockauth import DockCredentials, secure_link
from bodycam.agent.pipeline.inventory import opened_cameras
from bodycam.agent.storage.custody_log import CustodyLog
from bodycam.agent.storage.journal import Journal
from bodycam.drivers.device.camera import Camera
from bodycam.drivers.errors import (
    AuthenticationError,
    BodycamError,
    ConfigError,
    DeviceError,
    FirmwareError,
    ProtocolError,
    StorageError,
    TransportError,
)
from bodycam.drivers.files import read_bounded
from bodycam.drivers.models import by_usb_id
from bodycam.drivers.protocol import messages as m
from bodycam.drivers.protocol.frames import Command, Status
from bodycam.drivers.strictjson import parse_json

LOG = logging.getLogger(__name__)

MAGIC: Final = b"BODYCAM-FW1\n"
HEADER_CONTEXT: Final = b"bodycam-firmware-header-v1\x00"
MAX_METADATA_LINE: Final = 4096  # bytes, newline included
MAX_MODELS: Final = 32
SIGNATURE_LINE: Final = 88 + 1  # base64 of 64 bytes, newline
METADATA_KEYS: Final = frozenset({"models", "sha256", "size", "version"})
HASH_BLOCK: Final = 1024 * 1024
MAX_VENDOR_KEY_FILE: Final = 64 * 1024
DEFAULT_VENDOR_KEY: Final = Path("/etc/bodycam/vendor_ed25519.pub")
MAX_RESYNCS: Final = 3  # FW_CHUNK answers lost in a row before the transfer gives up

#: semantic versioning 2.0.0 (semver.org), ASCII only
_SEMVER = re.compile(
    r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(?:-((?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*))*))?"
    r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
)

ProgressFn = Callable[[int, int], None]  # (bytes the camera holds, image size)


# -- versions -----------------------------------------------------------------------------------
def parse_version(text: str) -> tuple[int, int, int, tuple[int | str, ...] | None]:
    """(major, minor, patch, pre-release identifiers or None); ValueError unless ``text`` is semver."""
    match = _SEMVER.fullmatch(text) if len(text.encode()) <= m.MAX_SHORT_TEXT else None
    if match is None:
        raise ValueError(
            f"{text[:40]!r} is not a semantic version (MAJOR.MINOR.PATCH, at most {m.MAX_SHORT_TEXT} bytes)"
        )
    pre = match.group(4)
    ids = None if pre is None else tuple(int(p) if p.isdigit() else p for p in pre.split("."))
    return int(match.group(1)), int(match.group(2)), int(match.group(3)), ids


def _pre_key(ids: tuple[int | str, ...] | None) -> tuple[int | tuple[int, int, str], ...]:
    # A release sorts after any of its pre-releases; numeric identifiers sort before alphanumeric ones.
    if ids is None:
        return (1,)
    return (0, *((0, p, "") if isinstance(p, int) else (1, 0, p) for p in ids))


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as ``a`` precedes, equals or follows ``b`` in semver precedence (build metadata ignored).

    Raises FirmwareError naming the version that is not semver.
    """
    try:
        pa, pb = parse_version(a), parse_version(b)
    except ValueError as err:
        raise FirmwareError(f"cannot compare firmware versions: {err}") from None
    ka = (pa[:3], _pre_key(pa[3]))
    kb = (pb[:3], _pre_key(pb[3]))
    return (ka > kb) - (ka < kb)


# -- the image file -----------------------------------------------------------------------------
@dataclass(slots=True)
class FirmwareImage:
    """A parsed image header; the bytes stay in the file (``payload_offset`` .. end)."""

    path: Path
    version: str
    models: tuple[str, ...]
    size: int
    sha256: bytes
    signature: bytes  # over firmware_message(version, size, sha256): what the camera checks
    header_signature: bytes  # over HEADER_CONTEXT + metadata line: binds the models
    metadata: bytes  # the metadata line as signed, without its newline
    payload_offset: int
    file_id: tuple[int, int, int, int] = field(repr=False)  # (dev, inode, size, mtime_ns) when loaded
    verified_by: str | None = None  # fingerprint of the vendor key that verified it

    def to_json(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "version": self.version,
            "models": list(self.models),
            "size": self.size,
            "sha256": self.sha256.hex(),
            "vendor_key": self.verified_by,
        }

    @contextlib.contextmanager
    def open_payload(self) -> Iterator[BinaryIO]:
        """The image file positioned at the first image byte; refuses a file changed since it was loaded."""
        try:
            f = open(self.path, "rb")
        except OSError as err:
            raise FirmwareError(f"cannot open firmware image {self.path}: {err.strerror}") from err
        try:
            if _file_id(os.fstat(f.fileno())) != self.file_id:
                raise FirmwareError(f"firmware image {self.path} changed since it was loaded; refused")
            f.seek(self.payload_offset)
            yield f
        finally:
            f.close()


def _file_id(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _check_text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string")
    if len(value.encode()) > m.MAX_SHORT_TEXT:
        raise ValueError(f"{what} {value[:40]!r} is longer than {m.MAX_SHORT_TEXT} bytes")
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in value):
        raise ValueError(f"{what} {value[:40]!r} contains control characters")
    return value


def _check_metadata(version: object, models: object, size: object) -> tuple[str, tuple[str, ...], int]:
    """The bounds every image obeys (shared by load_image and make_image); ValueError names the field."""
    text = _check_text(version, "version")
    parse_version(text)
    if not isinstance(models, list | tuple) or not 1 <= len(models) <= MAX_MODELS:
        raise ValueError(f"models must list 1 to {MAX_MODELS} camera models")
    names = tuple(_check_text(name, "model") for name in models)
    if len(set(names)) != len(names):
        raise ValueError("models lists a model twice")
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= m.MAX_FIRMWARE_SIZE:
        raise ValueError(f"size must be 1 to {m.MAX_FIRMWARE_SIZE} bytes")
    return text, names, size


def _signature_line(raw: bytes, what: str, path: Path) -> bytes:
    text = raw.rstrip(b"\n")
    if len(raw) != SIGNATURE_LINE or not raw.endswith(b"\n"):
        raise FirmwareError(f"firmware image {path}: the {what} line is not 88 base64 characters")
    try:
        sig = base64.b64decode(text, validate=True)
    except ValueError:
        sig = b""
    if len(sig) != 64 or base64.b64encode(sig) != text:
        raise FirmwareError(f"firmware image {path}: the {what} is not 64 bytes of canonical base64")
    return sig


def load_image(path: Path) -> FirmwareImage:
    """Parse and bound an image header; the image bytes are not read (``verify_image`` hashes them).

    Raises FirmwareError naming the file and what is wrong with it.
    """
    try:
        f = open(path, "rb")
    except OSError as err:
        raise FirmwareError(f"cannot open firmware image {path}: {err.strerror}") from err
    with f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise FirmwareError(f"firmware image {path} is not a regular file")
        if f.read(len(MAGIC)) != MAGIC:
            raise FirmwareError(f"{path} is not a bodycam firmware image (it does not start with BODYCAM-FW1)")
        line = f.readline(MAX_METADATA_LINE)
        if not line.endswith(b"\n"):
            raise FirmwareError(
                f"firmware image {path}: metadata line missing or longer than {MAX_METADATA_LINE} bytes"
            )
        metadata = line[:-1]
        try:
            doc = parse_json(metadata, f"firmware image {path}: metadata", max_values=64)
        except ProtocolError as err:
            raise FirmwareError(str(err)) from None
        if not isinstance(doc, dict) or set(doc) != METADATA_KEYS:
            raise FirmwareError(f"firmware image {path}: metadata must have exactly the keys {sorted(METADATA_KEYS)}")
        if canonical(doc) != metadata:
            raise FirmwareError(f"firmware image {path}: metadata is not canonical JSON (sorted keys, no spaces)")
        where = f"firmware image {path}: "
        try:
            version, models, size = _check_metadata(doc["version"], doc["models"], doc["size"])
        except ValueError as err:
            raise FirmwareError(f"{where}{err}") from None
        digest = doc["sha256"]
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise FirmwareError(f"{where}sha256 must be 64 lower-case hex digits")
        signature = _signature_line(f.readline(SIGNATURE_LINE), "signature", path)
        header_signature = _signature_line(f.readline(SIGNATURE_LINE), "header signature", path)
        offset = f.tell()
        if st.st_size != offset + size:
            raise FirmwareError(
                f"{where}holds {st.st_size - offset} image bytes but its header says {size} (truncated or padded)"
            )
    return FirmwareImage(
        Path(path),
        version,
        models,
        size,
        bytes.fromhex(digest),
        signature,
        header_signature,
        metadata,
        offset,
        _file_id(st),
    )


def load_vendor_keys(path: Path) -> list[Ed25519PublicKey]:
    """The vendor's firmware public key(s): one per line, ``ssh-ed25519 AAAA... [comment]`` or 64 hex
    digits; blank lines and ``#`` comments are skipped. ConfigError if none is usable."""
    data = read_bounded(
        path, MAX_VENDOR_KEY_FILE,
        unreadable=lambda err: _unreadable_vendor_key(path, err),
        too_large=lambda: ConfigError(f"vendor firmware key file {path} is larger than {MAX_VENDOR_KEY_FILE} bytes"),
    )  # fmt: skip
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"vendor firmware key file {path} is not UTF-8 text") from None
    keys: list[Ed25519PublicKey] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            if re.fullmatch(r"[0-9A-Fa-f]{64}", line):
                keys.append(Ed25519PublicKey.from_public_bytes(bytes.fromhex(line)))
            else:
                keys.append(parse_public_key_line(line))
        except (ConfigError, ValueError) as err:
            raise ConfigError(f"vendor firmware key file {path} line {number}: {err}") from None
    if not keys:
        raise ConfigError(f"vendor firmware key file {path} holds no key")
    return keys


def _unreadable_vendor_key(path: Path, err: OSError) -> ConfigError:
    if isinstance(err, FileNotFoundError):
        return ConfigError(
            f"vendor firmware key {path} does not exist; pass --vendor-key FILE "
            "(the vendor's ssh-ed25519 public key line, or 64 hex digits)"
        )
    return ConfigError(f"cannot read vendor firmware key {path}: {err.strerror}")


def _verifies(key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def verify_image(image: FirmwareImage, vendor_keys: Sequence[Ed25519PublicKey]) -> None:
    """Check both signatures against a vendor key, then the SHA-256 and size of the image bytes.

    Raises FirmwareError (wrong signer, tampered header or bytes). On success marks the image
    verified; :func:`push` refuses an image that was not.
    """
    message = m.firmware_message(image.version, image.size, image.sha256)
    signer = next(
        (
            key
            for key in vendor_keys
            if _verifies(key, image.signature, message)
            and _verifies(key, image.header_signature, HEADER_CONTEXT + image.metadata)
        ),
        None,
    )
    if signer is None:
        raise FirmwareError(
            f"firmware image {image.path} ({image.version}) is not signed by the vendor key"
            f"{'s' if len(vendor_keys) != 1 else ''} "
            f"{', '.join(fingerprint(k) for k in vendor_keys)}: wrong signer or altered header; refused"
        )
    digest = hashlib.sha256()
    with image.open_payload() as f:
        remaining = image.size
        while remaining:
            block = f.read(min(HASH_BLOCK, remaining))
            if not block:
                break
            digest.update(block)
            remaining -= len(block)
        if remaining or f.read(1):
            raise FirmwareError(f"firmware image {image.path} changed size while being read; refused")
    if digest.digest() != image.sha256:
        raise FirmwareError(
            f"firmware image {image.path} ({image.version}): the SHA-256 of its bytes does not match the "
            "signed SHA-256 (tampered or corrupt); refused"
        )
    image.verified_by = fingerprint(signer)


def make_image(
    path: Path,
    payload: bytes | Path,
    version: str,
    models: Sequence[str],
    vendor_private_key: Ed25519PrivateKey,
) -> FirmwareImage:
    """Write a signed image (vendors' test images; the tests). ``payload`` is bytes or a file, streamed.

    Raises ConfigError for a version, model list or payload outside the bounds of the format.
    """
    if isinstance(payload, bytes):
        size = len(payload)
        digest = hashlib.sha256(payload).digest()
    else:
        size, digest = _hash_file(payload)
    try:
        version, names, size = _check_metadata(version, list(models), size)
    except ValueError as err:
        raise ConfigError(f"cannot build a firmware image: {err}") from None
    metadata = canonical({"models": list(names), "sha256": digest.hex(), "size": size, "version": version})
    signature = vendor_private_key.sign(m.firmware_message(version, size, digest))
    header_signature = vendor_private_key.sign(HEADER_CONTEXT + metadata)
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or Path("."))
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(MAGIC + metadata + b"\n")
            out.write(base64.b64encode(signature) + b"\n" + base64.b64encode(header_signature) + b"\n")
            if isinstance(payload, bytes):
                out.write(payload)
            else:
                with open(payload, "rb") as src:
                    copied = 0
                    while block := src.read(HASH_BLOCK):
                        copied += len(block)
                        out.write(block)
                if copied != size:
                    raise ConfigError(f"payload {payload} changed while the image was built")
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return load_image(path)


def _hash_file(path: Path) -> tuple[int, bytes]:
    digest = hashlib.sha256()
    size = 0
    try:
        with open(path, "rb") as f:
            while block := f.read(HASH_BLOCK):
                size += len(block)
                if size > m.MAX_FIRMWARE_SIZE:
                    raise ConfigError(f"payload {path} is larger than {m.MAX_FIRMWARE_SIZE} bytes")
                digest.update(block)
    except OSError as err:
        raise ConfigError(f"cannot read payload {path}: {err.strerror}") from err
    return size, digest.digest()


# -- pushing to one camera ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PushResult:
    serial: str
    model: str
    previous_version: str
    version: str
    status: str  # "installed" | "already_installed"
    slot: int | None = None
    size: int = 0
    resumed_from: int = 0  # bytes the camera already held at FW_BEGIN
    bytes_sent: int = 0  # image bytes the camera acknowledged during this push

    def to_json(self) -> dict[str, object]:
        return {
            "serial": self.serial,
            "model": self.model,
            "previous_version": self.previous_version,
            "version": self.version,
            "status": self.status,
            "slot": self.slot,
            "size": self.size,
            "resumed_from": self.resumed_from,
            "bytes_sent": self.bytes_sent,
        }


class _Cursor:
    """Reads the image sequentially for sending and hashes exactly the bytes the camera acknowledged."""

    def __init__(self, f: BinaryIO, image: FirmwareImage) -> None:
        self._f = f
        self._image = image
        self._hash = hashlib.sha256()
        self.pos = 0  # bytes hashed and held by the camera

    def move_to(self, target: int) -> None:
        """Continue at ``target`` (the camera's offset): hash the bytes up to it without sending them."""
        if target < self.pos:
            self._hash, self.pos = hashlib.sha256(), 0
        self._f.seek(self._image.payload_offset + self.pos)
        while self.pos < target:
            block = self._read(min(HASH_BLOCK, target - self.pos))
            self._hash.update(block)
            self.pos += len(block)

    def peek(self, n: int) -> bytes:
        self._f.seek(self._image.payload_offset + self.pos)
        return self._read(n)

    def accept(self, data: bytes) -> None:
        self._hash.update(data)
        self.pos += len(data)

    def digest(self) -> bytes:
        return self._hash.digest()

    def _read(self, n: int) -> bytes:
        data = self._f.read(n)
        if len(data) != n:
            raise FirmwareError(f"firmware image {self._image.path} shrank while being sent; refused")
        return data


def push(
    camera: Camera,
    image: FirmwareImage,
    *,
    allow_downgrade: bool = False,
    on_progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
) -> PushResult:
    """Install a verified image on an opened, authenticated camera, resuming a transfer it holds.

    Refuses (FirmwareError, before FW_BEGIN) an unverified image, an unauthenticated camera
    (AuthenticationError), a model the image does not list, and a version that is not newer
    than the camera's unless ``allow_downgrade``; the same version is 'already_installed'.
    """
    if image.verified_by is None:
        raise FirmwareError(f"firmware image {image.path} has not been verified against a vendor key; refused")
    ident = camera.identity
    if not camera.authenticated:
        raise AuthenticationError(
            f"camera {ident.serial} has not proved its enrolled device key; firmware goes only to authenticated cameras"
        )
    registered = by_usb_id(ident.vid, ident.pid)
    if registered is not None and "firmware" not in registered.capabilities:
        raise FirmwareError(f"camera {ident.serial} ({ident.model}) does not take firmware over the dock")
    if ident.model not in image.models:
        raise FirmwareError(
            f"camera {ident.serial} is a {ident.model}; firmware image {image.version} is for "
            f"{', '.join(image.models)} only; refused"
        )
    if not allow_downgrade:
        if ident.firmware == image.version:
            return PushResult(ident.serial, ident.model, ident.firmware, image.version, "already_installed")
        try:
            order = compare_versions(image.version, ident.firmware)
        except FirmwareError:
            raise FirmwareError(
                f"camera {ident.serial} reports firmware {ident.firmware!r}, which is not a semantic version; "
                "cannot tell an upgrade from a downgrade (pass --allow-downgrade to install anyway)"
            ) from None
        if order <= 0:
            what = "older than" if order < 0 else "a different build of"
            raise FirmwareError(
                f"camera {ident.serial}: firmware {image.version} is {what} the installed {ident.firmware}; "
                "refused (pass --allow-downgrade to roll back)"
            )
    offset, sent = _transfer(camera, image, on_progress, cancel)
    try:
        committed = camera.firmware_commit()
    except DeviceError as err:
        if err.status == Status.FIRMWARE_REJECTED:
            raise FirmwareError(
                f"camera {ident.serial} rejected firmware {image.version} at commit (the bytes it holds do not "
                f"match the signed SHA-256); firmware {ident.firmware} stays active"
            ) from err
        raise
    if committed.version != image.version:
        raise FirmwareError(
            f"camera {ident.serial} committed version {committed.version!r}, not {image.version}; check the camera"
        )
    after = m.Identity.from_bytes(camera.call(Command.IDENTIFY))
    if after.serial != ident.serial or after.device_key != ident.device_key:
        raise FirmwareError(f"camera {ident.serial} answered as another camera after the firmware commit")
    if after.firmware != image.version:
        raise FirmwareError(
            f"camera {ident.serial} reports firmware {after.firmware} after committing {image.version}: "
            "the new firmware is not running"
        )
    return PushResult(
        ident.serial, ident.model, ident.firmware, image.version, "installed", committed.slot, image.size, offset, sent
    )


def _transfer(
    camera: Camera, image: FirmwareImage, on_progress: ProgressFn | None, cancel: threading.Event | None
) -> tuple[int, int]:
    """FW_BEGIN, then FW_CHUNK from the camera's offset to the end; returns (resumed from, bytes sent)."""
    serial = camera.identity.serial

    def begin() -> int:
        try:
            return camera.firmware_begin(image.size, image.sha256, image.version, image.signature)
        except DeviceError as err:
            if err.status == Status.FIRMWARE_REJECTED:
                raise FirmwareError(
                    f"camera {serial} refused firmware {image.version}: its vendor key does not accept the "
                    "image's signature"
                ) from err
            raise

    resumed_from = begin()
    if resumed_from:
        LOG.info("camera %s holds %d of %d firmware bytes; resuming", serial, resumed_from, image.size)
    sent = 0
    lost = 0
    with image.open_payload() as f:
        cursor = _Cursor(f, image)
        cursor.move_to(resumed_from)
        if on_progress is not None:
            on_progress(cursor.pos, image.size)
        try:
            while cursor.pos < image.size:
                if cancel is not None and cancel.is_set():
                    raise FirmwareError(
                        f"camera {serial}: firmware transfer stopped at byte {cursor.pos} of {image.size}; "
                        "push again to resume"
                    )
                data = cursor.peek(min(m.MAX_FIRMWARE_CHUNK, image.size - cursor.pos))
                try:
                    held = camera.firmware_chunk(cursor.pos, data)
                except DeviceError as err:
                    # A lost answer, then a retry of an appended chunk: ask the camera where it is.
                    if err.status != Status.OUT_OF_RANGE or lost >= MAX_RESYNCS:
                        raise
                    lost += 1
                    held = begin()
                    LOG.warning("camera %s: FW_CHUNK at %d refused; camera holds %d", serial, cursor.pos, held)
                    cursor.move_to(held)
                    continue
                if held != cursor.pos + len(data):
                    raise ProtocolError(
                        f"camera {serial} acknowledged firmware offset {held} after a chunk at {cursor.pos} "
                        f"of {len(data)} bytes"
                    )
                lost = 0
                cursor.accept(data)
                sent += len(data)
                if on_progress is not None:
                    on_progress(cursor.pos, image.size)
        except TransportError as err:
            raise type(err)(
                f"{err}; the camera had acknowledged {cursor.pos} of {image.size} firmware bytes: "
                "dock it again and push again to resume"
            ) from err
        if cursor.digest() != image.sha256:
            raise FirmwareError(
                f"firmware image {image.path} changed while being sent (SHA-256 differs); not committed"
            )
    return resumed_from, sent


# -- pushing to the cameras the armourer named --------------------------------------------------
@dataclass(frozen=True, slots=True)
class PushFailure:
    camera: str  # serial, or the link address when the camera never identified itself
    error: str

    def to_json(self) -> dict[str, object]:
        return {"camera": self.camera, "error": self.error}


@dataclass
class PushReport:
    image: FirmwareImage
    results: list[PushResult] = field(default_factory=list)
    failures: list[PushFailure] = field(default_factory=list)
    skipped: list[PushFailure] = field(default_factory=list)  # --all: cameras of models the image is not for

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "image": self.image.to_json(),
            "cameras": [r.to_json() for r in self.results],
            "errors": [f.to_json() for f in self.failures],
            "skipped": [{"camera": s.camera, "reason": s.error} for s in self.skipped],
        }


def install(
    camera: Camera,
    image: FirmwareImage,
    journal: Journal,
    custody: CustodyLog,
    *,
    allow_downgrade: bool = False,
    on_progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    credentials: DockCredentials | None = None,
    enrolled: Callable[[str], bytes | None] | None = None,
) -> PushResult:
    """Authenticate an identified camera against its enrolled key, push, and record it in custody.

    ``enrolled`` looks the key up (default: the journal's; the CLI adds the fleet register's).
    Every failure after identification is also a custody ``error`` entry; the error propagates.
    """
    ident = camera.identity
    try:
        camera.authenticate((enrolled or journal.enrolled_key)(ident.serial))
        secure_link(camera, credentials, custody.append, record_unprotected=False)
        result = push(camera, image, allow_downgrade=allow_downgrade, on_progress=on_progress, cancel=cancel)
    except BodycamError as err:
        with contextlib.suppress(StorageError):
            custody.error(
                err,
                camera=ident.serial,
                step="firmware_push",
                image_version=image.version,
                image_sha256=image.sha256.hex(),
            )
        raise
    if result.status == "installed":
        custody.append(
            "firmware_installed",
            camera=result.serial,
            model=result.model,
            from_version=result.previous_version,
            to_version=result.version,
            slot=result.slot,
            image_sha256=image.sha256.hex(),
            size=image.size,
            resumed_from=result.resumed_from,
            vendor_key=image.verified_by,
        )
    return result


def push_cameras(
    image: FirmwareImage,
    journal: Journal,
    custody: CustodyLog,
    *,
    usbip: Sequence[str],
    serial_ports: Sequence[str],
    discover: bool,
    cameras: Sequence[str] = (),
    all_cameras: bool = False,
    allow_downgrade: bool = False,
    on_progress: Callable[[str, int, int], None] | None = None,
    cancel: threading.Event | None = None,
    credentials: DockCredentials | None = None,
    enrolled: Callable[[str], bytes | None] | None = None,
) -> PushReport:
    """Push a verified image to the named cameras, or with ``all_cameras`` to every reachable camera of
    a model the image lists (others are skipped), one after another."""
    if image.verified_by is None:
        raise FirmwareError(f"firmware image {image.path} has not been verified against a vendor key; refused")
    if bool(cameras) == all_cameras:
        raise ConfigError("name the cameras to update: --camera SN (repeatable) or --all")
    report = PushReport(image)
    wanted = set(cameras)
    seen: set[str] = set()
    unidentified: list[PushFailure] = []
    with opened_cameras(usbip, serial_ports, discover=discover) as cams:
        for cam in cams:
            try:
                ident = cam.open()
            except BodycamError as err:
                unidentified.append(PushFailure(f"{cam.transport.kind}:{cam.transport.address}", str(err)))
                continue
            if not all_cameras and ident.serial not in wanted:
                continue
            if all_cameras and ident.model not in image.models:
                report.skipped.append(PushFailure(ident.serial, f"a {ident.model}; the image is not for it"))
                continue
            if ident.serial in seen:
                report.failures.append(PushFailure(ident.serial, "reachable on two links at once; pushed once"))
                continue
            seen.add(ident.serial)
            progress = None if on_progress is None else functools.partial(on_progress, ident.serial)
            try:
                report.results.append(
                    install(
                        cam,
                        image,
                        journal,
                        custody,
                        allow_downgrade=allow_downgrade,
                        on_progress=progress,
                        cancel=cancel,
                        credentials=credentials,
                        enrolled=enrolled,
                    )
                )
            except BodycamError as err:
                report.failures.append(PushFailure(ident.serial, str(err)))
    if all_cameras:
        report.failures.extend(unidentified)
        if not seen and not unidentified and not report.skipped:
            report.failures.append(PushFailure("-", "no cameras found"))
    else:
        for serial in sorted(wanted - seen):
            detail = f" ({len(unidentified)} other link(s) did not identify)" if unidentified else ""
            report.failures.append(PushFailure(serial, f"camera {serial} is not reachable{detail}"))
    return report
