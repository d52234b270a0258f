"""Run the real ``hmacfs serve`` in a child process on an ephemeral port.

Tests talk to it over loopback exactly as a client would: with ``http.client``
for ordinary requests and raw sockets where the exact bytes on the wire matter
(``Expect: 100-continue``, cut connections).
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from attrs import define, field

from hmacfs_core.paths import encode_path
from hmacfs_core.signatures import signed_query

SECRET = "test secret ✓"
LISTENING = re.compile(r"Listening on http://(?P<host>[^ ]+):(?P<port>\d+)/")


@define
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@define
class RunningServer:
    """A child ``hmacfs serve`` and what a test needs to talk to it."""

    process: subprocess.Popen[str]
    host: str
    port: int
    storage: Path
    secret: bytes
    lines: list[str] = field(factory=list)
    _reader: threading.Thread | None = None

    # -- URLs -------------------------------------------------------------

    def signed(
        self,
        path: str,
        size: int,
        protocol: str = "v1",
        content_type: str | None = None,
        expires: int | None = None,
        method: str = "PUT",
    ) -> str:
        """The request target of a signed PUT for ``path`` (decoded form)."""
        if protocol == "v3" and expires is None:
            expires = int(time.time()) + 3600
        query = signed_query(
            self.secret,
            protocol,
            method=method,
            path=path,
            size=size,
            content_type=content_type,
            expires=expires,
        )
        return f"/{encode_path(path)}?{query}"

    # -- requests ---------------------------------------------------------

    def request(
        self,
        method: str,
        target: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        return exchange(self.host, self.port, method, target, body, headers)

    def put(
        self, path: str, body: bytes, content_type: str | None = None, **sign: object
    ) -> Response:
        headers = {"Content-Type": content_type} if content_type else {}
        target = self.signed(path, len(body), content_type=content_type, **sign)
        return self.request("PUT", target, body, headers)

    def get(self, path: str, headers: dict[str, str] | None = None) -> Response:
        return self.request("GET", f"/{encode_path(path)}", headers=headers)

    def connect(self) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout=30)

    # -- the process ------------------------------------------------------

    def stored_files(self) -> list[Path]:
        return sorted(p for p in (self.storage / "files").rglob("*") if p.is_file())

    def staged_files(self) -> list[Path]:
        return sorted((self.storage / "staging").iterdir())

    def peak_rss_bytes(self) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        kib = re.search(r"VmHWM:\s+(\d+) kB", status)
        assert kib is not None
        return int(kib.group(1)) * 1024

    def log_text(self) -> str:
        return "".join(self.lines)

    def events(self, **match: object) -> list[dict[str, object]]:
        """The JSON log events (``[logging] format = "json"``) with these fields."""
        found = []
        for line in list(self.lines):
            if not line.startswith("\x1e"):
                continue
            event = json.loads(line[1:])
            if all(event.get(key) == value for key, value in match.items()):
                found.append(event)
        return found

    def wait_for_event(
        self, timeout: float = 10.0, **match: object
    ) -> dict[str, object]:
        """The first JSON event with these fields, waiting for it to be logged."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.events(**match)
            if found:
                return found[0]
            time.sleep(0.02)
        raise AssertionError(f"no event matched {match}:\n{self.log_text()[-3000:]}")

    def wait_for_log(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.log_text())
            if found:
                return found
            time.sleep(0.02)
        raise AssertionError(f"no log line matched {pattern!r}:\n{self.log_text()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
            if self._reader is not None:
                self._reader.join(5)


def start_server(
    workdir: Path,
    settings: str = "",
    secret: str = SECRET,
    timeout: float = 20.0,
    env: dict[str, str] | None = None,
) -> RunningServer:
    """Write a config with ``settings`` appended and start a server on it.

    ``settings`` may add keys to the ``[server]`` table (it follows it directly)
    and then any further tables.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    storage = workdir / "store"
    config = workdir / "hmacfs.toml"
    security = (
        ""
        if "[security]" in settings
        else f"[security]\nsecret = {json.dumps(secret)}\n"
    )
    config.write_text(
        "[server]\n"
        'listen_address = "127.0.0.1:0"\n'
        f"storage_path = {json.dumps(str(storage))}\n"
        f"{settings}\n{security}",
        encoding="utf-8",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "hmacfs_core", "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    lines: queue.Queue[str | None] = queue.Queue()
    collected: list[str] = []

    def read_output() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            collected.append(line)
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=read_output, daemon=True)
    reader.start()

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        found = listening_address(line)
        if found:
            return RunningServer(
                process=process,
                host=found[0],
                port=found[1],
                storage=storage,
                secret=secret.encode("utf-8"),
                lines=collected,
                reader=reader,
            )

    process.kill()
    raise AssertionError("server did not start:\n" + "".join(collected))


def exchange(
    host: str,
    port: int,
    method: str,
    target: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    source: str | None = None,
    timeout: float = 30.0,
) -> Response:
    """One request on a new connection (from ``source``, when given)."""
    connection = http.client.HTTPConnection(
        host, port, timeout=timeout, source_address=(source, 0) if source else None
    )
    try:
        connection.request(method, target, body=body, headers=headers or {})
        answer = connection.getresponse()
        return Response(
            status=answer.status,
            headers={k.lower(): v for k, v in answer.getheaders()},
            body=answer.read(),
        )
    finally:
        connection.close()


def listening_address(line: str) -> tuple[str, int] | None:
    """The address in the "Listening on" event, in text or JSON log format."""
    if line.startswith("\x1e"):
        event = json.loads(line[1:])
        if str(event.get("log_format", "")).startswith("Listening on"):
            return event["host"], int(event["port"])
        return None
    found = LISTENING.search(line)
    return (found["host"], int(found["port"])) if found else None


def raw_exchange(
    sock: socket.socket, data: bytes, read_until_close: bool = True
) -> bytes:
    """Send ``data`` and read the answer (until the server closes, by default)."""
    sock.sendall(data)
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        chunks.append(chunk)
        if not read_until_close and b"\r\n\r\n" in b"".join(chunks):
            break
    return b"".join(chunks)


def put_head(target: str, length: int, extra: str = "") -> bytes:
    """The head of a raw ``PUT`` with a ``Content-Length`` (and ``extra`` lines)."""
    return (
        f"PUT {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n{extra}\r\n"
    ).encode()


def status_of(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1])


def stop_quietly(server: RunningServer) -> None:
    try:
        server.stop(signal.SIGTERM, timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
