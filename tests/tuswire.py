"""A small tus client for the tests and the handoff benchmark.

tuspy proves that a client nobody here wrote works; this one does what tuspy
cannot be told to do: bind each request to a chosen source address, and cut a
PATCH off after a chosen number of bytes, the way a phone that leaves its
Wi-Fi loses its connection.
"""

from __future__ import annotations

import base64
import http.client
import socket
import struct
from collections.abc import Iterator
from typing import IO

from attrs import define
from serverproc import Response, exchange

TUS = {"Tus-Resumable": "1.0.0"}
OFFSET_STREAM = "application/offset+octet-stream"
SEND_BLOCK = 256 * 1024


def metadata(**values: str) -> str:
    """An ``Upload-Metadata`` header."""
    return ",".join(
        f"{key} {base64.b64encode(value.encode()).decode()}"
        for key, value in values.items()
    )


@define
class TusWire:
    """Requests to one server, each from ``source`` (an address on loopback)."""

    host: str
    port: int

    def request(
        self,
        method: str,
        target: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        source: str = "127.0.0.1",
    ) -> Response:
        return exchange(
            self.host, self.port, method, target, body, headers, source, timeout=60
        )

    def create(
        self,
        signed_target: str,
        length: int,
        tus_path: str = "/tus",
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        source: str = "127.0.0.1",
    ) -> Response:
        """POST ``<tus path><signed PUT target>`` with ``Upload-Length``."""
        sent = {**TUS, "Upload-Length": str(length), **(headers or {})}
        if body is not None:
            sent.setdefault("Content-Type", OFFSET_STREAM)
        return self.request("POST", tus_path + signed_target, body, sent, source)

    def offset(self, location: str, source: str = "127.0.0.1") -> int:
        answer = self.request("HEAD", location, headers=TUS, source=source)
        assert answer.status == 200, answer
        return int(answer.headers["upload-offset"])

    def patch(
        self,
        location: str,
        offset: int,
        body: bytes,
        headers: dict[str, str] | None = None,
        source: str = "127.0.0.1",
    ) -> Response:
        sent = {
            **TUS,
            "Upload-Offset": str(offset),
            "Content-Type": OFFSET_STREAM,
            **(headers or {}),
        }
        return self.request("PATCH", location, body, sent, source)

    def patch_cut(
        self,
        location: str,
        offset: int,
        stream: IO[bytes],
        length: int,
        cut_after: int,
        source: str,
        send_buffer: int | None = None,
    ) -> int:
        """Declare a PATCH of ``length`` bytes from ``stream``, send only
        ``cut_after`` of them, then reset the connection as a lost network does.

        What is still in the sockets' buffers at the reset is lost with it;
        ``send_buffer`` bounds the client's share (``SO_SNDBUF``).

        Returns the bytes the socket took.
        """
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if send_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
        sock.settimeout(60)
        sock.bind((source, 0))
        sock.connect((self.host, self.port))
        try:
            sock.sendall(
                (
                    f"PATCH {location} HTTP/1.1\r\nHost: x\r\n"
                    f"Tus-Resumable: 1.0.0\r\nUpload-Offset: {offset}\r\n"
                    f"Content-Type: {OFFSET_STREAM}\r\n"
                    f"Content-Length: {length}\r\n\r\n"
                ).encode()
            )
            sent = 0
            for block in read_blocks(stream, cut_after):
                sock.sendall(block)
                sent += len(block)
            return sent
        finally:
            # SO_LINGER 0: close with a reset, dropping what is still queued.
            linger = struct.pack("ii", 1, 0)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            sock.close()

    def patch_stream(
        self,
        location: str,
        offset: int,
        stream: IO[bytes],
        length: int,
        source: str,
    ) -> Response:
        """PATCH ``length`` bytes read from ``stream``, without holding them all."""
        connection = http.client.HTTPConnection(
            self.host, self.port, timeout=120, source_address=(source, 0)
        )
        try:
            connection.putrequest("PATCH", location, skip_accept_encoding=True)
            for name, value in {
                **TUS,
                "Upload-Offset": str(offset),
                "Content-Type": OFFSET_STREAM,
                "Content-Length": str(length),
            }.items():
                connection.putheader(name, value)
            connection.endheaders()
            for block in read_blocks(stream, length):
                connection.send(block)
            answer = connection.getresponse()
            return Response(
                status=answer.status,
                headers={k.lower(): v for k, v in answer.getheaders()},
                body=answer.read(),
            )
        finally:
            connection.close()


def read_blocks(stream: IO[bytes], count: int) -> Iterator[bytes]:
    """Up to ``count`` bytes of ``stream``, in blocks of ``SEND_BLOCK``."""
    left = count
    while left > 0:
        block = stream.read(min(SEND_BLOCK, left))
        if not block:
            return
        left -= len(block)
        yield block
