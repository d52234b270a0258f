"""``[handoff]``: an upload retried from another address or network."""

from __future__ import annotations

import http.client
import os
import time

import pytest
from hmacfs_plugins.handoff import HandoffTracker
from serverproc import RunningServer

from hmacfs_core import Outcome, Transfer
from hmacfs_core.config import HandoffConfig

ADAPTIVE = """
[performance]
adaptive_buffers = true
fully_adaptive = true
[plugins]
disabled = ["buffer_sizing", "client_classification", "rollback_monitor"]
[logging]
level = "debug"
format = "json"
"""


def _transfer(path: str, peer: str, network: str | None, started: float) -> Transfer:
    return Transfer(
        id="t",
        direction="upload",
        path=path,
        size=1000,
        content_type=None,
        user_agent="",
        peer=peer,
        headers={},
        tcp=None,
        started=started,
        network=network,
    )


def test_a_retry_from_the_same_place_is_no_switch() -> None:
    tracker = HandoffTracker()

    tracker.observe(_transfer("a/b", "198.51.100.7", "wifi", 0.0), 0.0)
    again = tracker.observe(_transfer("a/b", "198.51.100.7", "wifi", 5.0), 5.0)

    assert again is None


def test_a_retry_from_another_network_is_a_switch_with_unmeasured_slack() -> None:
    tracker = HandoffTracker()
    tracker.observe(_transfer("a/b", "198.51.100.7", "wifi", 0.0), 0.0)

    switch = tracker.observe(_transfer("a/b", "203.0.113.9", "lte", 5.0), 5.0)

    assert switch is not None
    assert (switch.old.network, switch.new.network) == ("wifi", "lte")
    assert switch.timeout_scale == 2.0


def test_a_slower_measured_network_stretches_the_timeout_by_the_ratio() -> None:
    tracker = HandoffTracker()
    wifi = _transfer("a/b", "198.51.100.7", "wifi", 0.0)
    lte = _transfer("a/b", "203.0.113.9", "lte", 1.0)
    tracker.observe(wifi, 0.0)
    tracker.record(wifi, Outcome(False, None, "cut", 3_000_000, 1.0))
    tracker.observe(lte, 1.0)
    tracker.record(lte, Outcome(False, None, "cut", 1_000_000, 1.0))

    switch = tracker.observe(_transfer("a/b", "198.51.100.7", "wifi", 2.0), 2.0)
    back = tracker.observe(_transfer("a/b", "203.0.113.9", "lte", 3.0), 3.0)

    assert switch is not None and switch.timeout_scale == 1.0
    assert back is not None and back.timeout_scale == pytest.approx(3.0)


def test_the_history_keeps_the_configured_number_of_measurements() -> None:
    tracker = HandoffTracker(HandoffConfig(interface_quality_history=2))
    attempt = _transfer("a/b", "198.51.100.7", "wifi", 0.0)
    tracker.observe(attempt, 0.0)

    for rate in (1_000, 2_000, 9_000):
        tracker.record(attempt, Outcome(False, None, "cut", rate, 1.0))

    assert list(tracker.uploads["a/b"].throughput["wifi"]) == [2_000.0, 9_000.0]


def test_history_older_than_the_comparison_window_is_forgotten() -> None:
    tracker = HandoffTracker(HandoffConfig(performance_comparison_window=60.0))
    tracker.observe(_transfer("a/b", "198.51.100.7", "wifi", 0.0), 0.0)

    later = tracker.observe(_transfer("a/b", "203.0.113.9", "lte", 61.0), 61.0)

    assert later is None


def test_without_seamless_switching_every_attempt_is_new() -> None:
    tracker = HandoffTracker(HandoffConfig(seamless_switching=False))
    tracker.observe(_transfer("a/b", "198.51.100.7", "wifi", 0.0), 0.0)

    switch = tracker.observe(_transfer("a/b", "203.0.113.9", "lte", 5.0), 5.0)

    assert switch is None


def _cut_then_retry(server: RunningServer, path: str) -> dict[str, object]:
    """Start an upload on Wi-Fi, cut it, retry it from another address on LTE."""
    body = os.urandom(400_000)
    target = server.signed(path, len(body))
    with server.connect() as sock:
        sock.sendall(
            f"PUT {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
            "X-Network-Type: wifi\r\n\r\n".encode()
            + body[:100_000]
        )
        time.sleep(0.3)

    retry = http.client.HTTPConnection(
        server.host, server.port, timeout=30, source_address=("127.0.0.2", 0)
    )
    retry.request("PUT", target, body=body, headers={"X-Network-Type": "lte"})
    assert retry.getresponse().status == 201
    retry.close()
    return server.wait_for_event(
        event="transfer_decisions", direction="upload", network="lte"
    )


def test_a_switch_is_logged_and_stretches_the_real_idle_timeout(make_server) -> None:
    server = make_server(ADAPTIVE)

    decisions = _cut_then_retry(server, "h/switch.bin")
    switch = server.wait_for_event(event="network_switch")

    # 60 s, x2 for LTE, x2 for a switch to an unmeasured network.
    assert decisions["applied"]["idle_timeout"] == 240.0
    assert (switch["old_network"], switch["new_network"]) == ("wifi", "lte")
    assert (switch["old_peer"], switch["new_peer"]) == ("127.0.0.1", "127.0.0.2")


def test_switch_notifications_can_be_turned_off(make_server) -> None:
    server = make_server(ADAPTIVE + "[handoff]\nswitch_notification_enabled = false\n")

    decisions = _cut_then_retry(server, "h/quiet.bin")

    assert decisions["applied"]["idle_timeout"] == 240.0
    assert server.events(event="network_switch") == []


def test_without_seamless_switching_the_retry_gets_no_extra_slack(make_server) -> None:
    server = make_server(ADAPTIVE + "[handoff]\nseamless_switching = false\n")

    decisions = _cut_then_retry(server, "h/plain.bin")

    assert decisions["applied"]["idle_timeout"] == 120.0
    assert server.events(event="network_switch") == []
