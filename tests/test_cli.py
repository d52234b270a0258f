"""The ``hmacfs`` command as an operator and a newcomer use it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

from serverproc import RunningServer


def hmacfs(
    *arguments: str, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hmacfs_core", *arguments],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **env},
        timeout=60,
    )


def test_sign_prints_a_url_the_server_accepts(
    server: RunningServer, tmp_path: Path
) -> None:
    body = b"signed on the command line"
    config = tmp_path / "sign.toml"
    config.write_text(
        f'[security]\nsecret = "{server.secret.decode()}"\n', encoding="utf-8"
    )
    name = f"{os.urandom(4).hex()}/Ünïcode name.txt"

    for protocol in ("v1", "v2", "token", "v3"):
        signed = hmacfs(
            "sign",
            f"{protocol}-{name}",
            "--size",
            str(len(body)),
            "--type",
            "text/plain",
            "--protocol",
            protocol,
            "--config",
            str(config),
            "--base-url",
            f"http://{server.host}:{server.port}/",
        )
        assert signed.returncode == 0, signed.stderr
        request = urllib.request.Request(
            signed.stdout.strip(),
            data=body,
            method="PUT",
            headers={"Content-Type": "text/plain"},
        )
        with urllib.request.urlopen(request) as answer:
            assert answer.status == 201


def test_sign_takes_the_secret_from_the_environment(tmp_path: Path) -> None:
    signed = hmacfs("sign", "a/b.txt", "--size", "5", HMACFS_SECRET="mysecret")

    assert signed.returncode == 0
    assert signed.stdout.strip().startswith("http://127.0.0.1:8080/a/b.txt?v=")


def test_sign_without_any_secret_explains_where_to_put_one() -> None:
    env = {k: v for k, v in os.environ.items() if k != "HMACFS_SECRET"}
    result = subprocess.run(
        [sys.executable, "-m", "hmacfs_core", "sign", "a/b.txt", "--size", "5"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )

    assert result.returncode == 2
    assert "security.secret" in result.stderr


def test_check_config_accepts_a_good_file(tmp_path: Path) -> None:
    config = tmp_path / "good.toml"
    config.write_text('[server]\nlisten_address = "8080"\n[security]\nsecret = "s"\n')

    result = hmacfs("check-config", str(config))

    assert result.returncode == 0
    assert "OK" in result.stdout


def test_check_config_explains_every_error_with_file_and_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(
        "[server]\n"
        'listen_adress = "127.0.0.1:8080"\n'
        'max_upload_size = "ten MB"\n'
        "[security]\n"
        'secret = "s"\n'
        'v2_type_from_extension = "false"\n'
    )

    result = hmacfs("check-config", str(config))

    assert result.returncode == 2
    assert "bad.toml" in result.stderr
    assert "server.listen_adress" in result.stderr
    assert "listen_address" in result.stderr
    assert "server.max_upload_size" in result.stderr
    assert "security.v2_type_from_extension" in result.stderr


def test_check_config_points_at_the_line_of_a_syntax_error(tmp_path: Path) -> None:
    config = tmp_path / "broken.toml"
    config.write_text('[server]\nlisten_address = "127.0.0.1:8080\n')

    result = hmacfs("check-config", str(config))

    assert result.returncode == 2
    assert re.search(r"broken\.toml:2:\d+", result.stderr)


def test_serve_without_a_config_generates_a_secret_and_a_working_example(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "HMACFS_SECRET"}
    process = subprocess.Popen(
        [sys.executable, "-m", "hmacfs_core", "serve", "--listen", "127.0.0.1:0"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**env, "PYTHONUNBUFFERED": "1"},
    )
    try:
        output = ""
        assert process.stdout is not None
        while "curl '" not in output:
            line = process.stdout.readline()
            assert line, output
            output += line
        upload = re.search(r"--data-binary '([^']*)' '([^']*)'", output)
        download = re.search(r"curl '([^']*)'\n", output)
        assert upload and download

        request = urllib.request.Request(
            upload[2],
            data=upload[1].encode(),
            method="PUT",
            headers={"Content-Type": "text/plain"},
        )
        with urllib.request.urlopen(request) as answer:
            assert answer.status == 201
        with urllib.request.urlopen(download[1]) as answer:
            assert answer.read() == upload[1].encode()
        assert "export HMACFS_SECRET=" in output
        assert (tmp_path / "hmacfs-data" / "files").is_dir()
    finally:
        process.terminate()
        process.wait(30)
