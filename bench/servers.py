"""The servers under test, each started by the suite on a loopback port.

Every server is a child process with a configuration written to its own
directory under the storage directory, so nothing of the machine's own nginx
or Prosody (configuration, ports, logs, data) is used or touched:

- ``nginx``: the C ceiling, storing PUTs with its DAV module; one worker, like
  the single-process servers it is compared with.
- ``prosody``: Prosody's ``mod_http_file_share`` on a component, with upload
  slots asked for over XMPP exactly as a chat client does.
- ``hmacfs-baseline`` and ``hmacfs-adaptive``: the real ``hmacfs serve``,
  with ``[performance] adaptive_buffers`` off and on.
- ``hmacfs-2workers``: the baseline with ``[server] workers = 2``, a supervisor
  and two worker processes on one listening socket; not in a default run, which
  compares single processes (``--servers`` adds it).
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit
from xml.etree import ElementTree

from attrs import frozen

from bench.load import Slot
from bench.usage import children_of
from hmacfs_core import __version__ as hmacfs_version
from hmacfs_core.paths import encode_path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from serverproc import RunningServer, start_server, stop_quietly  # noqa: E402

#: The largest upload any workload makes, with room to spare.
MAX_UPLOAD = 2 * 1024**3

SERVER_NAMES = (
    "nginx",
    "prosody",
    "hmacfs-baseline",
    "hmacfs-adaptive",
    "hmacfs-2workers",
)
#: What a run without ``--servers`` compares: the single-process servers.
DEFAULT_SERVERS = SERVER_NAMES[:4]
PEERS = ("nginx", "prosody")


@frozen
class FileSpec:
    """A file a workload is about to upload: its name, size and type."""

    name: str
    size: int
    content_type: str = "application/octet-stream"


class ServerMissing(Exception):
    """A peer is not installed; ``bench/setup-peers`` installs it."""


def free_port() -> int:
    """A TCP port nothing listens on now, for servers that cannot take port 0."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    text = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    process.kill()
    raise RuntimeError(f"server on port {port} did not start:\n{text}")


#: What a Twisted worker waits in once it accepts connections: epoll, or the
#: poll and select reactors.
_IDLE_IN_REACTOR = ("do_epoll_wait", "ep_poll", "do_sys_poll", "do_select")


def _wait_for_workers(supervisor: int, count: int) -> None:
    """Wait until ``count`` workers have started and wait in their reactors.

    The supervisor announces the address before it starts the workers, and a
    worker takes about a second to import hmacfs: a measurement started at once
    would time the workers' start-up, and read CPU and memory of none of them.
    """
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        workers = children_of(supervisor)
        if len(workers) == count and all(_idle(pid) for pid in workers):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{count} workers of pid {supervisor} did not start")


def _idle(pid: int) -> bool:
    try:
        waiting = Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return False
    # "0": the kernel hides where processes wait; then having started is enough.
    return waiting in _IDLE_IN_REACTOR or waiting == "0"


def _stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _empty(directory: Path) -> None:
    """Remove the files in ``directory``, keeping the directory tree."""
    for path in directory.rglob("*"):
        if path.is_file() or path.is_symlink():
            path.unlink(missing_ok=True)


class Server:
    """One server under test. Subclasses start it and hand out upload slots."""

    name: str = ""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def pids(self) -> list[int]:
        """Every process serving requests, for CPU and memory accounting."""
        raise NotImplementedError

    def slots(self, files: Sequence[FileSpec]) -> list[Slot]:
        """Upload slots for ``files``, each usable once, in the same order."""
        raise NotImplementedError

    def clear_files(self) -> None:
        """Delete the uploaded files, so storage does not fill over a run."""
        raise NotImplementedError

    def version(self) -> str:
        raise NotImplementedError


class Nginx(Server):
    """nginx with ``dav_methods PUT``: what a C server does on this machine."""

    name = "nginx"

    def start(self) -> None:
        if shutil.which("nginx") is None:
            raise ServerMissing("nginx is not installed: run bench/setup-peers")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.root = self.workdir / "root"
        self.root.mkdir(exist_ok=True)
        # Request bodies are spooled here, then renamed into place: it must be
        # on the same filesystem as the root for the rename to be free.
        temp = self.workdir / "temp"
        temp.mkdir(exist_ok=True)
        self.port = free_port()
        self.log = self.workdir / "error.log"
        config = self.workdir / "nginx.conf"
        config.write_text(
            f"""
daemon off;
master_process on;
worker_processes 1;
user root;
pid {self.workdir}/nginx.pid;
error_log {self.log} warn;
events {{ worker_connections 4096; }}
http {{
    access_log {self.workdir}/access.log;
    sendfile on;
    client_max_body_size 0;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    server {{
        listen 127.0.0.1:{self.port} backlog=1024;
        root {self.root};
        location / {{
            dav_methods PUT;
            create_full_put_path on;
        }}
    }}
}}
"""
        )
        self.process = subprocess.Popen(
            ["nginx", "-c", str(config), "-p", str(self.workdir), "-e", str(self.log)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for_port(self.port, self.process, self.log)

    def stop(self) -> None:
        _stop(self.process)

    def pids(self) -> list[int]:
        return [self.process.pid, *children_of(self.process.pid)]

    def slots(self, files: Sequence[FileSpec]) -> list[Slot]:
        return [
            Slot(
                host="127.0.0.1",
                port=self.port,
                put_target=f"/{encode_path(spec.name)}",
                get_target=f"/{encode_path(spec.name)}",
                host_header=f"127.0.0.1:{self.port}",
                size=spec.size,
                content_type=spec.content_type,
            )
            for spec in files
        ]

    def clear_files(self) -> None:
        _empty(self.root)

    def version(self) -> str:
        answer = subprocess.run(
            ["nginx", "-v"], capture_output=True, text=True, check=False
        )
        return answer.stderr.strip().removeprefix("nginx version: ")


PROSODY_CONFIG = """\
-- Written by hmacfs's benchmark suite for one run; not a deployment.
run_as_root = true
pidfile = "{workdir}/prosody.pid"
data_path = "{data}"
log = {{ info = "{workdir}/prosody.log" }}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {c2s_port} }}
c2s_direct_tls_ports = {{ }}
s2s_ports = {{ }}
https_ports = {{ }}
component_ports = {{ }}
http_ports = {{ {http_port} }}
http_interfaces = {{ "127.0.0.1" }}
certificates = "{workdir}/certs"
c2s_require_encryption = false
{network_settings}
modules_enabled = {{ "saslauth", "disco" }}
modules_disabled = {{ "tls", "s2s" }}

VirtualHost "{domain}"
    authentication = "anonymous"

Component "{upload_domain}" "http_file_share"
    http_host = "{upload_domain}"
    http_file_share_size_limit = {max_upload}
    http_file_share_daily_quota = {quota}
    http_file_share_expires_after = -1
"""

NS_UPLOAD = "urn:xmpp:http:upload:0"

#: Prosody's epoll loop sleeps at least ``min_wait`` (1 ms) whenever a timer is
#: due, and it sets one after every 4 KiB it takes from a socket that still has
#: data: a single upload then crawls at about 4 MB/s on loopback while the
#: process idles. Lowering the floor lets Prosody go as fast as its CPU allows,
#: so hmacfs is compared with Prosody at its best (``--prosody-as-shipped``
#: keeps the default).
PROSODY_TUNING = "network_settings = { min_wait = 0.00001 }"

#: Slot requests in flight at once: enough to keep Prosody busy, few enough that
#: slixmpp does not spend its time matching replies to waiting handlers.
SLOT_WINDOW = 16


class Prosody(Server):
    """Prosody 0.12's ``mod_http_file_share``, the XMPP world's own uploader."""

    name = "prosody"
    domain = "localhost"
    upload_domain = "upload.localhost"

    def __init__(self, workdir: Path, as_shipped: bool = False) -> None:
        super().__init__(workdir)
        self.as_shipped = as_shipped

    def start(self) -> None:
        if shutil.which("prosody") is None:
            raise ServerMissing("prosody is not installed: run bench/setup-peers")
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "certs").mkdir(exist_ok=True)
        self.data = self.workdir / "data"
        self.data.mkdir(exist_ok=True)
        self.c2s_port, self.http_port = free_port(), free_port()
        config = self.workdir / "prosody.cfg.lua"
        config.write_text(
            PROSODY_CONFIG.format(
                workdir=self.workdir,
                data=self.data,
                c2s_port=self.c2s_port,
                http_port=self.http_port,
                domain=self.domain,
                upload_domain=self.upload_domain,
                max_upload=MAX_UPLOAD,
                quota=1024**5,
                network_settings="" if self.as_shipped else PROSODY_TUNING,
            )
        )
        self.process = subprocess.Popen(
            ["prosody", "--config", str(config), "-F"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        log = self.workdir / "prosody.log"
        _wait_for_port(self.http_port, self.process, log)
        _wait_for_port(self.c2s_port, self.process, log)

    def stop(self) -> None:
        _stop(self.process)

    def pids(self) -> list[int]:
        return [self.process.pid]

    def slots(self, files: Sequence[FileSpec]) -> list[Slot]:
        answers = asyncio.run(self._request_slots(files))
        slots = []
        for spec, (put_url, headers, get_url) in zip(files, answers, strict=True):
            put, get = urlsplit(put_url), urlsplit(get_url)
            slots.append(
                Slot(
                    host="127.0.0.1",
                    port=self.http_port,
                    put_target=put.path,
                    get_target=get.path,
                    host_header=put.netloc,
                    size=spec.size,
                    content_type=spec.content_type,
                    headers=tuple(headers),
                )
            )
        return slots

    async def _request_slots(
        self, files: Sequence[FileSpec]
    ) -> list[tuple[str, list[tuple[str, str]], str]]:
        # Imported here: only a run that includes Prosody needs slixmpp.
        from slixmpp import ClientXMPP

        client = ClientXMPP(self.domain, "")
        client.enable_starttls = False
        client.enable_direct_tls = False
        client.enable_plaintext = True
        ready = asyncio.get_running_loop().create_future()
        client.add_event_handler("session_start", lambda _: ready.set_result(None))
        client.connect("127.0.0.1", self.c2s_port)
        await asyncio.wait_for(ready, 20)

        window = asyncio.Semaphore(SLOT_WINDOW)

        async def request(spec: FileSpec) -> tuple[str, list[tuple[str, str]], str]:
            asked = client.make_iq_get(ito=self.upload_domain)
            element = ElementTree.Element(
                f"{{{NS_UPLOAD}}}request",
                {
                    "filename": spec.name.rsplit("/", 1)[-1],
                    "size": str(spec.size),
                    "content-type": spec.content_type,
                },
            )
            asked.append(element)
            async with window:
                answer = await asked.send(timeout=60)
            slot = answer.xml.find(f"{{{NS_UPLOAD}}}slot")
            assert slot is not None, answer
            put = slot.find(f"{{{NS_UPLOAD}}}put")
            get = slot.find(f"{{{NS_UPLOAD}}}get")
            assert put is not None and get is not None, answer
            headers = [
                (header.get("name", ""), header.text or "")
                for header in put.findall(f"{{{NS_UPLOAD}}}header")
            ]
            return put.get("url", ""), headers, get.get("url", "")

        try:
            return await asyncio.gather(*(request(spec) for spec in files))
        finally:
            client.disconnect()
            await client.disconnected

    def clear_files(self) -> None:
        for directory in self.data.glob("*/http_file_share"):
            _empty(directory)

    def version(self) -> str:
        # `prosody --version` starts a server in 0.12; ask the package instead.
        answer = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", "prosody"],
            capture_output=True,
            text=True,
            check=False,
        )
        version = answer.stdout.strip() or "unknown"
        if self.as_shipped:
            return version
        return f"{version}, with `{PROSODY_TUNING}` (see bench/README.md)"


class Hmacfs(Server):
    """The real ``hmacfs serve``: baseline or adaptive, one process or several."""

    def __init__(self, workdir: Path, adaptive: bool, workers: int = 1) -> None:
        super().__init__(workdir)
        self.adaptive = adaptive
        self.workers = workers
        if workers > 1:
            self.name = f"hmacfs-{workers}workers"
        else:
            self.name = "hmacfs-adaptive" if adaptive else "hmacfs-baseline"
        self.server: RunningServer | None = None

    def start(self) -> None:
        switch = "true" if self.adaptive else "false"
        self.server = start_server(
            self.workdir,
            f"workers = {self.workers}\n"
            f'max_upload_size = "{MAX_UPLOAD}B"\n'
            f"[performance]\nadaptive_buffers = {switch}\n",
        )
        # The child's log is read by a thread of this process; keep only a
        # little of it, so a long run does not grow this process's memory.
        self.server.lines.clear()
        if self.workers > 1:
            _wait_for_workers(self.server.process.pid, self.workers)

    def stop(self) -> None:
        if self.server is not None:
            stop_quietly(self.server)

    def pids(self) -> list[int]:
        """The process, or the supervisor and its workers, summed as nginx's."""
        assert self.server is not None
        supervisor = self.server.process.pid
        if self.workers == 1:
            return [supervisor]
        return [supervisor, *children_of(supervisor)]

    def slots(self, files: Sequence[FileSpec]) -> list[Slot]:
        server = self.server
        assert server is not None
        return [
            Slot(
                host=server.host,
                port=server.port,
                put_target=server.signed(spec.name, spec.size),
                get_target=f"/{encode_path(spec.name)}",
                host_header=f"{server.host}:{server.port}",
                size=spec.size,
                content_type=spec.content_type,
            )
            for spec in files
        ]

    def clear_files(self) -> None:
        assert self.server is not None
        _empty(self.server.storage)
        del self.server.lines[:]

    def version(self) -> str:
        return hmacfs_version


def make_server(name: str, storage: Path, prosody_as_shipped: bool = False) -> Server:
    """The server called ``name``, to run in a directory of its own."""
    workdir = storage / name
    if name == "nginx":
        return Nginx(workdir)
    if name == "prosody":
        return Prosody(workdir, as_shipped=prosody_as_shipped)
    if name in ("hmacfs-baseline", "hmacfs-adaptive"):
        return Hmacfs(workdir, adaptive=name == "hmacfs-adaptive")
    if name == "hmacfs-2workers":
        return Hmacfs(workdir, adaptive=False, workers=2)
    raise ValueError(f"unknown server {name!r} (choose from {', '.join(SERVER_NAMES)})")
