"""Which pipeline a transfer takes when no plugin decides: the rollout rules.

The design guide's migration runs off → testing → 10% → 50% → full, and each
step is a configuration change:

==========  ==========================================================
off         ``adaptive_buffers = false``: every transfer is baseline
testing     ``testing_mode = true``: ``/upload/adaptive`` and
            ``/download/adaptive/`` are adaptive, ``/upload/auto`` splits by
            ``rollout_percent``, the normal routes stay baseline
10%, 50%    ``rollout_percent = 10`` (then 50): that share of the normal
            routes' transfers is adaptive
full        ``fully_adaptive = true``: the normal routes are all adaptive
==========  ==========================================================

``adaptive_uploads`` and ``adaptive_downloads`` bound every step: with one off,
that direction is baseline whatever else says otherwise.
"""

from __future__ import annotations

import hashlib

from hmacfs_core.config import PerformanceConfig
from hmacfs_core.transfer import Arm, Transfer

ADAPTIVE_ROUTES = frozenset({"upload/adaptive", "download/adaptive"})
SPLIT_ROUTE = "upload/auto"


def adaptive_allowed(performance: PerformanceConfig, transfer: Transfer) -> bool:
    """Whether the flags let this transfer be adaptive at all."""
    if not performance.adaptive_buffers:
        return False
    if transfer.direction == "upload":
        return performance.adaptive_uploads
    return performance.adaptive_downloads


def default_arm(performance: PerformanceConfig, transfer: Transfer) -> Arm:
    """The arm from the route and the rollout keys (see the module's table)."""
    if transfer.route in ADAPTIVE_ROUTES:
        return "adaptive"
    if transfer.route == SPLIT_ROUTE:
        return _split(transfer.path, performance.rollout_percent)
    if performance.fully_adaptive:
        return "adaptive"
    if performance.testing_mode:
        return "baseline"
    return _split(transfer.path, performance.rollout_percent)


def in_rollout(path: str, percent: int) -> bool:
    """Whether ``path`` falls in the first ``percent`` of 100 buckets.

    A hash of the path, not a random draw: the retry of a cut upload, and every
    download of one file, take the same arm as before.
    """
    digest = hashlib.sha256(path.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") % 100 < percent


def _split(path: str, percent: int) -> Arm:
    return "adaptive" if in_rollout(path, percent) else "baseline"
