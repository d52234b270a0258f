"""The benchmark suite still runs end to end, in its seconds-long ``--quick`` form.

Only the hmacfs servers take part, so the test needs no peer installed, and
nothing is asserted about speed: the point is that ``python -m bench`` cannot
rot between the runs that regenerate ``docs/benchmarks.md``.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
SERVERS = ("hmacfs-baseline", "hmacfs-adaptive")
WORKLOADS = ("large", "photos", "memory", "slow", "classes")


def test_quick_run_writes_the_report_with_every_table(tmp_path: Path) -> None:
    output = tmp_path / "docs"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--servers",
            ",".join(SERVERS),
            "--output",
            str(output),
        ],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]

    page = (output / "benchmarks.md").read_text()
    for heading in (
        "## The machine and the run",
        "## Targets of issue 4",
        "## 1. One large PUT, then one large GET",
        "## 2. Photos: many small PUTs at once",
        "## 3. Memory: many large uploads at once",
        "## 4. Slow and mobile clients among fast ones",
        "## 5. Adaptive against baseline, by client class",
        "## Several workers",
    ):
        assert heading in page, heading
    assert "| server | PUT MiB/s | GET MiB/s |" in page
    assert "| server | uploads/s |" in page
    assert "This is a `--quick` run" in page
    for server in SERVERS:
        assert f"| {server} |" in page

    results = json.loads((output / "benchmarks" / "results.json").read_text())
    measured = {(r["workload"], r["server"]) for r in results["records"]}
    assert measured == {(w, s) for w in WORKLOADS for s in SERVERS}
    failed = [r for r in results["records"] if r["error"]]
    assert not failed, failed

    if importlib.util.find_spec("matplotlib") is not None:
        for chart in ("large", "photos", "memory", "slow", "classes", "adaptive"):
            assert (output / "benchmarks" / f"{chart}.png").stat().st_size > 0
