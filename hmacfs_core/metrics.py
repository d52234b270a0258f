"""The Prometheus collectors, in one registry owned by the app.

Every transfer family is labelled by pipeline arm (``baseline``/``adaptive``),
direction and client class, so a dashboard can set the two arms side by side.
A registry per app keeps several servers in one process (tests, host sites)
apart.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Callable

from attrs import define, field
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from hmacfs_core.transfer import Outcome, Transfer

#: Transfer durations from a photo on a LAN to a film over a weak phone link.
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)
#: Throughput in bytes/s, from a stalled phone to loopback.
THROUGHPUT_BUCKETS = tuple(float(2**n) for n in range(14, 34, 2))
#: The buffer pool sizes, 16 KiB to 4 MiB.
BUFFER_BUCKETS = tuple(float(2**n) for n in range(14, 23))

#: Transfers smaller than this measure latency, not throughput.
GAIN_MIN_BYTES = 256 * 1024
#: Successful transfers per arm and direction the gain is computed over.
GAIN_WINDOW = 500

TRANSFER_LABELS = ("arm", "direction", "client_class")


@define
class GainTracker:
    """The measured gain of the adaptive arm: median throughputs compared.

    Read at scrape time, so it costs nothing per transfer but an append.
    """

    samples: dict[tuple[str, str], deque[float]] = field(factory=dict)

    def record(self, transfer: Transfer, outcome: Outcome) -> None:
        if not outcome.succeeded or outcome.bytes < GAIN_MIN_BYTES:
            return
        key = (transfer.arm, transfer.direction)
        self.samples.setdefault(key, deque(maxlen=GAIN_WINDOW)).append(
            outcome.throughput
        )

    def ratio(self, direction: str) -> float:
        """Adaptive median over baseline median; NaN until both arms have data,
        so that an alert on a low gain cannot fire on no data."""
        adaptive = self.samples.get(("adaptive", direction))
        baseline = self.samples.get(("baseline", direction))
        if not adaptive or not baseline:
            return math.nan
        base = statistics.median(baseline)
        return statistics.median(adaptive) / base if base else math.nan


@define
class Metrics:
    """Every metric of one app."""

    registry: CollectorRegistry = field(factory=CollectorRegistry)
    gain: GainTracker = field(factory=GainTracker)
    plugin_errors: Counter = field(init=False)
    transfer_duration: Histogram = field(init=False)
    transfer_throughput: Histogram = field(init=False)
    transfer_bytes: Counter = field(init=False)
    transfer_errors: Counter = field(init=False)
    refusals: Counter = field(init=False)
    active_transfers: Gauge = field(init=False)
    buffer_optimizations: Counter = field(init=False)
    plan_buffer: Histogram = field(init=False)
    plan_idle_timeout: Histogram = field(init=False)
    rollbacks: Counter = field(init=False)
    adaptive_gain: Gauge = field(init=False)

    def __attrs_post_init__(self) -> None:
        registry = self.registry
        self.plugin_errors = Counter(
            "hmacfs_plugin_errors",
            "Plugin hook calls that raised and were skipped.",
            ["plugin", "hook"],
            registry=registry,
        )
        self.transfer_duration = Histogram(
            "hmacfs_transfer_duration_seconds",
            "Time from a transfer's headers to its end.",
            TRANSFER_LABELS,
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.transfer_throughput = Histogram(
            "hmacfs_transfer_throughput_bytes_per_second",
            "Body bytes per second over whole transfers.",
            TRANSFER_LABELS,
            buckets=THROUGHPUT_BUCKETS,
            registry=registry,
        )
        self.transfer_bytes = Counter(
            "hmacfs_transfer_bytes",
            "Body bytes moved by transfers.",
            TRANSFER_LABELS,
            registry=registry,
        )
        self.transfer_errors = Counter(
            "hmacfs_transfer_errors",
            "Transfers that failed after authorization, by reason.",
            [*TRANSFER_LABELS, "reason"],
            registry=registry,
        )
        self.refusals = Counter(
            "hmacfs_upload_refusals",
            "Uploads refused from their headers, by status code.",
            ["code"],
            registry=registry,
        )
        self.active_transfers = Gauge(
            "hmacfs_active_transfers",
            "Transfers running now.",
            ["direction"],
            registry=registry,
        )
        self.buffer_optimizations = Counter(
            "hmacfs_buffer_optimizations",
            "Adaptive plans whose buffer differs from the initial one, and "
            "mid-transfer re-plans.",
            ["direction"],
            registry=registry,
        )
        self.plan_buffer = Histogram(
            "hmacfs_plan_buffer_bytes",
            "The buffer each transfer used (write buffer for uploads, chunk "
            "for downloads).",
            ["arm", "direction"],
            buckets=BUFFER_BUCKETS,
            registry=registry,
        )
        self.plan_idle_timeout = Histogram(
            "hmacfs_plan_idle_timeout_seconds",
            "The idle timeout each transfer ran with.",
            ["arm", "direction"],
            buckets=(10, 30, 60, 120, 300, 600, 1800, 3600),
            registry=registry,
        )
        self.rollbacks = Counter(
            "hmacfs_rollbacks",
            "Times a monitor switched the adaptive arm off.",
            registry=registry,
        )
        self.adaptive_gain = Gauge(
            "hmacfs_adaptive_gain_ratio",
            "Median throughput of adaptive over baseline transfers of at least "
            "256 KiB, over the last 500 of each; NaN until both arms have some.",
            ["direction"],
            registry=registry,
        )
        for direction in ("upload", "download"):
            self.adaptive_gain.labels(direction=direction).set_function(
                self._gain_reader(direction)
            )

    def _gain_reader(self, direction: str) -> Callable[[], float]:
        """The gain of ``direction`` as read at each scrape."""
        return lambda: self.gain.ratio(direction)

    def record_transfer(self, transfer: Transfer, outcome: Outcome) -> None:
        """Count one finished transfer in every family it belongs to."""
        labels = {
            "arm": transfer.arm,
            "direction": transfer.direction,
            "client_class": transfer.client_class or "unknown",
        }
        self.transfer_duration.labels(**labels).observe(outcome.seconds)
        self.transfer_bytes.labels(**labels).inc(outcome.bytes)
        if outcome.succeeded:
            self.transfer_throughput.labels(**labels).observe(outcome.throughput)
        else:
            self.transfer_errors.labels(**labels, reason=outcome.reason).inc()

        plan = transfer.plan
        if plan is not None:
            buffer = (
                plan.write_buffer_size
                if transfer.direction == "upload"
                else plan.chunk_size
            )
            arm_labels = {"arm": transfer.arm, "direction": transfer.direction}
            self.plan_buffer.labels(**arm_labels).observe(buffer)
            self.plan_idle_timeout.labels(**arm_labels).observe(plan.idle_timeout)
        self.gain.record(transfer, outcome)
