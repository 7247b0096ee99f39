"""A dump whose XML declaration names an encoding other than UTF-8, read as UTF-8.

The parallel parser cuts and parses UTF-8 only (a cut is found by byte search, and each chunk is
parsed without the file's declaration). A file in ISO-8859-1, windows-1252 or another encoding
that spells ASCII as ASCII is transcoded while it is read, so it gets the parallel parser and its
record-by-record handling of broken XML instead of the serial one, which fails the whole file on
one broken record. Other encodings (UTF-16, EBCDIC) are left to the serial parser.
"""

from __future__ import annotations

import codecs
import re
from typing import Any, Final

# An XML declaration naming an encoding (a byte order mark would say UTF-8: then none is foreign).
_DECLARATION: Final = re.compile(rb"\A(<\?xml[^>]*?\bencoding\s*=\s*[\"'])([A-Za-z][\w.:-]*)([\"'])")


class TranscodeError(OSError):
    """The bytes are not in the encoding the declaration names (the file is corrupt)."""


def foreign_encoding(head: bytes) -> str | None:
    """The encoding the XML declaration at the start of `head` names, when it is not UTF-8 and is
    one Python reads with ASCII spelled as ASCII; None otherwise."""
    match = _DECLARATION.match(head)
    if match is None:
        return None
    name = match.group(2).decode("ascii")
    try:
        codec = codecs.lookup(name)
    except LookupError:
        return None  # the serial parser says what it makes of it
    if codec.name == "utf-8" or "<releases id='1'>".encode(codec.name) != b"<releases id='1'>":
        return None
    return codec.name


class Utf8Reader:
    """`read(n)` of `stream` (in `encoding`) as UTF-8 bytes; the declaration's encoding is
    rewritten to UTF-8. `first` is what was read from `stream` already."""

    def __init__(self, stream: Any, encoding: str, first: bytes) -> None:
        self._stream = stream
        self._encoding = encoding
        self._decoder = codecs.getincrementaldecoder(encoding)()
        self._offset = 0  # bytes of the original text decoded so far, for the error message
        self._error: TranscodeError | None = None
        self.head = _DECLARATION.sub(rb"\1UTF-8\3", self._transcode(first, final=False), count=1)

    def _transcode(self, data: bytes, *, final: bool) -> bytes:
        """`data` as UTF-8; at bytes not in the encoding, the text before them (the records there
        still count) and the error is raised by the next read."""
        try:
            text = self._decoder.decode(data, final=final)
        except UnicodeDecodeError as exc:
            at = self._offset + exc.start
            reason = f"the XML near byte {at} is not {self._encoding} as its declaration says ({exc.reason})"
            self._error = TranscodeError(reason)
            text = exc.object[: exc.start].decode(self._encoding)
        self._offset += len(data)
        return text.encode("utf-8")

    def read(self, size: int) -> bytes:
        """At least one byte until the end (empty only then)."""
        while True:
            if self._error is not None:
                raise self._error
            data = self._stream.read(size)
            out = self._transcode(data, final=not data)
            if out or not data:
                return out

    def close(self) -> None:
        self._stream.close()
