"""``hmacfs upload``: send one file to a signed XEP-0363 PUT URL, resumably.

The URL an XMPP server hands out is all the client needs. When the server
speaks tus 1.0 (hmacfs does, under ``[tus] path``), the same signed URL with
the tus path in front of its path creates a tus upload, and the file then goes
in checksummed chunks that survive dropped connections, a change of network
and the client's own restart. A server without tus gets one plain PUT,
retried from the start: a PUT of identical bytes is answered 201 again.

Between runs the client keeps one small JSON file per signed URL (see
:class:`StateFile`): where the upload lives on the server and what the file
looked like, so that a re-run continues only with the same file.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import json
import mimetypes
import os
import random
import select
import signal
import ssl
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from types import FrameType
from typing import IO, Any, TextIO
from urllib.parse import quote, unquote, urljoin, urlsplit

from attrs import define, field, frozen

from hmacfs_core.units import MiB, parse_size

__all__ = [
    "EXIT_GAVE_UP",
    "EXIT_REFUSED",
    "EXIT_STORED",
    "EXIT_USAGE",
    "Backoff",
    "FileChanged",
    "FileIdentity",
    "GaveUp",
    "Progress",
    "Refused",
    "SignedURL",
    "StateFile",
    "UploadOptions",
    "Uploader",
    "add_upload_command",
    "default_state_dir",
]

#: Exit statuses of ``hmacfs upload``; an interrupted run exits 128 + signal.
EXIT_STORED = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_GAVE_UP = 3

TUS_VERSION = "1.0.0"
OFFSET_OCTET_STREAM = "application/offset+octet-stream"
DEFAULT_TUS_PATH = "/tus/"
DEFAULT_CHUNK_SIZE = 4 * MiB
DEFAULT_RETRIES = 20
DEFAULT_TIMEOUT = 60.0

#: Checksum algorithms by preference, as tus names them.
CHECKSUM_PREFERENCE = ("sha256", "sha1")

#: How much of the file's beginning identifies it between runs, with its size
#: and modification time: enough to tell a re-encoded photo from the original
#: without reading a large file twice.
IDENTITY_PREFIX = MiB

#: Bytes read from the file and handed to the socket at a time.
SEND_BLOCK = 256 * 1024

#: Statuses that mean the upload does not exist (any more): tus answers 404 to
#: an unknown or expired id, and allows 410.
GONE = (404, 410)

#: "Locked": another request (usually our own cut PATCH, not yet noticed by
#: the server) still holds the upload.
LOCKED = 423

#: tus's answer to a chunk whose ``Upload-Checksum`` does not match.
CHECKSUM_MISMATCH = 460


# -- what can go wrong ------------------------------------------------------


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


class Terminated(Exception):
    """SIGTERM arrived; raised in the main thread like ``KeyboardInterrupt``."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _Transient(Exception):
    """A failure worth retrying: a lost connection or a server error."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class _UploadGone(Exception):
    """The server no longer knows the upload's id (expired or removed)."""


# -- the URL ----------------------------------------------------------------


@frozen
class Endpoint:
    """Where requests go: one HTTP(S) origin."""

    scheme: str
    host: str
    port: int

    def connect(self, timeout: float) -> http.client.HTTPConnection:
        if self.scheme == "https":
            return http.client.HTTPSConnection(
                self.host,
                self.port,
                timeout=timeout,
                context=ssl.create_default_context(),
            )
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)


@frozen
class SignedURL:
    """A signed PUT URL, split into what the client needs of it.

    :ivar path: the raw (percent-encoded) path, exactly as signed.
    :ivar query: the raw query holding the MAC; never logged or stored.
    """

    endpoint: Endpoint
    netloc: str
    path: str
    query: str

    @classmethod
    def parse(cls, text: str) -> SignedURL:
        """:raises ValueError: for anything but an absolute http(s) URL."""
        parts = urlsplit(text.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("URL must be an absolute http:// or https:// URL")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        # An IRI pasted from a chat window: its non-ASCII characters are
        # escaped as UTF-8, which is how the server reads and verifies them.
        path = quote(parts.path or "/", safe="".join(map(chr, range(0x21, 0x7F))))
        endpoint = Endpoint(parts.scheme, parts.hostname, port)
        return cls(endpoint, parts.netloc, path, parts.query)

    @property
    def get_url(self) -> str:
        """The URL without its query: where the stored file is served."""
        return f"{self.endpoint.scheme}://{self.netloc}{self.path}"

    @property
    def put_target(self) -> str:
        return f"{self.path}?{self.query}" if self.query else self.path

    @property
    def file_name(self) -> str:
        return unquote(self.path.rsplit("/", 1)[-1])

    def tus_target(self, tus_path: str) -> str:
        """The creation target: the tus path, then the PUT URL's path and query."""
        return tus_path.rstrip("/") + self.put_target

    def resolve(self, reference: str) -> str:
        """An absolute URL for a ``Location`` (usually a bare path)."""
        return urljoin(self.get_url, reference)


def split_location(location: str) -> tuple[Endpoint, str]:
    """The endpoint and request target of an upload's absolute URL."""
    parts = urlsplit(location)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an absolute http(s) URL: {location!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    return Endpoint(parts.scheme, parts.hostname, port), target


# -- HTTP -------------------------------------------------------------------


@frozen
class Answer:
    """A response read in full (tus answers are small)."""

    status: int
    headers: dict[str, str]
    body: bytes
    phrase: str

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def reason(self) -> str:
        """The server's reason: its plain-text body, else the status phrase."""
        text = self.body.decode("utf-8", "replace").strip()
        if text and "\n" not in text and len(text) <= 200:
            return text
        return self.phrase

    @property
    def retry_after(self) -> float | None:
        value = self.header("retry-after")
        return float(value) if value is not None and value.isdigit() else None


@define
class FileSlice:
    """``length`` bytes of ``stream`` from ``offset``, read as they are sent."""

    stream: IO[bytes]
    offset: int
    length: int

    def blocks(self) -> Iterator[bytes]:
        self.stream.seek(self.offset)
        left = self.length
        while left > 0:
            block = self.stream.read(min(SEND_BLOCK, left))
            if not block:
                raise FileChanged("FILE got shorter while it was being uploaded")
            left -= len(block)
            yield block

    def digest(self, algorithm: str) -> str:
        """The slice's digest in base64, as ``Upload-Checksum`` carries it."""
        hasher = hashlib.new(algorithm)
        for block in self.blocks():
            hasher.update(block)
        return base64.b64encode(hasher.digest()).decode("ascii")


class HttpClient:
    """Keep-alive connections, one per endpoint, reopened after any failure.

    Every network failure becomes :class:`_Transient`; statuses are left to
    the caller.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._connections: dict[Endpoint, http.client.HTTPConnection] = {}

    def exchange(
        self,
        endpoint: Endpoint,
        method: str,
        target: str,
        headers: dict[str, str],
        body: FileSlice | None = None,
        on_sent: Callable[[int], None] | None = None,
    ) -> Answer:
        """Send one request and read its answer.

        A server that answers before the end of the body (a refusal decided
        from the headers) is listened to at once: the rest is not sent.
        """
        connection = self._connection(endpoint)
        answered_early = False
        try:
            connection.putrequest(method, target, skip_accept_encoding=True)
            for name, value in headers.items():
                connection.putheader(name, value)
            connection.endheaders()
            if body is not None:
                answered_early = _send_body(connection, body, on_sent)
            response = connection.getresponse()
            content = response.read()
        except ssl.SSLCertVerificationError as error:
            # Not the network's fault: no retry will make the server trusted.
            self.close(endpoint)
            raise GaveUp(
                f"{endpoint.host}: certificate not trusted: {error.verify_message}"
            ) from None
        except (OSError, http.client.HTTPException) as error:
            self.close(endpoint)
            raise _Transient(_describe(error)) from None

        if answered_early or response.will_close:
            self.close(endpoint)
        return Answer(
            status=response.status,
            headers={name.lower(): value for name, value in response.getheaders()},
            body=content,
            phrase=response.reason,
        )

    def close(self, endpoint: Endpoint | None = None) -> None:
        """Close the connection to ``endpoint``, or all of them."""
        endpoints = list(self._connections) if endpoint is None else [endpoint]
        for each in endpoints:
            connection = self._connections.pop(each, None)
            if connection is not None:
                connection.close()

    def _connection(self, endpoint: Endpoint) -> http.client.HTTPConnection:
        connection = self._connections.get(endpoint)
        # An idle connection with something to read has been closed by the
        # server: open a new one rather than fail the next request on it.
        if connection is not None and _readable(connection.sock):
            self.close(endpoint)
            connection = None
        if connection is None:
            connection = endpoint.connect(self.timeout)
            self._connections[endpoint] = connection
        return connection


def _send_body(
    connection: http.client.HTTPConnection,
    body: FileSlice,
    on_sent: Callable[[int], None] | None,
) -> bool:
    """Send ``body``; True if the server may have answered before its end.

    A plain socket with something to read holds the answer. A TLS socket may
    be readable with no answer in it (TLS 1.3 session tickets), so there the
    sign is only a send that fails: a server that refused from the headers
    stops reading after a while, and its answer is still there to read.
    """
    watch = not isinstance(connection.sock, ssl.SSLSocket)
    sent = 0
    for block in body.blocks():
        if watch and _readable(connection.sock):
            return True
        try:
            connection.send(block)
        except OSError:
            return True
        sent += len(block)
        if on_sent is not None:
            on_sent(sent)
    return False


def _readable(sock: Any) -> bool:
    if sock is None:
        return False
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


def _describe(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, http.client.RemoteDisconnected):
        return "the server closed the connection"
    text = getattr(error, "strerror", None) or str(error)
    return text or type(error).__name__


# -- the file and its state between runs ------------------------------------


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


# -- retrying and reporting -------------------------------------------------


@define
class Backoff:
    """Waits between attempts: exponential, with jitter, bounded in number.

    The count is of failures in a row: every chunk the server takes starts it
    over, so a long upload over a flaky network may be cut many times.
    """

    retries: int
    report: Callable[[str], None]
    base: float = 0.5
    cap: float = 30.0
    sleep: Callable[[float], None] = time.sleep
    failures: int = 0

    def succeeded(self) -> None:
        self.failures = 0

    def wait(self, reason: str, retry_after: float | None = None) -> None:
        """Sleep before the next attempt.

        :raises GaveUp: when ``retries`` failures in a row have been waited for.
        """
        self.failures += 1
        if self.failures > self.retries:
            raise GaveUp(f"{reason}; gave up after {self.retries} retries")
        ceiling = min(self.cap, self.base * 2 ** (self.failures - 1))
        # Half fixed, half random: clients cut by the same outage spread out
        # without any of them retrying at once.
        delay = ceiling / 2 + random.uniform(0, ceiling / 2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.cap))
        self.report(
            f"{reason}; retrying in {delay:.1f}s ({self.failures}/{self.retries})"
        )
        self.sleep(delay)


class Progress:
    """Bytes sent, on a redrawn line for a terminal, else one line per 10%."""

    #: Seconds of history the rate is measured over.
    WINDOW = 5.0
    BAR_WIDTH = 24

    def __init__(
        self,
        total: int,
        stream: TextIO,
        tty: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.stream = stream
        self.tty = tty
        self.clock = clock
        self.position = 0
        self._samples: deque[tuple[float, int]] = deque()
        self._drawn_at = -1.0
        self._bar_shown = False
        self._decile = -1

    def restart(self, position: int) -> None:
        """Continue from ``position``: the server's offset after a resume."""
        self.position = position
        self._samples.clear()
        self._samples.append((self.clock(), position))
        self._decile = self._decile_of(position) - 1
        self.update(position, force=True)

    def update(self, position: int, force: bool = False) -> None:
        now = self.clock()
        self.position = position
        self._samples.append((now, position))
        while len(self._samples) > 2 and now - self._samples[0][0] > self.WINDOW:
            self._samples.popleft()

        if self.tty:
            if force or now - self._drawn_at >= 0.1 or position == self.total:
                self._drawn_at = now
                self.stream.write(f"\r{self._bar()}\x1b[K")
                self.stream.flush()
                self._bar_shown = True
            return
        decile = self._decile_of(position)
        if decile > self._decile:
            self._decile = decile
            self.stream.write(self._line() + "\n")
            self.stream.flush()

    def note(self, text: str) -> None:
        """A message on a line of its own, the bar redrawn below it."""
        if self.tty and self._bar_shown:
            self.stream.write("\r\x1b[K")
        self.stream.write(text + "\n")
        if self.tty and self._bar_shown:
            self.stream.write(self._bar())
        self.stream.flush()

    def finish(self) -> None:
        if self.tty and self._bar_shown:
            self.stream.write(f"\r{self._bar()}\x1b[K\n")
            self.stream.flush()
            self._bar_shown = False

    def _decile_of(self, position: int) -> int:
        return 10 if self.total == 0 else position * 10 // self.total

    def _bar(self) -> str:
        filled = (
            self.BAR_WIDTH
            if self.total == 0
            else self.position * self.BAR_WIDTH // self.total
        )
        bar = "#" * filled + "." * (self.BAR_WIDTH - filled)
        return f"[{bar}] {self._line()}"

    def _line(self) -> str:
        percent = 100 if self.total == 0 else self.position * 100 // self.total
        text = f"{percent:3d}% {human_size(self.position)} of {human_size(self.total)}"
        rate = self._rate()
        if rate is None:
            return text
        text += f", {human_size(int(rate))}/s"
        if self.position < self.total and rate > 0:
            text += f", ETA {_clock_time((self.total - self.position) / rate)}"
        return text

    def _rate(self) -> float | None:
        (first_time, first), (last_time, last) = self._samples[0], self._samples[-1]
        if last_time - first_time < 0.2:
            return None
        return (last - first) / (last_time - first_time)


def human_size(count: int) -> str:
    """``"12.3 MiB"``: a size for people watching a transfer."""
    amount = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            return f"{count} B" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    raise AssertionError("unreachable")


def _clock_time(seconds: float) -> str:
    whole = int(seconds + 0.5)
    hours, rest = divmod(whole, 3600)
    minutes, seconds_left = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{seconds_left:02d}"
    return f"{minutes}:{seconds_left:02d}"


# -- the upload -------------------------------------------------------------


@frozen
class UploadOptions:
    """What ``hmacfs upload`` was asked to do.

    :ivar content_type: sent as ``Content-Type`` (PUT) and ``filetype`` (tus);
        None sends none, and the server stores ``application/octet-stream``.
    """

    file: Path
    url: SignedURL
    content_type: str | None
    chunk_size: int = DEFAULT_CHUNK_SIZE
    retries: int = DEFAULT_RETRIES
    tus_path: str = DEFAULT_TUS_PATH
    state_dir: Path = field(factory=default_state_dir)
    timeout: float = DEFAULT_TIMEOUT


@frozen
class TusSupport:
    """What the server's ``OPTIONS`` said; ``checksum`` None sends none."""

    checksum: str | None


@define
class Uploader:
    """One run of ``hmacfs upload``: tus when the server offers it, else PUT."""

    options: UploadOptions
    progress: Progress
    http: HttpClient = field()
    backoff: Backoff = field()
    identity: FileIdentity | None = None
    #: Whether a re-run can continue this upload (its state file is saved).
    resumable: bool = False

    @http.default
    def _http(self) -> HttpClient:
        return HttpClient(self.options.timeout)

    @backoff.default
    def _backoff(self) -> Backoff:
        return Backoff(self.options.retries, self.progress.note)

    @property
    def url(self) -> SignedURL:
        return self.options.url

    def run(self, stream: IO[bytes]) -> str:
        """Upload ``stream`` (the open FILE); return the GET URL.

        :raises Refused: the server refused the upload.
        :raises GaveUp: retries ran out, or the file changed meanwhile.
        """
        self.identity = FileIdentity.of(stream)
        try:
            support = self._discover()
            if support is None:
                self._put(stream)
            else:
                self._tus(stream, support)
        finally:
            self.http.close()
        self.progress.finish()
        return self.url.get_url

    # -- which protocol ----------------------------------------------------

    def _discover(self) -> TusSupport | None:
        """tus 1.0 with creation, if ``OPTIONS`` on the tus path says so."""
        tus_path = self.options.tus_path
        while True:
            try:
                answer = self._exchange(
                    self.url.endpoint,
                    "OPTIONS",
                    tus_path,
                    {"Tus-Resumable": TUS_VERSION},
                )
            except _Transient as failure:
                self.backoff.wait(f"OPTIONS {tus_path}: {failure.reason}")
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

    # -- a plain PUT -------------------------------------------------------

    def _put(self, stream: IO[bytes]) -> None:
        """One PUT of the whole file, from the start again after any failure."""
        size = self._identity.size
        headers = {"Content-Length": str(size)}
        if self.options.content_type:
            headers["Content-Type"] = self.options.content_type
        while True:
            self.progress.restart(0)
            try:
                answer = self._exchange(
                    self.url.endpoint,
                    "PUT",
                    self.url.put_target,
                    headers,
                    FileSlice(stream, 0, size),
                    on_sent=self.progress.update,
                )
            except _Transient as failure:
                self.backoff.wait(f"PUT: {failure.reason}", failure.retry_after)
                continue
            if answer.status in (200, 201, 204):
                return
            raise Refused(answer.status, answer.reason)

    # -- tus ---------------------------------------------------------------

    def _tus(self, stream: IO[bytes], support: TusSupport) -> None:
        state = StateFile(self.options.state_dir, self._state_key())
        location = self._saved_location(state)
        if location is None:
            location = self._create(state)
        else:
            self.progress.note("continuing the upload begun by an earlier run")

        restarted = False
        try:
            while True:
                try:
                    self._send(stream, location, support)
                    break
                except _UploadGone:
                    # XXX: a 409 on publishing whose answer was lost looks the
                    # same: the file is sent once more before the 409 shows.
                    if restarted:
                        raise GaveUp(
                            "the server lost the upload twice; not starting over again"
                        ) from None
                    restarted = True
                    self.progress.note(
                        "the server no longer has this upload (it expired); "
                        "starting over"
                    )
                    location = self._create(state)
        except Refused:
            state.remove()
            raise
        state.remove()

    def _state_key(self) -> str:
        return f"{self.url.get_url}?{self.url.query}"

    def _saved_location(self, state: StateFile) -> str | None:
        """The location of an upload an earlier run began with this file."""
        saved = state.load()
        if saved is None:
            return None
        if saved.identity == self._identity:
            self.resumable = True
            return saved.location
        self.progress.note("FILE changed since the upload began: starting over")
        self._terminate(saved.location)
        state.remove()
        return None

    def _terminate(self, location: str) -> None:
        """Free the server of an upload that will not be continued (one try)."""
        try:
            endpoint, target = split_location(location)
            self._exchange(endpoint, "DELETE", target, {"Tus-Resumable": TUS_VERSION})
        except (_Transient, ValueError):
            pass

    def _create(self, state: StateFile) -> str:
        """POST the creation; save and return the upload's absolute URL."""
        identity = self._identity
        metadata = {"filename": self.options.file.name}
        if self.options.content_type:
            metadata["filetype"] = self.options.content_type
        headers = {
            "Tus-Resumable": TUS_VERSION,
            "Upload-Length": str(identity.size),
            "Upload-Metadata": ",".join(
                f"{key} {base64.b64encode(value.encode('utf-8')).decode('ascii')}"
                for key, value in metadata.items()
            ),
            "Content-Length": "0",
        }
        target = self.url.tus_target(self.options.tus_path)
        while True:
            try:
                answer = self._exchange(self.url.endpoint, "POST", target, headers)
            except _Transient as failure:
                self.backoff.wait(f"creating the upload: {failure.reason}")
                continue
            break

        reference = answer.header("location")
        if answer.status != 201 or not reference:
            raise Refused(answer.status, answer.reason)
        location = self.url.resolve(reference)
        try:
            state.save(SavedUpload(location, identity, self.url.get_url, time.time()))
            self.resumable = True
        except OSError as error:
            self.progress.note(
                f"cannot keep the upload's state in {state.path.parent} "
                f"({error.strerror}): an interrupted run will start over"
            )
        return location

    def _send(self, stream: IO[bytes], location: str, support: TusSupport) -> None:
        """PATCH the rest of the file, chunk by chunk, from the server's offset.

        :raises _UploadGone: the server no longer knows the upload.
        """
        endpoint, target = split_location(location)
        size = self._identity.size
        offset = self._offset(endpoint, target)
        self.progress.restart(offset)
        while offset < size:
            if not self._identity.still_matches(stream):
                raise FileChanged(
                    "FILE changed during the upload; run again to start over"
                )
            start = offset
            piece = FileSlice(stream, start, min(self.options.chunk_size, size - start))
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
                answer = self._exchange(
                    endpoint,
                    "PATCH",
                    target,
                    headers,
                    piece,
                    on_sent=partial(_advance, self.progress, start),
                )
            except _Transient as failure:
                where = human_size(self.progress.position)
                self.backoff.wait(f"at {where}: {failure.reason}", failure.retry_after)
                offset = self._offset(endpoint, target)
                self.progress.restart(offset)
                continue

            offset = self._after_patch(endpoint, target, start, piece, answer)

    def _after_patch(
        self,
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
                self.backoff.succeeded()
            self.progress.update(new_offset)
            return new_offset
        if answer.status == CHECKSUM_MISMATCH:
            # The server dropped the chunk and is back at its start.
            self.backoff.wait(f"chunk at {human_size(start)} arrived damaged")
            self.progress.restart(start)
            return start
        if answer.status in GONE:
            raise _UploadGone()
        if answer.status == 409:
            # Either another offset (our cut PATCH kept some bytes after all)
            # or, after the last byte, a different file already at the path,
            # which ends the upload: HEAD tells them apart.
            try:
                offset = self._offset(endpoint, target)
            except _UploadGone:
                raise Refused(409, answer.reason) from None
            self.backoff.wait(
                f"the server has {human_size(offset)}, not {human_size(start)}"
            )
            self.progress.restart(offset)
            return offset
        if answer.status == LOCKED:
            self.backoff.wait("the upload is still busy", answer.retry_after)
            offset = self._offset(endpoint, target)
            self.progress.restart(offset)
            return offset
        raise Refused(answer.status, answer.reason)

    def _offset(self, endpoint: Endpoint, target: str) -> int:
        """The server's offset for the upload (HEAD), retried like a PATCH.

        :raises _UploadGone: the server no longer knows the upload.
        """
        while True:
            try:
                answer = self._exchange(
                    endpoint, "HEAD", target, {"Tus-Resumable": TUS_VERSION}
                )
            except _Transient as failure:
                self.backoff.wait(f"asking for the offset: {failure.reason}")
                continue
            if answer.status in GONE:
                raise _UploadGone()
            if answer.status == LOCKED:
                self.backoff.wait("the upload is still busy", answer.retry_after)
                continue
            if answer.status != 200 or answer.header("upload-offset") is None:
                raise Refused(answer.status, answer.reason)
            return _offset_header(answer, 0)

    # -- every request -----------------------------------------------------

    def _exchange(
        self,
        endpoint: Endpoint,
        method: str,
        target: str,
        headers: dict[str, str],
        body: FileSlice | None = None,
        on_sent: Callable[[int], None] | None = None,
    ) -> Answer:
        """One request; a lost connection or a 5xx raises :class:`_Transient`."""
        answer = self.http.exchange(endpoint, method, target, headers, body, on_sent)
        if answer.status >= 500:
            raise _Transient(
                f"{method} answered {answer.status} {answer.reason}",
                answer.retry_after,
            )
        return answer

    @property
    def _identity(self) -> FileIdentity:
        assert self.identity is not None, "run() reads the file's identity first"
        return self.identity


def _advance(progress: Progress, start: int, sent: int) -> None:
    progress.update(start + sent)


def _tokens(header: str | None) -> list[str]:
    return [token.strip() for token in (header or "").split(",") if token.strip()]


def _offset_header(answer: Answer, default: int) -> int:
    value = answer.header("upload-offset")
    return int(value) if value is not None and value.isdigit() else default


# -- the command ------------------------------------------------------------


def add_upload_command(commands: Any) -> None:
    """Add ``upload`` to the ``hmacfs`` command's subparsers."""
    upload = commands.add_parser(
        "upload",
        help="upload a file to a signed PUT URL, resumably",
        description="Upload FILE to the signed PUT URL an XMPP server handed out. "
        "With a tus server the upload survives dropped connections and can be "
        "interrupted and run again to continue; otherwise it is one PUT. "
        "Prints the GET URL when the file is stored. Exit status: 0 stored, "
        "1 refused, 2 usage, 3 gave up.",
    )
    upload.add_argument("file", type=Path, metavar="FILE")
    upload.add_argument("url", metavar="URL", help="the signed PUT URL")
    upload.add_argument(
        "--type",
        dest="content_type",
        default=None,
        help="Content-Type the slot was requested with (default: guessed from "
        "the name; '' sends none)",
    )
    upload.add_argument(
        "--chunk-size",
        type=_positive_size,
        default=DEFAULT_CHUNK_SIZE,
        help="bytes per tus PATCH (default: 4MiB)",
    )
    upload.add_argument(
        "--retries",
        type=_count,
        default=DEFAULT_RETRIES,
        help="failures in a row before giving up (default: %(default)s)",
    )
    upload.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="where interrupted uploads are remembered "
        "(default: $XDG_STATE_HOME/hmacfs/uploads)",
    )
    upload.add_argument(
        "--tus-path",
        default=DEFAULT_TUS_PATH,
        help="URL path of the server's tus endpoint (default: %(default)s)",
    )
    upload.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help="seconds without progress before a connection counts as lost "
        "(default: %(default)s)",
    )
    upload.set_defaults(run=run_upload)


def run_upload(arguments: argparse.Namespace) -> int:
    """``hmacfs upload``: the exit status of one run."""
    try:
        url = SignedURL.parse(arguments.url)
    except ValueError as error:
        return _usage(f"URL: {error}")
    tus_path = arguments.tus_path
    if not tus_path.startswith("/"):
        return _usage("--tus-path must start with '/'")
    try:
        stream = arguments.file.open("rb")
    except OSError as error:
        return _usage(f"{arguments.file}: {error.strerror}")
    if not arguments.file.is_file():
        stream.close()
        return _usage(f"{arguments.file}: not a regular file")

    content_type = arguments.content_type
    if content_type is None:
        content_type = _guess_type(url.file_name) or _guess_type(arguments.file.name)
    options = UploadOptions(
        file=arguments.file,
        url=url,
        content_type=content_type or None,
        chunk_size=arguments.chunk_size,
        retries=arguments.retries,
        tus_path=tus_path,
        state_dir=arguments.state_dir or default_state_dir(),
        timeout=arguments.timeout,
    )
    size = os.fstat(stream.fileno()).st_size
    progress = Progress(size, sys.stderr, sys.stderr.isatty())
    uploader = Uploader(options, progress)

    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        with stream:
            get_url = uploader.run(stream)
    except Refused as refused:
        progress.finish()
        print(f"hmacfs upload: refused: {refused}", file=sys.stderr)
        return EXIT_REFUSED
    except GaveUp as gave_up:
        progress.finish()
        print(f"hmacfs upload: {gave_up}", file=sys.stderr)
        if uploader.resumable and not isinstance(gave_up, FileChanged):
            print(
                "hmacfs upload: the server keeps what it has: "
                "run the same command again to continue",
                file=sys.stderr,
            )
        return EXIT_GAVE_UP
    except (KeyboardInterrupt, Terminated) as stop:
        progress.finish()
        signum = stop.signum if isinstance(stop, Terminated) else signal.SIGINT
        print(
            f"hmacfs upload: interrupted at {human_size(progress.position)}; "
            "run the same command again to continue",
            file=sys.stderr,
        )
        return 128 + signum
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(get_url)
    return EXIT_STORED


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated(signum)


def _usage(message: str) -> int:
    print(f"hmacfs upload: {message}", file=sys.stderr)
    return EXIT_USAGE


def _guess_type(name: str) -> str | None:
    guessed, _ = mimetypes.guess_type(name, strict=False)
    return guessed


def _positive_size(text: str) -> int:
    try:
        size = parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if size < 1:
        raise argparse.ArgumentTypeError("must be at least one byte")
    return size


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
    return int(text)
