"""The built-in ``network_policy`` strategy: find out what network a client is on,
and keep its transfers within what that network can carry.

Three signals name a network kind (``ethernet``, ``wifi``, ``lte``, ``cellular``,
``vpn``):

- the operator's address ranges (``[plugins.network_policy] ranges``), e.g. the
  VPN's pool, or carrier-grade NAT space (``100.64.0.0/10``), which mobile
  carriers hand to phones;
- a hint the client sends (``X-Network-Type: wifi`` by default);
- the kernel's round-trip time, jitter and retransmits when the headers arrived.

They may disagree: a phone on a VPN over LTE matches a VPN range, hints ``lte``
and shows an LTE round trip. The ``[network_interfaces.<kind>] priority`` settles
it: among the kinds named, the one with the highest priority wins. The defaults
put ``vpn`` first, then slower kinds above faster ones (cellular, lte, wifi,
ethernet), so a doubt ends on the careful side and a client cannot talk its way
into bigger buffers with a hint that another signal contradicts.

Planning then caps the transfer at its network's ``buffer_size`` (uploads) or
``chunk_size`` (downloads) and scales its idle timeout: a constrained link caps
whatever a client profile asks for, never raises it.

The ``[handoff]`` section applies to uploads retried from another address or
network (:mod:`hmacfs_plugins.handoff`): the switch is logged and the retry's
idle timeout stretched by how much slower the new network measured.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from attrs import define, field, frozen
from twisted.logger import Logger

from hmacfs_core import Outcome, TcpStats, Transfer, TransferPlan, hookimpl
from hmacfs_core.config import NetworkInterfacesConfig, NetworkSettings
from hmacfs_core.transfer import NETWORK_KINDS
from hmacfs_plugins.handoff import HandoffTracker, Switch

PLUGIN_NAME = "network_policy"

#: The ``[plugins.network_policy]`` keys.
SETTING_NAMES = ("ranges", "hint_header")
DEFAULT_HINT_HEADER = "X-Network-Type"
#: The ``hint_header`` value that switches client hints off.
NO_HINT_HEADER = "none"

#: An HTTP header name (RFC 9110 ``token``).
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")

#: Round-trip signatures (seconds): a wired LAN answers in under 2 ms without
#: losses, Wi-Fi within 30 ms and steadily, LTE within 150 ms, and anything slower
#: or lossier is a weak cellular link.
ETHERNET_RTT = 0.002
WIFI_RTT = 0.030
LTE_RTT = 0.150
#: Retransmits that mark a lossy link. TcpStats counts retransmits but not the
#: segments sent, so this is a count, not a ratio; it is read when the headers
#: arrive, when the server has sent only a handful of segments (SYN-ACK, maybe
#: ``100 Continue``), so a few retransmits are already a large share of them.
# XXX: a real loss ratio needs tcpi_segs_out in TcpStats; a reused keep-alive
# connection carries the retransmits of its earlier transfers.
LOSSY_RETRANSMITS = 3

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: The order signals are listed in; on equal priority the earlier one wins.
SIGNALS = ("range", "hint", "rtt")


@frozen
class NetworkRange:
    """One CIDR of ``ranges`` and the kind of network it stands for."""

    kind: str
    network: Network


@frozen
class PolicySettings:
    """The ``[plugins.network_policy]`` table, checked.

    :ivar ranges: most specific first, so that the longest prefix wins when an
        operator declares a small range inside a larger one.
    :ivar hint_header: the lower-cased header carrying the client's hint, or
        None when hints are switched off.
    """

    ranges: tuple[NetworkRange, ...] = ()
    hint_header: str | None = DEFAULT_HINT_HEADER.lower()

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> PolicySettings:
        """Check the operator's table.

        :raises ValueError: naming the key, what is wrong and what would be right.
        """
        for key in table:
            if key not in SETTING_NAMES:
                raise ValueError(
                    f"unknown setting {key!r}{_did_you_mean(key, SETTING_NAMES)}; "
                    f"settings: {', '.join(SETTING_NAMES)}"
                )

        ranges = _parse_ranges(table.get("ranges", {}))
        hint_header = _parse_hint_header(table.get("hint_header", DEFAULT_HINT_HEADER))
        return cls(
            ranges=tuple(sorted(ranges, key=lambda r: -r.network.prefixlen)),
            hint_header=hint_header,
        )


@frozen
class Detection:
    """What each signal said about a transfer's network, kept in its notes.

    :ivar candidates: ``(signal, kind)`` for every signal that named a kind.
    :ivar chosen: the kind that won on priority, or None.
    """

    candidates: tuple[tuple[str, str], ...]
    chosen: str | None


@define
class NetworkPolicy:
    """Detect each transfer's network and cap its plan to that network.

    :ivar settings: the checked ``[plugins.network_policy]`` table.
    :ivar interfaces: the ``[network_interfaces]`` section in force.
    """

    settings: PolicySettings = field(factory=PolicySettings)
    interfaces: NetworkInterfacesConfig = field(factory=NetworkInterfacesConfig)
    handoff: HandoffTracker = field(factory=HandoffTracker)
    log: Logger = field(factory=lambda: Logger(namespace="hmacfs.network_policy"))

    @hookimpl
    def hmacfs_configure(self, app: Any, settings: Mapping[str, Any]) -> None:
        """Check ``[plugins.network_policy]`` and take ``[network_interfaces]``.

        :raises ValueError: for a bad setting; the server then refuses to start
            (or to reload) and names this plugin.
        """
        self.settings = PolicySettings.from_table(settings)
        self.interfaces = app.config.network_interfaces
        self.handoff.config = app.config.handoff

    @hookimpl
    def hmacfs_detect_network(self, transfer: Transfer) -> str | None:
        """Name the network kind, settling disagreements by priority.

        The signals are kept in ``transfer.notes["network_policy"]``.

        :return: a kind of :data:`NETWORK_KINDS`, or None with no signal at all.
        """
        candidates = [
            (signal, kind)
            for signal, kind in (
                ("range", self.kind_of_address(transfer.peer)),
                ("hint", self.kind_hinted(transfer.headers)),
                ("rtt", kind_of_round_trips(transfer.tcp)),
            )
            if kind is not None
        ]

        chosen = None
        if candidates:
            _, chosen = max(
                candidates,
                key=lambda candidate: (
                    self.settings_for(candidate[1]).priority,
                    -SIGNALS.index(candidate[0]),
                ),
            )
        transfer.notes[PLUGIN_NAME] = Detection(tuple(candidates), chosen)
        return chosen

    @hookimpl
    def hmacfs_plan_transfer(self, transfer: Transfer, plan: TransferPlan) -> None:
        """Cap the plan at the network's sizes and scale its idle timeout.

        Runs without ``tryfirst``/``trylast``: after ``client_classification``
        has applied the client's strategy, so a constrained link caps what a
        client profile asks for, and before ``buffer_sizing`` tunes within it.
        A cap only ever lowers a size; the timeout multiplier applies on top
        of the client's, since a slow client on a slow link needs both.
        """
        if transfer.network in NETWORK_KINDS:
            network = self.settings_for(transfer.network)
            if transfer.direction == "upload":
                plan.read_size = min(plan.read_size, network.buffer_size)
                plan.write_buffer_size = min(
                    plan.write_buffer_size, network.buffer_size
                )
            else:
                plan.chunk_size = min(plan.chunk_size, network.chunk_size)
            plan.idle_timeout *= network.timeout_multiplier

        switch = self.handoff.observe(transfer, transfer.started)
        if switch is not None:
            self._follow_switch(transfer, plan, switch)

    @hookimpl
    def hmacfs_transfer_finished(self, transfer: Transfer, outcome: Outcome) -> None:
        """Keep what the upload reached on this network, for a later switch."""
        self.handoff.record(transfer, outcome)

    def _follow_switch(
        self, transfer: Transfer, plan: TransferPlan, switch: Switch
    ) -> None:
        """Give a retry from a new network the slack that network needs."""
        plan.idle_timeout *= switch.timeout_scale
        transfer.notes["handoff"] = switch
        if not self.handoff.config.switch_notification_enabled:
            return
        self.log.info(
            "Upload {path} moved from {old_peer} ({old_network}) to {new_peer}"
            " ({new_network}); idle timeout x{scale:.1f}",
            event="network_switch",
            path=switch.path,
            old_peer=switch.old.peer,
            old_network=switch.old.network or "unknown",
            new_peer=switch.new.peer,
            new_network=switch.new.network or "unknown",
            scale=switch.timeout_scale,
        )

    def settings_for(self, kind: str) -> NetworkSettings:
        """The ``[network_interfaces.<kind>]`` table."""
        settings: NetworkSettings = getattr(self.interfaces, kind)
        return settings

    def kind_of_address(self, peer: str) -> str | None:
        """The kind of the most specific range holding ``peer``, if any."""
        if not self.settings.ranges:
            # Parsing the address is the costly part; without ranges skip it.
            return None
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return None
        # A dual-stack socket shows IPv4 clients as ::ffff:a.b.c.d.
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped

        for declared in self.settings.ranges:
            if address in declared.network:
                return declared.kind
        return None

    def kind_hinted(self, headers: Mapping[str, str]) -> str | None:
        """The kind the client's hint header names, ignoring case and spaces."""
        if self.settings.hint_header is None:
            return None
        hint = headers.get(self.settings.hint_header, "").strip().lower()
        return hint if hint in NETWORK_KINDS else None


def kind_of_round_trips(tcp: TcpStats | None) -> str | None:
    """The kind whose round trips look like these, or None.

    A 2-30 ms round trip with high jitter fits Wi-Fi under load and LTE alike,
    and names nothing; so does a zero RTT (nothing measured yet).
    """
    if tcp is None or tcp.rtt <= 0:
        return None

    if tcp.rtt > LTE_RTT or tcp.retransmits >= LOSSY_RETRANSMITS:
        return "cellular"
    if tcp.rtt < ETHERNET_RTT and tcp.retransmits == 0:
        return "ethernet"
    if tcp.rtt <= WIFI_RTT:
        return "wifi" if tcp.rtt_variance <= tcp.rtt / 2 else None
    return "lte"


def _parse_ranges(ranges: object) -> list[NetworkRange]:
    example = 'e.g. vpn = ["10.8.0.0/16"]'
    if not isinstance(ranges, Mapping):
        raise ValueError(f"ranges must be a table of kind = [CIDR, ...], {example}")

    parsed: list[NetworkRange] = []
    for kind, cidrs in ranges.items():
        if kind not in NETWORK_KINDS:
            hint = _did_you_mean(kind, NETWORK_KINDS)
            raise ValueError(
                f"ranges.{kind}: unknown network kind{hint}; "
                f"kinds: {', '.join(NETWORK_KINDS)}"
            )
        if not isinstance(cidrs, list) or not all(isinstance(c, str) for c in cidrs):
            raise ValueError(
                f"ranges.{kind} must be an array of CIDR strings, {example}"
            )
        parsed.extend(NetworkRange(kind, _parse_cidr(kind, cidr)) for cidr in cidrs)
    return parsed


def _parse_cidr(kind: str, cidr: str) -> Network:
    try:
        return ipaddress.ip_network(cidr.strip())
    except ValueError as error:
        problem = f"ranges.{kind}: {cidr!r} is not a network ({error})"
    try:
        network = ipaddress.ip_network(cidr.strip(), strict=False)
    except ValueError:
        raise ValueError(f"{problem}; write it as address/prefix length") from None
    raise ValueError(f"{problem}; did you mean {str(network)!r}?")


def _parse_hint_header(name: object) -> str | None:
    if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
        raise ValueError(
            f"hint_header must be an HTTP header name such as "
            f"{DEFAULT_HINT_HEADER!r}, or {NO_HINT_HEADER!r} to ignore client hints; "
            f"got {name!r}"
        )
    return None if name.lower() == NO_HINT_HEADER else name.lower()


def _did_you_mean(word: str, choices: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
