"""Send ``twisted.logger`` events to standard output at the configured level."""

from __future__ import annotations

import sys
from typing import TextIO

from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    jsonFileLogObserver,
    textFileLogObserver,
)


def start_logging(
    level: str, log_format: str = "text", stream: TextIO | None = None
) -> None:
    """Begin logging events of ``level`` and above, one line each.

    Standard output suits systemd's journal and container runtimes alike.
    ``json`` writes every event with all its fields (Twisted's JSON records, one
    per line after an ASCII record separator) for log pipelines and tests.
    """
    output = stream or sys.stdout
    writer = (
        jsonFileLogObserver(output)
        if log_format == "json"
        else textFileLogObserver(output)
    )
    observer = FilteringLogObserver(
        writer,
        [LogLevelFilterPredicate(defaultLogLevel=LogLevel.levelWithName(level))],
    )
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
