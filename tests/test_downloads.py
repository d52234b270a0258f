"""GET and HEAD of stored files, as Conversations, browsers and caches use them."""

from __future__ import annotations

import os
import socket
import time

import pytest
from serverproc import RunningServer

from hmacfs_core.paths import encode_path

BODY = bytes(range(256)) * 40  # 10240 bytes


@pytest.fixture(scope="module")
def stored(server: RunningServer) -> str:
    path = f"{os.urandom(6).hex()}/clip.mp4"
    assert server.put(path, BODY, content_type="video/mp4").status == 201
    return path


def test_head_gives_the_length_and_type_without_a_body(
    server: RunningServer, stored: str
) -> None:
    answer = server.request("HEAD", f"/{stored}")

    assert answer.status == 200
    assert answer.header("content-length") == str(len(BODY))
    assert answer.header("content-type") == "video/mp4"
    assert answer.header("accept-ranges") == "bytes"
    assert answer.body == b""


def test_a_download_carries_the_safety_headers(
    server: RunningServer, stored: str
) -> None:
    answer = server.get(stored)

    assert answer.header("x-content-type-options") == "nosniff"
    assert answer.header("content-security-policy") == "default-src 'none'; sandbox"
    assert answer.header("content-disposition") == 'inline; filename="clip.mp4"'


@pytest.mark.parametrize(
    ("ranges", "status", "content_range", "piece"),
    [
        ("bytes=0-0", 206, "bytes 0-0/10240", BODY[:1]),
        ("bytes=100-199", 206, "bytes 100-199/10240", BODY[100:200]),
        ("bytes=10000-", 206, "bytes 10000-10239/10240", BODY[10000:]),
        ("bytes=-40", 206, "bytes 10200-10239/10240", BODY[-40:]),
        ("bytes=10000-99999", 206, "bytes 10000-10239/10240", BODY[10000:]),
        ("bytes=10240-", 416, "bytes */10240", b""),
    ],
)
def test_single_ranges_are_served_as_conversations_resumes(
    server: RunningServer,
    stored: str,
    ranges: str,
    status: int,
    content_range: str,
    piece: bytes,
) -> None:
    answer = server.get(stored, {"Range": ranges})

    assert answer.status == status
    assert answer.header("content-range") == content_range
    if status == 206:
        assert answer.body == piece


def test_an_unchanged_file_is_revalidated_with_304(
    server: RunningServer, stored: str
) -> None:
    first = server.get(stored)

    by_etag = server.get(stored, {"If-None-Match": first.header("etag")})
    by_date = server.get(stored, {"If-Modified-Since": first.header("last-modified")})

    assert first.header("etag").startswith('"')
    assert by_etag.status == 304
    assert by_date.status == 304


def test_if_range_with_the_current_etag_serves_the_range(
    server: RunningServer, stored: str
) -> None:
    etag = server.get(stored).header("etag")

    current = server.get(stored, {"Range": "bytes=0-9", "If-Range": etag})
    stale = server.get(stored, {"Range": "bytes=0-9", "If-Range": '"stale"'})

    assert current.status == 206
    assert current.body == BODY[:10]
    assert stale.status == 200
    assert stale.body == BODY


@pytest.mark.parametrize(
    ("name", "content_type", "disposition"),
    [
        ("photo.jpg", "image/jpeg", 'inline; filename="photo.jpg"'),
        ("note.txt", "text/plain; charset=utf-8", 'inline; filename="note.txt"'),
        ("page.html", "text/html", 'attachment; filename="page.html"'),
        ("app.apk", "application/octet-stream", 'attachment; filename="app.apk"'),
        (
            "Grüße.pdf",
            "application/pdf",
            "attachment; filename=\"Gr__e.pdf\"; filename*=UTF-8''Gr%C3%BC%C3%9Fe.pdf",
        ),
    ],
)
def test_only_media_and_plain_text_are_shown_inline(
    server: RunningServer, name: str, content_type: str, disposition: str
) -> None:
    path = f"{os.urandom(6).hex()}/{name}"
    server.put(path, b"content", content_type=content_type, protocol="v2")

    answer = server.request("GET", f"/{encode_path(path)}")

    assert answer.header("content-type") == content_type
    assert answer.header("content-disposition") == disposition


def test_a_missing_file_is_404(server: RunningServer) -> None:
    assert server.get("nothing/here.txt").status == 404
    assert server.request("HEAD", "/nothing/here.txt").status == 404


def test_a_stalled_download_is_closed_after_the_idle_timeout(make_server) -> None:
    quick = make_server('idle_timeout = "1s"')
    path = f"{os.urandom(6).hex()}/big.bin"
    size = 64 * 1024 * 1024
    body = os.urandom(1024) * (size // 1024)
    assert quick.put(path, body).status == 201

    with quick.connect() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(f"GET /{path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        sock.recv(1024)
        time.sleep(4)
        received = _drain(sock)

    assert received < size


def _drain(sock: socket.socket) -> int:
    sock.settimeout(5)
    total = 0
    while True:
        try:
            chunk = sock.recv(1 << 20)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        total += len(chunk)
    return total
