"""The resume state: what an interrupted run leaves for the next one.

Between runs the client keeps one small JSON file per signed URL (see
:class:`StateFile`): where the upload lives on the server and what the file
looked like (:class:`FileIdentity`), so that a re-run continues only with the
same file.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import IO

from attrs import frozen

from hmacfs_core.units import MiB

#: How much of the file's beginning identifies it between runs, with its size
#: and modification time: enough to tell a re-encoded photo from the original
#: without reading a large file twice.
IDENTITY_PREFIX = MiB


@frozen
class FileIdentity:
    """What tells the file a run began with from a file changed since."""

    size: int
    mtime_ns: int
    head_sha256: str

    @classmethod
    def of(cls, stream: IO[bytes]) -> FileIdentity:
        status = os.fstat(stream.fileno())
        stream.seek(0)
        head = hashlib.sha256(stream.read(IDENTITY_PREFIX)).hexdigest()
        return cls(status.st_size, status.st_mtime_ns, head)

    def still_matches(self, stream: IO[bytes]) -> bool:
        """Whether size and modification time are unchanged (no reading)."""
        status = os.fstat(stream.fileno())
        return (status.st_size, status.st_mtime_ns) == (self.size, self.mtime_ns)


@frozen
class SavedUpload:
    """A tus upload begun by an earlier run.

    :ivar location: the upload's absolute URL: it alone authorizes appending,
        so it is as secret as the signed URL's MAC.
    """

    location: str
    identity: FileIdentity
    url: str
    created: float


class StateFile:
    """One JSON file per signed URL under the state directory.

    Its name is a SHA-256 of the whole signed URL: a new slot never finds an
    old upload, and the name reveals neither the path nor the MAC. Its
    content holds the upload's location, a capability: the directory is
    created 0700 and the file 0600, and the signed query is never written.
    """

    def __init__(self, directory: Path, url: str) -> None:
        name = hashlib.sha256(url.encode("utf-8")).hexdigest()[:40]
        self.path = directory / f"{name}.json"

    def load(self) -> SavedUpload | None:
        """The saved upload, or None when there is none or it is unreadable."""
        try:
            saved = json.loads(self.path.read_text(encoding="utf-8"))
            return SavedUpload(
                location=str(saved["location"]),
                identity=FileIdentity(
                    int(saved["size"]),
                    int(saved["mtime_ns"]),
                    str(saved["head_sha256"]),
                ),
                url=str(saved["url"]),
                created=float(saved["created"]),
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self, upload: SavedUpload) -> None:
        """Write atomically, readable by the owner only.

        :raises OSError: when the directory cannot be written.
        """
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        content = json.dumps(
            {
                "url": upload.url,
                "location": upload.location,
                "size": upload.identity.size,
                "mtime_ns": upload.identity.mtime_ns,
                "head_sha256": upload.identity.head_sha256,
                "created": upload.created,
            },
            indent=1,
        )
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        descriptor = os.open(
            temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_EXCL, 0o600
        )
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
                stream.write(content)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def default_state_dir(environ: dict[str, str] | None = None) -> Path:
    """``$XDG_STATE_HOME/hmacfs/uploads``, else ``~/.local/state/hmacfs/uploads``."""
    environ = dict(os.environ) if environ is None else environ
    base = environ.get("XDG_STATE_HOME") or ""
    # The XDG rule: a relative value is invalid and is ignored.
    root = Path(base) if os.path.isabs(base) else Path.home() / ".local" / "state"
    return root / "hmacfs" / "uploads"
