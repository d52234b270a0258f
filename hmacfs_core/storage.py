"""The store: staged bodies, atomic publication, metadata, files for downloads.

Layout under ``storage_path``::

    files/     what GET URLs serve, one file per upload path
    meta/      one JSON record per stored file (content type, SHA-256, size)
    staging/   bodies being received; never visible under a final name
               (subdirectories belong to resumable uploads: ``staging/tus``)

Only ``files/`` is reachable by URL, so internal state cannot be requested by
anybody. ``staging/`` lives on the same filesystem as ``files/`` so that
publishing is a hard link, which is atomic and refuses to replace an existing
file: two racing uploads to one path cannot both win.
"""

from __future__ import annotations

import enum
import errno
import hashlib
import json
import os
import stat
import time
import uuid
from pathlib import Path
from typing import Any

from attrs import define, field, frozen

from hmacfs_core.paths import PathRefused, UploadPath, resolve_under

DEFAULT_CONTENT_TYPE = "application/octet-stream"


class PublishResult(enum.Enum):
    """What happened when a staged body was published under its final name."""

    CREATED = "created"
    IDENTICAL = "identical"
    CONFLICT = "conflict"


@frozen
class StoredFile:
    """A published file, as a download sees it."""

    path: Path
    size: int
    content_type: str
    sha256: str | None
    mtime: float


@define
class StagedFile:
    """A body being received into ``staging/``.

    Writes, syncs and closes are blocking calls: the caller runs them in a worker
    thread, one at a time per staged file, so the running hash stays in order.
    """

    path: Path
    fd: int
    size: int = 0
    digest: hashlib._Hash = field(factory=hashlib.sha256)
    closed: bool = False

    def write_block(self, block: bytes) -> None:
        """Append ``block`` to the staged file and to the running SHA-256."""
        view = memoryview(block)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]

        self.digest.update(block)
        self.size += len(block)

    def sync_and_close(self) -> None:
        """Make the bytes durable before anyone is told they are stored."""
        os.fsync(self.fd)
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.fd)

    @property
    def sha256(self) -> str:
        return self.digest.hexdigest()


@frozen
class Store:
    """The files, their metadata and the staging area under one root."""

    root: Path

    @property
    def files_dir(self) -> Path:
        return self.root / "files"

    @property
    def meta_dir(self) -> Path:
        return self.root / "meta"

    @property
    def staging_dir(self) -> Path:
        return self.root / "staging"

    def prepare(self) -> int:
        """Create the layout and remove stale staged files; return how many.

        A staged file left at start-up belongs to a transfer that died with the
        previous process: its client got no 201 and will retry. Directories are
        left alone: the partial uploads in them are meant to be resumed.
        """
        for directory in (self.files_dir, self.meta_dir, self.staging_dir):
            directory.mkdir(parents=True, exist_ok=True)

        stale = [
            entry
            for entry in self.staging_dir.iterdir()
            if entry.is_symlink() or not entry.is_dir()
        ]
        for entry in stale:
            entry.unlink(missing_ok=True)
        return len(stale)

    def locate(self, upload_path: UploadPath) -> Path:
        """The file under ``files/`` for ``upload_path``; symlinks are refused."""
        return resolve_under(self.files_dir, upload_path)

    def lookup(self, upload_path: UploadPath) -> StoredFile | None:
        """The stored regular file at ``upload_path``, or None (directories too)."""
        try:
            location = self.locate(upload_path)
            status = os.lstat(location)
        except (PathRefused, FileNotFoundError, NotADirectoryError):
            return None

        if not stat.S_ISREG(status.st_mode):
            return None

        record = self._read_meta(upload_path)
        return StoredFile(
            path=location,
            size=status.st_size,
            content_type=record.get("content_type", DEFAULT_CONTENT_TYPE),
            sha256=record.get("sha256"),
            mtime=status.st_mtime,
        )

    def stage(self) -> StagedFile:
        """Open a new, empty staged file with a name nobody else can pick."""
        path = self.staging_dir / f"{uuid.uuid4().hex}.part"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
        return StagedFile(path=path, fd=fd)

    def discard(self, staged: StagedFile) -> None:
        """Close and remove a staged file that will not be published."""
        staged.close()
        staged.path.unlink(missing_ok=True)

    def publish(
        self, staged: StagedFile, upload_path: UploadPath, content_type: str
    ) -> PublishResult:
        """Link a complete, synced body into place without replacing anything.

        Runs in the reactor thread: the link and the metadata rename happen in one
        turn of the reactor, so no download in this process can see the file
        without its metadata. The staged file is removed whatever the result.
        """
        try:
            return self._link_into_place(staged, upload_path, content_type)
        finally:
            staged.path.unlink(missing_ok=True)

    def sync_directories(self, upload_path: UploadPath) -> None:
        """Make the new directory entries durable (blocking; run in a thread)."""
        for directory in (
            self.locate(upload_path).parent,
            self._meta_path(upload_path).parent,
        ):
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _link_into_place(
        self, staged: StagedFile, upload_path: UploadPath, content_type: str
    ) -> PublishResult:
        try:
            final = self.locate(upload_path)
        except PathRefused:
            # A symlink appeared under the store since the headers were checked.
            return PublishResult.CONFLICT

        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.link(staged.path, final)
        except FileExistsError:
            return self._compare_with_existing(staged, upload_path)
        except (NotADirectoryError, IsADirectoryError):
            # A parent of the path is a file, or the path is a directory.
            return PublishResult.CONFLICT
        except OSError as error:
            if error.errno == errno.ENOTDIR:
                return PublishResult.CONFLICT
            raise

        self._write_meta(upload_path, content_type, staged)
        return PublishResult.CREATED

    def _compare_with_existing(
        self, staged: StagedFile, upload_path: UploadPath
    ) -> PublishResult:
        existing = self.lookup(upload_path)
        if existing is None or existing.size != staged.size:
            return PublishResult.CONFLICT

        existing_sha256 = existing.sha256 or _hash_file(existing.path)
        if existing_sha256 == staged.sha256:
            return PublishResult.IDENTICAL
        return PublishResult.CONFLICT

    def _meta_path(self, upload_path: UploadPath) -> Path:
        *parents, name = upload_path.segments
        return self.meta_dir.joinpath(*parents, name + ".json")

    def _write_meta(
        self, upload_path: UploadPath, content_type: str, staged: StagedFile
    ) -> None:
        record = {
            "content_type": content_type,
            "sha256": staged.sha256,
            "size": staged.size,
            "created": time.time(),
        }
        target = self._meta_path(upload_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = staged.path.with_suffix(".meta")
        scratch.write_text(json.dumps(record), encoding="utf-8")
        os.replace(scratch, target)

    def _read_meta(self, upload_path: UploadPath) -> dict[str, Any]:
        try:
            text = self._meta_path(upload_path).read_text(encoding="utf-8")
            record = json.loads(text)
        except (OSError, ValueError):
            # A file published by an older process that died before writing its
            # record: serve it as octet-stream rather than not at all.
            return {}
        return record if isinstance(record, dict) else {}


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
