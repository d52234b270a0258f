"""What ``hmacfs upload`` was asked to do, with the defaults its flags show."""

from __future__ import annotations

from pathlib import Path

from attrs import field, frozen

from hmacfs_core.units import MiB
from hmacfs_core.upload_client.signed_url import SignedURL
from hmacfs_core.upload_client.state import default_state_dir

DEFAULT_TUS_PATH = "/tus/"
DEFAULT_CHUNK_SIZE = 4 * MiB
DEFAULT_RETRIES = 20
DEFAULT_TIMEOUT = 60.0


@frozen
class UploadOptions:
    """What ``hmacfs upload`` was asked to do.

    :ivar content_type: sent as ``Content-Type`` (PUT) and ``filetype`` (tus);
        None sends none, and the server stores ``application/octet-stream``.
    """

    file: Path
    url: SignedURL
    content_type: str | None
    chunk_size: int = DEFAULT_CHUNK_SIZE
    retries: int = DEFAULT_RETRIES
    tus_path: str = DEFAULT_TUS_PATH
    state_dir: Path = field(factory=default_state_dir)
    timeout: float = DEFAULT_TIMEOUT
