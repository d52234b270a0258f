"""Run an app on its listening port until SIGTERM or SIGINT, then drain."""

from __future__ import annotations

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IListeningPort
from twisted.internet.task import deferLater

from hmacfs_core.app import App
from hmacfs_core.web.site import make_site

#: How often a draining server looks whether its transfers have ended.
DRAIN_POLL_SECONDS = 0.1


def listen(app: App) -> IListeningPort:
    """Prepare the store and start listening on ``server.listen_address``."""
    removed = app.store.prepare()
    if removed:
        app.log.info("Removed {count} stale staged uploads", count=removed)

    address = app.config.server.listen_address
    port = app.reactor.listenTCP(address.port, make_site(app), interface=address.host)
    bound = port.getHost()
    host = f"[{bound.host}]" if ":" in bound.host else bound.host
    app.log.info(
        "Listening on http://{host}:{port}/ storing in {storage}",
        host=host,
        port=bound.port,
        storage=str(app.store.root.resolve()),
    )
    return port


def install_graceful_stop(app: App, port: IListeningPort) -> None:
    """On reactor shutdown, stop accepting and let transfers finish.

    Running transfers get ``server.shutdown_grace`` seconds; whatever is still
    running then is cut, and its staged file removed like any cut upload's.
    """

    def drain() -> Deferred[None]:
        return ensureDeferred(_drain(app, port))

    app.reactor.addSystemEventTrigger("before", "shutdown", drain)


async def _drain(app: App, port: IListeningPort) -> None:
    await port.stopListening()
    grace = app.config.server.shutdown_grace
    deadline = app.reactor.seconds() + grace
    if app.active_transfers:
        app.log.info(
            "Stopping: waiting up to {grace}s for {count} transfers",
            grace=grace,
            count=len(app.active_transfers),
        )

    while app.active_transfers and app.reactor.seconds() < deadline:
        await deferLater(app.reactor, DRAIN_POLL_SECONDS, lambda: None)

    for request in list(app.active_transfers):
        request.channel.transport.abortConnection()
    if app.active_transfers:
        app.log.warn(
            "Stopped with {count} transfers cut after the grace period",
            count=len(app.active_transfers),
        )
        # Give the cut uploads a moment to remove their staged files.
        await deferLater(app.reactor, DRAIN_POLL_SECONDS, lambda: None)
