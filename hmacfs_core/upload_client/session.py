"""What the steps of one upload share, whichever protocol carries the file.

Discovery, the plain PUT and the tus steps all talk through one
:class:`Session`: the same keep-alive connections, one retry budget, one
progress display, and the file's identity read once at the start.
"""

from __future__ import annotations

from collections.abc import Callable

from attrs import define

from hmacfs_core.upload_client.backoff import Backoff
from hmacfs_core.upload_client.failures import Transient
from hmacfs_core.upload_client.options import UploadOptions
from hmacfs_core.upload_client.progress import Progress
from hmacfs_core.upload_client.signed_url import Endpoint, SignedURL
from hmacfs_core.upload_client.state import FileIdentity
from hmacfs_core.upload_client.wire import Answer, FileSlice, HttpClient


@define
class Session:
    """One run's options, connections, retry budget, display and file.

    :ivar resumable: whether a re-run can continue this upload (its state
        file is saved); the tus steps set it.
    """

    options: UploadOptions
    progress: Progress
    http: HttpClient
    backoff: Backoff
    identity: FileIdentity
    resumable: bool = False

    @property
    def url(self) -> SignedURL:
        return self.options.url

    def exchange(
        self,
        endpoint: Endpoint,
        method: str,
        target: str,
        headers: dict[str, str],
        body: FileSlice | None = None,
        on_sent: Callable[[int], None] | None = None,
    ) -> Answer:
        """One request; a lost connection or a 5xx raises :class:`Transient`."""
        answer = self.http.exchange(endpoint, method, target, headers, body, on_sent)
        if answer.status >= 500:
            raise Transient(
                f"{method} answered {answer.status} {answer.reason}",
                answer.retry_after,
            )
        return answer
