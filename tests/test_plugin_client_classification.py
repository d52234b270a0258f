"""The ``client_classification`` plugin: which class a client is, what it learns,
and the strategy each class gets, down to the real socket and writer."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import attrs
import pytest
from hmacfs_plugins.client_classification import MAX_CLIENTS, ClientClassification
from serverproc import RunningServer
from twisted.internet.testing import MemoryReactorClock

from hmacfs_core import Outcome, TcpStats, Transfer, TransferPlan
from hmacfs_core.app import App
from hmacfs_core.config import Config, parse_config
from hmacfs_core.pipeline import baseline_plan
from hmacfs_core.plugins import PluginError

KiB = 1024
MiB = 1024 * KiB

#: A client in the same datacenter: a round trip well under 2 ms.
DATACENTER = TcpStats(
    rtt=0.0004, rtt_variance=0.0002, min_rtt=0.0003, delivery_rate=1e9, retransmits=0
)
#: A phone on a radio link: slow and jittery round trips.
RADIO = TcpStats(
    rtt=0.120, rtt_variance=0.080, min_rtt=0.060, delivery_rate=2e5, retransmits=1
)
#: Far away but steady: one sign of a phone, not both.
DISTANT = TcpStats(
    rtt=0.080, rtt_variance=0.005, min_rtt=0.075, delivery_rate=5e6, retransmits=0
)
#: A home line: nothing remarkable either way.
HOME = TcpStats(
    rtt=0.015, rtt_variance=0.003, min_rtt=0.012, delivery_rate=5e6, retransmits=0
)

#: Strategy tables with a distinct value in every field, so each shows where it went.
STRATEGIES = """
[client_optimization.strategy_mobile]
buffer_size = "48KiB"
chunk_size = "40KiB"
retry_multiplier = 3.0
timeout_multiplier = 5.0

[client_optimization.strategy_desktop]
buffer_size = "192KiB"
chunk_size = "160KiB"
retry_multiplier = 1.5
timeout_multiplier = 2.0

[client_optimization.strategy_server]
buffer_size = "2MiB"
chunk_size = "3MiB"
retry_multiplier = 0.25
timeout_multiplier = 0.5
"""

STRATEGY_VALUES = {
    "mobile": (48 * KiB, 40 * KiB, 3.0, 5.0),
    "desktop": (192 * KiB, 160 * KiB, 1.5, 2.0),
    "server": (2 * MiB, 3 * MiB, 0.25, 0.5),
}

USER_AGENT_OF = {
    "mobile": "Conversations/2.16.1 (Android 14)",
    "desktop": "Gajim/1.8.4",
    "server": "curl/8.5.0",
}


def make_app(settings: str = "") -> App:
    """A real app with only this plugin, configured from ``settings`` (TOML)."""
    config = parse_config(
        f"{settings}\n[plugins]\n"
        'disabled = ["buffer_sizing", "network_policy", "rollback_monitor"]\n'
    )
    return App(config, secret=b"secret", reactor=MemoryReactorClock())


def make_plugin(settings: str = "") -> ClientClassification:
    plugin = make_app(settings).plugins.manager.get_plugin("client_classification")
    assert isinstance(plugin, ClientClassification)
    return plugin


def make_transfer(
    user_agent: str = "",
    tcp: TcpStats | None = None,
    peer: str = "198.51.100.7",
    direction: str = "upload",
) -> Transfer:
    return Transfer(
        id=os.urandom(4).hex(),
        direction=direction,  # type: ignore[arg-type]
        path="f00d/cat.jpg",
        size=123_456,
        content_type="image/jpeg",
        user_agent=user_agent,
        peer=peer,
        headers={"user-agent": user_agent} if user_agent else {},
        tcp=tcp,
        started=0.0,
    )


def initial_plan(config: Config) -> TransferPlan:
    """The plan an adaptive transfer starts from, as the pipeline builds it."""
    initial = config.performance.initial_buffer_size
    return attrs.evolve(
        baseline_plan(config),
        read_size=initial,
        write_buffer_size=initial,
        chunk_size=initial,
    )


def classify(plugin: ClientClassification, transfer: Transfer) -> str | None:
    """Classify as the pipeline does: the answer becomes the transfer's class."""
    transfer.client_class = plugin.hmacfs_classify_client(transfer=transfer)
    return transfer.client_class


def finish(
    plugin: ClientClassification,
    transfer: Transfer,
    throughput: float,
    size: int = 20 * MiB,
    succeeded: bool = True,
) -> None:
    outcome = Outcome(
        succeeded=succeeded,
        status=201 if succeeded else None,
        reason="ok" if succeeded else "cut",
        bytes=size,
        seconds=size / throughput,
    )
    plugin.hmacfs_transfer_finished(transfer=transfer, outcome=outcome)


# -- the User-Agent -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("user_agent", "expected"),
    [
        ("Conversations/2.16.1 (Android 14)", "mobile"),
        ("Quicksy/2.10.4", "mobile"),
        ("Monal/6.2 (iOS 17.2)", "mobile"),
        ("Siskin IM/7.2.1", "mobile"),
        ("Cheogram/2.13.4-1", "mobile"),
        ("blabber.im/2.12.6", "mobile"),
        ("ChatSecure/5.0.3", "mobile"),
        ("okhttp/4.12.0", "mobile"),
        ("Dalvik/2.1.0 (Linux; U; Android 13; Pixel 7 Build/TQ3A)", "mobile"),
        ("SomeApp/3.1 CFNetwork/1474 Darwin/23.0.0", "mobile"),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X)"
            " AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148"
            " Safari/604.1",
            "mobile",
        ),
        (
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36"
            " (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
            "mobile",
        ),
        (
            "Mozilla/5.0 (Android 14; Mobile; rv:121.0) Gecko/121.0 Firefox/121.0",
            "mobile",
        ),
        ("Dino/0.4.3", "desktop"),
        ("Gajim/1.8.4", "desktop"),
        ("Psi+/1.5.1650", "desktop"),
        ("Swift/4.0.3", "desktop"),
        (
            "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
            "desktop",
        ),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36"
            " (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
            "desktop",
        ),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15"
            " (KHTML, like Gecko) Version/17.2 Safari/605.1.15",
            "desktop",
        ),
        ("curl/8.5.0", "server"),
        ("Wget/1.21.4", "server"),
        ("python-requests/2.31.0", "server"),
        ("Python/3.11 aiohttp/3.9.1", "server"),
        ("Go-http-client/1.1", "server"),
        ("Java/17.0.9", "server"),
        ("slixmpp/1.8.4", "server"),
        ("Prosody/0.12.4", "server"),
        ("ejabberd/23.10", "server"),
    ],
)
def test_the_user_agent_names_the_class(user_agent: str, expected: str) -> None:
    assert classify(make_plugin(), make_transfer(user_agent)) == expected


def test_a_client_nothing_is_known_about_is_left_unclassified() -> None:
    assert classify(make_plugin(), make_transfer("Frobnicator/0.1")) is None
    assert classify(make_plugin(), make_transfer("")) is None


def test_without_user_agent_analysis_the_user_agent_is_ignored() -> None:
    plugin = make_plugin("[client_optimization]\nuser_agent_analysis = false")

    assert classify(plugin, make_transfer("curl/8.5.0")) is None
    assert classify(plugin, make_transfer("curl/8.5.0", tcp=RADIO)) == "mobile"


# -- the connection fingerprint --------------------------------------------------


@pytest.mark.parametrize(
    ("tcp", "expected"),
    [(RADIO, "mobile"), (DISTANT, "mobile"), (DATACENTER, "server"), (HOME, None)],
)
def test_the_round_trips_decide_when_the_user_agent_says_nothing(
    tcp: TcpStats, expected: str | None
) -> None:
    assert classify(make_plugin(), make_transfer("Frobnicator/0.1", tcp)) == expected


def test_the_user_agent_wins_over_a_contradicting_fingerprint_which_is_noted() -> None:
    transfer = make_transfer("Conversations/2.16", tcp=DATACENTER)

    client_class = classify(make_plugin(), transfer)

    assert client_class == "mobile"
    contradiction = transfer.notes["client_classification"].contradiction
    assert "says mobile" in contradiction
    assert "looks like server" in contradiction


def test_a_weak_fingerprint_disagreement_is_not_noted() -> None:
    transfer = make_transfer("curl/8.5.0", tcp=DISTANT)

    assert classify(make_plugin(), transfer) == "server"
    assert transfer.notes["client_classification"].contradiction is None


def test_a_strongly_mobile_link_under_a_server_user_agent_is_noted() -> None:
    transfer = make_transfer("curl/8.5.0", tcp=RADIO)

    assert classify(make_plugin(), transfer) == "server"
    assert "looks like mobile" in transfer.notes["client_classification"].contradiction


def test_without_connection_fingerprinting_the_round_trips_are_ignored() -> None:
    plugin = make_plugin("[client_optimization]\nconnection_fingerprinting = false")
    transfer = make_transfer("Conversations/2.16", tcp=DATACENTER)

    assert classify(plugin, make_transfer("", tcp=RADIO)) is None
    assert classify(plugin, transfer) == "mobile"
    assert transfer.notes["client_classification"].contradiction is None


def test_a_zero_round_trip_is_nothing_measured_yet() -> None:
    unmeasured = attrs.evolve(DATACENTER, rtt=0.0, rtt_variance=0.0)

    assert classify(make_plugin(), make_transfer("", tcp=unmeasured)) is None


# -- past throughput ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("throughput", "expected"),
    [(400_000, "mobile"), (10_000_000, "desktop"), (120_000_000, "server")],
)
def test_the_throughput_a_client_reached_before_classifies_it(
    throughput: float, expected: str
) -> None:
    plugin = make_plugin()
    finish(plugin, make_transfer("Frobnicator/0.1"), throughput)

    assert classify(plugin, make_transfer("Frobnicator/0.1")) == expected


def test_without_performance_classification_throughput_is_not_learnt() -> None:
    plugin = make_plugin("[client_optimization]\nperformance_classification = false")
    finish(plugin, make_transfer("Frobnicator/0.1"), 120_000_000)

    assert plugin.remembered(make_transfer("Frobnicator/0.1")) is None
    assert classify(plugin, make_transfer("Frobnicator/0.1")) is None


@pytest.mark.parametrize(
    ("size", "succeeded"), [(100 * KiB, True), (20 * MiB, False)], ids=["small", "cut"]
)
def test_small_or_failed_transfers_teach_nothing_about_throughput(
    size: int, succeeded: bool
) -> None:
    plugin = make_plugin()
    finish(plugin, make_transfer(), 120_000_000, size=size, succeeded=succeeded)

    assert plugin.remembered(make_transfer()) is None


def test_past_throughput_outweighs_a_single_round_trip_reading() -> None:
    plugin = make_plugin("[client_optimization]\nlearning_enabled = false")
    finish(plugin, make_transfer(), 400_000)

    assert classify(plugin, make_transfer(tcp=DATACENTER)) == "mobile"


def test_the_user_agent_outweighs_past_throughput_and_round_trips_together() -> None:
    plugin = make_plugin("[client_optimization]\nlearning_enabled = false")
    finish(plugin, make_transfer("curl/8.5.0"), 400_000)

    assert classify(plugin, make_transfer("curl/8.5.0", tcp=RADIO)) == "server"


def test_throughput_is_averaged_at_the_adaptation_speed() -> None:
    plugin = make_plugin("[client_optimization]\nadaptation_speed = 'fast'")
    finish(plugin, make_transfer(), 10_000_000)
    finish(plugin, make_transfer(), 20_000_000)

    record = plugin.remembered(make_transfer())
    assert record is not None
    assert record.throughput == pytest.approx(16_000_000)


# -- learning -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("speed", "transfers_to_change_its_mind"), [("slow", 7), ("medium", 2), ("fast", 1)]
)
def test_a_learnt_class_yields_to_new_evidence_at_the_adaptation_speed(
    speed: str, transfers_to_change_its_mind: int
) -> None:
    plugin = make_plugin(f"[client_optimization]\nadaptation_speed = '{speed}'")
    for _ in range(3):
        assert classify(plugin, make_transfer(tcp=DATACENTER)) == "server"

    answers = [
        classify(plugin, make_transfer(tcp=RADIO))
        for _ in range(transfers_to_change_its_mind)
    ]

    assert answers == ["server"] * (transfers_to_change_its_mind - 1) + ["mobile"]


def test_a_learnt_class_holds_for_a_transfer_that_shows_nothing() -> None:
    plugin = make_plugin()
    classify(plugin, make_transfer(tcp=DATACENTER))

    assert classify(plugin, make_transfer(tcp=None)) == "server"


def test_without_learning_each_transfer_is_judged_alone() -> None:
    plugin = make_plugin("[client_optimization]\nlearning_enabled = false")
    for _ in range(3):
        classify(plugin, make_transfer(tcp=DATACENTER))

    assert classify(plugin, make_transfer(tcp=None)) is None
    assert classify(plugin, make_transfer(tcp=RADIO)) == "mobile"
    assert plugin.remembered(make_transfer()) is None


def test_clients_are_told_apart_by_address_and_user_agent() -> None:
    plugin = make_plugin()
    classify(plugin, make_transfer("Frobnicator/0.1", tcp=DATACENTER))

    assert classify(plugin, make_transfer("Frobnicator/0.1")) == "server"
    assert classify(plugin, make_transfer("Frobnicator/0.2")) is None
    assert (
        classify(plugin, make_transfer("Frobnicator/0.1", peer="2001:db8::1")) is None
    )


def test_memory_keeps_the_most_recently_seen_clients() -> None:
    assert ClientClassification().max_clients == MAX_CLIENTS == 10_000
    plugin = make_plugin()
    plugin.max_clients = 3
    peers = ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"]

    for peer in peers[:3]:
        classify(plugin, make_transfer(tcp=DATACENTER, peer=peer))
    classify(plugin, make_transfer(peer=peers[0]))
    classify(plugin, make_transfer(tcp=DATACENTER, peer=peers[3]))

    remembered = [plugin.remembered(make_transfer(peer=p)) is not None for p in peers]
    assert remembered == [True, False, True, True]


def test_a_reload_takes_the_new_section_and_keeps_what_was_learnt() -> None:
    plugin = make_plugin()
    classify(plugin, make_transfer(tcp=DATACENTER))
    reloaded = make_app("[client_optimization]\nadaptation_speed = 'fast'")

    plugin.hmacfs_configure(app=reloaded, settings={})

    assert plugin.options.adaptation_speed == "fast"
    assert classify(plugin, make_transfer()) == "server"


def test_a_settings_table_of_its_own_is_refused() -> None:
    with pytest.raises(PluginError, match=r"set its keys in \[client_optimization\]"):
        make_app("[plugins.client_classification]\nspeed = 1")


# -- the strategies ------------------------------------------------------------------


def planned(
    client_class: str, direction: str, settings: str = STRATEGIES
) -> tuple[TransferPlan, TransferPlan]:
    """The plan before and after the plugin, for a client of ``client_class``."""
    app = make_app(settings)
    plugin = app.plugins.manager.get_plugin("client_classification")
    transfer = make_transfer(USER_AGENT_OF[client_class], direction=direction)
    assert classify(plugin, transfer) == client_class

    before = initial_plan(app.config)
    plan = attrs.evolve(before)
    plugin.hmacfs_plan_transfer(transfer=transfer, plan=plan)
    return before, plan


@pytest.mark.parametrize("client_class", ["mobile", "desktop", "server"])
def test_an_upload_gets_its_class_buffer_size_timeout_and_retry_multipliers(
    client_class: str,
) -> None:
    buffer_size, _, retry_multiplier, timeout_multiplier = STRATEGY_VALUES[client_class]

    before, plan = planned(client_class, "upload")

    assert plan.read_size == buffer_size
    assert plan.write_buffer_size == buffer_size
    assert plan.chunk_size == before.chunk_size
    assert plan.idle_timeout == before.idle_timeout * timeout_multiplier
    assert plan.retry_after == before.retry_after * retry_multiplier


@pytest.mark.parametrize("client_class", ["mobile", "desktop", "server"])
def test_a_download_gets_its_class_chunk_size_and_timeout_multiplier(
    client_class: str,
) -> None:
    _, chunk_size, _, timeout_multiplier = STRATEGY_VALUES[client_class]

    before, plan = planned(client_class, "download")

    assert plan.chunk_size == chunk_size
    assert plan.read_size == before.read_size
    assert plan.write_buffer_size == before.write_buffer_size
    assert plan.idle_timeout == before.idle_timeout * timeout_multiplier


@pytest.mark.parametrize("direction", ["upload", "download"])
def test_servers_get_socket_buffers_of_four_strategy_buffers(direction: str) -> None:
    _, plan = planned("server", direction)

    assert plan.socket_receive_buffer == 4 * 2 * MiB
    assert plan.socket_send_buffer == 4 * 2 * MiB


@pytest.mark.parametrize("client_class", ["mobile", "desktop"])
def test_phones_and_desktops_keep_the_kernels_socket_buffer_tuning(
    client_class: str,
) -> None:
    _, plan = planned(client_class, "upload")

    assert plan.socket_receive_buffer is None
    assert plan.socket_send_buffer is None


def test_when_disabled_clients_are_classified_but_plans_left_alone() -> None:
    before, plan = planned(
        "server", "upload", STRATEGIES + "[client_optimization]\nenabled = false\n"
    )

    assert plan == before


@pytest.mark.parametrize("client_class", [None, "robot"])
def test_a_class_without_a_strategy_leaves_the_plan_alone(
    client_class: str | None,
) -> None:
    app = make_app()
    transfer = make_transfer()
    transfer.client_class = client_class
    before = initial_plan(app.config)
    plan = attrs.evolve(before)

    app.plugins.manager.get_plugin("client_classification").hmacfs_plan_transfer(
        transfer=transfer, plan=plan
    )

    assert plan == before


# -- on the real server ---------------------------------------------------------------

#: Distinct timeouts so the applied idle timeout shows whose strategy it came from;
#: a max_buffer_size large enough that the servers' socket buffers are not clamped.
SERVER_SETTINGS = """
[performance]
adaptive_buffers = true
fully_adaptive = true
max_buffer_size = "8MiB"

[logging]
level = "debug"
format = "json"

[plugins]
disabled = ["buffer_sizing", "network_policy", "rollback_monitor"]

[client_optimization.strategy_mobile]
buffer_size = "48KiB"
timeout_multiplier = 3.0

[client_optimization.strategy_server]
buffer_size = "1MiB"
timeout_multiplier = 0.5
"""


def _rmem_max() -> int:
    return int(Path("/proc/sys/net/core/rmem_max").read_text())


def test_conversations_and_curl_uploads_get_their_strategies_on_the_real_socket(
    make_server: Callable[..., RunningServer],
) -> None:
    server = make_server(SERVER_SETTINGS)
    body = os.urandom(200 * KiB)
    decisions = {}

    for name, user_agent in [("phone", "Conversations/2.16"), ("bot", "curl/8.5")]:
        path = f"{os.urandom(6).hex()}/{name}.bin"
        target = server.signed(path, len(body))
        answer = server.request("PUT", target, body, {"User-Agent": user_agent})
        assert answer.status == 201
        decisions[name] = server.wait_for_event(event="transfer_decisions", path=path)

    phone, bot = decisions["phone"], decisions["bot"]
    assert phone["client_class"] == "mobile"
    assert phone["applied"]["read_size"] == 48 * KiB
    assert phone["applied"]["write_buffer_size"] == 48 * KiB
    assert phone["applied"]["idle_timeout"] == 60 * 3.0
    assert phone["plan"]["socket_receive_buffer"] is None

    assert bot["client_class"] == "server"
    assert bot["applied"]["read_size"] == 1 * MiB
    assert bot["applied"]["write_buffer_size"] == 1 * MiB
    assert bot["applied"]["idle_timeout"] == 60 * 0.5
    assert bot["plan"]["socket_receive_buffer"] == 4 * MiB
    # Linux doubles what it is given (for its bookkeeping), capped at rmem_max.
    assert bot["applied"]["so_rcvbuf"] == 2 * min(4 * MiB, _rmem_max())
    assert phone["applied"]["so_rcvbuf"] != bot["applied"]["so_rcvbuf"]
    assert bot["set_by"]["read_size"] == "client_classification"
