"""The tus 1.0 steps: discover, create, send in chunks, and find the offset.

The same signed URL with the tus path in front of its path creates a tus
upload; the file then goes in checksummed chunks from whatever offset the
server reports, which is what lets an upload survive dropped connections, a
change of network and the client's own restart.
"""

from __future__ import annotations

import base64
import time
from functools import partial
from typing import IO

from attrs import frozen

from hmacfs_core.upload_client.failures import (
    FileChanged,
    GaveUp,
    Refused,
    Transient,
    UploadGone,
)
from hmacfs_core.upload_client.progress import Progress, human_size
from hmacfs_core.upload_client.session import Session
from hmacfs_core.upload_client.signed_url import Endpoint, split_location
from hmacfs_core.upload_client.state import SavedUpload, StateFile
from hmacfs_core.upload_client.wire import Answer, FileSlice

TUS_VERSION = "1.0.0"
OFFSET_OCTET_STREAM = "application/offset+octet-stream"

#: Checksum algorithms by preference, as tus names them.
CHECKSUM_PREFERENCE = ("sha256", "sha1")

#: Statuses that mean the upload does not exist (any more): tus answers 404 to
#: an unknown or expired id, and allows 410.
GONE = (404, 410)

#: "Locked": another request (usually our own cut PATCH, not yet noticed by
#: the server) still holds the upload.
LOCKED = 423

#: tus's answer to a chunk whose ``Upload-Checksum`` does not match.
CHECKSUM_MISMATCH = 460


@frozen
class TusSupport:
    """What the server's ``OPTIONS`` said; ``checksum`` None sends none."""

    checksum: str | None


def discover(session: Session) -> TusSupport | None:
    """tus 1.0 with creation, if ``OPTIONS`` on the tus path says so."""
    tus_path = session.options.tus_path
    while True:
        try:
            answer = session.exchange(
                session.url.endpoint,
                "OPTIONS",
                tus_path,
                {"Tus-Resumable": TUS_VERSION},
            )
        except Transient as failure:
            session.backoff.wait(f"OPTIONS {tus_path}: {failure.reason}")
            continue
        break

    versions = _tokens(answer.header("tus-version"))
    extensions = _tokens(answer.header("tus-extension"))
    if answer.status >= 300 or TUS_VERSION not in versions:
        return None
    if "creation" not in extensions:
        return None
    offered = _tokens(answer.header("tus-checksum-algorithm"))
    checksum = None
    if "checksum" in extensions:
        checksum = next((a for a in CHECKSUM_PREFERENCE if a in offered), None)
    return TusSupport(checksum)


def send_file(session: Session, stream: IO[bytes], support: TusSupport) -> None:
    """Continue the upload an earlier run began with this file, or create one,
    and send the rest; the state file is removed once the upload is over.

    :raises Refused: the server refused the upload.
    :raises GaveUp: retries ran out, the file changed, or the upload was lost
        twice.
    """
    state = StateFile(session.options.state_dir, _state_key(session))
    location = _saved_location(session, state)
    if location is None:
        location = _create(session, state)
    else:
        session.progress.note("continuing the upload begun by an earlier run")

    restarted = False
    try:
        while True:
            try:
                _send(session, stream, location, support)
                break
            except UploadGone:
                # XXX: a 409 on publishing whose answer was lost looks the
                # same: the file is sent once more before the 409 shows.
                if restarted:
                    raise GaveUp(
                        "the server lost the upload twice; not starting over again"
                    ) from None
                restarted = True
                session.progress.note(
                    "the server no longer has this upload (it expired); starting over"
                )
                location = _create(session, state)
    except Refused:
        state.remove()
        raise
    state.remove()


def _state_key(session: Session) -> str:
    return f"{session.url.get_url}?{session.url.query}"


def _saved_location(session: Session, state: StateFile) -> str | None:
    """The location of an upload an earlier run began with this file."""
    saved = state.load()
    if saved is None:
        return None
    if saved.identity == session.identity:
        session.resumable = True
        return saved.location
    session.progress.note("FILE changed since the upload began: starting over")
    _terminate(session, saved.location)
    state.remove()
    return None


def _terminate(session: Session, location: str) -> None:
    """Free the server of an upload that will not be continued (one try)."""
    try:
        endpoint, target = split_location(location)
        session.exchange(endpoint, "DELETE", target, {"Tus-Resumable": TUS_VERSION})
    except (Transient, ValueError):
        pass


def _create(session: Session, state: StateFile) -> str:
    """POST the creation; save and return the upload's absolute URL."""
    identity = session.identity
    metadata = {"filename": session.options.file.name}
    if session.options.content_type:
        metadata["filetype"] = session.options.content_type
    headers = {
        "Tus-Resumable": TUS_VERSION,
        "Upload-Length": str(identity.size),
        "Upload-Metadata": ",".join(
            f"{key} {base64.b64encode(value.encode('utf-8')).decode('ascii')}"
            for key, value in metadata.items()
        ),
        "Content-Length": "0",
    }
    target = session.url.tus_target(session.options.tus_path)
    while True:
        try:
            answer = session.exchange(session.url.endpoint, "POST", target, headers)
        except Transient as failure:
            session.backoff.wait(f"creating the upload: {failure.reason}")
            continue
        break

    reference = answer.header("location")
    if answer.status != 201 or not reference:
        raise Refused(answer.status, answer.reason)
    location = session.url.resolve(reference)
    try:
        state.save(SavedUpload(location, identity, session.url.get_url, time.time()))
        session.resumable = True
    except OSError as error:
        session.progress.note(
            f"cannot keep the upload's state in {state.path.parent} "
            f"({error.strerror}): an interrupted run will start over"
        )
    return location


def _send(
    session: Session, stream: IO[bytes], location: str, support: TusSupport
) -> None:
    """PATCH the rest of the file, chunk by chunk, from the server's offset.

    :raises UploadGone: the server no longer knows the upload.
    """
    endpoint, target = split_location(location)
    size = session.identity.size
    offset = _offset(session, endpoint, target)
    session.progress.restart(offset)
    while offset < size:
        if not session.identity.still_matches(stream):
            raise FileChanged("FILE changed during the upload; run again to start over")
        start = offset
        piece = FileSlice(stream, start, min(session.options.chunk_size, size - start))
        headers = {
            "Tus-Resumable": TUS_VERSION,
            "Upload-Offset": str(start),
            "Content-Type": OFFSET_OCTET_STREAM,
            "Content-Length": str(piece.length),
        }
        if support.checksum is not None:
            digest = piece.digest(support.checksum)
            headers["Upload-Checksum"] = f"{support.checksum} {digest}"
        try:
            answer = session.exchange(
                endpoint,
                "PATCH",
                target,
                headers,
                piece,
                on_sent=partial(_advance, session.progress, start),
            )
        except Transient as failure:
            where = human_size(session.progress.position)
            session.backoff.wait(f"at {where}: {failure.reason}", failure.retry_after)
            offset = _offset(session, endpoint, target)
            session.progress.restart(offset)
            continue

        offset = _after_patch(session, endpoint, target, start, piece, answer)


def _after_patch(
    session: Session,
    endpoint: Endpoint,
    target: str,
    start: int,
    piece: FileSlice,
    answer: Answer,
) -> int:
    """The offset to go on from, given a PATCH's answer."""
    if answer.status == 204:
        new_offset = _offset_header(answer, start + piece.length)
        if new_offset > start:
            session.backoff.succeeded()
        session.progress.update(new_offset)
        return new_offset
    if answer.status == CHECKSUM_MISMATCH:
        # The server dropped the chunk and is back at its start.
        session.backoff.wait(f"chunk at {human_size(start)} arrived damaged")
        session.progress.restart(start)
        return start
    if answer.status in GONE:
        raise UploadGone()
    if answer.status == 409:
        # Either another offset (our cut PATCH kept some bytes after all)
        # or, after the last byte, a different file already at the path,
        # which ends the upload: HEAD tells them apart.
        try:
            offset = _offset(session, endpoint, target)
        except UploadGone:
            raise Refused(409, answer.reason) from None
        session.backoff.wait(
            f"the server has {human_size(offset)}, not {human_size(start)}"
        )
        session.progress.restart(offset)
        return offset
    if answer.status == LOCKED:
        session.backoff.wait("the upload is still busy", answer.retry_after)
        offset = _offset(session, endpoint, target)
        session.progress.restart(offset)
        return offset
    raise Refused(answer.status, answer.reason)


def _offset(session: Session, endpoint: Endpoint, target: str) -> int:
    """The server's offset for the upload (HEAD), retried like a PATCH.

    :raises UploadGone: the server no longer knows the upload.
    """
    while True:
        try:
            answer = session.exchange(
                endpoint, "HEAD", target, {"Tus-Resumable": TUS_VERSION}
            )
        except Transient as failure:
            session.backoff.wait(f"asking for the offset: {failure.reason}")
            continue
        if answer.status in GONE:
            raise UploadGone()
        if answer.status == LOCKED:
            session.backoff.wait("the upload is still busy", answer.retry_after)
            continue
        if answer.status != 200 or answer.header("upload-offset") is None:
            raise Refused(answer.status, answer.reason)
        return _offset_header(answer, 0)


def _advance(progress: Progress, start: int, sent: int) -> None:
    progress.update(start + sent)


def _tokens(header: str | None) -> list[str]:
    return [token.strip() for token in (header or "").split(",") if token.strip()]


def _offset_header(answer: Answer, default: int) -> int:
    value = answer.header("upload-offset")
    return int(value) if value is not None and value.isdigit() else default
