"""Read a ``multipart/form-data`` body as it arrives, one part at a time.

python-multipart does the byte-level parsing, chunk by chunk, without holding
more than a boundary's worth of a part in memory. This module turns its
callbacks into three calls per *file* part for whoever stores the files
(:class:`FileSink`), skips every other part, and enforces the bounds a form
upload must keep whatever the client sends:

- at most :data:`MAX_FORM_PARTS` parts;
- a non-file field of at most :data:`MAX_FIELD_BYTES` (its value is dropped);
- one ``Content-Disposition: form-data`` per part, and part headers within
  python-multipart's own limits (8 headers of about 4 KiB each).

A part is a file when its ``Content-Disposition`` has a non-empty ``filename``:
a browser sends ``filename=""`` for a file input left empty, which is no file.
"""

from __future__ import annotations

import logging
import re
from typing import Protocol

from attrs import define, field, frozen
from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError

from hmacfs_core.web.request import UploadRefused

# python-multipart logs every malformed body as a stdlib warning, which without
# a handler goes raw to stderr; the refusal is logged with the transfer anyway.
# A host site that configures stdlib logging still receives them.
logging.getLogger("python_multipart").addHandler(logging.NullHandler())

#: Largest value of a non-file form field; its bytes are counted, never kept.
MAX_FIELD_BYTES = 64 * 1024

#: Most parts (files and fields) in one form: every file costs a staged file
#: and a line of the answer.
MAX_FORM_PARTS = 256

#: RFC 2046 limits a boundary to 70 characters.
MAX_BOUNDARY_BYTES = 70

# One `; name=value` parameter of Content-Disposition, the value a token or a
# quoted string. Parsed here rather than by python-multipart's option parser,
# which reduces a Windows path in `filename` to its last component: a name that
# is not safe must be refused, not silently changed into another one.
_PARAMETER = re.compile(rb';\s*([^\s;=]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


@frozen
class FilePart:
    """The headers of one file part.

    :ivar filename: the ``filename`` parameter, decoded as UTF-8 and otherwise
        exactly as sent (not yet judged safe).
    :ivar content_type: the part's ``Content-Type``, or None when it has none.
    """

    filename: str
    content_type: str | None


class FileSink(Protocol):
    """Where the file parts of a form go, in body order."""

    def begin_file(self, part: FilePart) -> None:
        """A file part's headers are in; its data follows.

        :raises UploadRefused: to refuse the whole request.
        """

    def file_data(self, data: bytes) -> None:
        """The next bytes of the current file part."""

    def end_file(self) -> None:
        """The current file part is complete."""


def parse_disposition(value: bytes) -> tuple[bytes, dict[bytes, bytes]]:
    """Split a ``Content-Disposition`` value into its type and parameters.

    Quoted values lose their quotes and the two escapes RFC 7578 senders use
    (``\\"`` and ``\\\\``); a backslash before anything else is kept, as browsers
    send it unescaped. Parameter names are lower-cased.

    :raises UploadRefused: 400 when a parameter is given twice.
    """
    kind, _, rest = value.partition(b";")
    parameters: dict[bytes, bytes] = {}
    for match in _PARAMETER.finditer(b";" + rest):
        name, raw = match[1].lower(), match[2].strip()
        if len(raw) >= 2 and raw.startswith(b'"') and raw.endswith(b'"'):
            raw = raw[1:-1].replace(b"\\\\", b"\\").replace(b'\\"', b'"')
        if name in parameters:
            raise UploadRefused(400, "repeated Content-Disposition parameter")
        parameters[name] = raw
    return kind.strip().lower(), parameters


@define
class FormReader:
    """Feed a form body chunk by chunk; hand its file parts to ``sink``.

    :param boundary: the boundary from the request's ``Content-Type``.
    :param sink: receives the file parts.
    :ivar ended: the closing boundary has been read.
    """

    boundary: bytes
    sink: FileSink
    ended: bool = field(default=False, init=False)
    _parser: MultipartParser = field(init=False)
    _parts: int = field(default=0, init=False)
    _header_name: bytearray = field(factory=bytearray, init=False)
    _header_value: bytearray = field(factory=bytearray, init=False)
    _headers: dict[bytes, bytes] = field(factory=dict, init=False)
    _in_file: bool = field(default=False, init=False)
    _field_bytes: int = field(default=0, init=False)

    def __attrs_post_init__(self) -> None:
        self._parser = MultipartParser(
            self.boundary,
            {
                "on_part_begin": self._part_begin,
                "on_header_field": self._header_name_data,
                "on_header_value": self._header_value_data,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
                "on_end": self._end,
            },
        )

    def feed(self, chunk: bytes) -> None:
        """Parse the next body chunk.

        :raises UploadRefused: 400 for a malformed body or one over the bounds,
            or whatever the sink raised.
        """
        try:
            self._parser.write(chunk)
        except FormParserError:
            raise UploadRefused(400, "malformed multipart body") from None

    def _part_begin(self) -> None:
        self._parts += 1
        if self._parts > MAX_FORM_PARTS:
            raise UploadRefused(400, f"more than {MAX_FORM_PARTS} parts in the form")
        self._headers.clear()
        self._in_file = False
        self._field_bytes = 0

    def _header_name_data(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        name = bytes(self._header_name).strip().lower()
        if name in self._headers:
            raise UploadRefused(400, "repeated header in a form part")
        self._headers[name] = bytes(self._header_value).strip()
        self._header_name.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        disposition = self._headers.get(b"content-disposition")
        if disposition is None:
            raise UploadRefused(400, "form part without Content-Disposition")
        kind, parameters = parse_disposition(disposition)
        if kind != b"form-data":
            raise UploadRefused(400, "form part is not form-data")

        filename = parameters.get(b"filename")
        if not filename:
            return
        content_type = self._headers.get(b"content-type")
        self.sink.begin_file(
            FilePart(
                filename=_text(filename, "file name"),
                content_type=None
                if content_type is None
                else _ascii(content_type, "part Content-Type"),
            )
        )
        self._in_file = True

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self.sink.file_data(data[start:end])
            return
        self._field_bytes += end - start
        if self._field_bytes > MAX_FIELD_BYTES:
            raise UploadRefused(400, "form field over 64 KiB")

    def _part_end(self) -> None:
        if self._in_file:
            self._in_file = False
            self.sink.end_file()

    def _end(self) -> None:
        self.ended = True


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UploadRefused(400, f"{what} is not UTF-8") from None


def _ascii(raw: bytes, what: str) -> str:
    if not raw.isascii():
        # It could be neither stored faithfully nor sent back in a header.
        raise UploadRefused(400, f"{what} must be ASCII")
    return raw.decode("ascii")
