"""Follow an upload across networks: the ``[handoff]`` part of ``network_policy``.

A phone that moves from Wi-Fi to LTE loses its connection and its address; its
client retries the same slot URL from the new network. Keyed by the upload's
path, the tracker notices that the retry comes from elsewhere (a *switch*),
keeps per-network throughput of each upload, and compares the new network with
the old one so the retry's plan fits where the phone is now.
"""

from __future__ import annotations

import statistics
from collections import OrderedDict, deque

from attrs import define, field, frozen

from hmacfs_core import Outcome, Transfer
from hmacfs_core.config import HandoffConfig

#: Uploads remembered at most; the oldest are forgotten first.
MAX_TRACKED_UPLOADS = 10_000
#: How much longer a retry just after a switch may idle when nothing has been
#: measured on the new network yet: a link that just came up often stalls.
UNMEASURED_SWITCH_TIMEOUT_SCALE = 2.0
#: The most a switch may stretch the idle timeout.
MAX_SWITCH_TIMEOUT_SCALE = 4.0


@frozen
class Attempt:
    """Where one attempt at an upload came from."""

    peer: str
    network: str | None
    at: float


@frozen
class Switch:
    """An upload retried from another address or network.

    :ivar old_throughput: mean bytes/s measured on the old network, if any.
    :ivar new_throughput: mean bytes/s measured before on the new one, if any.
    """

    path: str
    old: Attempt
    new: Attempt
    old_throughput: float | None
    new_throughput: float | None

    @property
    def timeout_scale(self) -> float:
        """How much to stretch the retry's idle timeout.

        A network measured slower than the old one gets the ratio of the two,
        an unmeasured one a fixed allowance; never less than 1, at most 4.
        """
        if self.old_throughput and self.new_throughput:
            scale = self.old_throughput / self.new_throughput
        else:
            scale = UNMEASURED_SWITCH_TIMEOUT_SCALE
        return max(1.0, min(MAX_SWITCH_TIMEOUT_SCALE, scale))


@define
class UploadHistory:
    """What one upload did so far: its last attempt and throughput per network."""

    last: Attempt
    throughput: dict[str, deque[float]] = field(factory=dict)

    def mean(self, network: str | None) -> float | None:
        samples = self.throughput.get(network or "unknown")
        return statistics.fmean(samples) if samples else None


@define
class HandoffTracker:
    """Notice switches and keep each upload's per-network throughput."""

    config: HandoffConfig = field(factory=HandoffConfig)
    uploads: OrderedDict[str, UploadHistory] = field(factory=OrderedDict)

    def observe(self, transfer: Transfer, now: float) -> Switch | None:
        """Record this attempt at an upload; return the switch it makes, if any."""
        if transfer.direction != "upload" or not self.config.seamless_switching:
            return None
        self._forget_older_than(now - self.config.performance_comparison_window)

        attempt = Attempt(transfer.peer, transfer.network, now)
        history = self.uploads.get(transfer.path)
        if history is None:
            self._remember(transfer.path, UploadHistory(last=attempt))
            return None

        previous, history.last = history.last, attempt
        self.uploads.move_to_end(transfer.path)
        if (previous.peer, previous.network) == (attempt.peer, attempt.network):
            return None
        return Switch(
            path=transfer.path,
            old=previous,
            new=attempt,
            old_throughput=history.mean(previous.network),
            new_throughput=history.mean(attempt.network),
        )

    def record(self, transfer: Transfer, outcome: Outcome) -> None:
        """Keep the throughput an attempt reached on its network."""
        history = self.uploads.get(transfer.path)
        if history is None or transfer.direction != "upload" or outcome.bytes == 0:
            return
        samples = history.throughput.setdefault(
            transfer.network or "unknown",
            deque(maxlen=self.config.interface_quality_history),
        )
        samples.append(outcome.throughput)

    def _remember(self, path: str, history: UploadHistory) -> None:
        self.uploads[path] = history
        while len(self.uploads) > MAX_TRACKED_UPLOADS:
            self.uploads.popitem(last=False)

    def _forget_older_than(self, horizon: float) -> None:
        while self.uploads:
            path, history = next(iter(self.uploads.items()))
            if history.last.at >= horizon:
                return
            del self.uploads[path]
