"""A full disk answers 507, keeps nothing, and recovers once space is back."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from serverproc import start_server, stop_quietly


@pytest.fixture
def small_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs, so the store really runs out of space."""
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def test_an_upload_that_fills_the_disk_gets_507_and_leaves_nothing(
    small_filesystem: Path,
) -> None:
    server = start_server(small_filesystem)
    try:
        too_big = server.put("a/huge.bin", os.urandom(4 * 1024 * 1024))
        fits = server.put("a/small.bin", b"still works")

        assert too_big.status == 507
        assert too_big.header("retry-after") is not None
        assert server.get("a/huge.bin").status == 404
        assert fits.status == 201
        assert server.staged_files() == []
    finally:
        stop_quietly(server)
