"""The configuration reference documents every key, with the code's defaults."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_configuration_md_documents_every_key_with_its_real_default() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tests" / "tools" / "check_config_doc.py"),
            str(ROOT / "docs" / "configuration.md"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stdout + result.stderr
