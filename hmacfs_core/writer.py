"""Stream an upload's body into its staged file without blocking the reactor.

Body chunks arrive in the reactor thread in the transport's read size. They are
gathered into blocks of the write buffer size, and each block is written (and
hashed) in a worker thread, one block at a time per upload so the running hash
stays in order. While a block is being written the next one gathers; when that
one is full too, the connection is paused until the disk catches up. Memory per
upload is therefore bounded by about two write buffers plus one read, whatever
the size of the file.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attrs import define, field
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure

from hmacfs_core.storage import StagedFile

RunInThread = Callable[..., Deferred[Any]]


@define
class StagedWriter:
    """Coalesce body chunks into blocks and write them to a staged file.

    :param staged: the file the body goes to.
    :param buffer_size: bytes gathered before each write.
    :param run_in_thread: runs a blocking callable in a worker thread and returns
        a Deferred of its result (``deferToThreadPool`` bound to the app's pool).
    :param producer: the connection, paused while the disk is behind.
    :param on_error: called once with the failure of a write, so the request can
        answer (507 for a full disk) instead of reading the rest of the body.
    """

    staged: StagedFile
    buffer_size: int
    run_in_thread: RunInThread
    producer: IPushProducer | None
    on_error: Callable[[Failure], None]
    _gathered: list[bytes] = field(factory=list)
    _gathered_size: int = 0
    _in_flight: Deferred[None] | None = None
    _paused: bool = False
    _failure: Failure | None = None
    _closing: bool = False
    _idle_waiters: list[Deferred[None]] = field(factory=list)

    def write(self, chunk: bytes) -> None:
        """Take one body chunk; called per chunk, so it stays cheap."""
        if self._failure is not None or self._closing:
            return

        self._gathered.append(chunk)
        self._gathered_size += len(chunk)
        if self._gathered_size < self.buffer_size:
            return

        if self._in_flight is None:
            self._write_gathered()
        elif not self._paused and self.producer is not None:
            self._paused = True
            self.producer.pauseProducing()

    def finish(self) -> Deferred[StagedFile]:
        """Write what is left, fsync and close; fire with the staged file."""
        self._closing = True
        waiting = self._when_idle()

        def flush_and_sync(_: None) -> Deferred[StagedFile]:
            if self._failure is not None:
                return self._failure  # type: ignore[return-value]
            block = self._take_gathered()
            return self.run_in_thread(self._write_and_sync, block)

        return waiting.addCallback(flush_and_sync)

    def abort(self, discard: Callable[[StagedFile], None]) -> Deferred[None]:
        """Stop writing and remove the staged file once no write is running."""
        self._closing = True
        self._gathered.clear()
        self._gathered_size = 0

        def remove(_: object) -> None:
            discard(self.staged)

        return self._when_idle().addBoth(remove)

    def _write_and_sync(self, block: bytes) -> StagedFile:
        if block:
            self.staged.write_block(block)
        self.staged.sync_and_close()
        return self.staged

    def _take_gathered(self) -> bytes:
        block = b"".join(self._gathered)
        self._gathered.clear()
        self._gathered_size = 0
        return block

    def _write_gathered(self) -> None:
        block = self._take_gathered()
        self._in_flight = self.run_in_thread(self.staged.write_block, block)
        self._in_flight.addCallbacks(self._written, self._write_failed)

    def _written(self, _: None) -> None:
        self._in_flight = None

        if self._closing:
            # A body that ended while reading was paused: the connection must
            # read again, or the next request on it is never seen.
            self._resume_producer()
            self._wake_idle_waiters()
            return

        if self._gathered_size >= self.buffer_size:
            self._write_gathered()
        self._resume_producer()

    def _resume_producer(self) -> None:
        if self._paused and self.producer is not None:
            self._paused = False
            self.producer.resumeProducing()

    def _write_failed(self, failure: Failure) -> None:
        self._in_flight = None
        self._failure = failure
        self._wake_idle_waiters()
        self.on_error(failure)

    def _when_idle(self) -> Deferred[None]:
        if self._in_flight is None:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._idle_waiters.append(waiter)
        return waiter

    def _wake_idle_waiters(self) -> None:
        waiters, self._idle_waiters = self._idle_waiters, []
        for waiter in waiters:
            waiter.callback(None)
