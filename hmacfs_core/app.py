"""The application object: everything that lives as long as the server.

Config, secret, store, thread pool and the set of running transfers hang off one
``App``, never off module globals, so a test or a host site can run several
servers in one process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import attrs
from attrs import define, field
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.web.resource import IResource

from hmacfs_core.config import Config
from hmacfs_core.handoff import UploadHandoff
from hmacfs_core.metrics import Metrics
from hmacfs_core.peer import client_address, parse_networks
from hmacfs_core.pipeline import Pipeline
from hmacfs_core.plugins import PluginHooks, configure_plugins, load_plugins
from hmacfs_core.resumable import ResumableUploads
from hmacfs_core.storage import Store

T = TypeVar("T")


def _secret_bytes(secret: bytes | str) -> bytes:
    """A secret given as text is meant as its UTF-8 bytes, as in the config."""
    return secret.encode("utf-8") if isinstance(secret, str) else secret


@define
class App:
    """One hmacfs server: its configuration and its runtime state.

    :param config: the validated configuration.
    :param secret: the shared HMAC secret, as bytes.
    :param reactor: the reactor to schedule on and take worker threads from.
    """

    config: Config
    secret: bytes = field(repr=False, converter=_secret_bytes)
    reactor: Any
    log: Logger = field(factory=lambda: Logger(namespace="hmacfs"))
    store: Store = field(init=False)
    metrics: Metrics = field(factory=Metrics, init=False)
    plugins: PluginHooks = field(init=False)
    pipeline: Pipeline = field(init=False)
    active_transfers: set[Any] = field(factory=set, init=False)
    draining: bool = field(default=False, init=False)
    reload_listeners: list[Callable[[Config], None]] = field(factory=list, init=False)
    trusted_proxies: tuple[Any, ...] = field(default=(), init=False)
    tus: ResumableUploads = field(init=False)
    handoff: UploadHandoff = field(init=False)

    def __attrs_post_init__(self) -> None:
        """Load and configure the plugins; a bad one stops the start here.

        :raises PluginError: naming the plugin that cannot be used.
        """
        self.store = Store(self.config.server.storage_path)
        self.tus = ResumableUploads(self)
        self.handoff = UploadHandoff(self)
        self.tus.cut_policy = self.handoff.cut_policy
        self.trusted_proxies = parse_networks(self.config.server.trusted_proxies)
        self.plugins = load_plugins(self.config, on_error=self._plugin_failed)
        configure_plugins(self.plugins, self, self.config)
        self.pipeline = Pipeline(
            self.config,
            self.plugins,
            self.reactor,
            self.metrics,
            client_address=self.client_address,
        )

    def reload(self, config: Config, secret: bytes) -> None:
        """Take a new configuration without dropping a running transfer.

        Running transfers finish with the plan they have; new ones get the new
        settings. What is bound at start (listen address, storage path, workers,
        the set of loaded plugins) keeps its running value: changing it needs a
        restart, and the log says so.

        :raises PluginError: when a plugin refuses its new settings; the
            running configuration then stays in force, unchanged.
        """
        config = self._keep_start_bound(config)
        try:
            configure_plugins(self.plugins, self, config)
        except Exception:
            configure_plugins(self.plugins, self, self.config)
            raise

        self.config = config
        self.secret = secret
        self.trusted_proxies = parse_networks(config.server.trusted_proxies)
        self.pipeline.config = config
        for listener in self.reload_listeners:
            listener(config)

    def _keep_start_bound(self, config: Config) -> Config:
        running = self.config
        kept = attrs.evolve(
            config.server,
            listen_address=running.server.listen_address,
            storage_path=running.server.storage_path,
            workers=running.server.workers,
        )
        metrics = attrs.evolve(
            config.metrics, listen_address=running.metrics.listen_address
        )
        logging = attrs.evolve(
            config.logging,
            level=running.logging.level,
            format=running.logging.format,
        )
        if (kept, metrics, logging) != (config.server, config.metrics, config.logging):
            self.log.warn(
                "Reload: listen addresses, storage_path, workers and the log level "
                "and format need a restart; keeping the running ones"
            )
        plugins = config.plugins
        if plugins.active != self.config.plugins.active:
            self.log.warn(
                "Reload: enabling or disabling plugins needs a restart; keeping "
                "{plugins}",
                plugins=", ".join(self.config.plugins.active),
            )
            plugins = attrs.evolve(
                plugins,
                enabled=self.config.plugins.enabled,
                disabled=self.config.plugins.disabled,
            )
        return attrs.evolve(
            config, server=kept, metrics=metrics, logging=logging, plugins=plugins
        )

    def _plugin_failed(self, plugin: str, hook: str, error: BaseException) -> None:
        """A hook raised mid-transfer: log and count it; the transfer goes on."""
        self.metrics.plugin_errors.labels(plugin=plugin, hook=hook).inc()
        self.log.error(
            "Plugin {plugin} failed in {hook}: {error}",
            plugin=plugin,
            hook=hook,
            error=repr(error),
        )

    def client_address(self, request: Any) -> str:
        """The client's address, through the proxies the operator trusts."""
        return client_address(request, self.trusted_proxies)

    def run_in_thread(self, action: Callable[..., T], *args: Any) -> Deferred[T]:
        """Run blocking file work in the reactor's thread pool."""
        return deferToThreadPool(
            self.reactor, self.reactor.getThreadPool(), action, *args
        )

    def make_resource(self) -> IResource:
        """The server's resource tree, to serve alone or mount in another site.

        Uploads stream only when the host ``Site`` uses
        :class:`hmacfs_core.web.StreamingRequest` as its ``requestFactory``;
        under Twisted's plain ``Request`` they still work, but Twisted buffers
        each body (in a temp file) before hmacfs sees it.

        Serving starts the resumable uploads' upkeep: what a dead process left
        is cut back to its last checkpoint, and expired uploads are swept.
        """
        from hmacfs_core.web.slots import SlotResource

        self.tus.start()
        return SlotResource(self)
