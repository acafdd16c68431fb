"""CRC-32C (hardware-accelerated) from the ``crc32c`` package's extension module, without the package.

``import crc32c`` runs the package's ``__init__``, which asks ``importlib.metadata`` for its own version:
that imports ``importlib.metadata``, ``email``, ``zipfile`` and ``csv`` and scans ``sys.path`` for
distributions, some 40 ms of CPU on every ``bodycam-sync`` run for a version string nobody reads (issue 14,
start-up). The extension module itself (``crc32c._crc32c``, the only part used) is loaded here from the
package's directory; if it is not where this expects it (a future layout), the package is imported as
usual. ``crc32c.crc32c(data, value=0)`` is the same function either way.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
from types import ModuleType
from typing import TYPE_CHECKING

_EXTENSION = "crc32c._crc32c"


def _load() -> ModuleType:
    if _EXTENSION in sys.modules:
        return sys.modules[_EXTENSION]
    package = importlib.util.find_spec("crc32c")  # finds the package without running its __init__
    for location in (package.submodule_search_locations or []) if package else []:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = os.path.join(location, "_crc32c" + suffix)
            if not os.path.isfile(path):
                continue
            loader = importlib.machinery.ExtensionFileLoader(_EXTENSION, path)
            spec = importlib.util.spec_from_file_location(_EXTENSION, path, loader=loader)
            if spec is None:
                continue
            module = importlib.util.module_from_spec(spec)
            loader.exec_module(module)
            sys.modules[_EXTENSION] = module  # a later 'import crc32c' reuses it
            return module
    import crc32c as fallback

    return fallback


if TYPE_CHECKING:
    from crc32c import _crc32c as crc32c
else:
    crc32c = _load()

__all__ = ["crc32c"]
