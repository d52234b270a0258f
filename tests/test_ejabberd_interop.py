"""Slots handed out by a real ejabberd are accepted by hmacfs, byte for byte.

ejabberd's ``mod_http_upload`` with ``external_secret`` leaves storage to another
server and signs like Prosody's v1. Unlike Prosody it rewrites the file name first
(see docs/interop.md), so the names stored are the ones ejabberd signed, not the
ones the user chose.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

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

SECRET = "interop secret ✓"
UPLOAD_SERVICE = f"upload.{DOMAIN}"
BASE_PATH = "/upload/"
REGISTERED = "interop account: ok"

REQUESTS = [
    SlotRequest("Grüße & co.jpg", 23_026, "image/jpeg"),
    SlotRequest("a+b=c;d#e?.txt", 1_000, "text/plain; charset=utf-8"),
    SlotRequest("😀.png", 70_000, None),
    SlotRequest("50% off ~ (final).pdf", 1, "application/pdf"),
    SlotRequest("release-2_0.tar.gz", 10, "application/gzip"),
]


@pytest.fixture(scope="module")
def hmacfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("hmacfs"), f'base_path = "{BASE_PATH}"', SECRET
    )
    yield running
    stop_quietly(running)


@pytest.fixture(scope="module")
def ejabberd(
    tmp_path_factory: pytest.TempPathFactory, hmacfs: RunningServer
) -> Iterator[RunningPeer]:
    running = start_ejabberd(
        tmp_path_factory.mktemp("ejabberd"),
        put_url=f"http://{hmacfs.host}:{hmacfs.port}{BASE_PATH.rstrip('/')}",
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def uploads(ejabberd: RunningPeer, hmacfs: RunningServer) -> list[Upload]:
    return upload_each(ejabberd, hmacfs, UPLOAD_SERVICE, REQUESTS)


def test_every_put_url_from_ejabberd_is_accepted_with_201(
    uploads: list[Upload], hmacfs: RunningServer
) -> None:
    assert refused_puts(uploads) == {}, hmacfs.log_text()


def test_every_get_url_from_ejabberd_serves_the_uploaded_bytes(
    uploads: list[Upload],
) -> None:
    for upload in uploads:
        assert upload.get.status == 200, upload.slot.get_url
        assert upload.get.body == upload.body, upload.slot.get_url


def test_files_are_stored_under_the_names_ejabberd_signed(
    uploads: list[Upload], hmacfs: RunningServer
) -> None:
    signed = {unquote(u.slot.get_url.rpartition("/")[2]) for u in uploads}

    assert signed <= {path.name for path in hmacfs.stored_files()}


def test_ejabberd_urls_have_the_shape_docs_interop_describes(
    uploads: list[Upload], hmacfs: RunningServer
) -> None:
    get_url = re.compile(
        re.escape(f"http://{hmacfs.host}:{hmacfs.port}{BASE_PATH}")
        + r"[0-9a-f]{40}/[A-Za-z0-9]{40}/(?:[A-Za-z0-9_.~-]|%[0-9A-F]{2})+"
    )

    for upload in uploads:
        query = upload.slot.put_url.removeprefix(upload.slot.get_url)

        assert get_url.fullmatch(upload.slot.get_url), upload.slot.get_url
        assert re.fullmatch(r"\?v=[0-9a-f]{64}", query), query
        assert upload.slot.put_headers == {}


def test_ejabberd_replaces_reserved_characters_and_keeps_letters(
    uploads: list[Upload],
) -> None:
    names = [unquote(u.slot.get_url.rpartition("/")[2]) for u in uploads]

    assert names == [
        "Grüße___co.jpg",
        "a_b_c_d_e_.txt",
        "_.png",
        "50__off____final_.pdf",
        "release-2_0.tar.gz",
    ]


# -- ejabberd -------------------------------------------------------------------


def start_ejabberd(workdir: Path, put_url: str) -> RunningPeer:
    """
    Run ejabberd in ``workdir`` with the account ``USER``, on a free loopback
    port, until it accepts clients.

    ``ejabberdctl`` would switch to the ``ejabberd`` user (who cannot read a
    root-owned temporary directory) and start a distributed Erlang node, which
    leaves an ``epmd`` daemon behind. The Erlang VM is started directly instead,
    as a plain node, and creates the account itself once ejabberd is up.
    """
    require_program("ejabberdctl")
    erl = require_program("erl")
    libraries = _ejabberd_libraries()
    c2s_port = free_port()
    config = workdir / "ejabberd.yml"
    log = workdir / "ejabberd.log"
    config.write_text(_ejabberd_config(c2s_port, put_url), encoding="utf-8")
    (workdir / "spool").mkdir()

    register = (
        f'io:format("interop account: ~p~n", [ejabberd_auth:try_register('
        f'<<"{USER}">>, <<"{DOMAIN}">>, <<"{PASSWORD}">>)]).'
    )
    environment = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(workdir),
        "LANG": "C.UTF-8",
        "ERL_LIBS": str(libraries),
        "ERL_CRASH_DUMP": str(workdir / "erl_crash.dump"),
        "EJABBERD_CONFIG_PATH": str(config),
        "EJABBERD_LOG_PATH": str(log),
    }
    command = [
        erl,
        "-noinput",
        "-mnesia",
        "dir",
        f'"{workdir / "spool"}"',
        "-s",
        "ejabberd",
        "-eval",
        register,
    ]
    return start_peer(
        command, workdir, c2s_port, log, env=environment, ready_line=REGISTERED
    )


def _ejabberd_libraries() -> Path:
    """The directory holding ejabberd's Erlang applications (``ERL_LIBS``)."""
    for app in sorted(Path("/usr/lib").glob("*/ejabberd-*/ebin/ejabberd.app")):
        return app.parent.parent.parent
    pytest.fail(f"ejabberd's Erlang applications are missing: {INSTALL_HINT}")


def _ejabberd_config(c2s_port: int, put_url: str) -> str:
    """
    An ejabberd for one virtual host that serves clients on loopback without TLS
    and hands out upload slots signed with ``SECRET``. JSON strings are valid
    YAML double-quoted scalars, which keeps any character of a value safe.
    """
    return f"""\
hosts:
  - {json.dumps(DOMAIN)}
loglevel: info
log_rotate_count: 0
certfiles: []
listen:
  -
    port: {c2s_port}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    starttls: false
auth_method: internal
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
  c2s:
    allow: all
modules:
  mod_disco: {{}}
  mod_roster: {{}}
  mod_http_upload:
    put_url: {json.dumps(put_url)}
    external_secret: {json.dumps(SECRET)}
"""
