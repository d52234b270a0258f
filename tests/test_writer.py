"""The staged writer's backpressure: a connection it pauses is always resumed.

A keep-alive connection carries the next request only if reading resumes after
the body that paused it, also when that body ended while reading was paused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attrs import define, field
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from hmacfs_core.writer import StagedWriter


@define
class FakeStaged:
    size: int = 0
    synced: bool = False

    def write_block(self, block: bytes) -> None:
        self.size += len(block)

    def sync_and_close(self) -> None:
        self.synced = True


@define
class Connection:
    calls: list[str] = field(factory=list)

    def pauseProducing(self) -> None:
        self.calls.append("pause")

    def resumeProducing(self) -> None:
        self.calls.append("resume")

    def stopProducing(self) -> None:
        self.calls.append("stop")


@define
class ManualThreads:
    """Runs each "thread" job when the test says so."""

    pending: list[tuple[Deferred[Any], Callable[[], Any]]] = field(factory=list)

    def __call__(self, action: Callable[..., Any], *args: Any) -> Deferred[Any]:
        done: Deferred[Any] = Deferred()
        self.pending.append((done, lambda: action(*args)))
        return done

    def run_next(self) -> None:
        done, job = self.pending.pop(0)
        done.callback(job())


def paused_writer() -> tuple[StagedWriter, Connection, ManualThreads]:
    """A writer with one block in flight and the next one full: reading paused."""
    connection, threads = Connection(), ManualThreads()
    failures: list[Failure] = []
    writer = StagedWriter(
        staged=FakeStaged(),  # type: ignore[arg-type]
        buffer_size=4,
        run_in_thread=threads,
        producer=connection,
        on_error=failures.append,
    )
    writer.write(b"aaaa")
    writer.write(b"bbbb")
    assert connection.calls == ["pause"]
    return writer, connection, threads


def test_a_paused_connection_is_resumed_when_the_disk_catches_up() -> None:
    writer, connection, threads = paused_writer()

    threads.run_next()

    assert connection.calls == ["pause", "resume"]


def test_a_body_that_ends_while_paused_still_resumes_the_connection() -> None:
    writer, connection, threads = paused_writer()

    finished = writer.finish()
    threads.run_next()  # the block in flight
    threads.run_next()  # the rest, and the sync

    assert connection.calls == ["pause", "resume"]
    assert finished.called
