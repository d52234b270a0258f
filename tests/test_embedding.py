"""Mounting hmacfs in another Twisted site, and running it with ``twist``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from serverproc import (
    RunningServer,
    listening_address,
    put_head,
    raw_exchange,
    status_of,
)

SECRET = "embedded secret"

HOST_SITE = """
    import sys
    from pathlib import Path

    from twisted.internet import reactor
    from twisted.web.resource import Resource
    from twisted.web.server import Request, Site
    from twisted.web.static import Data

    from hmacfs_core import StreamingRequest, make_resource
    from hmacfs_core.config import parse_config

    config = parse_config(
        '[server]\\nstorage_path = "{storage}"\\n', base_dir=Path("{storage}")
    )
    root = Resource()
    root.putChild(b"", Data(b"the host site's own page", "text/plain"))
    root.putChild(b"files", make_resource(config, {secret!r}))
    site = Site(root, requestFactory={request_factory})
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    print("Listening on http://127.0.0.1:%d/" % port.getHost().port, flush=True)
    reactor.run()
"""


def _start(command: list[str], storage: Path, **env: str) -> RunningServer:
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
    )
    assert process.stdout is not None
    lines = []
    address = None
    for line in process.stdout:
        lines.append(line)
        address = listening_address(line)
        if address is not None:
            break
    assert address is not None, "".join(lines)
    _, port = address
    return RunningServer(
        process=process,
        host="127.0.0.1",
        port=port,
        storage=storage,
        secret=SECRET.encode(),
        lines=lines,
    )


def test_mounted_under_files_it_streams_uploads_beside_the_host_pages(
    tmp_path: Path,
) -> None:
    storage = tmp_path / "store"
    script = tmp_path / "host.py"
    script.write_text(
        textwrap.dedent(HOST_SITE).format(
            storage=storage, secret=SECRET, request_factory="StreamingRequest"
        )
    )
    host = _start([sys.executable, str(script)], storage)
    try:
        body = os.urandom(500_000)
        target = host.signed("abc/photo.jpg", len(body))
        stored = host.request("PUT", f"/files{target}", body)
        fetched = host.request("GET", "/files/abc/photo.jpg")
        own_page = host.request("GET", "/")
        with host.connect() as sock:
            refused = raw_exchange(
                sock,
                put_head(
                    f"/files{target.replace('v=', 'v=0')}",
                    len(body),
                    "Expect: 100-continue\r\n",
                ),
            )
    finally:
        host.process.send_signal(signal.SIGTERM)
        host.process.wait(20)

    assert stored.status == 201
    assert fetched.body == body
    assert own_page.body == b"the host site's own page"
    assert status_of(refused) == 403
    assert b"100 Continue" not in refused
    assert (storage / "files" / "abc" / "photo.jpg").read_bytes() == body


def test_twist_hmacfs_runs_the_server_and_stops_cleanly(tmp_path: Path) -> None:
    twist = Path(sys.executable).with_name("twist")
    config = tmp_path / "hmacfs.toml"
    storage = tmp_path / "store"
    config.write_text(
        f'[server]\nlisten_address = "127.0.0.1:0"\nstorage_path = "{storage}"\n'
        f'[security]\nsecret = "{SECRET}"\n'
    )
    server = _start([str(twist), "hmacfs", "--config", str(config)], storage)
    try:
        stored = server.put("t/x.txt", b"via twist")
        fetched = server.get("t/x.txt")
    finally:
        server.process.send_signal(signal.SIGTERM)
        code = server.process.wait(20)

    assert stored.status == 201
    assert fetched.body == b"via twist"
    # twist re-raises the signal that stopped it once the reactor is down.
    assert code in (0, -signal.SIGTERM)
    assert "Main loop terminated" in server.process.stdout.read()
