"""One log event per finished transfer, and the set of running transfers.

The event carries what an operator needs to follow a transfer (method, path,
status, bytes, seconds, peer) and never the query string, which holds the MAC.
"""

from __future__ import annotations

import time

from twisted.python.failure import Failure
from twisted.web.server import Request

from hmacfs_core.app import App
from hmacfs_core.transfer import Outcome

#: Methods whose body is the transfer (tus appends with PATCH).
UPLOAD_METHODS = (b"PUT", b"POST", b"PATCH")


def track_transfer(app: App, request: Request) -> None:
    """Count ``request`` as running until it ends, then log it once."""
    if request in app.active_transfers:
        return
    app.active_transfers.add(request)
    started = getattr(request, "started", 0.0) or time.monotonic()
    active = app.metrics.active_transfers.labels(
        direction="upload" if request.method in UPLOAD_METHODS else "download"
    )
    active.inc()

    def finished(result: object) -> None:
        app.active_transfers.discard(request)
        active.dec()
        completed = not isinstance(result, Failure)
        seconds = time.monotonic() - started
        run = getattr(request, "transfer_run", None)
        if run is not None:
            outcome = _outcome(request, completed, seconds)
            run.finish(outcome)
            app.metrics.record_transfer(run.transfer, outcome)
        transfer = run.transfer if run is not None else None
        refused = getattr(request, "refused", None)
        if refused is not None:
            # Answered from the headers; the connection then closed on a body
            # that was never wanted. The client did get its status.
            status: object = refused.code
            app.metrics.refusals.labels(code=str(refused.code)).inc()
        else:
            status = request.code if completed else "aborted"
        app.log.info(
            "{method} {path} {status} {bytes} bytes in {seconds:.3f}s from {peer}"
            " ({arm}, {client_class})",
            arm=transfer.arm if transfer else "none",
            client_class=(transfer.client_class if transfer else None) or "unknown",
            method=request.method.decode("latin-1"),
            # A resource may log a path without a capability in it (tus ids).
            path=getattr(request, "log_path", request.path).decode("latin-1"),
            status=status,
            bytes=_bytes_moved(request),
            seconds=seconds,
            peer=app.client_address(request),
            transfer_completed=completed,
        )

    request.notifyFinish().addBoth(finished)


def _outcome(request: Request, completed: bool, seconds: float) -> Outcome:
    """Success is a response the client received that is not a server error."""
    if not completed:
        return Outcome(False, None, "cut", _bytes_moved(request), seconds)
    succeeded = request.code < 500
    reason = "ok" if succeeded else f"status {request.code}"
    return Outcome(succeeded, request.code, reason, _bytes_moved(request), seconds)


def _bytes_moved(request: Request) -> int:
    if request.method in UPLOAD_METHODS:
        return getattr(request, "received_bytes", 0)
    return request.sentLength
