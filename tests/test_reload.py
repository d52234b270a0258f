"""SIGHUP reloads the configuration file without dropping running transfers."""

from __future__ import annotations

import os
import signal
import time

from serverproc import raw_exchange, status_of


def _rewrite(server, old: str, new: str) -> None:  # type: ignore[no-untyped-def]
    config = server.storage.parent / "hmacfs.toml"
    text = config.read_text()
    assert old in text
    config.write_text(text.replace(old, new))


def test_a_reload_mid_upload_lets_it_finish_and_applies_to_new_ones(
    make_server,
) -> None:
    server = make_server('max_upload_size = "10MiB"')
    body = os.urandom(2_000_000)
    target = server.signed("r/running.bin", len(body))
    sock = server.connect()
    head = f"PUT {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
    sock.sendall(head.encode() + body[:1_000_000])
    time.sleep(0.3)

    _rewrite(server, 'max_upload_size = "10MiB"', 'max_upload_size = "1MiB"')
    server.process.send_signal(signal.SIGHUP)
    server.wait_for_log("Reloaded the configuration")
    running = raw_exchange(sock, body[1_000_000:], read_until_close=False)
    sock.close()
    new = server.put("r/new.bin", os.urandom(1_500_000))

    assert status_of(running) == 201
    assert server.get("r/running.bin").body == body
    assert new.status == 413


def test_an_invalid_file_is_refused_and_the_running_config_kept(make_server) -> None:
    server = make_server('max_upload_size = "10MiB"')

    _rewrite(server, 'max_upload_size = "10MiB"', 'max_upload_size = "lots"')
    server.process.send_signal(signal.SIGHUP)
    server.wait_for_log("Reload refused")

    assert server.put("r/still.bin", os.urandom(2_000_000)).status == 201
    assert server.process.poll() is None


def test_what_is_bound_at_start_is_kept_with_a_warning(make_server) -> None:
    server = make_server("workers = 1")

    _rewrite(server, "workers = 1", "workers = 2")
    server.process.send_signal(signal.SIGHUP)
    server.wait_for_log("need a restart")

    assert server.put("r/ok.bin", b"x").status == 201
