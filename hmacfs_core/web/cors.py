"""CORS for web clients such as Converse.js, from ``downloads.allowed_origins``."""

from __future__ import annotations

from twisted.web.server import Request

ALLOWED_METHODS = b"GET, HEAD, PUT, OPTIONS"

#: What a cross-origin page may send: slot PUTs and downloads, and form uploads
#: (``POST /upload``) authorized by a signed URL or a bearer token.
CORS_METHODS = b"GET, HEAD, PUT, POST, OPTIONS"
CORS_HEADERS = b"Content-Type, Authorization"

#: What a web client may read from a cross-origin response besides the basics.
EXPOSED_HEADERS = b"Content-Length, Content-Range, Content-Disposition, ETag"


def apply_cors(allowed_origins: tuple[str, ...], request: Request) -> None:
    """Allow the request's ``Origin`` when it is one of ``allowed_origins``."""
    origin = request.getHeader(b"origin")
    if origin is None or not allowed_origins:
        return

    request.setHeader(b"vary", b"Origin")
    if "*" in allowed_origins:
        request.setHeader(b"access-control-allow-origin", b"*")
    elif origin.decode("latin-1") in allowed_origins:
        request.setHeader(b"access-control-allow-origin", origin)
    else:
        return
    request.setHeader(b"access-control-expose-headers", EXPOSED_HEADERS)


def render_preflight(allowed_origins: tuple[str, ...], request: Request) -> bytes:
    """Answer an ``OPTIONS`` preflight (204) with ``Allow`` and the CORS headers."""
    apply_cors(allowed_origins, request)
    request.setResponseCode(204)
    request.setHeader(b"allow", ALLOWED_METHODS)
    if request.responseHeaders.hasHeader(b"access-control-allow-origin"):
        request.setHeader(b"access-control-allow-methods", CORS_METHODS)
        request.setHeader(b"access-control-allow-headers", CORS_HEADERS)
        request.setHeader(b"access-control-max-age", b"86400")
    return b""
