"""The plain PUT: the whole file in one request, for a server without tus.

Nothing can be resumed, so any failure sends the file again from its start;
that is safe because a PUT of identical bytes is answered 201 again.
"""

from __future__ import annotations

from typing import IO

from hmacfs_core.upload_client.failures import Refused, Transient
from hmacfs_core.upload_client.session import Session
from hmacfs_core.upload_client.wire import FileSlice


def send_file(session: Session, stream: IO[bytes]) -> None:
    """One PUT of the whole file, from the start again after any failure.

    :raises Refused: the server answered anything but a success.
    :raises GaveUp: the retries ran out.
    """
    size = session.identity.size
    headers = {"Content-Length": str(size)}
    if session.options.content_type:
        headers["Content-Type"] = session.options.content_type
    while True:
        session.progress.restart(0)
        try:
            answer = session.exchange(
                session.url.endpoint,
                "PUT",
                session.url.put_target,
                headers,
                FileSlice(stream, 0, size),
                on_sent=session.progress.update,
            )
        except Transient as failure:
            session.backoff.wait(f"PUT: {failure.reason}", failure.retry_after)
            continue
        if answer.status in (200, 201, 204):
            return
        raise Refused(answer.status, answer.reason)
