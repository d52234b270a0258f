"""
The configuration file: one TOML document, read into frozen attrs classes.

Reading is strict, because a configuration that is read differently from how it was
meant is worse than one that is refused: ``"false"`` is not ``false``, ``80.9`` is
not a port, and a misspelt key is an error rather than a silently ignored line.
Every problem in a file is reported at once, each with the ``section.key`` it is
about, so that an operator fixes a file in one pass.
"""

from __future__ import annotations

import difflib
import functools
import ipaddress
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, NewType, cast, get_args, get_origin

import attrs
import cattrs
import tomli
from attrs import Factory, field, frozen
from cattrs.errors import (
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)
from cattrs.gen import make_dict_structure_fn, override
from cattrs.v import format_exception, transform_error

from hmacfs_core.units import (
    KiB,
    MiB,
    format_duration,
    format_size,
    parse_duration,
    parse_size,
)

__all__ = [
    "SECRET_ENVIRONMENT_VARIABLE",
    "ByteSize",
    "Config",
    "ConfigError",
    "ConfigProblem",
    "DownloadsConfig",
    "ListenAddress",
    "LoggingConfig",
    "Protocol",
    "Seconds",
    "SecurityConfig",
    "ServerConfig",
    "TusConfig",
    "UploadsConfig",
    "default_config",
    "load_config",
    "make_converter",
    "parse_config",
    "resolve_secret",
]

#: A number of bytes, written in TOML as an integer or as e.g. ``"64KB"``.
ByteSize = NewType("ByteSize", int)

#: A number of seconds, written in TOML as a number or as e.g. ``"1h30m"``.
Seconds = NewType("Seconds", float)

#: A URL signature scheme of ``PROTOCOLS.md``.
Protocol = Literal["v1", "v2", "token", "v3"]

#: Where ``resolve_secret`` looks when the file names no secret.
SECRET_ENVIRONMENT_VARIABLE = "HMACFS_SECRET"

# The Go server hmacfs replaces reads a bare port as "every IPv4 interface".
_ALL_INTERFACES = "0.0.0.0"

_DIGITS = re.compile(r"[0-9]+")

_LISTEN_FORMS = "use 'HOST:PORT', '[::1]:8080', ':8080' or a port number"

# What a browser sends in an Origin header: a scheme, a host and maybe a port.
_ORIGIN = re.compile(
    r"[a-z][a-z0-9+.-]*://(?:\[[0-9a-f:.]+\]|[a-z0-9.-]+)(?::[0-9]{1,5})?", re.I
)


@frozen
class ListenAddress:
    """
    The interface and TCP port the server listens on.

    :ivar host: an IPv4 or IPv6 address or a host name, without brackets.
    :ivar port: 0 to 65535; 0 asks the system for a free port, which tests use.
    """

    host: str = field()
    port: int = field()

    @host.validator
    def _check_host(self, attribute: attrs.Attribute[Any], host: str) -> None:
        if not host or any(character.isspace() for character in host):
            raise ValueError(f"invalid listen host {host!r}")

    @port.validator
    def _check_port(self, attribute: attrs.Attribute[Any], port: int) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, got {port}")

    @classmethod
    def parse(cls, text: str) -> ListenAddress:
        """
        Read a listen address as an operator writes it.

        Accepts ``"HOST:PORT"``, ``"[IPV6]:PORT"``, ``":PORT"`` and a bare
        ``"PORT"``. A missing host means every IPv4 interface (``0.0.0.0``), as in
        the Go server whose config files operators bring over.

        :raises ValueError: if ``text`` is none of these, or the port is out of
            range.
        """
        address = text.strip()

        if _DIGITS.fullmatch(address):
            return cls(_ALL_INTERFACES, int(address))

        if address.startswith("["):
            bracketed = re.fullmatch(r"\[([^\[\]]+)\]:([0-9]+)", address)
            if bracketed is None:
                raise ValueError(f"invalid listen address {text!r} ({_LISTEN_FORMS})")
            return cls(bracketed[1], int(bracketed[2]))

        host, colon, port = address.rpartition(":")
        if not colon or not _DIGITS.fullmatch(port):
            raise ValueError(f"invalid listen address {text!r} ({_LISTEN_FORMS})")
        if ":" in host:
            raise ValueError(
                f"invalid listen address {text!r}: put an IPv6 address in brackets, "
                "e.g. '[::1]:8080'"
            )
        return cls(host or _ALL_INTERFACES, int(port))

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


def _normalise_base_path(base_path: str) -> str:
    """
    Make a URL prefix start and end with ``/``, so that ``"files"``, ``"/files"``
    and ``"/files/"`` all mean the same prefix.
    """
    if not base_path.startswith("/"):
        base_path = "/" + base_path
    if not base_path.endswith("/"):
        base_path += "/"
    return base_path


def _check_base_path(
    instance: object, attribute: attrs.Attribute[Any], value: str
) -> None:
    # The prefix is compared with the path of request URLs, which never holds a
    # query or a fragment; "//" (an empty segment) is a typo, and proxies differ on
    # whether they keep it.
    if "?" in value or "#" in value:
        raise ValueError(f"{value!r} must not contain '?' or '#': it is a URL path")
    if "//" in value:
        raise ValueError(f"{value!r} must not contain '//'")


def _check_positive_size(
    instance: object, attribute: attrs.Attribute[Any], size: int
) -> None:
    if size <= 0:
        raise ValueError(f"must be more than 0 bytes, got {format_size(size)}")


def _size_between(
    low: int, high: int
) -> Callable[[object, attrs.Attribute[Any], int], None]:
    """
    A validator for a buffer size, whose bounds keep per-transfer memory sane: below
    a few KiB every write is a system call, above a few dozen MiB a handful of slow
    clients exhaust memory.
    """

    def check(instance: object, attribute: attrs.Attribute[Any], size: int) -> None:
        if not low <= size <= high:
            raise ValueError(
                f"must be between {format_size(low)} and {format_size(high)}, "
                f"got {format_size(size)}"
            )

    return check


def _check_positive_duration(
    instance: object, attribute: attrs.Attribute[Any], seconds: float
) -> None:
    if not seconds > 0:
        raise ValueError(f"must be longer than 0s, got {format_duration(seconds)}")


def _check_not_negative_duration(
    instance: object, attribute: attrs.Attribute[Any], seconds: float
) -> None:
    if not seconds >= 0:
        raise ValueError(f"must not be negative, got {seconds}")


def _check_networks(
    instance: object, attribute: attrs.Attribute[Any], cidrs: tuple[str, ...]
) -> None:
    for cidr in cidrs:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise ValueError(
                f"{cidr!r} is not an address range (use e.g. '127.0.0.1/32' or "
                "'10.0.0.0/8')"
            ) from None


def _check_workers(
    instance: object, attribute: attrs.Attribute[Any], count: int
) -> None:
    if not 1 <= count <= 64:
        raise ValueError(f"must be between 1 and 64, got {count}")


@frozen
class ServerConfig:
    """
    The ``[server]`` section: where the server listens and stores files.

    :ivar listen_address: the interface and port to listen on.
    :ivar base_path: the URL prefix every upload and download URL starts with; it
        always starts and ends with ``/``.
    :ivar storage_path: the directory uploaded files are kept in.
    :ivar max_upload_size: the largest upload accepted, whatever its signature
        allows. The default, 100 MiB, is Prosody's default slot limit, so that every
        slot Prosody hands out fits.
    :ivar idle_timeout: an upload or download that makes no progress for this long
        is closed, so that stalled clients do not hold connections forever.
    :ivar shutdown_grace: on SIGTERM, running transfers get this long to finish
        before the server stops.
    :ivar workers: server processes sharing the listening socket; more than one
        uses more cores (each process learns and monitors on its own).
    :ivar trusted_proxies: address ranges of reverse proxies whose
        ``X-Forwarded-For`` names the real client (for logs and the plugins);
        from any other peer the header is ignored.
    """

    listen_address: ListenAddress = ListenAddress("127.0.0.1", 8080)
    base_path: str = field(
        default="/", converter=_normalise_base_path, validator=_check_base_path
    )
    storage_path: Path = Path("hmacfs-data")
    max_upload_size: ByteSize = field(
        default=ByteSize(100 * MiB), validator=_check_positive_size
    )
    idle_timeout: Seconds = field(
        default=Seconds(60.0), validator=_check_positive_duration
    )
    shutdown_grace: Seconds = field(
        default=Seconds(30.0), validator=_check_not_negative_duration
    )
    workers: int = field(default=1, validator=_check_workers)
    trusted_proxies: tuple[str, ...] = field(default=(), validator=_check_networks)


def _check_secret(
    instance: object, attribute: attrs.Attribute[Any], secret: str | None
) -> None:
    if secret == "":
        raise ValueError(
            "must not be empty (leave it out to use secret_file or "
            f"{SECRET_ENVIRONMENT_VARIABLE})"
        )


def _check_admin_token(
    instance: object, attribute: attrs.Attribute[Any], token: str | None
) -> None:
    if token is not None and len(token) < 16:
        raise ValueError("must be at least 16 characters: it guards admin requests")


def _check_upload_token(
    instance: object, attribute: attrs.Attribute[Any], token: str | None
) -> None:
    if token is not None and len(token) < 16:
        raise ValueError("must be at least 16 characters: it authorizes uploads")


def _check_protocols(
    instance: object,
    attribute: attrs.Attribute[Any],
    protocols: tuple[str, ...],
) -> None:
    valid = get_args(Protocol)
    if not protocols:
        raise ValueError(f"must list at least one of {_choices(valid)}")
    for protocol in protocols:
        if protocol not in valid:
            raise ValueError(f"unknown protocol {protocol!r} (use {_choices(valid)})")


@frozen
class SecurityConfig:
    """
    The ``[security]`` section: the secret URLs are signed with, and which
    signature schemes are accepted.

    The secret can be written in the file, kept in a separate file (so that the
    configuration can be world-readable), or given in the environment; see
    :func:`resolve_secret`. The loader refuses a file that sets both ``secret`` and
    ``secret_file``, since only one of them could be used.

    :ivar secret: the shared secret itself.
    :ivar secret_file: a file holding the shared secret.
    :ivar protocols: the signature schemes accepted; dropping old ones closes the
        doors their weaknesses open.
    :ivar v2_type_from_extension: for v2 signatures, guess the signed content type
        from the file name's extension when the client sends none.
    :ivar admin_token: the bearer token of admin requests (ending a rollback
        early); without one the admin routes do not exist.
    :ivar upload_token: the bearer token that authorizes ``POST /upload`` form
        uploads without a signed URL; without one only v3 signatures do.
    """

    secret: str | None = field(default=None, validator=_check_secret, repr=False)
    secret_file: Path | None = None
    protocols: tuple[Protocol, ...] = field(
        default=("v1", "v2", "token", "v3"), validator=_check_protocols
    )
    v2_type_from_extension: bool = False
    admin_token: str | None = field(
        default=None, validator=_check_admin_token, repr=False
    )
    upload_token: str | None = field(
        default=None, validator=_check_upload_token, repr=False
    )


@frozen
class UploadsConfig:
    """
    The ``[uploads]`` section.

    :ivar write_buffer_size: bytes gathered in memory before each write to the
        staged file; larger means fewer system calls and more memory per upload
        (about two of these per running upload). 512 KiB keeps 100 concurrent
        uploads well under 150 MB while a single upload runs near 1 MiB's
        speed (256 KiB cost a fifth of the throughput on loopback).
    :ivar read_size: bytes asked of the socket per read; each read is one trip
        through the HTTP parser, so larger reads cost less CPU per GiB.
    """

    write_buffer_size: ByteSize = field(
        default=ByteSize(512 * KiB), validator=_size_between(4 * KiB, 64 * MiB)
    )
    read_size: ByteSize = field(
        default=ByteSize(256 * KiB), validator=_size_between(4 * KiB, 16 * MiB)
    )


def _check_origins(
    instance: object,
    attribute: attrs.Attribute[Any],
    origins: tuple[str, ...],
) -> None:
    wrong = [
        origin for origin in origins if origin != "*" and not _ORIGIN.fullmatch(origin)
    ]
    if wrong:
        raise ValueError(
            f"not an origin: {', '.join(map(repr, wrong))} (use '*' or "
            "scheme://host[:port] with no path, e.g. 'https://chat.example.org')"
        )


@frozen
class DownloadsConfig:
    """
    The ``[downloads]`` section.

    :ivar allowed_origins: the web origins allowed to fetch files by CORS, so that
        web chat clients can show images; ``"*"`` allows every origin.
    :ivar chunk_size: bytes read from disk for each write to the socket.
    """

    allowed_origins: tuple[str, ...] = field(default=(), validator=_check_origins)
    chunk_size: ByteSize = field(
        default=ByteSize(1 * MiB), validator=_size_between(4 * KiB, 64 * MiB)
    )


@frozen
class LoggingConfig:
    """
    The ``[logging]`` section.

    :ivar level: the least severe events logged; ``debug`` adds one event per
        transfer with the adaptive engine's decisions.
    :ivar format: ``text``, one readable line per event, or ``json``, every event
        with all its fields for a log pipeline.
    :ivar detailed_logging: log ``transfer_detail``, everything known about each
        transfer when it ends.
    :ivar optimization_logging: log each transfer's plan decisions at info level
        (``transfer_decisions``) and every re-plan (``plan_changed``).
    :ivar client_profile_logging: log what the plugins made of each client
        (``client_profile``).
    """

    level: Literal["debug", "info", "warn", "error"] = "info"
    format: Literal["text", "json"] = "text"
    detailed_logging: bool = False
    optimization_logging: bool = False
    client_profile_logging: bool = False


AdaptationSpeed = Literal["slow", "medium", "fast"]


def _check_sample_count(
    instance: object, attribute: attrs.Attribute[Any], count: int
) -> None:
    if not 1 <= count <= 10_000:
        raise ValueError(f"must be between 1 and 10000, got {count}")


def _check_multiplier(
    instance: object, attribute: attrs.Attribute[Any], factor: float
) -> None:
    if not 0.1 <= factor <= 100:
        raise ValueError(f"must be between 0.1 and 100, got {factor}")


def _check_percent(
    instance: object, attribute: attrs.Attribute[Any], value: int
) -> None:
    if not 0 <= value <= 100:
        raise ValueError(f"must be between 0 and 100, got {value}")


def _check_interval(
    instance: object, attribute: attrs.Attribute[Any], seconds: float
) -> None:
    if not seconds >= 0.1:
        raise ValueError(f"must be at least 100ms, got {format_duration(seconds)}")


_buffer_bounds = _size_between(4 * KiB, 64 * MiB)


@frozen
class PerformanceConfig:
    """
    The ``[performance]`` section: the adaptive I/O engine's master switch and
    bounds.

    :ivar adaptive_buffers: run transfers through the plugin pipeline; off, every
        transfer gets the baseline plan from ``[uploads]``, ``[downloads]`` and
        ``[server]``, exactly as without any plugin.
    :ivar min_buffer_size: the smallest buffer or chunk a plan may use.
    :ivar max_buffer_size: the largest buffer or chunk a plan may use; bounds the
        memory a single adaptive transfer can take.
    :ivar buffer_optimization_interval: how often a running transfer's
        throughput is sampled and handed to the plugins.
    :ivar initial_buffer_size: the buffer an adaptive plan starts from before any
        plugin adjusts it, and the learner's first choice.
    :ivar client_profiling: ask the plugins what kind of client each transfer
        comes from.
    :ivar connection_type_detection: ask the plugins what network each transfer
        comes over.
    :ivar performance_history_samples: how many throughput samples per buffer
        size the learner averages over.
    :ivar adaptive_uploads: uploads may take the adaptive arm; off, every upload
        is baseline.
    :ivar adaptive_downloads: downloads may take the adaptive arm; off, every
        download is baseline.
    :ivar fully_adaptive: the normal routes (slot URLs, ``/upload``,
        ``/download/``) are all adaptive: the last step of a rollout.
    :ivar testing_mode: run both arms side by side: ``/upload/auto`` splits by
        ``rollout_percent`` while the normal routes stay baseline.
    :ivar rollout_percent: the share of transfers, 0 to 100, that take the
        adaptive arm: on ``/upload/auto`` in testing mode, else on the normal
        routes. Chosen per path, so a retry lands on the same arm.
    """

    adaptive_buffers: bool = False
    min_buffer_size: ByteSize = field(
        default=ByteSize(16 * KiB), validator=_buffer_bounds
    )
    max_buffer_size: ByteSize = field(
        default=ByteSize(1 * MiB), validator=_buffer_bounds
    )
    buffer_optimization_interval: Seconds = field(
        default=Seconds(5.0), validator=_check_interval
    )
    initial_buffer_size: ByteSize = field(
        default=ByteSize(64 * KiB), validator=_buffer_bounds
    )
    client_profiling: bool = True
    connection_type_detection: bool = True
    performance_history_samples: int = field(default=50, validator=_check_sample_count)
    adaptive_uploads: bool = True
    adaptive_downloads: bool = True
    fully_adaptive: bool = False
    testing_mode: bool = False
    rollout_percent: int = field(default=0, validator=_check_percent)


@frozen
class ClientStrategy:
    """
    How transfers of one client class are run (``strategy_<class>`` tables).

    :ivar buffer_size: read size and write buffer for uploads.
    :ivar chunk_size: bytes per write to the socket for downloads.
    :ivar retry_multiplier: scales the ``Retry-After`` a failed upload is given.
    :ivar timeout_multiplier: scales the idle timeout.
    """

    buffer_size: ByteSize = field(default=ByteSize(256 * KiB), validator=_buffer_bounds)
    chunk_size: ByteSize = field(default=ByteSize(256 * KiB), validator=_buffer_bounds)
    retry_multiplier: float = field(default=1.0, validator=_check_multiplier)
    timeout_multiplier: float = field(default=1.0, validator=_check_multiplier)


@frozen
class ClientOptimizationConfig:
    """
    The ``[client_optimization]`` section, used by the ``client_classification``
    plugin.

    :ivar enabled: apply the strategy of the client's class to its transfers.
    :ivar learning_enabled: remember what each client (address and User-Agent)
        turned out to be, and blend it into later classifications.
    :ivar adaptation_speed: how fast that memory follows new evidence: ``slow``
        weighs a new observation 0.1, ``medium`` 0.3, ``fast`` 0.6.
    :ivar user_agent_analysis: classify from the User-Agent header.
    :ivar connection_fingerprinting: classify from the kernel's TCP statistics
        (round-trip time and its variance).
    :ivar performance_classification: classify from the throughput the client
        reached in earlier transfers.
    """

    enabled: bool = True
    learning_enabled: bool = True
    adaptation_speed: AdaptationSpeed = "medium"
    user_agent_analysis: bool = True
    connection_fingerprinting: bool = True
    performance_classification: bool = True
    strategy_mobile: ClientStrategy = ClientStrategy(
        buffer_size=ByteSize(64 * KiB),
        chunk_size=ByteSize(64 * KiB),
        retry_multiplier=2.0,
        timeout_multiplier=3.0,
    )
    strategy_desktop: ClientStrategy = ClientStrategy(
        buffer_size=ByteSize(256 * KiB), chunk_size=ByteSize(256 * KiB)
    )
    strategy_server: ClientStrategy = ClientStrategy(
        buffer_size=ByteSize(1 * MiB),
        chunk_size=ByteSize(1 * MiB),
        retry_multiplier=0.5,
    )


@frozen
class NetworkSettings:
    """
    How transfers over one kind of network are run (``[network_interfaces.<kind>]``).

    :ivar buffer_size: the most an upload buffer may be on this network.
    :ivar chunk_size: the most a download chunk may be on this network.
    :ivar timeout_multiplier: scales the idle timeout.
    :ivar priority: when two signals name different networks for one client, the
        kind with the higher priority wins.
    """

    buffer_size: ByteSize = field(default=ByteSize(1 * MiB), validator=_buffer_bounds)
    chunk_size: ByteSize = field(default=ByteSize(1 * MiB), validator=_buffer_bounds)
    timeout_multiplier: float = field(default=1.0, validator=_check_multiplier)
    priority: int = 0


@frozen
class NetworkInterfacesConfig:
    """The ``[network_interfaces]`` section: one table per network kind."""

    ethernet: NetworkSettings = NetworkSettings(priority=10)
    wifi: NetworkSettings = NetworkSettings(
        buffer_size=ByteSize(512 * KiB),
        chunk_size=ByteSize(512 * KiB),
        timeout_multiplier=1.5,
        priority=20,
    )
    lte: NetworkSettings = NetworkSettings(
        buffer_size=ByteSize(256 * KiB),
        chunk_size=ByteSize(256 * KiB),
        timeout_multiplier=2.0,
        priority=30,
    )
    cellular: NetworkSettings = NetworkSettings(
        buffer_size=ByteSize(64 * KiB),
        chunk_size=ByteSize(64 * KiB),
        timeout_multiplier=4.0,
        priority=40,
    )
    vpn: NetworkSettings = NetworkSettings(
        buffer_size=ByteSize(256 * KiB),
        chunk_size=ByteSize(256 * KiB),
        timeout_multiplier=2.0,
        priority=50,
    )


def _check_history_length(
    instance: object, attribute: attrs.Attribute[Any], count: int
) -> None:
    if not 1 <= count <= 1000:
        raise ValueError(f"must be between 1 and 1000, got {count}")


def _check_window(
    instance: object, attribute: attrs.Attribute[Any], seconds: float
) -> None:
    if not seconds >= 1:
        raise ValueError(f"must be at least 1s, got {format_duration(seconds)}")


@frozen
class HandoffConfig:
    """
    The ``[handoff]`` section: what happens when a phone retries an upload from
    another address or network (Wi-Fi to LTE), used by ``network_policy``.

    :ivar seamless_switching: let an upload continue from a new address or
        network: a resumable upload's PATCH from another address is accepted,
        and what was measured on the old network carries over to plan the new
        attempt. Off, a resumable upload continues only from the address of its
        last PATCH (403 otherwise), and every attempt is planned as new.
    :ivar switch_notification_enabled: log each switch (old and new address and
        network) so operators can see handoffs happen.
    :ivar interface_quality_history: throughput measurements kept per upload and
        network kind, to compare the new network with the old one.
    :ivar performance_comparison_window: how long an upload's history is kept; a
        retry after that is a new upload, not a switch.
    :ivar chunk_retry_on_switch: a resumable upload's PATCH that is cut before
        its end is discarded back to where it started, so the client resends
        that chunk whole (a client that checksums its chunks needs that); off,
        the bytes that arrived are kept.
    :ivar pause_transfers_on_switch: when a resumable upload continues from a
        new address while its PATCH from the old one still holds it (the
        phone's old network went away without a reset), that PATCH is stopped
        at once instead of holding the upload until its idle timeout.
    """

    seamless_switching: bool = True
    chunk_retry_on_switch: bool = False
    pause_transfers_on_switch: bool = True
    switch_notification_enabled: bool = True
    interface_quality_history: int = field(default=10, validator=_check_history_length)
    performance_comparison_window: Seconds = field(
        default=Seconds(600.0), validator=_check_window
    )


def _check_tus_path(
    instance: object, attribute: attrs.Attribute[Any], value: str
) -> None:
    _check_base_path(instance, attribute, value)
    if value == "/":
        raise ValueError("must not be '/': every URL would be a tus URL")


@frozen
class TusConfig:
    """
    The ``[tus]`` section: resumable uploads (tus 1.0) with the same signed URLs.

    :ivar enabled: serve the tus endpoint.
    :ivar path: the URL prefix of the endpoint; a client creates an upload by
        putting it in front of the signed PUT URL's path.
    :ivar expiration: how long an unfinished upload is kept after its last
        activity.
    :ivar checkpoint_interval: received bytes are fsynced and the offset
        persisted at least this often, so a crash loses at most this much.
    :ivar sweep_interval: how often expired uploads are looked for and removed.
    """

    enabled: bool = True
    path: str = field(
        default="/tus/", converter=_normalise_base_path, validator=_check_tus_path
    )
    expiration: Seconds = field(
        default=Seconds(24 * 3600.0), validator=_check_positive_duration
    )
    checkpoint_interval: ByteSize = field(
        default=ByteSize(4 * MiB), validator=_size_between(64 * KiB, 1024 * MiB)
    )
    sweep_interval: Seconds = field(default=Seconds(600.0), validator=_check_interval)


@frozen
class MetricsConfig:
    """
    The ``[metrics]`` section: the Prometheus endpoint.

    :ivar enabled: serve ``/metrics``.
    :ivar listen_address: serve ``/metrics`` on this address instead of the main
        one, e.g. to keep it off the public interface.
    """

    enabled: bool = True
    listen_address: ListenAddress | None = None


BUILTIN_PLUGINS = (
    "buffer_sizing",
    "client_classification",
    "network_policy",
    "rollback_monitor",
)


@frozen
class PluginsConfig:
    """
    The ``[plugins]`` section: which plugins run, and their own settings.

    :ivar enabled: third-party plugins to load, by entry-point name. A plugin
        runs only once it is listed here, so installing a package never changes
        a server by itself. The built-ins always load unless disabled; listing
        one here changes nothing.
    :ivar disabled: plugins not to load, built-ins included.
    :ivar settings: each ``[plugins.<name>]`` table, handed to that plugin's
        ``hmacfs_configure``.
    """

    enabled: tuple[str, ...] = ()
    disabled: tuple[str, ...] = ()
    settings: Mapping[str, Mapping[str, Any]] = Factory(dict)

    @property
    def active(self) -> tuple[str, ...]:
        """The plugins to load: the built-ins, then ``enabled`` in its order.

        This is also the order hooks run in within each of the ``tryfirst``,
        plain and ``trylast`` groups, so a third-party plugin listed here has
        the last word over the built-ins in its group.
        """
        named = [*BUILTIN_PLUGINS, *self.enabled]
        return tuple(
            name
            for index, name in enumerate(named)
            if name not in self.disabled and name not in named[:index]
        )


@frozen
class Config:
    """
    The whole configuration file. Every section may be left out, and then has its
    defaults.
    """

    server: ServerConfig = Factory(ServerConfig)
    security: SecurityConfig = Factory(SecurityConfig)
    uploads: UploadsConfig = Factory(UploadsConfig)
    downloads: DownloadsConfig = Factory(DownloadsConfig)
    logging: LoggingConfig = Factory(LoggingConfig)
    performance: PerformanceConfig = Factory(PerformanceConfig)
    client_optimization: ClientOptimizationConfig = Factory(ClientOptimizationConfig)
    network_interfaces: NetworkInterfacesConfig = Factory(NetworkInterfacesConfig)
    handoff: HandoffConfig = Factory(HandoffConfig)
    tus: TusConfig = Factory(TusConfig)
    metrics: MetricsConfig = Factory(MetricsConfig)
    plugins: PluginsConfig = Factory(PluginsConfig)


@frozen
class ConfigProblem:
    """
    One thing wrong in a configuration file.

    :ivar where: the ``section.key`` the problem is about (``"server.base_path"``,
        ``"security.protocols[1]"``), ``"line 3, column 7"`` for a TOML syntax
        error, or ``""`` for the file as a whole.
    :ivar message: what is wrong, and where it helps, what would be right.
    :ivar line: the line of a TOML syntax error, counted from 1.
    :ivar column: the column of a TOML syntax error, counted from 1.
    """

    where: str
    message: str
    line: int | None = field(default=None, kw_only=True)
    column: int | None = field(default=None, kw_only=True)

    @classmethod
    def at_position(cls, line: int, column: int, message: str) -> ConfigProblem:
        """
        A problem at a place in the text rather than at a key, as for a TOML syntax
        error, which leaves no keys to name.
        """
        return cls(f"line {line}, column {column}", message, line=line, column=column)

    def render(self, source: str) -> str:
        """
        The problem as one line of an error message, in the forms editors and
        terminals recognise: ``source:3:7: message`` or ``source: key: message``.
        """
        if self.line is not None and self.column is not None:
            return f"{source}:{self.line}:{self.column}: {self.message}"
        if not self.where:
            return f"{source}: {self.message}"
        return f"{source}: {self.where}: {self.message}"


@frozen(auto_exc=True)
class ConfigError(Exception):
    """
    A configuration that cannot be used, with everything that is wrong with it.

    :ivar source: the file name, or what stands for it, such as ``"<config>"``.
    :ivar problems: every problem found, in the order of the classes' fields.
    """

    source: str
    problems: tuple[ConfigProblem, ...]

    def __str__(self) -> str:
        return "\n".join(problem.render(self.source) for problem in self.problems)


def parse_config(
    text: str, source: str = "<config>", base_dir: Path | None = None
) -> Config:
    """
    Read a configuration from TOML text.

    Relative ``storage_path`` and ``secret_file`` are taken relative to
    ``base_dir``, the directory of the configuration file, and not to the working
    directory: the server is usually started by systemd or a container runtime,
    whose working directory is not the shell the operator wrote the file in.

    :param text: the TOML document.
    :param source: the file name, used in error messages.
    :param base_dir: the directory relative paths are resolved against; ``None``
        leaves them relative to the working directory.
    :raises ConfigError: with every problem found.
    """
    try:
        document = tomli.loads(text)
    except tomli.TOMLDecodeError as error:
        problem = ConfigProblem.at_position(error.lineno, error.colno, error.msg)
        raise ConfigError(source, (problem,)) from None

    try:
        config = _cached_converter().structure(document, Config)
    except ClassValidationError as error:
        raise ConfigError(source, _problems_in(error)) from error

    problems = _cross_section_problems(config)
    if problems:
        raise ConfigError(source, tuple(problems))

    if base_dir is not None:
        config = _resolve_paths(config, base_dir)
    return config


def load_config(path: Path) -> Config:
    """
    Read a configuration file.

    Relative paths in it are resolved against the file's directory, as described
    in :func:`parse_config`.

    :raises ConfigError: if the file cannot be read, or with every problem in it.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        problem = ConfigProblem(
            "", f"not UTF-8 text (byte {error.start}); TOML files must be UTF-8"
        )
        raise ConfigError(str(path), (problem,)) from None
    except OSError as error:
        problem = ConfigProblem("", f"cannot read the file ({error.strerror or error})")
        raise ConfigError(str(path), (problem,)) from None

    return parse_config(text, source=str(path), base_dir=path.absolute().parent)


def default_config() -> Config:
    """
    The configuration used without a file: every default, with ``storage_path``
    relative to the working directory.
    """
    return Config()


def resolve_secret(config: Config, environ: Mapping[str, str]) -> bytes | None:
    """
    Find the shared secret URLs are signed with.

    Looks, in order, at ``security.secret`` (encoded as UTF-8), the contents of
    ``security.secret_file`` with one trailing newline removed (editors add one),
    and the ``HMACFS_SECRET`` environment variable if it is set and not empty.

    :param environ: the environment, such as :data:`os.environ`.
    :return: the secret, or ``None`` if none is configured.
    :raises ConfigError: if the secret file cannot be read or is empty.
    """
    security = config.security

    if security.secret is not None:
        return security.secret.encode("utf-8")

    if security.secret_file is not None:
        return _read_secret_file(security.secret_file)

    from_environment = environ.get(SECRET_ENVIRONMENT_VARIABLE)
    if from_environment:
        # surrogateescape gives back the bytes os.environ decoded the value from.
        return from_environment.encode("utf-8", "surrogateescape")

    return None


def _read_secret_file(path: Path) -> bytes:
    """
    Read a secret file as bytes, so that a secret may be binary, dropping the one
    trailing newline an editor or ``echo`` adds.

    :raises ConfigError: if the file cannot be read or holds no secret.
    """
    try:
        secret = path.read_bytes().removesuffix(b"\n")
    except OSError as error:
        message = f"cannot read the secret file ({error.strerror or error})"
        raise ConfigError(
            str(path), (ConfigProblem("security.secret_file", message),)
        ) from None

    if not secret:
        raise ConfigError(
            str(path), (ConfigProblem("security.secret_file", "the secret is empty"),)
        )
    return secret


def make_converter() -> cattrs.Converter:
    """
    Make the strict converter that turns a parsed TOML document into a
    :class:`Config`.

    cattrs on its own is lax (``"false"`` becomes ``True``, ``80.9`` becomes
    ``80``); here every basic type accepts only its own TOML type, sizes and
    durations go through :mod:`hmacfs_core.units`, unknown keys are errors, and each
    field's attrs validator runs as the field is read, so that a bad value is
    reported with its ``section.key`` alongside every other problem.
    """
    converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)

    converter.register_structure_hook(bool, _structure_bool)
    converter.register_structure_hook(int, _structure_int)
    converter.register_structure_hook(float, _structure_float)
    converter.register_structure_hook(str, _structure_str)
    converter.register_structure_hook(Path, _structure_path)
    converter.register_structure_hook(ByteSize, _structure_size)
    converter.register_structure_hook(Seconds, _structure_duration)
    converter.register_structure_hook(ListenAddress, _structure_listen_address)
    converter.register_structure_hook_func(_is_literal, _structure_literal)
    converter.register_structure_hook_factory(_is_homogeneous_tuple, _tuple_hook)
    converter.register_structure_hook_factory(attrs.has, _section_hook)
    converter.register_structure_hook(SecurityConfig, _security_hook(converter))
    converter.register_structure_hook(PluginsConfig, _plugins_hook(converter))
    for cls in (NetworkInterfacesConfig, ClientOptimizationConfig):
        converter.register_structure_hook(cls, _partial_tables_hook(cls, converter))
    return converter


@functools.cache
def _cached_converter() -> cattrs.Converter:
    # Generating the structuring code costs milliseconds; parse it once per process.
    return make_converter()


def _describe(value: object) -> str:
    """Name a TOML value the way the operator wrote it, for error messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the float {value}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__}"


def _choices(choices: tuple[object, ...]) -> str:
    """Write ``('a', 'b', 'c')`` as ``"'a', 'b' or 'c'"``."""
    quoted = [repr(choice) for choice in choices]
    if len(quoted) == 1:
        return quoted[0]
    return f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def _structure_bool(value: object, _: type) -> bool:
    if isinstance(value, bool):
        return value
    raise TypeError(f"expected true or false, got {_describe(value)}")


def _structure_int(value: object, _: type) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise TypeError(f"expected an integer, got {_describe(value)}")


def _structure_float(value: object, _: type) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise TypeError(f"expected a number, got {_describe(value)}")


def _structure_str(value: object, _: type) -> str:
    if isinstance(value, str):
        return value
    raise TypeError(f"expected a string, got {_describe(value)}")


def _structure_path(value: object, _: type) -> Path:
    if isinstance(value, str) and value:
        return Path(value)
    raise TypeError(f"expected a path, got {_describe(value)}")


def _structure_size(value: object, _: type) -> ByteSize:
    if isinstance(value, int | str) and not isinstance(value, bool):
        return ByteSize(parse_size(value))
    raise TypeError(
        f"expected a number of bytes or a size such as '10MB', got {_describe(value)}"
    )


def _structure_duration(value: object, _: type) -> Seconds:
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        return Seconds(parse_duration(value))
    raise TypeError(
        "expected a number of seconds or a duration such as '30s', "
        f"got {_describe(value)}"
    )


def _structure_listen_address(value: object, _: type) -> ListenAddress:
    if isinstance(value, int) and not isinstance(value, bool):
        return ListenAddress(_ALL_INTERFACES, value)
    if isinstance(value, str):
        return ListenAddress.parse(value)
    raise TypeError(f"expected 'HOST:PORT' or a port number, got {_describe(value)}")


def _is_literal(type_: Any) -> bool:
    return get_origin(type_) is Literal


def _structure_literal(value: object, type_: Any) -> object:
    choices = get_args(type_)
    for choice in choices:
        # Compare types too: TOML's true must not pass for a Literal[1].
        if type(value) is type(choice) and value == choice:
            return choice

    message = f"expected one of {_choices(choices)}, got {_describe(value)}"
    if isinstance(value, str):
        words = [choice for choice in choices if isinstance(choice, str)]
        close = difflib.get_close_matches(value, words, n=1)
        if close:
            message += f" (did you mean {close[0]!r}?)"
    raise ValueError(message)


def _is_homogeneous_tuple(type_: Any) -> bool:
    arguments = get_args(type_)
    return get_origin(type_) is tuple and len(arguments) == 2 and arguments[1] is ...


def _tuple_hook(
    type_: Any, converter: cattrs.Converter
) -> Callable[[object, Any], tuple[Any, ...]]:
    """
    Structure a TOML array into a tuple, element by element.

    cattrs would accept any iterable, so that ``protocols = "v1"`` became
    ``("v", "1")``; only an array is accepted here.
    """
    item_type = get_args(type_)[0]
    structure_item = converter.get_structure_hook(item_type)

    def structure(value: object, _: Any) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise TypeError(f"expected an array, got {_describe(value)}")

        items = []
        errors = []
        for index, item in enumerate(value):
            try:
                items.append(structure_item(item, item_type))
            except Exception as error:
                note = IterableValidationNote(
                    f"Structuring {type_} @ index {index}", index, item_type
                )
                error.__notes__ = [*getattr(error, "__notes__", []), note]
                errors.append(error)

        if errors:
            raise IterableValidationError(f"While structuring {type_}", errors, type_)
        return tuple(items)

    return structure


def _section_hook(
    cls: type, converter: cattrs.Converter
) -> Callable[[object, Any], Any]:
    """
    Structure a TOML table into an attrs class, running each field's attrs
    converter and validator as soon as the field is read.

    Left to ``__init__``, a validator would only run once every field had the right
    type, and its error would name the class rather than the key.
    """
    attrs.resolve_types(cls)
    checked_fields: dict[str, Any] = {
        attribute.name: override(struct_hook=_checked_field(attribute, converter))
        for attribute in attrs.fields(cls)
        if attribute.validator is not None or attribute.converter is not None
    }
    structure_fields: Callable[[Mapping[str, Any], type], Any] = make_dict_structure_fn(
        cls,
        converter,
        _cattrs_forbid_extra_keys=True,
        _cattrs_detailed_validation=True,
        **checked_fields,
    )

    def structure(value: object, _: Any) -> Any:
        if not isinstance(value, dict):
            raise TypeError(f"expected a table, got {_describe(value)}")
        return structure_fields(value, cls)

    return structure


def _checked_field(
    attribute: attrs.Attribute[Any], converter: cattrs.Converter
) -> Callable[[object, Any], Any]:
    structure_value = converter.get_structure_hook(attribute.type)

    def structure(value: object, type_: Any) -> Any:
        result = structure_value(value, type_)
        if attribute.converter is not None:
            result = cast(Callable[[Any], Any], attribute.converter)(result)
        if attribute.validator is not None:
            # No instance exists yet; the validators here only look at the value.
            attribute.validator(None, attribute, result)
        return result

    return structure


def _security_hook(converter: cattrs.Converter) -> Callable[[object, Any], Any]:
    """
    Structure ``[security]``, refusing a table that sets both ``secret`` and
    ``secret_file``: only one of them could be used, and the operator should say
    which.
    """
    structure_section = _section_hook(SecurityConfig, converter)

    def structure(value: object, type_: Any) -> SecurityConfig:
        both = isinstance(value, dict) and {"secret", "secret_file"} <= value.keys()

        try:
            security: SecurityConfig = structure_section(value, type_)
        except ClassValidationError as error:
            if not both:
                raise
            # Reported with the other problems of the section, not after they are
            # fixed.
            raise ClassValidationError(
                error.message, [*error.exceptions, _both_secrets()], SecurityConfig
            ) from None

        if both:
            raise _both_secrets()
        return security

    return structure


def _plugins_hook(converter: cattrs.Converter) -> Callable[[object, Any], Any]:
    """
    Structure ``[plugins]``: ``enabled`` and ``disabled`` are checked like any
    key, and every sub-table is one plugin's settings, passed on as parsed.
    Which names exist is only known once the entry points are read, so the
    plugin manager checks them.
    """
    structure_section = _section_hook(PluginsConfig, converter)

    def structure(value: object, type_: Any) -> PluginsConfig:
        if not isinstance(value, dict):
            raise TypeError(f"expected a table, got {_describe(value)}")

        tables = {key: item for key, item in value.items() if isinstance(item, dict)}
        rest = {key: item for key, item in value.items() if key not in tables}
        if "settings" in rest:
            # "settings" names the parsed tables; as a key it would be a typo.
            rest["settings\0"] = rest.pop("settings")
        plugins: PluginsConfig = structure_section(rest, type_)
        return attrs.evolve(plugins, settings=tables)

    return structure


def _partial_tables_hook(
    cls: type, converter: cattrs.Converter
) -> Callable[[object, Any], Any]:
    """
    Structure a section whose sub-tables have defaults of their own (the ``wifi``
    table, ``strategy_mobile``...): a key left out of such a table keeps that
    table's default, not the class-wide one, so ``[network_interfaces.lte]
    priority = 5`` changes only the priority.
    """
    structure_section = _section_hook(cls, converter)
    table_defaults = {
        attribute.name: attrs.asdict(attribute.default)
        for attribute in attrs.fields(cls)
        if attrs.has(type(attribute.default))
    }

    def structure(value: object, type_: Any) -> Any:
        if isinstance(value, dict):
            value = {
                key: {**table_defaults[key], **item}
                if key in table_defaults and isinstance(item, dict)
                else item
                for key, item in value.items()
            }
        return structure_section(value, type_)

    return structure


def _cross_section_problems(config: Config) -> list[ConfigProblem]:
    """Problems that involve two keys at once, reported like the others."""
    performance = config.performance
    problems = []
    if performance.min_buffer_size > performance.max_buffer_size:
        problems.append(
            ConfigProblem(
                "performance.min_buffer_size",
                f"is larger than max_buffer_size "
                f"({format_size(performance.max_buffer_size)})",
            )
        )
    elif not (
        performance.min_buffer_size
        <= performance.initial_buffer_size
        <= performance.max_buffer_size
    ):
        problems.append(
            ConfigProblem(
                "performance.initial_buffer_size",
                "must lie between min_buffer_size and max_buffer_size",
            )
        )
    tus = config.tus
    if tus.enabled and config.server.base_path.startswith(tus.path):
        problems.append(
            ConfigProblem(
                "tus.path",
                f"covers server.base_path ({config.server.base_path}): no slot URL "
                "could take a PUT",
            )
        )
    if config.server.workers > 1 and config.metrics.listen_address is not None:
        problems.append(
            ConfigProblem(
                "metrics.listen_address",
                "cannot be used with server.workers > 1: each worker has its own "
                "metrics, served at /metrics on the main address",
            )
        )
    return problems


def _both_secrets() -> ValueError:
    return ValueError("set secret or secret_file, not both")


def _problems_in(error: ClassValidationError) -> tuple[ConfigProblem, ...]:
    """
    List the problems in a cattrs error tree, each with its ``section.key``.

    cattrs reports all unknown keys of a table as one error; each becomes its own
    problem here, named by its full key and with a suggestion. ``transform_error``
    only gives strings, so the formatter leaves a placeholder for them that is
    replaced once their table's path is known.
    """
    unknown_keys: list[ForbiddenExtraKeysError] = []
    placeholder = "\0unknown keys "

    def describe(exception: BaseException, type_: Any) -> str:
        if isinstance(exception, ForbiddenExtraKeysError):
            unknown_keys.append(exception)
            return f"{placeholder}{len(unknown_keys) - 1}"
        if isinstance(exception, ValueError | TypeError):
            # Every hook above words its own message for the operator.
            return str(exception)
        return format_exception(exception, type_)

    problems = []
    for line in transform_error(error, path="$", format_exception=describe):
        message, _, path = line.rpartition(" @ ")
        where = path.removeprefix("$").removeprefix(".")

        if not message.startswith(placeholder):
            problems.append(ConfigProblem(where, message))
            continue

        extra = unknown_keys[int(message.removeprefix(placeholder))]
        for key in sorted(extra.extra_fields):
            key_path = f"{where}.{key}" if where else key
            problems.append(ConfigProblem(key_path, _unknown_key_message(extra, key)))

    return tuple(problems)


def _unknown_key_message(error: ForbiddenExtraKeysError, key: str) -> str:
    kind = "section" if error.cl is Config else "key"
    valid = [attribute.name for attribute in attrs.fields(error.cl)]

    close = difflib.get_close_matches(key, valid, n=1)
    if close:
        return f"unknown {kind} (did you mean {close[0]!r}?)"
    home = _section_holding(key)
    if home is not None:
        # The design guide's debug keys sit in [performance] there, for one.
        return f"unknown {kind} (it belongs in [{home}])"
    return f"unknown {kind} (valid {kind}s: {', '.join(valid)})"


def _section_holding(key: str) -> str | None:
    """The section that has a key of this name, if any does."""
    for section in attrs.fields(Config):
        cls = section.type
        if cls is not None and attrs.has(cls) and key in attrs.fields_dict(cls):
            return section.name
    return None


def _resolve_paths(config: Config, base_dir: Path) -> Config:
    # "/" keeps an absolute right-hand path as it is, so only relative ones change.
    server = attrs.evolve(
        config.server, storage_path=base_dir / config.server.storage_path
    )

    security = config.security
    if security.secret_file is not None:
        security = attrs.evolve(security, secret_file=base_dir / security.secret_file)

    return attrs.evolve(config, server=server, security=security)
