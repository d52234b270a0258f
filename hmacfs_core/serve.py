"""Run an app on its listening port until SIGTERM or SIGINT, then drain."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred
from twisted.internet.interfaces import IListeningPort
from twisted.internet.task import deferLater
from twisted.web.server import Site

from hmacfs_core.app import App
from hmacfs_core.config import (
    ConfigError,
    ConfigProblem,
    ListenAddress,
    load_config,
    resolve_secret,
)
from hmacfs_core.plugins import PluginError
from hmacfs_core.web.service import MetricsResource
from hmacfs_core.web.site import make_site

#: How often a draining server looks whether its transfers have ended.
DRAIN_POLL_SECONDS = 0.1


def prepare_store(app: App) -> None:
    """Create the store's layout and remove what dead transfers left behind."""
    removed = app.store.prepare()
    if removed:
        app.log.info("Removed {count} stale staged uploads", count=removed)


def bind_socket(address: ListenAddress) -> socket.socket:
    """A listening socket that several worker processes can accept on."""
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    sock = socket.create_server(
        (address.host, address.port), family=family, backlog=1024
    )
    sock.setblocking(False)
    return sock


def listen(app: App, inherited: socket.socket | None = None) -> IListeningPort:
    """Serve ``app`` on ``server.listen_address``, or on an inherited socket.

    A worker process gets its socket from the supervisor, which prepared the
    store and announced the address once for all of them.
    """
    site = make_site(app)
    if inherited is not None:
        return app.reactor.adoptStreamPort(inherited.fileno(), inherited.family, site)

    prepare_store(app)
    address = app.config.server.listen_address
    port = app.reactor.listenTCP(address.port, site, interface=address.host)
    announce(app, port.getHost().host, port.getHost().port)
    listen_for_metrics(app)
    return port


def listen_for_metrics(app: App) -> IListeningPort | None:
    """Serve ``/metrics`` on ``[metrics] listen_address``, when one is set.

    Only a single-process server does: with ``[server] workers`` each process
    has its own registry, and one port could show only one of them.
    """
    metrics = app.config.metrics
    if not metrics.enabled or metrics.listen_address is None:
        return None
    site = Site(MetricsResource(app))
    site.noisy = False
    address = metrics.listen_address
    port = app.reactor.listenTCP(address.port, site, interface=address.host)
    bound = port.getHost()
    app.log.info(
        "Metrics on http://{host}:{port}/metrics", host=bound.host, port=bound.port
    )
    return port


def announce(app: App, host: str, port: int) -> None:
    """Log the address tests, operators and scripts look for."""
    app.log.info(
        "Listening on http://{host}:{port}/ storing in {storage}",
        host=f"[{host}]" if ":" in host else host,
        port=port,
        storage=str(app.store.root.resolve()),
    )


def install_graceful_stop(app: App, port: IListeningPort) -> None:
    """On reactor shutdown, stop accepting and let transfers finish.

    Running transfers get ``server.shutdown_grace`` seconds; whatever is still
    running then is cut, and its staged file removed like any cut upload's.
    """

    def drain_now() -> Deferred[None]:
        return ensureDeferred(drain(app, port))

    app.reactor.addSystemEventTrigger("before", "shutdown", drain_now)


async def drain(app: App, port: IListeningPort) -> None:
    """Stop accepting, give transfers ``shutdown_grace``, then cut the rest."""
    # New requests on connections already open get 503 from now on.
    app.draining = True
    # IListeningPort allows a port that stops at once to return None.
    await maybeDeferred(port.stopListening)
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


def install_reload(app: App, config_path: Path | None) -> None:
    """Reload ``config_path`` on SIGHUP; keep the running config if it is bad."""

    def reload_now() -> None:
        if config_path is None:
            app.log.warn("SIGHUP: no configuration file to reload (built-in defaults)")
            return
        try:
            config = load_config(config_path)
            secret = resolve_secret(config, os.environ)
            if secret is None:
                raise ConfigError(
                    str(config_path),
                    (ConfigProblem("security.secret", "no secret configured"),),
                )
            app.reload(config, secret)
        except (ConfigError, PluginError) as error:
            app.log.error(
                "Reload refused, the running configuration stays: {error}",
                error=str(error),
                event="reload_refused",
            )
            return
        app.log.info(
            "Reloaded the configuration from {path}",
            path=str(config_path),
            event="reloaded",
        )

    def on_hangup(signum: int, frame: object) -> None:
        app.reactor.callFromThread(reload_now)

    signal.signal(signal.SIGHUP, on_hangup)
