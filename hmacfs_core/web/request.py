"""The streaming ``Request``: decide from the headers, then stream the body.

Twisted's own ``Request`` buffers the whole body (in memory or a temp file) and
calls the resource only after the last byte: no way to refuse early, and a second
copy of every upload. This subclass resolves the resource as soon as the headers
are in (``gotLength``). A resource that provides :class:`IUploadTarget` then
either refuses the upload, and the refusal is sent before the client sends its
body (``Expect: 100-continue`` included), or hands back a sink that the body
chunks go to as they arrive.

Every other request behaves exactly like Twisted's, so a host site can use this
class for all its resources.
"""

from __future__ import annotations

import time
from io import BytesIO
from typing import IO, TYPE_CHECKING, Protocol, cast, runtime_checkable
from urllib.parse import parse_qs, unquote_to_bytes

from twisted.internet.interfaces import IDelayedCall, ITCPTransport
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import server
from twisted.web.resource import IResource

if TYPE_CHECKING:
    from hmacfs_core.pipeline import TransferRun
    from hmacfs_core.web.routing import Route

#: How long a refused request may keep sending its body before the connection is
#: aborted; reading and dropping it meanwhile lets the client see the answer
#: instead of a reset.
REFUSAL_LINGER_SECONDS = 5.0


class UploadRefused(Exception):
    """An upload refused from its headers: status code and a short reason."""

    def __init__(
        self, code: int, reason: str, headers: dict[bytes, bytes] | None = None
    ):
        super().__init__(code, reason)
        self.code = code
        self.reason = reason
        self.headers = headers or {}


class UploadSink(Protocol):
    """Where the body of an accepted upload goes, chunk by chunk."""

    def write(self, chunk: bytes) -> None:
        """Take one body chunk (called per chunk: keep it cheap)."""

    def abort(self, reason: Failure) -> None:
        """The connection was lost before the body was complete."""


@runtime_checkable
class IUploadTarget(Protocol):
    """A resource that takes uploads streamed by :class:`StreamingRequest`."""

    def begin_upload(self, request: StreamingRequest) -> UploadSink | None:
        """Authorize from the headers alone; raise :class:`UploadRefused`.

        Return None for a request with a body that is not an upload: Twisted
        then buffers it as usual.
        """


class StreamingRequest(server.Request):
    """A ``Request`` that streams upload bodies and refuses before the body.

    :ivar upload_sink: the sink of an accepted streamed upload, else None.
    :ivar refused: the refusal sent from the headers, else None.
    :ivar started: monotonic time at which the headers were complete.
    """

    _log = Logger()

    # Twisted's Request declares these with a bare ``None`` default, which mypy
    # takes for their type; its docstring gives the real ones.
    args: dict[bytes, list[bytes]]  # type: ignore[assignment]
    content: IO[bytes] | None  # type: ignore[assignment]

    upload_sink: UploadSink | None = None
    body_length: int | None = None
    received_bytes: int = 0
    transfer_run: TransferRun | None = None
    refused: UploadRefused | None = None
    started: float = 0.0
    _linger: IDelayedCall | None = None

    def gotLength(self, length: int | None) -> None:
        self.started = time.monotonic()
        self.body_length = length
        self._parse_request_line()

        target = self._find_upload_target()
        if target is None:
            super().gotLength(length)
            return

        try:
            self.upload_sink = target.begin_upload(self)
        except UploadRefused as refusal:
            self.content = BytesIO()
            self._refuse_before_body(refusal)
            return
        except Exception:
            # A bug must cost this request a 500, not the connection an abort.
            self._log.failure("Deciding on an upload failed")
            self.content = BytesIO()
            self._refuse_before_body(UploadRefused(500, "internal error"))
            return

        if self.upload_sink is None:
            # Not an upload (a small admin POST, say): Twisted buffers it.
            super().gotLength(length)
        else:
            self.content = BytesIO()

    def handleContentChunk(self, data: bytes) -> None:
        self.received_bytes += len(data)
        if self.upload_sink is not None:
            self.upload_sink.write(data)
        elif self.refused is None:
            super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self.refused is None:
            super().requestReceived(command, path, version)
            return

        # The refusal went out when the headers arrived; the client sent the body
        # anyway and it has been dropped. Nothing is left to render.
        self._cancel_linger()
        if not self.finished and not self._disconnected:
            self.finish()

    def connectionLost(self, reason: Failure) -> None:
        self._cancel_linger()
        sink, self.upload_sink = self.upload_sink, None
        if sink is not None and not self.finished:
            sink.abort(reason)
        super().connectionLost(reason)

    def refuse_mid_body(self, refusal: UploadRefused) -> None:
        """Answer with ``refusal`` while the body is still arriving, then close.

        Used when the store fails under an accepted upload (a full disk answers
        507): the rest of the body would be thrown away anyway.
        """
        self.upload_sink = None
        if self.startedWriting or self._disconnected:
            tcp_transport(self).abortConnection()
            return
        self._refuse_before_body(refusal)

    def _parse_request_line(self) -> None:
        """Set what ``requestReceived`` would set, from the channel's state.

        At ``gotLength`` time the request line is only known to the channel, in
        attributes Twisted keeps private; pyproject pins the tested range.
        """
        channel = self.channel
        self.method = channel._command
        self.uri = channel._path
        self.clientproto = channel._version

        self.path, _, query = self.uri.partition(b"?")
        self.args = _parse_query(query) if query else {}

    def _find_upload_target(self) -> IUploadTarget | None:
        """Traverse the site now, as ``process`` will later, to find the target."""
        site = getattr(self.channel, "site", None)
        if site is None or self.method not in (b"PUT", b"POST", b"PATCH"):
            return None

        self.prepath = []
        self.postpath = list(map(unquote_to_bytes, self.path[1:].split(b"/")))
        resource: IResource = site.getResourceFor(self)
        return resource if isinstance(resource, IUploadTarget) else None

    def _refuse_before_body(self, refusal: UploadRefused) -> None:
        """Send the refusal now and drop whatever body follows."""
        self.refused = refusal
        self.upload_sink = None

        # No "100 Continue": the client must not send the body at all.
        self.requestHeaders.removeHeader(b"expect")
        self.channel.persistent = False

        body = refusal.reason.encode("utf-8") + b"\n"
        self.setResponseCode(refusal.code)
        self.setHeader(b"content-type", b"text/plain; charset=utf-8")
        self.setHeader(b"content-length", b"%d" % len(body))
        self.setHeader(b"connection", b"close")
        for name, value in refusal.headers.items():
            self.setHeader(name, value)
        self.write(body)

        # Half-close: the client reads the answer and stops sending; a client that
        # keeps sending is cut off after a short linger.
        transport = tcp_transport(self)
        transport.loseWriteConnection()
        self._linger = self.channel.callLater(
            REFUSAL_LINGER_SECONDS, transport.abortConnection
        )

    def _cancel_linger(self) -> None:
        if self._linger is not None and self._linger.active():
            self._linger.cancel()
        self._linger = None


class RequestState(Protocol):
    """What hmacfs keeps on a request, whatever the request's class.

    :class:`StreamingRequest` declares these attributes; a host site's own
    Twisted ``Request`` gets each one only when hmacfs sets it, so code that may
    run before then reads it with ``getattr`` and a default.

    :ivar route: the route the resource chose (see ``request_route``).
    :ivar body_length: the declared ``Content-Length``, None without one.
    :ivar received_bytes: body bytes received so far.
    :ivar transfer_run: the pipeline's run of this transfer, if it is one.
    :ivar log_path: the path to log instead of one that holds a capability.
    """

    route: Route
    body_length: int | None
    received_bytes: int
    transfer_run: TransferRun | None
    log_path: bytes


def request_state(request: server.Request) -> RequestState:
    """``request``, typed with the attributes hmacfs sets on it."""
    return cast(RequestState, request)


def query_args(request: server.Request) -> dict[bytes, list[bytes]]:
    """The parsed query string of ``request`` (Twisted's ``args``).

    Twisted types ``args`` as None, which it is only until the request line has
    been read; a resource never sees it so.
    """
    return cast(dict[bytes, list[bytes]], request.args)


def buffered_body(request: server.Request) -> IO[bytes]:
    """The body Twisted buffered for ``request`` (its ``content``).

    Twisted types ``content`` as None, which it is only until the headers are
    in; by the time a resource renders, the whole body is there.
    """
    return cast(IO[bytes], request.content)


def tcp_transport(request: server.Request) -> ITCPTransport:
    """The connection under ``request``, which can half-close and abort.

    Twisted types the channel's transport as a bare ``ITransport`` (None until
    it connects); an HTTP channel's is a TCP transport, or a TLS wrapper that
    hands what it lacks on to the TCP transport under it.
    """
    return cast(ITCPTransport, request.channel.transport)


def _parse_query(query: bytes) -> dict[bytes, list[bytes]]:
    """The query's parameters as bytes, whatever bytes its escapes decode to.

    ``parse_qs`` given bytes decodes them as ASCII text and encodes the result
    back as ASCII, so one escape such as ``%C3%A9`` would raise; as latin-1 text
    every byte maps to one character and back.
    """
    parsed = parse_qs(
        query.decode("latin-1"), keep_blank_values=True, encoding="latin-1"
    )
    return {
        name.encode("latin-1"): [value.encode("latin-1") for value in values]
        for name, values in parsed.items()
    }
