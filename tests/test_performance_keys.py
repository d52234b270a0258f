"""Each ``[performance]`` key changes what a real transfer does."""

from __future__ import annotations

import pytest
from serverproc import RunningServer

BASE = """
[performance]
adaptive_buffers = true
fully_adaptive = true
{extra}
[logging]
level = "debug"
format = "json"
"""


def _decisions(server: RunningServer, user_agent: str = "curl/8.5") -> dict:
    target = server.signed("k/file.bin", 300_000)
    answer = server.request(
        "PUT",
        target,
        b"x" * 300_000,
        {"User-Agent": user_agent, "X-Network-Type": "cellular"},
    )
    assert answer.status == 201
    return server.wait_for_event(event="transfer_decisions", direction="upload")


def test_client_profiling_off_leaves_clients_unclassified(make_server) -> None:
    on = _decisions(make_server(BASE.format(extra="")))
    off = _decisions(make_server(BASE.format(extra="client_profiling = false")))

    assert on["client_class"] == "server"
    assert off["client_class"] is None


def test_connection_type_detection_off_leaves_networks_unknown(make_server) -> None:
    on = _decisions(make_server(BASE.format(extra="")))
    off = _decisions(
        make_server(BASE.format(extra="connection_type_detection = false"))
    )

    assert on["network"] == "cellular"
    assert off["network"] is None


@pytest.mark.parametrize(
    ("bounds", "low", "high"),
    [
        ('min_buffer_size = "128KiB"\ninitial_buffer_size = "128KiB"', 128, 1024),
        ('max_buffer_size = "32KiB"\ninitial_buffer_size = "32KiB"', 16, 32),
    ],
)
def test_the_buffer_bounds_clamp_what_the_socket_and_writer_really_use(
    make_server, bounds: str, low: int, high: int
) -> None:
    decisions = _decisions(make_server(BASE.format(extra=bounds)))
    applied = decisions["applied"]

    for field in ("write_buffer_size", "read_size"):
        assert low * 1024 <= applied[field] <= high * 1024


def test_adaptive_downloads_off_keeps_downloads_on_the_baseline(make_server) -> None:
    server = make_server(BASE.format(extra="adaptive_downloads = false"))
    server.put("k/d.bin", b"y" * 1000)

    server.get("k/d.bin")
    download = server.wait_for_event(event="transfer_decisions", direction="download")
    upload = server.wait_for_event(event="transfer_decisions", direction="upload")

    assert download["arm"] == "baseline"
    assert upload["arm"] == "adaptive"


def test_adaptive_buffers_off_gives_exactly_the_baseline_plan(make_server) -> None:
    server = make_server(
        BASE.format(extra="").replace(
            "adaptive_buffers = true", "adaptive_buffers = false"
        )
    )

    decisions = _decisions(server)

    assert decisions["arm"] == "baseline"
    assert decisions["applied"]["read_size"] == 256 * 1024
    assert decisions["applied"]["write_buffer_size"] == 512 * 1024
    assert decisions["set_by"] == {}
