"""What the plugin chain costs per transfer: all built-ins against none.

Run: ``python bench/hook_overhead.py``. Each round plans, applies and finishes
one adaptive upload on a real connected socket, through the real pipeline,
once with every built-in plugin enabled and once with none; the difference of
the medians is the plugins' overhead per transfer. Nothing runs per chunk, so
this is the whole of it.
"""

from __future__ import annotations

import socket
import statistics
import time

from attrs import define, field
from twisted.internet.task import Clock
from twisted.web.http_headers import Headers

from hmacfs_core.app import App
from hmacfs_core.config import BUILTIN_PLUGINS, parse_config
from hmacfs_core.transfer import Outcome

ROUNDS = 2000
TRIALS = 7


@define
class _Address:
    host: str = "192.0.2.10"


@define
class _Transport:
    sock: socket.socket
    bufferSize: int = 65536

    def getHandle(self) -> socket.socket:
        return self.sock


@define
class _Channel:
    transport: _Transport
    timeOut: float = 60.0

    def setTimeout(self, timeout: float) -> None:
        self.timeOut = timeout


@define
class _Request:
    """Just what the pipeline reads of a request, on a real socket."""

    channel: _Channel
    requestHeaders: Headers = field(
        factory=lambda: Headers({b"user-agent": [b"Conversations/2.16.3 (Android 14)"]})
    )
    received_bytes: int = 0
    sentLength: int = 0

    def getHeader(self, name: bytes) -> bytes | None:
        values = self.requestHeaders.getRawHeaders(name)
        return values[-1] if values else None

    def getClientAddress(self) -> _Address:
        return _Address()


def _app(plugins: tuple[str, ...]) -> App:
    disabled = ", ".join(f'"{name}"' for name in BUILTIN_PLUGINS if name not in plugins)
    config = parse_config(
        "[performance]\nadaptive_buffers = true\nfully_adaptive = true\n"
        f"[plugins]\ndisabled = [{disabled}]\n"
    )
    return App(config=config, secret=b"s", reactor=Clock())


def _per_transfer(app: App, request: _Request) -> float:
    outcome = Outcome(True, 201, "ok", 300_000, 0.05)
    started = time.perf_counter()
    for _ in range(ROUNDS):
        run = app.pipeline.start(request, "upload", "a/b.jpg", 300_000, "image/jpeg")
        run.apply()
        run.finish(outcome)
    return (time.perf_counter() - started) / ROUNDS


def main() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    client = socket.create_connection(server.getsockname())
    accepted, _ = server.accept()
    request = _Request(_Channel(_Transport(accepted)))

    bare, full = _app(()), _app(BUILTIN_PLUGINS)
    bare_times, full_times = [], []
    for _ in range(TRIALS):
        bare_times.append(_per_transfer(bare, request))
        full_times.append(_per_transfer(full, request))

    bare_median = statistics.median(bare_times) * 1e6
    full_median = statistics.median(full_times) * 1e6
    print(f"pipeline, no plugins        {bare_median:7.1f} µs per transfer")
    print(f"pipeline, all built-ins     {full_median:7.1f} µs per transfer")
    print(
        f"plugin overhead             {full_median - bare_median:7.1f} µs per transfer"
    )
    print("hook calls per chunk              0 (progress runs on a timer)")
    for sock in (client, accepted, server):
        sock.close()


if __name__ == "__main__":
    main()
