"""The native fast path of `extractor.normalize` for releases (extractor/rust_normalizer, loaded
through ctypes), about 90% of a dump's parse time.

For each record of a chunk the library answers either the id and canonical JSON Python would make,
byte for byte, or "let Python decide" (an unknown child, an entity it does not know, broken XML,
...). It is optional: `make install` builds it where `cargo` exists; without it, or with
`EXTRACTOR_NATIVE=0`, every record takes the Python normaliser, with the same output.
"""

from __future__ import annotations

import ctypes
import functools
import os
import struct
from pathlib import Path
from typing import Final

from common.logging import get_logger

log = get_logger(__name__)

_CRATE: Final = Path(__file__).with_name("rust_normalizer")
LIBRARY: Final = _CRATE / "target" / "release" / "libdiscogs_normalizer.so"
_ENTRY: Final = struct.Struct("<qII")  # id (0: Python decides), offset, length of the JSON


@functools.cache
def _library() -> ctypes.CDLL | None:
    if os.environ.get("EXTRACTOR_NATIVE", "1") == "0" or not LIBRARY.exists():
        return None
    lib = ctypes.CDLL(str(LIBRARY))
    lib.dg_normalize_releases.argtypes = [
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.POINTER(ctypes.POINTER(ctypes.c_char)),
        ctypes.POINTER(ctypes.c_size_t),
    ]
    lib.dg_normalize_releases.restype = ctypes.c_int64
    lib.dg_free.argtypes = [ctypes.POINTER(ctypes.c_char), ctypes.c_size_t]
    lib.dg_free.restype = None
    return lib


def available() -> bool:
    return _library() is not None


def normalize_releases(chunk: bytes) -> list[tuple[int, bytes] | None] | None:
    """(id, canonical JSON) per `</release>`-terminated piece of `chunk`, None for a piece Python
    must normalise; None when the library is not there or the chunk is not one of whole records."""
    lib = _library()
    if lib is None:
        return None
    out = ctypes.POINTER(ctypes.c_char)()
    out_len = ctypes.c_size_t()
    count = lib.dg_normalize_releases(chunk, len(chunk), ctypes.byref(out), ctypes.byref(out_len))
    if count < 0:
        return None
    base = count * _ENTRY.size
    # Each JSON text is copied out of the library's buffer once, before the buffer is freed.
    data = memoryview(ctypes.cast(out, ctypes.POINTER(ctypes.c_ubyte * out_len.value)).contents)
    try:
        return [
            (record_id, data[base + offset : base + offset + length].tobytes()) if record_id else None
            for record_id, offset, length in _ENTRY.iter_unpack(data[:base])
        ]
    finally:
        data.release()
        lib.dg_free(out, out_len.value)


def log_status() -> None:
    """One start-up line saying which normaliser releases take."""
    if available():
        log.info("native_normalizer", releases="native", library=str(LIBRARY))
    elif os.environ.get("EXTRACTOR_NATIVE", "1") == "0":
        log.info("native_normalizer", releases="python", reason="EXTRACTOR_NATIVE=0")
    else:
        log.warning(
            "native_normalizer",
            releases="python",
            reason=f"{LIBRARY} not built (make native needs cargo); the same records, about 3x slower",
        )
