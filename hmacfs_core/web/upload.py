"""PUT on a signed slot URL: authorize from the headers, stream, publish.

The decisions, in order, all made before the first body byte is accepted:

====  ===============================================================
400   the path is not a safe name
411   no ``Content-Length`` (a chunked body cannot be checked against the
      signed size)
403   no signature of an accepted scheme, a wrong MAC, or an expired v3 URL
413   the declared size is over ``server.max_upload_size``
409   a different-sized file already exists at the path
====  ===============================================================

A file of the same size at the path is not refused from the headers: the body is
staged and compared. Identical bytes answer 201 again, because a phone that lost
the first 201 on a network switch retries the same URL and must not be told its
upload failed; different bytes answer 409.
"""

from __future__ import annotations

import errno
from typing import IO, cast

from attrs import define, field
from twisted.python.failure import Failure
from twisted.web.server import Request

from hmacfs_core.app import App
from hmacfs_core.paths import PathRefused, UploadPath, parse_upload_path
from hmacfs_core.pipeline import BASELINE_RETRY_AFTER, TransferRun
from hmacfs_core.signatures import find_signature, verify_upload
from hmacfs_core.storage import DEFAULT_CONTENT_TYPE, PublishResult, StagedFile
from hmacfs_core.web.request import (
    StreamingRequest,
    UploadRefused,
    query_args,
    request_state,
)
from hmacfs_core.web.routing import relative_raw_path, request_route
from hmacfs_core.writer import StagedWriter


def authorize_upload(app: App, request: Request) -> tuple[UploadPath, int, str]:
    """Check a PUT from its headers; return its path, size and content type.

    :raises UploadRefused: with the status and reason to send.
    """
    config = app.config
    try:
        upload_path = parse_upload_path(
            relative_raw_path(request),
            request_route(request, config.server.base_path).prefix,
        )
        app.store.locate(upload_path)
    except PathRefused as refusal:
        raise UploadRefused(400, f"invalid path: {refusal.reason}") from None

    size = request_state(request).body_length
    if size is None:
        raise UploadRefused(411, "Content-Length required")

    if find_signature(query_args(request), config.security.protocols) is None:
        raise UploadRefused(403, "missing signature")

    signed_type = _header_text(request, b"content-type")
    if signed_type is not None and not signed_type.isascii():
        # It could be neither stored faithfully nor sent back in a header.
        raise UploadRefused(400, "Content-Type must be ASCII")
    check_signed_upload(app, request, upload_path, size, signed_type)
    return upload_path, size, signed_type or DEFAULT_CONTENT_TYPE


def check_signed_upload(
    app: App,
    request: Request,
    upload_path: UploadPath,
    size: int,
    signed_type: str | None,
) -> None:
    """The checks a PUT and a tus creation share: signature, size, existing file.

    The signature is judged as a PUT's (v3 signs the method), so one signed URL
    serves both; a v3 ``expires`` is judged now, when the headers arrived.

    :raises UploadRefused: 403, 413 or 409.
    """
    config = app.config
    signed = find_signature(query_args(request), config.security.protocols)
    if signed is None:
        raise UploadRefused(403, "missing signature")
    verdict = verify_upload(
        app.secret,
        signed,
        method="PUT",
        path=upload_path.text,
        size=size,
        content_type=signed_type,
        now=app.reactor.seconds(),
        v2_type_from_extension=config.security.v2_type_from_extension,
    )
    if not verdict.ok:
        raise UploadRefused(403, verdict.reason)

    if size > config.server.max_upload_size:
        raise UploadRefused(413, "file too large")

    existing = app.store.lookup(upload_path)
    if existing is not None and existing.size != size:
        raise UploadRefused(409, "file already exists")


@define
class UploadReceiver:
    """One accepted upload: its staged body and what to do when it ends."""

    app: App
    request: Request
    upload_path: UploadPath
    size: int
    content_type: str
    staged: StagedFile
    run: TransferRun
    writer: StagedWriter = field(init=False)
    completing: bool = field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        self.writer = StagedWriter(
            staged=self.staged,
            buffer_size=self.run.plan.write_buffer_size,
            run_in_thread=self.app.run_in_thread,
            producer=self.request.channel,
            on_error=self._write_failed,
        )
        # The request drops its channel when it finishes; keep our own reference.
        channel = self.request.channel
        self.run.set_writer_buffer = self._set_write_buffer
        self.run.set_idle_timeout = channel.setTimeout
        self.run.readers["write_buffer_size"] = lambda: self.writer.buffer_size
        self.run.readers["idle_timeout"] = lambda: channel.timeOut
        self.run.apply()

    @classmethod
    def begin(cls, app: App, request: Request) -> UploadReceiver:
        """Authorize ``request`` and open its staged file.

        :raises UploadRefused: when the headers do not allow the upload.
        """
        upload_path, size, content_type = authorize_upload(app, request)
        try:
            staged = app.store.stage()
        except OSError as error:
            refusal = storage_refusal(error)
            refusal.headers[b"retry-after"] = b"%d" % BASELINE_RETRY_AFTER
            raise refusal from None

        route = request_route(request, app.config.server.base_path)
        run = app.pipeline.start(
            request, "upload", upload_path.text, size, content_type, route=route.name
        )
        request_state(request).transfer_run = run
        return cls(app, request, upload_path, size, content_type, staged, run)

    def _set_write_buffer(self, size: int) -> None:
        self.writer.buffer_size = size

    def write(self, chunk: bytes) -> None:
        self.writer.write(chunk)

    def abort(self, reason: Failure) -> None:
        """The client went away mid-body: remove the staged file.

        Once the body is complete the upload is finished even if the client has
        gone: its retry of the same URL will then find identical bytes (201).
        """
        if not self.completing:
            self.writer.abort(self.app.store.discard)

    def complete(self) -> None:
        """The whole body is in: sync, publish, answer."""
        self.completing = True
        finished = self.writer.finish()
        finished.addCallback(self._publish)
        finished.addCallbacks(self._answer, self._failed)

    def complete_from_buffer(self, content: IO[bytes]) -> None:
        """Copy a body Twisted already buffered, in a worker thread, then finish."""

        def copy() -> None:
            content.seek(0)
            for block in iter(lambda: content.read(1 << 20), b""):
                self.staged.write_block(block)

        copied = self.app.run_in_thread(copy)
        copied.addCallbacks(lambda _: self.complete(), self._failed)

    def _publish(self, staged: StagedFile):  # type: ignore[no-untyped-def]
        result = self.app.store.publish(staged, self.upload_path, self.content_type)
        if result is not PublishResult.CREATED:
            return result

        synced = self.app.run_in_thread(
            self.app.store.sync_directories, self.upload_path
        )
        return synced.addCallback(lambda _: result)

    def _answer(self, result: PublishResult) -> None:
        if result is PublishResult.CONFLICT:
            respond(self.request, 409, "file already exists")
        else:
            respond(self.request, 201, "created")

    def _failed(self, failure: Failure) -> None:
        self.writer.abort(self.app.store.discard)
        if failure.check(OSError):
            refusal = storage_refusal(failure.value)
        else:
            self.app.log.failure("Upload failed", failure=failure)
            refusal = UploadRefused(500, "internal error")
        respond(self.request, refusal.code, refusal.reason, self._retry_after())

    def _write_failed(self, failure: Failure) -> None:
        self.app.log.error(
            "Writing a staged upload failed: {error}", error=failure.getErrorMessage()
        )
        if self.completing:
            return
        self.writer.abort(self.app.store.discard)
        refusal = storage_refusal(failure.value)
        refusal.headers.update(self._retry_after())
        # Only a streamed body goes through the writer: a buffered one is copied
        # to the staged file directly.
        cast(StreamingRequest, self.request).refuse_mid_body(refusal)

    def _retry_after(self) -> dict[bytes, bytes]:
        """When a client should retry an upload that failed on our side."""
        return {b"retry-after": b"%d" % round(self.run.plan.retry_after)}


def _header_text(request: Request, name: bytes) -> str | None:
    raw = request.getHeader(name)
    # surrogateescape keeps the exact bytes sent, which is what the MAC covers.
    return None if raw is None else raw.decode("utf-8", "surrogateescape")


def storage_refusal(error: BaseException) -> UploadRefused:
    """507 for a full disk or quota, 500 for any other storage failure."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return UploadRefused(507, "insufficient storage")
    return UploadRefused(500, "storage error")


def respond(
    request: Request, code: int, reason: str, headers: dict[bytes, bytes] | None = None
) -> None:
    """Finish ``request`` with a short plain-text answer, if it is still there."""
    if request._disconnected or request.finished:
        return
    body = reason.encode("utf-8") + b"\n"
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    request.setHeader(b"content-length", b"%d" % len(body))
    for name, value in (headers or {}).items():
        request.setHeader(name, value)
    request.write(body)
    request.finish()
