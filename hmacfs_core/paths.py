"""Turn a request target into a name that is safe to store under and to sign.

A signed URL names a file with the path the XMPP server signed, after the base path.
This module is the only place where bytes from the request line become a file name:
it decides once which names exist at all, so that signature checking, storage and
logging all see the same, already safe, segments.

The rules follow PROTOCOLS.md section 1: the base path is stripped exactly once,
the rest is split on ``/`` *before* percent-decoding (so an encoded slash cannot
create a directory), each segment is percent-decoded as strict UTF-8 and never
form-decoded (``+`` stays ``+``).
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from attrs import field, frozen

__all__ = [
    "MAX_PATH_BYTES",
    "MAX_SEGMENT_BYTES",
    "MAX_SEGMENTS",
    "PathRefused",
    "UploadPath",
    "encode_path",
    "parse_upload_path",
    "resolve_under",
]

#: Longest segment in UTF-8 bytes: the common file name limit (ext4, XFS, btrfs).
MAX_SEGMENT_BYTES = 255

#: Longest whole path (segments and the slashes between them) in UTF-8 bytes.
MAX_PATH_BYTES = 1024

#: Most segments: Prosody uses 2, ejabberd 3; more than this is not an upload slot.
MAX_SEGMENTS = 16

# A percent-escape must be exactly "%" and two hex digits; anything else after "%"
# is malformed rather than a literal percent sign.
_PERCENT_ESCAPE = re.compile(rb"%([0-9A-Fa-f]{2})|%")

# C0 controls (NUL included) and DEL: never part of a name a person chose, and NUL
# or newline in a file name confuses both the OS and log readers.
_CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f]")

# What Prosody's util.http.urlencode leaves alone (RFC 3986 "unreserved").
_UNRESERVED = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~"
)


# A refusal is an answer to a client, not a fault of the server: the domain word
# reads better at the call sites than an "Error" suffix.
class PathRefused(ValueError):  # noqa: N818
    """
    A request path that names no file hmacfs will store or serve.

    :ivar reason: a short explanation that is safe to send to the client: it never
        echoes the path itself.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _refuse_unsafe_segment(segment: str) -> None:
    """
    Raise `PathRefused` unless *segment* is usable as one file or directory name.

    Checked on the decoded text, so that ``%2e%2e`` or ``%00`` are caught exactly
    like their literal forms.
    """
    if not segment:
        raise PathRefused("empty segment")

    if segment in (".", ".."):
        raise PathRefused("dot segment")

    if _CONTROL_CHARACTER.search(segment):
        raise PathRefused("control character")

    if "\\" in segment:
        raise PathRefused("backslash")

    if "/" in segment:
        raise PathRefused("slash inside a segment")

    if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
        raise PathRefused("segment too long")


def _refuse_unsafe_segments(
    instance: UploadPath, attribute: object, segments: tuple[str, ...]
) -> None:
    """
    Make every `UploadPath` safe by construction, however it was built.

    ``parse_upload_path`` relies on this too: it only decodes, and the checks that
    concern the decoded text live here, once.
    """
    if not isinstance(segments, tuple):
        raise TypeError(f"segments must be a tuple, not {type(segments).__name__}")

    if not segments:
        raise PathRefused("empty path")

    if len(segments) > MAX_SEGMENTS:
        raise PathRefused("too many segments")

    for segment in segments:
        if not isinstance(segment, str):
            raise TypeError(f"segments must be str, not {type(segment).__name__}")
        _refuse_unsafe_segment(segment)

    if len("/".join(segments).encode("utf-8")) > MAX_PATH_BYTES:
        raise PathRefused("path too long")


@frozen
class UploadPath:
    """
    The name of an uploaded file, relative to the store and to the base path.

    Instances are always safe: the segments are validated on construction, so a
    holder of an `UploadPath` never needs to check it again.

    :ivar segments: the decoded segments, e.g. ``("abc", "photo 1.jpg")``.
    """

    segments: tuple[str, ...] = field(validator=_refuse_unsafe_segments)

    @classmethod
    def from_text(cls, text: str) -> UploadPath:
        """
        Build a path from its decoded text, as an operator types it.

        :param text: segments joined by ``/``, without a leading slash.
        :raises PathRefused: if the text names no safe file.
        """
        return cls(tuple(text.split("/")))

    @property
    def text(self) -> str:
        """
        The segments joined by ``/``: the ``<path>`` every signature scheme signs.
        """
        return "/".join(self.segments)

    def __str__(self) -> str:
        return self.text


def _percent_decode(raw_segment: bytes) -> bytes:
    """
    Decode ``%XX`` escapes of one raw segment, and nothing else.

    :raises PathRefused: on a ``%`` not followed by two hex digits.
    """

    def _escaped_byte(match: re.Match[bytes]) -> bytes:
        if match.group(1) is None:
            raise PathRefused("bad percent-escape")
        return bytes.fromhex(match.group(1).decode("ascii"))

    return _PERCENT_ESCAPE.sub(_escaped_byte, raw_segment)


def _decode_segment(raw_segment: bytes) -> str:
    """
    Turn one still-encoded segment into text, strictly.

    :raises PathRefused: on a malformed escape, an encoded slash or bytes that are
        not UTF-8.
    """
    decoded = _percent_decode(raw_segment)

    # The split happened before decoding: a slash here came from %2F and would
    # otherwise turn one signed name into two directories.
    if b"/" in decoded:
        raise PathRefused("encoded slash")

    try:
        return decoded.decode("utf-8")
    except UnicodeDecodeError:
        raise PathRefused("not UTF-8") from None


def parse_upload_path(raw_path: bytes, base_path: str) -> UploadPath:
    """
    Find the upload path in a request target's path, or refuse it.

    :param raw_path: the path part of the request target as received: bytes,
        still percent-encoded, without the query, starting with ``/``.
    :param base_path: the configured prefix, starting and ending with ``/`` (``/``
        or ``/upload/``). It is compared with the request target as sent, so it
        must be written the way clients send it (percent-encoded if needed).
    :return: the decoded, validated path after the base path.
    :raises PathRefused: if the target is outside the base path or names no safe
        file; ``reason`` says which rule it broke.
    :raises ValueError: if *base_path* itself is not a normalised prefix: that is a
        configuration mistake, not a client's.
    """
    if not (base_path.startswith("/") and base_path.endswith("/")):
        raise ValueError(f"base path must start and end with '/': {base_path!r}")

    prefix = base_path.encode("utf-8")
    if not raw_path.startswith(prefix):
        raise PathRefused("outside base path")
    raw_rest = raw_path[len(prefix) :]

    if not raw_rest:
        raise PathRefused("empty path")

    # Each decoded byte takes at most three encoded ones, so anything longer than
    # this cannot fit; refusing it here avoids decoding megabytes of request line.
    if len(raw_rest) > 3 * MAX_PATH_BYTES:
        raise PathRefused("path too long")

    raw_segments = raw_rest.split(b"/")
    if len(raw_segments) > MAX_SEGMENTS:
        raise PathRefused("too many segments")

    return UploadPath(tuple(_decode_segment(raw) for raw in raw_segments))


def encode_path(path: str) -> str:
    """
    Percent-encode a decoded path segment by segment, the way Prosody does.

    Everything except ``A-Za-z0-9-_.~`` is escaped as UTF-8 with lower-case hex
    (``ä`` becomes ``%c3%a4``, a space ``%20``, ``+`` ``%2b``), and the segments
    are joined with ``/``. A URL built with it decodes, through
    `parse_upload_path`, back to the same text, so its signature still matches.

    This only encodes; it does not judge whether the path is safe.

    :param path: segments joined by ``/``, without a leading slash.
    """
    return "/".join(_encode_segment(segment) for segment in path.split("/"))


def _encode_segment(segment: str) -> str:
    return "".join(
        chr(byte) if byte in _UNRESERVED else f"%{byte:02x}"
        for byte in segment.encode("utf-8")
    )


def resolve_under(root: Path, path: UploadPath) -> Path:
    """
    Give the filesystem location of *path* inside the store at *root*.

    The result is always below *root*: an `UploadPath` cannot hold ``..`` or a
    slash, and symbolic links under the store are never followed. Each component
    below *root* that exists is examined with ``lstat``, walking down, and a
    symlink anywhere refuses the whole path, even when it points back inside the
    store: hmacfs itself never creates links, so one there was put by someone else.
    *root* itself may be a symlink (a store moved to another disk).

    :param root: the store's directory.
    :param path: the validated upload path.
    :raises PathRefused: if an existing component below *root* is a symlink.
    """
    # XXX: a link created between this walk and the open is not caught; storage
    # should also open with O_NOFOLLOW (and O_EXCL for new files).
    location = root

    for segment in path.segments:
        location = location / segment

        try:
            mode = os.lstat(location).st_mode
        except (FileNotFoundError, NotADirectoryError):
            # Nothing exists from here down, so nothing further can be a link.
            break

        if stat.S_ISLNK(mode):
            raise PathRefused("symbolic link in store")

    return root.joinpath(*path.segments)
