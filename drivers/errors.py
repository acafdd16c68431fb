"""One error tree for the whole agent, rooted in :class:`BodycamError`.

Every message names the thing involved (port, camera serial, object key, config key) and, where
there is one, the fix. Third-party errors are wrapped at the layer boundary with ``raise ... from err``.

::

    BodycamError
     +-- TransportError          bytes could not move (unplugged, timeout, port busy)
     |    +-- DisconnectedError  the camera went away mid-conversation (resume after re-dock)
     |    +-- LinkTimeoutError   the camera did not answer in time
     +-- ProtocolError           bytes arrived but are not a valid frame/answer (CRC, length, sequence)
     +-- DeviceError             the camera answered with a non-OK status (carries it)
     |    +-- AuthenticationError  unknown or impostor camera
     +-- IntegrityError          a hash, size or signature does not match
     +-- StorageError            journal, spool or bucket could not store or read
     |    +-- UploadError        the bucket refused or was unreachable
     +-- ConfigError             configuration or usage is wrong (exit code 2)
     +-- FirmwareError           a firmware image is refused (signature, version, commit)
     +-- ServiceError            the daemon is not running, or refused a control request
"""

from __future__ import annotations


class BodycamError(Exception):
    """Root of every error the agent raises on purpose; the CLI prints its message as one line."""

    exit_code = 1


class TransportError(BodycamError):
    """Bytes could not move between dock and camera."""


class DisconnectedError(TransportError):
    """The camera went away (unplugged, link closed); the work resumes when it is docked again."""


class LinkTimeoutError(TransportError):
    """The camera did not answer within the deadline."""


class ProtocolError(BodycamError):
    """The camera sent bytes that break the wire protocol (docs/protocol.md)."""


class DeviceError(BodycamError):
    """The camera refused a command; ``status`` keeps the camera's status code, known or not."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class AuthenticationError(DeviceError):
    """The camera is not enrolled, or could not prove it holds its enrolled device key."""


class IntegrityError(BodycamError):
    """A hash, size, signature or chain link does not match what was promised."""


class StorageError(BodycamError):
    """The journal, spool or bucket could not store or read something."""


class UploadError(StorageError):
    """The bucket refused an upload or could not be reached; retried on the next run."""


class ConfigError(BodycamError):
    """Configuration or command-line usage is wrong; the message names the key to fix."""

    exit_code = 2


class FirmwareError(BodycamError):
    """A firmware image was refused before or during transfer."""


class ServiceError(BodycamError):
    """The daemon is not running, cannot be reached, or refused a control request (an operational failure)."""
