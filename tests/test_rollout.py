"""The rollout keys choose each transfer's arm, on the real server."""

from __future__ import annotations

import pytest
from serverproc import RunningServer

from hmacfs_core.config import PerformanceConfig
from hmacfs_core.rollout import default_arm, in_rollout
from hmacfs_core.transfer import Transfer

DEBUG = '[logging]\nlevel = "debug"\nformat = "json"\n'


def _transfer(route: str, path: str = "a/b.jpg") -> Transfer:
    return Transfer(
        id="t",
        direction="upload",
        path=path,
        size=1,
        content_type=None,
        user_agent="",
        peer="192.0.2.1",
        headers={},
        tcp=None,
        started=0.0,
        route=route,
    )


@pytest.mark.parametrize("percent", [0, 10, 50, 90, 100])
def test_the_split_follows_the_percentage(percent: int) -> None:
    paths = [f"{n:04x}/photo.jpg" for n in range(4000)]

    share = sum(in_rollout(path, percent) for path in paths) / len(paths)

    assert abs(share - percent / 100) < 0.03


def test_a_path_always_lands_on_the_same_arm() -> None:
    performance = PerformanceConfig(adaptive_buffers=True, rollout_percent=50)
    arms = {default_arm(performance, _transfer("slot", "x/y.jpg")) for _ in range(50)}

    assert len(arms) == 1


@pytest.mark.parametrize(
    ("keys", "route", "arm"),
    [
        ({}, "slot", "baseline"),
        ({}, "download/adaptive", "adaptive"),
        ({"fully_adaptive": True}, "slot", "adaptive"),
        ({"rollout_percent": 100}, "slot", "adaptive"),
        ({"testing_mode": True, "rollout_percent": 100}, "slot", "baseline"),
        ({"testing_mode": True, "rollout_percent": 100}, "upload/auto", "adaptive"),
        ({"testing_mode": True, "rollout_percent": 0}, "upload/auto", "baseline"),
    ],
)
def test_each_step_of_the_migration_is_a_config_change(
    keys: dict[str, object], route: str, arm: str
) -> None:
    performance = PerformanceConfig(adaptive_buffers=True, **keys)

    assert default_arm(performance, _transfer(route)) == arm


def _arms_of_uploads(server: RunningServer, count: int) -> list[str]:
    for n in range(count):
        assert server.put(f"r{n:03d}/p.jpg", b"photo").status == 201
    events = []
    for n in range(count):
        events.append(
            server.wait_for_event(
                event="transfer_decisions", direction="upload", path=f"r{n:03d}/p.jpg"
            )["arm"]
        )
    return events


def test_real_uploads_split_by_rollout_percent(make_server) -> None:
    server = make_server(
        f"[performance]\nadaptive_buffers = true\nrollout_percent = 30\n{DEBUG}"
    )

    arms = _arms_of_uploads(server, 60)
    expected = [
        "adaptive" if in_rollout(f"r{n:03d}/p.jpg", 30) else "baseline"
        for n in range(60)
    ]

    assert arms == expected
    assert 0 < arms.count("adaptive") < 60


def test_with_adaptive_uploads_off_every_upload_is_baseline(make_server) -> None:
    server = make_server(
        "[performance]\nadaptive_buffers = true\nfully_adaptive = true\n"
        f"adaptive_uploads = false\n{DEBUG}"
    )

    assert set(_arms_of_uploads(server, 5)) == {"baseline"}


def test_the_download_routes_serve_the_stored_files(make_server) -> None:
    server = make_server(f"[performance]\nadaptive_buffers = true\n{DEBUG}")
    server.put("d/file.txt", b"shared bytes", content_type="text/plain")

    plain = server.request("GET", "/download/d/file.txt")
    adaptive = server.request("GET", "/download/adaptive/d/file.txt")
    arm = server.wait_for_event(
        event="transfer_decisions", direction="download", path="d/file.txt"
    )

    assert plain.body == adaptive.body == b"shared bytes"
    assert arm["arm"] == "baseline"
    assert any(
        event["arm"] == "adaptive"
        for event in server.events(event="transfer_decisions", direction="download")
    )


def test_the_adaptive_download_route_is_absent_without_the_engine(
    server: RunningServer,
) -> None:
    server.put("d/file.txt", b"shared bytes")

    assert server.request("GET", "/download/adaptive/d/file.txt").status == 404
    assert server.request("GET", "/download/d/file.txt").body == b"shared bytes"
