"""The Prometheus collectors, in one registry owned by the app."""

from __future__ import annotations

from attrs import define, field
from prometheus_client import CollectorRegistry, Counter


@define
class Metrics:
    """Every metric of one app; a registry per app keeps test servers apart."""

    registry: CollectorRegistry = field(factory=CollectorRegistry)
    plugin_errors: Counter = field(init=False)

    def __attrs_post_init__(self) -> None:
        self.plugin_errors = Counter(
            "hmacfs_plugin_errors",
            "Plugin hook calls that raised and were skipped.",
            ["plugin", "hook"],
            registry=self.registry,
        )
