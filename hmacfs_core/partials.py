"""Partial uploads: the bytes of a resumable upload, kept under its upload id.

Layout under ``staging/tus/``, next to ``files/`` so that publishing is a link::

    <id>.part   the bytes received so far; never under the final name
    <id>.json   the upload's record: target, length, type, offset, activity

The record's ``offset`` is the promise a ``HEAD`` makes: every byte before it
was fsynced before the record saying so was written. A record is replaced
atomically (temporary file, fsync, rename), so a crash leaves the old one or the
new one, never half of either. Bytes of a ``.part`` beyond the recorded offset
were never acknowledged: they are cut off before the next append and at
start-up.

Whoever changes an upload (a PATCH, a DELETE, the sweep) holds an exclusive
``flock`` on its ``.part`` for as long as it does. The lock is taken without
waiting and works between the processes of ``server.workers``; a process that
dies drops its locks with it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import cattrs
from attrs import define, field, frozen

from hmacfs_core.storage import StagedFile

#: What becomes of the bytes of a PATCH cut before its end: ``keep`` what
#: arrived (what tus clients expect), or ``discard`` it back to the PATCH's start.
CutPolicy = Literal["keep", "discard"]

#: Attempts kept per upload; the oldest are forgotten first.
MAX_ATTEMPTS = 256

#: A part or record without its partner is left this long before the sweep
#: removes it: it may be an upload being created by another worker right now.
ORPHAN_GRACE_SECONDS = 60.0

# secrets.token_urlsafe(24): 32 characters, 192 random bits.
_UPLOAD_ID = re.compile(r"[A-Za-z0-9_-]{32}")

_records = cattrs.Converter(forbid_extra_keys=False)


class UploadLocked(Exception):  # noqa: N818
    """Another request (in this process or another worker) holds the upload."""


@frozen
class PatchAttempt:
    """Where and when one PATCH of an upload began.

    :ivar peer: the client's address, through trusted proxies.
    :ivar at: Unix time the PATCH's headers arrived.
    :ivar offset: the offset it started at.
    """

    peer: str
    at: float
    offset: int


@frozen
class RunningPatch:
    """The PATCH writing right now, as the record knows it.

    :ivar start: its start offset: what a discarded chunk goes back to.
    :ivar checksum: the algorithm of its ``Upload-Checksum``, if any; such a
        PATCH never moves the offset before its end, when it can be verified.
    """

    start: int
    checksum: str | None = None


@define
class UploadRecord:
    """One resumable upload: what it will become and how far it has come.

    :ivar id: the upload id, the capability every later request presents.
    :ivar path: the upload path (``UploadPath.text``) it is published under.
    :ivar length: ``Upload-Length``, the size that was signed.
    :ivar content_type: stored with the file and served with it.
    :ivar metadata: the ``Upload-Metadata`` header as sent, for ``HEAD``.
    :ivar created: Unix time of the creation.
    :ivar last_activity: Unix time of the last request that changed it;
        expiry counts from here.
    :ivar offset: bytes durably received.
    :ivar completed: published; the record stays until it expires so that a
        client which lost the last answer learns from ``HEAD`` it is done.
    :ivar attempts: the PATCHes so far (at most :data:`MAX_ATTEMPTS`), for
        noticing an upload that moves between addresses.
    :ivar running: the PATCH writing now, if any.
    """

    id: str
    path: str
    length: int
    content_type: str
    metadata: str
    created: float
    last_activity: float
    offset: int = 0
    completed: bool = False
    attempts: list[PatchAttempt] = field(factory=list)
    running: RunningPatch | None = None

    def note_attempt(self, peer: str, at: float) -> None:
        """Remember that a PATCH from ``peer`` began now, at the offset."""
        self.attempts.append(PatchAttempt(peer, at, self.offset))
        del self.attempts[:-MAX_ATTEMPTS]

    def expires(self, expiration: float) -> float:
        """Unix time after which the upload is gone."""
        return self.last_activity + expiration


def new_upload_id() -> str:
    """An id nobody can guess: it is all that authorizes the later requests."""
    return secrets.token_urlsafe(24)


def valid_upload_id(text: str) -> bool:
    return _UPLOAD_ID.fullmatch(text) is not None


@define
class PartLock:
    """An exclusive hold on one upload; release it exactly once."""

    fd: int | None

    def release(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            # Closing the descriptor drops the flock.
            os.close(fd)


@frozen
class PartialStore:
    """The partial uploads under one directory (``staging/tus``)."""

    directory: Path

    def part_path(self, upload_id: str) -> Path:
        return self.directory / f"{upload_id}.part"

    def record_path(self, upload_id: str) -> Path:
        return self.directory / f"{upload_id}.json"

    def create(self, record: UploadRecord) -> None:
        """Create the empty part and the record, not yet durable.

        Creation answers 201 only after :meth:`make_durable`; until then a crash
        may lose the upload, which its client never heard of.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        os.close(os.open(self.part_path(record.id), flags, 0o640))
        self.save(record, durable=False)

    def make_durable(self, record: UploadRecord) -> None:
        """Sync a new upload's part, record and directory entries (blocking)."""
        fd = os.open(self.part_path(record.id), os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self.save(record)
        _sync_directory(self.directory)

    def load(self, upload_id: str) -> UploadRecord | None:
        """The upload's record, or None for an unknown id or an unreadable one."""
        if not valid_upload_id(upload_id):
            return None
        try:
            raw = json.loads(self.record_path(upload_id).read_text(encoding="utf-8"))
            return _records.structure(raw, UploadRecord)
        except (OSError, ValueError, cattrs.BaseValidationError):
            return None

    def save(self, record: UploadRecord, durable: bool = True) -> None:
        """Replace the record atomically; ``durable`` fsyncs it first (blocking)."""
        target = self.record_path(record.id)
        scratch = target.with_name(f"{target.name}.{secrets.token_hex(4)}.tmp")
        text = json.dumps(_records.unstructure(record), separators=(",", ":"))
        fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC)
        try:
            os.write(fd, text.encode("utf-8"))
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(scratch, target)

    def lock(self, upload_id: str) -> PartLock:
        """Hold the upload exclusively.

        :raises UploadLocked: when someone else holds it.
        :raises FileNotFoundError: when its part is gone (removed, published).
        """
        fd = os.open(self.part_path(upload_id), os.O_RDONLY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UploadLocked(upload_id) from None
        return PartLock(fd)

    def open_part(
        self,
        record: UploadRecord,
        checkpoint_interval: int | None,
        claim: ChecksumClaim | None,
        digest: Any = None,
    ) -> PartialFile:
        """Open the part for appending at the recorded offset (hold the lock).

        Bytes past the offset were never acknowledged and are cut off first.

        :param checkpoint_interval: fsync and persist the offset every this
            many bytes; None never moves it before the end (a checksummed PATCH).
        :param digest: a SHA-256 of exactly the first ``offset`` bytes, when
            this process still has one; else the file is hashed at publication.
        """
        fd = os.open(self.part_path(record.id), os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.ftruncate(fd, record.offset)
            os.lseek(fd, record.offset, os.SEEK_SET)
        except OSError:
            os.close(fd)
            raise
        return PartialFile(
            path=self.part_path(record.id),
            fd=fd,
            size=record.offset,
            digest=digest if digest is not None else hashlib.sha256(),
            store=self,
            record=record,
            start=record.offset,
            checkpoint_interval=checkpoint_interval,
            claim=claim,
            digest_valid=digest is not None or record.offset == 0,
        )

    def remove(self, upload_id: str) -> None:
        """Forget the upload: its part and its record."""
        self.part_path(upload_id).unlink(missing_ok=True)
        self.record_path(upload_id).unlink(missing_ok=True)

    def upload_ids(self) -> Iterator[str]:
        if not self.directory.is_dir():
            return
        for entry in self.directory.glob("*.json"):
            if valid_upload_id(entry.stem):
                yield entry.stem

    def recover(self) -> int:
        """Cut every part not being written back to its recorded offset.

        Run at start-up (blocking): a process killed mid-PATCH left bytes past
        its last checkpoint that nobody acknowledged. Returns how many parts
        were cut.
        """
        cut = 0
        for upload_id in list(self.upload_ids()):
            record = self.load(upload_id)
            if record is None or record.completed:
                continue
            with self._held(upload_id) as held:
                if not held:
                    continue
                part = self.part_path(upload_id)
                if part.stat().st_size > record.offset:
                    os.truncate(part, record.offset)
                    cut += 1
                if record.running is not None:
                    record.running = None
                    self.save(record)
        return cut

    def sweep(self, now: float, expiration: float) -> list[str]:
        """Remove uploads idle for longer than ``expiration`` (blocking).

        An upload being written is left alone, however old its record says it
        is. Returns the ids removed.
        """
        removed = []
        for upload_id in list(self.upload_ids()):
            record = self.load(upload_id)
            if record is not None and now <= record.expires(expiration):
                continue
            if record is None and not self._older_than(
                self.record_path(upload_id), now, ORPHAN_GRACE_SECONDS
            ):
                continue
            with self._held(upload_id) as held:
                if held is not False:
                    self.remove(upload_id)
                    removed.append(upload_id)
        self._remove_orphans(now)
        return removed

    def _remove_orphans(self, now: float) -> None:
        """Parts without a record and scratch records left by a crash."""
        if not self.directory.is_dir():
            return
        for entry in self.directory.iterdir():
            orphan = entry.name.endswith(".tmp") or (
                entry.suffix == ".part" and not self.record_path(entry.stem).exists()
            )
            if orphan and self._older_than(entry, now, ORPHAN_GRACE_SECONDS):
                entry.unlink(missing_ok=True)

    @staticmethod
    def _older_than(path: Path, now: float, seconds: float) -> bool:
        try:
            return now - path.stat().st_mtime > seconds
        except FileNotFoundError:
            return False

    @contextlib.contextmanager
    def _held(self, upload_id: str) -> Iterator[bool | None]:
        """Hold the upload if nobody else does: True, False when someone
        does, None when it has no part to lock."""
        try:
            lock = self.lock(upload_id)
        except UploadLocked:
            yield False
            return
        except FileNotFoundError:
            yield None
            return
        try:
            yield True
        finally:
            lock.release()


@frozen
class ChecksumClaim:
    """An ``Upload-Checksum``: the algorithm and the digest the client sent."""

    algorithm: str
    digest: bytes

    def hasher(self) -> Any:
        return hashlib.new(self.algorithm, usedforsecurity=False)


@define
class PartialFile(StagedFile):
    """An upload's part opened for one PATCH: appended, checkpointed, verified.

    Like every ``StagedFile`` its blocking methods run in a worker thread, one
    at a time, so the record it persists always matches the bytes synced.
    """

    store: PartialStore = field(kw_only=True)
    record: UploadRecord = field(kw_only=True)
    start: int = field(kw_only=True)
    checkpoint_interval: int | None = field(kw_only=True)
    claim: ChecksumClaim | None = field(kw_only=True)
    digest_valid: bool = field(kw_only=True)
    checksum_failed: bool = field(default=False, kw_only=True)
    _chunk_hash: Any = field(default=None, kw_only=True)
    _checkpointed: int = field(default=0, kw_only=True)
    clock: Any = field(default=time.time, kw_only=True)

    def __attrs_post_init__(self) -> None:
        self._checkpointed = self.start
        if self.claim is not None:
            self._chunk_hash = self.claim.hasher()

    @property
    def received(self) -> int:
        """Bytes this PATCH appended so far."""
        return self.size - self.start

    def write_block(self, block: bytes) -> None:
        """Append ``block``; fsync and persist the offset when a checkpoint is due."""
        view = memoryview(block)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]
        self.size += len(block)
        if self.digest_valid:
            self.digest.update(block)
        if self._chunk_hash is not None:
            self._chunk_hash.update(block)

        interval = self.checkpoint_interval
        if interval is not None and self.size - self._checkpointed >= interval:
            self._persist(self.size, finished=False)

    def sync_and_close(self) -> None:
        """Persist what arrived, once its checksum (if any) holds.

        Called when the body is complete, and for a cut PATCH whose bytes are
        kept. A mismatch (a cut checksummed PATCH always mismatches: it cannot
        be verified) sets ``checksum_failed`` and puts the upload back where
        the PATCH started, as if the chunk had never been sent.
        """
        if self.claim is not None and self._chunk_hash.digest() != self.claim.digest:
            self.checksum_failed = True
            self.rollback()
            return
        self._persist(self.size, finished=True)
        self.close()

    def rollback(self) -> None:
        """Discard this PATCH's bytes: back to its start offset, durably."""
        if self.closed:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_CLOEXEC)
            self.closed = False
        os.ftruncate(self.fd, self.start)
        self.size = self.start
        # The running digest took in the discarded bytes.
        self.digest_valid = False
        self._persist(self.start, finished=True)
        self.close()

    def ensure_digest(self) -> None:
        """Hash the whole part if the running digest does not cover it (blocking)."""
        if self.digest_valid:
            return
        digest = hashlib.sha256()
        with self.path.open("rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
        self.digest = digest
        self.digest_valid = True

    def _persist(self, offset: int, finished: bool) -> None:
        """fsync the bytes, then promise them in the record."""
        os.fsync(self.fd)
        self.record.offset = offset
        self.record.last_activity = self.clock()
        if finished:
            self.record.running = None
        self.store.save(self.record)
        self._checkpointed = offset


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
