"""The ``network_policy`` plugin: which network a transfer comes over, how
conflicting signals are settled, and how the network caps the plan, down to the
real socket, writer and producer."""

from __future__ import annotations

import http.client
import os
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
from hmacfs_plugins.network_policy import NetworkPolicy
from serverproc import RunningServer, start_server, stop_quietly
from twisted.internet.testing import MemoryReactorClock

from hmacfs_core import TcpStats, Transfer, TransferPlan
from hmacfs_core.app import App
from hmacfs_core.config import Config, parse_config
from hmacfs_core.pipeline import baseline_plan
from hmacfs_core.plugins import PluginError
from hmacfs_core.transfer import NETWORK_KINDS

KiB = 1024
MiB = 1024 * KiB

#: Per-kind tables with a distinct value in every field, so each shows where it went.
INTERFACES = """
[network_interfaces.ethernet]
buffer_size = "2MiB"
chunk_size = "3MiB"
timeout_multiplier = 1.25

[network_interfaces.wifi]
buffer_size = "384KiB"
chunk_size = "320KiB"
timeout_multiplier = 1.75

[network_interfaces.lte]
buffer_size = "192KiB"
chunk_size = "160KiB"
timeout_multiplier = 2.5

[network_interfaces.cellular]
buffer_size = "48KiB"
chunk_size = "40KiB"
timeout_multiplier = 4.5

[network_interfaces.vpn]
buffer_size = "96KiB"
chunk_size = "80KiB"
timeout_multiplier = 3.5
"""

INTERFACE_VALUES = {
    "ethernet": (2 * MiB, 3 * MiB, 1.25),
    "wifi": (384 * KiB, 320 * KiB, 1.75),
    "lte": (192 * KiB, 160 * KiB, 2.5),
    "cellular": (48 * KiB, 40 * KiB, 4.5),
    "vpn": (96 * KiB, 80 * KiB, 3.5),
}


def make_app(settings: str = "", policy: str = "") -> App:
    """A real app with only this plugin: ``settings`` is TOML for the sections,
    ``policy`` the body of ``[plugins.network_policy]``."""
    config = parse_config(
        f"{settings}\n[plugins]\nenabled = "
        f'["network_policy"]\n[plugins.network_policy]\n{policy}\n'
    )
    return App(config, secret=b"secret", reactor=MemoryReactorClock())


def make_plugin(settings: str = "", policy: str = "") -> NetworkPolicy:
    plugin = make_app(settings, policy).plugins.manager.get_plugin("network_policy")
    assert isinstance(plugin, NetworkPolicy)
    return plugin


def make_transfer(
    peer: str = "198.51.100.7",
    headers: dict[str, str] | None = None,
    tcp: TcpStats | None = None,
    direction: str = "upload",
    user_agent: str = "",
) -> Transfer:
    return Transfer(
        id=os.urandom(4).hex(),
        direction=direction,  # type: ignore[arg-type]
        path="f00d/cat.jpg",
        size=123_456,
        content_type="image/jpeg",
        user_agent=user_agent,
        peer=peer,
        headers=headers or {},
        tcp=tcp,
        started=0.0,
    )


def round_trips(rtt_ms: float, variance_ms: float, retransmits: int = 0) -> TcpStats:
    return TcpStats(
        rtt=rtt_ms / 1000,
        rtt_variance=variance_ms / 1000,
        min_rtt=rtt_ms / 1000,
        delivery_rate=1e6,
        retransmits=retransmits,
    )


def hinted(kind: str) -> dict[str, str]:
    """The headers of a request hinting ``kind`` (the pipeline lower-cases names)."""
    return {"x-network-type": kind}


def detect(plugin: NetworkPolicy, transfer: Transfer) -> str | None:
    """Detect as the pipeline does: the answer becomes the transfer's network."""
    transfer.network = plugin.hmacfs_detect_network(transfer=transfer)
    return transfer.network


def initial_plan(config: Config) -> TransferPlan:
    """The plan an adaptive transfer starts from, as the pipeline builds it."""
    initial = config.performance.initial_buffer_size
    return attrs.evolve(
        baseline_plan(config),
        read_size=initial,
        write_buffer_size=initial,
        chunk_size=initial,
    )


# -- the operator's ranges -----------------------------------------------------------

RANGES = """
ranges.vpn = ["10.8.0.0/16", "2001:db8:8::/48"]
ranges.lte = ["100.64.0.0/10"]
ranges.wifi = ["10.8.3.0/24"]
"""


@pytest.mark.parametrize(
    ("peer", "expected"),
    [
        ("10.8.0.5", "vpn"),
        ("2001:db8:8::42", "vpn"),
        ("100.72.13.9", "lte"),
        ("::ffff:100.72.13.9", "lte"),
        ("10.8.3.20", "wifi"),
        ("192.0.2.1", None),
        ("2001:db8:9::1", None),
        ("not-an-address", None),
    ],
)
def test_an_address_in_a_declared_range_names_its_kind(
    peer: str, expected: str | None
) -> None:
    plugin = make_plugin(policy=RANGES)

    assert detect(plugin, make_transfer(peer)) == expected


def test_the_most_specific_range_wins_whatever_the_priorities() -> None:
    plugin = make_plugin("[network_interfaces.vpn]\npriority = 99", RANGES)

    assert plugin.kind_of_address("10.8.3.20") == "wifi"
    assert plugin.kind_of_address("10.8.4.20") == "vpn"


# -- the client's hint ---------------------------------------------------------------


@pytest.mark.parametrize("kind", NETWORK_KINDS)
def test_the_hint_header_names_any_kind_ignoring_case(kind: str) -> None:
    plugin = make_plugin()

    assert detect(plugin, make_transfer(headers=hinted(f" {kind.upper()} "))) == kind


def test_a_hint_that_names_no_kind_is_ignored() -> None:
    assert detect(make_plugin(), make_transfer(headers=hinted("5g"))) is None


def test_the_hint_header_can_be_renamed() -> None:
    plugin = make_plugin(policy='hint_header = "X-Connection-Kind"')

    assert detect(plugin, make_transfer(headers={"x-connection-kind": "lte"})) == "lte"
    assert detect(plugin, make_transfer(headers=hinted("lte"))) is None


@pytest.mark.parametrize("off", ["none", "None"])
def test_hints_can_be_switched_off(off: str) -> None:
    plugin = make_plugin(policy=f'hint_header = "{off}"')

    assert detect(plugin, make_transfer(headers=hinted("wifi"))) is None


# -- the round trips -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("tcp", "expected"),
    [
        (round_trips(0.3, 0.1), "ethernet"),
        (round_trips(0.3, 0.1, retransmits=1), "wifi"),
        (round_trips(12, 3), "wifi"),
        (round_trips(12, 9), None),
        (round_trips(80, 20), "lte"),
        (round_trips(150, 60), "lte"),
        (round_trips(220, 40), "cellular"),
        (round_trips(12, 3, retransmits=3), "cellular"),
        (round_trips(0, 0), None),
        (None, None),
    ],
    ids=[
        "lan",
        "fast-but-lossy",
        "steady-wifi",
        "jittery-wifi-or-lte",
        "lte",
        "slow-lte",
        "slower-than-lte",
        "lossy",
        "unmeasured",
        "no-stats",
    ],
)
def test_round_trips_name_the_kind_they_look_like(
    tcp: TcpStats | None, expected: str | None
) -> None:
    assert detect(make_plugin(), make_transfer(tcp=tcp)) == expected


# -- conflicts -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", NETWORK_KINDS)
def test_the_priority_of_each_kind_settles_a_conflict_between_signals(
    kind: str,
) -> None:
    other = "wifi" if kind != "wifi" else "lte"
    policy = f'ranges.{other} = ["10.0.0.0/8"]'
    transfer = make_transfer("10.1.2.3", headers=hinted(kind))

    high = make_plugin(f"[network_interfaces.{kind}]\npriority = 100", policy)
    low = make_plugin(f"[network_interfaces.{kind}]\npriority = -1", policy)

    assert detect(high, transfer) == kind
    assert detect(low, transfer) == other


def test_by_default_a_vpn_range_beats_a_wifi_hint_and_a_lan_round_trip() -> None:
    plugin = make_plugin(policy='ranges.vpn = ["10.8.0.0/16"]')
    transfer = make_transfer("10.8.0.5", hinted("wifi"), round_trips(0.3, 0.1))

    assert detect(plugin, transfer) == "vpn"
    detection = transfer.notes["network_policy"]
    assert detection.candidates == (
        ("range", "vpn"),
        ("hint", "wifi"),
        ("rtt", "ethernet"),
    )
    assert detection.chosen == "vpn"


def test_on_equal_priority_the_operators_range_beats_the_hint() -> None:
    settings = "[network_interfaces.wifi]\npriority = 30\n"
    plugin = make_plugin(settings, 'ranges.wifi = ["10.0.0.0/8"]')

    assert detect(plugin, make_transfer("10.1.2.3", hinted("lte"))) == "wifi"


def test_a_hint_cannot_raise_a_slow_link_to_ethernet_by_default() -> None:
    transfer = make_transfer(headers=hinted("ethernet"), tcp=round_trips(220, 40))

    assert detect(make_plugin(), transfer) == "cellular"


# -- the plan -----------------------------------------------------------------------


def planned(kind: str | None, direction: str, plan: TransferPlan) -> TransferPlan:
    app = make_app(INTERFACES)
    plugin = app.plugins.manager.get_plugin("network_policy")
    transfer = make_transfer(direction=direction)
    transfer.network = kind

    capped = attrs.evolve(plan)
    plugin.hmacfs_plan_transfer(transfer=transfer, plan=capped)
    return capped


def generous_plan() -> TransferPlan:
    """A plan larger than every network allows, as a server's strategy asks."""
    return attrs.evolve(
        initial_plan(parse_config("")),
        read_size=8 * MiB,
        write_buffer_size=8 * MiB,
        chunk_size=8 * MiB,
    )


@pytest.mark.parametrize("kind", NETWORK_KINDS)
def test_an_upload_is_capped_at_its_networks_buffer_size(kind: str) -> None:
    buffer_size, _, timeout_multiplier = INTERFACE_VALUES[kind]
    before = generous_plan()

    plan = planned(kind, "upload", before)

    assert plan.read_size == buffer_size
    assert plan.write_buffer_size == buffer_size
    assert plan.chunk_size == before.chunk_size
    assert plan.idle_timeout == before.idle_timeout * timeout_multiplier


@pytest.mark.parametrize("kind", NETWORK_KINDS)
def test_a_download_is_capped_at_its_networks_chunk_size(kind: str) -> None:
    _, chunk_size, timeout_multiplier = INTERFACE_VALUES[kind]
    before = generous_plan()

    plan = planned(kind, "download", before)

    assert plan.chunk_size == chunk_size
    assert plan.read_size == before.read_size
    assert plan.write_buffer_size == before.write_buffer_size
    assert plan.idle_timeout == before.idle_timeout * timeout_multiplier


@pytest.mark.parametrize("direction", ["upload", "download"])
def test_a_cap_never_raises_what_was_asked(direction: str) -> None:
    small = attrs.evolve(
        generous_plan(),
        read_size=16 * KiB,
        write_buffer_size=16 * KiB,
        chunk_size=16 * KiB,
    )

    plan = planned("ethernet", direction, small)

    assert plan.read_size == plan.write_buffer_size == plan.chunk_size == 16 * KiB


@pytest.mark.parametrize("kind", [None, "satellite"])
def test_an_unknown_network_leaves_the_plan_alone(kind: str | None) -> None:
    before = generous_plan()

    assert planned(kind, "upload", before) == before


def test_a_constrained_link_caps_what_the_client_profile_asks_for() -> None:
    config = parse_config('[plugins]\ndisabled = ["buffer_sizing", "rollback_monitor"]')
    app = App(config, secret=b"secret", reactor=MemoryReactorClock())
    transfer = make_transfer(
        headers=hinted("cellular"), direction="download", user_agent="curl/8.5.0"
    )
    plan = initial_plan(config)

    transfer.client_class, _ = app.plugins.call_first(
        "hmacfs_classify_client", transfer=transfer
    )
    transfer.network, _ = app.plugins.call_first(
        "hmacfs_detect_network", transfer=transfer
    )
    app.plugins.call_all("hmacfs_plan_transfer", transfer=transfer, plan=plan)

    assert (transfer.client_class, transfer.network) == ("server", "cellular")
    assert plan.chunk_size == 64 * KiB  # asked 1 MiB, the cellular cap is 64 KiB
    assert plan.idle_timeout == 60 * 1.0 * 4.0


# -- settings -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ("range = {}", "unknown setting 'range' (did you mean 'ranges'?)"),
        ('ranges = ["10.0.0.0/8"]', "ranges must be a table of kind = [CIDR, ...]"),
        (
            'ranges.vnp = ["10.8.0.0/16"]',
            "ranges.vnp: unknown network kind (did you mean 'vpn'?)",
        ),
        ('ranges.vpn = "10.8.0.0/16"', "ranges.vpn must be an array of CIDR strings"),
        ("ranges.vpn = [10]", "ranges.vpn must be an array of CIDR strings"),
        (
            'ranges.vpn = ["10.8.0.1/16"]',
            "'10.8.0.1/16' is not a network (10.8.0.1/16 has host bits set); "
            "did you mean '10.8.0.0/16'?",
        ),
        ('ranges.lte = ["100.64/10"]', "ranges.lte: '100.64/10' is not a network"),
        ('hint_header = "X Network"', "hint_header must be an HTTP header name"),
        ("hint_header = 5", "hint_header must be an HTTP header name"),
    ],
)
def test_bad_settings_stop_the_start_with_a_clear_message(
    policy: str, message: str
) -> None:
    with pytest.raises(PluginError) as raised:
        make_app(policy=policy)

    assert str(raised.value).startswith("plugin 'network_policy': bad settings: ")
    assert message in str(raised.value)


def test_default_settings_use_the_x_network_type_hint_and_no_ranges() -> None:
    plugin = make_plugin()

    assert plugin.settings.hint_header == "x-network-type"
    assert plugin.settings.ranges == ()


# -- on the real server -------------------------------------------------------------

SERVER_SETTINGS = """
[performance]
adaptive_buffers = true
fully_adaptive = true
initial_buffer_size = "512KiB"
max_buffer_size = "8MiB"

[logging]
level = "debug"
format = "json"

[plugins]
disabled = ["buffer_sizing", "rollback_monitor"]

[plugins.network_policy]
ranges.vpn = ["127.0.0.2/32"]
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server for this module, with both plugins and a VPN range."""
    running = start_server(tmp_path_factory.mktemp("server"), SERVER_SETTINGS)
    yield running
    stop_quietly(running)


def _decisions(server: RunningServer, path: str, direction: str) -> dict[str, Any]:
    return server.wait_for_event(
        event="transfer_decisions", path=path, direction=direction
    )


def test_a_cellular_hint_caps_a_real_downloads_chunks(server: RunningServer) -> None:
    path = f"{os.urandom(6).hex()}/clip.mp4"
    assert server.put(path, os.urandom(300 * KiB)).status == 201

    answer = server.get(path, headers={"X-Network-Type": "cellular"})
    decisions = _decisions(server, path, "download")

    assert answer.status == 200
    assert decisions["network"] == "cellular"
    assert decisions["plan_before_clamp"]["chunk_size"] == 64 * KiB
    assert decisions["applied"]["chunk_size"] == 64 * KiB
    assert decisions["set_by"]["chunk_size"] == "network_policy"


def test_an_upload_from_a_declared_range_is_capped_to_that_network(
    server: RunningServer,
) -> None:
    path = f"{os.urandom(6).hex()}/report.pdf"
    body = os.urandom(300 * KiB)
    connection = http.client.HTTPConnection(
        server.host, server.port, timeout=30, source_address=("127.0.0.2", 0)
    )
    try:
        connection.request(
            "PUT", server.signed(path, len(body)), body, {"User-Agent": "curl/8.5"}
        )
        assert connection.getresponse().status == 201
    finally:
        connection.close()

    decisions = _decisions(server, path, "upload")

    assert decisions["client_class"] == "server"
    assert decisions["network"] == "vpn"
    # The server strategy asks for 1 MiB; the VPN caps it at 256 KiB.
    assert decisions["applied"]["read_size"] == 256 * KiB
    assert decisions["applied"]["write_buffer_size"] == 256 * KiB
    assert decisions["applied"]["idle_timeout"] == 60 * 1.0 * 2.0
    assert decisions["set_by"]["read_size"] == "network_policy"


def test_a_loopback_connection_is_ethernet_by_its_round_trips(
    server: RunningServer,
) -> None:
    path = f"{os.urandom(6).hex()}/note.txt"
    answer = server.request(
        "PUT", server.signed(path, 5), b"hello", {"User-Agent": "Conversations/2.16"}
    )

    decisions = _decisions(server, path, "upload")

    assert answer.status == 201
    assert decisions["network"] == "ethernet"
    assert decisions["client_class"] == "mobile"
    # Ethernet's 1 MiB cap leaves the phone's 64 KiB strategy as it was.
    assert decisions["applied"]["read_size"] == 64 * KiB
    assert decisions["applied"]["idle_timeout"] == 60 * 3.0 * 1.0
