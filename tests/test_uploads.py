"""PUT on signed slot URLs against the real server: the answer table of
PROTOCOLS.md, early refusals, cut connections, races and names."""

from __future__ import annotations

import os
import threading
import time

import pytest
from serverproc import RunningServer, raw_exchange, status_of

from hmacfs_core.paths import encode_path

JPEG = bytes(range(256)) * 90


def _unique(name: str) -> str:
    return f"{os.urandom(6).hex()}/{name}"


@pytest.mark.parametrize("protocol", ["v1", "v2", "token", "v3"])
def test_each_signature_scheme_stores_the_file_and_answers_201(
    server: RunningServer, protocol: str
) -> None:
    path = _unique("catmetal.jpg")

    answer = server.put(path, JPEG, content_type="image/jpeg", protocol=protocol)
    fetched = server.get(path)

    assert answer.status == 201
    assert fetched.status == 200
    assert fetched.body == JPEG
    assert fetched.header("content-type") == "image/jpeg"


def test_a_wrong_mac_is_refused_with_403(server: RunningServer) -> None:
    path = _unique("x.bin")
    target = server.signed(path, 10).replace("v=", "v=00")

    answer = server.request("PUT", target, b"0123456789")

    assert answer.status == 403
    assert server.get(path).status == 404


def test_a_missing_signature_is_refused_with_403(server: RunningServer) -> None:
    answer = server.request("PUT", f"/{_unique('x.bin')}", b"0123456789")

    assert answer.status == 403
    assert b"missing signature" in answer.body


def test_a_size_other_than_the_signed_one_is_refused_with_403(
    server: RunningServer,
) -> None:
    path = _unique("x.bin")
    target = server.signed(path, 11)

    answer = server.request("PUT", target, b"0123456789")

    assert answer.status == 403


def test_a_v2_type_other_than_the_signed_one_is_refused_with_403(
    server: RunningServer,
) -> None:
    path = _unique("x.jpg")
    target = server.signed(path, 4, protocol="v2", content_type="image/jpeg")

    answer = server.request("PUT", target, b"abcd", {"Content-Type": "image/png"})

    assert answer.status == 403


def test_v2_without_a_content_type_is_checked_against_octet_stream(
    server: RunningServer,
) -> None:
    path = _unique("x.bin")
    target = server.signed(
        path, 4, protocol="v2", content_type="application/octet-stream"
    )

    answer = server.request("PUT", target, b"abcd")

    assert answer.status == 201


def test_an_expired_v3_url_is_refused_with_403(server: RunningServer) -> None:
    path = _unique("x.bin")
    target = server.signed(path, 4, protocol="v3", expires=int(time.time()) - 1)

    answer = server.request("PUT", target, b"abcd")

    assert answer.status == 403
    assert b"expired" in answer.body


def test_a_body_over_the_maximum_is_refused_with_413(make_server) -> None:
    small = make_server('max_upload_size = "1KiB"')
    path = _unique("big.bin")

    answer = small.put(path, b"x" * 1025)

    assert answer.status == 413
    assert small.get(path).status == 404


def test_a_chunked_body_is_refused_with_411(server: RunningServer) -> None:
    target = server.signed(_unique("x.bin"), 4)
    request = (
        f"PUT {target} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        "4\r\nabcd\r\n0\r\n\r\n"
    ).encode()

    with server.connect() as sock:
        raw = raw_exchange(sock, request)

    assert status_of(raw) == 411


def test_an_existing_file_of_another_size_is_refused_with_409_from_the_headers(
    server: RunningServer,
) -> None:
    path = _unique("x.bin")
    assert server.put(path, b"first").status == 201
    target = server.signed(path, 6)
    headers = (
        f"PUT {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n"
        "Expect: 100-continue\r\n\r\n"
    ).encode()

    with server.connect() as sock:
        raw = raw_exchange(sock, headers)

    assert status_of(raw) == 409
    assert server.get(path).body == b"first"


def test_identical_bytes_to_an_existing_file_answer_201_again(
    server: RunningServer,
) -> None:
    path = _unique("photo.jpg")
    first = server.put(path, JPEG, content_type="image/jpeg")

    retry = server.put(path, JPEG, content_type="image/jpeg")

    assert (first.status, retry.status) == (201, 201)
    assert server.get(path).body == JPEG


def test_different_bytes_of_the_same_size_answer_409_and_keep_the_original(
    server: RunningServer,
) -> None:
    path = _unique("photo.jpg")
    server.put(path, b"a" * 100)

    answer = server.put(path, b"b" * 100)

    assert answer.status == 409
    assert server.get(path).body == b"a" * 100
    assert server.staged_files() == []


@pytest.mark.parametrize("method", ["DELETE", "POST", "PATCH"])
def test_other_methods_get_405_with_allow(server: RunningServer, method: str) -> None:
    answer = server.request(method, f"/{_unique('x.bin')}", b"")

    assert answer.status == 405
    assert set(answer.header("allow").replace(" ", "").split(",")) >= {
        "GET",
        "HEAD",
        "PUT",
        "OPTIONS",
    }


def test_a_refusal_arrives_before_the_body_is_sent(server: RunningServer) -> None:
    target = server.signed(_unique("x.bin"), 5_000_000).replace("v=", "v=ff")
    headers = (
        f"PUT {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n"
        "Expect: 100-continue\r\n\r\n"
    ).encode()

    with server.connect() as sock:
        raw = raw_exchange(sock, headers)

    assert status_of(raw) == 403
    assert b"100 Continue" not in raw


@pytest.mark.parametrize(
    ("make_target", "method", "status"),
    [
        (lambda s, p: s.signed(p, 5_000_000), "PUT", 413),
        (lambda s, p: s.signed(p, 5_000_000).replace("v=", "v=0"), "PUT", 403),
        (lambda s, p: "/a/%2e%2e/x" + s.signed(p, 5_000_000)[1:], "PUT", 400),
        (lambda s, p: s.signed(p, 5_000_000), "POST", 405),
    ],
)
def test_every_refusal_from_the_headers_comes_before_the_body(
    make_server, make_target, method: str, status: int
) -> None:
    small = make_server('max_upload_size = "1MiB"')
    target = make_target(small, _unique("big.bin"))
    headers = (
        f"{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n"
        "Expect: 100-continue\r\n\r\n"
    ).encode()

    with small.connect() as sock:
        raw = raw_exchange(sock, headers)

    assert status_of(raw) == status
    assert b"100 Continue" not in raw
    assert small.staged_files() == []


def test_an_accepted_upload_gets_100_continue_before_its_body(
    server: RunningServer,
) -> None:
    path = _unique("x.bin")
    target = server.signed(path, 4)
    headers = (
        f"PUT {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
        "Expect: 100-continue\r\n\r\n"
    ).encode()

    with server.connect() as sock:
        sock.sendall(headers)
        interim = sock.recv(1024)
        final = raw_exchange(sock, b"abcd", read_until_close=False)

    assert interim.startswith(b"HTTP/1.1 100 Continue")
    assert status_of(final) == 201


def test_a_refused_upload_whose_client_sends_the_body_anyway_is_answered_cleanly(
    server: RunningServer,
) -> None:
    path = _unique("x.bin")
    body = os.urandom(2_000_000)
    target = server.signed(path, len(body)).replace("v=", "v=aa")

    answer = server.request("PUT", target, body)

    assert answer.status == 403
    assert server.get(path).status == 404


def test_a_cut_upload_leaves_nothing_and_the_same_url_then_succeeds(
    server: RunningServer,
) -> None:
    path = _unique("video.mp4")
    body = os.urandom(3_000_000)
    target = server.signed(path, len(body))
    headers = f"PUT {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"

    with server.connect() as sock:
        sock.sendall(headers.encode() + body[:1_500_000])
        time.sleep(0.2)
    _wait_until(lambda: server.staged_files() == [])
    missing = server.get(path)
    retry = server.request("PUT", target, body)

    assert missing.status == 404
    assert retry.status == 201
    assert server.get(path).body == body


def test_racing_puts_to_one_url_give_exactly_one_201_and_one_409(
    server: RunningServer,
) -> None:
    path = _unique("race.bin")
    bodies = [b"a" * 500_000, b"b" * 500_000]
    target = server.signed(path, 500_000)
    head = f"PUT {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 500000\r\n\r\n"
    sockets = [server.connect(), server.connect()]
    for sock, body in zip(sockets, bodies, strict=True):
        sock.sendall(head.encode() + body[:-1])
    time.sleep(0.2)

    answers: list[bytes] = [b"", b""]

    def finish(index: int) -> None:
        answers[index] = raw_exchange(
            sockets[index], bodies[index][-1:], read_until_close=False
        )

    threads = [threading.Thread(target=finish, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for sock in sockets:
        sock.close()

    statuses = sorted(status_of(answer) for answer in answers)
    assert statuses == [201, 409]
    assert server.get(path).body in bodies


@pytest.mark.parametrize(
    "name",
    [
        "fäöü ünïcödé.jpg",
        "😀 photo.jpg",
        "a+b&c=d;e#f?g.txt",
        "100% done.txt",
        "double  space.txt",
    ],
)
def test_names_signed_the_way_prosody_signs_them_are_accepted(
    server: RunningServer, name: str
) -> None:
    path = f"{os.urandom(8).hex()}/{name}"

    answer = server.put(path, b"payload", content_type="text/plain", protocol="v2")
    fetched = server.request("GET", f"/{encode_path(path)}")

    assert answer.status == 201
    assert fetched.body == b"payload"


def test_ejabberd_style_paths_with_a_user_directory_are_accepted(
    server: RunningServer,
) -> None:
    path = f"3e1a2b{os.urandom(4).hex()}/0f9c{os.urandom(4).hex()}/My_holiday_pic.jpg"

    assert server.put(path, JPEG).status == 201


@pytest.mark.parametrize(
    "target",
    [
        "/../outside.txt",
        "/a/%2e%2e/%2e%2e/outside.txt",
        "/a%2F..%2Foutside.txt",
        "/a/..%5Coutside.txt",
        "/a//b.txt",
        "/a/b%00.txt",
        "/a/" + "n" * 300,
    ],
)
def test_unsafe_names_are_refused_and_nothing_is_written_outside_the_store(
    server: RunningServer, target: str
) -> None:
    before = set(server.storage.parent.rglob("*"))

    answer = server.request("PUT", f"{target}?v={'0' * 64}", b"evil")
    fetched = server.request("GET", target)

    assert answer.status == 400
    assert fetched.status == 404
    assert set(server.storage.parent.rglob("*")) - before == set()


def test_a_symlink_in_the_store_is_never_followed(server: RunningServer) -> None:
    secret_file = server.storage.parent / "outside-secret.txt"
    secret_file.write_text("do not serve me")
    link_dir = f"link{os.urandom(4).hex()}"
    (server.storage / "files" / link_dir).symlink_to(server.storage.parent)

    fetched = server.get(f"{link_dir}/outside-secret.txt")
    stored = server.put(f"{link_dir}/new.txt", b"evil")

    assert fetched.status == 404
    assert stored.status == 400
    assert not (server.storage.parent / "new.txt").exists()


@pytest.mark.parametrize("internal", ["staging", "meta", "files"])
def test_internal_state_is_not_reachable_by_url(
    server: RunningServer, internal: str
) -> None:
    path = _unique("x.txt")
    server.put(path, b"data")

    fetched = server.request("GET", f"/{internal}/{path}")
    meta = server.request("GET", f"/{path}.json")

    assert fetched.status == 404
    assert meta.status == 404


def test_a_directory_is_404_and_never_listed(server: RunningServer) -> None:
    path = _unique("x.txt")
    server.put(path, b"data")

    answer = server.request("GET", "/" + path.split("/")[0])
    slash = server.request("GET", "/" + path.split("/")[0] + "/")

    assert answer.status == 404
    assert slash.status == 404


def test_options_preflight_answers_with_allow(server: RunningServer) -> None:
    answer = server.request("OPTIONS", f"/{_unique('x.bin')}")

    assert answer.status in (200, 204)
    assert "PUT" in answer.header("allow")


def test_cors_preflight_allows_only_configured_origins(make_server) -> None:
    cors = make_server('[downloads]\nallowed_origins = ["https://chat.example.org"]')
    path = f"/{_unique('x.bin')}"
    preflight = {
        "Origin": "https://chat.example.org",
        "Access-Control-Request-Method": "PUT",
    }

    allowed = cors.request("OPTIONS", path, headers=preflight)
    other = cors.request(
        "OPTIONS", path, headers={**preflight, "Origin": "https://evil.example"}
    )

    assert allowed.header("access-control-allow-origin") == "https://chat.example.org"
    assert "PUT" in allowed.header("access-control-allow-methods")
    assert "POST" in allowed.header("access-control-allow-methods")
    assert "Authorization" in allowed.header("access-control-allow-headers")
    assert other.header("access-control-allow-origin") is None


def test_each_transfer_is_logged_once_without_its_mac_or_the_secret(
    server: RunningServer,
) -> None:
    path = _unique("logged.txt")
    target = server.signed(path, 4)
    mac = target.split("=", 1)[1]

    server.request("PUT", target, b"abcd")
    line = server.wait_for_log(rf"PUT /{path.split('/')[0]}/logged\.txt 201 4 bytes")

    assert "from 127.0.0.1" in line.string[line.start() :].splitlines()[0]
    assert mac not in server.log_text()
    assert server.secret.decode() not in server.log_text()


def _wait_until(condition, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)
