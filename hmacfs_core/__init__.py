"""hmacfs: an HMAC-authenticated file server for XMPP HTTP File Upload.

The names here are the public API for plugin authors and host sites; a test
pins them.
"""

from hmacfs_core.application import make_resource
from hmacfs_core.hookspecs import hookimpl
from hmacfs_core.transfer import (
    NetworkSwitch,
    Outcome,
    ProgressSample,
    TcpStats,
    Transfer,
    TransferPlan,
)
from hmacfs_core.web.request import StreamingRequest

__version__ = "0.1.0"

__all__ = [
    "NetworkSwitch",
    "Outcome",
    "ProgressSample",
    "StreamingRequest",
    "TcpStats",
    "Transfer",
    "TransferPlan",
    "__version__",
    "hookimpl",
    "make_resource",
]
