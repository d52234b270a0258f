"""The service routes (health, metrics, admin reset) as operators use them."""

from __future__ import annotations

import json
import os
import socket
import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from serverproc import RunningServer

ADMIN_TOKEN = "a-long-enough-admin-token"

FAMILIES = {
    "hmacfs_transfer_duration_seconds",
    "hmacfs_transfer_throughput_bytes_per_second",
    "hmacfs_transfer_bytes",
    "hmacfs_transfer_errors",
    "hmacfs_upload_refusals",
    "hmacfs_active_transfers",
    "hmacfs_buffer_optimizations",
    "hmacfs_plan_buffer_bytes",
    "hmacfs_plan_idle_timeout_seconds",
    "hmacfs_plugin_errors",
    "hmacfs_rollbacks",
    "hmacfs_adaptive_gain_ratio",
}


def _families(text: str) -> dict[str, object]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def _samples(family: object) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value) for s in family.samples]  # type: ignore[attr-defined]


def test_health_reports_status_arms_and_free_space(server: RunningServer) -> None:
    answer = server.request("GET", "/health")
    document = json.loads(answer.body)

    assert answer.status == 200
    assert answer.header("content-type") == "application/json"
    assert document["status"] == "ok"
    assert document["arms"]["adaptive_buffers"] is False
    assert document["rollback"] == {
        "tripped": False,
        "until": None,
        "error_rates": {"baseline": 0.0, "adaptive": 0.0},
        "samples": {"baseline": 0, "adaptive": 0},
    }
    assert document["storage"]["free_bytes"] > 0


def test_metrics_parse_and_carry_every_family(make_server) -> None:
    server = make_server(
        "[performance]\nadaptive_buffers = true\nrollout_percent = 50\n"
    )
    for n in range(20):
        server.put(f"m{n}/photo.jpg", os.urandom(300_000), content_type="image/jpeg")
        server.get(f"m{n}/photo.jpg")
    server.request("PUT", "/x/y.jpg?v=00", b"refused")

    answer = server.request("GET", "/metrics")
    families = _families(answer.body.decode())

    assert answer.status == 200
    assert answer.header("content-type").startswith("text/plain")
    assert set(families) >= FAMILIES
    arms = {
        labels["arm"]
        for name, labels, _ in _samples(families["hmacfs_transfer_bytes"])
        if name == "hmacfs_transfer_bytes_total"
    }
    assert arms == {"baseline", "adaptive"}
    refusals = {
        labels["code"]: value
        for name, labels, value in _samples(families["hmacfs_upload_refusals"])
        if name == "hmacfs_upload_refusals_total"
    }
    assert refusals == {"403": 1.0}
    gain = {
        labels["direction"]: value
        for _, labels, value in _samples(families["hmacfs_adaptive_gain_ratio"])
    }
    assert gain["upload"] > 0 and gain["download"] > 0


def test_metrics_can_move_to_their_own_address(make_server) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = make_server(f'[metrics]\nlisten_address = "127.0.0.1:{port}"\n')

    on_main = server.request("GET", "/metrics")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as separate:
        text = separate.read().decode()

    assert on_main.status == 404
    assert "hmacfs_transfer_bytes" in text


def test_metrics_can_be_switched_off(make_server) -> None:
    server = make_server("[metrics]\nenabled = false\n")

    assert server.request("GET", "/metrics").status == 404


def test_the_admin_reset_needs_the_configured_token(make_server) -> None:
    server = make_server(f'[security]\nsecret = "s"\nadmin_token = "{ADMIN_TOKEN}"\n')
    path = "/admin/rollback/reset"

    missing = server.request("POST", path)
    wrong = server.request("POST", path, headers={"Authorization": "Bearer nope"})
    right = server.request(
        "POST", path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )

    assert missing.status == 401
    assert wrong.status == 401
    assert right.status == 200


def test_without_an_admin_token_the_admin_route_does_not_exist(
    server: RunningServer,
) -> None:
    answer = server.request(
        "POST", "/admin/rollback/reset", headers={"Authorization": "Bearer x"}
    )

    assert answer.status == 404
