"""tus 1.0 resumable uploads, authorized once by the slot's signed PUT URL.

The wire mapping, under ``[tus] path`` (``/tus/`` by default)::

    POST    /tus/<PUT URL path>?<signed query>   create; may carry the first bytes
    HEAD    /tus/<id>                            the offset to resume from
    PATCH   /tus/<id>                            append at the offset
    DELETE  /tus/<id>                            give up (termination)
    OPTIONS /tus/...                             what this server supports

A client holding a signed PUT URL ``https://host/<path>?v=...`` creates its
upload at ``https://host/tus/<path>?v=...`` with ``Upload-Length`` equal to the
signed size. The signature is checked exactly as a PUT's (v3 signs ``PUT``),
and the v2/token content type is the ``filetype`` (or ``type``) of
``Upload-Metadata``, ``application/octet-stream`` without one. A creation
answers 201 with ``Location: /tus/<id>``; the id (192 random bits) is then all
that authorizes the upload's later requests, whatever address they come from.

Decisions from the headers, before any body byte:

====  ==============================================================
412   ``Tus-Resumable`` missing or not ``1.0.0`` (with ``Tus-Version``)
400   a malformed tus header, or a path that is not safe
415   a body that is not ``application/offset+octet-stream``
403   creation: missing or wrong signature, expired v3 URL
413   ``Upload-Length`` over ``server.max_upload_size``, or a body that
      would run past it
409   creation: a file of another size exists; PATCH: ``Upload-Offset``
      is not the upload's offset
404   an unknown or expired upload id
423   another PATCH (or a DELETE) holds the upload
====  ==============================================================

A PATCH whose ``Upload-Checksum`` does not match answers 460, and the upload
is back where that PATCH started. The last byte publishes the file exactly as
a PUT would: atomically, never replacing a different file (409).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, Any

from attrs import define, field
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure
from twisted.web import server
from twisted.web.server import Request
from zope.interface import implementer

from hmacfs_core.app import App
from hmacfs_core.handoff import SwitchRefused
from hmacfs_core.partials import (
    ChecksumClaim,
    PartialFile,
    PartLock,
    RunningPatch,
    UploadLocked,
    UploadRecord,
    new_upload_id,
)
from hmacfs_core.paths import PathRefused, UploadPath, parse_upload_path
from hmacfs_core.pipeline import TransferRun
from hmacfs_core.resumable import ResumableUploads
from hmacfs_core.storage import DEFAULT_CONTENT_TYPE, PublishResult
from hmacfs_core.transfer import NetworkSwitch
from hmacfs_core.web.cors import apply_cors
from hmacfs_core.web.request import (
    StreamingRequest,
    UploadRefused,
    buffered_body,
    request_state,
)
from hmacfs_core.web.routing import mount_depth, relative_raw_path
from hmacfs_core.web.transfer_log import track_transfer
from hmacfs_core.web.tus_headers import (
    ALLOWED_METHODS,
    CHECKSUM_ALGORITHMS,
    CHECKSUM_MISMATCH,
    CORS_EXPOSED_HEADERS,
    CORS_REQUEST_HEADERS,
    EXTENSIONS,
    OFFSET_OCTET_STREAM,
    TUS_VERSION,
    check_version,
    decimal_header,
    http_date,
    metadata_content_type,
    parse_checksum,
    parse_metadata,
    refusal,
    tus_headers,
)
from hmacfs_core.web.upload import check_signed_upload, storage_refusal
from hmacfs_core.writer import StagedWriter

#: How long a client asked to come back after a failure on our side waits.
RETRY_AFTER_SECONDS = 10

#: Status phrases Twisted does not know.
STATUS_PHRASES = {423: b"Locked", CHECKSUM_MISMATCH: b"Checksum Mismatch"}

#: How long a HEAD waits for a PATCH still holding its upload to let go. A
#: client asks for the offset only once it believes its last PATCH is over: a
#: PATCH still running then is usually one whose connection was just reset,
#: and the answer should count what it keeps.
HEAD_SETTLE_SECONDS = 0.5

#: Bytes per step when feeding a body Twisted has already buffered.
BUFFERED_READ_SIZE = 64 * 1024


class TusResource:
    """Everything under ``[tus] path``; reached through the slot resource's
    routing, which hands over POST and PATCH bodies as they stream."""

    def __init__(self, app: App) -> None:
        self.app = app

    @property
    def uploads(self) -> ResumableUploads:
        return self.app.tus

    # -- when the headers are in ------------------------------------------

    def begin_upload(self, request: Request) -> TusSink:
        """Authorize a POST or PATCH from its headers and take its body.

        :raises UploadRefused: with tus's answer, sent before the body.
        """
        track_transfer(self.app, request)
        self._cors(request)
        if self.app.draining:
            raise refusal(503, "shutting down", {b"retry-after": b"10"})
        check_version(request)
        if request.method == b"POST":
            return self._begin_creation(request)
        if request.method == b"PATCH":
            return self._begin_patch(request)
        raise refusal(405, "method not allowed", {b"allow": ALLOWED_METHODS})

    def _begin_creation(self, request: Request) -> TusBody:
        for unsupported in (b"upload-defer-length", b"upload-concat"):
            if request.getHeader(unsupported) is not None:
                raise refusal(400, f"{unsupported.decode()} is not supported")
        length = decimal_header(request, b"upload-length")
        raw_metadata = request.getHeader(b"upload-metadata")
        signed_type = metadata_content_type(parse_metadata(raw_metadata))
        upload_path = self._target(request)
        with_body = _has_offset_body(request)
        try:
            check_signed_upload(self.app, request, upload_path, length, signed_type)
        except UploadRefused as refused:
            raise refusal(refused.code, refused.reason) from None
        if with_body and (request_state(request).body_length or 0) > length:
            raise refusal(413, "body longer than Upload-Length")
        claim = parse_checksum(request) if with_body else None

        now = self.app.reactor.seconds()
        record = UploadRecord(
            id=new_upload_id(),
            path=upload_path.text,
            length=length,
            content_type=signed_type or DEFAULT_CONTENT_TYPE,
            metadata=(raw_metadata or b"").decode("latin-1"),
            created=now,
            last_activity=now,
        )
        store = self.uploads.store
        try:
            store.create(record)
            lock = store.lock(record.id)
        except OSError as error:
            raise _storage_failure(error) from None

        try:
            append = Append.open(
                self.app, request, record, lock, claim, transfer=with_body, created=True
            )
        except Exception:
            lock.release()
            store.remove(record.id)
            raise
        return TusBody(append, answer_created)

    def _begin_patch(self, request: Request) -> TusSink:
        upload_id = self._upload_id(request)
        record = self._live_record(upload_id)
        if request.getHeader(b"content-type") != OFFSET_OCTET_STREAM:
            raise refusal(415, f"Content-Type must be {OFFSET_OCTET_STREAM.decode()}")
        offset = decimal_header(request, b"upload-offset")
        claim = parse_checksum(request)
        if record.completed:
            if offset != record.length or request_state(request).body_length:
                raise refusal(409, "upload already complete")
            return CompletedUpload(self.app, request, record)

        peer = self.app.client_address(request)
        try:
            switch = self.app.handoff.check(record, peer)
        except SwitchRefused:
            raise refusal(
                403, "this upload continues only from the address of its last PATCH"
            ) from None

        lock = self._lock(record, peer)
        try:
            record = self._live_record(record.id)
            if offset != record.offset:
                raise refusal(409, "Upload-Offset is not the upload's offset")
            if offset + (request_state(request).body_length or 0) > record.length:
                raise refusal(413, "body runs past Upload-Length")
            append = Append.open(self.app, request, record, lock, claim, switch=switch)
        except Exception:
            lock.release()
            raise
        return TusBody(append, answer_patched)

    def _target(self, request: Request) -> UploadPath:
        """The upload path of a creation: the PUT URL's path after the tus path."""
        config = self.app.config
        raw = relative_raw_path(request)
        rest = raw[len(config.tus.path.encode("utf-8")) - 1 :]
        try:
            upload_path = parse_upload_path(rest, config.server.base_path)
            self.app.store.locate(upload_path)
        except PathRefused as refused:
            raise refusal(400, f"invalid path: {refused.reason}") from None
        return upload_path

    def _upload_id(self, request: Request) -> str:
        tus_path = self.app.config.tus.path.encode("utf-8")
        upload_id = relative_raw_path(request)[len(tus_path) :].decode("latin-1")
        # The id authorizes the upload: the log shows only enough to tell
        # uploads apart.
        log_path = tus_path + upload_id[:8].encode("latin-1") + b"..."
        request_state(request).log_path = log_path
        return upload_id

    def _live_record(self, upload_id: str) -> UploadRecord:
        """The upload's record, unless it is unknown or expired.

        :raises UploadRefused: 404.
        """
        record = self.uploads.store.load(upload_id)
        if record is None or self.uploads.is_expired(record):
            raise refusal(404, "no such upload")
        return record

    def _lock(self, record: UploadRecord, peer: str) -> PartLock:
        """Hold the upload for this request.

        A PATCH from the upload's old address may still hold it: a phone that
        left its network sends no reset. ``[handoff] pause_transfers_on_switch``
        stops that PATCH, and this one is told to retry in a second.

        :raises UploadRefused: 423 while another request holds it.
        """
        try:
            return self.uploads.store.lock(record.id)
        except UploadLocked:
            if self.app.handoff.take_over(record, peer):
                raise refusal(
                    423,
                    "the upload's previous connection was stopped; retry",
                    {b"retry-after": b"1"},
                ) from None
            raise refusal(423, "another request holds this upload") from None
        except FileNotFoundError:
            # Its part was just published or removed by another request.
            raise refusal(423, "upload is being finished") from None

    # -- when the request is complete -------------------------------------

    def render(self, request: Request) -> bytes | int:
        """Answer a tus request (a streamed POST or PATCH once its body is in)."""
        request.setHeader(b"tus-resumable", TUS_VERSION)
        self._cors(request)
        if request.method == b"OPTIONS":
            return self._render_options(request)

        body = getattr(request, "upload_sink", None)
        if isinstance(body, TusBody | CompletedUpload):  # streamed, now complete
            body.complete()
            return server.NOT_DONE_YET
        if self.app.draining and request not in self.app.active_transfers:
            return answer(request, 503, "shutting down", {b"retry-after": b"10"})
        if request.method in (b"POST", b"PATCH", b"PUT"):
            return self._render_buffered(request)

        try:
            check_version(request)
            if request.method == b"HEAD":
                return self._render_head(request)
            if request.method == b"DELETE":
                return self._render_delete(request)
            raise refusal(405, "method not allowed", {b"allow": ALLOWED_METHODS})
        except UploadRefused as refused:
            return answer(request, refused.code, refused.reason, refused.headers)

    def _render_options(self, request: Request) -> bytes:
        request.setResponseCode(204)
        headers = {
            b"tus-version": TUS_VERSION,
            b"tus-extension": EXTENSIONS,
            b"tus-max-size": b"%d" % self.app.config.server.max_upload_size,
            b"tus-checksum-algorithm": ",".join(CHECKSUM_ALGORITHMS).encode(),
            b"allow": ALLOWED_METHODS,
        }
        if request.responseHeaders.hasHeader(b"access-control-allow-origin"):
            headers[b"access-control-allow-methods"] = ALLOWED_METHODS
            headers[b"access-control-allow-headers"] = CORS_REQUEST_HEADERS
            headers[b"access-control-max-age"] = b"86400"
        for name, value in headers.items():
            request.setHeader(name, value)
        return b""

    def _render_head(self, request: Request) -> int:
        upload_id = self._upload_id(request)
        self._live_record(upload_id)
        running = self.uploads.running.get(upload_id)
        settled = (
            running.settled(self.app.reactor, HEAD_SETTLE_SECONDS)
            if running is not None
            else succeed(None)
        )

        def report(_: object) -> None:
            try:
                record = self._live_record(upload_id)
            except UploadRefused as refused:
                answer(request, refused.code, refused.reason, refused.headers)
                return
            headers = {
                b"upload-offset": b"%d"
                % (record.length if record.completed else record.offset),
                b"upload-length": b"%d" % record.length,
                b"upload-expires": http_date(self._expires(record)),
                b"cache-control": b"no-store",
            }
            if record.metadata:
                headers[b"upload-metadata"] = record.metadata.encode("latin-1")
            answer(request, 200, "", headers)

        settled.addCallback(report)
        return server.NOT_DONE_YET

    def _render_delete(self, request: Request) -> int:
        record = self._live_record(self._upload_id(request))
        store = self.uploads.store
        if record.completed:
            store.remove(record.id)
        else:
            lock = self._lock(record, self.app.client_address(request))
            try:
                store.remove(record.id)
            finally:
                lock.release()
        self.uploads.forget(record.id)
        return answer(request, 204, "")

    def _render_buffered(self, request: Request) -> int:
        """A POST or PATCH whose body Twisted has already buffered.

        Only when a host site mounts hmacfs without ``StreamingRequest``: the
        body is then fed from Twisted's buffer as if it were arriving.
        """
        declared = request.getHeader(b"content-length")
        state = request_state(request)
        state.body_length = int(declared) if declared is not None else None
        state.received_bytes = state.body_length or 0
        try:
            body = self.begin_upload(request)
        except UploadRefused as refused:
            return answer(request, refused.code, refused.reason, refused.headers)
        BufferedBody(buffered_body(request), body).start()
        return server.NOT_DONE_YET

    def _expires(self, record: UploadRecord) -> float:
        return record.expires(self.app.config.tus.expiration)

    def _cors(self, request: Request) -> None:
        apply_cors(self.app.config.downloads.allowed_origins, request)
        if request.responseHeaders.hasHeader(b"access-control-allow-origin"):
            request.setHeader(b"access-control-expose-headers", CORS_EXPOSED_HEADERS)


@define
class Append:
    """One body appended to an upload's part, from headers to release.

    Holds the upload's lock throughout; streams through a
    :class:`StagedWriter` (bounded memory, backpressure), checkpointing as the
    part says; decides what a cut keeps; publishes on the last byte.
    """

    app: App
    request: Request
    record: UploadRecord
    lock: PartLock
    part: PartialFile
    run: TransferRun | None
    created: bool
    peer: str
    writer: StagedWriter = field(init=False)
    received: int = field(default=0, init=False)
    completing: bool = field(default=False, init=False)
    closing: bool = field(default=False, init=False)
    _settled: list[Deferred[None]] = field(factory=list, init=False)

    @classmethod
    def open(
        cls,
        app: App,
        request: Request,
        record: UploadRecord,
        lock: PartLock,
        claim: ChecksumClaim | None,
        transfer: bool = True,
        created: bool = False,
        switch: NetworkSwitch | None = None,
    ) -> Append:
        """Start appending at the recorded offset; the caller holds ``lock``.

        :param transfer: whether the body is a transfer for the pipeline (a
            creation without data is not).
        :raises UploadRefused: 507/500 when the part cannot be opened.
        """
        uploads = app.tus
        peer = app.client_address(request)
        if transfer:
            record.note_attempt(peer, app.reactor.seconds())
        record.running = RunningPatch(record.offset, claim.algorithm if claim else None)
        interval = None if claim else app.config.tus.checkpoint_interval
        try:
            part = uploads.store.open_part(
                record, interval, claim, uploads.digest_at(record)
            )
        except OSError as error:
            raise _storage_failure(error) from None

        run = None
        if transfer:
            run = app.pipeline.start(
                request,
                "upload",
                record.path,
                record.length,
                record.content_type,
                route="tus",
            )
            request_state(request).transfer_run = run
        append = cls(app, request, record, lock, part, run, created, peer)
        uploads.running[record.id] = append
        if switch is not None and run is not None:
            app.handoff.notify(run.transfer, switch)
            run.apply_changes()
        return append

    def __attrs_post_init__(self) -> None:
        buffer_size = (
            self.run.plan.write_buffer_size
            if self.run is not None
            else self.app.config.uploads.write_buffer_size
        )
        self.writer = StagedWriter(
            staged=self.part,
            buffer_size=buffer_size,
            run_in_thread=self.app.run_in_thread,
            producer=self.request.channel,
            on_error=self._write_failed,
        )
        if self.run is not None:
            channel = self.request.channel
            self.run.set_writer_buffer = self._set_write_buffer
            self.run.set_idle_timeout = channel.setTimeout
            self.run.readers["write_buffer_size"] = lambda: self.writer.buffer_size
            self.run.readers["idle_timeout"] = lambda: channel.timeOut
            self.run.apply()

    @property
    def room(self) -> int:
        """Bytes the body may still carry before it runs past ``Upload-Length``."""
        return self.record.length - self.part.start - self.received

    def _set_write_buffer(self, size: int) -> None:
        self.writer.buffer_size = size

    def write(self, chunk: bytes) -> None:
        if self.closing or self.completing:
            return
        if len(chunk) > self.room:
            # Only a chunked body can get here: a declared length was checked.
            self._fail_mid_body(refusal(413, "body runs past Upload-Length"))
            return
        self.received += len(chunk)
        self.writer.write(chunk)

    def cut(self) -> None:
        """The connection was lost before the body's end."""
        if self.completing or self.closing:
            return
        self.closing = True
        policy = self.app.tus.cut_policy(self.record, self.peer)
        # "keep" flushes what arrived, fsyncs it and persists the offset.
        settled = self._discard() if policy == "discard" else self._keep()
        settled.addErrback(self._log_failure, "Keeping a cut PATCH failed")
        settled.addBoth(lambda _: self.release())

    def finish(self) -> Deferred[tuple[int, str]]:
        """The body is complete: sync, verify, publish if it was the last byte.

        Fires with the status and reason to answer (204/201, 409 or 460);
        the upload is released before it fires.
        """
        self.completing = True
        finished = self.writer.finish()
        finished.addCallback(lambda _: self._after_sync())
        return finished.addBoth(self._released)

    def _after_sync(self) -> Deferred[tuple[int, str]] | tuple[int, str]:
        if self.part.checksum_failed:
            return CHECKSUM_MISMATCH, "checksum mismatch"
        if self.record.offset < self.record.length:
            return 204, ""
        return self._publish()

    def _publish(self) -> Deferred[tuple[int, str]]:
        upload_path = UploadPath.from_text(self.record.path)
        store = self.app.store
        hashed = self.app.run_in_thread(self.part.ensure_digest)

        def link(_: None) -> PublishResult:
            return store.publish(self.part, upload_path, self.record.content_type)

        def settle(result: PublishResult) -> Deferred[tuple[int, str]]:
            uploads = self.app.tus
            if result is PublishResult.CONFLICT:
                uploads.forget(self.record.id)
                return self.app.run_in_thread(
                    uploads.store.remove, self.record.id
                ).addCallback(lambda _: (409, "file already exists"))

            def mark_completed() -> None:
                if result is PublishResult.CREATED:
                    store.sync_directories(upload_path)
                self.record.completed = True
                uploads.store.save(self.record)

            uploads.forget(self.record.id)
            return self.app.run_in_thread(mark_completed).addCallback(
                lambda _: (204, "")
            )

        return hashed.addCallback(link).addCallback(settle)

    def _keep(self) -> Deferred[None]:
        return self.writer.finish().addCallback(lambda _: None)

    def _discard(self) -> Deferred[None]:
        """Drop this body: back to the offset it started at."""
        idle = self.writer.abort(lambda _: None)
        return idle.addCallback(lambda _: self.app.run_in_thread(self.part.rollback))

    def _fail_mid_body(self, refused: UploadRefused) -> None:
        """Answer now, drop this body, and stop reading the rest."""
        self.closing = True
        if isinstance(self.request, StreamingRequest):
            self.request.refuse_mid_body(refused)
        else:
            # A body Twisted already buffered (a host site's plain Request) is
            # all in: answer it as usual.
            answer(self.request, refused.code, refused.reason, refused.headers)
        settled = self._discard()
        settled.addErrback(self._log_failure, "Discarding a PATCH failed")
        settled.addBoth(lambda _: self.release())

    def _write_failed(self, failure: Failure) -> None:
        self.app.log.error(
            "Writing a partial upload failed: {error}",
            error=failure.getErrorMessage(),
        )
        if self.completing or self.closing:
            return
        refused = storage_refusal(failure.value)
        self._fail_mid_body(
            refusal(refused.code, refused.reason, {b"retry-after": b"10"})
        )

    def _released(self, result: Any) -> Any:
        self.release()
        return result

    def release(self) -> None:
        """Let go of the upload and wake whoever waits for it to settle."""
        uploads = self.app.tus
        if uploads.running.get(self.record.id) is self:
            del uploads.running[self.record.id]
        record = self.record
        if self.part.digest_valid and record.offset < record.length:
            uploads.remember_digest(record.id, record.offset, self.part.digest)
        self.lock.release()
        waiting, self._settled = self._settled, []
        for waiter in waiting:
            if not waiter.called:
                waiter.callback(None)

    def settled(self, clock: Any, timeout: float) -> Deferred[None]:
        """Fires once this append has let go of the upload, or after
        ``timeout`` seconds if it has not."""
        if self.lock.fd is None:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._settled.append(waiter)
        return waiter.addTimeout(
            timeout, clock, onTimeoutCancel=lambda result, timeout: None
        )

    def _log_failure(self, failure: Failure, message: str) -> None:
        self.app.log.failure(message, failure=failure)


Answerer = Callable[[Request, Append, int, str], None]


def answer_patched(request: Request, append: Append, code: int, reason: str) -> None:
    headers = {
        b"upload-offset": b"%d" % append.record.offset,
        b"upload-expires": http_date(_expires(append)),
    }
    answer(request, code, reason, headers if code == 204 else {})


def answer_created(request: Request, append: Append, code: int, reason: str) -> None:
    if code not in (201, 204):
        if code == CHECKSUM_MISMATCH:
            # The client never learns the id of an upload whose first bytes
            # were refused: nothing of it may stay.
            append.app.tus.store.remove(append.record.id)
        answer(request, code, reason)
        return
    tus_path = append.app.config.tus.path.encode("utf-8")
    headers = {
        b"location": _mount_point(request) + tus_path + append.record.id.encode(),
        b"upload-offset": b"%d" % append.record.offset,
        b"upload-expires": http_date(_expires(append)),
    }
    answer(request, 201, "created", headers)


@define
class TusBody:
    """The :class:`UploadSink` of a tus POST or PATCH."""

    append: Append
    answerer: Answerer

    def write(self, chunk: bytes) -> None:
        self.append.write(chunk)

    def abort(self, reason: Failure) -> None:
        self.append.cut()

    def complete(self) -> None:
        append = self.append
        if append.closing:
            return
        finished = append.finish()
        if append.created:
            finished.addCallback(self._made_durable)
        finished.addCallbacks(self._answer, self._failed)

    def _made_durable(self, result: tuple[int, str]) -> Any:
        """A new upload's directory entries are synced before it is announced."""
        append = self.append
        if result[0] != 204 or append.record.completed:
            return result
        synced = append.app.run_in_thread(
            append.app.tus.store.make_durable, append.record
        )
        return synced.addCallback(lambda _: result)

    def _answer(self, result: tuple[int, str]) -> None:
        self.answerer(self.append.request, self.append, *result)

    def _failed(self, failure: Failure) -> None:
        if failure.check(OSError):
            refused = storage_refusal(failure.value)
        else:
            self.append.app.log.failure("tus upload failed", failure=failure)
            refused = UploadRefused(500, "internal error")
        answer(
            self.append.request,
            refused.code,
            refused.reason,
            {b"retry-after": b"%d" % RETRY_AFTER_SECONDS},
        )


@define
class CompletedUpload:
    """An empty PATCH at the end of an upload already published: 204 again.

    A client that lost the last answer may resend it after a network switch.
    """

    app: App
    request: Request
    record: UploadRecord

    def write(self, chunk: bytes) -> None:
        pass

    def abort(self, reason: Failure) -> None:
        pass

    def complete(self) -> None:
        headers = {
            b"upload-offset": b"%d" % self.record.length,
            b"upload-expires": http_date(
                self.record.expires(self.app.config.tus.expiration)
            ),
        }
        answer(self.request, 204, "", headers)


@implementer(IPushProducer)
@define
class BufferedBody:
    """Feed a body Twisted buffered to a tus body, pausing as the disk asks."""

    content: IO[bytes]
    body: TusSink
    paused: bool = False
    done: bool = False

    def start(self) -> None:
        self.content.seek(0)
        if isinstance(self.body, TusBody):
            self.body.append.writer.producer = self
        self.resumeProducing()

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        while not self.paused and not self.done:
            block = self.content.read(BUFFERED_READ_SIZE)
            if not block:
                self.done = True
                self.body.complete()
                return
            self.body.write(block)

    def stopProducing(self) -> None:
        self.done = True


#: What takes the body of a tus POST or PATCH.
TusSink = TusBody | CompletedUpload


def answer(
    request: Request, code: int, reason: str, headers: dict[bytes, bytes] | None = None
) -> int:
    """Finish ``request`` with a tus answer, if it is still there.

    Returns ``NOT_DONE_YET`` so that ``render`` can return it.
    """
    if request._disconnected or request.finished:
        return server.NOT_DONE_YET
    request.setResponseCode(code, STATUS_PHRASES.get(code))
    for name, value in tus_headers(headers).items():
        request.setHeader(name, value)
    if code == 204 or request.method == b"HEAD":
        request.defaultContentType = None
    else:
        body = reason.encode("utf-8") + b"\n"
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"content-length", b"%d" % len(body))
        request.write(body)
    request.finish()
    return server.NOT_DONE_YET


def _has_offset_body(request: Request) -> bool:
    """Whether a creation carries data (creation-with-upload)."""
    if request.getHeader(b"content-type") == OFFSET_OCTET_STREAM:
        return True
    if request_state(request).body_length:
        raise refusal(415, f"Content-Type must be {OFFSET_OCTET_STREAM.decode()}")
    return False


def _mount_point(request: Request) -> bytes:
    """The raw path of the resource hmacfs is mounted at (empty at the root)."""
    return b"/".join(request.path.split(b"/")[: mount_depth(request) + 1])


def _expires(append: Append) -> float:
    return append.record.expires(append.app.config.tus.expiration)


def _storage_failure(error: OSError) -> UploadRefused:
    refused = storage_refusal(error)
    return refusal(
        refused.code, refused.reason, {b"retry-after": b"%d" % RETRY_AFTER_SECONDS}
    )
