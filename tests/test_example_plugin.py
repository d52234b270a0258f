"""The example third-party plugin, ``examples/hmacfs-fixed-plan``, as installed.

It is installed in the test environment like any distribution an operator would
add (see the README's test command), so these tests also show that a plugin
outside this repository works through the entry points alone.
"""

from __future__ import annotations

import http.client
import importlib.metadata
import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hmacfs_fixed_plan import AddressRanges
from hypothesis import given
from hypothesis import strategies as st
from serverproc import RunningServer, start_server, stop_quietly
from twisted.internet.testing import MemoryReactorClock

from hmacfs_core import ProgressSample, Transfer, TransferPlan
from hmacfs_core.app import App
from hmacfs_core.config import BUILTIN_PLUGINS, parse_config
from hmacfs_core.pipeline import baseline_plan
from hmacfs_core.plugins import PluginError

KiB = 1024

#: The built-ins and the example, as a TOML array.
ALL_PLUGINS = json.dumps([*BUILTIN_PLUGINS, "fixed_plan"])

PINNED_LOOPBACK = f"""
[performance]
adaptive_buffers = true
fully_adaptive = true
[logging]
level = "debug"
format = "json"
[plugins]
enabled = {ALL_PLUGINS}
[plugins.fixed_plan]
networks = ["127.0.0.2/32"]
buffer_size = "32KiB"
"""


def make_app(plugin_settings: str, enabled: str = ALL_PLUGINS) -> App:
    """A real app with the built-ins and ``fixed_plan`` (TOML for its table)."""
    config = parse_config(
        f"[plugins]\nenabled = {enabled}\n[plugins.fixed_plan]\n{plugin_settings}\n"
    )
    return App(config=config, secret=b"s", reactor=MemoryReactorClock())


def refusal(plugin_settings: str, enabled: str = ALL_PLUGINS) -> str:
    with pytest.raises(PluginError) as raised:
        make_app(plugin_settings, enabled)
    assert raised.value.plugin == "fixed_plan"
    return raised.value.problem


def transfer_from(peer: str, app: App) -> Transfer:
    return Transfer(
        id="t",
        direction="upload",
        path="a/b.bin",
        size=10 * 1024 * KiB,
        content_type=None,
        user_agent="",
        peer=peer,
        headers={},
        tcp=None,
        started=0.0,
        arm="adaptive",
        plan=baseline_plan(app.config),
    )


def planned(app: App, peer: str) -> TransferPlan:
    """The plan the whole chain of ``app`` makes for an upload from ``peer``."""
    transfer = transfer_from(peer, app)
    assert transfer.plan is not None
    app.plugins.call_all("hmacfs_plan_transfer", transfer=transfer, plan=transfer.plan)
    return transfer.plan


def put_from(server: RunningServer, source: str, path: str, body: bytes) -> int:
    """PUT ``body`` from the local address ``source``; the response status."""
    connection = http.client.HTTPConnection(
        server.host, server.port, timeout=30, source_address=(source, 0)
    )
    try:
        connection.request("PUT", server.signed(path, len(body)), body=body)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


# -- on the real server -------------------------------------------------------


def test_uploads_from_the_range_get_the_pinned_buffer_and_others_do_not(
    tmp_path: Path,
) -> None:
    server = start_server(tmp_path / "srv", PINNED_LOOPBACK)
    try:
        # The outside upload goes first, while the learner has measured nothing
        # and keeps its initial 64 KiB, so that it cannot pick 32 KiB by chance.
        assert (
            put_from(server, "127.0.0.1", "a/outside.bin", os.urandom(100_000)) == 201
        )
        assert put_from(server, "127.0.0.2", "a/inside.bin", os.urandom(100_000)) == 201
        outside = server.wait_for_event(
            event="transfer_decisions", path="a/outside.bin"
        )
        inside = server.wait_for_event(event="transfer_decisions", path="a/inside.bin")
    finally:
        stop_quietly(server)

    assert inside["applied"]["write_buffer_size"] == 32 * KiB
    assert inside["applied"]["read_size"] == 32 * KiB
    assert inside["set_by"]["write_buffer_size"] == "fixed_plan"
    assert inside["set_by"]["read_size"] == "fixed_plan"
    assert outside["applied"]["write_buffer_size"] != 32 * KiB
    assert outside["applied"]["read_size"] != 32 * KiB
    assert "fixed_plan" not in outside["set_by"].values()


def test_hmacfs_plugins_lists_it_as_a_third_party_with_its_distribution() -> None:
    version = importlib.metadata.version("hmacfs-fixed-plan")

    result = subprocess.run(
        [sys.executable, "-m", "hmacfs_core", "plugins"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}

    assert result.returncode == 0, result.stderr
    assert f"hmacfs-fixed-plan {version}" in rows["fixed_plan"]
    assert "third party" in rows["fixed_plan"]
    # Installed is not enabled: the default configuration runs the built-ins only.
    assert " no " in rows["fixed_plan"]
    assert "configure, plan_transfer, transfer_progress" in rows["fixed_plan"]


def test_a_bad_network_stops_the_start_naming_the_plugin_and_the_entry(
    tmp_path: Path,
) -> None:
    config = tmp_path / "hmacfs.toml"
    config.write_text(
        '[server]\nlisten_address = "127.0.0.1:0"\n'
        f'storage_path = "{tmp_path / "store"}"\n'
        '[security]\nsecret = "s"\n'
        f"[plugins]\nenabled = {ALL_PLUGINS}\n"
        '[plugins.fixed_plan]\nnetworks = ["10.0.0.0/8", "10.0.0.300/24"]\n'
        'buffer_size = "32KiB"\n',
        encoding="utf-8",
    )

    result = subprocess.run(
        [sys.executable, "-m", "hmacfs_core", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2, result.stdout + result.stderr
    assert "'fixed_plan'" in result.stderr
    assert "networks[1]" in result.stderr
    assert "10.0.0.300/24" in result.stderr
    assert "Listening" not in result.stdout


# -- its settings -------------------------------------------------------------


def test_a_network_with_host_bits_is_refused_with_the_network_meant() -> None:
    problem = refusal('networks = ["10.1.2.3/8"]\nbuffer_size = "32KiB"')

    assert "networks[0]" in problem
    assert "'10.0.0.0/8'" in problem


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ('buffer_size = "32KiB"', "networks is required"),
        ('networks = []\nbuffer_size = "32KiB"', "non-empty array"),
        ('networks = "10.0.0.0/8"\nbuffer_size = "32KiB"', "non-empty array"),
        ('networks = [10]\nbuffer_size = "32KiB"', "networks[0]"),
        ('networks = ["10.0.0.0/8"]', "sets no plan field"),
        ('networks = ["10.0.0.0/8"]\nbufer_size = "32KiB"', "'buffer_size'"),
        ('networks = ["10.0.0.0/8"]\nbuffer_size = "32 parsecs"', "buffer_size"),
        ('networks = ["10.0.0.0/8"]\nbuffer_size = true', "buffer_size"),
        ('networks = ["10.0.0.0/8"]\nchunk_size = "8KiB"', "min_buffer_size"),
        ('networks = ["10.0.0.0/8"]\nsocket_buffer = "8MiB"', "max_buffer_size"),
        ('networks = ["10.0.0.0/8"]\nidle_timeout = "1h30"', "idle_timeout"),
        ('networks = ["10.0.0.0/8"]\nidle_timeout = "2d"', "between 1s and 1d"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(settings: str, expected: str) -> None:
    assert expected in refusal(settings)


def test_its_plan_has_the_last_word_over_the_learner_whatever_the_order() -> None:
    app = make_app('networks = ["10.0.0.0/8"]\nbuffer_size = "32KiB"', '["fixed_plan"]')

    assert planned(app, "10.9.8.7").write_buffer_size == 32 * KiB


def test_it_starts_with_the_learner_disabled_whatever_the_order() -> None:
    enabled = '["fixed_plan", "buffer_sizing"]'
    config = parse_config(
        f'[plugins]\nenabled = {enabled}\ndisabled = ["buffer_sizing"]\n'
        '[plugins.fixed_plan]\nnetworks = ["10.0.0.0/8"]\nbuffer_size = "32KiB"\n'
    )

    app = App(config=config, secret=b"s", reactor=MemoryReactorClock())

    assert planned(app, "10.9.8.7").write_buffer_size == 32 * KiB


# -- its plans ----------------------------------------------------------------


def test_every_configured_field_is_pinned_and_no_other() -> None:
    app = make_app(
        'networks = ["10.0.0.0/8"]\nchunk_size = "48KiB"\nidle_timeout = "2m"\n'
        'socket_buffer = "128KiB"'
    )
    outside = planned(app, "192.0.2.1")

    inside = planned(app, "10.9.8.7")

    assert inside.chunk_size == 48 * KiB
    assert inside.idle_timeout == 120.0
    assert inside.socket_receive_buffer == inside.socket_send_buffer == 128 * KiB
    assert inside.write_buffer_size == outside.write_buffer_size
    assert inside.read_size == outside.read_size
    assert inside.retry_after == outside.retry_after


def test_a_mid_transfer_change_by_another_plugin_is_undone() -> None:
    app = make_app('networks = ["10.0.0.0/8"]\nbuffer_size = "32KiB"')
    transfer = transfer_from("10.9.8.7", app)
    assert transfer.plan is not None
    app.plugins.call_all("hmacfs_plan_transfer", transfer=transfer, plan=transfer.plan)
    transfer.plan.write_buffer_size = 512 * KiB
    sample = ProgressSample(
        bytes_total=1, seconds_total=1.0, bytes_interval=1, seconds_interval=1.0
    )

    app.plugins.call_all("hmacfs_transfer_progress", transfer=transfer, sample=sample)

    assert transfer.plan.write_buffer_size == 32 * KiB


def test_an_ipv4_peer_on_a_dual_stack_socket_matches_its_ipv4_network() -> None:
    app = make_app('networks = ["10.0.0.0/8"]\nbuffer_size = "32KiB"')

    assert planned(app, "::ffff:10.1.2.3").write_buffer_size == 32 * KiB


ip_networks = st.one_of(
    st.builds(
        lambda address, prefix: ipaddress.ip_network((address, prefix), strict=False),
        st.ip_addresses(v=4),
        st.integers(0, 32),
    ),
    st.builds(
        lambda address, prefix: ipaddress.ip_network((address, prefix), strict=False),
        st.ip_addresses(v=6),
        st.integers(0, 128),
    ),
)


@given(st.lists(ip_networks, max_size=8), st.ip_addresses())
def test_address_ranges_agree_with_ipaddress(
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network],
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    # A dual-stack socket shows IPv4 peers as ::ffff:a.b.c.d.
    address = getattr(address, "ipv4_mapped", None) or address
    expected = any(
        network.version == address.version and address in network
        for network in networks
    )

    assert (str(address) in AddressRanges(networks)) is expected


@pytest.mark.parametrize("peer", ["", "not an address", "/run/hmacfs.sock"])
def test_a_peer_that_is_no_ip_address_is_in_no_range(peer: str) -> None:
    assert peer not in AddressRanges([ipaddress.ip_network("0.0.0.0/0")])
