"""``twist hmacfs``: run the server as a Twisted application plugin.

This file lives in Twisted's plugin namespace (``twisted/plugins``), which must
not gain an ``__init__.py``; it only names the service maker, so that listing
plugins stays cheap.
"""

from __future__ import annotations

from twisted.application.service import IServiceMaker
from twisted.plugin import IPlugin
from twisted.python import usage
from zope.interface import implementer


class Options(usage.Options):
    """The options of ``twist hmacfs``."""

    optParameters = [
        ["config", "c", None, "TOML configuration file (default: built-in)"],
        ["listen", "l", None, "HOST:PORT or PORT, overriding server.listen_address"],
    ]


@implementer(IServiceMaker, IPlugin)
class HmacfsServiceMaker:
    """Build the hmacfs service from ``twist hmacfs`` options."""

    tapname = "hmacfs"
    description = "HMAC-authenticated file server for XMPP HTTP File Upload."
    options = Options

    def makeService(self, options: Options) -> object:
        from hmacfs_core.application import service_from_options

        return service_from_options(options["config"], options["listen"])


serviceMaker = HmacfsServiceMaker()
