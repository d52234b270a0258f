"""The ``hmacfs`` command: serve, sign URLs, check a configuration file, upload."""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

import attrs
from twisted.internet.address import IPv4Address, IPv6Address

from hmacfs_core import __version__
from hmacfs_core.config import (
    Config,
    ConfigError,
    ConfigProblem,
    ListenAddress,
    default_config,
    load_config,
    resolve_secret,
)
from hmacfs_core.paths import PathRefused, encode_path, parse_upload_path
from hmacfs_core.signatures import signed_query
from hmacfs_core.units import parse_duration
from hmacfs_core.upload_client import add_upload_command

#: How often a worker looks whether its supervisor is still there.
SUPERVISOR_CHECK_SECONDS = 1.0
#: The environment variable a supervisor gives its workers its process id in.
SUPERVISOR_PID_VARIABLE = "HMACFS_SUPERVISOR_PID"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command named in ``argv``; return the process's exit status."""
    parser = _make_parser()
    arguments = parser.parse_args(argv)
    try:
        return int(arguments.run(arguments))
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2


def _make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hmacfs",
        description="HMAC-authenticated file server for XMPP HTTP File Upload.",
    )
    parser.add_argument("--version", action="version", version=f"hmacfs {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the server")
    serve.add_argument("--config", type=Path, help="TOML file (default: built-in)")
    serve.add_argument(
        "--listen", help="HOST:PORT or PORT, overriding server.listen_address"
    )
    # Internal: a worker started by the supervisor of [server] workers.
    serve.add_argument("--worker-fd", type=int, help=argparse.SUPPRESS)
    serve.set_defaults(run=_serve)

    sign = commands.add_parser("sign", help="print a signed upload URL")
    sign.add_argument(
        "path", help="upload path ('abc123/photo.jpg'), or directory with POST"
    )
    sign.add_argument(
        "--method",
        choices=("PUT", "POST"),
        default="PUT",
        help="PUT for a slot URL, POST for a v3 form upload URL (POST /upload)",
    )
    sign.add_argument("--size", type=_byte_count, help="exact body size (PUT)")
    sign.add_argument("--type", default=None, help="Content-Type (signed by v2/token)")
    sign.add_argument(
        "--protocol", choices=("v1", "v2", "token", "v3"), help="default v1 (PUT)"
    )
    sign.add_argument("--expires", default=None, help="v3 lifetime, e.g. '1h'")
    sign.add_argument("--config", type=Path, help="TOML file (default: built-in)")
    sign.add_argument("--base-url", help="URL the server is reached at")
    sign.set_defaults(run=_sign)

    plugins = commands.add_parser("plugins", help="list the installed plugins")
    plugins.add_argument("--config", type=Path, help="TOML file (default: built-in)")
    plugins.set_defaults(run=_list_plugins)

    check = commands.add_parser("check-config", help="validate a TOML file")
    check.add_argument("file", type=Path)
    check.set_defaults(run=_check_config)

    add_upload_command(commands)
    return parser


def _serve(arguments: argparse.Namespace) -> int:
    from twisted.internet import reactor
    from twisted.internet.error import CannotListenError

    from hmacfs_core.app import App
    from hmacfs_core.logs import start_logging
    from hmacfs_core.plugins import PluginError
    from hmacfs_core.serve import install_graceful_stop, install_reload, listen

    config = _load(arguments.config)
    if arguments.listen is not None:
        config = with_listen_address(config, arguments.listen)
    secret = resolve_secret(config, os.environ)
    newcomer_secret = None
    if secret is None:
        if arguments.config is not None:
            raise _missing_secret(str(arguments.config))
        newcomer_secret = secrets.token_urlsafe(32)
        secret = newcomer_secret.encode("utf-8")

    try:
        app = App(config=config, secret=secret, reactor=reactor)
    except PluginError as error:
        print(f"hmacfs: {error}", file=sys.stderr)
        return 2
    start_logging(config.logging.level, config.logging.format)
    if config.server.workers > 1 and arguments.worker_fd is None:
        from hmacfs_core.workers import Supervisor

        return Supervisor(app, arguments.config).run()

    # Before listening: whoever sees the "Listening" line may send SIGHUP, whose
    # default action would end the process.
    install_reload(app, arguments.config)
    inherited = None
    if arguments.worker_fd is not None:
        inherited = socket.socket(fileno=arguments.worker_fd)
    try:
        port = listen(app, inherited)
    except (CannotListenError, OSError) as error:
        address = config.server.listen_address
        print(f"hmacfs: cannot listen on {address}: {_reason(error)}", file=sys.stderr)
        return 2
    if inherited is not None:
        # The reactor holds its own duplicate of the descriptor.
        inherited.close()
    install_graceful_stop(app, port)
    if inherited is not None:
        _stop_with_supervisor(reactor)
    if newcomer_secret is not None:
        bound = cast(IPv4Address | IPv6Address, port.getHost())
        _greet_newcomer(config, newcomer_secret, bound.port)

    reactor.run()
    return 0


def _stop_with_supervisor(reactor: Any) -> None:
    """Stop a worker whose supervisor is gone, instead of serving on orphaned.

    A supervisor killed outright (SIGKILL, a crash) cannot pass a stop signal
    on; the worker notices that it has a new parent and stops by itself.
    """
    from twisted.internet.task import LoopingCall

    # Taken from the supervisor itself: by the time this worker reads its own
    # parent, a supervisor killed early may already be gone.
    supervisor = int(os.environ.get(SUPERVISOR_PID_VARIABLE, os.getppid()))

    def check() -> None:
        if os.getppid() != supervisor:
            checker.stop()
            reactor.stop()

    checker = LoopingCall(check)
    checker.clock = reactor
    checker.start(SUPERVISOR_CHECK_SECONDS, now=False)


def _sign(arguments: argparse.Namespace) -> int:
    config = _load(arguments.config)
    secret = resolve_secret(config, os.environ)
    if secret is None:
        raise _missing_secret(str(arguments.config or "built-in defaults"))

    try:
        upload_path = parse_upload_path(
            b"/" + encode_path(arguments.path).encode("ascii"), "/"
        )
    except PathRefused as refusal:
        print(f"hmacfs sign: invalid path: {refusal.reason}", file=sys.stderr)
        return 2

    protocol = arguments.protocol
    if protocol is None:
        protocol = "v3" if arguments.method == "POST" else "v1"
    if arguments.method == "POST" and protocol != "v3":
        print("hmacfs sign: POST URLs are signed with v3 only", file=sys.stderr)
        return 2
    if arguments.method == "PUT" and arguments.size is None:
        print("hmacfs sign: a PUT URL needs --size", file=sys.stderr)
        return 2

    expires = None
    if protocol == "v3":
        try:
            lifetime = parse_duration(arguments.expires or "1h")
        except ValueError as error:
            print(f"hmacfs sign: --expires: {error}", file=sys.stderr)
            return 2
        expires = int(time.time() + lifetime)
    elif arguments.expires is not None:
        print("hmacfs sign: only v3 URLs expire; drop --expires", file=sys.stderr)
        return 2

    query = signed_query(
        secret,
        protocol,
        method=arguments.method,
        path=upload_path.text,
        size=arguments.size or 0,
        content_type=arguments.type,
        expires=expires,
    )
    if arguments.method == "POST":
        # The form route is at the server's root, not under base_path.
        root = arguments.base_url or _base_url(config).removesuffix(
            config.server.base_path
        )
        target = quote(upload_path.text, safe="")
        print(f"{root.rstrip('/')}/upload?dir={target}&{query}")
        return 0
    base_url = arguments.base_url or _base_url(config)
    print(f"{base_url.rstrip('/')}/{encode_path(upload_path.text)}?{query}")
    return 0


def _reason(error: BaseException) -> str:
    """The operating system's words for a failed listen, without a traceback."""
    cause = getattr(error, "socketError", None) or error
    return getattr(cause, "strerror", None) or str(cause)


def _byte_count(text: str) -> int:
    """A ``--size``: the exact number of bytes the client will send."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of bytes")
    return int(text)


def _check_config(arguments: argparse.Namespace) -> int:
    from twisted.internet import reactor

    from hmacfs_core.app import App
    from hmacfs_core.plugins import PluginError

    config = load_config(arguments.file)
    secret = resolve_secret(config, os.environ)
    if secret is None:
        raise _missing_secret(str(arguments.file))

    try:
        # Building the app loads and configures every enabled plugin, exactly as
        # at start, without listening.
        App(config=config, secret=secret, reactor=reactor)
    except PluginError as error:
        print(f"{arguments.file}: plugins: {error}", file=sys.stderr)
        return 2

    print(f"{arguments.file}: OK (listening on {config.server.listen_address})")
    return 0


def _list_plugins(arguments: argparse.Namespace) -> int:
    """Print every plugin found through the entry points, and what it does."""
    from hmacfs_core.plugins import discover, hooks_of

    config = _load(arguments.config)
    active = set(config.plugins.active)
    rows = [("NAME", "DISTRIBUTION", "SOURCE", "ENABLED", "HOOKS")]
    for name, info in sorted(discover().items()):
        try:
            loaded = info.entry_point.load()
            hooks = ", ".join(hook.removeprefix("hmacfs_") for hook in hooks_of(loaded))
        except Exception as error:
            hooks = f"cannot be imported: {type(error).__name__}: {error}"
        rows.append(
            (
                name,
                f"{info.distribution} {info.version}",
                "built-in" if info.builtin else "third party",
                "yes" if name in active else "no",
                hooks or "none",
            )
        )

    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[4]]))
    return 0


def with_listen_address(config: Config, text: str) -> Config:
    """``config`` listening on ``text`` instead (the ``--listen`` option)."""
    try:
        address = ListenAddress.parse(text)
    except ValueError as error:
        problem = ConfigProblem(where="--listen", message=str(error))
        raise ConfigError("command line", (problem,)) from None
    return attrs.evolve(
        config, server=attrs.evolve(config.server, listen_address=address)
    )


def _load(path: Path | None) -> Config:
    return default_config() if path is None else load_config(path)


def _missing_secret(source: str) -> ConfigError:
    problem = ConfigProblem(
        where="security.secret",
        message="no secret: set security.secret or security.secret_file "
        "(or the HMACFS_SECRET environment variable)",
    )
    return ConfigError(source, (problem,))


def _base_url(config: Config) -> str:
    address = config.server.listen_address
    host = address.host
    if host in ("0.0.0.0", "::", ""):
        host = "localhost"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{address.port}{config.server.base_path}"


def _greet_newcomer(config: Config, secret: str, port: int) -> None:
    """Print the generated secret once, with an upload to try right away."""
    body = "hello from hmacfs"
    path = f"try-{secrets.token_hex(4)}/hello.txt"
    query = signed_query(
        secret.encode("utf-8"),
        "v1",
        path=path,
        size=len(body),
        content_type=None,
        expires=None,
    )
    address = config.server.listen_address
    base_url = _base_url(
        attrs.evolve(
            config,
            server=attrs.evolve(
                config.server, listen_address=ListenAddress(address.host, port)
            ),
        )
    )
    url = f"{base_url}{path}"
    print(
        "\nNo secret configured: generated one for this run only.\n"
        f"  export HMACFS_SECRET='{secret}'   # to sign URLs with 'hmacfs sign'\n"
        "Try an upload and a download:\n"
        f"  curl -X PUT -H 'Content-Type: text/plain' --data-binary "
        f"'{body}' '{url}?{query}'\n"
        f"  curl '{url}'\n",
        flush=True,
    )
