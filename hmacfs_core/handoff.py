"""``[handoff]`` for resumable uploads: an upload that moves between networks.

A phone that leaves Wi-Fi for LTE comes back from a new address and sends its
next PATCH there. The tus resource asks this module, for each PATCH:

- whether the upload may continue from that address (``seamless_switching``);
- whether a PATCH still holding the upload from the old address should be
  stopped now rather than at its idle timeout (``pause_transfers_on_switch``);
- what a PATCH cut before its end keeps (``chunk_retry_on_switch``);
- and it tells the plugins and the log about the switch
  (``switch_notification_enabled``, the ``hmacfs_transfer_switched`` hook).

The throughput history per network and upload, and the comparison of the new
network with the old one (``interface_quality_history``,
``performance_comparison_window``), live in the ``network_policy`` plugin, which
sees every PATCH as a transfer of the upload's path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from attrs import define

from hmacfs_core.partials import CutPolicy, UploadRecord
from hmacfs_core.transfer import NetworkSwitch, Transfer

if TYPE_CHECKING:
    from hmacfs_core.app import App


class SwitchRefused(Exception):
    """The upload may not continue from this address (``seamless_switching``)."""


@define
class UploadHandoff:
    """The ``[handoff]`` decisions of one app for its resumable uploads."""

    app: App

    def check(self, record: UploadRecord, peer: str) -> NetworkSwitch | None:
        """The switch this PATCH makes, if it comes from a new address.

        :raises SwitchRefused: with ``seamless_switching`` off.
        """
        if not record.attempts or record.attempts[-1].peer == peer:
            return None
        if not self.app.config.handoff.seamless_switching:
            raise SwitchRefused(peer)

        previous = record.attempts[-1]
        return NetworkSwitch(
            upload_id=record.id,
            path=record.path,
            old_peer=previous.peer,
            new_peer=peer,
            offset=record.offset,
            gap=self.app.reactor.seconds() - previous.at,
        )

    def take_over(self, record: UploadRecord, peer: str) -> bool:
        """Stop the PATCH of another address that holds the upload, if allowed.

        Its connection is cut; what it received settles as any cut PATCH's
        does, and the new address then continues from the settled offset.
        """
        if not self.app.config.handoff.pause_transfers_on_switch:
            return False
        holder = self.app.tus.running.get(record.id)
        if holder is None or holder.peer == peer:
            return False

        transport = getattr(holder.request.channel, "transport", None)
        if transport is None:
            return False
        self.app.log.info(
            "Upload {upload_id} moved to {peer}: stopping its PATCH from {old_peer}",
            event="upload_takeover",
            upload_id=record.id[:8],
            peer=peer,
            old_peer=holder.peer,
        )
        transport.abortConnection()
        return True

    def cut_policy(self, record: UploadRecord, peer: str) -> CutPolicy:
        """What a PATCH cut before its end keeps (``chunk_retry_on_switch``)."""
        return "discard" if self.app.config.handoff.chunk_retry_on_switch else "keep"

    def notify(self, transfer: Transfer, switch: NetworkSwitch) -> None:
        """Log the switch and tell the plugins (``switch_notification_enabled``)."""
        if not self.app.config.handoff.switch_notification_enabled:
            return
        self.app.log.info(
            "Upload {path} continues from {new_peer} (was {old_peer}) at byte {offset}",
            event="upload_switch",
            path=switch.path,
            new_peer=switch.new_peer,
            old_peer=switch.old_peer,
            offset=switch.offset,
            gap=switch.gap,
        )
        self.app.plugins.call_all(
            "hmacfs_transfer_switched", transfer=transfer, switch=switch
        )
