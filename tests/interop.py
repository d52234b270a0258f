"""What the interop tests share: a real XMPP server in a child process, and the
trip of one file through a slot it handed out (PUT to hmacfs, then GET).

The XMPP servers come from Debian's packages, installed by ``.ci/install-peers``.
A missing one fails the test rather than skipping it: CI always installs them, so a
skip could only hide a broken install step.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from attrs import frozen
from serverproc import Response, RunningServer
from xmppslots import Slot, SlotRequest, request_slots

INSTALL_HINT = "run .ci/install-peers (as root) first"

# The XMPP account every interop test logs in with.
USER, DOMAIN, PASSWORD = "alice", "localhost", "correct horse"


@frozen
class Upload:
    """One slot from the XMPP server, and what hmacfs answered to its PUT and GET."""

    slot: Slot
    body: bytes
    put: Response
    get: Response


@frozen
class RunningPeer:
    """
    An XMPP server started for one test module.

    It runs in a session of its own, so that stopping it also ends any helper
    process it started (the Erlang VM has one).
    """

    process: subprocess.Popen[bytes]
    c2s_port: int
    log: Path
    output: Path

    def log_text(self) -> str:
        return "".join(
            path.read_text(errors="replace")
            for path in (self.output, self.log)
            if path.exists()
        )

    def stop(self) -> None:
        self._signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.process.wait(5)

    def _signal(self, number: int) -> None:
        # The whole session: the server and whatever it started.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, number)


def start_peer(
    command: Sequence[str],
    workdir: Path,
    c2s_port: int,
    log: Path,
    env: dict[str, str] | None = None,
    ready_line: str | None = None,
    timeout: float = 20.0,
) -> RunningPeer:
    """
    Run ``command`` in ``workdir`` and wait until it accepts clients on
    ``c2s_port`` and, if given, has printed ``ready_line``.

    :raises AssertionError: with the server's output, if it exits or is not ready
        in time.
    """
    output = workdir / "stdout.txt"
    with open(output, "wb") as sink:
        process = subprocess.Popen(
            list(command),
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    peer = RunningPeer(process, c2s_port, log, output)

    try:
        _wait_until_ready(peer, ready_line, timeout)
    except BaseException:
        peer.stop()
        raise
    return peer


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def require_program(name: str) -> str:
    """The path of the program ``name``; fails the test when it is not installed."""
    path = _which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: {INSTALL_HINT}", pytrace=False)
    return path


def upload_each(
    peer: RunningPeer,
    hmacfs: RunningServer,
    service: str,
    requests: Sequence[SlotRequest],
) -> list[Upload]:
    """
    Ask ``service`` for a slot per request, as ``USER``, then PUT a random body of
    the requested size to each PUT URL and GET it back from the GET URL.

    The PUT carries exactly what a client sends: the headers of the slot, the
    requested ``Content-Type`` (none when none was requested) and the body.
    """
    slots = request_slots(
        ("127.0.0.1", peer.c2s_port),
        f"{USER}@{DOMAIN}/interop",
        PASSWORD,
        service,
        requests,
    )

    uploads = []
    for slot in slots:
        body = os.urandom(slot.request.size)
        headers = dict(slot.put_headers)
        if slot.request.content_type is not None:
            headers["Content-Type"] = slot.request.content_type

        put = hmacfs.request("PUT", request_target(slot.put_url, hmacfs), body, headers)
        get = hmacfs.request("GET", request_target(slot.get_url, hmacfs))
        uploads.append(Upload(slot, body, put, get))
    return uploads


def request_target(url: str, server: RunningServer) -> str:
    """The request target of ``url``, kept exactly as the XMPP server wrote it."""
    origin = f"http://{server.host}:{server.port}"
    assert url.startswith(origin + "/"), f"{url} does not point at hmacfs"
    return url.removeprefix(origin)


def refused_puts(uploads: Sequence[Upload]) -> dict[str, tuple[int, bytes]]:
    """Each PUT URL that did not get 201, with the status and body it got."""
    return {
        upload.slot.put_url: (upload.put.status, upload.put.body)
        for upload in uploads
        if upload.put.status != 201
    }


def _wait_until_ready(
    peer: RunningPeer, ready_line: str | None, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if peer.process.poll() is not None:
            raise AssertionError(
                f"{peer.process.args[0]} exited with {peer.process.returncode}:\n"
                + peer.log_text()[-4000:]
            )
        if ready_line is None or ready_line in peer.log_text():
            try:
                socket.create_connection(("127.0.0.1", peer.c2s_port), 1).close()
                return
            except OSError:
                pass
        time.sleep(0.05)
    raise AssertionError(
        f"{peer.process.args[0]} was not ready in {timeout} s:\n"
        + peer.log_text()[-4000:]
    )


def _which(name: str) -> str | None:
    # Debian puts servers' tools in sbin, which a non-login PATH may lack.
    return shutil.which(name) or shutil.which(
        name, path=os.pathsep.join(["/usr/sbin", "/usr/bin", "/sbin", "/bin"])
    )
