"""``[server] trusted_proxies``: the real client behind a reverse proxy."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    ("trusted", "forwarded", "logged"),
    [
        ('["127.0.0.1/32"]', "203.0.113.7", "203.0.113.7"),
        ('["127.0.0.1/32"]', "198.51.100.1, 127.0.0.1", "198.51.100.1"),
        ('["127.0.0.1/32"]', "not-an-address", "127.0.0.1"),
        ("[]", "203.0.113.7", "127.0.0.1"),
        ('["10.0.0.0/8"]', "203.0.113.7", "127.0.0.1"),
    ],
)
def test_x_forwarded_for_is_believed_only_from_trusted_proxies(
    make_server, trusted: str, forwarded: str, logged: str
) -> None:
    server = make_server(f"trusted_proxies = {trusted}")
    target = server.signed("p/x.bin", 3)

    server.request("PUT", target, b"abc", {"X-Forwarded-For": forwarded})

    server.wait_for_log(rf"PUT /p/x\.bin 201 3 bytes in \S+ from {logged} ")


def test_a_bad_range_is_a_config_error(make_server) -> None:
    with pytest.raises(AssertionError, match="trusted_proxies"):
        make_server('trusted_proxies = ["localhost"]')
