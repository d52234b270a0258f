"""One large PUT and GET over loopback: throughput, server CPU and peak RSS.

Run: ``python bench/loopback.py [--size 1GiB]``. The client side is a plain
socket writing one pre-built buffer repeatedly, so it costs the machine as
little as possible; the figures are those of the server process, read from
/proc. Absolute numbers depend on the machine: compare runs made together.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from serverproc import RunningServer, start_server, stop_quietly  # noqa: E402

from hmacfs_core.units import format_size, parse_size  # noqa: E402

BLOCK = 1 << 20


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def put(server: RunningServer, path: str, size: int) -> float:
    target = server.signed(path, size)
    block = b"\0" * BLOCK
    with socket.create_connection((server.host, server.port)) as sock:
        started = time.perf_counter()
        head = f"PUT {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n"
        sock.sendall(head.encode())
        for _ in range(size // BLOCK):
            sock.sendall(block)
        sock.sendall(block[: size % BLOCK])
        answer = sock.recv(4096)
        elapsed = time.perf_counter() - started
    assert answer.startswith(b"HTTP/1.1 201"), answer
    return elapsed


def get(server: RunningServer, path: str, size: int) -> float:
    with socket.create_connection((server.host, server.port)) as sock:
        started = time.perf_counter()
        sock.sendall(f"GET /{path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        received = 0
        buffer = bytearray(BLOCK)
        while received < size:
            count = sock.recv_into(buffer)
            if not count:
                break
            received += count
        elapsed = time.perf_counter() - started
    assert received >= size, received
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="1GiB")
    parser.add_argument("--settings", default="", help="extra [server] TOML lines")
    arguments = parser.parse_args()
    size = parse_size(arguments.size)

    with tempfile.TemporaryDirectory(dir=os.environ.get("HMACFS_BENCH_DIR")) as work:
        server = start_server(
            Path(work), f'max_upload_size = "{size}"\n{arguments.settings}'
        )
        try:
            cpu = cpu_seconds(server.process.pid)
            put_seconds = put(server, "bench/large.bin", size)
            put_cpu = cpu_seconds(server.process.pid) - cpu
            get_seconds = get(server, "bench/large.bin", size)
            get_cpu = cpu_seconds(server.process.pid) - cpu - put_cpu
            peak = server.peak_rss_bytes()
        finally:
            stop_quietly(server)

    mib = size / 2**20
    print(f"size                 {format_size(size)}")
    print(f"PUT                  {mib / put_seconds:8.1f} MiB/s  ({put_seconds:.2f} s)")
    print(f"PUT server CPU       {put_cpu / (size / 2**30):8.2f} s per GiB")
    print(f"GET                  {mib / get_seconds:8.1f} MiB/s  ({get_seconds:.2f} s)")
    print(f"GET server CPU       {get_cpu / (size / 2**30):8.2f} s per GiB")
    print(f"server peak RSS      {peak / 2**20:8.1f} MiB")


if __name__ == "__main__":
    main()
