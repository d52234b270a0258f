"""The HTTP side of hmacfs: the streaming request, the site and the resources."""

from hmacfs_core.web.request import StreamingRequest, UploadRefused
from hmacfs_core.web.site import make_site

__all__ = ["StreamingRequest", "UploadRefused", "make_site"]
