"""GET and HEAD on a slot URL: serve a stored file safely to any client.

Twisted's ``static.File`` does the byte serving (Range, 206, 416, HEAD); this
module adds what a file share owes its users on top: the stored content type,
headers that stop a browser from running what it downloads, validators
(``ETag``, ``If-Range``) and a watchdog for stalled readers, which Twisted's
channel does not time out while a response is being produced.
"""

from __future__ import annotations

import math
import os
from typing import IO
from urllib.parse import quote

from attrs import define, field
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.web import http, static
from twisted.web.server import Request

from hmacfs_core.app import App
from hmacfs_core.paths import PathRefused, parse_upload_path
from hmacfs_core.storage import StoredFile
from hmacfs_core.web.request import request_state, tcp_transport
from hmacfs_core.web.routing import relative_raw_path, request_route

#: Types a browser may show in its own window; the rest is offered as a download.
INLINE_TYPE_PREFIXES = ("image/", "video/", "audio/")
INLINE_TYPES = frozenset({"text/plain"})

CONTENT_SECURITY_POLICY = b"default-src 'none'; sandbox"

#: Characters RFC 8187 allows unescaped in an ``ext-value``.
_ATTR_CHARS = "!#$&+.^_`|~-"


class StoredFileResource(static.File):
    """``static.File`` for one stored file, with its recorded type and chunking."""

    def __init__(self, stored: StoredFile, chunk_size: int) -> None:
        super().__init__(os.fsdecode(stored.path), defaultType=stored.content_type)
        # static.File declares ``type = None``, which mypy takes for its type.
        self.type = stored.content_type  # type: ignore[assignment]
        self.encoding = None
        self.chunk_size = chunk_size

    def openForReading(self) -> IO[bytes]:
        """Open without following a symlink put in place since the lookup."""
        fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        return os.fdopen(fd, "rb")

    producer: static.StaticProducer | None = None

    def makeProducer(
        self, request: Request, fileForReading: IO[bytes]
    ) -> static.StaticProducer:
        self.producer = super().makeProducer(request, fileForReading)
        self.producer.bufferSize = self.chunk_size
        return self.producer

    def read_chunk_size(self) -> int:
        """The bytes per read the producer really uses (the plan's, once set)."""
        if self.producer is not None:
            return int(self.producer.bufferSize)
        return self.chunk_size

    def set_chunk_size(self, size: int) -> None:
        """Change the bytes read per write, also for a download under way."""
        self.chunk_size = size
        if self.producer is not None:
            self.producer.bufferSize = size


def render_download(app: App, request: Request) -> bytes | int:
    """Answer a GET or HEAD for the stored file at the request's path."""
    route = request_route(request, app.config.server.base_path)
    try:
        upload_path = parse_upload_path(relative_raw_path(request), route.prefix)
    except PathRefused:
        return _not_found(request)

    stored = app.store.lookup(upload_path)
    if stored is None:
        return _not_found(request)

    _set_safety_headers(request, upload_path.segments[-1], stored.content_type)
    etag = _etag(stored)
    _drop_range_unless_still_valid(request, etag, stored.mtime)
    if request.setETag(etag) is http.CACHED:
        return b""
    if request.method == b"HEAD":
        # Headers only: no bytes move, so no transfer for the plugins to learn
        # from or a monitor to count.
        return StoredFileResource(stored, app.config.downloads.chunk_size).render(
            request
        )

    run = app.pipeline.start(
        request,
        "download",
        upload_path.text,
        stored.size,
        stored.content_type,
        route=route.name,
    )
    request_state(request).transfer_run = run
    resource = StoredFileResource(stored, run.plan.chunk_size)
    watchdog = StallWatchdog(request, run.plan.idle_timeout, app.reactor)
    run.set_chunk_size = resource.set_chunk_size
    run.set_idle_timeout = watchdog.set_timeout
    run.readers["chunk_size"] = resource.read_chunk_size
    run.readers["idle_timeout"] = lambda: watchdog.timeout
    run.apply()

    watchdog.start()
    return resource.render(request)


def content_disposition(name: str, content_type: str) -> bytes:
    """``inline`` for media and plain text, else ``attachment``, per RFC 6266.

    A name that is not plain printable ASCII also goes in ``filename*`` (UTF-8,
    percent-encoded), with an ASCII stand-in in ``filename`` for old clients.
    """
    media_type = content_type.split(";", 1)[0].strip().lower()
    inline = media_type.startswith(INLINE_TYPE_PREFIXES) or media_type in INLINE_TYPES
    disposition = "inline" if inline else "attachment"

    fallback = "".join(
        char if " " <= char <= "~" and char not in '"\\' else "_" for char in name
    )
    value = f'{disposition}; filename="{fallback}"'
    if fallback != name:
        value += f"; filename*=UTF-8''{quote(name, safe=_ATTR_CHARS)}"
    return value.encode("ascii")


@define
class StallWatchdog:
    """Close a download whose client has stopped reading for ``timeout``.

    Checks the bytes sent once per ``timeout`` instead of touching a timer per
    chunk, so a stall is noticed after between one and two timeouts.
    """

    request: Request
    timeout: float
    clock: IReactorTime
    _last_sent: int = 0
    _check_call: IDelayedCall | None = field(default=None)

    def start(self) -> None:
        self._last_sent = self.request.sentLength
        self._check_call = self.clock.callLater(self.timeout, self._check)
        self.request.notifyFinish().addBoth(self._stop)

    def set_timeout(self, timeout: float) -> None:
        """Use ``timeout`` from the next check on."""
        self.timeout = timeout

    def _check(self) -> None:
        sent = self.request.sentLength
        if sent == self._last_sent:
            self._check_call = None
            tcp_transport(self.request).abortConnection()
            return
        self._last_sent = sent
        self._check_call = self.clock.callLater(self.timeout, self._check)

    def _stop(self, result: object) -> None:
        if self._check_call is not None and self._check_call.active():
            self._check_call.cancel()
        self._check_call = None


def _set_safety_headers(request: Request, name: str, content_type: str) -> None:
    request.setHeader(b"x-content-type-options", b"nosniff")
    request.setHeader(b"content-security-policy", CONTENT_SECURITY_POLICY)
    request.setHeader(b"content-disposition", content_disposition(name, content_type))


def _etag(stored: StoredFile) -> bytes:
    if stored.sha256:
        return b'"' + stored.sha256[:32].encode("ascii") + b'"'
    return b'"%x-%x"' % (stored.size, int(stored.mtime * 1_000_000))


def _drop_range_unless_still_valid(request: Request, etag: bytes, mtime: float) -> None:
    """Honour ``If-Range``: a stale validator means the whole file, not a range."""
    validator = request.getHeader(b"if-range")
    if validator is None or request.getHeader(b"range") is None:
        return

    if validator.startswith((b'"', b"W/")):
        # RFC 9110 13.1.5: strong comparison, so a weak validator never matches.
        still_valid = validator == etag
    else:
        try:
            still_valid = http.stringToDatetime(validator) == math.ceil(mtime)
        except ValueError:
            still_valid = False
    if not still_valid:
        request.requestHeaders.removeHeader(b"range")


def _not_found(request: Request) -> bytes:
    request.setResponseCode(404)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    return b"not found\n"
