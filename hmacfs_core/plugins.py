"""Find, load and call the plugins, keeping each one's failures to itself.

Built-in and third-party plugins are found the same way, through the
``hmacfs.plugins`` entry-point group. An entry point names a class (instantiated
once per app, so plugins keep their state on themselves, not in modules) or any
object with hook implementations.

Hooks are resolved once, when the plugins are loaded, into plain lists of
callables: a transfer then pays for a loop over those lists, not for pluggy's
dispatch, and each call sits in its own ``try`` so one plugin that raises cannot
stop the others or the transfer.
"""

from __future__ import annotations

import difflib
import importlib.metadata
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs
import pluggy
from attrs import define, field, frozen

from hmacfs_core import hookspecs
from hmacfs_core.config import BUILTIN_PLUGINS, Config

HOOK_NAMES = (
    "hmacfs_configure",
    "hmacfs_classify_client",
    "hmacfs_detect_network",
    "hmacfs_plan_transfer",
    "hmacfs_transfer_progress",
    "hmacfs_transfer_finished",
    "hmacfs_choose_arm",
    "hmacfs_transfer_switched",
)

BUILTIN_DISTRIBUTION = "hmacfs"


class PluginError(Exception):
    """A plugin cannot be used: unknown, failing to import, or malformed."""

    def __init__(self, plugin: str, problem: str) -> None:
        super().__init__(f"plugin {plugin!r}: {problem}")
        self.plugin = plugin
        self.problem = problem


@frozen
class PluginInfo:
    """One plugin as found through its entry point (for ``hmacfs plugins``)."""

    name: str
    distribution: str
    version: str
    entry_point: importlib.metadata.EntryPoint

    @property
    def builtin(self) -> bool:
        return (
            self.distribution == BUILTIN_DISTRIBUTION and self.name in BUILTIN_PLUGINS
        )


def discover() -> dict[str, PluginInfo]:
    """Every plugin installed in this environment, by entry-point name."""
    found = {}
    for entry_point in importlib.metadata.entry_points(
        group=hookspecs.ENTRY_POINT_GROUP
    ):
        distribution = entry_point.dist
        found[entry_point.name] = PluginInfo(
            name=entry_point.name,
            distribution=distribution.name if distribution else "unknown",
            version=distribution.version if distribution else "unknown",
            entry_point=entry_point,
        )
    return found


def hooks_of(plugin: object) -> list[str]:
    """The hook names ``plugin`` implements (marked with ``hookimpl``)."""
    marker = f"{hookspecs.PROJECT_NAME}_impl"
    return sorted(
        name
        for name in dir(plugin)
        if name.startswith("hmacfs_") and hasattr(getattr(plugin, name, None), marker)
    )


@frozen
class _Implementation:
    plugin_name: str
    function: Callable[..., Any]
    argnames: tuple[str, ...]


@define
class PluginHooks:
    """The loaded plugins and, per hook, their implementations in call order.

    :ivar on_error: called with the plugin name, hook name and exception when an
        implementation raises; the app logs and counts it.
    """

    manager: pluggy.PluginManager
    on_error: Callable[[str, str, BaseException], None]
    order: tuple[str, ...] = ()
    _calls: dict[str, list[_Implementation]] = field(factory=dict)

    def resolve(self) -> None:
        """Snapshot each hook's implementations in their call order.

        ``tryfirst`` implementations run first and ``trylast`` ones last; within
        each group plugins run in ``order`` (the built-ins, then ``[plugins]
        enabled``). pluggy's own order depends on registration in a way that
        differs between the groups; one rule is easier to write plugins for.
        """
        self._calls = {}
        for hook_name in HOOK_NAMES:
            caller = getattr(self.manager.hook, hook_name)
            impls = sorted(caller.get_hookimpls(), key=self.call_position)
            self._calls[hook_name] = [
                _Implementation(impl.plugin_name, impl.function, tuple(impl.argnames))
                for impl in impls
            ]

    def call_position(self, impl: pluggy.HookImpl) -> tuple[int, int]:
        """Where ``impl`` comes in the call order of its hook."""
        group = 0 if impl.tryfirst else 2 if impl.trylast else 1
        rank = (
            self.order.index(impl.plugin_name) if impl.plugin_name in self.order else 0
        )
        return group, rank

    def has(self, hook_name: str) -> bool:
        return bool(self._calls.get(hook_name))

    def call_all(
        self,
        hook_name: str,
        after_each: Callable[[str, dict[str, Any], Any], None] | None = None,
        **arguments: Any,
    ) -> None:
        """Call every implementation; a raising one is reported and skipped.

        :param after_each: for debugging plans: called after each implementation
            with its plugin's name, the ``plan`` argument as it was before (as a
            dict) and the plan itself.
        """
        plan = arguments.get("plan")
        for impl in self._calls[hook_name]:
            before = attrs.asdict(plan) if after_each and plan is not None else {}
            kept = plan.copy() if plan is not None else None
            try:
                impl.function(**{name: arguments[name] for name in impl.argnames})
            except Exception as error:
                self.on_error(impl.plugin_name, hook_name, error)
                if kept is not None:
                    # As if the plugin had done nothing: undo its half-made plan.
                    _restore(plan, kept)
            if after_each is not None:
                after_each(impl.plugin_name, before, arguments["plan"])

    def call_first(self, hook_name: str, **arguments: Any) -> tuple[Any, str | None]:
        """The first non-None result, and the name of the plugin that gave it."""
        for impl in self._calls[hook_name]:
            try:
                result = impl.function(
                    **{name: arguments[name] for name in impl.argnames}
                )
            except Exception as error:
                self.on_error(impl.plugin_name, hook_name, error)
                continue
            if result is not None:
                return result, impl.plugin_name
        return None, None

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.manager.list_name_plugin()]


def load_plugins(
    config: Config,
    on_error: Callable[[str, str, BaseException], None],
    available: Mapping[str, PluginInfo] | None = None,
) -> PluginHooks:
    """Load the plugins ``[plugins]`` enables, checking each one fully.

    :raises PluginError: naming the plugin, for an unknown name, a plugin that
        fails to import or to instantiate, or a misspelt hook implementation.
    """
    available = discover() if available is None else available
    _check_names(config.plugins.enabled, config.plugins.disabled, available)

    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    for name in config.plugins.active:
        plugin = _instantiate(name, available[name])
        try:
            manager.register(plugin, name=name)
        except pluggy.PluginValidationError as error:
            raise PluginError(name, str(error)) from None
        _refuse_wrappers(manager, name)

    try:
        manager.check_pending()
    except pluggy.PluginValidationError as error:
        name = manager.get_name(error.plugin) or "?"
        raise PluginError(name, _pending_problem(error)) from None

    hooks = PluginHooks(manager=manager, on_error=on_error, order=config.plugins.active)
    hooks.resolve()
    return hooks


def configure_plugins(hooks: PluginHooks, app: object, config: Config) -> None:
    """Hand each plugin its ``[plugins.<name>]`` table.

    Unlike during a transfer, a plugin that raises here stops the start (or the
    reload): its settings are wrong and the operator must hear it now.

    :raises PluginError: naming the plugin and its complaint.
    """
    impls = hooks.manager.hook.hmacfs_configure.get_hookimpls()
    for impl in sorted(impls, key=hooks.call_position):
        settings = config.plugins.settings.get(impl.plugin_name, {})
        try:
            arguments = {"app": app, "settings": settings}
            impl.function(**{name: arguments[name] for name in impl.argnames})
        except Exception as error:
            raise PluginError(impl.plugin_name, f"bad settings: {error}") from None

    unused = set(config.plugins.settings) - set(hooks.names)
    if unused:
        name = sorted(unused)[0]
        raise PluginError(name, f"has a [plugins.{name}] table but is not enabled")

    configurable = {
        impl.plugin_name for impl in hooks.manager.hook.hmacfs_configure.get_hookimpls()
    }
    for name in sorted(set(config.plugins.settings) - configurable):
        raise PluginError(
            name, f"takes no settings, but a [plugins.{name}] table gives some"
        )


def _check_names(
    enabled: Iterable[str], disabled: Iterable[str], available: Mapping[str, PluginInfo]
) -> None:
    for name in [*enabled, *disabled]:
        if name in available:
            continue
        close = difflib.get_close_matches(name, list(available), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        installed = ", ".join(sorted(available)) or "none"
        raise PluginError(name, f"not installed{hint}; installed plugins: {installed}")


def _refuse_wrappers(manager: pluggy.PluginManager, name: str) -> None:
    """Hook wrappers would never run: hooks are called one by one, not by pluggy."""
    for caller in manager.get_hookcallers(manager.get_plugin(name)) or []:
        for impl in caller.get_hookimpls():
            if impl.plugin_name == name and (impl.wrapper or impl.hookwrapper):
                raise PluginError(
                    name,
                    f"{caller.name} is a hook wrapper; hmacfs calls each "
                    "implementation on its own, so wrappers are not supported",
                )


def _restore(plan: Any, kept: Any) -> None:
    for attribute in attrs.fields(type(plan)):
        setattr(plan, attribute.name, getattr(kept, attribute.name))


def _instantiate(name: str, info: PluginInfo) -> object:
    try:
        loaded = info.entry_point.load()
    except Exception as error:
        raise PluginError(
            name, f"cannot be imported ({type(error).__name__}: {error})"
        ) from None

    if not isinstance(loaded, type):
        return loaded
    try:
        return loaded()
    except Exception as error:
        raise PluginError(
            name, f"cannot be created ({type(error).__name__}: {error})"
        ) from None


def _pending_problem(error: pluggy.PluginValidationError) -> str:
    return f"implements unknown hooks ({error}); known hooks: {', '.join(HOOK_NAMES)}"
