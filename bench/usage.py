"""What a server process costs the machine, read from /proc.

CPU is the process's user and system time (all its threads); memory is the
kernel's high-water mark of resident memory, VmHWM, which the kernel resets on
request (``clear_refs``), so one long-lived server can be measured workload by
workload. A server of several processes (nginx's master and worker) is the sum
of its processes: for peak memory that is an upper bound, as the peaks need not
coincide.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from attrs import frozen

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_HWM = re.compile(r"VmHWM:\s+(\d+) kB")
_RSS = re.compile(r"VmRSS:\s+(\d+) kB")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds ``pid`` has used so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name, in parentheses, may hold spaces: split after it.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def _status_kib(pid: int, pattern: re.Pattern[str]) -> int:
    found = pattern.search(Path(f"/proc/{pid}/status").read_text())
    return int(found.group(1)) if found else 0


def peak_rss_bytes(pid: int) -> int:
    """The most resident memory ``pid`` has had since start or the last reset."""
    return _status_kib(pid, _HWM) * 1024


def rss_bytes(pid: int) -> int:
    """The resident memory of ``pid`` now."""
    return _status_kib(pid, _RSS) * 1024


def reset_peak_rss(pid: int) -> bool:
    """Make VmHWM start again from the current RSS; False where not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def children_of(pid: int) -> list[int]:
    """The direct children of ``pid`` (nginx's workers under its master)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.extend(int(child) for child in text)
    return found


@frozen
class Usage:
    """What some processes used between two readings.

    :ivar cpu_seconds: CPU time, user plus system, summed over the processes.
    :ivar peak_rss: the largest resident memory seen, in bytes: the sum of the
        processes' VmHWM, or of sampled RSS where VmHWM could not be reset.
    """

    cpu_seconds: float
    peak_rss: int


class UsageMeter:
    """Measure the CPU and peak memory of server processes over one workload.

    Use as a context manager around the workload; ``usage`` is set on exit.
    Besides VmHWM, RSS is sampled every ``interval`` seconds, which bounds the
    peak from below where the high-water mark cannot be reset.
    """

    def __init__(self, pids: Sequence[int], interval: float = 0.05) -> None:
        self.pids = list(pids)
        self.interval = interval
        self.usage: Usage | None = None
        self._sampled_peak = 0
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> UsageMeter:
        self._resettable = all(reset_peak_rss(pid) for pid in self.pids)
        self._cpu_before = sum(cpu_seconds(pid) for pid in self.pids)
        self._sampler.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._sampler.join()
        cpu = sum(cpu_seconds(pid) for pid in self.pids) - self._cpu_before
        hwm = sum(peak_rss_bytes(pid) for pid in self.pids)
        peak = hwm if self._resettable else self._sampled_peak
        self.usage = Usage(cpu_seconds=cpu, peak_rss=max(peak, self._sampled_peak))

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                total = sum(rss_bytes(pid) for pid in self.pids)
            except OSError:
                continue
            self._sampled_peak = max(self._sampled_peak, total)


def own_cpu_seconds() -> float:
    """CPU seconds of this process, every thread: the load generator's cost."""
    return time.process_time()
