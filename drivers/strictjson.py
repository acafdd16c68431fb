"""Strict, bounded JSON for untrusted files (mass-storage sidecars, firmware metadata).

Untrusted JSON is checked like a wire payload: UTF-8 only, no duplicate keys, no NaN/Infinity,
bounded nesting and a bounded number of values, and every failure is a ProtocolError.
"""

from __future__ import annotations

import json
from typing import NoReturn, TypeAlias

from bodycam.drivers.errors import ProtocolError

#: what parsing JSON can yield: callers narrow it with isinstance (the checked accessors do) before use
JSONValue: TypeAlias = bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"] | None
JSONObject: TypeAlias = dict[str, JSONValue]


def _pairs(pairs: list[tuple[str, JSONValue]]) -> JSONObject:
    out: JSONObject = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key[:40]!r}")
        out[key] = value
    return out


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")


def count_values(raw: bytes) -> int:
    """An upper bound on the values ``raw`` would parse into, found without parsing (a few linear scans).

    Every value but the first follows a ',', ':', '[' or '{' (counting those inside strings too, so
    it can only overestimate), which lets a caller refuse a document before paying for its objects.
    """
    return raw.count(b",") + raw.count(b":") + raw.count(b"[") + raw.count(b"{")


def parse_json(raw: bytes, what: str, max_values: int) -> JSONValue:
    """Strict JSON (UTF-8, no duplicate keys, no NaN/Infinity); any failure is a ProtocolError.

    ``max_values`` bounds the objects the parse may build (Python objects cost tens of times their
    JSON bytes): every value but the first follows a ',', ':', '[' or '{', so their count bounds it.
    The value is a :data:`JSONValue`, so a caller narrows it (``isinstance``) before indexing it.
    """
    if count_values(raw) > max_values:
        raise ProtocolError(f"{what} holds more than the {max_values} values it may")
    try:
        value: JSONValue = json.loads(raw.decode("utf-8"), object_pairs_hook=_pairs, parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise ProtocolError(f"{what} is not valid UTF-8") from None
    except RecursionError:
        raise ProtocolError(f"{what} nests too deeply") from None
    except ValueError as err:
        raise ProtocolError(f"{what} is not valid JSON: {str(err)[:200]}") from None
    return value
