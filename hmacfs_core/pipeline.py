"""Run the plugin hooks for one transfer and apply the plan to the real I/O.

Per transfer, once, when its headers are in: choose the arm, classify the
client, detect the network, let every plugin adjust the plan, clamp it, and set
it on the socket (read size, ``SO_RCVBUF``/``SO_SNDBUF``), the staged file's
writer, the download producer and the timeouts. While the transfer runs, a timer
hands throughput samples to the plugins every
``[performance] buffer_optimization_interval``; nothing runs per chunk.

A baseline transfer (``adaptive_buffers = false``, or the rollout says so) runs
only the finished hook, so monitors see baseline outcomes too; its plan is the
baseline, applied by nobody, which is exactly the core server's behaviour.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable
from typing import Any, cast

import attrs
from attrs import define, field
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.web.server import Request

from hmacfs_core.config import Config
from hmacfs_core.engine_events import (
    decisions_level,
    log_client_profile,
    log_decisions,
    log_plan_change,
    log_transfer_detail,
)
from hmacfs_core.metrics import Metrics
from hmacfs_core.plugins import PluginHooks
from hmacfs_core.rollout import adaptive_allowed, default_arm
from hmacfs_core.tcpinfo import read_tcp_stats
from hmacfs_core.transfer import (
    Arm,
    Direction,
    Outcome,
    ProgressSample,
    Transfer,
    TransferPlan,
)

#: ``Retry-After`` for server-side upload failures before any multiplier.
BASELINE_RETRY_AFTER = 10.0

#: How far socket buffers may exceed ``max_buffer_size`` (see :func:`clamp_plan`).
SOCKET_BUFFER_FACTOR = 4

#: Bounds of the plan fields that ``[performance]`` does not bound.
IDLE_TIMEOUT_BOUNDS = (1.0, 24 * 3600.0)
RETRY_AFTER_BOUNDS = (1.0, 3600.0)


def baseline_plan(config: Config) -> TransferPlan:
    """The core server's plan: ``[server]``, ``[uploads]`` and ``[downloads]``."""
    return TransferPlan(
        read_size=config.uploads.read_size,
        socket_receive_buffer=None,
        socket_send_buffer=None,
        write_buffer_size=config.uploads.write_buffer_size,
        chunk_size=config.downloads.chunk_size,
        idle_timeout=config.server.idle_timeout,
        retry_after=BASELINE_RETRY_AFTER,
    )


def adaptive_start_plan(config: Config) -> TransferPlan:
    """Where an adaptive plan starts: the baseline with ``initial_buffer_size``."""
    initial = config.performance.initial_buffer_size
    return TransferPlan(
        read_size=initial,
        socket_receive_buffer=None,
        socket_send_buffer=None,
        write_buffer_size=initial,
        chunk_size=initial,
        idle_timeout=config.server.idle_timeout,
        retry_after=BASELINE_RETRY_AFTER,
    )


def clamp_plan(config: Config, plan: TransferPlan) -> TransferPlan:
    """``plan`` with every field inside the configured bounds.

    Socket buffers are kernel memory sized to the bandwidth-delay product, not
    per-transfer Python memory, so they may reach ``SOCKET_BUFFER_FACTOR`` times
    ``max_buffer_size``.
    """
    low = config.performance.min_buffer_size
    high = config.performance.max_buffer_size

    def buffer(value: int) -> int:
        return max(low, min(high, int(value)))

    def optional_buffer(value: int | None) -> int | None:
        if value is None:
            return None
        return max(low, min(high * SOCKET_BUFFER_FACTOR, int(value)))

    return TransferPlan(
        read_size=buffer(plan.read_size),
        socket_receive_buffer=optional_buffer(plan.socket_receive_buffer),
        socket_send_buffer=optional_buffer(plan.socket_send_buffer),
        write_buffer_size=buffer(plan.write_buffer_size),
        chunk_size=buffer(plan.chunk_size),
        idle_timeout=_between(plan.idle_timeout, IDLE_TIMEOUT_BOUNDS),
        retry_after=_between(plan.retry_after, RETRY_AFTER_BOUNDS),
    )


def _tcp_peer(request: Request) -> str:
    """The TCP peer's address; the app swaps in one that trusts proxies."""
    address = request.getClientAddress()
    return str(getattr(address, "host", address))


@define
class Pipeline:
    """The hook chain of one app.

    :param config: the configuration in force (replaced on reload).
    :param hooks: the loaded plugins.
    :param clock: the reactor, for sampling timers.
    """

    config: Config
    hooks: PluginHooks
    clock: Any
    metrics: Metrics | None = None
    client_address: Callable[[Request], str] = _tcp_peer
    log: Logger = field(factory=lambda: Logger(namespace="hmacfs.pipeline"))

    def start(
        self,
        request: Request,
        direction: Direction,
        path: str,
        size: int | None,
        content_type: str | None,
        route: str = "slot",
    ) -> TransferRun:
        """Decide the plan of a transfer whose headers are in."""
        transfer = Transfer(
            id=os.urandom(8).hex(),
            direction=direction,
            path=path,
            size=size,
            content_type=content_type,
            user_agent=_header(request, b"user-agent") or "",
            peer=self.client_address(request),
            headers=_headers(request),
            tcp=None,
            started=time.monotonic(),
            route=route,
        )
        run = TransferRun(pipeline=self, transfer=transfer, request=request)
        transfer.arm = self._choose_arm(run)
        if transfer.arm == "baseline":
            transfer.plan = baseline_plan(self.config)
        else:
            self._plan_adaptive(run)
        return run

    def _choose_arm(self, run: TransferRun) -> Arm:
        """Flags first, then the plugins (a rollback monitor), then the rollout."""
        transfer = run.transfer
        performance = self.config.performance
        if not adaptive_allowed(performance, transfer):
            return "baseline"

        chosen, by = self.hooks.call_first("hmacfs_choose_arm", transfer=transfer)
        if chosen in ("baseline", "adaptive"):
            run.decided_by["arm"] = by
            return cast(Arm, chosen)
        return default_arm(performance, transfer)

    def _plan_adaptive(self, run: TransferRun) -> None:
        transfer = run.transfer
        performance = self.config.performance
        transfer.tcp = read_tcp_stats(_socket_of(run.request))

        if performance.client_profiling:
            transfer.client_class, run.decided_by["client_class"] = (
                self.hooks.call_first("hmacfs_classify_client", transfer=transfer)
            )
        if performance.connection_type_detection:
            transfer.network, run.decided_by["network"] = self.hooks.call_first(
                "hmacfs_detect_network", transfer=transfer
            )
        if self.config.logging.client_profile_logging:
            log_client_profile(self.log, run)

        plan = adaptive_start_plan(self.config)
        transfer.plan = plan
        self.hooks.call_all(
            "hmacfs_plan_transfer",
            transfer=transfer,
            plan=plan,
            after_each=run.note_changes if run.debug else None,
        )
        run.unclamped = plan.copy()
        transfer.plan = clamp_plan(self.config, plan)
        if self.metrics is not None and _buffer_of(transfer) != (
            self.config.performance.initial_buffer_size
        ):
            self.metrics.buffer_optimizations.labels(direction=transfer.direction).inc()


@define
class TransferRun:
    """One transfer on its way: its plan applied, sampled, and reported."""

    pipeline: Pipeline
    transfer: Transfer
    request: Request
    decided_by: dict[str, str | None] = field(factory=dict)
    set_by: dict[str, str] = field(factory=dict)
    unclamped: TransferPlan | None = None
    applied: dict[str, object] = field(factory=dict)
    set_writer_buffer: Callable[[int], None] | None = None
    set_chunk_size: Callable[[int], None] | None = None
    set_idle_timeout: Callable[[float], None] | None = None
    readers: dict[str, Callable[[], object]] = field(factory=dict)
    _sampler: IDelayedCall | None = None
    _last_sample: tuple[int, float] = (0, 0.0)
    _applied_plan: TransferPlan | None = None
    replans: int = 0
    _finished: bool = False

    @property
    def plan(self) -> TransferPlan:
        assert self.transfer.plan is not None
        return self.transfer.plan

    @property
    def adaptive(self) -> bool:
        return self.transfer.arm == "adaptive"

    @property
    def debug(self) -> bool:
        """Whether this transfer's decisions are logged (and so read back)."""
        return decisions_level(self.pipeline.config.logging) is not None

    def note_changes(self, plugin: str, before: dict[str, Any], plan: Any) -> None:
        """Record which plugin set which plan field (debug logging only)."""
        for name, value in attrs.asdict(plan).items():
            if before[name] != value:
                self.set_by[name] = plugin

    def apply(self) -> None:
        """Set the plan on the socket, writer, producer and timeouts.

        The baseline arm is left exactly as the core server runs it.
        """
        if self.adaptive:
            self._apply_plan(self.plan)
            self._start_sampling()
        elif self.transfer.direction == "upload":
            # The core's own read size (Twisted reads 64 KiB by default).
            transport = getattr(self.request.channel, "transport", None)
            if transport is not None:
                transport.bufferSize = self.plan.read_size
        if self.debug:
            self._read_back()

    def bytes_moved(self) -> int:
        if self.transfer.direction == "upload":
            return int(getattr(self.request, "received_bytes", 0))
        return int(self.request.sentLength)

    def finish(self, outcome: Outcome) -> None:
        """Stop sampling and tell every plugin how the transfer ended."""
        if self._finished:
            return
        self._finished = True
        if self._sampler is not None and self._sampler.active():
            self._sampler.cancel()
        self.pipeline.hooks.call_all(
            "hmacfs_transfer_finished", transfer=self.transfer, outcome=outcome
        )
        logging = self.pipeline.config.logging
        level = decisions_level(logging)
        if level is not None:
            # The socket is gone by now; what the writer or producer ended with
            # is still there to read.
            self.applied.update({name: read() for name, read in self.readers.items()})
            log_decisions(self.pipeline.log, self, outcome, level)
        if logging.detailed_logging:
            log_transfer_detail(self.pipeline.log, self, outcome)

    def _apply_plan(self, plan: TransferPlan) -> None:
        transport = getattr(self.request.channel, "transport", None)
        if transport is not None and self.transfer.direction == "upload":
            transport.bufferSize = plan.read_size
        sock = _socket_of(self.request)
        if sock is not None:
            _set_buffer(sock, socket.SO_RCVBUF, plan.socket_receive_buffer)
            _set_buffer(sock, socket.SO_SNDBUF, plan.socket_send_buffer)
        if self.set_writer_buffer is not None:
            self.set_writer_buffer(plan.write_buffer_size)
        if self.set_chunk_size is not None:
            self.set_chunk_size(plan.chunk_size)
        if self.set_idle_timeout is not None:
            self.set_idle_timeout(plan.idle_timeout)
        self._applied_plan = plan.copy()

    def _read_back(self) -> None:
        """What the connection really uses now, for the debug log and tests."""
        transport = getattr(self.request.channel, "transport", None)
        sock = _socket_of(self.request)
        self.applied = {
            **{name: read() for name, read in self.readers.items()},
            "read_size": getattr(transport, "bufferSize", None),
            "so_rcvbuf": sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
            if sock
            else None,
            "so_sndbuf": sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
            if sock
            else None,
        }

    def _start_sampling(self) -> None:
        if not self.pipeline.hooks.has("hmacfs_transfer_progress"):
            return
        self._last_sample = (self.bytes_moved(), time.monotonic())
        self._schedule_sample()

    def _schedule_sample(self) -> None:
        # One delayed call per interval: a LoopingCall costs several times as
        # much to start, and most transfers end before their first sample.
        interval = self.pipeline.config.performance.buffer_optimization_interval
        self._sampler = self.pipeline.clock.callLater(interval, self._sample)

    def _sample(self) -> None:
        self._schedule_sample()
        moved, now = self.bytes_moved(), time.monotonic()
        last_moved, last_time = self._last_sample
        self._last_sample = (moved, now)
        sample = ProgressSample(
            bytes_total=moved,
            seconds_total=now - self.transfer.started,
            bytes_interval=moved - last_moved,
            seconds_interval=now - last_time,
        )
        self.pipeline.hooks.call_all(
            "hmacfs_transfer_progress", transfer=self.transfer, sample=sample
        )
        self.apply_changes()

    def apply_changes(self) -> None:
        """Clamp and apply a plan a plugin changed while the transfer runs."""
        if self.adaptive and self.transfer.plan != self._applied_plan:
            self.transfer.plan = clamp_plan(self.pipeline.config, self.plan)
            self._apply_plan(self.plan)
            self.replans += 1
            if self.pipeline.metrics is not None:
                self.pipeline.metrics.buffer_optimizations.labels(
                    direction=self.transfer.direction
                ).inc()
            if self.debug:
                self._read_back()
            if self.pipeline.config.logging.optimization_logging:
                log_plan_change(self.pipeline.log, self)


def _buffer_of(transfer: Transfer) -> int | None:
    """The buffer that matters for the direction: write buffer or chunk."""
    plan = transfer.plan
    if plan is None:
        return None
    return plan.write_buffer_size if transfer.direction == "upload" else plan.chunk_size


def _between(value: float, bounds: tuple[float, float]) -> float:
    low, high = bounds
    return max(low, min(high, float(value)))


def _set_buffer(sock: socket.socket, option: int, size: int | None) -> None:
    if size is not None:
        # The kernel caps the size (net.core.rmem_max); the read-back shows it.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, option, size)


def _socket_of(request: Request) -> socket.socket | None:
    transport = getattr(request.channel, "transport", None)
    get_handle = getattr(transport, "getHandle", None)
    handle = get_handle() if get_handle is not None else None
    return handle if isinstance(handle, socket.socket) else None


def _header(request: Request, name: bytes) -> str | None:
    raw = request.getHeader(name)
    return None if raw is None else raw.decode("latin-1")


def _headers(request: Request) -> dict[str, str]:
    return {
        name.decode("latin-1").lower(): values[-1].decode("latin-1")
        for name, values in request.requestHeaders.getAllRawHeaders()
    }
