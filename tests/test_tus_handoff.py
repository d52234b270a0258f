"""``[handoff]`` on resumable uploads: a phone moving between networks."""

from __future__ import annotations

import io
import os
import socket
import time
from pathlib import Path

from pluginkit import install_plugin
from serverproc import RunningServer, start_server, stop_quietly
from tuswire import OFFSET_STREAM, TusWire

JSON_LOG = '[logging]\nformat = "json"\n'

LISTENER = """
    from twisted.logger import Logger
    from hmacfs_core import hookimpl

    class Plugin:
        log = Logger(namespace="switch_listener")

        @hookimpl
        def hmacfs_transfer_switched(self, transfer, switch):
            self.log.info("heard", event="heard_switch", old=switch.old_peer,
                          new=switch.new_peer, offset=switch.offset,
                          route=transfer.route)
"""


def _create(server: RunningServer, wire: TusWire, path: str, length: int) -> str:
    answer = wire.create(server.signed(path, length), length)
    assert answer.status == 201, answer
    return answer.headers["location"]


def _open_patch(
    server: RunningServer, location: str, body: bytes, sent: int, source: str
):  # type: ignore[no-untyped-def]
    """A PATCH from ``source`` that sends ``sent`` bytes and then goes quiet."""
    sock = socket.socket()
    sock.bind((source, 0))
    sock.connect((server.host, server.port))
    sock.sendall(
        (
            f"PATCH {location} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
            f"Upload-Offset: 0\r\nContent-Type: {OFFSET_STREAM}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body[:sent]
    )
    return sock


def test_a_patch_from_a_new_address_is_announced_to_plugins_and_the_log(
    tmp_path: Path,
) -> None:
    env = install_plugin(tmp_path / "site", "listener", LISTENER)
    server = start_server(
        tmp_path / "srv", JSON_LOG + '[plugins]\nenabled = ["listener"]\n', env=env
    )
    try:
        wire = TusWire(server.host, server.port)
        body = os.urandom(200_000)
        location = _create(server, wire, "h/move.bin", len(body))
        assert wire.patch(location, 0, body[:100_000]).status == 204
        done = wire.patch(location, 100_000, body[100_000:], source="127.0.0.2")
        heard = server.wait_for_event(event="heard_switch")
        logged = server.wait_for_event(event="upload_switch")
    finally:
        stop_quietly(server)

    assert done.status == 204
    assert (heard["old"], heard["new"], heard["offset"]) == (
        "127.0.0.1",
        "127.0.0.2",
        100_000,
    )
    assert heard["route"] == "tus"
    assert logged["new_peer"] == "127.0.0.2"


def test_switch_notifications_can_be_turned_off(make_server) -> None:
    server = make_server(JSON_LOG + "[handoff]\nswitch_notification_enabled = false\n")
    wire = TusWire(server.host, server.port)
    body = os.urandom(100_000)
    location = _create(server, wire, "h/quiet.bin", len(body))

    wire.patch(location, 0, body[:50_000])
    done = wire.patch(location, 50_000, body[50_000:], source="127.0.0.2")
    time.sleep(0.3)

    assert done.status == 204
    assert server.events(event="upload_switch") == []


def test_without_seamless_switching_a_new_address_is_refused(make_server) -> None:
    server = make_server("[handoff]\nseamless_switching = false\n")
    wire = TusWire(server.host, server.port)
    body = os.urandom(100_000)
    location = _create(server, wire, "h/stay.bin", len(body))
    wire.patch(location, 0, body[:50_000])

    moved = wire.patch(location, 50_000, body[50_000:], source="127.0.0.2")
    stayed = wire.patch(location, 50_000, body[50_000:])

    assert moved.status == 403
    assert stayed.status == 204


def test_with_chunk_retry_a_cut_patch_goes_back_to_its_start(make_server) -> None:
    kept = make_server('[tus]\ncheckpoint_interval = "64KiB"\n')
    retried = make_server(
        '[tus]\ncheckpoint_interval = "64KiB"\n'
        "[handoff]\nchunk_retry_on_switch = true\n"
    )
    offsets = {}
    for name, server in (("kept", kept), ("retried", retried)):
        wire = TusWire(server.host, server.port)
        body = os.urandom(2_000_000)
        location = _create(server, wire, "h/chunk.bin", len(body))
        wire.patch_cut(location, 0, io.BytesIO(body), len(body), 1_500_000, "127.0.0.1")
        time.sleep(0.5)
        offsets[name] = wire.offset(location, source="127.0.0.2")

    assert offsets["kept"] > 0
    assert offsets["retried"] == 0


def test_a_stale_patch_from_the_old_address_is_stopped_for_the_new_one(
    make_server,
) -> None:
    server = make_server("")
    wire = TusWire(server.host, server.port)
    body = os.urandom(1_000_000)
    location = _create(server, wire, "h/takeover.bin", len(body))
    stale = _open_patch(server, location, body, 300_000, "127.0.0.1")
    time.sleep(0.3)

    first = wire.patch(location, 0, body, source="127.0.0.2")
    time.sleep(0.5)
    offset = wire.offset(location, source="127.0.0.2")
    rest = wire.patch(location, offset, body[offset:], source="127.0.0.2")
    stale.close()

    assert first.status == 423
    assert first.headers.get("retry-after") == "1"
    assert rest.status == 204
    assert server.get("h/takeover.bin").body == body


def test_without_pause_on_switch_the_stale_patch_keeps_the_upload(make_server) -> None:
    server = make_server("[handoff]\npause_transfers_on_switch = false\n")
    wire = TusWire(server.host, server.port)
    body = os.urandom(1_000_000)
    location = _create(server, wire, "h/held.bin", len(body))
    stale = _open_patch(server, location, body, 300_000, "127.0.0.1")
    time.sleep(0.3)

    first = wire.patch(location, 0, body, source="127.0.0.2")
    time.sleep(0.5)
    again = wire.patch(location, 0, body, source="127.0.0.2")
    stale.close()

    assert first.status == 423
    assert "retry-after" not in first.headers
    assert again.status == 423
