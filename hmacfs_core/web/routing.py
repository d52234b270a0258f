"""Where a request's path starts, for a resource that may be mounted anywhere."""

from __future__ import annotations

from twisted.web.server import Request


def relative_raw_path(request: Request) -> bytes:
    """The still percent-encoded path below the resource's mount point.

    Twisted's ``postpath`` is already unquoted, which would hide an encoded
    ``/`` inside a segment; the raw ``request.path`` is split instead, dropping
    as many segments as the host site consumed on the way to this resource.
    """
    segments = request.path.split(b"/")[1:]
    return b"/" + b"/".join(segments[len(request.prepath) :])
