"""Start-up, graceful stop and bounded memory of the real server process."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import time

import pytest
from serverproc import raw_exchange, start_server, status_of, stop_quietly


def _start_upload(server, size: int, sent: bytes):  # type: ignore[no-untyped-def]
    path = f"{os.urandom(6).hex()}/slow.bin"
    target = server.signed(path, size)
    sock = server.connect()
    sock.sendall(
        f"PUT {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n".encode()
        + sent
    )
    return path, sock


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_lets_a_running_upload_finish(make_server, sig: int) -> None:
    server = make_server('shutdown_grace = "20s"')
    body = os.urandom(200_000)
    path, sock = _start_upload(server, len(body), body[:100_000])
    time.sleep(0.3)

    server.process.send_signal(sig)
    time.sleep(0.5)
    answer = raw_exchange(sock, body[100_000:], read_until_close=False)
    sock.close()

    assert status_of(answer) == 201
    assert server.process.wait(20) == 0
    assert (server.storage / "files" / path).read_bytes() == body


def test_a_draining_server_accepts_no_new_connections(make_server) -> None:
    server = make_server('shutdown_grace = "20s"')
    path, sock = _start_upload(server, 1000, b"x" * 10)
    time.sleep(0.3)

    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.5)

    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((server.host, server.port), timeout=5)
    sock.close()


def test_a_draining_server_answers_503_on_connections_already_open(
    make_server,
) -> None:
    server = make_server('shutdown_grace = "20s"')
    server.put("d/file.txt", b"x")
    path, upload = _start_upload(server, 1000, b"x" * 10)
    idle = server.connect()
    request = b"GET /d/file.txt HTTP/1.1\r\nHost: x\r\n\r\n"
    assert status_of(raw_exchange(idle, request, read_until_close=False)) == 200
    time.sleep(0.3)

    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    answer = raw_exchange(idle, request)
    idle.close()
    upload.close()

    assert status_of(answer) == 503
    assert b"Retry-After: 10" in answer


def test_uploads_still_running_after_the_grace_period_are_cut_cleanly(
    make_server,
) -> None:
    server = make_server('shutdown_grace = "1s"')
    path, sock = _start_upload(server, 1_000_000, b"x" * 500_000)
    time.sleep(0.3)

    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    code = server.process.wait(20)
    sock.close()

    assert code == 0
    assert time.monotonic() - started < 10
    assert server.staged_files() == []
    assert server.stored_files() == []


def test_stale_staged_files_are_removed_at_start(tmp_path) -> None:
    first = start_server(tmp_path)
    first.stop()
    leftover = first.storage / "staging" / "deadbeef.part"
    leftover.write_bytes(b"half an upload")

    restarted = start_server(tmp_path)
    try:
        restarted.wait_for_log("Removed 1 stale staged upload")
        assert not leftover.exists()
    finally:
        stop_quietly(restarted)


@pytest.mark.slow
def test_a_200MB_upload_streams_with_bounded_memory(make_server) -> None:
    server = make_server('max_upload_size = "1GiB"')
    size = 200 * 1024 * 1024
    block = os.urandom(1 << 20)
    digest = hashlib.sha256()
    path = f"{os.urandom(6).hex()}/movie.mkv"
    target = server.signed(path, size)

    with server.connect() as sock:
        head = f"PUT {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n"
        sock.sendall(head.encode())
        for _ in range(size // len(block)):
            sock.sendall(block)
            digest.update(block)
        answer = raw_exchange(sock, b"", read_until_close=False)

    meta = json.loads((server.storage / "meta" / (path + ".json")).read_text())
    assert status_of(answer) == 201
    assert meta["sha256"] == digest.hexdigest()
    peak = server.peak_rss_bytes()
    print(f"peak RSS during a 200 MiB upload: {peak / 2**20:.1f} MiB")
    assert peak < 100 * 1024 * 1024
