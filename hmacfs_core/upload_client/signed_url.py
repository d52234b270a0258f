"""The signed PUT URL, and the origins and targets requests are sent to.

Its path is kept exactly as signed (the server verifies the MAC over it), and
its query, which holds the MAC, is kept apart so that nothing shows or stores
it by accident.
"""

from __future__ import annotations

import http.client
import ssl
from urllib.parse import quote, unquote, urljoin, urlsplit

from attrs import frozen


@frozen
class Endpoint:
    """Where requests go: one HTTP(S) origin."""

    scheme: str
    host: str
    port: int

    def connect(self, timeout: float) -> http.client.HTTPConnection:
        if self.scheme == "https":
            return http.client.HTTPSConnection(
                self.host,
                self.port,
                timeout=timeout,
                context=ssl.create_default_context(),
            )
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)


@frozen
class SignedURL:
    """A signed PUT URL, split into what the client needs of it.

    :ivar path: the raw (percent-encoded) path, exactly as signed.
    :ivar query: the raw query holding the MAC; never logged or stored.
    """

    endpoint: Endpoint
    netloc: str
    path: str
    query: str

    @classmethod
    def parse(cls, text: str) -> SignedURL:
        """:raises ValueError: for anything but an absolute http(s) URL."""
        parts = urlsplit(text.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("URL must be an absolute http:// or https:// URL")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        # An IRI pasted from a chat window: its non-ASCII characters are
        # escaped as UTF-8, which is how the server reads and verifies them.
        path = quote(parts.path or "/", safe="".join(map(chr, range(0x21, 0x7F))))
        endpoint = Endpoint(parts.scheme, parts.hostname, port)
        return cls(endpoint, parts.netloc, path, parts.query)

    @property
    def get_url(self) -> str:
        """The URL without its query: where the stored file is served."""
        return f"{self.endpoint.scheme}://{self.netloc}{self.path}"

    @property
    def put_target(self) -> str:
        return f"{self.path}?{self.query}" if self.query else self.path

    @property
    def file_name(self) -> str:
        return unquote(self.path.rsplit("/", 1)[-1])

    def tus_target(self, tus_path: str) -> str:
        """The creation target: the tus path, then the PUT URL's path and query."""
        return tus_path.rstrip("/") + self.put_target

    def resolve(self, reference: str) -> str:
        """An absolute URL for a ``Location`` (usually a bare path)."""
        return urljoin(self.get_url, reference)


def split_location(location: str) -> tuple[Endpoint, str]:
    """The endpoint and request target of an upload's absolute URL."""
    parts = urlsplit(location)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an absolute http(s) URL: {location!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    return Endpoint(parts.scheme, parts.hostname, port), target
