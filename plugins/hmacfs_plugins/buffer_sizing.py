"""The built-in ``buffer_sizing`` strategy: learn which buffer size moves bytes
fastest, from the throughput transfers really reach.

No fixed table can know which buffer suits a phone on LTE or a server on a data
centre link, so the plugin measures: every adaptive transfer runs with one size
from a small pool (16 KiB to 1 MiB, doubling, inside ``[performance]
min_buffer_size .. max_buffer_size``), and its throughput is credited to that size.
Each context, a ``(direction, client class, network)`` triple, learns on its own,
so mobile clients never inherit what desktops taught.

How a size is chosen for a context:

1. with nothing measured yet, ``[performance] initial_buffer_size`` (snapped to the
   nearest pool size);
2. while a size has fewer than three measurements (or fewer than
   ``performance_history_samples``, if that is smaller), it is tried next, the
   neighbours of the best size so far first;
3. then the size with the best moving average over the last
   ``performance_history_samples`` measurements, except that every tenth transfer
   of the context tries a neighbour of it, so that a change in conditions is seen.

A context on a known network kind chooses only among sizes up to that network's
``[network_interfaces.<kind>] buffer_size`` (uploads) or ``chunk_size``
(downloads): those are caps (``network_policy`` applies them), and this plugin,
which runs last, must not undo them.

A transfer smaller than the chosen size gets the smallest pool size that holds it:
a buffer larger than the file only costs memory.

Measurements come from two hooks: each progress sample of a running transfer
(credited to the size in use during it), and the outcome of a successful adaptive
transfer of at least 64 KiB, when one size was used from start to end. While a
transfer runs, a size whose average is more than 10% better than the one in use
replaces it for the rest of the transfer.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import Any

from attrs import define, field

from hmacfs_core import Outcome, ProgressSample, Transfer, TransferPlan, hookimpl
from hmacfs_core.config import NetworkInterfacesConfig
from hmacfs_core.transfer import NETWORK_KINDS
from hmacfs_core.units import KiB, MiB

#: The sizes the learner chooses among, before ``[performance]`` bounds them.
POOL = (16 * KiB, 32 * KiB, 64 * KiB, 128 * KiB, 256 * KiB, 512 * KiB, 1 * MiB)

#: Measurements a size needs before its average is trusted against the others.
TRUSTED_SAMPLES = 3

#: One transfer in this many, once every size is trusted, tries a neighbour of
#: the best size instead. A counter, not chance, so that runs are reproducible.
EXPLORE_EVERY = 10

#: How much better (as a ratio of averages) another size must be to replace the
#: one a running transfer uses; switching on noise would only churn buffers.
CLEARLY_BETTER = 1.10

#: Transfers smaller than this measure round trips, not throughput.
MIN_MEASURED_BYTES = 64 * KiB

#: This plugin's key in ``Transfer.notes``: the size a transfer's outcome is
#: credited to, or None when it measures no single learned size.
NOTE_KEY = "buffer_sizing"

Context = tuple[str, str | None, str | None]


@define
class ContextLearner:
    """What one context has measured, and how it picks its next size.

    :ivar pool: the sizes this context may use, smallest first.
    :ivar initial: the size it starts with, before any measurement.
    :ivar length: how many throughputs per size are kept and averaged.
    :ivar samples: per size, bytes per second, oldest first.
    :ivar exploit_turns: transfers planned since every size became trusted; every
        ``EXPLORE_EVERY``-th of them explores.
    """

    pool: tuple[int, ...]
    initial: int
    length: int
    samples: dict[int, deque[float]] = field(factory=dict)
    exploit_turns: int = 0

    def record(self, size: int, throughput: float) -> None:
        """Add a measurement; the oldest one of ``size`` drops out when full."""
        kept = self.samples.setdefault(size, deque(maxlen=self.length))
        kept.append(throughput)

    def count(self, size: int) -> int:
        return len(self.samples.get(size, ()))

    def average(self, size: int) -> float | None:
        kept = self.samples.get(size)
        return sum(kept) / len(kept) if kept else None

    def best(self) -> int:
        """The pool size with the best average (the smaller on a tie), or the
        initial size while none is measured."""
        averages = {
            size: sum(kept) / len(kept)
            for size in self.pool
            if (kept := self.samples.get(size))
        }
        if not averages:
            return self.initial
        return max(averages, key=lambda size: (averages[size], -size))

    def next_size(self) -> int:
        """The size for the next transfer: initial, untried, best or explored."""
        counts = {size: len(self.samples.get(size, ())) for size in self.pool}
        if not any(counts.values()):
            return self.initial
        best = self.best()

        trusted = min(TRUSTED_SAMPLES, self.length)
        untried = [size for size in self.pool if counts[size] < trusted]
        if untried:
            return min(untried, key=lambda size: (self._distance(size, best), size))

        self.exploit_turns += 1
        if self.exploit_turns % EXPLORE_EVERY:
            return best
        return self._neighbour(best, self.exploit_turns // EXPLORE_EVERY)

    def fit(self, size: int, file_size: int | None) -> int:
        """``size``, or the smallest pool size that holds a smaller file."""
        if file_size is None or file_size >= size:
            return size
        return next(candidate for candidate in self.pool if candidate >= file_size)

    def reconfigure(self, pool: tuple[int, ...], initial: int, length: int) -> None:
        """Take new bounds and history length, keeping the latest measurements."""
        self.pool, self.initial, self.length = pool, initial, length
        self.samples = {
            size: deque(kept, maxlen=length) for size, kept in self.samples.items()
        }

    def _neighbour(self, size: int, turn: int) -> int:
        """The pool size below or above ``size``, alternating with ``turn``."""
        index = self.pool.index(size)
        around = self.pool[max(0, index - 1) : index] + self.pool[index + 1 : index + 2]
        return around[turn % len(around)] if around else size

    def _distance(self, size: int, other: int) -> int:
        return abs(self.pool.index(size) - self.pool.index(other))


@define
class BufferSizing:
    """Choose each adaptive transfer's buffer size from measured throughput.

    Instantiated once per app: the measurements live here and survive reloads,
    which only change the bounds and the history's length.
    """

    _pool: tuple[int, ...] = POOL
    _initial: int = 64 * KiB
    _history_length: int = 50
    _networks: NetworkInterfacesConfig = field(factory=NetworkInterfacesConfig)
    _contexts: dict[Context, ContextLearner] = field(factory=dict, repr=False)

    @hookimpl
    def hmacfs_configure(self, app: Any, settings: Mapping[str, Any]) -> None:
        """Read the bounds, network caps and history length from the config.

        :param settings: must be empty: everything this plugin reads is in
            ``[performance]`` and ``[network_interfaces]``, which the core and
            ``network_policy`` read too.
        :raises ValueError: for any ``[plugins.buffer_sizing]`` key.
        """
        if settings:
            raise ValueError(
                f"takes no settings (found {', '.join(sorted(settings))}); "
                "it reads [performance] min_buffer_size, max_buffer_size, "
                "initial_buffer_size and performance_history_samples"
            )

        performance = app.config.performance
        low, high = performance.min_buffer_size, performance.max_buffer_size
        self._initial = performance.initial_buffer_size
        # Bounds that no pool size fits (say 20..30 KiB) leave one choice.
        self._pool = tuple(size for size in POOL if low <= size <= high) or (
            self._initial,
        )
        self._history_length = performance.performance_history_samples
        self._networks = app.config.network_interfaces

        for context, learner in self._contexts.items():
            fresh = self._new_learner(context)
            learner.reconfigure(fresh.pool, fresh.initial, fresh.length)

    @hookimpl(trylast=True)
    def hmacfs_plan_transfer(self, transfer: Transfer, plan: TransferPlan) -> None:
        """Set the plan's buffer to the size the learner picks for this context.

        Runs last: strategy plugins set the plan from what they know of the client
        and network, and this one replaces the buffer with what was measured,
        within the network's cap.
        """
        learner = self._learner(_context_of(transfer))
        chosen = learner.next_size()
        size = learner.fit(chosen, transfer.size)

        # A transfer cut short by the file size measures the file, not the
        # learner's choice: its outcome is credited to no size.
        transfer.notes[NOTE_KEY] = size if size == chosen else None
        _set_size(transfer, plan, size)

    @hookimpl
    def hmacfs_transfer_progress(
        self, transfer: Transfer, sample: ProgressSample
    ) -> None:
        """Credit the sample to the size in use, and switch to a clearly better one.

        The pipeline calls this once per ``buffer_optimization_interval``, which
        is therefore also how often a running transfer may change size.
        """
        if NOTE_KEY not in transfer.notes or transfer.plan is None:
            return
        # A stalled interval measures the client, not the buffer.
        if sample.bytes_interval <= 0 or sample.seconds_interval <= 0:
            return

        learner = self._learner(_context_of(transfer))
        in_use = _size_in_use(transfer, transfer.plan)
        learner.record(in_use, sample.throughput)

        best = learner.best()
        best_average = learner.average(best) or 0.0
        if best_average <= (learner.average(in_use) or 0.0) * CLEARLY_BETTER:
            return
        size = learner.fit(best, transfer.size)
        if size != in_use:
            # The whole-transfer outcome now mixes two sizes.
            transfer.notes[NOTE_KEY] = None
            _set_size(transfer, transfer.plan, size)

    @hookimpl
    def hmacfs_transfer_finished(self, transfer: Transfer, outcome: Outcome) -> None:
        """Credit a successful adaptive transfer's throughput to its size.

        Only when one size, chosen by the learner, ran it from start to end, and
        only for 64 KiB or more: failures and tiny files say nothing about speed.
        """
        if transfer.arm != "adaptive" or transfer.plan is None:
            return
        if not outcome.succeeded or outcome.bytes < MIN_MEASURED_BYTES:
            return
        size = transfer.notes.get(NOTE_KEY)
        if size is None or size != _size_in_use(transfer, transfer.plan):
            return

        self._learner(_context_of(transfer)).record(size, outcome.throughput)

    def choice(
        self, direction: str, client_class: str | None, network: str | None
    ) -> int:
        """The size the context would use now when not exploring.

        :return: the pool size with the best average, or the initial size when
            the context has measured nothing yet.
        """
        context = (direction, client_class, network)
        return (self._contexts.get(context) or self._new_learner(context)).best()

    def averages(
        self, direction: str, client_class: str | None, network: str | None
    ) -> dict[int, float]:
        """Average throughput (bytes/s) of every size the context has measured."""
        learner = self._contexts.get((direction, client_class, network))
        if learner is None:
            return {}
        return {size: learner.average(size) or 0.0 for size in sorted(learner.samples)}

    def _learner(self, context: Context) -> ContextLearner:
        learner = self._contexts.get(context)
        if learner is None:
            learner = self._contexts[context] = self._new_learner(context)
        return learner

    def _new_learner(self, context: Context) -> ContextLearner:
        direction, _, network = context
        pool = self._pool
        if network in NETWORK_KINDS:
            limits = getattr(self._networks, network)
            cap = limits.buffer_size if direction == "upload" else limits.chunk_size
            pool = tuple(size for size in pool if size <= cap) or pool[:1]
        return ContextLearner(pool, _nearest(self._initial, pool), self._history_length)


def _context_of(transfer: Transfer) -> Context:
    return (transfer.direction, transfer.client_class, transfer.network)


def _size_in_use(transfer: Transfer, plan: TransferPlan) -> int:
    return plan.write_buffer_size if transfer.direction == "upload" else plan.chunk_size


def _set_size(transfer: Transfer, plan: TransferPlan, size: int) -> None:
    if transfer.direction == "upload":
        plan.read_size = size
        plan.write_buffer_size = size
    else:
        plan.chunk_size = size


def _nearest(size: int, pool: tuple[int, ...]) -> int:
    """The pool size closest to ``size`` by ratio (the pool doubles per step)."""
    return min(
        pool, key=lambda candidate: (abs(math.log2(candidate / size)), candidate)
    )
