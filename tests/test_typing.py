"""hmacfs_core stays clean under mypy with the zope plugin (pyproject's config)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_mypy_finds_no_error_in_hmacfs_core() -> None:
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "hmacfs_core"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )

    assert checked.returncode == 0, checked.stdout + checked.stderr
