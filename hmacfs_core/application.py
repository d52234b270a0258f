"""hmacfs as a Twisted service, and as a resource for another site.

:func:`make_resource` is the public way to mount hmacfs in an existing Twisted
deployment; :class:`ServerService` is what ``twist hmacfs`` runs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import attrs
from attrs import define, field
from twisted.application.service import Service
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IListeningPort
from twisted.web.resource import IResource

from hmacfs_core.app import App
from hmacfs_core.config import (
    Config,
    ConfigError,
    ConfigProblem,
    ListenAddress,
    default_config,
    load_config,
    resolve_secret,
)


def make_resource(config: Config, secret: bytes, reactor: Any = None) -> IResource:
    """The hmacfs resource for ``config``, to mount under any path of a site.

    The store is prepared (stale staged files removed) before it is returned.
    Slot URLs are then relative to the mount point: mounted at ``/files/``, the
    upload path ``abc/photo.jpg`` is ``/files/abc/photo.jpg``, and that path
    (after ``server.base_path``) is what the MAC signs.

    For uploads to stream to disk and be refused before their body, the host
    ``Site`` must use :class:`hmacfs_core.web.StreamingRequest` as its
    ``requestFactory`` (it behaves like Twisted's ``Request`` for every other
    resource). Under Twisted's plain ``Request`` uploads still work, but each
    body is buffered by Twisted first, in memory or a temporary file.

    :param reactor: defaults to the global reactor.
    :raises PluginError: when an enabled plugin cannot be used.
    """
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    app = App(config=config, secret=secret, reactor=reactor)
    app.store.prepare()
    return app.make_resource()


@define
class ServerService(Service):
    """The whole server as a Twisted service: listen, reload, drain on stop."""

    app: App
    config_path: Path | None
    port: IListeningPort | None = field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        Service.__init__(self)

    def startService(self) -> None:
        from hmacfs_core.serve import install_reload, listen

        Service.startService(self)
        install_reload(self.app, self.config_path)
        self.port = listen(self.app)

    def stopService(self) -> Deferred[None] | None:
        from hmacfs_core.serve import drain

        Service.stopService(self)
        if self.port is None:
            return None
        return ensureDeferred(drain(self.app, self.port))


def service_from_options(config_path: str | None, listen: str | None) -> ServerService:
    """Build the service ``twist hmacfs`` runs from its options.

    :raises ConfigError: for a bad file, or no secret anywhere.
    """
    from twisted.internet import reactor

    path = Path(config_path) if config_path else None
    config = load_config(path) if path else default_config()
    if listen is not None:
        server = attrs.evolve(config.server, listen_address=ListenAddress.parse(listen))
        config = attrs.evolve(config, server=server)

    secret = resolve_secret(config, os.environ)
    if secret is None:
        raise ConfigError(
            str(path or "built-in defaults"),
            (
                ConfigProblem(
                    "security.secret",
                    "no secret: set security.secret, security.secret_file or "
                    "HMACFS_SECRET",
                ),
            ),
        )
    return ServerService(App(config=config, secret=secret, reactor=reactor), path)
