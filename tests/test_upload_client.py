"""``hmacfs upload`` against the real server (issue 6, item 5).

The client runs as a user runs it, in its own process; a small TCP relay in
the test stands in for a phone's networks: it resets connections part-way and
reaches the server from a new address each time, or slows the upload down so
that the client can be interrupted in the middle of it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import select
import signal
import socket
import ssl
import stat
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from attrs import define, field
from serverproc import RunningServer, start_server, stop_quietly

MiB = 1024 * 1024
TUS = {"Tus-Resumable": "1.0.0"}
JSON_LOGS = '[logging]\nformat = "json"\n'


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("upload-client"), JSON_LOGS)
    yield running
    stop_quietly(running)


@pytest.fixture
def relay(server: RunningServer) -> Iterator[Relay]:
    running = Relay(server.host, server.port)
    running.start()
    yield running
    running.close()


# -- the relay ----------------------------------------------------------------


@define
class Relay:
    """A loopback TCP relay that plays a phone's changing networks.

    Each connection reaches the server from the next of ``sources``, as after
    a network switch; each of the first ``cuts`` connections is reset after
    ``cut_after`` bytes towards the server; the first connection has the byte
    at ``damage_at`` flipped on its way up; ``rate`` (bytes per second) slows
    what goes up.
    """

    host: str
    port: int
    cut_after: int = 0
    cuts: int = 0
    rate: float | None = None
    damage_at: int | None = None
    sources: tuple[str, ...] = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
    connections: int = 0
    listener: socket.socket = field(factory=socket.socket)
    _lock: threading.Lock = field(factory=threading.Lock)
    _open: list[socket.socket] = field(factory=list)

    @property
    def address(self) -> tuple[str, int]:
        return self.listener.getsockname()[:2]

    def url(self, target: str) -> str:
        host, port = self.address
        return f"http://{host}:{port}{target}"

    def start(self) -> None:
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.listener.close()
        with self._lock:
            for sock in self._open:
                sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                source = self.sources[self.connections % len(self.sources)]
                self.connections += 1
                cut_at = None
                if self.cuts > 0:
                    self.cuts -= 1
                    cut_at = self.cut_after
                damage_at, self.damage_at = self.damage_at, None
            upstream = socket.create_connection(
                (self.host, self.port), source_address=(source, 0)
            )
            with self._lock:
                self._open += [client, upstream]
            pair = (client, upstream)
            threading.Thread(
                target=self._pipe,
                args=(client, upstream, pair, cut_at, damage_at),
                daemon=True,
            ).start()
            threading.Thread(
                target=self._pipe, args=(upstream, client, pair), daemon=True
            ).start()

    def _pipe(
        self,
        source: socket.socket,
        sink: socket.socket,
        pair: tuple[socket.socket, socket.socket],
        cut_at: int | None = None,
        damage_at: int | None = None,
    ) -> None:
        forwarded = 0
        try:
            while True:
                block = source.recv(64 * 1024)
                if not block:
                    break
                if cut_at is not None and forwarded + len(block) >= cut_at:
                    sink.sendall(block[: cut_at - forwarded])
                    _reset(pair)
                    return
                if damage_at is not None and 0 <= damage_at - forwarded < len(block):
                    flipped = bytearray(block)
                    flipped[damage_at - forwarded] ^= 0xFF
                    block = bytes(flipped)
                sink.sendall(block)
                forwarded += len(block)
                rate = self.rate
                if rate is not None and sink is pair[1]:
                    time.sleep(len(block) / rate)
        except OSError:
            pass
        for sock in pair:
            sock.close()


def _reset(pair: tuple[socket.socket, socket.socket]) -> None:
    """Close both ends with a reset, as a network that went away does.

    The other direction's thread is blocked reading the same sockets, and the
    kernel closes a socket only when that read returns: shutting reading down
    ends it at once.
    """
    for sock in pair:
        with contextlib.suppress(OSError):
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            sock.shutdown(socket.SHUT_RD)
        sock.close()


@define
class TlsFront:
    """Terminates TLS on loopback and passes the plain bytes to the server,
    as a reverse proxy in front of hmacfs does."""

    host: str
    port: int
    context: ssl.SSLContext
    listener: socket.socket = field(factory=socket.socket)

    def start(self) -> None:
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, target: str) -> str:
        return f"https://127.0.0.1:{self.listener.getsockname()[1]}{target}"

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                plain, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(plain,), daemon=True).start()

    def _serve(self, plain: socket.socket) -> None:
        # One thread per connection: an SSL socket is not shared between threads.
        try:
            client = self.context.wrap_socket(plain, server_side=True)
            upstream = socket.create_connection((self.host, self.port))
        except OSError:
            plain.close()
            return
        with client, upstream:
            while True:
                ready, _, _ = select.select([client, upstream], [], [], 30)
                if not ready:
                    return
                try:
                    if client in ready or client.pending():
                        data = client.recv(64 * 1024)
                        if not data:
                            return
                        upstream.sendall(data)
                    if upstream in ready:
                        data = upstream.recv(64 * 1024)
                        if not data:
                            return
                        client.sendall(data)
                except (OSError, ssl.SSLError):
                    return


# -- running the client -------------------------------------------------------


def client_command(file: Path, url: str, state: Path, *options: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "hmacfs_core",
        "upload",
        str(file),
        url,
        "--state-dir",
        str(state),
        *options,
    ]


def upload(
    file: Path, url: str, state: Path, *options: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        client_command(file, url, state, *options),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def write_random(path: Path, size: int) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    return data


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stored_sha256(server: RunningServer, path: str) -> str:
    return sha256((server.storage / "files" / path).read_bytes())


def unique(name: str) -> str:
    return f"{os.urandom(6).hex()}/{name}"


def state_files(state: Path) -> list[Path]:
    return sorted(state.glob("*.json")) if state.exists() else []


def saved_location(state: Path) -> str:
    [saved] = state_files(state)
    return str(json.loads(saved.read_text())["location"])


def server_offset(server: RunningServer, location: str) -> int | None:
    """The upload's offset by tus ``HEAD``, straight to the server; None if gone."""
    answer = server.request("HEAD", urlsplit(location).path, headers=TUS)
    if answer.status == 404:
        return None
    assert answer.status == 200, answer
    return int(answer.headers["upload-offset"])


def wait_until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def interrupt_midway(
    server: RunningServer,
    relay: Relay,
    file: Path,
    url: str,
    state: Path,
    sig: int,
    at_least: int,
) -> tuple[str, int, subprocess.CompletedProcess[str]]:
    """Start the client through a slow relay, send ``sig`` once the server
    holds ``at_least`` bytes, and return the upload's location, the server's
    offset afterwards, and how the client ended."""
    relay.rate = 8 * MiB
    process = subprocess.Popen(
        client_command(file, url, state, "--chunk-size", "256KiB"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: bool(state_files(state)))
        location = saved_location(state)
        wait_until(lambda: (server_offset(server, location) or 0) >= at_least)
        process.send_signal(sig)
        stdout, stderr = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
    relay.rate = None
    finished = subprocess.CompletedProcess(
        process.args, process.returncode, stdout, stderr
    )
    offset = server_offset(server, location)
    assert offset is not None
    return location, offset, finished


def transfers(
    server: RunningServer, method: str, path_prefix: str
) -> list[dict[str, object]]:
    """The server's log events of the transfers with this method and path."""
    return [
        event
        for event in server.events(method=method)
        if str(event.get("path", "")).startswith(path_prefix)
    ]


def patches_of(server: RunningServer, location: str) -> list[dict[str, object]]:
    # The log shows the first eight characters of an upload id.
    upload_id = urlsplit(location).path.rsplit("/", 1)[1]
    return transfers(server, "PATCH", f"/tus/{upload_id[:8]}")


# -- tus ----------------------------------------------------------------------


def test_a_20_mb_file_goes_by_tus_in_chunks_and_the_stored_sha256_matches(
    server: RunningServer, tmp_path: Path
) -> None:
    size = 20 * MiB + 12345
    data = write_random(tmp_path / "video.mp4", size)
    path = unique("video.mp4")
    url = f"http://{server.host}:{server.port}{server.signed(path, size)}"

    done = upload(tmp_path / "video.mp4", url, tmp_path / "state")

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == url.split("?")[0]
    assert stored_sha256(server, path) == sha256(data)
    [creation] = transfers(server, "POST", f"/tus/{path}")
    assert creation["status"] == 201
    assert not transfers(server, "PUT", f"/{path}")
    # Not a TTY: one line per 10 %, and nothing left to resume.
    lines = done.stderr.splitlines()
    assert len(lines) == 11 and lines[-1].startswith("100% 20.0 MiB of 20.0 MiB")
    assert state_files(tmp_path / "state") == []
    meta = json.loads((server.storage / "meta" / f"{path}.json").read_text())
    assert meta["content_type"] == "video/mp4"


def test_connections_reset_mid_chunk_from_changing_addresses_are_resumed(
    server: RunningServer, relay: Relay, tmp_path: Path
) -> None:
    size = 20 * MiB
    data = write_random(tmp_path / "photo.jpg", size)
    path = unique("photo.jpg")
    relay.cut_after, relay.cuts = int(2.5 * MiB), 3
    earlier = len(server.events(method="PATCH"))

    done = upload(
        tmp_path / "photo.jpg",
        relay.url(server.signed(path, size, "v2", "image/jpeg")),
        tmp_path / "state",
        "--chunk-size",
        "1MiB",
    )

    assert done.returncode == 0, done.stderr
    assert stored_sha256(server, path) == sha256(data)
    assert done.stderr.count("retrying in") >= 3
    assert len(transfers(server, "POST", f"/tus/{path}")) == 1
    patches = server.events(method="PATCH")[earlier:]
    accepted = [event for event in patches if event["status"] == 204]
    # Every byte was accepted exactly once, from more than one address.
    assert sum(int(str(event["bytes"])) for event in accepted) == size
    assert len({event["peer"] for event in accepted}) >= 2


def test_a_chunk_damaged_on_the_way_is_sent_again(
    server: RunningServer, relay: Relay, tmp_path: Path
) -> None:
    size = 6 * MiB
    data = write_random(tmp_path / "scan.pdf", size)
    path = unique("scan.pdf")
    relay.damage_at = MiB
    earlier = len(server.events(method="PATCH"))

    done = upload(
        tmp_path / "scan.pdf", relay.url(server.signed(path, size)), tmp_path / "st"
    )

    assert done.returncode == 0, done.stderr
    assert "arrived damaged" in done.stderr
    assert stored_sha256(server, path) == sha256(data)
    statuses = [event["status"] for event in server.events(method="PATCH")[earlier:]]
    assert statuses == [460, 204, 204]


@pytest.mark.parametrize(
    "sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["int", "term", "kill"]
)
def test_an_interrupted_upload_continues_from_the_servers_offset_when_run_again(
    server: RunningServer, relay: Relay, tmp_path: Path, sig: int
) -> None:
    size = 8 * MiB
    data = write_random(tmp_path / "notes.bin", size)
    path = unique("notes.bin")
    url = relay.url(server.signed(path, size))
    state = tmp_path / "state"

    location, offset, first = interrupt_midway(
        server, relay, tmp_path / "notes.bin", url, state, sig, at_least=MiB
    )

    if sig == signal.SIGKILL:
        assert first.returncode == -signal.SIGKILL
    else:
        assert first.returncode == 128 + sig
        assert "run the same command again to continue" in first.stderr
    [saved] = state_files(state)
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert url.split("?")[1] not in saved.read_text()
    assert 0 < offset < size
    sent_before = len(patches_of(server, location))

    again = upload(tmp_path / "notes.bin", url, state)

    assert again.returncode == 0, again.stderr
    assert "continuing the upload begun by an earlier run" in again.stderr
    assert stored_sha256(server, path) == sha256(data)
    assert len(transfers(server, "POST", f"/tus/{path}")) == 1
    # The first run's cut PATCH may be logged late: count the accepted ones.
    second_run = [
        event
        for event in patches_of(server, location)[sent_before:]
        if event["status"] == 204
    ]
    assert sum(int(str(event["bytes"])) for event in second_run) == size - offset
    assert state_files(state) == []


def test_a_file_changed_since_the_interrupted_run_starts_over(
    server: RunningServer, relay: Relay, tmp_path: Path
) -> None:
    size = 8 * MiB
    file = tmp_path / "draft.bin"
    write_random(file, size)
    path = unique("draft.bin")
    url = relay.url(server.signed(path, size))
    state = tmp_path / "state"
    location, _, _ = interrupt_midway(
        server, relay, file, url, state, signal.SIGKILL, at_least=MiB
    )
    changed = write_random(file, size)

    again = upload(file, url, state)

    assert again.returncode == 0, again.stderr
    assert "FILE changed since the upload began: starting over" in again.stderr
    assert stored_sha256(server, path) == sha256(changed)
    assert len(transfers(server, "POST", f"/tus/{path}")) == 2
    # The abandoned upload was ended on the server, not left to expire.
    assert server_offset(server, location) is None


def test_an_expired_upload_is_created_again_once(
    make_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    expiring = make_server(f'{JSON_LOGS}[tus]\nexpiration = "1s"\n')
    relay = Relay(expiring.host, expiring.port)
    relay.start()
    size = 4 * MiB
    data = write_random(tmp_path / "late.bin", size)
    path = unique("late.bin")
    url = relay.url(expiring.signed(path, size))
    try:
        interrupt_midway(
            expiring,
            relay,
            tmp_path / "late.bin",
            url,
            tmp_path / "state",
            signal.SIGKILL,
            at_least=512 * 1024,
        )
        time.sleep(1.5)
        again = upload(tmp_path / "late.bin", url, tmp_path / "state")
    finally:
        relay.close()

    assert again.returncode == 0, again.stderr
    assert "no longer has this upload" in again.stderr
    assert stored_sha256(expiring, path) == sha256(data)


# -- without tus, and refusals ------------------------------------------------


def test_a_server_without_tus_gets_one_plain_put(
    make_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    plain = make_server(f"{JSON_LOGS}[tus]\nenabled = false\n")
    size = 5 * MiB
    data = write_random(tmp_path / "song.ogg", size)
    path = unique("song.ogg")
    target = plain.signed(path, size, "v2", "audio/ogg")

    done = upload(
        tmp_path / "song.ogg",
        f"http://{plain.host}:{plain.port}{target}",
        tmp_path / "state",
        "--type",
        "audio/ogg",
    )

    assert done.returncode == 0, done.stderr
    assert stored_sha256(plain, path) == sha256(data)
    [put] = transfers(plain, "PUT", f"/{path}")
    assert put["status"] == 201
    assert state_files(tmp_path / "state") == []


def test_an_https_url_is_uploaded_over_tls_to_a_trusted_server_only(
    server: RunningServer, make_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    certificate, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(certificate)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate, key)
    front = TlsFront(server.host, server.port, context)
    front.start()
    # A PUT refused from its headers while its body streams over TLS.
    plain = make_server("[tus]\nenabled = false\n")
    plain_front = TlsFront(plain.host, plain.port, context)
    plain_front.start()
    size = 6 * MiB
    data = write_random(tmp_path / "report.pdf", size)
    path = unique("report.pdf")
    url = front.url(server.signed(path, size))
    # The client trusts the system's CAs; this one too, for the test.
    trusting = {**os.environ, "SSL_CERT_FILE": str(certificate)}

    def run(url: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        command = client_command(tmp_path / "report.pdf", url, tmp_path / "state")
        return subprocess.run(
            command, capture_output=True, text=True, timeout=60, env=env
        )

    try:
        untrusted = run(url, dict(os.environ))
        forged_url = plain_front.url(plain.signed(path, size))[:-4] + "0000"
        forged = run(forged_url, trusting)
        done = run(url, trusting)
    finally:
        front.close()
        plain_front.close()

    assert untrusted.returncode == 3
    assert "certificate not trusted" in untrusted.stderr
    assert "retrying" not in untrusted.stderr
    assert forged.returncode == 1 and "refused: 403" in forged.stderr
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == url.split("?")[0]
    assert stored_sha256(server, path) == sha256(data)
    assert len(transfers(server, "POST", f"/tus/{path}")) == 1


@pytest.mark.parametrize("tus", [True, False], ids=["tus", "put"])
def test_a_wrong_mac_is_refused_with_exit_1_and_the_servers_403(
    server: RunningServer,
    make_server: Callable[..., RunningServer],
    tmp_path: Path,
    tus: bool,
) -> None:
    target_server = server if tus else make_server("[tus]\nenabled = false\n")
    size = 5 * MiB
    write_random(tmp_path / "secret.bin", size)
    target = target_server.signed(unique("secret.bin"), size)
    forged = target[:-6] + ("000000" if not target.endswith("000000") else "111111")
    url = f"http://{target_server.host}:{target_server.port}{forged}"

    done = upload(tmp_path / "secret.bin", url, tmp_path / "state")

    assert done.returncode == 1, done.stderr
    assert "refused: 403" in done.stderr
    assert state_files(tmp_path / "state") == []


def test_a_different_file_at_the_path_is_refused_with_409(
    server: RunningServer, tmp_path: Path
) -> None:
    path = unique("taken.txt")
    assert server.put(path, b"first version\n").status == 201
    write_random(tmp_path / "taken.txt", 100)
    url = f"http://{server.host}:{server.port}{server.signed(path, 100)}"

    done = upload(tmp_path / "taken.txt", url, tmp_path / "state")

    assert done.returncode == 1, done.stderr
    assert "refused: 409" in done.stderr


def test_an_unreachable_server_gives_up_with_exit_3_after_the_retries(
    tmp_path: Path,
) -> None:
    unused = socket.socket()
    unused.bind(("127.0.0.1", 0))
    port = unused.getsockname()[1]
    unused.close()
    write_random(tmp_path / "lost.bin", 1000)

    done = upload(
        tmp_path / "lost.bin",
        f"http://127.0.0.1:{port}/x/lost.bin?v=00",
        tmp_path / "state",
        "--retries",
        "2",
    )

    assert done.returncode == 3, done.stderr
    assert done.stderr.count("retrying in") == 2
    assert "gave up after 2 retries" in done.stderr


def test_a_missing_file_or_a_bad_url_is_a_usage_error(tmp_path: Path) -> None:
    missing = upload(tmp_path / "nothing", "http://127.0.0.1:1/x?v=0", tmp_path)
    write_random(tmp_path / "here.bin", 10)
    bad_url = upload(tmp_path / "here.bin", "ftp://example.org/x", tmp_path)

    assert missing.returncode == bad_url.returncode == 2
    assert "No such file" in missing.stderr
    assert "http:// or https://" in bad_url.stderr


def test_the_state_directory_follows_xdg_state_home(tmp_path: Path) -> None:
    from hmacfs_core.upload_client import default_state_dir

    assert default_state_dir({"XDG_STATE_HOME": str(tmp_path)}) == (
        tmp_path / "hmacfs" / "uploads"
    )
    assert default_state_dir({"XDG_STATE_HOME": "relative"}) == (
        Path.home() / ".local" / "state" / "hmacfs" / "uploads"
    )


def test_a_terminal_sees_one_redrawn_line_with_rate_and_eta() -> None:
    from hmacfs_core.upload_client import Progress

    screen = io.StringIO()
    now = [0.0]
    progress = Progress(100 * MiB, screen, tty=True, clock=lambda: now[0])
    progress.restart(0)
    for second in range(1, 5):
        now[0] = float(second)
        progress.update(second * 10 * MiB)
    progress.note("a message")
    progress.finish()

    bar = "[#########...............]  40% 40.0 MiB of 100.0 MiB"
    drawn, noted = screen.getvalue().split("\r\x1b[Ka message\n")
    assert "\n" not in drawn
    assert drawn.endswith(f"\r{bar}, 10.0 MiB/s, ETA 0:06\x1b[K")
    # The message gets a line of its own; the bar is drawn again below it,
    # and the last one is left on screen.
    assert noted.startswith(bar) and noted.endswith("ETA 0:06\x1b[K\n")
