"""How long to wait before trying again, and when to stop trying.

One budget serves the whole run, whichever request failed: a server that
keeps failing is given up on after the same number of failures in a row
whether it was creating, sending or being asked for its offset.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from attrs import define

from hmacfs_core.upload_client.failures import GaveUp


@define
class Backoff:
    """Waits between attempts: exponential, with jitter, bounded in number.

    The count is of failures in a row: every chunk the server takes starts it
    over, so a long upload over a flaky network may be cut many times.
    """

    retries: int
    report: Callable[[str], None]
    base: float = 0.5
    cap: float = 30.0
    sleep: Callable[[float], None] = time.sleep
    failures: int = 0

    def succeeded(self) -> None:
        self.failures = 0

    def wait(self, reason: str, retry_after: float | None = None) -> None:
        """Sleep before the next attempt.

        :raises GaveUp: when ``retries`` failures in a row have been waited for.
        """
        self.failures += 1
        if self.failures > self.retries:
            raise GaveUp(f"{reason}; gave up after {self.retries} retries")
        ceiling = min(self.cap, self.base * 2 ** (self.failures - 1))
        # Half fixed, half random: clients cut by the same outage spread out
        # without any of them retrying at once.
        delay = ceiling / 2 + random.uniform(0, ceiling / 2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.cap))
        self.report(
            f"{reason}; retrying in {delay:.1f}s ({self.failures}/{self.retries})"
        )
        self.sleep(delay)
