"""``hmacfs upload``: send one file to a signed XEP-0363 PUT URL, resumably.

The URL an XMPP server hands out is all the client needs. When the server
speaks tus 1.0 (hmacfs does, under ``[tus] path``), the same signed URL with
the tus path in front of its path creates a tus upload, and the file then goes
in checksummed chunks that survive dropped connections, a change of network
and the client's own restart. A server without tus gets one plain PUT,
retried from the start: a PUT of identical bytes is answered 201 again.

The modules, in the order a run meets them: :mod:`.command` (flags, messages,
exit status), :mod:`.signed_url`, :mod:`.uploader` (tus or PUT?), :mod:`.tus`
and :mod:`.put` (the two ways the file goes), :mod:`.session` (what their steps
share), :mod:`.wire` (connections and answers), :mod:`.backoff` (retries),
:mod:`.state` (the resume state between runs), :mod:`.progress` (the display)
and :mod:`.failures`.
"""

from hmacfs_core.upload_client.backoff import Backoff
from hmacfs_core.upload_client.command import (
    EXIT_GAVE_UP,
    EXIT_REFUSED,
    EXIT_STORED,
    EXIT_USAGE,
    add_upload_command,
)
from hmacfs_core.upload_client.failures import FileChanged, GaveUp, Refused
from hmacfs_core.upload_client.options import UploadOptions
from hmacfs_core.upload_client.progress import Progress
from hmacfs_core.upload_client.signed_url import SignedURL
from hmacfs_core.upload_client.state import FileIdentity, StateFile, default_state_dir
from hmacfs_core.upload_client.uploader import Uploader

__all__ = [
    "EXIT_GAVE_UP",
    "EXIT_REFUSED",
    "EXIT_STORED",
    "EXIT_USAGE",
    "Backoff",
    "FileChanged",
    "FileIdentity",
    "GaveUp",
    "Progress",
    "Refused",
    "SignedURL",
    "StateFile",
    "UploadOptions",
    "Uploader",
    "add_upload_command",
    "default_state_dir",
]
