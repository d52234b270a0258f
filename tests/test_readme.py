"""The README's two set-up commands stay true: CI runs the test one verbatim."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _commands(text: str) -> list[str]:
    return re.findall(r"^python3 -m venv \.venv && .*$", text, flags=re.MULTILINE)


def test_the_readme_has_exactly_two_set_up_commands() -> None:
    commands = _commands((ROOT / "README.md").read_text())

    assert len(commands) == 2
    assert commands[0].endswith(".venv/bin/hmacfs serve")
    assert commands[1].endswith(".venv/bin/pytest")


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    readme_test = _commands((ROOT / "README.md").read_text())[1]

    assert readme_test in (ROOT / ".ci" / "run").read_text().splitlines()
