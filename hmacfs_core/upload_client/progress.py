"""What the person running ``hmacfs upload`` sees while the file goes.

A terminal gets one bar, redrawn in place with the rate and the time left; a
log file or a pipe gets a plain line at every tenth of the file, so that a
long upload neither floods it nor stays silent.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import TextIO


class Progress:
    """Bytes sent, on a redrawn line for a terminal, else one line per 10%."""

    #: Seconds of history the rate is measured over.
    WINDOW = 5.0
    BAR_WIDTH = 24

    def __init__(
        self,
        total: int,
        stream: TextIO,
        tty: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.stream = stream
        self.tty = tty
        self.clock = clock
        self.position = 0
        self._samples: deque[tuple[float, int]] = deque()
        self._drawn_at = -1.0
        self._bar_shown = False
        self._decile = -1

    def restart(self, position: int) -> None:
        """Continue from ``position``: the server's offset after a resume."""
        self.position = position
        self._samples.clear()
        self._samples.append((self.clock(), position))
        self._decile = self._decile_of(position) - 1
        self.update(position, force=True)

    def update(self, position: int, force: bool = False) -> None:
        now = self.clock()
        self.position = position
        self._samples.append((now, position))
        while len(self._samples) > 2 and now - self._samples[0][0] > self.WINDOW:
            self._samples.popleft()

        if self.tty:
            if force or now - self._drawn_at >= 0.1 or position == self.total:
                self._drawn_at = now
                self.stream.write(f"\r{self._bar()}\x1b[K")
                self.stream.flush()
                self._bar_shown = True
            return
        decile = self._decile_of(position)
        if decile > self._decile:
            self._decile = decile
            self.stream.write(self._line() + "\n")
            self.stream.flush()

    def note(self, text: str) -> None:
        """A message on a line of its own, the bar redrawn below it."""
        if self.tty and self._bar_shown:
            self.stream.write("\r\x1b[K")
        self.stream.write(text + "\n")
        if self.tty and self._bar_shown:
            self.stream.write(self._bar())
        self.stream.flush()

    def finish(self) -> None:
        if self.tty and self._bar_shown:
            self.stream.write(f"\r{self._bar()}\x1b[K\n")
            self.stream.flush()
            self._bar_shown = False

    def _decile_of(self, position: int) -> int:
        return 10 if self.total == 0 else position * 10 // self.total

    def _bar(self) -> str:
        filled = (
            self.BAR_WIDTH
            if self.total == 0
            else self.position * self.BAR_WIDTH // self.total
        )
        bar = "#" * filled + "." * (self.BAR_WIDTH - filled)
        return f"[{bar}] {self._line()}"

    def _line(self) -> str:
        percent = 100 if self.total == 0 else self.position * 100 // self.total
        text = f"{percent:3d}% {human_size(self.position)} of {human_size(self.total)}"
        rate = self._rate()
        if rate is None:
            return text
        text += f", {human_size(int(rate))}/s"
        if self.position < self.total and rate > 0:
            text += f", ETA {_clock_time((self.total - self.position) / rate)}"
        return text

    def _rate(self) -> float | None:
        (first_time, first), (last_time, last) = self._samples[0], self._samples[-1]
        if last_time - first_time < 0.2:
            return None
        return (last - first) / (last_time - first_time)


def human_size(count: int) -> str:
    """``"12.3 MiB"``: a size for people watching a transfer."""
    amount = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            return f"{count} B" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    raise AssertionError("unreachable")


def _clock_time(seconds: float) -> str:
    whole = int(seconds + 0.5)
    hours, rest = divmod(whole, 3600)
    minutes, seconds_left = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{seconds_left:02d}"
    return f"{minutes}:{seconds_left:02d}"
