"""The Grafana dashboard in contrib/ asks only for what a real server exposes.

A dashboard rots silently: rename a family or a label and its panel shows "No
data" rather than an error. So every query of the JSON is checked against the
``/metrics`` of a running server that has seen both arms, errors, refusals and
a failing plugin, with names as Prometheus exposes them (``_total``,
``_bucket``, ``_count``, ``_sum``).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from attrs import frozen
from pluginkit import install_plugin
from prometheus_client.parser import text_string_to_metric_families
from serverproc import RunningServer, put_head, start_server, stop_quietly

DASHBOARD = (
    Path(__file__).parent.parent / "contrib" / "grafana" / "hmacfs-dashboard.json"
)

METRIC = re.compile(r"\bhmacfs_[a-z0-9_]+\b")
SELECTOR = re.compile(r"\b(hmacfs_[a-z0-9_]+)\s*\{([^}]*)\}")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
VARIABLE = re.compile(r"\$(\w+)")

#: Labels Prometheus adds when it scrapes; the server never writes them.
SCRAPE_LABELS = frozenset({"instance", "job"})
#: Variables Grafana defines itself.
GRAFANA_VARIABLES = frozenset({"__rate_interval", "__interval", "__range"})

FAULTY_PLUGIN = """
    from hmacfs_core import hookimpl

    class Plugin:
        @hookimpl
        def hmacfs_transfer_finished(self, transfer, outcome):
            raise RuntimeError("counted as a plugin error, then skipped")
"""

SETTINGS = """
[performance]
adaptive_buffers = true
rollout_percent = 50
[plugins]
enabled = ["faulty"]
"""


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def _queries(node: object) -> Iterator[str]:
    """Every PromQL expression: panel targets, annotations, variables."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str):
                yield value
            else:
                yield from _queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from _queries(item)


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def _cut_upload(server: RunningServer, path: str) -> None:
    """Send half of a signed body and hang up, as a phone that lost its link."""
    size = 300_000
    sock = server.connect()
    sock.sendall(put_head(server.signed(path, size), size) + bytes(size // 2))
    time.sleep(0.1)
    sock.close()
    server.wait_for_log(rf"PUT /{re.escape(path)} aborted")


@frozen
class Scrape:
    """What one scrape of ``/metrics`` holds.

    :ivar labels: each sample name and the label names it carries.
    :ivar families: each family and the names of its samples.
    """

    labels: dict[str, set[str]]
    families: dict[str, set[str]]


@pytest.fixture(scope="module")
def exposed(tmp_path_factory: pytest.TempPathFactory) -> Scrape:
    """One scrape of a server that has seen both arms, errors and refusals."""
    workdir = tmp_path_factory.mktemp("dashboard")
    env = install_plugin(workdir / "site", "faulty", FAULTY_PLUGIN)
    server = start_server(workdir / "server", SETTINGS, env=env)
    try:
        for n in range(16):
            path = f"g{n}/photo.jpg"
            server.put(path, os.urandom(300_000), content_type="image/jpeg")
            for route in ("/", "/download/", "/download/adaptive/"):
                server.request("GET", route + path)
        server.request("PUT", "/g/refused.jpg?v=00", b"no valid signature")
        _cut_upload(server, "g/cut.bin")
        text = server.request("GET", "/metrics").body.decode("utf-8")
    finally:
        stop_quietly(server)

    scrape = Scrape({}, {})
    for family in text_string_to_metric_families(text):
        names = scrape.families.setdefault(family.name, set())
        for sample in family.samples:
            names.add(sample.name)
            scrape.labels.setdefault(sample.name, set()).update(sample.labels)
    return scrape


def test_the_dashboard_is_a_grafana_export_with_a_prometheus_input() -> None:
    dashboard = _dashboard()
    sources = [
        node["datasource"]
        for node in (*_panels(dashboard), *dashboard["annotations"]["list"])
        if "datasource" in node
    ]

    assert dashboard["schemaVersion"] >= 39
    assert [item["name"] for item in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    assert all(
        source == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
        or source["type"] == "grafana"
        for source in sources
    )


def test_panels_have_unique_ids_and_do_not_overlap() -> None:
    panels = _panels(_dashboard())
    cells: dict[tuple[int, int], str] = {}

    assert len({panel["id"] for panel in panels}) == len(panels)
    for panel in panels:
        box = panel["gridPos"]
        assert box["x"] + box["w"] <= 24, panel["title"]
        for x in range(box["x"], box["x"] + box["w"]):
            for y in range(box["y"], box["y"] + box["h"]):
                assert (x, y) not in cells, (panel["title"], cells.get((x, y)))
                cells[(x, y)] = panel["title"]


def test_every_query_is_balanced_and_uses_only_known_variables() -> None:
    dashboard = _dashboard()
    defined = {variable["name"] for variable in dashboard["templating"]["list"]}

    for query in _queries(dashboard):
        for opening, closing in ("()", "{}", "[]"):
            assert query.count(opening) == query.count(closing), query
        assert set(VARIABLE.findall(query)) <= defined | GRAFANA_VARIABLES, query


def test_every_metric_the_dashboard_queries_is_exposed(
    exposed: Scrape,
) -> None:
    queried = {
        name for query in _queries(_dashboard()) for name in METRIC.findall(query)
    }

    assert queried - set(exposed.labels) == set()


def test_every_label_the_dashboard_selects_or_groups_by_is_exposed(
    exposed: Scrape,
) -> None:
    for query in _queries(_dashboard()):
        for name, matchers in SELECTOR.findall(query):
            selected = set(MATCHER.findall(matchers)) - SCRAPE_LABELS
            assert selected <= exposed.labels.get(name, set()), (name, query)

        grouped = {
            label.strip()
            for clause in GROUPING.findall(query)
            for label in clause.split(",")
            if label.strip()
        } - SCRAPE_LABELS
        available = set().union(
            *(exposed.labels.get(name, set()) for name in METRIC.findall(query))
        )
        assert grouped <= available, query


def test_every_family_of_the_server_has_a_panel(exposed: Scrape) -> None:
    queried = {
        name for query in _queries(_dashboard()) for name in METRIC.findall(query)
    }

    unshown = {
        family
        for family, samples in exposed.families.items()
        # The text format gives each ``_created`` time a gauge family of its own.
        if family.startswith("hmacfs_") and not family.endswith("_created")
        if not samples & queried
    }
    assert unshown == set()
