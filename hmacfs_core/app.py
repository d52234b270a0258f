"""The application object: everything that lives as long as the server.

Config, secret, store, thread pool and the set of running transfers hang off one
``App``, never off module globals, so a test or a host site can run several
servers in one process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from attrs import define, field
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.web.resource import IResource

from hmacfs_core.config import Config
from hmacfs_core.metrics import Metrics
from hmacfs_core.pipeline import Pipeline
from hmacfs_core.plugins import PluginHooks, configure_plugins, load_plugins
from hmacfs_core.storage import Store

T = TypeVar("T")


@define
class App:
    """One hmacfs server: its configuration and its runtime state.

    :param config: the validated configuration.
    :param secret: the shared HMAC secret, as bytes.
    :param reactor: the reactor to schedule on and take worker threads from.
    """

    config: Config
    secret: bytes = field(repr=False)
    reactor: Any
    log: Logger = field(factory=lambda: Logger(namespace="hmacfs"))
    store: Store = field(init=False)
    metrics: Metrics = field(factory=Metrics, init=False)
    plugins: PluginHooks = field(init=False)
    pipeline: Pipeline = field(init=False)
    active_transfers: set[Any] = field(factory=set, init=False)
    draining: bool = field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        """Load and configure the plugins; a bad one stops the start here.

        :raises PluginError: naming the plugin that cannot be used.
        """
        self.store = Store(self.config.server.storage_path)
        self.plugins = load_plugins(self.config, on_error=self._plugin_failed)
        configure_plugins(self.plugins, self, self.config)
        self.pipeline = Pipeline(self.config, self.plugins, self.reactor, self.metrics)

    def _plugin_failed(self, plugin: str, hook: str, error: BaseException) -> None:
        """A hook raised mid-transfer: log and count it; the transfer goes on."""
        self.metrics.plugin_errors.labels(plugin=plugin, hook=hook).inc()
        self.log.error(
            "Plugin {plugin} failed in {hook}: {error}",
            plugin=plugin,
            hook=hook,
            error=repr(error),
        )

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
        """
        from hmacfs_core.web.slots import SlotResource

        return SlotResource(self)
