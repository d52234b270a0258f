"""The ``[logging]`` keys that each turn on their own engine events."""

from __future__ import annotations

import os
import time
from pathlib import Path

from pluginkit import install_plugin
from serverproc import put_head, start_server, stop_quietly

ADAPTIVE_JSON = """
[performance]
adaptive_buffers = true
fully_adaptive = true
buffer_optimization_interval = "100ms"
[logging]
format = "json"
"""

REPLANNER = """
    from hmacfs_core import hookimpl

    class Plugin:
        @hookimpl
        def hmacfs_transfer_progress(self, transfer, sample):
            transfer.plan.write_buffer_size = 32768
"""


def _upload_as_a_phone(server) -> None:  # type: ignore[no-untyped-def]
    target = server.signed("l/photo.jpg", 200_000)
    answer = server.request(
        "PUT", target, os.urandom(200_000), {"User-Agent": "Conversations/2.16"}
    )
    assert answer.status == 201


def test_none_of_the_engine_events_is_logged_by_default(make_server) -> None:
    server = make_server(ADAPTIVE_JSON)

    _upload_as_a_phone(server)
    server.wait_for_event(method="PUT", path="/l/photo.jpg", status=201)

    for name in ("transfer_decisions", "client_profile", "transfer_detail"):
        assert server.events(event=name) == []


def test_optimization_logging_shows_decisions_at_info_level(make_server) -> None:
    server = make_server(ADAPTIVE_JSON + "optimization_logging = true\n")

    _upload_as_a_phone(server)
    event = server.wait_for_event(event="transfer_decisions")

    assert event["log_level"]["name"] == "info"
    assert event["client_class"] == "mobile"


def test_client_profile_logging_shows_what_the_plugins_made_of_the_client(
    make_server,
) -> None:
    server = make_server(ADAPTIVE_JSON + "client_profile_logging = true\n")

    _upload_as_a_phone(server)
    event = server.wait_for_event(event="client_profile")

    assert event["client_class"] == "mobile"
    assert event["user_agent"] == "Conversations/2.16"
    assert event["decided_by"]["client_class"] == "client_classification"


def test_detailed_logging_follows_each_transfer_to_its_end(make_server) -> None:
    server = make_server(ADAPTIVE_JSON + "detailed_logging = true\n")

    _upload_as_a_phone(server)
    event = server.wait_for_event(event="transfer_detail")

    assert event["outcome"]["status"] == 201
    assert event["size"] == 200_000
    assert event["plan"]["write_buffer_size"] > 0


def test_optimization_logging_shows_every_re_plan(tmp_path: Path) -> None:
    env = install_plugin(tmp_path / "site", "replanner", REPLANNER)
    settings = (
        ADAPTIVE_JSON
        + 'optimization_logging = true\n[plugins]\nenabled = ["replanner"]\n'
    )
    server = start_server(tmp_path / "srv", settings, env=env)
    try:
        body = os.urandom(3_000_000)
        target = server.signed("l/slow.bin", len(body))
        with server.connect() as sock:
            sock.sendall(put_head(target, len(body)) + body[:1_000_000])
            time.sleep(0.5)
            sock.sendall(body[1_000_000:])
            sock.recv(1024)
        changed = server.wait_for_event(event="plan_changed")
        decisions = server.wait_for_event(event="transfer_decisions")
    finally:
        stop_quietly(server)

    assert changed["plan"]["write_buffer_size"] == 32768
    assert decisions["applied"]["write_buffer_size"] == 32768
    assert decisions["replans"] >= 1
