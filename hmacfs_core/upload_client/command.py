"""The ``hmacfs upload`` command: its flags, its messages and its exit status.

Everything the person running it reads comes from here: a usage error before
anything is sent, the GET URL once the file is stored, and on failure a line
saying whether running the same command again will continue.
"""

from __future__ import annotations

import argparse
import mimetypes
import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from hmacfs_core.units import parse_size
from hmacfs_core.upload_client.failures import FileChanged, GaveUp, Refused
from hmacfs_core.upload_client.options import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    DEFAULT_TUS_PATH,
    UploadOptions,
)
from hmacfs_core.upload_client.progress import Progress, human_size
from hmacfs_core.upload_client.signed_url import SignedURL
from hmacfs_core.upload_client.state import default_state_dir
from hmacfs_core.upload_client.uploader import Uploader

#: Exit statuses of ``hmacfs upload``; an interrupted run exits 128 + signal.
EXIT_STORED = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_GAVE_UP = 3


class Terminated(Exception):
    """SIGTERM arrived; raised in the main thread like ``KeyboardInterrupt``."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def add_upload_command(commands: Any) -> None:
    """Add ``upload`` to the ``hmacfs`` command's subparsers."""
    upload = commands.add_parser(
        "upload",
        help="upload a file to a signed PUT URL, resumably",
        description="Upload FILE to the signed PUT URL an XMPP server handed out. "
        "With a tus server the upload survives dropped connections and can be "
        "interrupted and run again to continue; otherwise it is one PUT. "
        "Prints the GET URL when the file is stored. Exit status: 0 stored, "
        "1 refused, 2 usage, 3 gave up.",
    )
    upload.add_argument("file", type=Path, metavar="FILE")
    upload.add_argument("url", metavar="URL", help="the signed PUT URL")
    upload.add_argument(
        "--type",
        dest="content_type",
        default=None,
        help="Content-Type the slot was requested with (default: guessed from "
        "the name; '' sends none)",
    )
    upload.add_argument(
        "--chunk-size",
        type=_positive_size,
        default=DEFAULT_CHUNK_SIZE,
        help="bytes per tus PATCH (default: 4MiB)",
    )
    upload.add_argument(
        "--retries",
        type=_count,
        default=DEFAULT_RETRIES,
        help="failures in a row before giving up (default: %(default)s)",
    )
    upload.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="where interrupted uploads are remembered "
        "(default: $XDG_STATE_HOME/hmacfs/uploads)",
    )
    upload.add_argument(
        "--tus-path",
        default=DEFAULT_TUS_PATH,
        help="URL path of the server's tus endpoint (default: %(default)s)",
    )
    upload.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help="seconds without progress before a connection counts as lost "
        "(default: %(default)s)",
    )
    upload.set_defaults(run=run_upload)


def run_upload(arguments: argparse.Namespace) -> int:
    """``hmacfs upload``: the exit status of one run."""
    try:
        url = SignedURL.parse(arguments.url)
    except ValueError as error:
        return _usage(f"URL: {error}")
    tus_path = arguments.tus_path
    if not tus_path.startswith("/"):
        return _usage("--tus-path must start with '/'")
    try:
        stream = arguments.file.open("rb")
    except OSError as error:
        return _usage(f"{arguments.file}: {error.strerror}")
    if not arguments.file.is_file():
        stream.close()
        return _usage(f"{arguments.file}: not a regular file")

    content_type = arguments.content_type
    if content_type is None:
        content_type = _guess_type(url.file_name) or _guess_type(arguments.file.name)
    options = UploadOptions(
        file=arguments.file,
        url=url,
        content_type=content_type or None,
        chunk_size=arguments.chunk_size,
        retries=arguments.retries,
        tus_path=tus_path,
        state_dir=arguments.state_dir or default_state_dir(),
        timeout=arguments.timeout,
    )
    size = os.fstat(stream.fileno()).st_size
    progress = Progress(size, sys.stderr, sys.stderr.isatty())
    uploader = Uploader(options, progress)

    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        with stream:
            get_url = uploader.run(stream)
    except Refused as refused:
        progress.finish()
        print(f"hmacfs upload: refused: {refused}", file=sys.stderr)
        return EXIT_REFUSED
    except GaveUp as gave_up:
        progress.finish()
        print(f"hmacfs upload: {gave_up}", file=sys.stderr)
        if uploader.resumable and not isinstance(gave_up, FileChanged):
            print(
                "hmacfs upload: the server keeps what it has: "
                "run the same command again to continue",
                file=sys.stderr,
            )
        return EXIT_GAVE_UP
    except (KeyboardInterrupt, Terminated) as stop:
        progress.finish()
        signum = stop.signum if isinstance(stop, Terminated) else signal.SIGINT
        print(
            f"hmacfs upload: interrupted at {human_size(progress.position)}; "
            "run the same command again to continue",
            file=sys.stderr,
        )
        return 128 + signum
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(get_url)
    return EXIT_STORED


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated(signum)


def _usage(message: str) -> int:
    print(f"hmacfs upload: {message}", file=sys.stderr)
    return EXIT_USAGE


def _guess_type(name: str) -> str | None:
    guessed, _ = mimetypes.guess_type(name, strict=False)
    return guessed


def _positive_size(text: str) -> int:
    try:
        size = parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if size < 1:
        raise argparse.ArgumentTypeError("must be at least one byte")
    return size


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
    return int(text)
