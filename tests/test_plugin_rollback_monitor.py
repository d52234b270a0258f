"""The ``rollback_monitor`` plugin: it sends transfers to the baseline when, and only
when, adaptive transfers fail clearly more often than baseline ones."""

from __future__ import annotations

import random
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from attrs import define
from hmacfs_plugins.rollback_monitor import (
    RollbackMonitor,
    RollbackSettings,
    excess_z_score,
)
from twisted.internet.task import Clock
from twisted.logger import Logger

from hmacfs_core import Outcome, Transfer
from hmacfs_core.config import Config

SUCCEEDED = Outcome(True, 201, "ok", 100_000, 0.5)
FAILED = Outcome(False, None, "cut", 40_000, 3.0)


@define
class FakeApp:
    config: Config
    reactor: Clock


@define
class Watched:
    """A monitor on a fake clock, and the events it logged."""

    monitor: RollbackMonitor
    clock: Clock
    events: list[dict[str, Any]]

    def outcome(self, arm: str, succeeded: bool = True) -> None:
        self.monitor.hmacfs_transfer_finished(
            transfer=new_transfer(arm), outcome=SUCCEEDED if succeeded else FAILED
        )

    def outcomes(self, arm: str, count: int, succeeded: bool = True) -> None:
        for _ in range(count):
            self.outcome(arm, succeeded)

    def arm(self) -> str | None:
        return self.monitor.hmacfs_choose_arm(transfer=new_transfer("adaptive"))


def watched(settings: Mapping[str, Any] | None = None) -> Watched:
    clock = Clock()
    clock.advance(1000)
    events: list[dict[str, Any]] = []
    monitor = RollbackMonitor(log=Logger(observer=events.append))
    monitor.hmacfs_configure(app=FakeApp(Config(), clock), settings=settings or {})
    return Watched(monitor, clock, events)


def new_transfer(arm: str) -> Transfer:
    return Transfer(
        id="t",
        direction="upload",
        path="a/b.bin",
        size=100_000,
        content_type=None,
        user_agent="",
        peer="127.0.0.1",
        headers={},
        tcp=None,
        started=0.0,
        arm=arm,  # type: ignore[arg-type]
    )


def mixed_traffic(
    watch: Watched, count: int, adaptive_rate: float, baseline_rate: float, seed: int
) -> int | None:
    """Half the transfers on each arm, failing at the given rates; the number of
    outcomes after which the monitor tripped, if it did."""
    rng = random.Random(seed)
    for seen in range(1, count + 1):
        arm = "adaptive" if rng.random() < 0.5 else "baseline"
        rate = adaptive_rate if arm == "adaptive" else baseline_rate
        watch.outcome(arm, succeeded=rng.random() >= rate)
        if watch.monitor.state.tripped:
            return seen
    return None


# -- when it trips ------------------------------------------------------------------


@pytest.mark.parametrize("error_rate", [0.005, 0.03, 0.2])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_equal_error_rates_never_trip_over_thousands_of_outcomes(
    error_rate: float, seed: int
) -> None:
    watch = watched()

    tripped_after = mixed_traffic(watch, 6000, error_rate, error_rate, seed)

    assert tripped_after is None
    assert watch.arm() is None
    assert watch.events == []


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_three_times_the_baseline_error_rate_trips(seed: int) -> None:
    watch = watched()

    tripped_after = mixed_traffic(watch, 6000, 0.15, 0.05, seed)

    assert tripped_after is not None
    state = watch.monitor.state
    assert min(state.counts.values()) >= 50
    assert state.rates["adaptive"] > state.rates["baseline"] * 1.1
    assert watch.arm() == "baseline"


def test_no_verdict_before_the_adaptive_arm_has_min_samples() -> None:
    watch = watched()
    watch.outcomes("baseline", 50)

    watch.outcomes("adaptive", 49, succeeded=False)
    assert not watch.monitor.state.tripped

    watch.outcome("adaptive", succeeded=False)
    assert watch.monitor.state.tripped


def test_no_verdict_before_the_baseline_arm_has_min_samples() -> None:
    watch = watched()
    watch.outcomes("adaptive", 200, succeeded=False)

    watch.outcomes("baseline", 49)
    assert not watch.monitor.state.tripped

    watch.outcome("baseline")
    assert watch.monitor.state.tripped


def test_a_rate_just_above_the_factor_with_few_samples_does_not_trip() -> None:
    watch = watched()

    watch.outcomes("baseline", 5, succeeded=False)
    watch.outcomes("baseline", 45)
    watch.outcomes("adaptive", 43)
    watch.outcomes("adaptive", 7, succeeded=False)

    state = watch.monitor.state
    assert state.counts == {"baseline": 50, "adaptive": 50}
    assert state.rates["adaptive"] > state.rates["baseline"] * 1.1
    assert not state.tripped


def test_three_failures_against_none_are_not_enough() -> None:
    watch = watched()

    watch.outcomes("baseline", 50)
    watch.outcomes("adaptive", 47)
    watch.outcomes("adaptive", 3, succeeded=False)

    assert not watch.monitor.state.tripped


def test_the_trip_is_logged_as_a_warning_with_both_rates_and_counts() -> None:
    watch = watched()
    watch.outcomes("baseline", 50)

    watch.outcomes("adaptive", 50, succeeded=False)

    [event] = watch.events
    assert event["log_level"].name == "warn"
    assert event["event"] == "adaptive_rollback"
    assert event["adaptive_rate"] == 1.0
    assert event["baseline_rate"] == 0.0
    assert (event["adaptive_count"], event["baseline_count"]) == (50, 50)


# -- the rollback -------------------------------------------------------------------


def test_healthy_arms_leave_the_choice_to_others() -> None:
    watch = watched()

    watch.outcomes("baseline", 100)
    watch.outcomes("adaptive", 100)

    assert watch.arm() is None
    assert watch.monitor.state.until is None


def test_the_rollback_lasts_the_period_then_adaptive_is_allowed_again() -> None:
    watch = watched({"rollback_period": "10m"})
    watch.outcomes("baseline", 50)
    watch.outcomes("adaptive", 50, succeeded=False)
    assert watch.monitor.state.until == 1000 + 600

    watch.clock.advance(599)
    assert watch.arm() == "baseline"

    watch.clock.advance(1)
    assert watch.arm() is None
    state = watch.monitor.state
    assert not state.tripped
    assert state.counts == {"baseline": 0, "adaptive": 0}


def test_outcomes_after_the_period_are_judged_afresh() -> None:
    watch = watched({"rollback_period": 60})
    watch.outcomes("baseline", 50)
    watch.outcomes("adaptive", 50, succeeded=False)
    watch.clock.advance(60)

    watch.outcomes("baseline", 50)
    watch.outcomes("adaptive", 50)

    assert not watch.monitor.state.tripped
    assert watch.arm() is None


def test_reset_ends_a_rollback_at_once() -> None:
    watch = watched()
    watch.outcomes("baseline", 50)
    watch.outcomes("adaptive", 50, succeeded=False)

    watch.monitor.reset()

    assert watch.arm() is None
    assert watch.monitor.state.counts == {"baseline": 0, "adaptive": 0}


def test_a_reload_ends_a_rollback_and_counts_afresh() -> None:
    watch = watched()
    watch.outcomes("baseline", 50)
    watch.outcomes("adaptive", 50, succeeded=False)
    assert watch.monitor.state.tripped

    watch.monitor.hmacfs_configure(
        app=FakeApp(Config(), watch.clock), settings={"rollback_period": "1h"}
    )

    assert not watch.monitor.state.tripped
    assert watch.monitor.state.counts == {"baseline": 0, "adaptive": 0}


# -- settings -----------------------------------------------------------------------


def test_settings_are_read_from_the_plugin_table() -> None:
    settings = RollbackSettings.from_table(
        {
            "error_rate_factor": 1.5,
            "min_samples": 20,
            "window": 200,
            "confidence": 0.99,
            "rollback_period": "1h30m",
        }
    )

    assert settings == RollbackSettings(1.5, 20, 200, 0.99, 5400.0)
    assert settings.checks_per_window == 10


def test_the_defaults_follow_the_design_guide() -> None:
    assert RollbackSettings.from_table({}) == RollbackSettings(
        error_rate_factor=1.1,
        min_samples=50,
        window=500,
        confidence=0.95,
        rollback_period=1800.0,
    )


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"error_rate_factor": 0.9}, "error_rate_factor must be between 1 and 100"),
        ({"error_rate_factor": "1.1"}, "error_rate_factor must be a number"),
        ({"error_rate_factor": float("nan")}, "error_rate_factor must be finite"),
        ({"min_samples": 0}, "min_samples must be at least 1"),
        ({"min_samples": 50.5}, "min_samples must be a whole number"),
        ({"min_samples": True}, "min_samples must be a whole number"),
        ({"window": 10}, r"window \(10\) must be at least min_samples \(50\)"),
        ({"confidence": 1.0}, "confidence must be between 0.5 and 1"),
        ({"confidence": 0.5}, "confidence must be between 0.5 and 1"),
        ({"rollback_period": "30 minutes"}, "rollback_period: invalid duration"),
        ({"rollback_period": 0}, "rollback_period must be longer than 0s"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(
    table: dict[str, Any], message: str
) -> None:
    monitor = RollbackMonitor()

    with pytest.raises(ValueError, match=message):
        monitor.hmacfs_configure(app=FakeApp(Config(), Clock()), settings=table)


def test_a_misspelt_setting_is_refused_with_the_nearest_name() -> None:
    monitor = RollbackMonitor()

    with pytest.raises(ValueError) as refused:
        monitor.hmacfs_configure(
            app=FakeApp(Config(), Clock()), settings={"error_rate_factr": 1.2}
        )

    assert "unknown setting 'error_rate_factr'" in str(refused.value)
    assert "did you mean 'error_rate_factor'?" in str(refused.value)


def test_a_bad_setting_in_the_config_file_stops_the_server_naming_it(
    tmp_path: Path,
) -> None:
    config = tmp_path / "hmacfs.toml"
    config.write_text(
        '[server]\nlisten_address = "127.0.0.1:0"\n'
        f'storage_path = "{tmp_path / "store"}"\n'
        '[security]\nsecret = "s"\n'
        "[plugins.rollback_monitor]\nconfidence = 2\n",
        encoding="utf-8",
    )

    result = subprocess.run(
        [sys.executable, "-m", "hmacfs_core", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    assert "plugin 'rollback_monitor'" in result.stderr
    assert "confidence must be between 0.5 and 1" in result.stderr


# -- the statistic ------------------------------------------------------------------


def test_the_z_score_grows_with_the_gap_and_with_the_sample_size() -> None:
    small = excess_z_score(15, 100, 5, 100, factor=1.1)
    large = excess_z_score(150, 1000, 50, 1000, factor=1.1)
    equal = excess_z_score(50, 1000, 50, 1000, factor=1.1)

    assert 0 < small < large
    assert equal < 0
    assert excess_z_score(0, 100, 0, 100, factor=1.1) < 0
