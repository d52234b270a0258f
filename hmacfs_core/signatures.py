"""Check that an upload was authorised by the XMPP server that handed out the slot.

The XMPP server and hmacfs share a secret; the server signs the slot's path and the
declared size (and, depending on the scheme, the content type or an expiry time)
with HMAC-SHA256 and appends the hex MAC to the PUT URL. PROTOCOLS.md sections 1
and 2 describe the four schemes this module speaks:

===========  =====================  ==================================================
protocol     query parameter        signed message
===========  =====================  ==================================================
``v1``       ``v``                  ``<path> <size>``
``v2``       ``v2``                 ``<path>\\0<size>\\0<content type>``
``token``    ``token``              same message as ``v2``
``v3``       ``v3`` + ``expires``   ``<METHOD>\\n<expires>\\n/<path>``
===========  =====================  ==================================================

``<path>`` is always `hmacfs_core.paths.UploadPath.text`: decoded, after the base
path, without a leading slash (v3 adds its own).
"""

from __future__ import annotations

import binascii
import enum
import hashlib
import hmac
import mimetypes
import posixpath
import re
from collections.abc import Collection, Mapping
from typing import Literal

from attrs import frozen

__all__ = [
    "DEFAULT_CONTENT_TYPE",
    "PROTOCOLS",
    "Protocol",
    "SignedUpload",
    "Verdict",
    "find_signature",
    "sign_token",
    "sign_v1",
    "sign_v2",
    "sign_v3",
    "signed_query",
    "verify_upload",
]

#: A signature scheme, named after the version it was introduced as.
Protocol = Literal["v1", "v2", "token", "v3"]

#: Every scheme, most preferred first: when a URL carries several, only the first
#: one that is accepted counts.
PROTOCOLS: tuple[Protocol, ...] = ("v3", "v2", "token", "v1")

#: The type Prosody signs when the client requested a slot without one; a PUT
#: without ``Content-Type`` is checked against it.
DEFAULT_CONTENT_TYPE = "application/octet-stream"

# The `expires` of v3 is a Unix time in canonical decimal: int() alone would also
# take signs, spaces, underscores and non-ASCII digits. Without leading zeros, the
# int written back is the very text that was signed.
_CANONICAL_DECIMAL = re.compile(rb"0|[1-9][0-9]{0,19}")


def _query_parameter(protocol: Protocol) -> str:
    """
    Name the query parameter that carries the MAC of *protocol*.
    """
    match protocol:
        case "v1":
            return "v"
        case "v2":
            return "v2"
        case "token":
            return "token"
        case "v3":
            return "v3"


def _mac(secret: bytes, message: str) -> str:
    # surrogateescape lets a Content-Type header that is not valid UTF-8, decoded
    # with the same handler, be signed over exactly the bytes that were sent.
    encoded = message.encode("utf-8", "surrogateescape")
    return hmac.new(secret, encoded, hashlib.sha256).hexdigest()


def _decimal(size: int) -> str:
    if size < 0:
        raise ValueError(f"a size cannot be negative: {size}")
    return str(size)


def sign_v1(secret: bytes, path: str, size: int) -> str:
    """
    Compute the ``v`` MAC of Prosody's default scheme and ejabberd's.

    The content type is not signed: a v1 URL accepts any ``Content-Type``.

    :param secret: the secret shared with the XMPP server.
    :param path: the decoded upload path, without a leading slash.
    :param size: the declared ``Content-Length``.
    :return: the MAC in lower-case hex.
    """
    return _mac(secret, f"{path} {_decimal(size)}")


def sign_v2(secret: bytes, path: str, size: int, content_type: str) -> str:
    """
    Compute the ``v2`` MAC, which also binds the content type.

    :param secret: the secret shared with the XMPP server.
    :param path: the decoded upload path, without a leading slash.
    :param size: the declared ``Content-Length``.
    :param content_type: the ``Content-Type`` the slot was requested with.
    :return: the MAC in lower-case hex.
    """
    return _mac(secret, f"{path}\0{_decimal(size)}\0{content_type}")


def sign_token(secret: bytes, path: str, size: int, content_type: str) -> str:
    """
    Compute Metronome's ``token`` MAC: the same message as `sign_v2`, sent under
    another name.

    :return: the MAC in lower-case hex.
    """
    return sign_v2(secret, path, size, content_type)


def sign_v3(secret: bytes, method: str, expires: int, path: str) -> str:
    """
    Compute the ``v3`` MAC, which binds the method and an expiry time but neither
    size nor type.

    :param secret: the secret shared with the XMPP server.
    :param method: the HTTP method the URL is for, as sent (``PUT``).
    :param expires: the Unix time after which the URL is refused.
    :param path: the decoded upload path, without a leading slash; the signed
        message carries it with one.
    :return: the MAC in lower-case hex.
    """
    return _mac(secret, f"{method}\n{_decimal(expires)}\n/{path}")


@frozen
class SignedUpload:
    """
    The signature a request carries, as found in its query.

    :ivar protocol: the scheme it claims to be.
    :ivar mac: the MAC exactly as sent (hex, either case, or garbage); judged only by
        `verify_upload`.
    :ivar expires: the v3 expiry time, or ``None``: always ``None`` for the other
        schemes, and for a v3 signature whose ``expires`` is missing, repeated or
        not canonical decimal (digits only, no leading zero); such a signature
        never verifies.
    """

    protocol: Protocol
    mac: str
    expires: int | None = None


def _only_value(query: Mapping[bytes, list[bytes]], name: str) -> bytes | None:
    """
    Return the one value of parameter *name*, or ``None`` when it is absent.

    A repeated parameter yields an empty value, which no MAC matches: which copy
    to believe is not ours to guess.
    """
    values = query.get(name.encode("ascii"))
    if not values:
        return None
    if len(values) > 1:
        return b""
    return values[0]


def _expiry(query: Mapping[bytes, list[bytes]]) -> int | None:
    value = _only_value(query, "expires")
    if value is None or not _CANONICAL_DECIMAL.fullmatch(value):
        return None
    return int(value)


def find_signature(
    query: Mapping[bytes, list[bytes]], accepted: Collection[Protocol]
) -> SignedUpload | None:
    """
    Pick the signature to check from a request's query.

    Only the most preferred accepted scheme present counts (v3 > v2 > token > v1,
    PROTOCOLS.md): if it turns out wrong, the request is refused and no weaker
    scheme in the same URL gets a chance. Parameters of schemes not in *accepted*
    are ignored as if absent.

    A v3 signature without a usable ``expires`` is still returned, with
    ``expires=None``, rather than refused here: `verify_upload` then answers "bad
    signature", so every malformed signature takes the same path to a 403.

    :param query: the parsed query, as Twisted's ``request.args`` holds it.
    :param accepted: the schemes this server is configured to accept.
    :return: the signature to verify, or ``None`` if the request carries none that
        is accepted.
    """
    for protocol in PROTOCOLS:
        if protocol not in accepted:
            continue

        value = _only_value(query, _query_parameter(protocol))
        if value is None:
            continue

        # latin-1 never fails: a MAC with stray bytes is simply a wrong MAC.
        mac = value.decode("latin-1")
        expires = _expiry(query) if protocol == "v3" else None
        return SignedUpload(protocol=protocol, mac=mac, expires=expires)

    return None


class Verdict(enum.Enum):
    """
    The outcome of checking a signature; the web layer answers 403 unless ``ok``.

    An expired v3 signature gets 403 too (PROTOCOLS.md allows 403 or 410): to a
    client both mean "ask the XMPP server for a new slot", and 403 is what every
    other refusal here answers.
    """

    OK = "ok"
    BAD_SIGNATURE = "bad signature"
    EXPIRED = "signature expired"

    @property
    def ok(self) -> bool:
        """Whether the upload may go ahead."""
        return self is Verdict.OK

    @property
    def reason(self) -> str:
        """A short explanation that is safe to log and to send to the client."""
        return self.value


def _same_mac(expected: str, given: str) -> bool:
    """
    Compare MACs in constant time, after decoding the hex of both.

    Decoding first accepts upper- and lower-case hex alike; anything that is not
    hex is a mismatch, never an exception.
    """
    try:
        given_bytes = binascii.a2b_hex(given)
    except ValueError:
        return False
    return hmac.compare_digest(binascii.a2b_hex(expected), given_bytes)


def _v2_content_types(
    path: str, content_type: str | None, type_from_extension: bool
) -> list[str]:
    """
    List the content types a v2 or token MAC may have been computed with.
    """
    declared = DEFAULT_CONTENT_TYPE if content_type is None else content_type
    candidates = [declared]

    if type_from_extension:
        # Only the extension, as the peers that derive the type look at it: the
        # rest of the path must not be mistaken for a URL scheme by mimetypes.
        _, extension = posixpath.splitext(path)
        guessed, _ = mimetypes.guess_type(f"upload{extension}", strict=False)
        derived = guessed or DEFAULT_CONTENT_TYPE
        if derived != declared:
            candidates.append(derived)

    return candidates


def verify_upload(
    secret: bytes,
    signed: SignedUpload,
    *,
    method: str,
    path: str,
    size: int,
    content_type: str | None,
    now: float,
    v2_type_from_extension: bool = False,
) -> Verdict:
    """
    Decide whether a request's signature authorises this upload.

    Everything needed is in the request's headers, so this runs before any of the
    body is read; in particular v3 expiry is judged at *now*, when the headers
    arrived, never when a slow body finishes.

    :param secret: the secret shared with the XMPP server.
    :param signed: the signature found by `find_signature`.
    :param method: the request's method, as sent (signed by v3 only).
    :param path: the decoded upload path (`hmacfs_core.paths.UploadPath.text`).
    :param size: the request's ``Content-Length``.
    :param content_type: the request's ``Content-Type`` exactly as sent, or
        ``None`` when the header is absent; then `DEFAULT_CONTENT_TYPE` is what
        Prosody signed. Header bytes that are not UTF-8 should be decoded with
        ``surrogateescape`` so the MAC covers the bytes that were sent.
    :param now: the Unix time the request's headers arrived.
    :param v2_type_from_extension: also accept a v2 or token MAC computed with the
        type guessed from the file's extension (`mimetypes`, non-strict), for peers
        that derive it. Off by default: the spec signs the type the client
        declared, and deriving it breaks clients that upload encrypted files as
        ``application/octet-stream``.
    :return: `Verdict.OK`, `Verdict.BAD_SIGNATURE`, or `Verdict.EXPIRED` when a
        correct v3 MAC is past its ``expires`` (still valid at that very second).
    """
    match signed.protocol:
        case "v1":
            good = _same_mac(sign_v1(secret, path, size), signed.mac)

        case "v2" | "token":
            candidates = _v2_content_types(path, content_type, v2_type_from_extension)
            good = any(
                _same_mac(sign_v2(secret, path, size, candidate), signed.mac)
                for candidate in candidates
            )

        case "v3":
            good = signed.expires is not None and _same_mac(
                sign_v3(secret, method, signed.expires, path), signed.mac
            )

    if not good:
        return Verdict.BAD_SIGNATURE

    # Judged only after the MAC holds, so that a forged URL learns nothing about
    # expiry, and an expired but genuine one gets the more useful reason.
    if signed.protocol == "v3" and signed.expires is not None and now > signed.expires:
        return Verdict.EXPIRED

    return Verdict.OK


def signed_query(
    secret: bytes,
    protocol: Protocol,
    *,
    method: str = "PUT",
    path: str,
    size: int,
    content_type: str | None,
    expires: int | None,
) -> str:
    """
    Build the query string that authorises one upload, for URLs made by
    ``hmacfs sign`` and by tests.

    :param protocol: the scheme to sign with.
    :param method: the method a v3 URL is for; ignored by the other schemes.
    :param path: the decoded upload path, without a leading slash.
    :param size: the ``Content-Length`` the upload will declare.
    :param content_type: the ``Content-Type`` it will send (v2 and token), or
        ``None`` for one sent without: `DEFAULT_CONTENT_TYPE` is signed then.
    :param expires: the Unix expiry time; required for v3, refused otherwise
        because v1, v2 and token URLs cannot expire.
    :return: e.g. ``v=<mac>`` or ``v3=<mac>&expires=<expires>``, without ``?``.
    :raises ValueError: if *expires* does not fit *protocol*.
    """
    declared = DEFAULT_CONTENT_TYPE if content_type is None else content_type
    name = _query_parameter(protocol)

    if protocol == "v3":
        if expires is None:
            raise ValueError("a v3 signature needs an expiry time")
        mac = sign_v3(secret, method, expires, path)
        return f"{name}={mac}&expires={_decimal(expires)}"

    if expires is not None:
        raise ValueError(f"a {protocol} signature cannot expire")

    if protocol == "v1":
        mac = sign_v1(secret, path, size)
    else:
        mac = sign_v2(secret, path, size, declared)
    return f"{name}={mac}"
