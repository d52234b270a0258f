"""hmacfs: an HMAC-authenticated file server for XMPP HTTP File Upload.

The names here are the public API for plugin authors and host sites; a test
pins them.
"""

from hmacfs_core.hookspecs import hookimpl
from hmacfs_core.transfer import (
    Outcome,
    ProgressSample,
    TcpStats,
    Transfer,
    TransferPlan,
)

__version__ = "0.1.0"

__all__ = [
    "Outcome",
    "ProgressSample",
    "TcpStats",
    "Transfer",
    "TransferPlan",
    "__version__",
    "hookimpl",
]
