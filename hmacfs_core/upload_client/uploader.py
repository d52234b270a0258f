"""One run of the upload: ask whether the server speaks tus, then send the
file by tus or by one plain PUT."""

from __future__ import annotations

from typing import IO

from attrs import define, field

from hmacfs_core.upload_client import put, tus
from hmacfs_core.upload_client.backoff import Backoff
from hmacfs_core.upload_client.options import UploadOptions
from hmacfs_core.upload_client.progress import Progress
from hmacfs_core.upload_client.session import Session
from hmacfs_core.upload_client.state import FileIdentity
from hmacfs_core.upload_client.wire import HttpClient


@define
class Uploader:
    """One run of ``hmacfs upload``: tus when the server offers it, else PUT."""

    options: UploadOptions
    progress: Progress
    http: HttpClient = field()
    backoff: Backoff = field()
    #: The run's shared state, from the moment :meth:`run` has read the file.
    session: Session | None = None

    @http.default
    def _http(self) -> HttpClient:
        return HttpClient(self.options.timeout)

    @backoff.default
    def _backoff(self) -> Backoff:
        return Backoff(self.options.retries, self.progress.note)

    @property
    def resumable(self) -> bool:
        """Whether a re-run can continue this upload (its state file is saved)."""
        return self.session is not None and self.session.resumable

    def run(self, stream: IO[bytes]) -> str:
        """Upload ``stream`` (the open FILE); return the GET URL.

        :raises Refused: the server refused the upload.
        :raises GaveUp: retries ran out, or the file changed meanwhile.
        """
        identity = FileIdentity.of(stream)
        session = Session(
            self.options, self.progress, self.http, self.backoff, identity
        )
        self.session = session
        try:
            support = tus.discover(session)
            if support is None:
                put.send_file(session, stream)
            else:
                tus.send_file(session, stream, support)
        finally:
            self.http.close()
        self.progress.finish()
        return self.options.url.get_url
