"""hmacfs: an HMAC-authenticated file server for XMPP HTTP File Upload."""

__version__ = "0.1.0"

__all__ = ["__version__"]
