"""tus 1.0 resumable uploads against the real server (issue 6, items 1 and 2).

An upload is created with the slot's signed PUT URL behind the tus path, then
carried on by its upload id from any address: these tests cut uploads, kill
the server, race PATCHes, and always compare the stored file's SHA-256.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from serverproc import (
    RunningServer,
    raw_exchange,
    start_server,
    status_of,
    stop_quietly,
)
from tuswire import TUS, TusWire, metadata

from hmacfs_core.config import ConfigError, parse_config
from hmacfs_core.partials import PartialStore, UploadRecord, new_upload_id
from hmacfs_core.storage import Store

MiB = 1024 * 1024
REPOSITORY = Path(__file__).resolve().parent.parent
CHECKPOINT = 256 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    # The lock tests PATCH from several addresses on purpose; taking an upload
    # over from its old address is tested in test_tus_handoff.py.
    running = start_server(
        tmp_path_factory.mktemp("tus"),
        f'[tus]\ncheckpoint_interval = "{CHECKPOINT // 1024}KiB"\n'
        "[handoff]\npause_transfers_on_switch = false\n",
    )
    yield running
    stop_quietly(running)


@pytest.fixture(scope="module")
def wire(server: RunningServer) -> TusWire:
    return TusWire(server.host, server.port)


def unique(name: str) -> str:
    return f"{os.urandom(6).hex()}/{name}"


def create(
    server: RunningServer, wire: TusWire, path: str, length: int, **options: object
) -> str:
    answer = wire.create(server.signed(path, length), length, **options)  # type: ignore[arg-type]
    assert answer.status == 201, answer
    return answer.headers["location"]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stored_sha256(server: RunningServer, path: str) -> str:
    digest = hashlib.sha256()
    with (server.storage / "files" / path).open("rb") as stream:
        for block in iter(lambda: stream.read(MiB), b""):
            digest.update(block)
    return digest.hexdigest()


def record_of(server: RunningServer, location: str) -> dict[str, object]:
    upload_id = location.rsplit("/", 1)[1]
    path = server.storage / "staging" / "tus" / f"{upload_id}.json"
    return json.loads(path.read_text())


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def resume(
    wire: TusWire, location: str, data: bytes, source: str, tries: int = 50
) -> int:
    """HEAD, then PATCH the rest from ``source``, as a client does after a cut.

    A PATCH cut a moment ago may still hold the upload (423) or move its
    offset (409): ask again, as tus clients do.
    """
    for _ in range(tries):
        offset = wire.offset(location, source=source)
        answer = wire.patch(location, offset, data[offset:], source=source)
        if answer.status == 204:
            return offset
        assert answer.status in (409, 423), answer
        time.sleep(0.05)
    raise AssertionError("the upload stayed busy")


# -- a client nobody here wrote -------------------------------------------


def test_tuspy_uploads_20_mb_in_1_mib_chunks_and_the_stored_file_matches(
    server: RunningServer, tmp_path: Path
) -> None:
    from tusclient.client import TusClient

    data = os.urandom(20 * MiB)
    source = tmp_path / "video.mp4"
    source.write_bytes(data)
    path = unique("video.mp4")
    creation_url = f"http://{server.host}:{server.port}/tus" + server.signed(
        path, len(data), protocol="v2", content_type="video/mp4"
    )

    uploader = TusClient(creation_url).uploader(
        file_path=str(source),
        chunk_size=MiB,
        metadata={"filename": "video.mp4", "filetype": "video/mp4"},
        upload_checksum=True,
    )
    uploader.upload()

    assert uploader.offset == len(data)
    assert stored_sha256(server, path) == sha256(data)
    download = server.get(path)
    assert download.status == 200
    assert download.header("content-type") == "video/mp4"


# -- the protocol, request by request -------------------------------------


def test_options_advertises_version_extensions_max_size_and_checksums(
    wire: TusWire,
) -> None:
    answer = wire.request("OPTIONS", "/tus/")

    assert answer.status == 204
    assert answer.headers["tus-resumable"] == "1.0.0"
    assert answer.headers["tus-version"] == "1.0.0"
    assert set(answer.headers["tus-extension"].split(",")) == {
        "creation",
        "creation-with-upload",
        "expiration",
        "checksum",
        "termination",
    }
    assert answer.headers["tus-max-size"] == str(100 * MiB)
    algorithms = answer.headers["tus-checksum-algorithm"].split(",")
    assert {"sha1", "sha256"} <= set(algorithms)


@pytest.mark.parametrize("version", [None, "0.2.2", "2.0.0"])
def test_a_request_in_another_tus_version_is_refused_with_412(
    server: RunningServer, wire: TusWire, version: str | None
) -> None:
    headers = {"Upload-Length": "5"}
    if version is not None:
        headers["Tus-Resumable"] = version
    path = unique("a.txt")
    refused = wire.request("POST", "/tus" + server.signed(path, 5), headers=headers)
    location = create(server, wire, unique("b.txt"), 5)
    head = wire.request("HEAD", location, headers={"Tus-Resumable": version or ""})

    for answer in (refused, head):
        assert answer.status == 412
        assert answer.headers["tus-version"] == "1.0.0"
        assert answer.headers["tus-resumable"] == "1.0.0"


def test_head_reports_the_offset_and_is_not_cached(
    server: RunningServer, wire: TusWire
) -> None:
    sent = metadata(filename="notes.txt", filetype="text/plain")
    location = create(
        server, wire, unique("notes.txt"), 10, headers={"Upload-Metadata": sent}
    )
    assert wire.patch(location, 0, b"0123").status == 204

    head = wire.request("HEAD", location, headers=TUS)

    assert head.status == 200
    assert head.headers["upload-offset"] == "4"
    assert head.headers["upload-length"] == "10"
    assert head.headers["cache-control"] == "no-store"
    assert head.headers["upload-metadata"] == sent
    assert head.headers["tus-resumable"] == "1.0.0"


def test_a_patch_at_the_wrong_offset_is_refused_with_409(
    server: RunningServer, wire: TusWire
) -> None:
    location = create(server, wire, unique("a.bin"), 10)
    assert wire.patch(location, 0, b"01234").status == 204

    for wrong in (0, 3, 7):
        assert wire.patch(location, wrong, b"xyz").status == 409
    assert wire.offset(location) == 5


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "md5"])
def test_a_wrong_checksum_answers_460_and_leaves_the_offset(
    server: RunningServer, wire: TusWire, algorithm: str
) -> None:
    path = unique("checked.bin")
    data = os.urandom(3 * CHECKPOINT)
    location = create(server, wire, path, len(data))
    assert wire.patch(location, 0, data[:1000]).status == 204

    def checksum(chunk: bytes) -> str:
        digest = hashlib.new(algorithm, chunk).digest()
        return f"{algorithm} {base64.b64encode(digest).decode()}"

    wrong = wire.patch(
        location, 1000, data[1000:], headers={"Upload-Checksum": checksum(b"other")}
    )
    assert wrong.status == 460
    assert wire.offset(location) == 1000

    right = wire.patch(
        location, 1000, data[1000:], headers={"Upload-Checksum": checksum(data[1000:])}
    )
    assert right.status == 204
    assert stored_sha256(server, path) == sha256(data)


def test_an_unsupported_checksum_algorithm_is_refused_with_400(
    server: RunningServer, wire: TusWire
) -> None:
    location = create(server, wire, unique("a.bin"), 3)
    answer = wire.patch(location, 0, b"abc", headers={"Upload-Checksum": "crc32 AAAA"})
    assert answer.status == 400
    assert wire.offset(location) == 0


def test_delete_answers_204_and_the_upload_is_gone(
    server: RunningServer, wire: TusWire
) -> None:
    location = create(server, wire, unique("gone.bin"), 10)
    assert wire.patch(location, 0, b"01234").status == 204

    assert wire.request("DELETE", location, headers=TUS).status == 204

    assert wire.request("HEAD", location, headers=TUS).status == 404
    assert wire.patch(location, 5, b"56789").status == 404
    assert wire.request("DELETE", location, headers=TUS).status == 404
    upload_id = location.rsplit("/", 1)[1]
    assert not list((server.storage / "staging" / "tus").glob(f"{upload_id}*"))


def test_creation_with_upload_stores_the_first_bytes(
    server: RunningServer, wire: TusWire
) -> None:
    path = unique("first.bin")
    data = os.urandom(100_000)

    created = wire.create(server.signed(path, len(data)), len(data), body=data[:40_000])

    assert created.status == 201
    assert created.headers["upload-offset"] == "40000"
    location = created.headers["location"]
    assert wire.patch(location, 40_000, data[40_000:]).status == 204
    assert stored_sha256(server, path) == sha256(data)


def test_a_whole_file_in_the_creation_is_published_at_once(
    server: RunningServer, wire: TusWire
) -> None:
    path = unique("small.txt")
    created = wire.create(
        server.signed(path, 5),
        5,
        body=b"hello",
        headers={"Upload-Metadata": metadata(filetype="text/plain")},
    )

    assert created.status == 201
    assert created.headers["upload-offset"] == "5"
    download = server.get(path)
    assert download.body == b"hello"
    assert download.header("content-type") == "text/plain"
    # A client that lost this answer learns from HEAD that nothing is missing.
    assert wire.offset(created.headers["location"]) == 5


def test_upload_expires_is_on_every_answer(
    server: RunningServer, wire: TusWire
) -> None:
    path = unique("e.bin")
    created = wire.create(server.signed(path, 4), 4)
    location = created.headers["location"]
    head = wire.request("HEAD", location, headers=TUS)
    patched = wire.patch(location, 0, b"ab")

    for answer in (created, head, patched):
        expires = answer.headers["upload-expires"]
        assert re.fullmatch(r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT", expires)


def test_a_bad_signature_at_creation_is_refused_before_the_body(
    server: RunningServer,
) -> None:
    target = server.signed(unique("forged.bin"), 1000).replace("v=", "v=00")
    before = set((server.storage / "staging").rglob("*"))

    with server.connect() as sock:
        answer = raw_exchange(
            sock,
            (
                f"POST /tus{target} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
                "Upload-Length: 1000\r\nContent-Length: 1000\r\n"
                "Content-Type: application/offset+octet-stream\r\n"
                "Expect: 100-continue\r\n\r\n"
            ).encode(),
        )

    assert status_of(answer) == 403
    assert b"100 Continue" not in answer
    assert b"tus-resumable: 1.0.0" in answer.lower()
    assert set((server.storage / "staging").rglob("*")) == before


def test_creation_for_an_existing_file_of_another_size_is_refused_with_409(
    server: RunningServer, wire: TusWire
) -> None:
    path = unique("taken.bin")
    assert server.put(path, b"already here").status == 201

    answer = wire.create(server.signed(path, 5), 5)

    assert answer.status == 409


def test_a_different_file_published_meanwhile_makes_the_last_patch_409(
    server: RunningServer, wire: TusWire
) -> None:
    path = unique("raced.bin")
    location = create(server, wire, path, 6)
    assert wire.patch(location, 0, b"abc").status == 204
    assert server.put(path, b"zzzzzz").status == 201

    assert wire.patch(location, 3, b"def").status == 409

    assert server.get(path).body == b"zzzzzz"
    assert wire.request("HEAD", location, headers=TUS).status == 404


def test_a_body_past_upload_length_is_refused_with_413(
    server: RunningServer, wire: TusWire
) -> None:
    location = create(server, wire, unique("short.bin"), 4)

    assert wire.patch(location, 0, b"too long").status == 413
    assert wire.create(server.signed(unique("x.bin"), 2), 2, body=b"abc").status == 413
    assert wire.offset(location) == 0


def test_an_unknown_upload_id_is_404(wire: TusWire) -> None:
    for location in ("/tus/" + new_upload_id(), "/tus/../../etc", "/tus/x"):
        assert wire.request("HEAD", location, headers=TUS).status == 404


def test_a_v3_expiry_is_judged_at_creation_only(
    server: RunningServer, wire: TusWire
) -> None:
    path = unique("late.bin")
    expires = int(time.time()) + 1
    target = server.signed(path, 4, protocol="v3", expires=expires)
    location = wire.create(target, 4).headers["location"]
    time.sleep(max(0.0, expires + 1.1 - time.time()))

    assert wire.create(target, 4).status == 403
    assert wire.patch(location, 0, b"late").status == 204
    assert server.get(path).body == b"late"


def test_v2_signs_the_filetype_of_upload_metadata(
    server: RunningServer, wire: TusWire
) -> None:
    path = unique("photo.jpg")
    target = server.signed(path, 3, protocol="v2", content_type="image/jpeg")

    as_png = {"Upload-Metadata": metadata(filetype="image/png")}
    as_jpeg = {"Upload-Metadata": metadata(filetype="image/jpeg")}
    assert wire.create(target, 3, headers=as_png).status == 403
    assert wire.create(target, 3, headers=as_jpeg).status == 201


# -- cuts, addresses, crashes, races --------------------------------------


def test_cut_patches_resume_from_other_addresses_and_the_hash_matches(
    server: RunningServer, wire: TusWire
) -> None:
    seed = random.randrange(1 << 32)
    chooser = random.Random(seed)
    data = os.urandom(24 * MiB)
    path = unique("handoff.bin")
    location = create(server, wire, path, len(data))
    addresses = ("127.0.0.2", "127.0.0.3", "127.0.0.1")

    offset = 0
    for cut in range(8):
        source = addresses[cut % len(addresses)]
        offset = wire.offset(location, source=source)
        rest = len(data) - offset
        sent = wire.patch_cut(
            location,
            offset,
            io.BytesIO(data[offset:]),
            rest,
            cut_after=chooser.randrange(rest // 4),
            source=source,
        )
        after = wire.offset(location, source=source)
        assert offset <= after <= offset + sent, f"seed {seed}"

    resume(wire, location, data, source=addresses[-1])

    assert stored_sha256(server, path) == sha256(data), f"seed {seed}"
    peers = {attempt["peer"] for attempt in record_of(server, location)["attempts"]}
    assert {"127.0.0.2", "127.0.0.3"} <= peers


def test_a_cut_patch_with_a_checksum_is_discarded_back_to_its_start(
    server: RunningServer, wire: TusWire
) -> None:
    data = os.urandom(2 * MiB)
    location = create(server, wire, unique("c.bin"), len(data))
    assert wire.patch(location, 0, data[:1000]).status == 204

    with socket.create_connection((server.host, server.port)) as sock:
        sock.sendall(
            (
                f"PATCH {location} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
                "Upload-Offset: 1000\r\nUpload-Checksum: sha1 "
                f"{base64.b64encode(hashlib.sha1(data[1000:]).digest()).decode()}\r\n"
                "Content-Type: application/offset+octet-stream\r\n"
                f"Content-Length: {len(data) - 1000}\r\n\r\n"
            ).encode()
            + data[1000 : 1000 + MiB]
        )
        time.sleep(0.2)

    assert wire.offset(location) == 1000


def test_the_offset_advances_by_checkpoints_while_a_patch_runs(
    server: RunningServer, wire: TusWire
) -> None:
    # Checkpoints fall between the writes of the 1 MiB write buffer.
    data = os.urandom(4 * MiB)
    location = create(server, wire, unique("slow.bin"), len(data))

    with socket.create_connection((server.host, server.port)) as sock:
        sock.sendall(
            (
                f"PATCH {location} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
                "Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n"
                f"Content-Length: {len(data)}\r\n\r\n"
            ).encode()
            + data[: 3 * MiB]
        )
        # Nothing acknowledged yet, but the promise on disk moves.
        wait_until(lambda: wire.offset(location) >= 2 * MiB)
        assert wire.offset(location) <= 3 * MiB
        sock.sendall(data[3 * MiB :])
        assert b" 204 " in sock.recv(4096)


def test_sigkill_mid_upload_resumes_from_the_reported_offset(
    make_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    settings = '[tus]\ncheckpoint_interval = "256KiB"\n'
    first = make_server(settings)
    wire = TusWire(first.host, first.port)
    data = os.urandom(8 * MiB)
    path = unique("crash.bin")
    location = create(first, wire, path, len(data))
    sent = 6 * MiB

    with socket.create_connection((first.host, first.port)) as sock:
        sock.sendall(
            (
                f"PATCH {location} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
                "Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n"
                f"Content-Length: {len(data)}\r\n\r\n"
            ).encode()
            + data[:sent]
        )
        wait_until(lambda: record_of(first, location)["offset"] >= MiB)
        first.stop(signal.SIGKILL)

    second = start_server(first.storage.parent, settings)
    try:
        wire = TusWire(second.host, second.port)
        offset = wire.offset(location, source="127.0.0.2")
        part = second.storage / "staging" / "tus" / f"{location.rsplit('/', 1)[1]}.part"
        assert MiB <= offset <= sent
        assert part.stat().st_size == offset

        answer = wire.patch(location, offset, data[offset:], source="127.0.0.2")

        assert answer.status == 204
        assert stored_sha256(second, path) == sha256(data)
    finally:
        stop_quietly(second)


def test_a_second_patch_while_one_runs_is_refused_with_423(
    server: RunningServer, wire: TusWire
) -> None:
    data = os.urandom(2 * MiB)
    path = unique("locked.bin")
    location = create(server, wire, path, len(data))

    with socket.create_connection((server.host, server.port)) as sock:
        sock.sendall(
            (
                f"PATCH {location} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
                "Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n"
                f"Content-Length: {len(data)}\r\n\r\n"
            ).encode()
            + data[:MiB]
        )
        time.sleep(0.2)
        intruder = wire.patch(location, 0, os.urandom(len(data)), source="127.0.0.2")
        deleter = wire.request("DELETE", location, headers=TUS, source="127.0.0.3")
        sock.sendall(data[MiB:])
        first = sock.recv(4096)

    assert intruder.status == 423
    assert deleter.status == 423
    assert b" 204 " in first
    assert stored_sha256(server, path) == sha256(data)


def test_racing_patches_leave_exactly_one_body(
    server: RunningServer, wire: TusWire
) -> None:
    path = unique("race.bin")
    size = 4 * MiB
    location = create(server, wire, path, size)
    bodies = [os.urandom(size) for _ in range(4)]
    statuses: list[int] = [0] * len(bodies)
    start = threading.Barrier(len(bodies))

    def send(index: int) -> None:
        start.wait()
        answer = wire.patch(location, 0, bodies[index], source=f"127.0.0.{index + 2}")
        statuses[index] = answer.status

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert statuses.count(204) == 1, statuses
    assert set(statuses) <= {204, 409, 423}
    winner = bodies[statuses.index(204)]
    assert stored_sha256(server, path) == sha256(winner)


def test_each_patch_is_a_transfer_the_plugins_and_logs_see(
    make_server: Callable[..., RunningServer],
) -> None:
    server = make_server(
        '[logging]\nformat = "json"\ndetailed_logging = true\n'
        "[performance]\nadaptive_buffers = true\nfully_adaptive = true\n"
    )
    wire = TusWire(server.host, server.port)
    path = unique("seen.bin")
    location = create(server, wire, path, 10)
    upload_id = location.rsplit("/", 1)[1]
    assert wire.patch(location, 0, b"01234", source="127.0.0.2").status == 204
    assert wire.patch(location, 5, b"56789", source="127.0.0.3").status == 204

    details = [
        server.wait_for_event(event="transfer_detail", peer=peer)
        for peer in ("127.0.0.2", "127.0.0.3")
    ]
    for detail in details:
        assert (detail["route"], detail["path"], detail["size"]) == ("tus", path, 10)
        assert detail["direction"] == "upload"
        assert detail["arm"] == "adaptive"
    # The log line follows the detail event; wait until the reader has both.
    wait_until(lambda: len(server.events(method="PATCH")) == 2, timeout=5)
    logged = server.events(method="PATCH")
    assert [event["bytes"] for event in logged] == [5, 5]
    assert upload_id not in server.log_text()


# -- the [tus] keys -------------------------------------------------------


def test_expired_uploads_are_swept(make_server: Callable[..., RunningServer]) -> None:
    server = make_server('[tus]\nexpiration = "1s"\nsweep_interval = "200ms"\n')
    wire = TusWire(server.host, server.port)
    location = create(server, wire, unique("old.bin"), 10)
    assert wire.patch(location, 0, b"01234").status == 204
    partials = server.storage / "staging" / "tus"
    assert len(list(partials.iterdir())) == 2

    wait_until(lambda: not list(partials.iterdir()), timeout=5)

    assert wire.request("HEAD", location, headers=TUS).status == 404
    server.wait_for_log("Removed 1 expired partial uploads")


def test_an_expired_upload_is_404_before_any_sweep(
    make_server: Callable[..., RunningServer],
) -> None:
    server = make_server('[tus]\nexpiration = "300ms"\nsweep_interval = "1h"\n')
    wire = TusWire(server.host, server.port)
    location = create(server, wire, unique("old.bin"), 10)
    time.sleep(0.5)

    assert wire.request("HEAD", location, headers=TUS).status == 404
    assert wire.patch(location, 0, b"late").status == 404
    # Only the sweep removes files, and it is an hour away.
    assert len(list((server.storage / "staging" / "tus").iterdir())) == 2


def test_tus_can_be_switched_off(make_server: Callable[..., RunningServer]) -> None:
    server = make_server("[tus]\nenabled = false\n")
    wire = TusWire(server.host, server.port)

    answer = wire.create(server.signed(unique("a.bin"), 3), 3)

    assert answer.status == 405
    assert "tus-version" not in wire.request("OPTIONS", "/tus/").headers


def test_the_endpoint_lives_under_the_configured_path(
    make_server: Callable[..., RunningServer],
) -> None:
    server = make_server('base_path = "/upload/"\n[tus]\npath = "/resumable"\n')
    wire = TusWire(server.host, server.port)
    path = unique("a.bin")
    target = "/upload" + server.signed(path, 3)

    created = wire.create(target, 3, tus_path="/resumable")

    assert created.status == 201
    assert created.headers["location"].startswith("/resumable/")
    assert wire.patch(created.headers["location"], 0, b"abc").status == 204
    assert server.request("GET", "/upload/" + path).body == b"abc"
    assert wire.create(target, 3).status in (404, 405)


def test_the_tus_keys_have_defaults_and_are_checked() -> None:
    tus = parse_config("").tus
    assert (tus.enabled, tus.path, tus.expiration) == (True, "/tus/", 86400.0)
    assert (tus.checkpoint_interval, tus.sweep_interval) == (4 * MiB, 600.0)
    assert parse_config('[tus]\npath = "up"\n').tus.path == "/up/"

    for wrong, key in [
        ('[tus]\npath = "/"\n', "tus.path"),
        ('[tus]\ncheckpoint_interval = "1KiB"\n', "tus.checkpoint_interval"),
        ('[tus]\nexpiration = "0s"\n', "tus.expiration"),
        ('[tus]\nsweep_interval = "1ms"\n', "tus.sweep_interval"),
        ('[server]\nbase_path = "/tus/x/"\n', "tus.path"),
    ]:
        with pytest.raises(ConfigError) as error:
            parse_config(wrong)
        assert [problem.where for problem in error.value.problems] == [key]


# -- the partial store on its own -----------------------------------------


def new_record(length: int) -> UploadRecord:
    return UploadRecord(
        id=new_upload_id(),
        path="abc/x.bin",
        length=length,
        content_type="application/octet-stream",
        metadata="",
        created=0.0,
        last_activity=0.0,
    )


def test_a_discarded_chunk_goes_back_to_its_start_offset(tmp_path: Path) -> None:
    store = PartialStore(tmp_path)
    record = new_record(100)
    store.create(record)
    first = store.open_part(record, None, None)
    first.write_block(b"a" * 30)
    first.sync_and_close()

    second = store.open_part(record, checkpoint_interval=10, claim=None)
    second.write_block(b"b" * 25)
    assert store.load(record.id).offset == 55  # type: ignore[union-attr]
    second.rollback()

    assert store.load(record.id).offset == 30  # type: ignore[union-attr]
    assert store.part_path(record.id).read_bytes() == b"a" * 30


def test_start_up_cuts_parts_back_to_the_recorded_offset(tmp_path: Path) -> None:
    store = PartialStore(tmp_path / "staging" / "tus")
    record = new_record(100)
    store.create(record)
    part = store.open_part(record, checkpoint_interval=16, claim=None)
    part.write_block(b"x" * 20)
    part.write_block(b"y" * 7)  # past the last checkpoint: never acknowledged

    assert Store(tmp_path).prepare() == 0
    assert store.recover() == 1

    assert store.part_path(record.id).stat().st_size == 20
    assert store.load(record.id).offset == 20  # type: ignore[union-attr]


# -- the figures of the issue ---------------------------------------------


@pytest.mark.slow
def test_500_mb_cut_ten_times_across_three_addresses(tmp_path: Path) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.tus_handoff",
            "--json",
            "--work-dir",
            str(tmp_path),
        ],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    figures = json.loads(run.stdout.strip().splitlines()[-1])

    assert figures["hash_matches"]
    assert figures["cuts"] == 10
    assert len(figures["addresses"]) == 3
    assert figures["resent_bytes"] <= figures["checkpoint_interval"]
