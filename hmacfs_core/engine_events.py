"""The adaptive engine's structured log events, each switched by ``[logging]``.

=========================  =====================================================
``level = "debug"``        ``transfer_decisions`` at debug level: one event per
                           transfer with arm, class, network, the plan before and
                           after clamping, which plugin set what, and the values
                           read back from the socket, writer and producer
``optimization_logging``   the same event at info level, plus ``plan_changed``
                           each time a running transfer is re-planned
``client_profile_logging`` ``client_profile``: what the plugins made of the
                           client (class, network, who decided, the evidence)
``detailed_logging``       ``transfer_detail``: everything known about each
                           transfer when it ends, for following one upload
=========================  =====================================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
from twisted.logger import Logger, LogLevel

from hmacfs_core.config import LoggingConfig
from hmacfs_core.transfer import Outcome

if TYPE_CHECKING:
    from hmacfs_core.pipeline import TransferRun


def decisions_level(logging: LoggingConfig) -> LogLevel | None:
    """The level ``transfer_decisions`` is logged at, or None when it is off."""
    if logging.optimization_logging:
        return LogLevel.info
    if logging.level == "debug":
        return LogLevel.debug
    return None


def log_decisions(
    log: Logger, run: TransferRun, outcome: Outcome, level: LogLevel
) -> None:
    transfer = run.transfer
    log.emit(
        level,
        "Transfer {transfer_id} {direction} {path}: arm={arm} client={client_class}"
        " network={network} plan={plan} applied={applied}",
        event="transfer_decisions",
        outcome=attrs.asdict(outcome),
        transfer_id=transfer.id,
        direction=transfer.direction,
        path=transfer.path,
        route=transfer.route,
        arm=transfer.arm,
        client_class=transfer.client_class,
        network=transfer.network,
        decided_by=run.decided_by,
        plan_before_clamp=attrs.asdict(run.unclamped) if run.unclamped else None,
        plan=attrs.asdict(run.plan),
        set_by=run.set_by,
        applied=run.applied,
        replans=run.replans,
    )


def log_plan_change(log: Logger, run: TransferRun) -> None:
    log.info(
        "Transfer {transfer_id} re-planned: {plan}",
        event="plan_changed",
        transfer_id=run.transfer.id,
        path=run.transfer.path,
        plan=attrs.asdict(run.plan),
        replans=run.replans,
    )


def log_client_profile(log: Logger, run: TransferRun) -> None:
    transfer = run.transfer
    log.info(
        "Client {peer} ({user_agent}) is {client_class} on {network}",
        event="client_profile",
        transfer_id=transfer.id,
        peer=transfer.peer,
        user_agent=transfer.user_agent,
        client_class=transfer.client_class,
        network=transfer.network,
        decided_by=run.decided_by,
        tcp=attrs.asdict(transfer.tcp) if transfer.tcp else None,
        evidence={name: _plain(note) for name, note in transfer.notes.items()},
    )


def log_transfer_detail(log: Logger, run: TransferRun, outcome: Outcome) -> None:
    transfer = run.transfer
    log.info(
        "Transfer {transfer_id} {direction} {path} ended: {reason}",
        event="transfer_detail",
        transfer_id=transfer.id,
        direction=transfer.direction,
        path=transfer.path,
        route=transfer.route,
        arm=transfer.arm,
        size=transfer.size,
        content_type=transfer.content_type,
        peer=transfer.peer,
        user_agent=transfer.user_agent,
        client_class=transfer.client_class,
        network=transfer.network,
        tcp=attrs.asdict(transfer.tcp) if transfer.tcp else None,
        plan=attrs.asdict(transfer.plan) if transfer.plan else None,
        reason=outcome.reason,
        outcome=attrs.asdict(outcome),
        throughput=outcome.throughput,
    )


def _plain(note: Any) -> Any:
    """A plugin's note as something a JSON log can hold."""
    if attrs.has(type(note)):
        return attrs.asdict(note)
    if isinstance(note, dict | list | str | int | float | bool) or note is None:
        return note
    return repr(note)
