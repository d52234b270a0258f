"""The built-in ``client_classification`` strategy (placeholder until implemented)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hmacfs_core import hookimpl


class ClientClassification:
    """Placeholder."""

    @hookimpl
    def hmacfs_configure(self, app: Any, settings: Mapping[str, Any]) -> None:
        self.app = app
