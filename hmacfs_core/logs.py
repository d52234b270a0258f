"""Send ``twisted.logger`` events to standard output at the configured level."""

from __future__ import annotations

import sys
from typing import TextIO

from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)


def start_logging(level: str, stream: TextIO | None = None) -> None:
    """Begin logging events of ``level`` and above, one line each.

    Standard output suits systemd's journal and container runtimes alike; the
    events keep their fields for any other observer a host process adds.
    """
    observer = FilteringLogObserver(
        textFileLogObserver(stream or sys.stdout),
        [LogLevelFilterPredicate(defaultLogLevel=LogLevel.levelWithName(level))],
    )
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
