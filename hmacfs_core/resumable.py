"""The resumable uploads of one server: their store, sweep and running PATCHes.

What lives as long as the process hangs off ``app.tus``: the partial store,
the timer that sweeps expired uploads, the PATCHes running in this process,
and the SHA-256 of each upload's bytes so far, so that publishing a finished
upload does not read it all again. Everything that must outlive the process
is on disk (:mod:`hmacfs_core.partials`).

Two seams are left for the network-handoff work: :attr:`cut_policy` decides
what a cut PATCH keeps, and every record lists the addresses its PATCHes came
from (``UploadRecord.attempts``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from attrs import define, field
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall

from hmacfs_core.config import Config
from hmacfs_core.partials import CutPolicy, PartialStore, UploadRecord

if TYPE_CHECKING:
    from hmacfs_core.app import App


def keep_cut_bytes(record: UploadRecord, peer: str) -> CutPolicy:
    """The default: a cut PATCH keeps every byte that arrived, as tus clients
    expect when they ask for the offset again."""
    return "keep"


@define
class ResumableUploads:
    """The tus uploads of one app.

    :ivar cut_policy: asked, with the upload and the cut PATCH's peer, what a
        PATCH cut before its end keeps; ``"discard"`` rolls it back to its
        start offset (``[handoff] chunk_retry_on_switch`` plugs in here).
    :ivar running: the PATCH holding each upload in this process.
    """

    app: App
    cut_policy: Callable[[UploadRecord, str], CutPolicy] = keep_cut_bytes
    running: dict[str, Any] = field(factory=dict)
    _digests: dict[str, tuple[int, Any]] = field(factory=dict)
    _sweeper: LoopingCall | None = None

    @property
    def store(self) -> PartialStore:
        return PartialStore(self.app.store.staging_dir / "tus")

    @property
    def expiration(self) -> float:
        return self.app.config.tus.expiration

    def start(self) -> None:
        """Recover what a dead process left, then sweep every ``sweep_interval``.

        Called when the app starts serving, whether tus is enabled or not: a
        reload may enable it, and partial uploads left from when it was must
        still expire. Calling it again does nothing.
        """
        if self._sweeper is not None:
            return
        cut = self.store.recover()
        if cut:
            self.app.log.info(
                "Cut {count} partial uploads back to their last checkpoint",
                count=cut,
            )
        self._sweeper = LoopingCall(self.sweep)
        self._sweeper.clock = self.app.reactor
        self._sweeper.start(self.app.config.tus.sweep_interval, now=False)
        self.app.reload_listeners.append(self._take_sweep_interval)

    def stop(self) -> None:
        if self._sweeper is not None and self._sweeper.running:
            self._sweeper.stop()

    def sweep(self) -> Deferred[None]:
        """Remove the uploads idle for longer than ``[tus] expiration``."""
        swept = self.app.run_in_thread(
            self.store.sweep, self.app.reactor.seconds(), self.expiration
        )

        def forget(removed: list[str]) -> None:
            for upload_id in removed:
                self._digests.pop(upload_id, None)
            if removed:
                self.app.log.info(
                    "Removed {count} expired partial uploads", count=len(removed)
                )

        def failed(failure: Any) -> None:
            # A failing sweep must not stop the timer: the next one retries.
            self.app.log.failure("Sweeping partial uploads failed", failure=failure)

        return swept.addCallbacks(forget, failed)

    def is_expired(self, record: UploadRecord) -> bool:
        return self.app.reactor.seconds() > record.expires(self.expiration)

    def digest_at(self, record: UploadRecord) -> Any:
        """A copy of the SHA-256 of the first ``offset`` bytes, if known here."""
        known = self._digests.get(record.id)
        if known is None or known[0] != record.offset:
            return None
        return known[1].copy()

    def remember_digest(self, upload_id: str, offset: int, digest: Any) -> None:
        self._digests[upload_id] = (offset, digest)

    def forget(self, upload_id: str) -> None:
        self._digests.pop(upload_id, None)

    def _take_sweep_interval(self, config: Config) -> None:
        sweeper = self._sweeper
        if sweeper is None or sweeper.interval == config.tus.sweep_interval:
            return
        if sweeper.running:
            sweeper.stop()
        sweeper.start(config.tus.sweep_interval, now=False)
