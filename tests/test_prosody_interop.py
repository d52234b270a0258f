"""Slots handed out by a real Prosody are accepted by hmacfs, byte for byte.

Prosody's ``mod_http_upload_external`` (Debian package ``prosody-modules``) signs
each slot and percent-encodes the file name itself; hmacfs must decode and check it
exactly as Prosody meant. The names below mix non-ASCII, reserved and
form-encoding characters, each of which a mismatched decoding step would break.
What Prosody was seen sending is written up in docs/interop.md.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from interop import (
    DOMAIN,
    INSTALL_HINT,
    PASSWORD,
    USER,
    RunningPeer,
    Upload,
    free_port,
    refused_puts,
    require_program,
    start_peer,
    upload_each,
)
from serverproc import RunningServer, start_server, stop_quietly
from xmppslots import SlotRequest

# Non-ASCII, as real secrets may be: both sides must sign with its UTF-8 bytes.
SECRET = "interop secret ✓"
UPLOAD_SERVICE = f"upload.{DOMAIN}"
BASE_PATH = "/upload/"

REQUESTS = [
    SlotRequest("Grüße & co.jpg", 23_026, "image/jpeg"),
    SlotRequest("a+b=c;d#e?.txt", 1_000, "text/plain; charset=utf-8"),
    # No type: Prosody signs application/octet-stream, and the client sends none.
    SlotRequest("😀.png", 70_000, None),
    SlotRequest("50% off ~ (final).pdf", 1, "application/pdf"),
    SlotRequest("release-2_0.tar.gz", 10, "application/gzip"),
]

# Where Debian's prosody-modules (and a hand-made install) put the module.
MODULE_DIRECTORIES = [
    Path("/usr/lib/prosody/modules"),
    Path("/usr/share/prosody-modules"),
    Path("/usr/local/lib/prosody/modules"),
]

# Prosody's util.uuid: a random (version 4) UUID in lower case.
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


# -- fixtures -------------------------------------------------------------------


@pytest.fixture(scope="module")
def hmacfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("hmacfs"), f'base_path = "{BASE_PATH}"', SECRET
    )
    yield running
    stop_quietly(running)


@pytest.fixture(scope="module", params=["v1", "v2"])
def protocol(request: pytest.FixtureRequest) -> str:
    """The value of ``http_upload_external_protocol``."""
    return str(request.param)


@pytest.fixture(scope="module")
def prosody(
    protocol: str,
    tmp_path_factory: pytest.TempPathFactory,
    hmacfs: RunningServer,
) -> Iterator[RunningPeer]:
    running = start_prosody(
        tmp_path_factory.mktemp(f"prosody-{protocol}"),
        base_url=f"http://{hmacfs.host}:{hmacfs.port}{BASE_PATH}",
        protocol=protocol,
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def uploads(prosody: RunningPeer, hmacfs: RunningServer) -> list[Upload]:
    return upload_each(prosody, hmacfs, UPLOAD_SERVICE, REQUESTS)


# -- tests ----------------------------------------------------------------------


def test_every_put_url_from_prosody_is_accepted_with_201(
    uploads: list[Upload], hmacfs: RunningServer
) -> None:
    assert refused_puts(uploads) == {}, hmacfs.log_text()


def test_every_get_url_from_prosody_serves_the_uploaded_bytes(
    uploads: list[Upload],
) -> None:
    for upload in uploads:
        assert upload.get.status == 200, upload.slot.get_url
        assert upload.get.body == upload.body, upload.slot.get_url


def test_downloads_carry_the_type_the_client_asked_for(uploads: list[Upload]) -> None:
    served = {u.slot.request.filename: u.get.header("content-type") for u in uploads}

    assert served == {
        request.filename: request.content_type or "application/octet-stream"
        for request in REQUESTS
    }


def test_files_are_stored_under_the_names_the_users_chose(
    uploads: list[Upload], hmacfs: RunningServer
) -> None:
    stored = {path.name for path in hmacfs.stored_files()}

    assert {request.filename for request in REQUESTS} <= stored


def test_prosody_urls_have_the_shape_docs_interop_describes(
    uploads: list[Upload], protocol: str, hmacfs: RunningServer
) -> None:
    base_url = f"http://{hmacfs.host}:{hmacfs.port}{BASE_PATH}"
    get_url = re.compile(
        re.escape(base_url) + UUID + r"/(?:[A-Za-z0-9_.~-]|%[0-9a-f]{2})+"
    )
    parameter = {"v1": "v", "v2": "v2"}[protocol]

    for upload in uploads:
        query = upload.slot.put_url.removeprefix(upload.slot.get_url)

        assert get_url.fullmatch(upload.slot.get_url), upload.slot.get_url
        assert re.fullmatch(rf"\?{parameter}=[0-9a-f]{{64}}", query), query
        assert upload.slot.put_headers == {}


# -- Prosody --------------------------------------------------------------------


def start_prosody(workdir: Path, base_url: str, protocol: str) -> RunningPeer:
    """
    Configure a Prosody in ``workdir`` with the account ``USER``, then run it in
    the foreground on a free loopback port until it accepts clients.
    """
    prosody = require_program("prosody")
    prosodyctl = require_program("prosodyctl")
    modules = _upload_module_directory()
    c2s_port = free_port()
    config = workdir / "prosody.cfg.lua"
    log = workdir / "prosody.log"
    config.write_text(
        _prosody_config(workdir, modules, c2s_port, base_url, protocol),
        encoding="utf-8",
    )

    registered = subprocess.run(
        [prosodyctl, "--config", str(config), "register", USER, DOMAIN, PASSWORD],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert registered.returncode == 0, registered.stdout + registered.stderr

    return start_peer([prosody, "-F", "--config", str(config)], workdir, c2s_port, log)


def _upload_module_directory() -> Path:
    for directory in MODULE_DIRECTORIES:
        if (directory / "mod_http_upload_external").is_dir():
            return directory
    pytest.fail(
        "mod_http_upload_external (Debian package prosody-modules) is not "
        f"installed: {INSTALL_HINT}",
        pytrace=False,
    )


def _prosody_config(
    workdir: Path, modules: Path, c2s_port: int, base_url: str, protocol: str
) -> str:
    """
    A Prosody that keeps everything in ``workdir``, serves clients on loopback
    only, talks to no other server and may run as root (CI does).
    """
    (workdir / "data").mkdir()
    (workdir / "certs").mkdir()
    return f"""\
run_as_root = true
pidfile = {_lua(workdir / "prosody.pid")}
data_path = {_lua(workdir / "data")}
certificates = {_lua(workdir / "certs")}
log = {{ debug = {_lua(workdir / "prosody.log")} }}
plugin_paths = {{ {_lua(modules)} }}

modules_enabled = {{ "roster", "saslauth", "disco", "ping" }}
modules_disabled = {{ "s2s", "s2s_auth_certs", "offline" }}
interfaces = {{ "127.0.0.1" }}
c2s_interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {c2s_port} }}
c2s_direct_tls_ports = {{ }}
legacy_ssl_ports = {{ }}
s2s_ports = {{ }}

-- No certificate exists: clients log in with SCRAM over plain TCP on loopback.
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_plain"

VirtualHost {_lua(DOMAIN)}

Component {_lua(UPLOAD_SERVICE)} "http_upload_external"
    http_upload_external_base_url = {_lua(base_url)}
    http_upload_external_secret = {_lua(SECRET)}
    http_upload_external_protocol = {_lua(protocol)}
"""


def _lua(value: object) -> str:
    """A Lua string literal holding the UTF-8 bytes of ``str(value)`` exactly."""
    escaped = "".join(
        chr(byte) if 0x20 <= byte < 0x7F and byte not in b'"\\' else f"\\{byte:03d}"
        for byte in str(value).encode("utf-8")
    )
    return f'"{escaped}"'
