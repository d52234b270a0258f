"""One log event per finished transfer, and the set of running transfers.

The event carries what an operator needs to follow a transfer (method, path,
status, bytes, seconds, peer) and never the query string, which holds the MAC.
"""

from __future__ import annotations

import time

from twisted.python.failure import Failure
from twisted.web.server import Request

from hmacfs_core.app import App


def track_transfer(app: App, request: Request) -> None:
    """Count ``request`` as running until it ends, then log it once."""
    if request in app.active_transfers:
        return
    app.active_transfers.add(request)
    started = getattr(request, "started", 0.0) or time.monotonic()

    def finished(result: object) -> None:
        app.active_transfers.discard(request)
        completed = not isinstance(result, Failure)
        app.log.info(
            "{method} {path} {status} {bytes} bytes in {seconds:.3f}s from {peer}",
            method=request.method.decode("latin-1"),
            path=request.path.decode("latin-1"),
            status=request.code if completed else "aborted",
            bytes=_bytes_moved(request),
            seconds=time.monotonic() - started,
            peer=_peer(request),
            transfer_completed=completed,
        )

    request.notifyFinish().addBoth(finished)


def _bytes_moved(request: Request) -> int:
    if request.method == b"PUT":
        return getattr(request, "received_bytes", 0)
    return request.sentLength


def _peer(request: Request) -> str:
    address = request.getClientAddress()
    host = getattr(address, "host", None)
    return str(host) if host is not None else str(address)
