"""Turn a run's measurements into ``benchmarks.md``, its charts and raw JSON.

Every table gives the median over the rounds and, for the numbers that are
compared, the spread and the ratio to a peer measured in the same run: an
absolute figure on this shared two-core machine says little, a ratio between
servers that took turns says more.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path

from attrs import asdict, frozen

from bench.workloads import MB, Metric, MiB, Workload


@frozen
class Record:
    """One workload run against one server in one round.

    :ivar values: the workload's metrics, empty if it failed.
    :ivar error: why it failed, or "".
    """

    workload: str
    server: str
    round: int
    seconds: float
    values: dict[str, float]
    error: str = ""


@frozen
class RunFacts:
    """What a reader needs to know to weigh the numbers."""

    date: str
    command: str
    commit: str
    quick: bool
    machine: dict[str, str]
    versions: dict[str, str]
    storage: str
    servers: tuple[str, ...]
    rounds: dict[str, int]
    duration_s: float
    profiles: dict[str, str]


@frozen
class Verdict:
    """A target of issue 4 and how this run did against it."""

    target: str
    measured: str
    status: str  # "met", "missed" or "not measured"
    note: str = ""


# -- numbers -------------------------------------------------------------------


def _values(
    records: Iterable[Record], workload: str, server: str, key: str
) -> list[float]:
    return [
        r.values[key]
        for r in records
        if r.workload == workload and r.server == server and key in r.values
    ]


def median_of(
    records: Sequence[Record], workload: str, server: str, key: str
) -> float | None:
    found = _values(records, workload, server, key)
    return statistics.median(found) if found else None


def ratio(
    records: Sequence[Record],
    workload: str,
    metric: Metric,
    server: str,
    peer: str,
) -> float | None:
    """How much better ``server`` did than ``peer`` (>1 is better), by medians."""
    mine = median_of(records, workload, server, metric.key)
    theirs = median_of(records, workload, peer, metric.key)
    if mine is None or theirs is None or mine <= 0 or theirs <= 0:
        return None
    return mine / theirs if metric.higher_is_better else theirs / mine


def rounds_overlap(
    records: Sequence[Record], workload: str, key: str, one: str, other: str
) -> bool:
    """Whether two servers' rounds overlap: then their medians' order is noise."""
    mine = _values(records, workload, one, key)
    theirs = _values(records, workload, other, key)
    if len(mine) < 2 or len(theirs) < 2:
        return False
    return min(mine) <= max(theirs) and min(theirs) <= max(mine)


def _number(value: float | None, digits: int) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:,.{digits}f}"


def _times(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}×"


# -- targets -------------------------------------------------------------------

HMACFS = ("hmacfs-baseline", "hmacfs-adaptive")

#: A load generator this busy may be what limits the server's numbers.
CLIENT_BOUND_PCT = 85


def _at_least(value: float | None, bound: float) -> str:
    if value is None:
        return "not measured"
    return "met" if value >= bound else "missed"


def verdicts(records: Sequence[Record], workloads: Sequence[Workload]) -> list[Verdict]:
    """Each target of issue 4 against this run's medians."""
    by_key = {w.key: w for w in workloads}
    found: list[Verdict] = []

    def metric(workload: str, key: str) -> Metric | None:
        if workload not in by_key:
            return None
        return next(m for m in by_key[workload].metrics if m.key == key)

    for key, what, bound in (
        ("put_mib_s", "1 GiB PUT throughput", 0.9),
        ("get_mib_s", "1 GiB GET throughput", 0.8),
    ):
        chosen = metric("large", key)
        for server in HMACFS:
            value = ratio(records, "large", chosen, server, "nginx") if chosen else None
            found.append(
                Verdict(
                    f"{what}, {server}: at least {bound}× nginx",
                    _times(value),
                    _at_least(value, bound),
                )
            )

    chosen = metric("photos", "uploads_per_s")
    for server in HMACFS:
        value = ratio(records, "photos", chosen, server, "prosody") if chosen else None
        found.append(
            Verdict(
                f"Photos, {server}: at least 1.5× Prosody's uploads/s",
                _times(value),
                _at_least(value, 1.5),
            )
        )

    for server in HMACFS:
        peak = median_of(records, "memory", server, "peak_rss_mib")
        status = (
            "not measured"
            if peak is None
            else ("met" if peak * MiB < 150 * MB else "missed")
        )
        found.append(
            Verdict(
                f"Peak RSS under concurrent large uploads, {server}: below 150 MB",
                "n/a" if peak is None else f"{peak * MiB / MB:.1f} MB",
                status,
            )
        )

    for key, what in (
        ("fastlink_put_mib_s", "PUT"),
        ("fastlink_get_mib_s", "GET"),
    ):
        chosen = metric("classes", key)
        value = (
            ratio(records, "classes", chosen, "hmacfs-adaptive", "hmacfs-baseline")
            if chosen
            else None
        )
        found.append(
            Verdict(
                f"Adaptive on a fast link ({what}): at least 1.3× baseline",
                _times(value),
                _at_least(value, 1.3),
            )
        )

    worst: list[tuple[float, str]] = []
    for workload in workloads:
        for chosen in workload.metrics:
            if not chosen.headline:
                continue
            value = ratio(
                records, workload.key, chosen, "hmacfs-adaptive", "hmacfs-baseline"
            )
            if value is None:
                continue
            label = f"{workload.key}: {chosen.label} {value:.2f}×"
            if rounds_overlap(
                records, workload.key, chosen.key, "hmacfs-adaptive", "hmacfs-baseline"
            ):
                label += " (the rounds overlap: within this run's noise)"
            worst.append((value, label))
    worst.sort()
    below = [label for value, label in worst if value < 0.97]
    found.append(
        Verdict(
            "Adaptive never below 0.97× baseline, on any workload's headline numbers",
            f"lowest: {worst[0][1]}" if worst else "n/a",
            "not measured" if not worst else ("missed" if below else "met"),
            "; ".join(below),
        )
    )

    found.append(
        Verdict(
            "Multi-core: `[server] workers`, photo scaling from 1 to 2 workers",
            "n/a",
            "not measured",
            "the setting does not exist yet: see 'Several workers' below",
        )
    )
    return found


# -- markdown ------------------------------------------------------------------


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return lines


def _cell(records: Sequence[Record], workload: str, server: str, metric: Metric) -> str:
    found = _values(records, workload, server, metric.key)
    if not found:
        return "n/a"
    middle = _number(statistics.median(found), metric.digits)
    if metric.headline and len(found) > 1:
        low, high = min(found), max(found)
        return (
            f"{middle} ({_number(low, metric.digits)}–{_number(high, metric.digits)})"
        )
    return middle


def workload_section(
    records: Sequence[Record],
    workload: Workload,
    servers: Sequence[str],
    charts: dict[str, str],
) -> list[str]:
    """One workload: what it does, its medians, and its ratios to the peers."""
    present = [s for s in servers if workload.only is None or s in workload.only]
    rounds = max(
        (r.round + 1 for r in records if r.workload == workload.key), default=0
    )
    lines = [f"## {workload.title}", "", workload.describe() + ".", ""]
    lines.append(
        f"Medians over {rounds} round(s); headline numbers show the spread "
        "(lowest–highest round) in parentheses."
    )
    lines.append("")
    lines += _table(
        ["server", *(m.label for m in workload.metrics)],
        (
            [
                server,
                *(_cell(records, workload.key, server, m) for m in workload.metrics),
            ]
            for server in present
        ),
    )
    lines.append("")

    peers = [p for p in workload.reference if p in present]
    headline = [m for m in workload.metrics if m.headline]
    if peers and headline:
        lines.append(
            "Ratios of medians (above 1 is better than the peer, whichever way the "
            "number goes):"
        )
        lines.append("")
        header = ["server", *(f"{m.label} × {p}" for p in peers for m in headline)]
        rows = []
        for server in present:
            if server in peers and server == peers[0]:
                continue
            rows.append(
                [
                    server,
                    *(
                        _times(ratio(records, workload.key, m, server, p))
                        for p in peers
                        for m in headline
                    ),
                ]
            )
        lines += _table(header, rows)
        lines.append("")

    busy = [
        server
        for server in present
        if (median_of(records, workload.key, server, "client_cpu_pct") or 0)
        >= CLIENT_BOUND_PCT
    ]
    if busy:
        lines.append(
            f"The client used {CLIENT_BOUND_PCT}% of a core or more against "
            f"{', '.join(busy)}: there the client may have set the pace, and the "
            "server could be faster than shown."
        )
        lines.append("")

    failed = [r for r in records if r.workload == workload.key and r.error]
    for record in failed:
        lines.append(
            f"- Round {record.round + 1}, {record.server} failed: {record.error}"
        )
    if failed:
        lines.append("")
    if workload.key in charts:
        lines += [f"![{workload.title}]({charts[workload.key]})", ""]
    return lines


def render(
    facts: RunFacts,
    records: Sequence[Record],
    workloads: Sequence[Workload],
    charts: dict[str, str],
) -> str:
    """The whole of ``benchmarks.md``."""
    lines = ["# Benchmarks", ""]
    lines.append(
        "Written by `python -m bench` (see `bench/README.md`); do not edit by hand, "
        "run the suite again. Every server was started by the suite on loopback and "
        "the workloads took turns: in each round every server ran the workload "
        "once, the order rotating by one server each round, so slow drifts of this "
        "shared machine fall on all of them alike."
    )
    lines.append("")
    if facts.quick:
        lines += [
            "**This is a `--quick` run**: every size and count is scaled down to "
            "seconds, for CI's smoke test. Its numbers are not the issue's "
            "workloads and the targets below do not apply to it.",
            "",
        ]

    lines += ["## The machine and the run", ""]
    rows = [
        ("date (UTC)", facts.date),
        ("command", f"`{facts.command}`"),
        ("commit", facts.commit),
        *facts.machine.items(),
        *((f"{name} version", version) for name, version in facts.versions.items()),
        ("storage", facts.storage),
        ("servers", ", ".join(facts.servers)),
        (
            "rounds",
            ", ".join(
                f"{w.key} {facts.rounds[w.key]}"
                for w in workloads
                if w.key in facts.rounds
            ),
        ),
        ("duration", f"{facts.duration_s / 60:.1f} minutes"),
    ]
    lines += _table(["", ""], ([str(k), str(v)] for k, v in rows))
    lines.append("")

    lines += ["## Targets of issue 4", ""]
    lines += _table(
        ["target", "this run", "status", "note"],
        (
            [v.target, v.measured, f"**{v.status}**", v.note]
            for v in verdicts(records, workloads)
        ),
    )
    lines.append("")
    if "adaptive" in charts:
        lines += [f"![adaptive against baseline]({charts['adaptive']})", ""]

    for workload in workloads:
        lines += workload_section(records, workload, facts.servers, charts)

    lines += [
        "## Several workers",
        "",
        "**Not measured: the `[server] workers` setting does not exist yet.** When it "
        "does, this section reports the photo workload with 1 and 2 worker "
        "processes on one listening port, and the scaling between them.",
        "",
    ]

    if facts.profiles:
        lines += ["## Profiles", ""]
        lines.append(
            "Taken with py-spy in an extra, unmeasured run after the rounds above:"
        )
        lines.append("")
        lines += [f"- [{name}]({path})" for name, path in facts.profiles.items()]
        lines.append("")

    lines += [
        "## How the numbers are taken",
        "",
        "- Server CPU is user plus system time of the server's processes from "
        "`/proc/<pid>/stat`; peak RSS is their `VmHWM`, reset before each "
        "measurement through `/proc/<pid>/clear_refs` (nginx: master plus worker, "
        "summed).",
        "- Client CPU is the load generator's own process time over the same span, "
        "as a share of one core: near 100% would mean the client, not the server, "
        "set the pace.",
        "- Only the HTTP transfers are timed. Prosody's upload slots are asked for "
        "over XMPP before the clock starts, as hmacfs's signed URLs and nginx's "
        "plain paths are made before it.",
        f"- Raw numbers of every round: `{charts.get('results', 'results.json')}`.",
        "",
    ]
    return "\n".join(lines)


# -- charts --------------------------------------------------------------------


def _bars(axes, labels, groups, values, spreads, ylabel, title):  # type: ignore[no-untyped-def]
    width = 0.8 / max(1, len(groups))
    for index, group in enumerate(groups):
        xs = [x + (index - (len(groups) - 1) / 2) * width for x in range(len(labels))]
        heights = [v if v is not None else 0 for v in values[group]]
        axes.bar(xs, heights, width, label=group)
        for x, points in zip(xs, spreads[group], strict=True):
            axes.scatter([x] * len(points), points, color="black", s=8, zorder=3)
    axes.set_xticks(range(len(labels)))
    axes.set_xticklabels(labels, rotation=15)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    if len(groups) > 1:
        axes.legend()


def draw_charts(
    records: Sequence[Record],
    workloads: Sequence[Workload],
    servers: Sequence[str],
    directory: Path,
    prefix: str,
) -> dict[str, str]:
    """PNG charts of the headline numbers; {} if matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return {}

    directory.mkdir(parents=True, exist_ok=True)
    charts: dict[str, str] = {}
    for workload in workloads:
        headline = [m for m in workload.metrics if m.headline]
        present = [s for s in servers if workload.only is None or s in workload.only]
        if not headline or not present:
            continue
        figure, panes = plt.subplots(
            1, len(headline), figsize=(4.2 * len(headline), 3.6), squeeze=False
        )
        for axes, metric in zip(panes[0], headline, strict=True):
            medians = {
                "median": [
                    median_of(records, workload.key, s, metric.key) for s in present
                ]
            }
            spreads = {
                "median": [
                    _values(records, workload.key, s, metric.key) for s in present
                ]
            }
            better = "higher" if metric.higher_is_better else "lower"
            _bars(
                axes,
                present,
                ["median"],
                medians,
                spreads,
                metric.label,
                f"{metric.label} ({better} is better)",
            )
            if workload.key == "memory" and metric.key == "peak_rss_mib":
                axes.axhline(150 * MB / MiB, color="red", linestyle="--", linewidth=1)
        figure.suptitle(workload.title)
        figure.tight_layout()
        name = f"{workload.key}.png"
        figure.savefig(directory / name, dpi=90)
        plt.close(figure)
        charts[workload.key] = f"{prefix}/{name}"

    labels, ratios = [], []
    for workload in workloads:
        for metric in workload.metrics:
            if not metric.headline:
                continue
            value = ratio(
                records, workload.key, metric, "hmacfs-adaptive", "hmacfs-baseline"
            )
            if value is not None:
                labels.append(f"{workload.key}: {metric.label}")
                ratios.append(value)
    if ratios:
        figure, axes = plt.subplots(figsize=(8, 0.35 * len(ratios) + 1.5))
        colours = ["tab:red" if r < 0.97 else "tab:green" for r in ratios]
        axes.barh(range(len(ratios)), ratios, color=colours)
        axes.set_yticks(range(len(ratios)))
        axes.set_yticklabels(labels)
        axes.axvline(1.0, color="black", linewidth=1)
        axes.axvline(0.97, color="red", linestyle="--", linewidth=1)
        axes.axvline(1.3, color="green", linestyle="--", linewidth=1)
        axes.set_xlabel("adaptive ÷ baseline (above 1: adaptive better)")
        axes.invert_yaxis()
        figure.tight_layout()
        figure.savefig(directory / "adaptive.png", dpi=90)
        plt.close(figure)
        charts["adaptive"] = f"{prefix}/adaptive.png"
    return charts


def load(results: Path) -> tuple[RunFacts, list[Record]]:
    """The facts and records of an earlier run, from its ``results.json``."""
    saved = json.loads(results.read_text())
    facts = saved["facts"]
    facts["servers"] = tuple(facts["servers"])
    return RunFacts(**facts), [Record(**record) for record in saved["records"]]


def write(
    output: Path,
    facts: RunFacts,
    records: Sequence[Record],
    workloads: Sequence[Workload],
) -> Path:
    """Write ``output/benchmarks.md``, ``output/benchmarks/*.png`` and the JSON."""
    assets = output / "benchmarks"
    assets.mkdir(parents=True, exist_ok=True)
    charts = draw_charts(records, workloads, facts.servers, assets, "benchmarks")
    results = assets / "results.json"
    results.write_text(
        json.dumps(
            {"facts": asdict(facts), "records": [asdict(r) for r in records]},
            indent=1,
        )
        + "\n"
    )
    charts["results"] = "benchmarks/results.json"
    page = output / "benchmarks.md"
    page.write_text(render(facts, records, workloads, charts))
    return page
