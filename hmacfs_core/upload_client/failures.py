"""What can go wrong during an upload, sorted by what the client does next.

:class:`Refused` and :class:`GaveUp` end the run and decide its exit status;
:class:`Transient` and :class:`UploadGone` never leave the package: the first
is waited out and retried, the second makes the tus steps create the upload
again.
"""

from __future__ import annotations


class Refused(Exception):
    """The server said no, and asking again will not change its mind."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.status} {self.reason}".strip()


class GaveUp(Exception):
    """Nothing more to try: the retries ran out, the file changed under the
    upload, or the server's certificate is not trusted."""


class FileChanged(GaveUp):
    """FILE changed while it was being sent: what the server has is stale."""


class Transient(Exception):
    """A failure worth retrying: a lost connection or a server error."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class UploadGone(Exception):
    """The server no longer knows the upload's id (expired or removed)."""
