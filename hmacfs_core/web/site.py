"""The ``Site`` that serves an app on its own listening port."""

from __future__ import annotations

from twisted.web.server import Site

from hmacfs_core.app import App
from hmacfs_core.config import Config
from hmacfs_core.web.request import StreamingRequest


class TransferSite(Site):
    """A ``Site`` with streaming requests and without Twisted's access log.

    Each transfer is logged once by its resource with the fields operators need
    (and with the query, which carries the MAC, stripped); Twisted's combined log
    line would repeat it with the full signed URL.
    """

    requestFactory = StreamingRequest
    noisy = False

    def log(self, request: object) -> None:
        pass


def make_site(app: App) -> TransferSite:
    """Build the site for ``app``; its idle timeout is ``server.idle_timeout``."""
    site = TransferSite(app.make_resource(), timeout=app.config.server.idle_timeout)
    site.app = app  # type: ignore[attr-defined]

    def take_idle_timeout(config: Config) -> None:
        site.timeOut = config.server.idle_timeout

    app.reload_listeners.append(take_idle_timeout)
    return site
