"""What the plugins see of a transfer: the request, its plan, samples, outcome.

These classes are part of the plugin contract: fields may be added, never
removed or renamed without a changelog entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from attrs import define, field, frozen

Direction = Literal["upload", "download"]
Arm = Literal["baseline", "adaptive"]

#: Client classes the built-in strategies know; a plugin may return others.
CLIENT_CLASSES = ("mobile", "desktop", "server")
#: Network kinds with a ``[network_interfaces.<kind>]`` table.
NETWORK_KINDS = ("ethernet", "wifi", "lte", "cellular", "vpn")


@frozen
class TcpStats:
    """The kernel's view of the connection when the transfer started (Linux).

    :ivar rtt: smoothed round-trip time, seconds.
    :ivar rtt_variance: its mean deviation, seconds.
    :ivar min_rtt: the lowest round-trip time seen, seconds.
    :ivar delivery_rate: the kernel's estimate of the delivery rate, bytes/s.
    :ivar retransmits: segments retransmitted on this connection so far.
    """

    rtt: float
    rtt_variance: float
    min_rtt: float
    delivery_rate: float
    retransmits: int


@define
class TransferPlan:
    """How the server moves one transfer's bytes; plugins adjust it.

    The core clamps the buffer fields to ``[performance] min_buffer_size`` ..
    ``max_buffer_size`` and applies the result to the real connection and file.

    :ivar read_size: bytes asked of the socket per read (uploads).
    :ivar socket_receive_buffer: ``SO_RCVBUF`` in bytes; None keeps the kernel's
        auto-tuning.
    :ivar socket_send_buffer: ``SO_SNDBUF`` in bytes; None keeps auto-tuning.
    :ivar write_buffer_size: bytes gathered before each write to the staged file.
    :ivar chunk_size: bytes read from disk per write to the socket (downloads).
    :ivar idle_timeout: seconds without progress before the transfer is closed.
    :ivar retry_after: seconds a client is told to wait (``Retry-After``) when an
        upload fails on the server's side (500, 503, 507).
    """

    read_size: int
    socket_receive_buffer: int | None
    socket_send_buffer: int | None
    write_buffer_size: int
    chunk_size: int
    idle_timeout: float
    retry_after: float

    def copy(self) -> TransferPlan:
        """An independent copy; cheaper than ``copy.copy`` on a slotted class,
        which matters because the pipeline takes a few per transfer."""
        return TransferPlan(
            self.read_size,
            self.socket_receive_buffer,
            self.socket_send_buffer,
            self.write_buffer_size,
            self.chunk_size,
            self.idle_timeout,
            self.retry_after,
        )


@define
class Transfer:
    """One upload or download, as known when its headers arrived.

    Plugins read it; the core sets ``arm``, ``client_class``, ``network`` and
    ``plan`` as the pipeline decides them. ``route`` names the URL family the
    transfer came through: ``slot`` (XEP-0363 URLs), ``upload``, ``download``,
    ``upload/adaptive``, ``download/adaptive``, ``upload/auto`` or ``tus`` (a
    tus PATCH, or a creation carrying data: ``path`` and ``size`` are then
    the whole upload's, not this request's). ``notes`` is
    free for plugins to keep per-transfer state between hooks (key it by plugin
    name).
    """

    id: str
    direction: Direction
    path: str
    size: int | None
    content_type: str | None
    user_agent: str
    peer: str
    headers: Mapping[str, str]
    tcp: TcpStats | None
    started: float
    route: str = "slot"
    arm: Arm = "baseline"
    client_class: str | None = None
    network: str | None = None
    plan: TransferPlan | None = None
    notes: dict[str, object] = field(factory=dict)


@frozen
class ProgressSample:
    """Throughput measured over the last sampling interval.

    :ivar bytes_total: bytes moved since the transfer started.
    :ivar seconds_total: seconds since the transfer started.
    :ivar bytes_interval: bytes moved since the previous sample.
    :ivar seconds_interval: seconds since the previous sample.
    """

    bytes_total: int
    seconds_total: float
    bytes_interval: int
    seconds_interval: float

    @property
    def throughput(self) -> float:
        """Bytes per second over the interval."""
        return (
            self.bytes_interval / self.seconds_interval
            if self.seconds_interval
            else 0.0
        )


@frozen
class Outcome:
    """How a transfer ended.

    :ivar succeeded: the client got its file (or its upload was stored).
    :ivar status: the HTTP status sent, or None when the connection was cut.
    :ivar reason: ``"ok"``, ``"cut"`` (the connection ended before the answer:
        the client left, or stalled past the idle timeout) or ``"status N"``
        for a server-side failure. Client errors such as 409 are successes for
        the server: the transfer worked as specified.
    :ivar bytes: body bytes moved.
    :ivar seconds: from the headers to the end.
    """

    succeeded: bool
    status: int | None
    reason: str
    bytes: int
    seconds: float

    @property
    def throughput(self) -> float:
        """Bytes per second over the whole transfer."""
        return self.bytes / self.seconds if self.seconds > 0 else 0.0


@frozen
class NetworkSwitch:
    """A resumable upload continuing from another address (a phone that moved
    from Wi-Fi to LTE, say).

    :ivar upload_id: the tus upload.
    :ivar path: the upload path it will be published under.
    :ivar old_peer: the address of its previous PATCH.
    :ivar new_peer: the address of this one.
    :ivar offset: the bytes already stored when the new address took over.
    :ivar gap: seconds between the two PATCHes' starts.
    """

    upload_id: str
    path: str
    old_peer: str
    new_peer: str
    offset: int
    gap: float
