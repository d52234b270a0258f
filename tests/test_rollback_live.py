"""Automatic rollback on live traffic: a failing adaptive arm is switched off.

The adaptive arm is made to fail for real by a test plugin with a bad strategy
(a one-second idle timeout); the clients pause for two seconds mid-upload, as a
phone on a weak link does. Baseline transfers (idle timeout 60 s) survive it,
adaptive ones are cut. The monitor must see it and send traffic back to the
baseline; with the same traffic and no bad strategy it must not trip.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from pluginkit import install_plugin
from prometheus_client.parser import text_string_to_metric_families
from serverproc import RunningServer, put_head, start_server, stop_quietly

from hmacfs_core.rollout import in_rollout

IMPATIENT = """
    from hmacfs_core import hookimpl

    class Plugin:
        @hookimpl(trylast=True)
        def hmacfs_plan_transfer(self, transfer, plan):
            plan.idle_timeout = 1.0
"""

SETTINGS = """
[performance]
adaptive_buffers = true
rollout_percent = 50
[plugins.rollback_monitor]
min_samples = 10
window = 40
rollback_period = "1h"
[logging]
format = "json"
level = "debug"
"""


def _stalling_upload(server: RunningServer, path: str, results: dict) -> None:
    body = os.urandom(64_000)
    target = server.signed(path, len(body))
    try:
        with server.connect() as sock:
            sock.sendall(put_head(target, len(body)) + body[:32_000])
            time.sleep(2.0)
            sock.sendall(body[32_000:])
            answer = sock.recv(1024)
        results[path] = int(answer.split(b" ")[1]) if answer else None
    except OSError:
        results[path] = None


def _traffic(server: RunningServer, prefix: str, count: int) -> dict:
    results: dict = {}
    threads = [
        threading.Thread(
            target=_stalling_upload, args=(server, f"{prefix}{n:03d}/v.mp4", results)
        )
        for n in range(count)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def _health(server: RunningServer) -> dict:
    return json.loads(server.request("GET", "/health").body)


def _rollbacks(server: RunningServer) -> float:
    text = server.request("GET", "/metrics").body.decode()
    for family in text_string_to_metric_families(text):
        if family.name == "hmacfs_rollbacks":
            return sum(s.value for s in family.samples if s.name.endswith("_total"))
    raise AssertionError("no hmacfs_rollbacks family")


def test_a_failing_adaptive_arm_trips_the_rollback_and_traffic_returns_to_baseline(
    tmp_path: Path,
) -> None:
    env = install_plugin(tmp_path / "site", "impatient", IMPATIENT)
    settings = SETTINGS + '[plugins]\nenabled = ["impatient"]\n'
    server = start_server(tmp_path / "srv", settings, env=env)
    try:
        first = _traffic(server, "a", 40)
        adaptive_paths = [p for p in first if in_rollout(p, 50)]
        server.wait_for_event(event="adaptive_rollback")
        after = _traffic(server, "b", 20)
        later_adaptive = [p for p in after if in_rollout(p, 50)]
        health = _health(server)
        rollbacks = _rollbacks(server)
        decisions = [
            server.wait_for_event(event="transfer_decisions", path=path)
            for path in later_adaptive
        ]
    finally:
        stop_quietly(server)

    assert {first[p] for p in adaptive_paths} == {None}
    assert {first[p] for p in first if p not in adaptive_paths} == {201}
    assert set(after.values()) == {201}
    assert {event["arm"] for event in decisions} == {"baseline"}
    assert {event["decided_by"]["arm"] for event in decisions} == {"rollback_monitor"}
    assert health["rollback"]["tripped"] is True
    assert rollbacks == 1


def test_the_same_traffic_without_a_bad_strategy_does_not_trip(
    tmp_path: Path,
) -> None:
    server = start_server(tmp_path / "srv", SETTINGS)
    try:
        results = _traffic(server, "h", 40)
        health = _health(server)
        rollbacks = _rollbacks(server)
    finally:
        stop_quietly(server)

    assert set(results.values()) == {201}
    assert health["rollback"]["tripped"] is False
    assert health["rollback"]["samples"]["adaptive"] > 10
    assert rollbacks == 0
