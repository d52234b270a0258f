"""Read the kernel's TCP statistics for a connection (Linux ``TCP_INFO``)."""

from __future__ import annotations

import socket
import struct

from hmacfs_core.transfer import TcpStats

# Offsets into Linux's struct tcp_info (include/uapi/linux/tcp.h); the layout only
# ever grows at the end, so these hold on every kernel that has the fields.
_RTT = struct.Struct("=II")  # tcpi_rtt, tcpi_rttvar (microseconds) at 68
_TOTAL_RETRANS = struct.Struct("=I")  # at 100
_MIN_RTT = struct.Struct("=I")  # microseconds, at 148
_DELIVERY_RATE = struct.Struct("=Q")  # bytes per second, at 160
_INFO_SIZE = 168


def read_tcp_stats(sock: socket.socket | None) -> TcpStats | None:
    """The connection's RTT, its variance and delivery rate, or None.

    None without a plain socket (a TLS transport, a test double), on platforms
    without ``TCP_INFO`` or on kernels too old to report the delivery rate;
    plugins then decide from what else they know.
    """
    option = getattr(socket, "TCP_INFO", None)
    if sock is None or option is None:
        return None
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, option, _INFO_SIZE)
    except OSError:
        return None
    if len(raw) < _INFO_SIZE:
        return None

    rtt, rtt_variance = _RTT.unpack_from(raw, 68)
    (retransmits,) = _TOTAL_RETRANS.unpack_from(raw, 100)
    (min_rtt,) = _MIN_RTT.unpack_from(raw, 148)
    (delivery_rate,) = _DELIVERY_RATE.unpack_from(raw, 160)
    return TcpStats(
        rtt=rtt / 1e6,
        rtt_variance=rtt_variance / 1e6,
        min_rtt=min_rtt / 1e6,
        delivery_rate=float(delivery_rate),
        retransmits=retransmits,
    )
