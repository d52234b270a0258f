"""The load generator: real HTTP/1.1 uploads and downloads over blocking sockets.

Each transfer runs in its own thread on its own connection, as a phone or a
desktop client uploads one file per connection. The blocking calls
(``connect``, ``sendall``, ``recv_into``) release the GIL, so threads cost the
client little more than the kernel's copies; bodies are sent from one
pre-built block, never built per request. What the client spends is measured
(:attr:`Batch.client_cpu`) and reported beside every result, so a run whose
client was the bottleneck shows it.
"""

from __future__ import annotations

import math
import random
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from attrs import field, frozen

from bench.usage import own_cpu_seconds

#: The block every body is cut from: random, so that no layer can compress it.
BLOCK_SIZE = 1 << 20
_BLOCK = memoryview(random.Random(363).randbytes(BLOCK_SIZE))

#: A transfer that makes no progress for this long has failed.
SOCKET_TIMEOUT = 120.0

#: The error of an upload given up at its deadline.
STOPPED = "stopped at the deadline"


@frozen
class Slot:
    """Where one upload goes and where it is read back from.

    :ivar host: the address to connect to.
    :ivar port: the port to connect to.
    :ivar put_target: the request target of the PUT, query included.
    :ivar get_target: the request target of the GET.
    :ivar host_header: the ``Host`` header (Prosody routes by it).
    :ivar size: the body's size in bytes.
    :ivar content_type: sent with the PUT.
    :ivar headers: further PUT headers the server's slot requires
        (Prosody's ``Authorization``).
    """

    host: str
    port: int
    put_target: str
    get_target: str
    host_header: str
    size: int
    content_type: str = "application/octet-stream"
    headers: tuple[tuple[str, str], ...] = ()


@frozen
class ClientProfile:
    """How an emulated client behaves on the wire.

    :ivar user_agent: the ``User-Agent`` header.
    :ivar headers: further headers, such as a network hint.
    :ivar rate: the pace in bytes per second, or None to go as fast as the
        server reads (or writes, for a download).
    :ivar stalls: pauses as (fraction of the body done, seconds), the way a
        phone stops between cells or when its screen locks.
    :ivar sndbuf: SO_SNDBUF set before connecting, or None for the default.
    :ivar rcvbuf: SO_RCVBUF set before connecting, or None for the default.
    """

    user_agent: str = "hmacfs-bench/1"
    headers: tuple[tuple[str, str], ...] = ()
    rate: float | None = None
    stalls: tuple[tuple[float, float], ...] = ()
    sndbuf: int | None = None
    rcvbuf: int | None = None

    def chunk_size(self) -> int:
        """Bytes per send or receive: about ten per second when paced."""
        if self.rate is None:
            return BLOCK_SIZE
        return max(4096, min(65536, int(self.rate / 10)))


@frozen
class Result:
    """One finished (or failed) transfer, with times from ``time.perf_counter``.

    :ivar transferred: body bytes sent (PUT) or received (GET), also of a
        transfer that failed or was stopped.
    """

    ok: bool
    status: int
    size: int
    started: float
    finished: float
    error: str = ""
    transferred: int = 0

    @property
    def seconds(self) -> float:
        return self.finished - self.started


@frozen
class Batch:
    """Transfers run together, and what the client spent running them.

    :ivar results: one per transfer, in the order they were given.
    :ivar wall: seconds from the first start to the last finish.
    :ivar client_cpu: CPU seconds of this whole process (every thread) meanwhile.
    """

    results: tuple[Result, ...]
    wall: float
    client_cpu: float
    failures: int = field(init=False)

    @failures.default
    def _count_failures(self) -> int:
        return sum(not result.ok for result in self.results)

    @property
    def bytes(self) -> int:
        return sum(result.size for result in self.results if result.ok)

    @property
    def client_cpu_share(self) -> float:
        """The client's CPU time as a share of one core over the batch."""
        return self.client_cpu / self.wall if self.wall > 0 else 0.0


class _Pacer:
    """Sleep so that bytes go at ``profile.rate``, with the profile's stalls."""

    def __init__(self, profile: ClientProfile, size: int) -> None:
        self.rate = profile.rate
        self.stalls = sorted((int(size * at), pause) for at, pause in profile.stalls)
        self.started = time.perf_counter()
        self.paused = 0.0

    def after(self, done: int) -> None:
        while self.stalls and done >= self.stalls[0][0]:
            pause = self.stalls.pop(0)[1]
            time.sleep(pause)
            self.paused += pause
        if self.rate is None:
            return
        due = self.started + self.paused + done / self.rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)


def _connect(slot: Slot, profile: ClientProfile) -> socket.socket:
    family = socket.AF_INET6 if ":" in slot.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # Buffer sizes must be set before connecting to shape the window.
    if profile.sndbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, profile.sndbuf)
    if profile.rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, profile.rcvbuf)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(SOCKET_TIMEOUT)
    sock.connect((slot.host, slot.port))
    return sock


def _head(method: str, target: str, slot: Slot, profile: ClientProfile) -> bytes:
    lines = [
        f"{method} {target} HTTP/1.1",
        f"Host: {slot.host_header}",
        f"User-Agent: {profile.user_agent}",
        "Connection: close",
    ]
    if method == "PUT":
        lines.append(f"Content-Length: {slot.size}")
        lines.append(f"Content-Type: {slot.content_type}")
        lines.extend(f"{name}: {value}" for name, value in slot.headers)
    lines.extend(f"{name}: {value}" for name, value in profile.headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _status(head: bytes) -> int:
    try:
        return int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0


def upload(
    slot: Slot, profile: ClientProfile = ClientProfile(), deadline: float | None = None
) -> Result:
    """PUT ``slot.size`` bytes to ``slot`` and read the whole answer.

    :param deadline: a ``time.perf_counter`` time at which to give up, closing
        the connection; the result then says how much was sent.
    """
    started = time.perf_counter()
    sent = 0
    try:
        with _connect(slot, profile) as sock:
            sock.sendall(_head("PUT", slot.put_target, slot, profile))
            pacer = _Pacer(profile, slot.size)
            chunk = profile.chunk_size()
            while sent < slot.size:
                if deadline is not None:
                    left = deadline - time.perf_counter()
                    if left <= 0:
                        raise TimeoutError(STOPPED)
                    sock.settimeout(min(SOCKET_TIMEOUT, left))
                count = min(chunk, slot.size - sent, BLOCK_SIZE)
                sock.sendall(_BLOCK[:count])
                sent += count
                pacer.after(sent)
            sock.settimeout(SOCKET_TIMEOUT)
            answer = bytearray()
            while piece := sock.recv(65536):
                answer += piece
    except OSError as error:
        finished = time.perf_counter()
        late = deadline is not None and finished >= deadline
        reason = STOPPED if late else repr(error)
        return Result(False, 0, slot.size, started, finished, reason, sent)
    status = _status(bytes(answer[:32]))
    ok = 200 <= status < 300
    error = "" if ok else bytes(answer[:200]).decode("latin-1")
    return Result(ok, status, slot.size, started, time.perf_counter(), error, sent)


def download(slot: Slot, profile: ClientProfile = ClientProfile()) -> Result:
    """GET ``slot.get_target`` and read the body to its end."""
    started = time.perf_counter()
    body = -1
    buffer = bytearray(max(profile.chunk_size(), 65536))
    view = memoryview(buffer)
    try:
        with _connect(slot, profile) as sock:
            sock.sendall(_head("GET", slot.get_target, slot, profile))
            pacer = _Pacer(profile, slot.size)
            head = bytearray()
            while count := sock.recv_into(view, profile.chunk_size()):
                if body < 0:
                    head += view[:count]
                    end = head.find(b"\r\n\r\n")
                    if end >= 0:
                        body = len(head) - end - 4
                else:
                    body += count
                pacer.after(max(body, 0))
    except OSError as error:
        finished = time.perf_counter()
        got = max(body, 0)
        return Result(False, 0, slot.size, started, finished, repr(error), got)
    status = _status(bytes(head[:32]))
    ok = 200 <= status < 300 and body == slot.size
    error = "" if ok else f"status {status}, {body} body bytes"
    finished = time.perf_counter()
    return Result(ok, status, slot.size, started, finished, error, max(body, 0))


def run_together(
    jobs: Sequence[Callable[[], Result]], concurrency: int, stagger: float = 0.0
) -> Batch:
    """Run ``jobs`` on ``concurrency`` threads; the i-th waits ``i * stagger``.

    Staggering spreads the opening of many connections over a moment, as
    clients arrive in life, rather than overflowing a listen backlog at once.
    """
    cpu_before = own_cpu_seconds()
    origin = time.perf_counter()

    def run(index: int) -> Result:
        delay = origin + index * stagger - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        return jobs[index]()

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        results = tuple(pool.map(run, range(len(jobs))))

    client_cpu = own_cpu_seconds() - cpu_before
    if not results:
        return Batch((), 0.0, client_cpu)
    wall = max(r.finished for r in results) - min(r.started for r in results)
    return Batch(results, wall, client_cpu)


def run_in_background(
    jobs: Sequence[Callable[[], Result]], concurrency: int, stagger: float = 0.0
) -> Callable[[], Batch]:
    """Start :func:`run_together` in a thread; call the result to wait for it."""
    finished: list[Batch] = []
    thread = threading.Thread(
        target=lambda: finished.append(run_together(jobs, concurrency, stagger)),
        daemon=True,
    )
    thread.start()

    def wait() -> Batch:
        thread.join()
        return finished[0]

    return wait


def percentile(values: Sequence[float], fraction: float) -> float:
    """The value below which ``fraction`` of ``values`` lie (nearest rank)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]
