"""``python -m bench``: run the benchmark suite and write ``docs/benchmarks.md``.

See ``bench/README.md`` for what is measured and how to read it.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.report import Record, RunFacts, Supplement, load, write
from bench.servers import (
    DEFAULT_SERVERS,
    SERVER_NAMES,
    Hmacfs,
    Server,
    ServerMissing,
    make_server,
)
from bench.workloads import FULL, QUICK, WORKLOADS, TransferFailed, Workload

REPOSITORY = Path(__file__).resolve().parent.parent


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark hmacfs against nginx and Prosody on loopback.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="scale every workload down to seconds (CI's smoke test)",
    )
    parser.add_argument(
        "--servers",
        default=",".join(DEFAULT_SERVERS),
        help=f"comma-separated, from {', '.join(SERVER_NAMES)} "
        f"(default: {', '.join(DEFAULT_SERVERS)})",
    )
    parser.add_argument(
        "--workloads",
        default=",".join(w.key for w in WORKLOADS),
        help="comma-separated workload keys (default: all)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="rounds of every workload (default: 3, fewer for the heavy ones; "
        "1 with --quick)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=REPOSITORY / "docs",
        help="directory for benchmarks.md and benchmarks/ (default: docs/)",
    )
    parser.add_argument(
        "--storage-dir",
        type=Path,
        default=None,
        help="where servers keep uploads (default: /dev/shm, a tmpfs, so the "
        "servers are measured rather than this machine's disk)",
    )
    parser.add_argument(
        "--prosody-as-shipped",
        action="store_true",
        help="run Prosody with its default event-loop floor of 1 ms (see "
        "bench/README.md): large uploads to it then take minutes",
    )
    parser.add_argument(
        "--from-results",
        type=Path,
        default=None,
        metavar="RESULTS_JSON",
        help="measure nothing: write the report again from an earlier run's "
        "results.json (after a change to the report's form)",
    )
    parser.add_argument(
        "--add-results",
        type=Path,
        action="append",
        default=[],
        metavar="RESULTS_JSON",
        help="with --from-results: show this later run's rows beside the main "
        "run's, labelled with its date (repeatable); ratios stay within a run",
    )
    parser.add_argument(
        "--profile",
        default="",
        help="comma-separated workload keys to profile hmacfs on with py-spy, "
        "in an extra unmeasured run after the rounds",
    )
    return parser.parse_args(argv)


def _say(text: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f"[{stamp}] {text}", file=sys.stderr, flush=True)


def _choose(text: str, known: Sequence[str], what: str) -> list[str]:
    chosen = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in known]
    if unknown or not chosen:
        raise SystemExit(
            f"unknown {what}: {', '.join(unknown) or '(none)'}; "
            f"choose from {', '.join(known)}"
        )
    return chosen


def _storage_root(choice: Path | None) -> tuple[Path, str]:
    base = choice
    if base is None:
        shm = Path("/dev/shm")
        base = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    root = Path(tempfile.mkdtemp(prefix="hmacfs-bench-", dir=base))
    kind = subprocess.run(
        ["stat", "-f", "-c", "%T", str(root)], capture_output=True, text=True
    ).stdout.strip()
    note = "tmpfs (memory): servers, not this VM's disk" if kind == "tmpfs" else kind
    return root, f"`{root.parent}` ({note})"


def _load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _machine(load_at_start: str) -> dict[str, str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory = Path("/proc/meminfo").read_text().split()[1]
    return {
        "cores (nproc)": str(os.cpu_count()),
        "CPU": cpu,
        "memory": f"{int(memory) / 1024**2:.1f} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
        # Other work on this shared machine takes CPU from the servers too.
        "load average at the start": load_at_start,
        "load average at the end": _load_average(),
    }


def _versions(servers: Sequence[Server]) -> dict[str, str]:
    import twisted

    found = {"Twisted": twisted.__version__}
    for server in servers:
        name = "hmacfs" if isinstance(server, Hmacfs) else server.name
        found[name] = server.version()
    return found


def _commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(REPOSITORY), *args],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "hmacfs_core")
    return commit + (" (hmacfs_core modified)" if dirty else "")


def _rotated(servers: Sequence[Server], by: int) -> list[Server]:
    by %= len(servers)
    return [*servers[by:], *servers[:by]]


def _measure(
    workload: Workload, server: Server, round_index: int, fresh: bool
) -> Record:
    # A fresh process for every measurement: what one workload leaves behind
    # (memory Python keeps, connections Prosody has not let go of) must not
    # weigh on the next one. A quick run skips it to stay quick.
    if fresh:
        server.stop()
        server.start()
    started = time.perf_counter()
    try:
        values = workload.run(server, round_index)
        error = ""
    except TransferFailed as failure:
        values, error = {}, str(failure)
    except Exception as failure:
        # One broken measurement must not lose the rest of a long run.
        values, error = {}, f"{type(failure).__name__}: {failure}"
    finally:
        server.clear_files()
    seconds = time.perf_counter() - started
    headline = next(m for m in workload.metrics if m.headline)
    shown = f"{values[headline.key]:.1f} {headline.label}" if values else error
    _say(f"  {workload.key:8} {server.name:16} {shown} ({seconds:.1f} s)")
    return Record(workload.key, server.name, round_index, seconds, values, error)


def _profile(
    workload: Workload, server: Hmacfs, output: Path
) -> tuple[str, str] | None:
    beside = Path(sys.executable).parent / "py-spy"
    spy = str(beside) if beside.exists() else shutil.which("py-spy")
    if spy is None:
        _say("  py-spy is not installed (pip install py-spy): no profile")
        return None
    name = f"profile-{workload.key}-{server.name}.svg"
    target = output / "benchmarks" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    recorder = subprocess.Popen(
        [
            spy,
            "record",
            "--pid",
            str(server.pids()[0]),
            "--rate",
            "200",
            "--nonblocking",
            "--output",
            str(target),
            # The supervisor of several workers only waits: profile its workers.
            *(["--subprocesses"] if server.workers > 1 else []),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    try:
        workload.run(server, 1000)
    except TransferFailed as failure:
        _say(f"  profiled run failed: {failure}")
    finally:
        server.clear_files()
        recorder.send_signal(signal.SIGINT)
        recorder.wait(60)
    return f"{workload.key} on {server.name}", f"benchmarks/{name}"


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _arguments(argv)
    if arguments.add_results and arguments.from_results is None:
        raise SystemExit("--add-results needs --from-results")
    if arguments.from_results is not None:
        facts, records, supplements = load(arguments.from_results)
        for later in arguments.add_results:
            later_facts, later_records, theirs = load(later)
            supplements += [*theirs, Supplement(later_facts, tuple(later_records))]
        scale = QUICK if facts.quick else FULL
        keys = {record.workload for record in records}
        workloads = [w(scale) for w in WORKLOADS if w.key in keys]
        page = write(arguments.output, facts, records, workloads, supplements)
        _say(f"wrote {page} from {arguments.from_results}")
        return 0

    scale = QUICK if arguments.quick else FULL
    names = _choose(arguments.servers, SERVER_NAMES, "server")
    keys = _choose(arguments.workloads, [w.key for w in WORKLOADS], "workload")
    workloads = [w(scale) for w in WORKLOADS if w.key in keys]
    profiled = _choose(arguments.profile, keys, "workload") if arguments.profile else []
    rounds = {
        w.key: arguments.rounds or (1 if arguments.quick else w.rounds)
        for w in workloads
    }

    # A plain `kill` stops the run cleanly too: the servers are stopped and
    # the storage directory removed on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.perf_counter()
    load_at_start = _load_average()
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M")
    storage, storage_note = _storage_root(arguments.storage_dir)
    servers = [
        make_server(name, storage, arguments.prosody_as_shipped) for name in names
    ]
    records: list[Record] = []
    profiles: dict[str, str] = {}
    running: list[Server] = []
    try:
        for server in servers:
            _say(f"starting {server.name}")
            server.start()
            running.append(server)
        versions = _versions(servers)

        for round_index in range(max(rounds.values())):
            _say(f"round {round_index + 1} of {max(rounds.values())}")
            for workload in workloads:
                if round_index >= rounds[workload.key]:
                    continue
                taking_part = [
                    s
                    for s in servers
                    if workload.only is None or s.name in workload.only
                ]
                for server in _rotated(taking_part, round_index):
                    records.append(
                        _measure(workload, server, round_index, not arguments.quick)
                    )

        for workload in workloads:
            if workload.key not in profiled:
                continue
            for server in servers:
                if isinstance(server, Hmacfs):
                    _say(f"profiling {workload.key} on {server.name}")
                    found = _profile(workload, server, arguments.output)
                    if found:
                        profiles[found[0]] = found[1]
    except ServerMissing as missing:
        raise SystemExit(f"python -m bench: {missing}") from None
    finally:
        for server in running:
            server.stop()
        shutil.rmtree(storage, ignore_errors=True)

    command = "python -m bench " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    facts = RunFacts(
        date=date,
        command=command.strip(),
        commit=_commit(),
        quick=arguments.quick,
        machine=_machine(load_at_start),
        versions=versions,
        storage=storage_note,
        servers=tuple(names),
        rounds=rounds,
        duration_s=time.perf_counter() - started,
        profiles=profiles,
    )
    page = write(arguments.output, facts, records, workloads)
    _say(f"wrote {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
