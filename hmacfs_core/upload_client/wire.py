"""HTTP on the wire: keep-alive connections, bodies read from the file as they
are sent, and answers read in full.

Every network failure leaves this module as :class:`Transient` (retry) or, for
an untrusted certificate, :class:`GaveUp`; what a status means is left to the
protocol that asked.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import select
import ssl
from collections.abc import Callable, Iterator
from typing import IO, Any

from attrs import define, frozen

from hmacfs_core.upload_client.failures import FileChanged, GaveUp, Transient
from hmacfs_core.upload_client.signed_url import Endpoint

#: Bytes read from the file and handed to the socket at a time.
SEND_BLOCK = 256 * 1024


@frozen
class Answer:
    """A response read in full (tus answers are small)."""

    status: int
    headers: dict[str, str]
    body: bytes
    phrase: str

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def reason(self) -> str:
        """The server's reason: its plain-text body, else the status phrase."""
        text = self.body.decode("utf-8", "replace").strip()
        if text and "\n" not in text and len(text) <= 200:
            return text
        return self.phrase

    @property
    def retry_after(self) -> float | None:
        value = self.header("retry-after")
        return float(value) if value is not None and value.isdigit() else None


@define
class FileSlice:
    """``length`` bytes of ``stream`` from ``offset``, read as they are sent."""

    stream: IO[bytes]
    offset: int
    length: int

    def blocks(self) -> Iterator[bytes]:
        self.stream.seek(self.offset)
        left = self.length
        while left > 0:
            block = self.stream.read(min(SEND_BLOCK, left))
            if not block:
                raise FileChanged("FILE got shorter while it was being uploaded")
            left -= len(block)
            yield block

    def digest(self, algorithm: str) -> str:
        """The slice's digest in base64, as ``Upload-Checksum`` carries it."""
        hasher = hashlib.new(algorithm)
        for block in self.blocks():
            hasher.update(block)
        return base64.b64encode(hasher.digest()).decode("ascii")


class HttpClient:
    """Keep-alive connections, one per endpoint, reopened after any failure.

    Every network failure becomes :class:`Transient`; statuses are left to
    the caller.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._connections: dict[Endpoint, http.client.HTTPConnection] = {}

    def exchange(
        self,
        endpoint: Endpoint,
        method: str,
        target: str,
        headers: dict[str, str],
        body: FileSlice | None = None,
        on_sent: Callable[[int], None] | None = None,
    ) -> Answer:
        """Send one request and read its answer.

        A server that answers before the end of the body (a refusal decided
        from the headers) is listened to at once: the rest is not sent.
        """
        connection = self._connection(endpoint)
        answered_early = False
        try:
            connection.putrequest(method, target, skip_accept_encoding=True)
            for name, value in headers.items():
                connection.putheader(name, value)
            connection.endheaders()
            if body is not None:
                answered_early = _send_body(connection, body, on_sent)
            response = connection.getresponse()
            content = response.read()
        except ssl.SSLCertVerificationError as error:
            # Not the network's fault: no retry will make the server trusted.
            self.close(endpoint)
            raise GaveUp(
                f"{endpoint.host}: certificate not trusted: {error.verify_message}"
            ) from None
        except (OSError, http.client.HTTPException) as error:
            self.close(endpoint)
            raise Transient(_describe(error)) from None

        if answered_early or response.will_close:
            self.close(endpoint)
        return Answer(
            status=response.status,
            headers={name.lower(): value for name, value in response.getheaders()},
            body=content,
            phrase=response.reason,
        )

    def close(self, endpoint: Endpoint | None = None) -> None:
        """Close the connection to ``endpoint``, or all of them."""
        endpoints = list(self._connections) if endpoint is None else [endpoint]
        for each in endpoints:
            connection = self._connections.pop(each, None)
            if connection is not None:
                connection.close()

    def _connection(self, endpoint: Endpoint) -> http.client.HTTPConnection:
        connection = self._connections.get(endpoint)
        # An idle connection with something to read has been closed by the
        # server: open a new one rather than fail the next request on it.
        if connection is not None and _readable(connection.sock):
            self.close(endpoint)
            connection = None
        if connection is None:
            connection = endpoint.connect(self.timeout)
            self._connections[endpoint] = connection
        return connection


def _send_body(
    connection: http.client.HTTPConnection,
    body: FileSlice,
    on_sent: Callable[[int], None] | None,
) -> bool:
    """Send ``body``; True if the server may have answered before its end.

    A plain socket with something to read holds the answer. A TLS socket may
    be readable with no answer in it (TLS 1.3 session tickets), so there the
    sign is only a send that fails: a server that refused from the headers
    stops reading after a while, and its answer is still there to read.
    """
    watch = not isinstance(connection.sock, ssl.SSLSocket)
    sent = 0
    for block in body.blocks():
        if watch and _readable(connection.sock):
            return True
        try:
            connection.send(block)
        except OSError:
            return True
        sent += len(block)
        if on_sent is not None:
            on_sent(sent)
    return False


def _readable(sock: Any) -> bool:
    if sock is None:
        return False
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


def _describe(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, http.client.RemoteDisconnected):
        return "the server closed the connection"
    text = getattr(error, "strerror", None) or str(error)
    return text or type(error).__name__
