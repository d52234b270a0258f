"""Fixtures: a real hmacfs server per test module, and a factory for custom ones."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from serverproc import RunningServer, start_server, stop_quietly


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server with the default settings, shared by the tests of one module."""
    running = start_server(tmp_path_factory.mktemp("server"))
    yield running
    stop_quietly(running)


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., RunningServer]]:
    """Start servers with their own settings; all are stopped after the test."""
    started: list[RunningServer] = []

    def make(settings: str = "", **options: object) -> RunningServer:
        running = start_server(tmp_path / f"server{len(started)}", settings, **options)
        started.append(running)
        return running

    yield make
    for running in started:
        stop_quietly(running)
