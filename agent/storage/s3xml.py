"""S3's XML answers read with bounds: listings (objects, versions, parts, uploads) and error documents.

A bucket is untrusted input (verify reads a bucket another organisation runs; any S3-compatible endpoint
can answer anything), so an answer is parsed by expat with its handlers, never built into a tree first:

* the body is at most what :meth:`~bodycam.agent.storage.s3http.S3Http.send` read (``limit`` bytes);
* no DOCTYPE, entity declaration or external entity (a billion-laughs or XXE answer is refused before
  anything is expanded), only the five predefined entities and character references;
* the root element is the one asked; at most ``max_entries`` entries, :data:`MAX_DEPTH` levels,
  :data:`MAX_ELEMENTS` elements, :data:`MAX_TEXT` characters in any field, each field once per entry.

What is refused is :class:`BadAnswer`, whose message says what was wrong in a few words and quotes nothing
of the answer (a key in it may name anyone): the caller adds the bucket and the request.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, NoReturn
from urllib.parse import unquote_plus
from xml.parsers import expat

from bodycam.agent.storage.bucket import MAX_KEY_BYTES, MAX_OBJECT, MAX_PARTS, ObjectInfo, Part

#: the deepest an S3 listing nests (ListBucketResult > Contents > Owner > ID is 3; RestoreStatus, 3)
MAX_DEPTH: Final = 6
#: the most elements of one answer (a page of 1,000 versions with owner and checksum is about 12,000)
MAX_ELEMENTS: Final = 64_000
#: the most characters of one field's text (a key is at most 1,024 bytes, 3,072 characters url-encoded)
MAX_TEXT: Final = 4096


class BadAnswer(ValueError):
    """An S3 answer that is not taken: malformed, hostile or past a bound. The message quotes nothing of it."""


@dataclass
class Parsed:
    """The root's own fields (``IsTruncated``, ``NextContinuationToken``...) and its entries in order: each
    the entry's element name (``Contents``, ``Version``, ``DeleteMarker``, ``Part``...) and its fields."""

    fields: dict[str, str] = field(default_factory=dict)
    entries: list[tuple[str, dict[str, str]]] = field(default_factory=list)


class _Reader:
    """expat's handlers for one answer; state for :func:`parse`."""

    def __init__(self, root: str, entry_tags: frozenset[str], max_entries: int) -> None:
        self.root, self.entry_tags, self.max_entries = root, entry_tags, max_entries
        self.parsed = Parsed()
        self.depth = 0
        self.elements = 0
        self.entry: dict[str, str] | None = None
        self.name: str | None = None  # the field whose text is being read
        self.text: list[str] = []
        self.length = 0

    def start(self, name: str, attrs: dict[str, str]) -> None:
        self.depth += 1
        self.elements += 1
        if self.depth > MAX_DEPTH or self.elements > MAX_ELEMENTS:
            raise BadAnswer("the answer nests or repeats more than an S3 answer does")
        self.name, self.text, self.length = None, [], 0
        if self.depth == 1:
            if name != self.root:
                raise BadAnswer(f"the answer is not a {self.root}")
        elif self.depth == 2 and name in self.entry_tags:
            if len(self.parsed.entries) >= self.max_entries:
                raise BadAnswer(f"the answer lists more than the {self.max_entries} entries asked for")
            self.entry = {}
            self.parsed.entries.append((name, self.entry))
        elif self.depth == 2 or (self.depth == 3 and self.entry is not None):
            self.name = name

    def end(self, name: str) -> None:
        if self.name is not None:
            into = self.entry if self.depth == 3 else self.parsed.fields
            if into is not None:
                if self.name in into:
                    raise BadAnswer(f"the answer gives {self.name} twice")
                into[self.name] = "".join(self.text)
            self.name = None
        if self.depth == 2:
            self.entry = None
        self.depth -= 1

    def data(self, text: str) -> None:
        if self.name is None:
            return
        self.length += len(text)
        if self.length > MAX_TEXT:
            raise BadAnswer(f"the answer's {self.name} is longer than {MAX_TEXT} characters")
        self.text.append(text)


def _refuse_declarations(*_: object) -> NoReturn:
    raise BadAnswer("the answer declares a DOCTYPE or entities")


def parse(body: bytes, root: str, entry_tags: frozenset[str] = frozenset(), max_entries: int = 0) -> Parsed:
    """The fields and entries of an S3 answer whose root element is ``root``; raises :class:`BadAnswer`."""
    reader = _Reader(root, entry_tags, max_entries)
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse_declarations
    parser.EntityDeclHandler = _refuse_declarations
    parser.ExternalEntityRefHandler = _refuse_declarations
    parser.StartElementHandler = reader.start
    parser.EndElementHandler = reader.end
    parser.CharacterDataHandler = reader.data
    parser.buffer_text = True
    try:
        parser.Parse(body, True)
    except expat.ExpatError as err:
        raise BadAnswer(f"the answer is not well-formed XML ({expat.ErrorString(err.code)})") from None
    return reader.parsed


# -- the listings' pages ------------------------------------------------------------------------------
#: the longest continuation token or marker taken from a listing: opaque (AWS's are a few hundred
#: characters; SeaweedFS's is the last key listed, up to 1,024 bytes), sent back as it came
MAX_TOKEN: Final = 2048
_DIGITS: Final = re.compile(r"[0-9]{1,16}")
_OBJECTS: Final = frozenset({"Contents"})
_VERSIONS: Final = frozenset({"Version", "DeleteMarker"})
_PARTS: Final = frozenset({"Part"})
_UPLOADS: Final = frozenset({"Upload"})


@dataclass(frozen=True)
class ObjectVersion:
    """One version of an object, or a delete marker (``size`` 0), as ListObjectVersions gives it."""

    key: str
    version_id: str
    latest: bool
    delete_marker: bool
    size: int = 0
    last_modified: datetime | None = None


@dataclass
class Page:
    """One page of a listing: what it lists, whether more follows, and where the next page starts
    (a continuation token; a key and version-id marker; a part number marker)."""

    items: list[ObjectInfo] | list[ObjectVersion] | list[Part] | list[tuple[str, str, datetime | None]]
    truncated: bool
    next: tuple[str, ...] = ()


def objects_page(body: bytes, prefix: str, strip: str, max_entries: int) -> Page:
    """A ListObjectsV2 page (asked with ``encoding-type=url``) of keys under ``prefix``, each less ``strip``."""
    parsed, listed = _listed(body, "ListBucketResult", _OBJECTS, prefix, max_entries)
    items = [
        ObjectInfo(key=key[len(strip) :], size=size, etag=entry.get("ETag", ""), last_modified=when)
        for _, entry, key, size, when in listed
    ]
    truncated = _flag(parsed.fields, "IsTruncated")
    token = parsed.fields.get("NextContinuationToken")
    return Page(items, truncated, (_token(token),) if truncated and token else ())


def versions_page(body: bytes, prefix: str, strip: str, max_entries: int) -> Page:
    """A ListObjectVersions page (asked with ``encoding-type=url``): versions and delete markers, in order."""
    parsed, listed = _listed(body, "ListVersionsResult", _VERSIONS, prefix, max_entries)
    items = [
        ObjectVersion(
            key[len(strip) :],
            _token(_required(e, "VersionId")),
            _flag(e, "IsLatest"),
            tag == "DeleteMarker",
            size,
            when,
        )
        for tag, e, key, size, when in listed
    ]
    truncated = _flag(parsed.fields, "IsTruncated")
    nxt = (parsed.fields.get("NextKeyMarker"), parsed.fields.get("NextVersionIdMarker"))
    if not truncated or not nxt[0]:
        return Page(items, truncated)
    return Page(items, truncated, (_key(_decoder(parsed)(nxt[0]), prefix), _token(nxt[1]) if nxt[1] else ""))


def _listed(
    body: bytes, root: str, tags: frozenset[str], prefix: str, max_entries: int
) -> tuple[Parsed, list[tuple[str, dict[str, str], str, int, datetime | None]]]:
    """A listing's entries with what every listing of keys gives: the entry's element name, its fields,
    its key (decoded, checked under ``prefix``), size and LastModified."""
    parsed = parse(body, root, tags, max_entries)
    decode = _decoder(parsed)
    listed = [
        (tag, entry, _key(decode(_required(entry, "Key")), prefix), _size(entry.get("Size", "0")),
         _date(entry.get("LastModified")))
        for tag, entry in parsed.entries
    ]  # fmt: skip
    return parsed, listed


def parts_page(body: bytes) -> Page:
    """A ListParts page: each part's number, ETag, size and checksum (when the server reports it)."""
    parsed = parse(body, "ListPartsResult", _PARTS, 1000)
    items = []
    for _, entry in parsed.entries:
        number = _size(_required(entry, "PartNumber"))
        if not 1 <= number <= MAX_PARTS:
            raise BadAnswer("the answer lists a part number S3 does not have")
        checksum = entry.get("ChecksumCRC32C") or entry.get("ChecksumSHA256") or None
        items.append(Part(number, _required(entry, "ETag"), checksum, _size(_required(entry, "Size"))))
    truncated = _flag(parsed.fields, "IsTruncated")
    marker = parsed.fields.get("NextPartNumberMarker")
    return Page(items, truncated, (str(_size(marker)),) if truncated and marker else ())


def uploads_page(body: bytes, prefix: str, max_entries: int) -> Page:
    """A ListMultipartUploads page: (key, upload id, initiated) of each upload under ``prefix``; the next
    key and upload-id markers (SeaweedFS gives no NextKeyMarker: the caller goes on from the last key)."""
    parsed = parse(body, "ListMultipartUploadsResult", _UPLOADS, max_entries)
    items: list[tuple[str, str, datetime | None]] = []
    for _, entry in parsed.entries:
        key = _key(_required(entry, "Key"), prefix)
        items.append((key, _token(_required(entry, "UploadId")), _date(entry.get("Initiated"))))
    truncated = _flag(parsed.fields, "IsTruncated")
    markers = (parsed.fields.get("NextKeyMarker") or "", parsed.fields.get("NextUploadIdMarker") or "")
    for marker in markers:
        if marker:
            _token(marker)
    return Page(items, truncated, markers if truncated and any(markers) else ())


def _required(entry: dict[str, str], name: str) -> str:
    if name not in entry:
        raise BadAnswer(f"an entry of the answer has no {name}")
    return entry[name]


def _decoder(parsed: Parsed) -> Callable[[str], str]:
    """Keys as botocore decodes them: url-decoded when the answer says ``EncodingType`` url."""
    encoding = parsed.fields.get("EncodingType")
    if encoding not in (None, "url"):
        raise BadAnswer("the answer's keys are in an encoding S3 does not use")
    return unquote_plus if encoding == "url" else str


def _key(key: str, prefix: str) -> str:
    if not key or len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise BadAnswer(f"the answer lists a key that is empty or longer than {MAX_KEY_BYTES} bytes")
    if not key.startswith(prefix):
        raise BadAnswer("the answer lists a key outside the prefix asked for")
    return key


def _size(text: str) -> int:
    if not _DIGITS.fullmatch(text) or int(text) > MAX_OBJECT:
        raise BadAnswer("the answer gives a size or number that is not a whole number S3 can have")
    return int(text)


def _flag(fields: dict[str, str], name: str) -> bool:
    value = fields.get(name, "false")
    if value not in ("true", "false"):
        raise BadAnswer(f"the answer's {name} is neither true nor false")
    return value == "true"


def _token(text: str) -> str:
    if not 0 < len(text) <= MAX_TOKEN or "\x00" in text:
        raise BadAnswer(f"the answer's continuation token or marker is not 1-{MAX_TOKEN} characters")
    return text


def _date(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise BadAnswer("the answer gives a LastModified that is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise BadAnswer("the answer gives a LastModified without its time zone")
    return parsed


__all__ = [
    "MAX_DEPTH",
    "MAX_ELEMENTS",
    "MAX_TEXT",
    "MAX_TOKEN",
    "BadAnswer",
    "ObjectVersion",
    "Page",
    "Parsed",
    "objects_page",
    "parse",
    "parts_page",
    "uploads_page",
    "versions_page",
]
