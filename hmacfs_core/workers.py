"""Several server processes on one listening socket (``[server] workers``).

CPython runs one thread of Python at a time, so one process uses one core. The
supervisor binds the socket once, prepares the store, then starts each worker
as ``hmacfs serve`` with the socket handed down; the kernel spreads new
connections over the processes accepting on it. A worker that dies is started
again; SIGTERM and SIGINT are passed on, and each worker drains its transfers
within ``shutdown_grace`` as a single process would.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from attrs import define, field

from hmacfs_core.app import App
from hmacfs_core.serve import announce, bind_socket, prepare_store

#: A worker that dies sooner than this after its start is not restarted at once,
#: so a crash at start-up cannot spin.
RESTART_BACKOFF_SECONDS = 1.0


@define
class Supervisor:
    """Start, watch and stop the worker processes of one server."""

    app: App
    config_path: Path
    workers: dict[int, tuple[int, float]] = field(factory=dict)
    stopping: bool = False

    def run(self) -> int:
        """Serve until a stop signal; return the exit status."""
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGHUP, self._pass_on)

        sock = bind_socket(self.app.config.server.listen_address)
        prepare_store(self.app)
        host, port = sock.getsockname()[:2]
        announce(self.app, host, port)
        for index in range(self.app.config.server.workers):
            self._start(index, sock)

        failed = False
        while self.workers:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            failed = self._reap(pid, status, sock) or failed
        sock.close()
        return 1 if failed else 0

    def _start(self, index: int, sock: socket.socket) -> None:
        command = [
            sys.executable,
            "-m",
            "hmacfs_core",
            "serve",
            "--config",
            str(self.config_path),
            "--worker-fd",
            str(sock.fileno()),
        ]
        environment = {**os.environ, "HMACFS_SUPERVISOR_PID": str(os.getpid())}
        process = subprocess.Popen(command, pass_fds=(sock.fileno(),), env=environment)
        self.workers[process.pid] = (index, time.monotonic())
        if self.stopping:
            # The stop signal came while this worker was being started, before
            # its pid was known to the handler that passes signals on.
            os.kill(process.pid, signal.SIGTERM)

    def _reap(self, pid: int, status: int, sock: socket.socket) -> bool:
        """Forget a worker that exited; start it again unless stopping."""
        index, started = self.workers.pop(pid, (None, 0.0))
        if index is None:
            return False
        code = os.waitstatus_to_exitcode(status)
        if self.stopping:
            # A worker still starting up when the signal came dies of it: that is
            # a clean stop too, since it had no transfers yet.
            return code not in (0, -signal.SIGTERM, -signal.SIGINT)

        self.app.log.warn(
            "Worker {index} (pid {pid}) exited with {code}; starting it again",
            index=index,
            pid=pid,
            code=code,
        )
        lived = time.monotonic() - started
        if lived < RESTART_BACKOFF_SECONDS:
            time.sleep(RESTART_BACKOFF_SECONDS - lived)
        if not self.stopping:
            self._start(index, sock)
        return False

    def _stop(self, signum: int, frame: object) -> None:
        self.stopping = True
        self._pass_on(signum, frame)

    def _pass_on(self, signum: int, frame: object) -> None:
        """Hand a signal to every worker: each one stops or reloads itself."""
        for pid in list(self.workers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
