"""The XEP-0363 slot URLs (PUT uploads, GET/HEAD downloads, OPTIONS preflight),
the download routes that share their files, and the form upload routes."""

from __future__ import annotations

from twisted.web import server
from twisted.web.resource import Resource

from hmacfs_core.app import App
from hmacfs_core.web.cors import ALLOWED_METHODS, apply_cors, render_preflight
from hmacfs_core.web.download import render_download
from hmacfs_core.web.form_upload import FormUploadReceiver
from hmacfs_core.web.request import (
    StreamingRequest,
    UploadRefused,
    buffered_body,
    request_state,
)
from hmacfs_core.web.routing import FORM_ROUTES, Route, route_for
from hmacfs_core.web.service import (
    plain_text,
    render_health,
    render_metrics,
    render_rollback_reset,
)
from hmacfs_core.web.transfer_log import track_transfer
from hmacfs_core.web.tus import TusResource, TusSink
from hmacfs_core.web.upload import UploadReceiver, respond

#: What a client is told to wait when it asks a server that is stopping: long
#: enough for a restart.
DRAINING_RETRY_AFTER = 10


SERVICE_RENDERERS = {
    "health": render_health,
    "metrics": render_metrics,
    "admin/rollback-reset": render_rollback_reset,
}

#: Route names of ``POST /upload`` and its adaptive siblings.
FORM_ROUTE_NAMES = frozenset(FORM_ROUTES.values())

Receiver = UploadReceiver | FormUploadReceiver


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
        self.tus = TusResource(app)

    def render(self, request: server.Request) -> bytes | int:
        """Dispatch by route, then by method.

        Twisted answers 501 for methods its ``Site`` does not know (DELETE,
        PATCH); a slot URL only ever allows four, so 405 with ``Allow``.
        """
        route = self._route(request)
        if route is None:
            return plain_text(request, 404, "not found")
        request_state(request).route = route
        service = SERVICE_RENDERERS.get(route.name)
        if service is not None:
            return service(self.app, request)
        if route.name == "tus":
            return self.tus.render(request)

        if self.app.draining and request not in self.app.active_transfers:
            # Only requests that began before the stop signal are still served.
            request.setHeader(b"retry-after", b"%d" % DRAINING_RETRY_AFTER)
            request.setHeader(b"connection", b"close")
            return plain_text(request, 503, "shutting down")
        if route.name in FORM_ROUTE_NAMES:
            return self._render_form(request)
        if request.method not in self.allowedMethods:
            request.setHeader(b"allow", ALLOWED_METHODS)
            return plain_text(request, 405, "method not allowed")
        return super().render(request)

    def begin_upload(self, request: StreamingRequest) -> Receiver | TusSink | None:
        route = self._route(request)
        if route is not None and route.name == "tus":
            return self.tus.begin_upload(request)
        if route is not None and route.name in SERVICE_RENDERERS:
            # Not an upload: Twisted buffers the body and ``render`` answers.
            return None
        return self._begin(request, buffered=False)

    def _begin(self, request: server.Request, buffered: bool) -> Receiver:
        """Authorize an upload from its headers; ``buffered`` when Twisted has
        already read its body."""
        route = self._route(request)
        track_transfer(self.app, request)
        apply_cors(self.app.config.downloads.allowed_origins, request)
        if self.app.draining:
            raise UploadRefused(
                503, "shutting down", {b"retry-after": b"%d" % DRAINING_RETRY_AFTER}
            )
        if route is None:
            raise UploadRefused(404, "not found")
        if route.name in FORM_ROUTE_NAMES:
            return FormUploadReceiver.begin(self.app, request, route, buffered)
        if request.method != b"PUT":
            raise UploadRefused(405, "method not allowed", {b"allow": ALLOWED_METHODS})
        return UploadReceiver.begin(self.app, request)

    def _route(self, request: server.Request) -> Route | None:
        config = self.app.config
        return route_for(
            request,
            config.server.base_path,
            config.performance.adaptive_buffers,
            metrics_here=config.metrics.enabled
            and config.metrics.listen_address is None,
            testing=config.performance.testing_mode,
            tus_path=config.tus.path if config.tus.enabled else None,
        )

    def render_PUT(self, request: server.Request) -> bytes | int:
        receiver = getattr(request, "upload_sink", None)
        if isinstance(receiver, UploadReceiver):
            receiver.complete()
            return server.NOT_DONE_YET
        return self._render_buffered_upload(request)

    def _render_form(self, request: server.Request) -> bytes | int:
        receiver = getattr(request, "upload_sink", None)
        if isinstance(receiver, FormUploadReceiver):
            receiver.complete()
            return server.NOT_DONE_YET
        return self._render_buffered_upload(request)

    def render_GET(self, request: server.Request) -> bytes | int:
        track_transfer(self.app, request)
        apply_cors(self.app.config.downloads.allowed_origins, request)
        return render_download(self.app, request)

    render_HEAD = render_GET

    def render_OPTIONS(self, request: server.Request) -> bytes:
        return render_preflight(self.app.config.downloads.allowed_origins, request)

    def _render_buffered_upload(self, request: server.Request) -> bytes | int:
        """Take an upload whose body Twisted has already buffered.

        Only reached when a host site mounts this resource without
        ``StreamingRequest``: correct, but neither early nor streaming.
        """
        state = request_state(request)
        state.body_length = int(request.getHeader(b"content-length") or -1)
        if state.body_length < 0:
            state.body_length = None
        state.received_bytes = state.body_length or 0
        try:
            receiver = self._begin(request, buffered=True)
        except UploadRefused as refusal:
            respond(request, refusal.code, refusal.reason, refusal.headers)
            return server.NOT_DONE_YET

        receiver.complete_from_buffer(buffered_body(request))
        return server.NOT_DONE_YET
