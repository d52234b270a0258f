"""The built-in ``network_policy`` strategy (placeholder until implemented)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hmacfs_core import hookimpl


class NetworkPolicy:
    """Placeholder."""

    @hookimpl
    def hmacfs_configure(self, app: Any, settings: Mapping[str, Any]) -> None:
        self.app = app
