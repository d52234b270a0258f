"""Who the client is, also behind a reverse proxy the operator trusts.

A proxy's ``X-Forwarded-For`` is believed only when the connection comes from
an address in ``[server] trusted_proxies``: anybody else could write any
address into it. The client is then the rightmost address in the header that
is not itself a trusted proxy (each proxy appends the address it saw).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from twisted.web.server import Request

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(cidrs: Sequence[str]) -> tuple[Network, ...]:
    """The trusted proxy ranges (already validated by the config loader)."""
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def client_address(request: Request, trusted: tuple[Network, ...]) -> str:
    """The client's address: the TCP peer, or what a trusted proxy forwarded."""
    address = request.getClientAddress()
    peer = str(getattr(address, "host", address))
    if not trusted or not _is_trusted(peer, trusted):
        return peer

    forwarded = request.requestHeaders.getRawHeaders(b"x-forwarded-for") or []
    hops = [
        hop.strip().decode("latin-1")
        for header in forwarded
        for hop in header.split(b",")
        if hop.strip()
    ]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            return hop if _is_address(hop) else peer
    return peer


def _is_trusted(host: str, trusted: tuple[Network, ...]) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in network for network in trusted)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
