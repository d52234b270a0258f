"""The XEP-0363 slot URLs (PUT uploads, GET/HEAD downloads, OPTIONS preflight)
and the download routes that share their files."""

from __future__ import annotations

from twisted.web import server
from twisted.web.resource import Resource

from hmacfs_core.app import App
from hmacfs_core.web.cors import ALLOWED_METHODS, apply_cors, render_preflight
from hmacfs_core.web.download import render_download
from hmacfs_core.web.request import StreamingRequest, UploadRefused
from hmacfs_core.web.routing import route_for
from hmacfs_core.web.transfer_log import track_transfer
from hmacfs_core.web.upload import UploadReceiver, respond

#: What a client is told to wait when it asks a server that is stopping: long
#: enough for a restart.
DRAINING_RETRY_AFTER = 10


class SlotResource(Resource):
    """Every path below the mount point is a slot; this resource is a leaf.

    Under :class:`StreamingRequest` an upload is authorized in
    :meth:`begin_upload`, before the body; under a plain Twisted ``Request`` the
    same checks run in :meth:`render_PUT` on the body Twisted buffered.
    """

    isLeaf = True
    allowedMethods = (b"GET", b"HEAD", b"PUT", b"OPTIONS")

    def __init__(self, app: App) -> None:
        super().__init__()
        self.app = app

    def render(self, request: server.Request) -> bytes | int:
        """Dispatch by method; anything but the four slot methods gets 405.

        Twisted answers 501 for methods its ``Site`` does not know (DELETE,
        PATCH); a slot URL only ever allows these four, so 405 with ``Allow``.
        """
        if self.app.draining and request not in self.app.active_transfers:
            # Only requests that began before the stop signal are still served.
            request.setResponseCode(503)
            request.setHeader(b"retry-after", b"%d" % DRAINING_RETRY_AFTER)
            request.setHeader(b"connection", b"close")
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"shutting down\n"
        route = route_for(
            request,
            self.app.config.server.base_path,
            self.app.config.performance.adaptive_buffers,
        )
        if route is None:
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"not found\n"
        request.route = route

        if request.method not in self.allowedMethods:
            request.setResponseCode(405)
            request.setHeader(b"allow", ALLOWED_METHODS)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"method not allowed\n"
        return super().render(request)

    def begin_upload(self, request: StreamingRequest) -> UploadReceiver:
        track_transfer(self.app, request)
        apply_cors(self.app.config.downloads.allowed_origins, request)
        if self.app.draining:
            raise UploadRefused(
                503, "shutting down", {b"retry-after": b"%d" % DRAINING_RETRY_AFTER}
            )
        if request.method != b"PUT":
            raise UploadRefused(405, "method not allowed", {b"allow": ALLOWED_METHODS})
        return UploadReceiver.begin(self.app, request)

    def render_PUT(self, request: server.Request) -> bytes | int:
        receiver = getattr(request, "upload_sink", None)
        if isinstance(receiver, UploadReceiver):
            receiver.complete()
            return server.NOT_DONE_YET
        return self._render_buffered_put(request)

    def render_GET(self, request: server.Request) -> bytes | int:
        track_transfer(self.app, request)
        apply_cors(self.app.config.downloads.allowed_origins, request)
        return render_download(self.app, request)

    render_HEAD = render_GET

    def render_OPTIONS(self, request: server.Request) -> bytes:
        return render_preflight(self.app.config.downloads.allowed_origins, request)

    def _render_buffered_put(self, request: server.Request) -> bytes | int:
        """Take an upload whose body Twisted has already buffered.

        Only reached when a host site mounts this resource without
        ``StreamingRequest``: correct, but neither early nor streaming.
        """
        request.body_length = int(request.getHeader(b"content-length") or -1)
        if request.body_length < 0:
            request.body_length = None
        request.received_bytes = request.body_length or 0
        try:
            receiver = self.begin_upload(request)
        except UploadRefused as refusal:
            respond(request, refusal.code, refusal.reason, refusal.headers)
            return server.NOT_DONE_YET

        receiver.complete_from_buffer(request.content)
        return server.NOT_DONE_YET
