"""An hmacfs plugin that gives the peers of chosen address ranges a fixed plan.

Some networks are known in advance (the servers on the LAN, a VPN with a small
MTU, a partner's data centre) and an operator would rather pin how their
transfers run than let the built-in learner explore buffer sizes on them. For a
peer inside ``[plugins.fixed_plan] networks``, this plugin sets the plan fields
the operator configured and nothing else; every other transfer is left to the
other plugins.
"""

from __future__ import annotations

import difflib
import ipaddress
import socket
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from hmacfs_core import ProgressSample, Transfer, TransferPlan, hookimpl
from hmacfs_core.pipeline import IDLE_TIMEOUT_BOUNDS
from hmacfs_core.units import format_duration, format_size, parse_duration, parse_size

if TYPE_CHECKING:
    from hmacfs_core.app import App
    from hmacfs_core.config import PerformanceConfig

__all__ = ["AddressRanges", "FixedPlan"]

#: The settings that take a size, and the plan fields each one sets.
SIZE_SETTINGS = {
    "buffer_size": ("read_size", "write_buffer_size"),
    "chunk_size": ("chunk_size",),
    "socket_buffer": ("socket_receive_buffer", "socket_send_buffer"),
}
#: The keys that set plan fields; at least one is required.
PLAN_SETTINGS = (*SIZE_SETTINGS, "idle_timeout")
#: Every key ``[plugins.fixed_plan]`` may hold.
KNOWN_SETTINGS = ("networks", *PLAN_SETTINGS)

#: The hooks in which this plugin must be the last to touch the plan.

#: The first 12 bytes of an IPv4 address mapped into IPv6 (RFC 4291, 2.5.5.2).
IPV4_MAPPED_PREFIX = bytes(10) + b"\xff\xff"

PlanFields = tuple[tuple[str, int | float], ...]


class AddressRanges:
    """A set of IP networks that answers ``address in ranges`` in a few lookups.

    Each network is kept as its prefix, shifted down to the bits it fixes, in a
    set per prefix length: a lookup costs one set membership test per distinct
    prefix length, however many networks there are.
    """

    def __init__(
        self, networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]
    ):
        by_version: dict[int, dict[int, set[int]]] = {4: {}, 6: {}}
        for network in networks:
            free_bits = network.max_prefixlen - network.prefixlen
            prefixes = by_version[network.version].setdefault(free_bits, set())
            prefixes.add(int(network.network_address) >> free_bits)
        self._tables = {
            version: tuple(
                (free_bits, frozenset(prefixes))
                for free_bits, prefixes in sorted(table.items())
            )
            for version, table in by_version.items()
        }

    def __contains__(self, address: object) -> bool:
        """Whether ``address`` (as in ``Transfer.peer``) is inside a network.

        An IPv4 peer seen through a dual-stack socket (``::ffff:10.1.2.3``)
        matches the IPv4 networks; a peer that is no IP address at all (a UNIX
        socket) matches nothing.
        """
        packed = _packed(address) if isinstance(address, str) else None
        if packed is None:
            return False
        if packed[:12] == IPV4_MAPPED_PREFIX:
            packed = packed[12:]

        number = int.from_bytes(packed, "big")
        return any(
            number >> free_bits in prefixes
            for free_bits, prefixes in self._tables[4 if len(packed) == 4 else 6]
        )


def _packed(address: str) -> bytes | None:
    """The address in network byte order, or None when it is not an IP address.

    ``socket.inet_pton`` rather than :mod:`ipaddress`: it runs once per
    transfer, and it is ten times faster.
    """
    # A link-local peer may carry its zone ("fe80::1%eth0"); the zone is no part
    # of the address the networks describe.
    address = address.partition("%")[0]
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            return socket.inet_pton(family, address)
        except (OSError, ValueError):
            continue
    return None


class FixedPlan:
    """Set the configured plan fields on every transfer from the configured ranges.

    Instantiated once per server; ``hmacfs_configure`` fills it, and may do so
    again on a reload: a bad new table raises before anything is replaced, so
    the plugin keeps working with what it had.
    """

    def __init__(self) -> None:
        self._name = "fixed_plan"
        self._ranges = AddressRanges(())
        self._fields: PlanFields = ()

    @hookimpl
    def hmacfs_configure(self, app: App, settings: Mapping[str, Any]) -> None:
        """Read ``[plugins.fixed_plan]``.

        :raises ValueError: naming the key (and for ``networks`` the entry) that
            is wrong.
        """
        _refuse_unknown_keys(settings)
        ranges = AddressRanges(_read_networks(settings.get("networks")))
        fields = _read_plan_fields(settings, app.config.performance)
        name = app.plugins.manager.get_name(self) or self._name

        self._ranges, self._fields, self._name = ranges, fields, name

    # trylast: the built-in learner (buffer_sizing) plans last too, so that its
    # measured sizes replace what strategy plugins guessed. Within the trylast
    # group the built-ins run before the plugins [plugins] enabled lists, so this
    # pinned plan has the last word over the learner.
    @hookimpl(trylast=True)
    def hmacfs_plan_transfer(self, transfer: Transfer, plan: TransferPlan) -> None:
        """Pin the configured fields for a peer inside the ranges."""
        if transfer.peer in self._ranges:
            transfer.notes[self._name] = True
            _set_fields(plan, self._fields)

    @hookimpl(trylast=True)
    def hmacfs_transfer_progress(
        self, transfer: Transfer, sample: ProgressSample
    ) -> None:
        """Undo a change another plugin made mid-transfer to a pinned transfer.

        The learner may switch a running transfer to a size it measured as
        better; for the ranges here, the operator has said which size to use.
        """
        if self._name in transfer.notes and transfer.plan is not None:
            _set_fields(transfer.plan, self._fields)


def _set_fields(plan: TransferPlan, fields: PlanFields) -> None:
    for name, value in fields:
        setattr(plan, name, value)


def _refuse_unknown_keys(settings: Mapping[str, Any]) -> None:
    for key in settings:
        if key in KNOWN_SETTINGS:
            continue
        close = difflib.get_close_matches(key, KNOWN_SETTINGS, n=1)
        hint = (
            f"did you mean {close[0]!r}?"
            if close
            else f"known: {_listed(KNOWN_SETTINGS)}"
        )
        raise ValueError(f"unknown key {key!r} ({hint})")


def _read_networks(
    value: object,
) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    if value is None:
        raise ValueError('networks is required, e.g. networks = ["10.0.0.0/8"]')
    if not isinstance(value, list) or not value:
        raise ValueError('networks must be a non-empty array, e.g. ["10.0.0.0/8"]')

    networks = []
    for index, entry in enumerate(value):
        where = f"networks[{index}]"
        if not isinstance(entry, str):
            raise ValueError(f"{where}: expected a string such as '10.0.0.0/8'")
        try:
            networks.append(ipaddress.ip_network(entry.strip()))
        except ValueError:
            raise ValueError(f"{where}: {_why_not_a_network(entry)}") from None
    return networks


def _why_not_a_network(entry: str) -> str:
    try:
        loose = ipaddress.ip_network(entry.strip(), strict=False)
    except ValueError:
        return (
            f"{entry!r} is not an IP network "
            "(write an address or address/prefix, e.g. '10.0.0.0/8', '2001:db8::/32')"
        )
    # A typo in the address or in the prefix length: refuse rather than guess.
    return f"{entry!r} has host bits set (did you mean {str(loose)!r}?)"


def _read_plan_fields(
    settings: Mapping[str, Any], performance: PerformanceConfig
) -> PlanFields:
    fields: list[tuple[str, int | float]] = []
    for key, plan_fields in SIZE_SETTINGS.items():
        if key in settings:
            size = _read_size(key, settings[key], performance)
            fields.extend((plan_field, size) for plan_field in plan_fields)
    if "idle_timeout" in settings:
        fields.append(("idle_timeout", _read_idle_timeout(settings["idle_timeout"])))

    if not fields:
        raise ValueError(
            f"sets no plan field: give at least one of {_listed(PLAN_SETTINGS)}"
        )
    return tuple(fields)


def _read_size(key: str, value: object, performance: PerformanceConfig) -> int:
    try:
        size = parse_size(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as error:
        raise ValueError(f"{key}: {error}") from None

    # The core clamps every plan to these bounds; a pinned size it would change
    # is not the size the operator pinned.
    low, high = performance.min_buffer_size, performance.max_buffer_size
    if not low <= size <= high:
        raise ValueError(
            f"{key}: {format_size(size)} is outside [performance] min_buffer_size"
            f" .. max_buffer_size ({format_size(low)} .. {format_size(high)})"
        )
    return size


def _read_idle_timeout(value: object) -> float:
    try:
        seconds = parse_duration(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as error:
        raise ValueError(f"idle_timeout: {error}") from None

    low, high = IDLE_TIMEOUT_BOUNDS
    if not low <= seconds <= high:
        raise ValueError(
            f"idle_timeout: must be between {format_duration(low)} and "
            f"{format_duration(high)}, got {format_duration(seconds)}"
        )
    return seconds


def _listed(names: tuple[str, ...]) -> str:
    return f"{', '.join(names[:-1])} or {names[-1]}"
