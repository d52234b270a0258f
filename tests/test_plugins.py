"""The plugin manager as operators and plugin authors meet it, on the real server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pluginkit import install_plugin
from serverproc import start_server, stop_quietly

import hmacfs_core

ADAPTIVE_DEBUG = """
[performance]
adaptive_buffers = true
fully_adaptive = true
[logging]
level = "debug"
format = "json"
"""

PLAN_FROM_SETTINGS = """
    from hmacfs_core import hookimpl

    class Plugin:
        @hookimpl
        def hmacfs_configure(self, settings):
            self.buffer = int(settings.get("buffer", 0))
            if self.buffer < 0:
                raise ValueError("buffer must not be negative")

        @hookimpl(trylast=True)
        def hmacfs_plan_transfer(self, transfer, plan):
            if self.buffer:
                plan.write_buffer_size = self.buffer
                plan.read_size = self.buffer
"""

RAISING = """
    from hmacfs_core import hookimpl

    class Plugin:
        @hookimpl
        def hmacfs_plan_transfer(self, transfer, plan):
            raise RuntimeError("boom in plan")

        @hookimpl
        def hmacfs_transfer_finished(self, transfer, outcome):
            raise RuntimeError("boom in finished")
"""


def _serve_expecting_failure(tmp_path: Path, settings: str, env: dict[str, str]) -> str:
    config = tmp_path / "hmacfs.toml"
    config.write_text(
        '[server]\nlisten_address = "127.0.0.1:0"\n'
        f'storage_path = "{tmp_path / "store"}"\n'
        f'[security]\nsecret = "s"\n{settings}',
        encoding="utf-8",
    )
    result = subprocess.run(
        [sys.executable, "-m", "hmacfs_core", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )
    assert result.returncode == 2, result.stdout + result.stderr
    return result.stderr


def test_an_unknown_plugin_stops_the_start_naming_it(tmp_path: Path) -> None:
    message = _serve_expecting_failure(
        tmp_path, '[plugins]\nenabled = ["bufer_sizing"]\n', {}
    )

    assert "bufer_sizing" in message
    assert "did you mean 'buffer_sizing'" in message


def test_a_plugin_that_fails_to_import_stops_the_start_naming_it(
    tmp_path: Path,
) -> None:
    env = install_plugin(tmp_path / "site", "broken", "import no_such_module\n")

    message = _serve_expecting_failure(
        tmp_path, '[plugins]\nenabled = ["broken"]\n', env
    )

    assert "'broken'" in message
    assert "cannot be imported" in message
    assert "no_such_module" in message


def test_a_misspelt_hook_stops_the_start_naming_plugin_and_hook(
    tmp_path: Path,
) -> None:
    source = """
        from hmacfs_core import hookimpl

        class Plugin:
            @hookimpl
            def hmacfs_plan_transfr(self, transfer, plan):
                pass
    """
    env = install_plugin(tmp_path / "site", "typo", source)

    message = _serve_expecting_failure(tmp_path, '[plugins]\nenabled = ["typo"]\n', env)

    assert "'typo'" in message
    assert "hmacfs_plan_transfr" in message


def test_bad_plugin_settings_stop_the_start_with_the_plugins_message(
    tmp_path: Path,
) -> None:
    env = install_plugin(tmp_path / "site", "planner", PLAN_FROM_SETTINGS)

    message = _serve_expecting_failure(
        tmp_path,
        '[plugins]\nenabled = ["planner"]\n[plugins.planner]\nbuffer = -1\n',
        env,
    )

    assert "'planner'" in message
    assert "buffer must not be negative" in message


def test_settings_of_a_plugin_that_is_not_enabled_are_an_error(
    tmp_path: Path,
) -> None:
    message = _serve_expecting_failure(
        tmp_path, "[plugins.network_polcy]\nranges = {}\n", {}
    )

    assert "network_polcy" in message


def test_a_plugins_settings_table_reaches_it_and_changes_the_real_writer(
    tmp_path: Path,
) -> None:
    env = install_plugin(tmp_path / "site", "planner", PLAN_FROM_SETTINGS)
    settings = (
        ADAPTIVE_DEBUG
        + '[plugins]\nenabled = ["planner"]\n[plugins.planner]\nbuffer = 32768\n'
    )
    server = start_server(tmp_path / "srv", settings, env=env)
    try:
        assert server.put("a/b.bin", os.urandom(100_000)).status == 201
        event = server.wait_for_event(event="transfer_decisions", direction="upload")
    finally:
        stop_quietly(server)

    assert event["applied"]["write_buffer_size"] == 32768
    assert event["applied"]["read_size"] == 32768
    assert event["set_by"]["write_buffer_size"] == "planner"


def test_a_plugin_that_raises_mid_transfer_is_logged_counted_and_skipped(
    tmp_path: Path,
) -> None:
    env = install_plugin(tmp_path / "site", "raising", RAISING)
    settings = ADAPTIVE_DEBUG + '[plugins]\nenabled = ["raising"]\n'
    server = start_server(tmp_path / "srv", settings, env=env)
    try:
        body = os.urandom(50_000)
        stored = server.put("a/raise.bin", body)
        fetched = server.get("a/raise.bin")
        error = server.wait_for_event(plugin="raising", hook="hmacfs_plan_transfer")
        server.wait_for_event(plugin="raising", hook="hmacfs_transfer_finished")
    finally:
        stop_quietly(server)

    assert stored.status == 201
    assert fetched.body == body
    assert "boom in plan" in error["error"]


def test_disabling_a_builtin_plugin_takes_it_out_of_the_decisions(
    tmp_path: Path,
) -> None:
    settings = ADAPTIVE_DEBUG + '[plugins]\ndisabled = ["client_classification"]\n'
    server = start_server(tmp_path / "srv", settings)
    try:
        request = server.signed("a/x.bin", 10)
        server.request("PUT", request, b"0123456789", {"User-Agent": "curl/8.5.0"})
        event = server.wait_for_event(event="transfer_decisions", direction="upload")
    finally:
        stop_quietly(server)

    assert event["client_class"] is None


def test_hmacfs_plugins_lists_builtins_and_third_parties(tmp_path: Path) -> None:
    env = install_plugin(tmp_path / "site", "planner", PLAN_FROM_SETTINGS)
    config = tmp_path / "c.toml"
    config.write_text(
        '[plugins]\nenabled = ["planner"]\ndisabled = ["rollback_monitor"]\n'
    )

    result = subprocess.run(
        [sys.executable, "-m", "hmacfs_core", "plugins", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}

    assert result.returncode == 0, result.stderr
    assert "hmacfs-test-plugin 1.2.3" in rows["planner"]
    assert "third party" in rows["planner"]
    assert "configure, plan_transfer" in rows["planner"]
    assert "built-in" in rows["buffer_sizing"]
    assert " yes " in rows["buffer_sizing"]
    assert " no " in rows["rollback_monitor"]


def test_check_config_loads_the_plugins_too(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[security]\nsecret = "s"\n[plugins]\nenabled = ["nope"]\n')

    result = subprocess.run(
        [sys.executable, "-m", "hmacfs_core", "check-config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert "'nope'" in result.stderr


@pytest.mark.parametrize(
    "name",
    ["Outcome", "ProgressSample", "TcpStats", "Transfer", "TransferPlan", "hookimpl"],
)
def test_the_plugin_api_is_exported_from_the_package_root(name: str) -> None:
    assert name in hmacfs_core.__all__
    assert getattr(hmacfs_core, name) is not None


def test_the_public_surface_is_pinned() -> None:
    assert sorted(hmacfs_core.__all__) == [
        "NetworkSwitch",
        "Outcome",
        "ProgressSample",
        "StreamingRequest",
        "TcpStats",
        "Transfer",
        "TransferPlan",
        "__version__",
        "hookimpl",
        "make_resource",
    ]
