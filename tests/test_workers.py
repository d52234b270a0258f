"""``[server] workers``: several processes serving one listening socket."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from serverproc import RunningServer


def _workers_of(server: RunningServer) -> list[int]:
    children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children")
    return [int(pid) for pid in children.read_text().split()]


def _wait_for_workers(server: RunningServer, count: int) -> list[int]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        workers = _workers_of(server)
        if len(workers) == count:
            return workers
        time.sleep(0.05)
    raise AssertionError(f"expected {count} workers, found {_workers_of(server)}")


def test_workers_share_the_port_and_all_serve_uploads(make_server) -> None:
    server = make_server("workers = 2")
    _wait_for_workers(server, 2)

    statuses = [server.put(f"w/{i}.bin", os.urandom(1000)).status for i in range(20)]

    assert statuses == [201] * 20
    assert len(server.stored_files()) == 20


def test_a_worker_that_dies_is_started_again(make_server) -> None:
    server = make_server("workers = 2")
    first, _ = _wait_for_workers(server, 2)

    os.kill(first, signal.SIGKILL)
    time.sleep(0.5)
    replaced = _wait_for_workers(server, 2)

    assert first not in replaced
    assert server.put("w/after.bin", b"still served").status == 201


def test_sigterm_stops_every_worker_cleanly(make_server) -> None:
    server = make_server("workers = 2")
    workers = _wait_for_workers(server, 2)

    assert server.stop(signal.SIGTERM) == 0
    for pid in workers:
        assert (
            not Path(f"/proc/{pid}").exists()
            or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
        )


def test_workers_stop_when_their_supervisor_is_killed(make_server) -> None:
    server = make_server("workers = 2")
    workers = _wait_for_workers(server, 2)

    server.process.kill()
    server.process.wait(10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(map(_running, workers)):
        time.sleep(0.1)

    assert not any(map(_running, workers))


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting for a parent to reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"
