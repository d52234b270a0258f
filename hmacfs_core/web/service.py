"""The service routes: ``/health``, ``/metrics`` and the admin reset.

``/metrics`` renders the app's own registry synchronously: a scrape costs about
half a millisecond, less than handing it to a thread would.
"""

from __future__ import annotations

import hmac
import json
import os
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from twisted.web.resource import Resource
from twisted.web.server import Request

from hmacfs_core import __version__
from hmacfs_core.app import App

ROLLBACK_MONITOR = "rollback_monitor"


def render_health(app: App, request: Request) -> bytes:
    """Whether the server takes transfers, and the state a rollout needs.

    200 while serving, 503 while stopping, so a load balancer drains it too.
    """
    performance = app.config.performance
    document = {
        "status": "draining" if app.draining else "ok",
        "version": __version__,
        "arms": {
            "adaptive_buffers": performance.adaptive_buffers,
            "adaptive_uploads": performance.adaptive_uploads,
            "adaptive_downloads": performance.adaptive_downloads,
            "fully_adaptive": performance.fully_adaptive,
            "testing_mode": performance.testing_mode,
            "rollout_percent": performance.rollout_percent,
        },
        "rollback": _rollback_state(app),
        "storage": _storage_space(app),
        "active_transfers": len(app.active_transfers),
    }
    request.setResponseCode(503 if app.draining else 200)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(document).encode("utf-8")


def render_metrics(app: App, request: Request) -> bytes:
    """The Prometheus text format of every metric of this app."""
    request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode("ascii"))
    return generate_latest(app.metrics.registry)


def render_rollback_reset(app: App, request: Request) -> bytes:
    """End a rollback now and forget the outcomes, for an authenticated admin.

    Authorized by ``Authorization: Bearer <security.admin_token>``; without a
    configured token the route does not exist (404).
    """
    token = app.config.security.admin_token
    if token is None:
        return plain_text(request, 404, "not found")
    if not _bearer_matches(request, token):
        request.setHeader(b"www-authenticate", b'Bearer realm="hmacfs admin"')
        return plain_text(request, 401, "admin token required")

    monitor = app.plugins.manager.get_plugin(ROLLBACK_MONITOR)
    if monitor is None or not hasattr(monitor, "reset"):
        return plain_text(request, 409, "no rollback monitor is running")
    monitor.reset()
    app.log.warn("Rollback reset by an admin request", event="adaptive_rollback_reset")
    return plain_text(request, 200, "rollback reset")


class MetricsResource(Resource):
    """``/metrics`` alone, for ``[metrics] listen_address``."""

    isLeaf = True

    def __init__(self, app: App) -> None:
        super().__init__()
        self.app = app

    def render_GET(self, request: Request) -> bytes:
        return render_metrics(self.app, request)


def _rollback_state(app: App) -> dict[str, Any] | None:
    monitor = app.plugins.manager.get_plugin(ROLLBACK_MONITOR)
    state = getattr(monitor, "state", None)
    if state is None:
        return None
    return {
        "tripped": state.tripped,
        "until": state.until,
        "error_rates": dict(state.rates),
        "samples": dict(state.counts),
    }


def _storage_space(app: App) -> dict[str, int] | None:
    try:
        stats = os.statvfs(app.store.root)
    except OSError:
        return None
    return {
        "free_bytes": stats.f_bavail * stats.f_frsize,
        "total_bytes": stats.f_blocks * stats.f_frsize,
    }


def _bearer_matches(request: Request, token: str) -> bool:
    header = request.getHeader(b"authorization") or b""
    scheme, _, given = header.partition(b" ")
    if scheme.lower() != b"bearer":
        return False
    return hmac.compare_digest(given.strip(), token.encode("utf-8"))


def plain_text(request: Request, code: int, text: str) -> bytes:
    """Set ``code`` and return ``text`` as a short plain-text body."""
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    return text.encode("utf-8") + b"\n"
