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
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

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
class Supplement:
    """A later, smaller run shown beside the main one, never mixed into it.

    Its rows answer what the main run could not (the photo workload with
    several workers) or measure again what changed since (memory after a new
    default); ratios are only ever taken within one run.
    """

    facts: RunFacts
    records: tuple[Record, ...]


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


def _run_label(facts: RunFacts) -> str:
    return f"{facts.date} UTC, commit {facts.commit}"


def _latest(
    supplements: Sequence[Supplement], workload: str, server: str
) -> Supplement | None:
    """The newest supplement that measured ``server`` on ``workload``."""
    found = [
        s
        for s in supplements
        if any(r.workload == workload and r.server == server for r in s.records)
    ]
    return max(found, key=lambda s: s.facts.date) if found else None


def _scaling_runs(
    facts: RunFacts, records: Sequence[Record], supplements: Sequence[Supplement]
) -> list[tuple[RunFacts, Sequence[Record]]]:
    """The runs with photos on one worker and on two, newest first."""
    runs = [(s.facts, s.records) for s in supplements] + [(facts, records)]
    runs.sort(key=lambda run: run[0].date, reverse=True)
    return [
        (run_facts, run_records)
        for run_facts, run_records in runs
        if all(
            median_of(run_records, "photos", server, "uploads_per_s")
            for server in (SINGLE, WORKERS)
        )
    ]


def _scaling_run(
    facts: RunFacts, records: Sequence[Record], supplements: Sequence[Supplement]
) -> tuple[RunFacts, Sequence[Record]] | None:
    """The newest run with photos on one worker and on two: the same run's turns."""
    runs = _scaling_runs(facts, records, supplements)
    return runs[0] if runs else None


def _scaling(records: Sequence[Record]) -> float | None:
    single = median_of(records, "photos", SINGLE, "uploads_per_s")
    double = median_of(records, "photos", WORKERS, "uploads_per_s")
    return double / single if single and double else None


def _before_write_buffers(commit: str) -> bool | None:
    """Whether ``commit`` predates the smaller write buffers; None if unknown."""
    answer = subprocess.run(
        [
            "git",
            "-C",
            str(Path(__file__).resolve().parent.parent),
            "merge-base",
            "--is-ancestor",
            WRITE_BUFFER_COMMIT,
            commit.split()[0],
        ],
        capture_output=True,
        check=False,
    )
    return {0: False, 1: True}.get(answer.returncode)


# -- targets -------------------------------------------------------------------

HMACFS = ("hmacfs-baseline", "hmacfs-adaptive")

#: The photo workload's scaling compares these two, measured in the same run.
SINGLE = "hmacfs-baseline"
WORKERS = "hmacfs-2workers"

#: The commit that made write buffers smaller than 1 MiB the default `[uploads]
#: write_buffer_size`, which sets most of the memory an upload holds.
WRITE_BUFFER_COMMIT = "5564b5c"

#: A load generator this busy may be what limits the server's numbers.
CLIENT_BOUND_PCT = 85


def _at_least(value: float | None, bound: float) -> str:
    if value is None:
        return "not measured"
    return "met" if value >= bound else "missed"


def verdicts(
    facts: RunFacts,
    records: Sequence[Record],
    workloads: Sequence[Workload],
    supplements: Sequence[Supplement] = (),
) -> list[Verdict]:
    """Each target of issue 4 against this run's medians (or a later run's)."""
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
        measured = "n/a" if peak is None else f"{peak * MiB / MB:.1f} MB"
        note = ""
        again = _latest(supplements, "memory", server)
        if again is not None:
            # The newest measurement decides: the code has changed since the
            # main run, and the target is about the code as it is.
            later = median_of(again.records, "memory", server, "peak_rss_mib")
            note = f"main run ({_run_label(facts)}): {measured}"
            if _before_write_buffers(facts.commit):
                note += ", with the 1 MiB write buffers of then"
            peak = later
            measured = f"{later * MiB / MB:.1f} MB ({_run_label(again.facts)})"
        status = (
            "not measured"
            if peak is None
            else ("met" if peak * MiB < 150 * MB else "missed")
        )
        found.append(
            Verdict(
                f"Peak RSS under concurrent large uploads, {server}: below 150 MB",
                measured,
                status,
                note,
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

    scaling = _scaling_run(facts, records, supplements)
    if scaling is None:
        found.append(
            Verdict(
                "Multi-core: `[server] workers`, photo scaling from 1 to 2 workers",
                "n/a",
                "not measured",
                f"no run had both {SINGLE} and {WORKERS}: see 'Several workers'",
            )
        )
    else:
        run_facts, run_records = scaling
        chosen = metric("photos", "uploads_per_s")
        value = (
            ratio(run_records, "photos", chosen, WORKERS, SINGLE) if chosen else None
        )
        found.append(
            Verdict(
                "Multi-core: `[server] workers`, photo scaling from 1 to 2 workers",
                f"{_times(value)} uploads/s ({_run_label(run_facts)})",
                "measured",
                "issue 4 sets no bound; on "
                f"{run_facts.machine.get('cores (nproc)', '?')} cores shared with "
                "the load generator: see 'Several workers'",
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


def supplement_table(supplement: Supplement, workload: Workload) -> list[str]:
    """A later run's rows of ``workload``, labelled with its date and commit."""
    present = []
    for record in supplement.records:
        if record.workload == workload.key and record.server not in present:
            present.append(record.server)
    if not present:
        return []
    facts = supplement.facts
    rounds = facts.rounds.get(workload.key, 1)
    lines = [
        f"Measured in a later run, {facts.date} UTC at commit {facts.commit} "
        f"(`{facts.command}`, {rounds} round(s), medians):",
        "",
    ]
    lines += _table(
        ["server", *(m.label for m in workload.metrics)],
        (
            [
                server,
                *(
                    _cell(supplement.records, workload.key, server, m)
                    for m in workload.metrics
                ),
            ]
            for server in present
        ),
    )
    lines.append("")
    failed = [r for r in supplement.records if r.workload == workload.key and r.error]
    lines += [f"- Round {r.round + 1}, {r.server} failed: {r.error}" for r in failed]
    return lines + ([""] if failed else [])


def workers_section(
    facts: RunFacts, records: Sequence[Record], supplements: Sequence[Supplement]
) -> list[str]:
    """The photo workload on one process and on a supervisor with two workers."""
    lines = ["## Several workers", ""]
    scaling = _scaling_run(facts, records, supplements)
    if scaling is None:
        return lines + [
            f"**Not measured**: no run had both `{SINGLE}` and `{WORKERS}` "
            f"(`python -m bench --workloads photos --servers {SINGLE},{WORKERS}`).",
            "",
        ]

    run_facts, run_records = scaling
    cores = run_facts.machine.get("cores (nproc)", "?")
    lines.append(
        f"The photo workload on `{SINGLE}` (one process) and `{WORKERS}` (the same "
        "settings with `[server] workers = 2`: a supervisor and two `hmacfs serve` "
        "processes accepting on one socket), taking turns in one run: "
        f"{run_facts.date} UTC, commit {run_facts.commit}, "
        f"`{run_facts.command}`. Server CPU and peak RSS are summed over the "
        "supervisor and its workers."
    )
    lines.append("")
    rows = []
    for server, workers in ((SINGLE, "1"), (WORKERS, "2")):
        rows.append(
            [
                server,
                workers,
                *(
                    _number(median_of(run_records, "photos", server, key), digits)
                    for key, digits in (
                        ("uploads_per_s", 1),
                        ("p50_ms", 1),
                        ("p99_ms", 1),
                        ("cpu_ms_per_upload", 2),
                        ("client_cpu_pct", 0),
                    )
                ),
                ", ".join(
                    _number(v, 1)
                    for v in _values(run_records, "photos", server, "uploads_per_s")
                ),
            ]
        )
    lines += _table(
        [
            "server",
            "workers",
            "uploads/s",
            "p50 ms",
            "p99 ms",
            "server CPU ms/upload",
            "client CPU % of a core",
            "uploads/s by round",
        ],
        rows,
    )
    lines.append("")

    scale = _scaling(run_records)
    overlap = rounds_overlap(run_records, "photos", "uploads_per_s", SINGLE, WORKERS)
    lines.append(
        f"**2 workers ÷ 1 worker: {_times(scale)} uploads/s**"
        + (" (the rounds overlap: within this run's noise)." if overlap else ".")
    )
    lines.append("")
    earlier = _scaling_runs(facts, records, supplements)[1:]
    if earlier:
        lines.append(
            "Earlier runs gave "
            + "; ".join(
                f"{_times(_scaling(r))} ({f.date} UTC, load average {_load_span(f)})"
                for f, r in earlier
            )
            + "."
        )
        lines.append("")
    load = _load_span(run_facts)
    lines.append(
        f"Read this with the machine in mind: it has {cores} cores (`nproc`), and "
        "the load generator, one Python process in this run, needs CPU of its own "
        "(the client CPU column), so two workers cannot have two cores to "
        "themselves; other work on this shared machine took its share too"
        + f" (load average over 1/5/15 minutes: {load})."
        + " The ratio says what a second process gives on such a machine, not "
        "how hmacfs scales where cores are free."
    )
    lines.append("")
    return lines


def _load_span(facts: RunFacts) -> str:
    start = facts.machine.get("load average at the start")
    end = facts.machine.get("load average at the end")
    if start is None or end is None:
        return "not recorded"
    return f"{start} at the start, {end} at the end"


def _write_buffer_note(facts: RunFacts, supplements: Sequence[Supplement]) -> list[str]:
    """Say which runs predate the smaller write buffers: memory depends on it."""
    if not _before_write_buffers(facts.commit):
        return []
    again = [
        s
        for s in supplements
        if any(r.workload == "memory" for r in s.records)
        and _before_write_buffers(s.facts.commit) is False
    ]
    text = (
        f"Since commit {WRITE_BUFFER_COMMIT} the default `[uploads] "
        "write_buffer_size` is smaller (256 KiB, then 512 KiB, which keeps most "
        "of 1 MiB's PUT speed on loopback); it was 1 MiB when the main run "
        f"(commit {facts.commit}) was made, so its memory rows, and every number "
        "of the workload sections below that is not labelled with a later date, "
        "were measured with 1 MiB."
    )
    if again:
        text += (
            " The peak-RSS targets above use the memory workload measured again "
            f"with the smaller buffers, last on {max(s.facts.date for s in again)} "
            "UTC (see section 3, each run labelled with its date and commit)."
        )
    return [text, ""]


def render(
    facts: RunFacts,
    records: Sequence[Record],
    workloads: Sequence[Workload],
    charts: dict[str, str],
    supplements: Sequence[Supplement] = (),
) -> str:
    """The whole of ``benchmarks.md``, with later runs' rows beside the main run's."""
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
            for v in verdicts(facts, records, workloads, supplements)
        ),
    )
    lines.append("")
    lines += _write_buffer_note(facts, supplements)
    if "adaptive" in charts:
        lines += [f"![adaptive against baseline]({charts['adaptive']})", ""]

    for workload in workloads:
        lines += workload_section(records, workload, facts.servers, charts)
        for supplement in supplements:
            lines += supplement_table(supplement, workload)

    lines += workers_section(facts, records, supplements)

    if supplements:
        lines += ["## Later runs", ""]
        lines.append(
            "Their rows are shown beside the main run's and never mixed into its "
            "medians or ratios:"
        )
        lines.append("")
        lines += _table(
            ["date (UTC)", "command", "commit", "cores", "load average (1/5/15 min)"],
            (
                [
                    s.facts.date,
                    f"`{s.facts.command}`",
                    s.facts.commit,
                    s.facts.machine.get("cores (nproc)", "?"),
                    _load_span(s.facts),
                ]
                for s in supplements
            ),
        )
        lines.append("")

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
        "hmacfs-2workers: supervisor plus workers, summed).",
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


def _run_from(saved: dict[str, Any]) -> tuple[RunFacts, list[Record]]:
    facts = dict(saved["facts"])
    facts["servers"] = tuple(facts["servers"])
    return RunFacts(**facts), [Record(**record) for record in saved["records"]]


def load(results: Path) -> tuple[RunFacts, list[Record], list[Supplement]]:
    """The facts, records and later runs of an earlier report's ``results.json``."""
    saved = json.loads(results.read_text())
    facts, records = _run_from(saved)
    supplements = []
    for later in saved.get("supplements", []):
        later_facts, later_records = _run_from(later)
        supplements.append(Supplement(later_facts, tuple(later_records)))
    return facts, records, supplements


def write(
    output: Path,
    facts: RunFacts,
    records: Sequence[Record],
    workloads: Sequence[Workload],
    supplements: Sequence[Supplement] = (),
) -> Path:
    """Write ``output/benchmarks.md``, ``output/benchmarks/*.png`` and the JSON."""
    assets = output / "benchmarks"
    assets.mkdir(parents=True, exist_ok=True)
    charts = draw_charts(records, workloads, facts.servers, assets, "benchmarks")
    results = assets / "results.json"
    saved: dict[str, Any] = {
        "facts": asdict(facts),
        "records": [asdict(r) for r in records],
    }
    if supplements:
        saved["supplements"] = [
            {"facts": asdict(s.facts), "records": [asdict(r) for r in s.records]}
            for s in supplements
        ]
    results.write_text(json.dumps(saved, indent=1) + "\n")
    charts["results"] = "benchmarks/results.json"
    page = output / "benchmarks.md"
    page.write_text(render(facts, records, workloads, charts, supplements))
    return page
