"""``POST /upload``: forms of one or more files, as web and scripted clients send
them, against the real server."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import quote

import pytest
from serverproc import (
    SECRET,
    Response,
    RunningServer,
    listening_address,
    raw_exchange,
    start_server,
    status_of,
    stop_quietly,
)

from hmacfs_core.config import ConfigError, parse_config
from hmacfs_core.signatures import signed_query

TOKEN = "form-upload-token-0123456789"
WITH_TOKEN = f"[security]\nsecret = {json.dumps(SECRET)}\nupload_token = '{TOKEN}'\n"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
AUTH = f"Authorization: Bearer {TOKEN}\r\n"
MULTIPART = "multipart/form-data; boundary=xyz"

#: (form field, file name, bytes, part Content-Type or None)
FormFile = tuple[str, str, bytes, str | None]


@pytest.fixture(scope="module")
def form_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server that also accepts ``security.upload_token`` as a bearer token."""
    running = start_server(tmp_path_factory.mktemp("forms"), WITH_TOKEN)
    yield running
    stop_quietly(running)


def _unique(name: str = "") -> str:
    return os.urandom(6).hex() + (f"/{name}" if name else "")


def form_body(
    files: Sequence[FormFile],
    fields: Sequence[tuple[str, bytes]] = (),
    boundary: str | None = None,
) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body as RFC 7578 lays it out, and its type."""
    boundary = boundary or f"----hmacfs{os.urandom(8).hex()}"
    body = bytearray()
    for name, value in fields:
        body += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
        ).encode()
        body += value + b"\r\n"
    for field, filename, data, content_type in files:
        body += (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        ).encode()
        if content_type is not None:
            body += f"Content-Type: {content_type}\r\n".encode()
        body += b"\r\n" + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return bytes(body), f"multipart/form-data; boundary={boundary}"


def signed_target(
    server: RunningServer,
    directory: str,
    route: str = "/upload",
    expires: int | None = None,
    method: str = "POST",
) -> str:
    """A form upload target signed with v3 over ``method`` and ``directory``."""
    query = signed_query(
        server.secret,
        "v3",
        method=method,
        path=directory,
        size=0,
        content_type=None,
        expires=expires or int(time.time()) + 3600,
    )
    return f"{route}?dir={quote(directory, safe='')}&{query}"


def bearer_target(directory: str, route: str = "/upload") -> str:
    return f"{route}?dir={quote(directory, safe='')}"


def post_form(
    server: RunningServer,
    target: str,
    files: Sequence[FormFile],
    headers: dict[str, str] | None = None,
    fields: Sequence[tuple[str, bytes]] = (),
) -> Response:
    body, content_type = form_body(files, fields)
    return server.request(
        "POST", target, body, {"Content-Type": content_type, **(headers or {})}
    )


def form_head(target: str, length: int, content_type: str, extra: str = "") -> bytes:
    return (
        f"POST {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n"
        f"Content-Type: {content_type}\r\n{extra}\r\n"
    ).encode()


def files_of(answer: Response) -> list[dict[str, object]]:
    document = json.loads(answer.body)
    assert answer.header("content-type") == "application/json"
    return document["files"]


def wait_until_nothing_staged(server: RunningServer, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while server.staged_files() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.staged_files() == []


def stored_under(server: RunningServer, directory: str) -> list[Path]:
    return [p for p in server.stored_files() if directory in p.parts]


# -- storing ----------------------------------------------------------------


def test_two_files_are_stored_with_their_bytes_types_and_hashes(
    form_server: RunningServer,
) -> None:
    directory = _unique()
    photo = os.urandom(300_000)
    files = [
        ("first", "notes.txt", b"hello, form\n", "text/plain"),
        ("second", "photo.jpg", photo, "image/jpeg"),
    ]

    answer = post_form(form_server, bearer_target(directory), files, BEARER)

    assert answer.status == 201
    assert files_of(answer) == [
        {
            "name": name,
            "path": f"{directory}/{name}",
            "url": f"/{directory}/{name}",
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "status": 201,
        }
        for _, name, data, _ in files
    ]
    for _, name, data, content_type in files:
        fetched = form_server.get(f"{directory}/{name}")
        assert fetched.body == data
        assert fetched.header("content-type") == content_type


def test_a_file_part_without_a_type_is_stored_as_octet_stream(
    form_server: RunningServer,
) -> None:
    directory = _unique()

    answer = post_form(
        form_server, bearer_target(directory), [("f", "blob", b"\0\1\2", None)], BEARER
    )

    assert answer.status == 201
    stored = form_server.get(f"{directory}/blob")
    assert stored.header("content-type") == "application/octet-stream"


def test_the_answer_gives_percent_encoded_urls_that_serve_the_files(
    form_server: RunningServer,
) -> None:
    directory = _unique()
    name = "Ünï cøde+&=;#?.txt"

    answer = post_form(
        form_server, bearer_target(directory), [("f", name, b"x", None)], BEARER
    )

    (entry,) = files_of(answer)
    assert entry["url"] == (
        f"/{directory}/%c3%9cn%c3%af%20c%c3%b8de%2b%26%3d%3b%23%3f.txt"
    )
    assert entry["path"] == f"{directory}/{name}"
    assert form_server.request("GET", str(entry["url"])).body == b"x"


def test_fields_are_ignored_and_empty_file_inputs_are_no_files(
    form_server: RunningServer,
) -> None:
    directory = _unique()
    files = [("empty", "", b"", "application/octet-stream"), ("f", "a.txt", b"a", None)]

    answer = post_form(
        form_server,
        bearer_target(directory),
        files,
        BEARER,
        fields=[("comment", b"x" * 60_000)],
    )

    assert answer.status == 201
    assert [entry["name"] for entry in files_of(answer)] == ["a.txt"]
    assert [p.name for p in stored_under(form_server, directory)] == ["a.txt"]


def test_a_form_without_a_file_is_refused(form_server: RunningServer) -> None:
    answer = post_form(
        form_server, bearer_target(_unique()), [], BEARER, fields=[("a", b"b")]
    )

    assert answer.status == 400
    assert b"no file" in answer.body


def test_a_form_field_over_64KiB_refuses_the_form_and_keeps_nothing(
    form_server: RunningServer,
) -> None:
    directory = _unique()

    answer = post_form(
        form_server,
        bearer_target(directory),
        [("f", "a.txt", os.urandom(2_000_000), None)],
        BEARER,
        fields=[("comment", b"x" * (64 * 1024 + 1))],
    )

    assert answer.status == 400
    assert stored_under(form_server, directory) == []
    wait_until_nothing_staged(form_server)


# -- authorization ------------------------------------------------------------


def test_a_v3_signature_over_post_and_the_directory_authorizes_the_form(
    server: RunningServer,
) -> None:
    directory = f"{_unique()}/nested dir"

    answer = post_form(
        server, signed_target(server, directory), [("f", "a.txt", b"signed", None)]
    )

    assert answer.status == 201
    assert server.get(f"{directory}/a.txt").body == b"signed"


@pytest.mark.parametrize(
    ("make_target", "reason"),
    [
        (lambda s, d: signed_target(s, "elsewhere").replace("elsewhere", d), b"bad"),
        (lambda s, d: signed_target(s, d, method="PUT"), b"bad signature"),
        (lambda s, d: signed_target(s, d, expires=int(time.time()) - 5), b"expired"),
        (lambda s, d: signed_target(s, d).replace("v3=", "v3=0"), b"bad signature"),
        (lambda s, d: bearer_target(d), b"missing signature"),
    ],
    ids=["other-directory", "signed-for-put", "expired", "wrong-mac", "none"],
)
def test_a_form_without_a_valid_signature_is_refused_403(
    server: RunningServer, make_target, reason: bytes
) -> None:
    directory = _unique()

    answer = post_form(
        server, make_target(server, directory), [("f", "a.txt", b"x", None)]
    )

    assert answer.status == 403
    assert reason in answer.body
    assert stored_under(server, directory) == []


def test_a_bearer_token_is_refused_where_none_is_configured(
    server: RunningServer,
) -> None:
    answer = post_form(
        server, bearer_target(_unique()), [("f", "a.txt", b"x", None)], BEARER
    )

    assert answer.status == 403


def test_a_wrong_bearer_token_or_none_at_all_answers_401_with_a_challenge(
    form_server: RunningServer,
) -> None:
    target = bearer_target(_unique())
    files = [("f", "a.txt", b"x", None)]

    wrong = post_form(form_server, target, files, {"Authorization": "Bearer nope"})
    missing = post_form(form_server, target, files)

    assert (wrong.status, missing.status) == (401, 401)
    assert (wrong.header("www-authenticate") or "").startswith("Bearer ")
    assert (missing.header("www-authenticate") or "").startswith("Bearer ")


def test_a_signed_form_url_works_beside_a_proxy_basic_login(
    form_server: RunningServer,
) -> None:
    directory = _unique()

    answer = post_form(
        form_server,
        signed_target(form_server, directory),
        [("f", "a.txt", b"x", None)],
        {"Authorization": "Basic dXNlcjpwYXNz"},
    )

    assert answer.status == 201


def test_an_upload_token_shorter_than_16_characters_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("[security]\nupload_token = 'short'\n")

    assert [p.where for p in caught.value.problems] == ["security.upload_token"]


# -- refusals from the headers ------------------------------------------------


@pytest.mark.parametrize(
    ("target", "content_type", "extra", "status"),
    [
        (bearer_target("d"), MULTIPART, AUTH.replace(TOKEN, "wrong-token"), 401),
        (bearer_target("d"), MULTIPART, "", 401),
        ("/upload", MULTIPART, AUTH, 400),
        (bearer_target(".."), MULTIPART, AUTH, 400),
        (bearer_target("d"), "application/octet-stream", AUTH, 400),
        (bearer_target("d"), "multipart/form-data", AUTH, 400),
        (bearer_target("d", "/upload/adaptive"), MULTIPART, AUTH, 404),
    ],
    ids=[
        "wrong-token",
        "no-credentials",
        "no-dir",
        "unsafe-dir",
        "not-a-form",
        "no-boundary",
        "adaptive-route-off",
    ],
)  # fmt: skip
def test_every_refusal_from_the_headers_comes_before_the_body(
    form_server: RunningServer, target: str, content_type: str, extra: str, status: int
) -> None:
    head = form_head(
        target, 5_000_000, content_type, "Expect: 100-continue\r\n" + extra
    )

    with form_server.connect() as sock:
        raw = raw_exchange(sock, head)

    assert status_of(raw) == status
    assert b"100 Continue" not in raw
    assert form_server.staged_files() == []


def test_a_form_larger_than_max_upload_size_is_refused_413_before_the_body(
    make_server,
) -> None:
    small = make_server('max_upload_size = "1MiB"\n' + WITH_TOKEN)
    head = form_head(
        bearer_target("d"),
        2 * 1024 * 1024,
        MULTIPART,
        "Expect: 100-continue\r\n" + AUTH,
    )

    with small.connect() as sock:
        raw = raw_exchange(sock, head)

    assert status_of(raw) == 413
    assert b"100 Continue" not in raw


def test_an_expired_signature_is_refused_before_the_body(
    form_server: RunningServer,
) -> None:
    target = signed_target(form_server, "d", expires=int(time.time()) - 60)

    with form_server.connect() as sock:
        raw = raw_exchange(
            sock, form_head(target, 5_000_000, MULTIPART, "Expect: 100-continue\r\n")
        )

    assert status_of(raw) == 403
    assert b"100 Continue" not in raw


def test_an_accepted_form_gets_100_continue_before_its_body(
    form_server: RunningServer,
) -> None:
    directory = _unique()
    body, content_type = form_body([("f", "a.txt", b"after continue", None)])
    head = form_head(
        bearer_target(directory),
        len(body),
        content_type,
        "Expect: 100-continue\r\n" + AUTH,
    )

    with form_server.connect() as sock:
        interim = raw_exchange(sock, head, read_until_close=False)
        final = raw_exchange(sock, body, read_until_close=False)

    assert interim.startswith(b"HTTP/1.1 100 Continue")
    assert status_of(final) == 201


def test_a_chunked_form_is_answered_411(form_server: RunningServer) -> None:
    head = (
        f"POST {bearer_target('d')} HTTP/1.1\r\nHost: x\r\n"
        f"Transfer-Encoding: chunked\r\nContent-Type: {MULTIPART}\r\n"
        f"Authorization: Bearer {TOKEN}\r\n\r\n"
    ).encode()

    with form_server.connect() as sock:
        raw = raw_exchange(sock, head)

    assert status_of(raw) == 411


# -- refusals while the body streams -------------------------------------------


@pytest.mark.parametrize(
    "bad_name",
    ["../evil.txt", "..", "a/b.txt", "back\\slash.txt", "C:\\Users\\me\\x.txt"],
)
def test_an_unsafe_file_name_refuses_the_whole_form_and_keeps_nothing(
    form_server: RunningServer, bad_name: str
) -> None:
    directory = _unique()
    files = [
        ("first", "fine.bin", os.urandom(1_500_000), None),
        ("second", bad_name, b"evil", None),
    ]

    answer = post_form(form_server, bearer_target(directory), files, BEARER)

    assert answer.status == 400
    assert b"invalid file name" in answer.body
    assert stored_under(form_server, directory) == []
    assert not (form_server.storage / "files" / "evil.txt").exists()
    wait_until_nothing_staged(form_server)


def test_a_malformed_body_is_refused_and_keeps_nothing(
    form_server: RunningServer,
) -> None:
    directory = _unique()
    body, content_type = form_body([("f", "a.bin", os.urandom(100_000), None)])
    broken = body.replace(b"\r\n\r\n", b"\r\nno header line\r\n\r\n", 1)

    answer = form_server.request(
        "POST",
        bearer_target(directory),
        broken,
        {"Content-Type": content_type, **BEARER},
    )

    assert answer.status == 400
    assert stored_under(form_server, directory) == []


def test_a_body_that_ends_before_the_closing_boundary_is_refused(
    form_server: RunningServer,
) -> None:
    directory = _unique()
    body, content_type = form_body([("f", "a.bin", b"data", None)])
    truncated = body[: body.rindex(b"\r\n--")]

    answer = form_server.request(
        "POST",
        bearer_target(directory),
        truncated,
        {"Content-Type": content_type, **BEARER},
    )

    assert answer.status == 400
    assert b"incomplete" in answer.body
    assert stored_under(form_server, directory) == []
    wait_until_nothing_staged(form_server)


def test_a_form_cut_mid_body_leaves_nothing_in_staging(
    form_server: RunningServer,
) -> None:
    directory = _unique()
    body, content_type = form_body(
        [
            ("first", "done.bin", os.urandom(200_000), None),
            ("second", "cut.bin", os.urandom(6_000_000), None),
        ]
    )
    head = form_head(bearer_target(directory), len(body), content_type, AUTH)

    with form_server.connect() as sock:
        sock.sendall(head + body[: len(body) // 2])
        deadline = time.monotonic() + 10
        while len(form_server.staged_files()) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        staged_while_receiving = len(form_server.staged_files())

    assert staged_while_receiving == 2
    wait_until_nothing_staged(form_server)
    assert stored_under(form_server, directory) == []
    form_server.wait_for_log(r"POST /upload aborted")


# -- the no-overwrite rule --------------------------------------------------------


def test_an_identical_retry_answers_200_and_a_partly_new_one_201(
    form_server: RunningServer,
) -> None:
    directory = _unique()
    first = [("f", "one.bin", os.urandom(50_000), None)]
    second = [("f", "two.bin", os.urandom(50_000), None)]

    created = post_form(form_server, bearer_target(directory), first, BEARER)
    retried = post_form(form_server, bearer_target(directory), first, BEARER)
    extended = post_form(form_server, bearer_target(directory), first + second, BEARER)

    assert (created.status, retried.status, extended.status) == (201, 200, 201)
    assert [e["status"] for e in files_of(retried)] == [201]
    assert [e["status"] for e in files_of(extended)] == [201, 201]


def test_other_bytes_under_a_taken_name_are_409_and_the_others_still_stored(
    form_server: RunningServer,
) -> None:
    directory = _unique()
    original = os.urandom(10_000)
    post_form(
        form_server, bearer_target(directory), [("f", "a.bin", original, None)], BEARER
    )
    files = [
        ("f", "a.bin", os.urandom(10_000), None),
        ("f", "b.bin", b"new", None),
    ]

    mixed = post_form(form_server, bearer_target(directory), files, BEARER)
    only_conflict = post_form(form_server, bearer_target(directory), files[:1], BEARER)

    assert mixed.status == 201
    assert [e["status"] for e in files_of(mixed)] == [409, 201]
    assert only_conflict.status == 409
    assert form_server.get(f"{directory}/a.bin").body == original
    assert form_server.get(f"{directory}/b.bin").body == b"new"


# -- routes and arms ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("performance", "expected"),
    [
        ("", {"/upload": 201, "/upload/adaptive": 404, "/upload/auto": 404}),
        (
            "[performance]\nadaptive_buffers = true\n",
            {"/upload": 201, "/upload/adaptive": 201, "/upload/auto": 404},
        ),
        (
            "[performance]\nadaptive_buffers = true\ntesting_mode = true\n",
            {"/upload": 201, "/upload/adaptive": 201, "/upload/auto": 201},
        ),
    ],
    ids=["adaptive-off", "adaptive-on", "testing-mode"],
)
def test_the_adaptive_form_routes_exist_only_when_switched_on(
    make_server, performance: str, expected: dict[str, int]
) -> None:
    server = make_server(performance)
    statuses = {}
    for route in expected:
        directory = _unique()
        answer = post_form(
            server,
            signed_target(server, directory, route),
            [("f", "a.txt", route.encode(), None)],
        )
        statuses[route] = answer.status

    assert statuses == expected


def test_upload_adaptive_runs_the_adaptive_arm_and_upload_the_baseline(
    make_server,
) -> None:
    server = make_server(
        "[performance]\nadaptive_buffers = true\ntesting_mode = true\n"
    )
    for route in ("/upload", "/upload/adaptive"):
        post_form(
            server,
            signed_target(server, _unique(), route),
            [("f", "a.bin", os.urandom(100_000), None)],
        )

    server.wait_for_log(r"POST /upload 201 \d+ bytes .*\(baseline")
    server.wait_for_log(r"POST /upload/adaptive 201 \d+ bytes .*\(adaptive")


def test_the_transfer_log_counts_the_whole_form_body(
    form_server: RunningServer,
) -> None:
    directory = _unique()
    body, content_type = form_body([("f", "a.bin", os.urandom(12_345), None)])

    form_server.request(
        "POST",
        bearer_target(directory),
        body,
        {"Content-Type": content_type, **BEARER},
    )

    form_server.wait_for_log(rf"POST /upload 201 {len(body)} bytes")


# -- real clients -----------------------------------------------------------------


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_F_uploads_two_files(form_server: RunningServer, tmp_path: Path) -> None:
    directory = _unique()
    (tmp_path / "a.txt").write_bytes(b"from curl\n")
    (tmp_path / "b.bin").write_bytes(os.urandom(2_000_000))

    done = subprocess.run(
        [
            "curl",
            "-sS",
            "-H",
            f"Authorization: Bearer {TOKEN}",
            "-F",
            f"one=@{tmp_path / 'a.txt'};type=text/plain",
            "-F",
            f"two=@{tmp_path / 'b.bin'}",
            "-F",
            "comment=ignored",
            "-w",
            "\n%{http_code}",
            f"http://{form_server.host}:{form_server.port}{bearer_target(directory)}",
        ],
        capture_output=True,
        timeout=60,
        check=True,
    )

    document, _, code = done.stdout.rpartition(b"\n")
    assert code == b"201"
    entries = json.loads(document)["files"]
    assert [(e["name"], e["status"]) for e in entries] == [
        ("a.txt", 201),
        ("b.bin", 201),
    ]
    for name in ("a.txt", "b.bin"):
        data = (tmp_path / name).read_bytes()
        assert form_server.get(f"{directory}/{name}").body == data
    assert form_server.get(f"{directory}/a.txt").header("content-type") == "text/plain"


TREQ_CLIENT = """
    import json, sys
    from io import BytesIO

    import treq
    from twisted.internet.defer import ensureDeferred
    from twisted.internet.task import react

    async def main(reactor):
        answer = await treq.post(
            sys.argv[1],
            headers={"Authorization": sys.argv[2]},
            data={"note": "ignored"},
            files={
                "one": ("treq.txt", "text/plain", BytesIO(b"sent by treq")),
                "two": ("bytes.bin", BytesIO(bytes(range(256)) * 1000)),
            },
        )
        print(answer.code)
        print((await answer.text()))

    react(lambda reactor: ensureDeferred(main(reactor)))
"""


def test_treq_posts_a_form_the_server_stores(
    form_server: RunningServer, tmp_path: Path
) -> None:
    directory = _unique()
    script = tmp_path / "client.py"
    script.write_text(textwrap.dedent(TREQ_CLIENT))
    url = f"http://{form_server.host}:{form_server.port}{bearer_target(directory)}"

    done = subprocess.run(
        [sys.executable, str(script), url, f"Bearer {TOKEN}"],
        capture_output=True,
        text=True,
        timeout=60,
    )

    code, _, document = done.stdout.partition("\n")
    assert code == "201", done.stdout + done.stderr
    names = sorted(e["name"] for e in json.loads(document)["files"])
    assert names == ["bytes.bin", "treq.txt"]
    assert form_server.get(f"{directory}/treq.txt").body == b"sent by treq"
    assert form_server.get(f"{directory}/bytes.bin").body == bytes(range(256)) * 1000


def test_hmacfs_sign_method_post_prints_a_form_url_the_server_accepts(
    server: RunningServer, tmp_path: Path
) -> None:
    directory = f"{_unique()}/signé"
    config = tmp_path / "sign.toml"
    config.write_text(f"[security]\nsecret = {json.dumps(SECRET)}\n", encoding="utf-8")

    signed = subprocess.run(
        [
            sys.executable,
            "-m",
            "hmacfs_core",
            "sign",
            directory,
            "--method",
            "POST",
            "--expires",
            "5m",
            "--config",
            str(config),
            "--base-url",
            f"http://{server.host}:{server.port}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert signed.returncode == 0, signed.stderr
    url = signed.stdout.strip()
    target = url.removeprefix(f"http://{server.host}:{server.port}")

    answer = post_form(server, target, [("f", "a.txt", b"signed by the CLI", None)])

    assert target.startswith("/upload?dir=")
    assert answer.status == 201
    assert server.get(f"{directory}/a.txt").body == b"signed by the CLI"


# -- mounted in another site --------------------------------------------------------

HOST_SITE = """
    from pathlib import Path

    from twisted.internet import reactor
    from twisted.web.resource import Resource
    from twisted.web.server import Request, Site

    from hmacfs_core import StreamingRequest, make_resource
    from hmacfs_core.config import parse_config

    config = parse_config(
        '[server]\\nstorage_path = "{storage}"\\n'
        '[security]\\nupload_token = "{token}"\\n',
        base_dir=Path("{storage}"),
    )
    root = Resource()
    root.putChild(b"files", make_resource(config, "mounted secret"))
    site = Site(root, requestFactory={request_class})
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    print("Listening on http://127.0.0.1:%d/" % port.getHost().port, flush=True)
    reactor.run()
"""


@pytest.mark.parametrize("request_class", ["StreamingRequest", "Request"])
def test_mounted_under_files_the_form_answers_urls_below_the_mount(
    tmp_path: Path, request_class: str
) -> None:
    storage = tmp_path / "store"
    script = tmp_path / "host.py"
    script.write_text(
        textwrap.dedent(HOST_SITE).format(
            storage=storage, token=TOKEN, request_class=request_class
        )
    )
    process = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        address = None
        for line in process.stdout:
            address = listening_address(line)
            if address is not None:
                break
        assert address is not None
        host = RunningServer(
            process=process,
            host=address[0],
            port=address[1],
            storage=storage,
            secret=b"mounted secret",
        )
        data = os.urandom(3_000_000)
        answer = post_form(
            host,
            "/files" + bearer_target("abc"),
            [("f", "x.bin", data, None), ("g", "y.txt", b"y", "text/plain")],
            BEARER,
        )
        entries = files_of(answer)
        fetched = host.request("GET", str(entries[0]["url"]))
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(20)

    assert answer.status == 201
    assert [e["url"] for e in entries] == ["/files/abc/x.bin", "/files/abc/y.txt"]
    assert fetched.body == data
    assert list((storage / "staging").iterdir()) == []


# -- memory --------------------------------------------------------------------------


@pytest.mark.slow
def test_a_100MB_form_upload_streams_with_bounded_memory(make_server) -> None:
    server = make_server('max_upload_size = "1GiB"\n' + WITH_TOKEN)
    directory = _unique()
    block = os.urandom(1 << 20)
    blocks = 100
    boundary = "----hmacfs-memory-test"
    opening = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="f"; filename="movie.mkv"\r\n'
        "Content-Type: video/x-matroska\r\n\r\n"
    ).encode()
    closing = f"\r\n--{boundary}--\r\n".encode()
    length = len(opening) + blocks * len(block) + len(closing)
    digest = hashlib.sha256()
    head = form_head(
        bearer_target(directory),
        length,
        f"multipart/form-data; boundary={boundary}",
        AUTH,
    )

    with server.connect() as sock:
        sock.sendall(head + opening)
        for _ in range(blocks):
            sock.sendall(block)
            digest.update(block)
        sock.sendall(closing)
        answer = raw_exchange(sock, b"", read_until_close=False)
        while not answer.rstrip().endswith(b"}"):
            answer += sock.recv(65536)

    assert status_of(answer) == 201
    (entry,) = json.loads(answer.split(b"\r\n\r\n", 1)[1])["files"]
    assert entry["size"] == blocks * len(block)
    assert entry["sha256"] == digest.hexdigest()
    peak = server.peak_rss_bytes()
    print(f"peak RSS during a 100 MiB form upload: {peak / 2**20:.1f} MiB")
    assert peak < 100 * 1024 * 1024
