"""The plugin contract: every hook a plugin may implement, and when it runs.

pluggy project name ``hmacfs``; plugins are found through the entry-point group
``hmacfs.plugins``. Hooks are called with keyword arguments, so an
implementation may accept only the arguments it needs.

A hook that raises never breaks a transfer: the core logs the error with the
plugin's name, counts it in ``hmacfs_plugin_errors_total`` and goes on as if that
plugin had returned nothing. Removing or changing a hook is a breaking change
and goes in the changelog; new hooks may be added.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pluggy

from hmacfs_core.transfer import (
    Arm,
    NetworkSwitch,
    Outcome,
    ProgressSample,
    Transfer,
    TransferPlan,
)

if TYPE_CHECKING:
    from hmacfs_core.app import App

PROJECT_NAME = "hmacfs"
ENTRY_POINT_GROUP = "hmacfs.plugins"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def hmacfs_configure(app: App, settings: Mapping[str, Any]) -> None:
    """Set the plugin up; called at start and again on every config reload.

    :param app: the application (its ``config`` is the whole parsed file).
    :param settings: this plugin's own ``[plugins.<name>]`` table, as parsed
        TOML (an empty mapping when absent). Raise ``ValueError`` with a short
        message for a bad setting: the server refuses to start and names the
        plugin.
    """


@hookspec(firstresult=True)
def hmacfs_classify_client(transfer: Transfer) -> str | None:
    """Say what kind of client this is: ``"mobile"``, ``"desktop"`` or ``"server"``.

    Called once per adaptive transfer, when its headers are in (only with
    ``[performance] client_profiling``). The first non-None answer wins and
    becomes ``transfer.client_class``.
    """


@hookspec(firstresult=True)
def hmacfs_detect_network(transfer: Transfer) -> str | None:
    """Say what network the client is on: ``ethernet``, ``wifi``, ``lte``,
    ``cellular`` or ``vpn``.

    Called once per adaptive transfer, after classification (only with
    ``[performance] connection_type_detection``). The first non-None answer wins
    and becomes ``transfer.network``.
    """


@hookspec
def hmacfs_plan_transfer(transfer: Transfer, plan: TransferPlan) -> None:
    """Adjust ``plan`` in place for this transfer.

    Called once per adaptive transfer, after classification and detection, for
    every plugin in order (``tryfirst`` ones first, ``trylast`` ones last). The
    core clamps the result to the configured bounds and applies it to the
    socket, the staged file's writer and the download producer.
    """


@hookspec
def hmacfs_transfer_progress(transfer: Transfer, sample: ProgressSample) -> None:
    """Hear a throughput sample of a running adaptive transfer.

    Called at most once per ``[performance] buffer_optimization_interval``,
    never per chunk. A plugin may change ``transfer.plan``; the core clamps and
    re-applies it for the rest of the transfer.
    """


@hookspec
def hmacfs_transfer_finished(transfer: Transfer, outcome: Outcome) -> None:
    """Hear how a transfer ended, successful or not, on either arm.

    Called exactly once per transfer that got past authorization, for baseline
    and adaptive transfers alike: rollback monitors compare the two.
    """


@hookspec(firstresult=True)
def hmacfs_choose_arm(transfer: Transfer) -> Arm | None:
    """Choose the pipeline for this transfer: ``"baseline"`` or ``"adaptive"``.

    Called once per transfer that the flags allow to be adaptive
    (``adaptive_buffers``, and ``adaptive_uploads`` or ``adaptive_downloads``
    for its direction). The first non-None answer wins; with none, the rollout
    keys decide from ``transfer.route`` and ``rollout_percent``
    (:mod:`hmacfs_core.rollout`). Answer per path, not at random, so that a
    retried upload lands on the same arm.
    """


@hookspec
def hmacfs_transfer_switched(transfer: Transfer, switch: NetworkSwitch) -> None:
    """Hear that a resumable upload continues from another address.

    Called once per PATCH that comes from a different address than the
    upload's previous one, after that PATCH's plan is made and before its body,
    with ``[handoff] switch_notification_enabled`` on. ``transfer`` is the new
    PATCH (its ``network`` is already detected on the adaptive arm); a plugin
    may change ``transfer.plan`` for the rest of the upload, as in
    ``hmacfs_transfer_progress``, and may compare the networks from what it
    measured of the upload before.
    """
