"""The ``buffer_sizing`` plugin: it finds the fastest buffer size per context from
measured throughput, and the real server runs uploads with the size it picks."""

from __future__ import annotations

import math
import os
import random
from typing import Any

import attrs
import pytest
from attrs import define
from hmacfs_plugins.buffer_sizing import POOL, BufferSizing
from serverproc import RunningServer

from hmacfs_core import Outcome, ProgressSample, Transfer
from hmacfs_core.config import Config, parse_config
from hmacfs_core.pipeline import baseline_plan
from hmacfs_core.units import KiB, MiB


@define
class FakeApp:
    config: Config


def configured(toml: str = "", plugin: BufferSizing | None = None) -> BufferSizing:
    plugin = plugin or BufferSizing()
    plugin.hmacfs_configure(app=FakeApp(parse_config(toml)), settings={})
    return plugin


def new_transfer(
    direction: str = "upload",
    size: int | None = None,
    client_class: str | None = "desktop",
    network: str | None = "ethernet",
    arm: str = "adaptive",
) -> Transfer:
    return Transfer(
        id=os.urandom(4).hex(),
        direction=direction,  # type: ignore[arg-type]
        path="a/b.bin",
        size=size,
        content_type=None,
        user_agent="",
        peer="127.0.0.1",
        headers={},
        tcp=None,
        started=0.0,
        arm=arm,  # type: ignore[arg-type]
        client_class=client_class,
        network=network,
    )


def plan(plugin: BufferSizing, transfer: Transfer, initial: int = 64 * KiB) -> Transfer:
    """Run the plan hook as the pipeline does: on the baseline with the initial
    size, then store the plan on the transfer."""
    transfer.plan = attrs.evolve(
        baseline_plan(Config()),
        read_size=initial,
        write_buffer_size=initial,
        chunk_size=initial,
    )
    plugin.hmacfs_plan_transfer(transfer=transfer, plan=transfer.plan)
    return transfer


def size_of(transfer: Transfer) -> int:
    assert transfer.plan is not None
    if transfer.direction == "upload":
        assert transfer.plan.read_size == transfer.plan.write_buffer_size
        return transfer.plan.write_buffer_size
    return transfer.plan.chunk_size


def finish(
    plugin: BufferSizing,
    transfer: Transfer,
    throughput: float,
    nbytes: int = 8 * MiB,
    succeeded: bool = True,
) -> None:
    outcome = Outcome(succeeded, 201, "ok", nbytes, nbytes / throughput)
    plugin.hmacfs_transfer_finished(transfer=transfer, outcome=outcome)


def progress(plugin: BufferSizing, transfer: Transfer, throughput: float) -> None:
    sample = ProgressSample(
        bytes_total=0,
        seconds_total=5.0,
        bytes_interval=int(throughput * 5),
        seconds_interval=5.0,
    )
    plugin.hmacfs_transfer_progress(transfer=transfer, sample=sample)


def measure(plugin: BufferSizing, size: int, throughput: float, **context: Any) -> None:
    """One progress sample of a transfer that runs with ``size`` (as if a strategy
    plugin had set it)."""
    transfer = plan(plugin, new_transfer(**context))
    run_with(transfer, size)
    progress(plugin, transfer, throughput)


def run_with(transfer: Transfer, size: int) -> None:
    """Set the transfer's size as another plugin could."""
    assert transfer.plan is not None
    if transfer.direction == "upload":
        transfer.plan.read_size = transfer.plan.write_buffer_size = size
    else:
        transfer.plan.chunk_size = size


def peaked_at(peak: int, seed: int = 7) -> Any:
    """A link whose throughput peaks at ``peak`` and falls off by about a fifth
    per doubling or halving, measured with up to 10% noise."""
    rng = random.Random(seed)

    def throughput(size: int) -> float:
        steps = math.log2(size / peak)
        return 80 * MiB * math.exp(-(steps**2) / 4) * rng.uniform(0.9, 1.1)

    return throughput


def run_transfers(
    plugin: BufferSizing, link: Any, count: int, **context: Any
) -> list[tuple[int, int]]:
    """Plan, run and finish ``count`` transfers; the planned size and the
    learner's choice after each."""
    history = []
    for _ in range(count):
        transfer = plan(plugin, new_transfer(**context))
        size = size_of(transfer)
        finish(plugin, transfer, link(size))
        chosen = plugin.choice(
            transfer.direction, transfer.client_class, transfer.network
        )
        history.append((size, chosen))
    return history


# -- learning -----------------------------------------------------------------------


@pytest.mark.parametrize("peak", [256 * KiB, 32 * KiB])
def test_the_choice_converges_on_the_fastest_size_and_stays_there(peak: int) -> None:
    plugin = configured()

    history = run_transfers(plugin, peaked_at(peak), 400)

    assert all(chosen == peak for _, chosen in history[60:])
    last_sizes = [size for size, _ in history[-100:]]
    assert last_sizes.count(peak) >= 85
    assert set(last_sizes) <= {
        peak,
        POOL[POOL.index(peak) - 1],
        POOL[POOL.index(peak) + 1],
    }


def test_a_context_without_history_starts_at_the_initial_size_snapped_to_the_pool() -> (
    None
):
    plugin = configured('[performance]\ninitial_buffer_size = "100KiB"\n')

    transfer = plan(plugin, new_transfer(), initial=100 * KiB)

    assert size_of(transfer) == 128 * KiB
    assert plugin.choice("upload", "desktop", "ethernet") == 128 * KiB


def test_every_size_is_tried_three_times_before_the_best_is_exploited() -> None:
    plugin = configured()

    history = run_transfers(plugin, peaked_at(256 * KiB), 3 * len(POOL))

    assert sorted(size for size, _ in history) == sorted(POOL * 3)
    assert [size for size, _ in history[:3]] == [64 * KiB] * 3


def test_clients_and_networks_learn_separately() -> None:
    plugin = configured()
    phone = {"client_class": "mobile", "network": "lte"}
    desktop = {"client_class": "desktop", "network": "ethernet"}
    phone_link, desktop_link = peaked_at(32 * KiB), peaked_at(512 * KiB, seed=8)

    for _ in range(150):
        run_transfers(plugin, phone_link, 1, **phone)
        run_transfers(plugin, desktop_link, 1, **desktop)

    assert plugin.choice("upload", "mobile", "lte") == 32 * KiB
    assert plugin.choice("upload", "desktop", "ethernet") == 512 * KiB
    assert plugin.choice("download", "mobile", "lte") == 64 * KiB


def test_downloads_learn_the_chunk_size() -> None:
    plugin = configured()

    history = run_transfers(plugin, peaked_at(128 * KiB), 200, direction="download")

    assert history[-1][1] == 128 * KiB
    transfer = plan(plugin, new_transfer(direction="download"))
    assert transfer.plan is not None
    assert transfer.plan.read_size == transfer.plan.write_buffer_size == 64 * KiB


@pytest.mark.parametrize(
    ("peak", "best_allowed"), [(1 * MiB, 256 * KiB), (16 * KiB, 64 * KiB)]
)
def test_only_sizes_within_the_configured_bounds_are_chosen(
    peak: int, best_allowed: int
) -> None:
    plugin = configured(
        "[performance]\n"
        'min_buffer_size = "64KiB"\n'
        'max_buffer_size = "256KiB"\n'
        'initial_buffer_size = "128KiB"\n'
    )

    history = run_transfers(plugin, peaked_at(peak), 200)

    assert {size for size, _ in history} == {64 * KiB, 128 * KiB, 256 * KiB}
    assert history[-1][1] == best_allowed


def test_a_network_cap_bounds_the_sizes_a_context_on_it_tries() -> None:
    plugin = configured(
        '[network_interfaces.cellular]\nbuffer_size = "64KiB"\nchunk_size = "32KiB"\n'
    )
    phone = {"client_class": "mobile", "network": "cellular"}

    uploads = run_transfers(plugin, peaked_at(1 * MiB), 100, **phone)
    downloads = run_transfers(
        plugin, peaked_at(1 * MiB), 100, direction="download", **phone
    )

    assert {size for size, _ in uploads} == {16 * KiB, 32 * KiB, 64 * KiB}
    assert plugin.choice("upload", "mobile", "cellular") == 64 * KiB
    assert {size for size, _ in downloads} == {16 * KiB, 32 * KiB}
    assert plugin.choice("download", "mobile", "cellular") == 32 * KiB


def test_a_reload_rebuilds_the_bounds_and_keeps_the_history() -> None:
    plugin = configured()
    run_transfers(plugin, peaked_at(512 * KiB), 100)
    learned = plugin.averages("upload", "desktop", "ethernet")

    configured('[performance]\nmax_buffer_size = "256KiB"\n', plugin=plugin)

    assert plugin.averages("upload", "desktop", "ethernet") == learned
    assert plugin.choice("upload", "desktop", "ethernet") == 256 * KiB


def test_settings_of_its_own_are_refused() -> None:
    with pytest.raises(ValueError, match="takes no settings"):
        BufferSizing().hmacfs_configure(
            app=FakeApp(Config()), settings={"pool": [65536]}
        )


# -- the file size ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("direction", "file_size", "expected"),
    [
        ("upload", 20 * KiB, 32 * KiB),
        ("upload", 0, 16 * KiB),
        ("download", 100 * KiB, 128 * KiB),
        ("upload", 600 * KiB, 256 * KiB),
        ("download", None, 256 * KiB),
    ],
)
def test_a_file_smaller_than_the_choice_gets_the_smallest_size_that_holds_it(
    direction: str, file_size: int | None, expected: int
) -> None:
    plugin = configured('[performance]\ninitial_buffer_size = "256KiB"\n')

    transfer = plan(plugin, new_transfer(direction, size=file_size))

    assert size_of(transfer) == expected


def test_a_transfer_shrunk_to_its_file_size_teaches_nothing() -> None:
    plugin = configured('[performance]\ninitial_buffer_size = "256KiB"\n')

    transfer = plan(plugin, new_transfer(size=100 * KiB))
    finish(plugin, transfer, 1 * MiB, nbytes=100 * KiB)

    assert plugin.averages("upload", "desktop", "ethernet") == {}


# -- what counts as a measurement ---------------------------------------------------


@pytest.mark.parametrize(
    ("arm", "succeeded", "nbytes", "counted"),
    [
        ("adaptive", True, 64 * KiB, True),
        ("adaptive", True, 64 * KiB - 1, False),
        ("adaptive", False, 8 * MiB, False),
        ("baseline", True, 8 * MiB, False),
    ],
)
def test_only_successful_adaptive_transfers_of_64_kib_or_more_are_measured(
    arm: str, succeeded: bool, nbytes: int, counted: bool
) -> None:
    plugin = configured()

    transfer = plan(plugin, new_transfer(arm=arm))
    finish(plugin, transfer, 10 * MiB, nbytes=nbytes, succeeded=succeeded)

    expected = {64 * KiB: pytest.approx(10 * MiB)} if counted else {}
    assert plugin.averages("upload", "desktop", "ethernet") == expected


def test_a_stalled_interval_is_not_a_measurement() -> None:
    plugin = configured()

    measure(plugin, 64 * KiB, 0.0)

    assert plugin.averages("upload", "desktop", "ethernet") == {}


@pytest.mark.parametrize(
    ("history_samples", "average_of_64k", "choice"),
    [(1, 10 * MiB, 32 * KiB), (50, 30 * MiB, 64 * KiB)],
)
def test_the_history_length_decides_how_many_measurements_are_averaged(
    history_samples: int, average_of_64k: float, choice: int
) -> None:
    plugin = configured(
        f"[performance]\nperformance_history_samples = {history_samples}\n"
    )

    measure(plugin, 64 * KiB, 50 * MiB)
    measure(plugin, 64 * KiB, 10 * MiB)
    measure(plugin, 32 * KiB, 20 * MiB)

    averages = plugin.averages("upload", "desktop", "ethernet")
    assert averages[64 * KiB] == pytest.approx(average_of_64k, rel=1e-6)
    assert plugin.choice("upload", "desktop", "ethernet") == choice


def test_a_history_of_one_needs_one_measurement_per_size_to_exploit() -> None:
    plugin = configured("[performance]\nperformance_history_samples = 1\n")

    history = run_transfers(plugin, peaked_at(256 * KiB), 40)

    assert sorted(size for size, _ in history[: len(POOL)]) == sorted(POOL)
    assert history[-1][1] == 256 * KiB


# -- during a transfer --------------------------------------------------------------


@pytest.mark.parametrize(
    ("better_average", "switched"), [(12 * MiB, True), (10.5 * MiB, False)]
)
def test_a_running_transfer_switches_only_to_a_clearly_better_size(
    better_average: float, switched: bool
) -> None:
    plugin = configured()
    measure(plugin, 256 * KiB, better_average)
    transfer = plan(plugin, new_transfer())
    run_with(transfer, 64 * KiB)

    progress(plugin, transfer, 10 * MiB)

    assert size_of(transfer) == (256 * KiB if switched else 64 * KiB)


def test_a_switch_during_a_download_changes_the_chunk_size_within_the_file_size() -> (
    None
):
    plugin = configured()
    measure(plugin, 1 * MiB, 50 * MiB, direction="download")
    transfer = plan(plugin, new_transfer("download", size=300 * KiB))
    run_with(transfer, 16 * KiB)

    progress(plugin, transfer, 10 * MiB)

    assert size_of(transfer) == 512 * KiB


def test_a_switched_transfer_credits_its_outcome_to_no_size() -> None:
    plugin = configured()
    measure(plugin, 256 * KiB, 50 * MiB)
    transfer = plan(plugin, new_transfer())
    run_with(transfer, 64 * KiB)
    progress(plugin, transfer, 10 * MiB)
    before = plugin.averages("upload", "desktop", "ethernet")

    finish(plugin, transfer, 40 * MiB)

    assert plugin.averages("upload", "desktop", "ethernet") == before


# -- against the real server --------------------------------------------------------

DEBUG_JSON = '[logging]\nlevel = "debug"\nformat = "json"\n'
ADAPTIVE_FROM_128_KIB = (
    "[performance]\n"
    "adaptive_buffers = true\n"
    "fully_adaptive = true\n"
    'initial_buffer_size = "128KiB"\n' + DEBUG_JSON
)


def upload_and_read_decisions(server: RunningServer, size: int) -> dict[str, Any]:
    path = f"{os.urandom(6).hex()}/clip.bin"
    assert server.put(path, os.urandom(size)).status == 201
    return server.wait_for_event(event="transfer_decisions", path=path)


def test_an_adaptive_upload_runs_with_the_initial_size_on_the_writer_and_socket(
    make_server: Any,
) -> None:
    server = make_server(ADAPTIVE_FROM_128_KIB)

    event = upload_and_read_decisions(server, 2 * MiB)

    assert event["arm"] == "adaptive"
    assert event["applied"]["write_buffer_size"] == 128 * KiB
    assert event["applied"]["read_size"] == 128 * KiB


def test_without_adaptive_buffers_an_upload_keeps_the_baseline_sizes(
    make_server: Any,
) -> None:
    server = make_server(
        "[performance]\n"
        "adaptive_buffers = false\n"
        'initial_buffer_size = "128KiB"\n'
        '[uploads]\nwrite_buffer_size = "512KiB"\nread_size = "64KiB"\n' + DEBUG_JSON
    )

    event = upload_and_read_decisions(server, 2 * MiB)

    assert event["arm"] == "baseline"
    assert event["applied"]["write_buffer_size"] == 512 * KiB
    assert event["applied"]["read_size"] == 64 * KiB


def test_a_small_adaptive_upload_gets_a_buffer_no_larger_than_its_file(
    make_server: Any,
) -> None:
    server = make_server(ADAPTIVE_FROM_128_KIB)

    event = upload_and_read_decisions(server, 20 * KiB)

    assert event["applied"]["write_buffer_size"] == 32 * KiB
    assert event["applied"]["read_size"] == 32 * KiB
