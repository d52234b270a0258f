"""POST /upload: one or more files in a ``multipart/form-data`` body, streamed.

The request names a target directory and carries its authorization; every file
part of the form is stored as ``<dir>/<filename>``::

    POST /upload?dir=abc123&expires=1767225600&v3=<hex mac>
    POST /upload?dir=abc123
    Authorization: Bearer <security.upload_token>

``dir`` is an ordinary query parameter (``+`` is a space, ``%2F`` or ``/``
separates directories) and is judged by the same rules as an upload path. The
v3 MAC signs ``POST\\n<expires>\\n/<dir>``, with ``<dir>`` decoded and without
its leading or trailing slash: exactly a v3 PUT signature whose path is the
directory. It authorizes any file names inside that directory until
``expires``; the route (``/upload``, ``/upload/adaptive``, ``/upload/auto``) is
not signed, since it only chooses the pipeline arm.

The decisions made from the headers, before the first body byte:

====  ===============================================================
404   ``/upload/adaptive`` or ``/upload/auto`` while switched off
400   ``dir`` missing, repeated, or not a safe path
411   no ``Content-Length``
401   a wrong bearer token, or no credentials while a token is configured
403   a bearer token while none is configured; a missing, wrong or expired
      v3 signature
413   ``Content-Length`` (the whole form) over ``server.max_upload_size``
400   ``Content-Type`` not ``multipart/form-data`` with a boundary
====  ===============================================================

While the body streams, a file name that is not safe, a malformed body, a form
field over 64 KiB or a part too many answers 400 at once; then everything staged
for the request is removed, as it is when the client goes away.

When the body is complete, each file is published with the slot URLs' rule:
never overwrite, identical bytes count as stored. The answer is JSON with one
entry per file, in form order, with its own status (201 or 409); the request's
status is 201 if any file was created, 200 if every file was an identical
retry, else 409.
"""

from __future__ import annotations

import hmac
import json
from typing import IO, Any, cast

from attrs import define, field, frozen
from python_multipart.multipart import parse_options_header
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure
from twisted.web.server import Request
from zope.interface import implementer

from hmacfs_core.app import App
from hmacfs_core.paths import PathRefused, UploadPath, encode_path
from hmacfs_core.pipeline import TransferRun
from hmacfs_core.signatures import find_signature, verify_upload
from hmacfs_core.storage import DEFAULT_CONTENT_TYPE, PublishResult, StagedFile
from hmacfs_core.web.form_parts import MAX_BOUNDARY_BYTES, FilePart, FormReader
from hmacfs_core.web.request import (
    StreamingRequest,
    UploadRefused,
    query_args,
    request_state,
)
from hmacfs_core.web.routing import Route, mount_depth
from hmacfs_core.web.upload import respond, storage_refusal
from hmacfs_core.writer import StagedWriter

#: What the transfer carries as its content type: the form, not its files.
FORM_CONTENT_TYPE = "multipart/form-data"

#: Read size when feeding a body that Twisted has already buffered.
BUFFERED_READ_SIZE = 64 * 1024

BEARER_CHALLENGE = b'Bearer realm="hmacfs upload"'


@frozen
class FormGrant:
    """What the headers of an authorized form upload allow.

    :ivar directory: where the files go.
    :ivar size: the whole body's ``Content-Length``.
    :ivar boundary: the multipart boundary.
    """

    directory: UploadPath
    size: int
    boundary: bytes


def authorize_form_upload(app: App, request: Request) -> FormGrant:
    """Check a form upload from its headers (see the module's table).

    :raises UploadRefused: with the status and reason to send.
    """
    directory = _target_directory(app, request)

    size = request_state(request).body_length
    if size is None:
        raise UploadRefused(411, "Content-Length required")

    _check_credentials(app, request, directory)

    if size > app.config.server.max_upload_size:
        raise UploadRefused(413, "form too large")

    return FormGrant(directory, size, _boundary(request))


def _target_directory(app: App, request: Request) -> UploadPath:
    values = query_args(request).get(b"dir")
    if not values:
        raise UploadRefused(400, "missing dir")
    if len(values) > 1:
        raise UploadRefused(400, "repeated dir")
    try:
        text = values[0].decode("utf-8").strip("/")
        directory = UploadPath(tuple(text.split("/")))
        app.store.locate(directory)
    except UnicodeDecodeError:
        raise UploadRefused(400, "invalid dir: not UTF-8") from None
    except PathRefused as refusal:
        raise UploadRefused(400, f"invalid dir: {refusal.reason}") from None
    return directory


def _check_credentials(app: App, request: Request, directory: UploadPath) -> None:
    """A bearer token, when the request has one; else a v3 signature."""
    security = app.config.security
    bearer = _bearer_token(request)
    if bearer is not None:
        if security.upload_token is None:
            raise UploadRefused(403, "bearer tokens are not accepted")
        if not hmac.compare_digest(bearer, security.upload_token.encode("utf-8")):
            raise UploadRefused(
                401,
                "wrong bearer token",
                {b"www-authenticate": BEARER_CHALLENGE + b', error="invalid_token"'},
            )
        return

    accepted = [protocol for protocol in security.protocols if protocol == "v3"]
    signed = find_signature(query_args(request), accepted)
    if signed is None:
        if security.upload_token is not None:
            raise UploadRefused(
                401, "credentials required", {b"www-authenticate": BEARER_CHALLENGE}
            )
        raise UploadRefused(403, "missing signature")

    verdict = verify_upload(
        app.secret,
        signed,
        method="POST",
        path=directory.text,
        size=0,
        content_type=None,
        now=app.reactor.seconds(),
    )
    if not verdict.ok:
        raise UploadRefused(403, verdict.reason)


def _bearer_token(request: Request) -> bytes | None:
    """The token of an ``Authorization: Bearer`` header, else None.

    Other schemes count as no header: a reverse proxy's own Basic login must
    not hide a signed URL.
    """
    header = request.getHeader(b"authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(b" ")
    return token.strip() if scheme.lower() == b"bearer" else None


def _boundary(request: Request) -> bytes:
    media_type, options = parse_options_header(request.getHeader(b"content-type"))
    boundary = options.get(b"boundary", b"")
    if media_type != FORM_CONTENT_TYPE.encode("ascii") or not boundary:
        raise UploadRefused(
            400, "Content-Type must be multipart/form-data with a boundary"
        )
    if len(boundary) > MAX_BOUNDARY_BYTES:
        raise UploadRefused(400, "multipart boundary too long")
    return boundary


@define
class ProducerGate:
    """Pause one connection while any of several writers asks it to.

    Each file of a form has its own :class:`StagedWriter`, and a file that ends
    keeps the connection paused until its last block is synced; a writer that
    ends never resumes what it paused, so its :class:`GateHold` is released
    explicitly.

    :param producer: the connection, or None when the body is already buffered.
    """

    producer: IPushProducer | None
    _held: int = 0
    _waiters: list[Deferred[None]] = field(factory=list)

    @property
    def paused(self) -> bool:
        return self._held > 0

    def hold(self) -> GateHold:
        """A producer for one writer; it pauses the connection through this gate."""
        return GateHold(self)

    def when_flowing(self) -> Deferred[None]:
        """Fire once no hold pauses the connection."""
        if not self.paused:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._waiters.append(waiter)
        return waiter

    def _pause(self) -> None:
        self._held += 1
        if self._held == 1 and self.producer is not None:
            self.producer.pauseProducing()

    def _resume(self) -> None:
        self._held -= 1
        if self._held:
            return
        if self.producer is not None:
            self.producer.resumeProducing()
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(None)


@implementer(IPushProducer)
@define
class GateHold:
    """One writer's share of a :class:`ProducerGate` (an ``IPushProducer``)."""

    gate: ProducerGate
    paused: bool = False

    def pauseProducing(self) -> None:
        if not self.paused:
            self.paused = True
            self.gate._pause()

    def resumeProducing(self) -> None:
        if self.paused:
            self.paused = False
            self.gate._resume()

    def stopProducing(self) -> None:
        self.resumeProducing()


@define
class StagedPart:
    """One file of the form on its way to the store.

    :ivar synced: fires (with None) once the staged file is complete and synced
        or has failed; None while the part is still receiving.
    """

    name: str
    upload_path: UploadPath
    content_type: str
    staged: StagedFile
    writer: StagedWriter
    hold: GateHold
    synced: Deferred[None] | None = None
    failure: Failure | None = None
    result: PublishResult | None = None


@define
class FormUploadReceiver:
    """One accepted form upload: its parser, its staged files, its answer."""

    app: App
    request: Request
    grant: FormGrant
    run: TransferRun
    buffered: bool = False
    parts: list[StagedPart] = field(factory=list, init=False)
    gate: ProducerGate = field(init=False)
    reader: FormReader = field(init=False)
    write_buffer_size: int = field(init=False)
    completing: bool = field(default=False, init=False)
    stopped: bool = field(default=False, init=False)
    _current: StagedPart | None = field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        channel = self.request.channel
        self.gate = ProducerGate(None if self.buffered else channel)
        self.reader = FormReader(self.grant.boundary, self)
        self.write_buffer_size = self.run.plan.write_buffer_size
        self.run.set_writer_buffer = self._set_write_buffer
        self.run.set_idle_timeout = channel.setTimeout
        self.run.readers["write_buffer_size"] = lambda: self.write_buffer_size
        self.run.readers["idle_timeout"] = lambda: channel.timeOut
        self.run.apply()

    @classmethod
    def begin(
        cls, app: App, request: Request, route: Route, buffered: bool = False
    ) -> FormUploadReceiver:
        """Authorize ``request``; nothing is staged before its first file part.

        :raises UploadRefused: when the headers do not allow the upload.
        """
        grant = authorize_form_upload(app, request)
        run = app.pipeline.start(
            request,
            "upload",
            grant.directory.text,
            grant.size,
            FORM_CONTENT_TYPE,
            route=route.name,
        )
        request_state(request).transfer_run = run
        return cls(app, request, grant, run, buffered)

    def _set_write_buffer(self, size: int) -> None:
        self.write_buffer_size = size
        if self._current is not None:
            self._current.writer.buffer_size = size

    # -- the body, as it arrives (UploadSink) -------------------------------

    def write(self, chunk: bytes) -> None:
        if self.stopped:
            return
        try:
            self.reader.feed(chunk)
        except UploadRefused as refusal:
            self._refuse(refusal)

    def abort(self, reason: Failure) -> None:
        """The client went away mid-body: remove every staged file.

        Once the body is complete the files are stored even if the client has
        gone, so that its retry finds identical bytes.
        """
        if not self.completing:
            self.stopped = True
            self._discard_all()

    # -- the file parts (FileSink) --------------------------------------------

    def begin_file(self, part: FilePart) -> None:
        try:
            upload_path = UploadPath((*self.grant.directory.segments, part.filename))
            self.app.store.locate(upload_path)
        except PathRefused as refusal:
            raise UploadRefused(400, f"invalid file name: {refusal.reason}") from None

        try:
            staged = self.app.store.stage()
        except OSError as error:
            failed = storage_refusal(error)
            failed.headers.update(self._retry_after())
            raise failed from None

        hold = self.gate.hold()
        writer = StagedWriter(
            staged=staged,
            buffer_size=self.write_buffer_size,
            run_in_thread=self.app.run_in_thread,
            producer=hold,
            on_error=self._write_failed,
        )
        self._current = StagedPart(
            name=part.filename,
            upload_path=upload_path,
            content_type=part.content_type or DEFAULT_CONTENT_TYPE,
            staged=staged,
            writer=writer,
            hold=hold,
        )
        self.parts.append(self._current)

    def file_data(self, data: bytes) -> None:
        assert self._current is not None
        self._current.writer.write(data)

    def end_file(self) -> None:
        """Sync the file now, holding the connection until it is on disk.

        Holding it bounds memory to one file's last blocks however many small
        files follow.
        """
        part, self._current = self._current, None
        assert part is not None
        part.hold.pauseProducing()
        finished = part.writer.finish()
        part.synced = finished.addCallbacks(
            lambda _: None, lambda failure: self._sync_failed(part, failure)
        )
        part.synced.addBoth(self._release, part.hold)

    def _release(self, result: object, hold: GateHold) -> object:
        hold.resumeProducing()
        return result

    def _sync_failed(self, part: StagedPart, failure: Failure) -> None:
        part.failure = failure
        if not self.completing:
            self._refuse(self._failure_refusal(failure))

    def _write_failed(self, failure: Failure) -> None:
        self.app.log.error(
            "Writing a staged form file failed: {error}",
            error=failure.getErrorMessage(),
        )
        if not self.completing:
            self._refuse(self._failure_refusal(failure))

    # -- the end ----------------------------------------------------------------

    def complete(self) -> None:
        """The whole body is in: wait for every file, publish, answer."""
        self.completing = True
        if self.stopped:
            return
        if not self.reader.ended:
            self._reject(UploadRefused(400, "incomplete multipart body"))
            return
        if not self.parts:
            self._reject(UploadRefused(400, "no file in the form"))
            return

        synced = gatherResults(
            [part.synced for part in self.parts if part.synced is not None]
        )
        synced.addCallback(self._publish_all)
        synced.addCallbacks(self._answer, self._failed)

    def complete_from_buffer(self, content: IO[bytes]) -> None:
        """Feed a body Twisted already buffered, pausing as a socket would."""
        content.seek(0)

        def feed(_: object = None) -> None:
            while not self.stopped:
                if self.gate.paused:
                    self.gate.when_flowing().addCallback(feed)
                    return
                block = content.read(BUFFERED_READ_SIZE)
                if not block:
                    self.complete()
                    return
                self.write(block)

        feed()

    def _publish_all(self, _: object) -> Deferred[None]:
        failed = [part.failure for part in self.parts if part.failure is not None]
        if failed:
            failed[0].raiseException()

        for part in self.parts:
            part.result = self.app.store.publish(
                part.staged, part.upload_path, part.content_type
            )

        created = [
            part.upload_path
            for part in self.parts
            if part.result is PublishResult.CREATED
        ]

        def sync_directories() -> None:
            for upload_path in created:
                self.app.store.sync_directories(upload_path)

        return self.app.run_in_thread(sync_directories)

    def _answer(self, _: object) -> None:
        results = [part.result for part in self.parts]
        if PublishResult.CREATED in results:
            code = 201
        elif all(result is PublishResult.IDENTICAL for result in results):
            code = 200
        else:
            code = 409
        respond_json(
            self.request, code, {"files": [self._entry(p) for p in self.parts]}
        )

    def _entry(self, part: StagedPart) -> dict[str, Any]:
        path = part.upload_path.text
        return {
            "name": part.name,
            "path": path,
            "url": _mount_prefix(self.request)
            + self.app.config.server.base_path
            + encode_path(path),
            "size": part.staged.size,
            "sha256": part.staged.sha256,
            "status": 409 if part.result is PublishResult.CONFLICT else 201,
        }

    def _failed(self, failure: Failure) -> None:
        self._discard_all()
        refusal = self._failure_refusal(failure)
        respond(self.request, refusal.code, refusal.reason, refusal.headers)

    def _failure_refusal(self, failure: Failure) -> UploadRefused:
        if failure.check(OSError):
            refusal = storage_refusal(failure.value)
        else:
            self.app.log.failure("Form upload failed", failure=failure)
            refusal = UploadRefused(500, "internal error")
        refusal.headers.update(self._retry_after())
        return refusal

    def _refuse(self, refusal: UploadRefused) -> None:
        """Answer now, while the body is still arriving, and drop the rest."""
        if self.stopped:
            return
        self.stopped = True
        self._discard_all()
        if self.buffered:
            respond(self.request, refusal.code, refusal.reason, refusal.headers)
        else:
            # Only a StreamingRequest hands a body over before it is complete.
            cast(StreamingRequest, self.request).refuse_mid_body(refusal)

    def _reject(self, refusal: UploadRefused) -> None:
        """Answer a complete body that is not an acceptable form."""
        self.stopped = True
        self._discard_all()
        respond(self.request, refusal.code, refusal.reason, refusal.headers)

    def _discard_all(self) -> None:
        """Remove every staged file once no thread writes to it any more."""
        discard = self.app.store.discard
        for part in self.parts:
            if part.synced is None:
                part.writer.abort(discard)
            else:
                part.synced.addBoth(_discard_after, discard, part.staged)
            part.hold.resumeProducing()
        self._current = None

    def _retry_after(self) -> dict[bytes, bytes]:
        return {b"retry-after": b"%d" % round(self.run.plan.retry_after)}


def _discard_after(result: object, discard: Any, staged: StagedFile) -> object:
    discard(staged)
    return result


def _mount_prefix(request: Request) -> str:
    """The raw path of the site's resources above this one (``/files``), or ``""``.

    The file URLs in the answer start with it, so they work where the server is
    mounted in a larger site.
    """
    consumed = request.path.split(b"/")[1 : 1 + mount_depth(request)]
    return "".join("/" + segment.decode("latin-1") for segment in consumed)


def respond_json(request: Request, code: int, document: object) -> None:
    """Finish ``request`` with a JSON answer, if it is still there."""
    if request._disconnected or request.finished:
        return
    body = json.dumps(document).encode("utf-8")
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"content-length", b"%d" % len(body))
    request.setHeader(b"cache-control", b"no-store")
    request.write(body)
    request.finish()
