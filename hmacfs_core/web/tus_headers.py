"""The tus 1.0 headers: what hmacfs advertises, and reading what clients send.

Every reader raises :class:`UploadRefused` with the answer tus prescribes, so
the resource can refuse from the headers alone, before any body byte.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import re

from twisted.web.server import Request

from hmacfs_core.partials import ChecksumClaim
from hmacfs_core.web.request import UploadRefused

TUS_VERSION = b"1.0.0"
EXTENSIONS = b"creation,creation-with-upload,expiration,checksum,termination"
#: ``Upload-Checksum`` algorithms, as tus names them (``hashlib`` names too).
CHECKSUM_ALGORITHMS = ("sha1", "sha256", "md5")
#: The only body type of a PATCH, and of a creation that carries data.
OFFSET_OCTET_STREAM = b"application/offset+octet-stream"
ALLOWED_METHODS = b"POST, HEAD, PATCH, DELETE, OPTIONS"

#: The request headers a browser client may send cross-origin, and the response
#: headers it may read.
CORS_REQUEST_HEADERS = (
    b"Content-Type, Tus-Resumable, Upload-Length, Upload-Metadata, "
    b"Upload-Offset, Upload-Checksum, X-Requested-With"
)
CORS_EXPOSED_HEADERS = (
    b"Location, Tus-Resumable, Tus-Version, Tus-Extension, Tus-Max-Size, "
    b"Tus-Checksum-Algorithm, Upload-Offset, Upload-Length, Upload-Metadata, "
    b"Upload-Expires"
)

#: Longest ``Upload-Metadata`` kept: it is echoed by every ``HEAD``.
MAX_METADATA_BYTES = 4096

#: tus's own status for a chunk whose ``Upload-Checksum`` does not match.
CHECKSUM_MISMATCH = 460

# Upload-Length and Upload-Offset: digits only, without leading zeros, so the
# number read is the very text sent (int() would take "+1", " 1", "1_0").
_DECIMAL = re.compile(rb"0|[1-9][0-9]{0,18}")
_METADATA_KEY = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def tus_headers(extra: dict[bytes, bytes] | None = None) -> dict[bytes, bytes]:
    """``Tus-Resumable``, which every answer carries, plus ``extra``."""
    return {b"tus-resumable": TUS_VERSION, **(extra or {})}


def refusal(
    code: int, reason: str, extra: dict[bytes, bytes] | None = None
) -> UploadRefused:
    return UploadRefused(code, reason, tus_headers(extra))


def check_version(request: Request) -> None:
    """412 unless the client speaks the version served (``OPTIONS`` need not say).

    :raises UploadRefused: 412 with ``Tus-Version``.
    """
    if request.getHeader(b"tus-resumable") != TUS_VERSION:
        raise refusal(412, "unsupported tus version", {b"tus-version": TUS_VERSION})


def decimal_header(request: Request, name: bytes) -> int:
    """A required non-negative decimal header (``Upload-Length``,
    ``Upload-Offset``).

    :raises UploadRefused: 400 when missing or not a plain decimal.
    """
    raw = request.getHeader(name)
    if raw is None or not _DECIMAL.fullmatch(raw):
        raise refusal(400, f"{name.decode('ascii')} missing or invalid")
    return int(raw)


def parse_metadata(raw: bytes | None) -> dict[str, bytes]:
    """``Upload-Metadata``: comma-separated ``key base64value`` pairs.

    A key may come without a value; keys are unique.

    :raises UploadRefused: 400 for a malformed header.
    """
    if raw is None or not raw.strip():
        return {}
    if len(raw) > MAX_METADATA_BYTES:
        raise refusal(400, "Upload-Metadata too long")

    pairs: dict[str, bytes] = {}
    for item in raw.decode("latin-1").split(","):
        key, _, value = item.strip().partition(" ")
        if not _METADATA_KEY.fullmatch(key) or key in pairs:
            raise refusal(400, "Upload-Metadata malformed")
        try:
            pairs[key] = base64.b64decode(value.strip(), validate=True)
        except binascii.Error:
            raise refusal(400, "Upload-Metadata value is not base64") from None
    return pairs


def metadata_content_type(metadata: dict[str, bytes]) -> str | None:
    """The file's type as tus clients name it: ``filetype`` (tus-js-client,
    Uppy) or ``type``; None when neither is given.

    :raises UploadRefused: 400 for a type that is not printable ASCII.
    """
    raw = metadata.get("filetype", metadata.get("type"))
    if raw is None:
        return None
    if not raw or not all(0x20 <= byte < 0x7F for byte in raw):
        raise refusal(400, "file type must be printable ASCII")
    return raw.decode("ascii")


def parse_checksum(request: Request) -> ChecksumClaim | None:
    """``Upload-Checksum: <algorithm> <base64 digest>``, if sent.

    :raises UploadRefused: 400 for an unsupported algorithm or a malformed value.
    """
    raw = request.getHeader(b"upload-checksum")
    if raw is None:
        return None
    algorithm, _, encoded = raw.decode("latin-1").strip().partition(" ")
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise refusal(400, "unsupported checksum algorithm")
    try:
        digest = base64.b64decode(encoded.strip(), validate=True)
    except binascii.Error:
        raise refusal(400, "Upload-Checksum is not base64") from None
    return ChecksumClaim(algorithm, digest)


def http_date(seconds: float) -> bytes:
    """``Upload-Expires`` is an RFC 9110 date."""
    return email.utils.formatdate(seconds, usegmt=True).encode("ascii")
