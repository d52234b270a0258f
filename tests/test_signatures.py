"""Which signed URLs authorise an upload, per PROTOCOLS.md sections 1 and 2."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs

import pytest
from attrs import evolve, frozen
from hypothesis import assume, given
from hypothesis import strategies as st

from hmacfs_core.paths import parse_upload_path
from hmacfs_core.signatures import (
    DEFAULT_CONTENT_TYPE,
    PROTOCOLS,
    Protocol,
    SignedUpload,
    Verdict,
    find_signature,
    sign_token,
    sign_v1,
    sign_v2,
    sign_v3,
    signed_query,
    verify_upload,
)
from tests.strategies import (
    content_types,
    expiry_texts,
    expiry_times,
    methods,
    protocols,
    secrets,
    sizes,
    upload_paths,
)

# --- an independent reference -------------------------------------------------------


def reference_hmac_sha256(key: bytes, message: bytes) -> str:
    """
    HMAC-SHA256 written out from RFC 2104, so that expected MACs do not come from
    the code under test, nor from the same library call.
    """
    block_size = 64
    if len(key) > block_size:
        key = hashlib.sha256(key).digest()
    key = key.ljust(block_size, b"\0")

    inner = hashlib.sha256(bytes(byte ^ 0x36 for byte in key) + message).digest()
    return hashlib.sha256(bytes(byte ^ 0x5C for byte in key) + inner).hexdigest()


def prosody_urlencode(text: str) -> str:
    """
    Escape one URL component as Prosody's util.http.urlencode does: everything but
    ``A-Za-z0-9.~_-``, byte by byte, with lower-case hex.
    """
    return "".join(
        chr(byte)
        if re.fullmatch(rb"[A-Za-z0-9.~_-]", bytes([byte]))
        else f"%{byte:02x}"
        for byte in text.encode("utf-8")
    )


def verdict_for_url(
    secret: bytes,
    url_path_and_query: str,
    *,
    method: str = "PUT",
    size: int,
    content_type: str | None,
    now: float = 0.0,
    v2_type_from_extension: bool = False,
) -> Verdict:
    """
    Judge a PUT the way the web layer does: parse the path under ``/upload/``,
    find the signature in the query, verify it.
    """
    raw_path, _, query = url_path_and_query.encode("ascii").partition(b"?")
    path = parse_upload_path(raw_path, "/upload/")

    signed = find_signature(parse_qs(query, keep_blank_values=True), PROTOCOLS)
    assert signed is not None

    return verify_upload(
        secret,
        signed,
        method=method,
        path=path.text,
        size=size,
        content_type=content_type,
        now=now,
        v2_type_from_extension=v2_type_from_extension,
    )


# --- PROTOCOLS.md section 2 ---------------------------------------------------------

CATMETAL = "thomas/abc/catmetal.jpg"
CATMETAL_V1 = "7b8879e2d1c733b423a70cde30cecc3a3c64a03f790d1b5bcbb2a6aca52b477e"
CATMETAL_V2_JPEG = "7318cd44d4c40731e3b2ff869f553ab2326eae631868e7b8054db20d4aee1c06"
CATMETAL_V2_OCTET = "4aacadcf964129c5017e2464955399941858180b630f636211421811b63d18ad"
CATMETAL_V3 = "98f8168cdeea539acb58ae74b60627038bed7d1d9b226d26a3b675ed38bbd81b"
CATMETAL_EXPIRES = 1767225600

#: The query parameter of each scheme, as PROTOCOLS.md names them.
QUERY_NAMES: Mapping[Protocol, bytes] = {
    "v1": b"v",
    "v2": b"v2",
    "token": b"token",
    "v3": b"v3",
}

SignFunction = Callable[[bytes, str, int, str], str]


def test_v1_vector_mysecret() -> None:
    assert sign_v1(b"mysecret", CATMETAL, 23026) == CATMETAL_V1


@pytest.mark.parametrize("sign", [sign_v2, sign_token])
@pytest.mark.parametrize(
    ("content_type", "expected"),
    [("image/jpeg", CATMETAL_V2_JPEG), ("application/octet-stream", CATMETAL_V2_OCTET)],
)
def test_v2_and_token_vectors_mysecret(
    sign: SignFunction, content_type: str, expected: str
) -> None:
    assert sign(b"mysecret", CATMETAL, 23026, content_type) == expected


def test_v3_vector_mysecret() -> None:
    assert sign_v3(b"mysecret", "PUT", CATMETAL_EXPIRES, CATMETAL) == CATMETAL_V3


def test_v1_vector_secret_string() -> None:
    expected = "e6df55a04516617d6a86ad6ca23879819591085a1a8c0041f4da06824f5d2db7"

    assert sign_v1(b"secret string", "foo/bar.jpg", 1048576) == expected


@pytest.mark.parametrize("sign", [sign_v2, sign_token])
def test_v2_and_token_vector_secret_string(sign: SignFunction) -> None:
    expected = "a19d27add075aa60035e27c05e794f13079ba48c508852b3d7160a6bec0f85ab"

    assert sign(b"secret string", "foo/bar.jpg", 1048576, "image/jpeg") == expected


@pytest.mark.parametrize(
    ("query", "content_type", "now"),
    [
        (f"v={CATMETAL_V1}", "x/y", 0),
        (f"v2={CATMETAL_V2_JPEG}", "image/jpeg", 0),
        (f"token={CATMETAL_V2_JPEG}", "image/jpeg", 0),
        (f"v2={CATMETAL_V2_OCTET}", None, 0),
        (f"v2={CATMETAL_V2_OCTET}", "application/octet-stream", 0),
        (f"v3={CATMETAL_V3}&expires={CATMETAL_EXPIRES}", "x/y", CATMETAL_EXPIRES),
    ],
)
def test_section_2_vectors_verify_as_requests(
    query: str, content_type: str | None, now: float
) -> None:
    verdict = verdict_for_url(
        b"mysecret",
        f"/upload/thomas/abc/catmetal.jpg?{query}",
        size=23026,
        content_type=content_type,
        now=now,
    )

    assert verdict is Verdict.OK


# --- further vectors: what a real Prosody hands out ----------------------------------

# Each row was produced by Prosody 0.12's mod_http_upload_external (Debian bookworm)
# with a fixed slot id in place of the random UUID and base URL "/upload/"; the test
# recomputes every URL and MAC on its own before trusting hmacfs with them.
PROSODY_SLOTS = [
    pytest.param(
        b"mysecret",
        "f\u00e4\u00f6\u00fc",
        "\U0001f600 photo.jpg",
        123456,
        "image/jpeg",
        "/upload/f%c3%a4%c3%b6%c3%bc/%f0%9f%98%80%20photo.jpg",
        "17d3e0cde38dea23f6108128cf063811eb2a05a7d3704138ce39915678a0dbb7",
        "bb3d6a70855d10e7375ee4855a249a0e4003ba883ce20fc149924c17dd07fc2c",
        id="non-ascii",
    ),
    pytest.param(
        b"secret string",
        "Zq3xR8vK",
        "a+b & c=d;e#f?g.txt",
        17,
        "text/plain; charset=utf-8",
        "/upload/Zq3xR8vK/a%2bb%20%26%20c%3dd%3be%23f%3fg.txt",
        "137c824939d848a2d07af7d41a9e04f82873912deecdb3b127e4dc16a67c600b",
        "67c56984cbadec324d348bb575b66796d4e7fc959fce8255e75d17b0c03a2f7f",
        id="reserved-characters",
    ),
    pytest.param(
        b"secret string",
        "b5d1e0c2-3f4a-4c6b-8d7e-9f0a1b2c3d4e",
        "R\u00e9sum\u00e9 final (1).pdf",
        0,
        "application/pdf",
        "/upload/b5d1e0c2-3f4a-4c6b-8d7e-9f0a1b2c3d4e/R%c3%a9sum%c3%a9%20final%20%281%29.pdf",
        "2d38604ffff9bca145851456d1cd0380909402f0e2b30fc5764d6b67ad3fe79f",
        "3a944b90f41a6be09110b31aeceebd489ef1f7370d91fae666101853ced5438f",
        id="spaces-and-parentheses",
    ),
]

PROSODY_FIELDS = "secret,slot,filename,size,content_type,url_path,v1_mac,v2_mac"


@pytest.mark.parametrize(PROSODY_FIELDS, PROSODY_SLOTS)
def test_prosody_urls_and_macs_match_the_reference(
    secret: bytes,
    slot: str,
    filename: str,
    size: int,
    content_type: str,
    url_path: str,
    v1_mac: str,
    v2_mac: str,
) -> None:
    signed_path = f"{slot}/{filename}"
    v1_message = f"{signed_path} {size}".encode()
    v2_message = f"{signed_path}\0{size}\0{content_type}".encode()

    built = f"/upload/{prosody_urlencode(slot)}/{prosody_urlencode(filename)}"

    assert built == url_path
    assert reference_hmac_sha256(secret, v1_message) == v1_mac
    assert reference_hmac_sha256(secret, v2_message) == v2_mac


@pytest.mark.parametrize(PROSODY_FIELDS, PROSODY_SLOTS)
def test_prosody_urls_verify(
    secret: bytes,
    slot: str,
    filename: str,
    size: int,
    content_type: str,
    url_path: str,
    v1_mac: str,
    v2_mac: str,
) -> None:
    v1 = verdict_for_url(
        secret, f"{url_path}?v={v1_mac}", size=size, content_type=content_type
    )
    v2 = verdict_for_url(
        secret, f"{url_path}?v2={v2_mac}", size=size, content_type=content_type
    )

    assert v1 is Verdict.OK
    assert v2 is Verdict.OK


@pytest.mark.parametrize(PROSODY_FIELDS, PROSODY_SLOTS)
def test_prosody_urls_with_another_size_are_refused(
    secret: bytes,
    slot: str,
    filename: str,
    size: int,
    content_type: str,
    url_path: str,
    v1_mac: str,
    v2_mac: str,
) -> None:
    v1 = verdict_for_url(
        secret, f"{url_path}?v={v1_mac}", size=size + 1, content_type=content_type
    )
    v2 = verdict_for_url(
        secret, f"{url_path}?v2={v2_mac}", size=size + 1, content_type=content_type
    )

    assert v1 is Verdict.BAD_SIGNATURE
    assert v2 is Verdict.BAD_SIGNATURE


def test_plus_in_a_signed_name_is_not_a_space() -> None:
    # The same slot as "reserved-characters", with "+" left unencoded: a server
    # that form-decoded the path would sign "a b" and refuse it.
    mac = "137c824939d848a2d07af7d41a9e04f82873912deecdb3b127e4dc16a67c600b"
    url = f"/upload/Zq3xR8vK/a+b%20%26%20c%3dd%3be%23f%3fg.txt?v={mac}"

    verdict = verdict_for_url(b"secret string", url, size=17, content_type=None)

    assert verdict is Verdict.OK


# --- further vectors: ejabberd and v3 clients ----------------------------------------


def ejabberd_file_name(name: str) -> str:
    """Replace what ejabberd replaces: all but alphanumerics, ``_``, ``.``, ``-``."""
    return re.sub(r"[^\w.-]", "_", name)


@pytest.mark.parametrize(
    ("original_name", "stored_name"),
    [
        ("My holiday (2024) #1.jpg", "My_holiday__2024___1.jpg"),
        ("\u00dcn\u00efcode fa\u00e7ade.png", "\u00dcn\u00efcode_fa\u00e7ade.png"),
    ],
)
def test_ejabberd_style_v1_urls_verify(original_name: str, stored_name: str) -> None:
    secret = b"ejabberd external secret"
    user_dir = hashlib.sha1(b"thomas@example.org").hexdigest()
    signed_path = f"{user_dir}/f9Rk2LqZ8wNc/{ejabberd_file_name(original_name)}"
    mac = reference_hmac_sha256(secret, f"{signed_path} 52173".encode())
    url_path = "/upload/" + "/".join(
        prosody_urlencode(segment) for segment in signed_path.split("/")
    )

    verdict = verdict_for_url(
        secret, f"{url_path}?v={mac}", size=52173, content_type="image/png"
    )

    assert ejabberd_file_name(original_name) == stored_name
    assert verdict is Verdict.OK


def test_v3_url_with_non_ascii_name_verifies_until_it_expires() -> None:
    secret = b"mysecret"
    path = "d41d8cd9/f\u00e4\u00f6\u00fc \U0001f600 + & = ; # ?.jpg"
    expires = 1767225600
    mac = reference_hmac_sha256(secret, f"PUT\n{expires}\n/{path}".encode())
    url = f"/upload/{'/'.join(map(prosody_urlencode, path.split('/')))}"
    query = f"v3={mac}&expires={expires}"

    def verdict_at(now: float, method: str = "PUT") -> Verdict:
        return verdict_for_url(
            secret, f"{url}?{query}", method=method, size=1, content_type=None, now=now
        )

    assert verdict_at(expires - 3600) is Verdict.OK
    assert verdict_at(expires) is Verdict.OK
    assert verdict_at(expires + 0.5) is Verdict.EXPIRED
    assert verdict_at(expires - 3600, method="GET") is Verdict.BAD_SIGNATURE


# --- properties ---------------------------------------------------------------------


@frozen
class RequestFields:
    """Everything about a PUT that one scheme or another signs."""

    method: str
    path: str
    size: int
    content_type: str | None
    expires: int


request_fields = st.builds(
    RequestFields,
    method=methods,
    path=upload_paths.map(str),
    size=sizes,
    content_type=st.none() | content_types,
    expires=expiry_times,
)


def signed_request(
    secret: bytes, protocol: Protocol, fields: RequestFields
) -> SignedUpload:
    """Sign like an XMPP server, then read the query back like the web layer."""
    query = signed_query(
        secret,
        protocol,
        method=fields.method,
        path=fields.path,
        size=fields.size,
        content_type=fields.content_type,
        expires=fields.expires if protocol == "v3" else None,
    )

    signed = find_signature(parse_qs(query.encode("ascii")), PROTOCOLS)
    assert signed is not None
    return signed


def verify_fields(
    secret: bytes, signed: SignedUpload, fields: RequestFields, now: float = 0
) -> Verdict:
    """Verify as the web layer would for a request presenting *fields*."""
    if signed.protocol == "v3":
        # The expiry travels in the query: a changed one is what the client sent.
        signed = evolve(signed, expires=fields.expires)

    return verify_upload(
        secret,
        signed,
        method=fields.method,
        path=fields.path,
        size=fields.size,
        content_type=fields.content_type,
        now=now,
    )


def change_one_byte(text: str, data: st.DataObject) -> str:
    """Flip one byte of *text*'s UTF-8 (or add one to an empty text)."""
    encoded = text.encode("utf-8", "surrogateescape")
    if not encoded:
        return "x"

    index = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
    flip = data.draw(st.integers(min_value=1, max_value=255))
    changed = encoded[:index] + bytes([encoded[index] ^ flip]) + encoded[index + 1 :]
    return changed.decode("utf-8", "surrogateescape")


def tampered(
    fields: RequestFields, field_name: str, data: st.DataObject
) -> RequestFields:
    """Change one byte of one field (a number or an absent type: its value)."""
    value = getattr(fields, field_name)

    if isinstance(value, int):
        # Any: the field is chosen at run time, so its type is known only then.
        changed: Any = data.draw(sizes.filter(lambda number: number != value))
    elif value is None:
        changed = data.draw(content_types.filter(lambda t: t != DEFAULT_CONTENT_TYPE))
    else:
        changed = change_one_byte(value, data)

    return evolve(fields, **{field_name: changed})


@given(secret=secrets, protocol=protocols, fields=request_fields)
def test_a_mac_from_the_signer_always_verifies(
    secret: bytes, protocol: Protocol, fields: RequestFields
) -> None:
    signed = signed_request(secret, protocol, fields)

    verdict = verify_fields(secret, signed, fields, now=fields.expires)

    assert signed.protocol == protocol
    assert verdict is Verdict.OK


SIGNED_FIELDS: list[tuple[Protocol, str]] = [
    ("v1", "path"),
    ("v1", "size"),
    ("v2", "path"),
    ("v2", "size"),
    ("v2", "content_type"),
    ("token", "path"),
    ("token", "size"),
    ("token", "content_type"),
    ("v3", "path"),
    ("v3", "method"),
    ("v3", "expires"),
]

UNSIGNED_FIELDS: list[tuple[Protocol, str]] = [
    ("v1", "content_type"),
    ("v1", "method"),
    ("v2", "method"),
    ("token", "method"),
    ("v3", "size"),
    ("v3", "content_type"),
]


# Cases are drawn rather than parametrized: pytest-twisted, when installed, wraps
# a Hypothesis test once per parametrized item and breaks all but the first.
@given(
    case=st.sampled_from(SIGNED_FIELDS),
    data=st.data(),
    secret=secrets,
    fields=request_fields,
)
def test_changing_a_signed_field_never_verifies(
    case: tuple[Protocol, str],
    data: st.DataObject,
    secret: bytes,
    fields: RequestFields,
) -> None:
    protocol, field_name = case
    signed = signed_request(secret, protocol, fields)

    verdict = verify_fields(secret, signed, tampered(fields, field_name, data))

    assert verdict is Verdict.BAD_SIGNATURE


@given(
    case=st.sampled_from(UNSIGNED_FIELDS),
    data=st.data(),
    secret=secrets,
    fields=request_fields,
)
def test_fields_a_scheme_does_not_sign_may_change(
    case: tuple[Protocol, str],
    data: st.DataObject,
    secret: bytes,
    fields: RequestFields,
) -> None:
    # Documented facts, not wishes: v1 binds neither type nor method; v2 and token
    # not the method; v3 neither size nor type.
    protocol, field_name = case
    signed = signed_request(secret, protocol, fields)

    verdict = verify_fields(secret, signed, tampered(fields, field_name, data))

    assert verdict is Verdict.OK


@given(secret=secrets, protocol=protocols, fields=request_fields)
def test_upper_case_hex_is_accepted(
    secret: bytes, protocol: Protocol, fields: RequestFields
) -> None:
    signed = signed_request(secret, protocol, fields)
    shouted = evolve(signed, mac=signed.mac.upper())

    verdict = verify_fields(secret, shouted, fields, now=fields.expires)

    assert verdict is Verdict.OK


@pytest.mark.parametrize(
    "mac",
    [
        "",
        "7b88",
        CATMETAL_V1[:-1],
        " ".join(re.findall("..", CATMETAL_V1)),
        CATMETAL_V1 + "\n",
        "zz" + CATMETAL_V1[2:],
        "\u0661" * 64,
        "\xff\xfe",
    ],
)
def test_malformed_mac_is_refused_without_exception(mac: str) -> None:
    signed = SignedUpload(protocol="v1", mac=mac, expires=None)

    verdict = verify_upload(
        b"mysecret",
        signed,
        method="PUT",
        path=CATMETAL,
        size=23026,
        content_type=None,
        now=0,
    )

    assert verdict is Verdict.BAD_SIGNATURE


@given(mac=st.binary(max_size=80), protocol=protocols)
def test_any_mac_bytes_in_a_query_give_a_verdict(
    mac: bytes, protocol: Protocol
) -> None:
    query = {QUERY_NAMES[protocol]: [mac], b"expires": [b"99"]}

    signed = find_signature(query, PROTOCOLS)
    assert signed is not None

    verdict = verify_upload(
        b"mysecret",
        signed,
        method="PUT",
        path=CATMETAL,
        size=23026,
        content_type="image/jpeg",
        now=0,
    )

    assert verdict is Verdict.BAD_SIGNATURE


# --- which signature counts ---------------------------------------------------------


def catmetal_query(*protocols_present: Protocol) -> dict[bytes, list[bytes]]:
    """A query carrying a correct MAC for each given scheme."""
    query: dict[bytes, list[bytes]] = {}
    for protocol in protocols_present:
        signed = signed_query(
            b"mysecret",
            protocol,
            path=CATMETAL,
            size=23026,
            content_type="image/jpeg",
            expires=1767225600 if protocol == "v3" else None,
        )
        query.update(parse_qs(signed.encode("ascii")))
        assert QUERY_NAMES[protocol] in query
    return query


@given(
    present=st.sets(protocols, min_size=1),
    accepted=st.sets(protocols),
)
def test_the_most_preferred_accepted_scheme_wins(
    present: set[Protocol], accepted: set[Protocol]
) -> None:
    query = catmetal_query(*present)
    candidates = [protocol for protocol in PROTOCOLS if protocol in present & accepted]

    signed = find_signature(query, accepted)

    if candidates:
        assert signed is not None
        assert signed.protocol == candidates[0]
    else:
        assert signed is None


def test_preference_order_is_v3_v2_token_v1() -> None:
    assert PROTOCOLS == ("v3", "v2", "token", "v1")


def test_a_wrong_stronger_signature_does_not_fall_back_to_a_weaker_one() -> None:
    query = catmetal_query("v1")
    query[b"v2"] = [b"00" * 32]

    signed = find_signature(query, PROTOCOLS)
    assert signed is not None
    verdict = verify_upload(
        b"mysecret",
        signed,
        method="PUT",
        path=CATMETAL,
        size=23026,
        content_type="image/jpeg",
        now=0,
    )

    assert signed.protocol == "v2"
    assert verdict is Verdict.BAD_SIGNATURE


def test_a_scheme_not_accepted_is_ignored() -> None:
    query = catmetal_query("v1", "v3")

    assert find_signature(query, {"v2", "token"}) is None
    assert find_signature(query, set()) is None
    assert find_signature({}, PROTOCOLS) is None


def test_a_repeated_mac_parameter_never_verifies() -> None:
    mac = CATMETAL_V1.encode("ascii")

    signed = find_signature({b"v": [mac, mac]}, PROTOCOLS)
    assert signed is not None
    verdict = verify_upload(
        b"mysecret",
        signed,
        method="PUT",
        path=CATMETAL,
        size=23026,
        content_type=None,
        now=0,
    )

    assert verdict is Verdict.BAD_SIGNATURE


V3_MAC = CATMETAL_V3.encode("ascii")


@pytest.mark.parametrize(
    "expires",
    [
        None,
        [b""],
        [b"abc"],
        [b"-1767225600"],
        [b"+1767225600"],
        [b" 1767225600"],
        [b"1767225600 "],
        [b"1_767_225_600"],
        [b"01767225600"],
        [b"1767225600.0"],
        ["\u0661\u0667".encode()],
        [b"1767225600", b"1767225600"],
        [b"9" * 21],
    ],
)
def test_v3_without_a_usable_expiry_is_a_bad_signature(
    expires: list[bytes] | None,
) -> None:
    query = {b"v3": [V3_MAC]} | ({} if expires is None else {b"expires": expires})

    signed = find_signature(query, PROTOCOLS)
    assert signed is not None
    verdict = verify_upload(
        b"mysecret",
        signed,
        method="PUT",
        path=CATMETAL,
        size=23026,
        content_type=None,
        now=0,
    )

    assert signed == SignedUpload(protocol="v3", mac=V3_MAC.decode(), expires=None)
    assert verdict is Verdict.BAD_SIGNATURE


@given(expiry_texts)
def test_expiry_is_read_only_in_canonical_decimal(text: str) -> None:
    canonical = text == "0" or (not text.startswith("0") and len(text) <= 20)

    signed = find_signature({b"v3": [V3_MAC], b"expires": [text.encode()]}, PROTOCOLS)

    assert signed is not None
    assert signed.expires == (int(text) if canonical else None)


def test_expired_v3_with_a_wrong_mac_is_a_bad_signature_not_expired() -> None:
    signed = SignedUpload(protocol="v3", mac="00" * 32, expires=1)

    verdict = verify_upload(
        b"mysecret",
        signed,
        method="PUT",
        path=CATMETAL,
        size=0,
        content_type=None,
        now=1767225600,
    )

    assert verdict is Verdict.BAD_SIGNATURE


@given(expires=expiry_times, late_by=st.floats(min_value=0.001, max_value=1e9))
def test_v3_expiry_is_judged_at_the_given_time(expires: int, late_by: float) -> None:
    assume(expires + late_by > expires)
    mac = sign_v3(b"mysecret", "PUT", expires, CATMETAL)
    signed = SignedUpload(protocol="v3", mac=mac, expires=expires)

    def verdict_at(now: float) -> Verdict:
        return verify_upload(
            b"mysecret",
            signed,
            method="PUT",
            path=CATMETAL,
            size=0,
            content_type=None,
            now=now,
        )

    assert verdict_at(expires) is Verdict.OK
    assert verdict_at(expires + late_by) is Verdict.EXPIRED


# --- content types --------------------------------------------------------------------


def test_absent_content_type_is_checked_as_octet_stream() -> None:
    mac = CATMETAL_V2_OCTET
    url = f"/upload/thomas/abc/catmetal.jpg?v2={mac}"

    absent = verdict_for_url(b"mysecret", url, size=23026, content_type=None)
    empty = verdict_for_url(b"mysecret", url, size=23026, content_type="")

    assert absent is Verdict.OK
    assert empty is Verdict.BAD_SIGNATURE


def test_content_type_is_compared_exactly_as_sent() -> None:
    mac = CATMETAL_V2_JPEG
    url = f"/upload/thomas/abc/catmetal.jpg?v2={mac}"

    for variant in ["IMAGE/JPEG", "image/jpeg ", "image/jpeg; charset=binary"]:
        verdict = verdict_for_url(b"mysecret", url, size=23026, content_type=variant)
        assert verdict is Verdict.BAD_SIGNATURE


@pytest.mark.parametrize("protocol", ["v2", "token"])
def test_type_from_extension_is_accepted_only_when_asked(protocol: Protocol) -> None:
    # A peer that derives the type signed image/jpeg; the client, uploading an
    # encrypted file, sends application/octet-stream.
    mac = CATMETAL_V2_JPEG
    name = {"v2": "v2", "token": "token"}[protocol]
    url = f"/upload/thomas/abc/catmetal.jpg?{name}={mac}"
    sent = "application/octet-stream"

    default = verdict_for_url(b"mysecret", url, size=23026, content_type=sent)
    compat = verdict_for_url(
        b"mysecret", url, size=23026, content_type=sent, v2_type_from_extension=True
    )

    assert default is Verdict.BAD_SIGNATURE
    assert compat is Verdict.OK


def test_type_from_extension_adds_a_type_and_keeps_the_declared_one() -> None:
    # The peer signed image/png for a .jpg file (it went by the client's word):
    # still accepted with the option on, the derived type is only one more.
    declared_mac = reference_hmac_sha256(
        b"mysecret", f"{CATMETAL}\x0023026\x00image/png".encode()
    )
    url = f"/upload/thomas/abc/catmetal.jpg?v2={declared_mac}"

    declared = verdict_for_url(
        b"mysecret",
        url,
        size=23026,
        content_type="image/png",
        v2_type_from_extension=True,
    )
    other = verdict_for_url(
        b"mysecret",
        url,
        size=23026,
        content_type="image/gif",
        v2_type_from_extension=True,
    )

    assert declared is Verdict.OK
    assert other is Verdict.BAD_SIGNATURE


def test_type_from_extension_falls_back_to_octet_stream() -> None:
    mac = sign_v2(b"mysecret", "abc/README", 10, DEFAULT_CONTENT_TYPE)
    url = f"/upload/abc/README?v2={mac}"

    verdict = verdict_for_url(
        b"mysecret",
        url,
        size=10,
        content_type="text/plain",
        v2_type_from_extension=True,
    )

    assert verdict is Verdict.OK


def test_non_utf8_content_type_bytes_are_signed_as_sent() -> None:
    sent = b"image/jpeg; name=\xe9"
    mac = reference_hmac_sha256(b"mysecret", b"foo/bar.jpg\x001\x00" + sent)
    signed = SignedUpload(protocol="v2", mac=mac, expires=None)

    verdict = verify_upload(
        b"mysecret",
        signed,
        method="PUT",
        path="foo/bar.jpg",
        size=1,
        content_type=sent.decode("utf-8", "surrogateescape"),
        now=0,
    )

    assert verdict is Verdict.OK


# --- building URLs -------------------------------------------------------------------


def test_signed_query_names_each_scheme_parameter() -> None:
    def query(protocol: Protocol, expires: int | None = None) -> str:
        return signed_query(
            b"mysecret",
            protocol,
            path=CATMETAL,
            size=23026,
            content_type=None,
            expires=expires,
        )

    assert query("v1") == (
        "v=7b8879e2d1c733b423a70cde30cecc3a3c64a03f790d1b5bcbb2a6aca52b477e"
    )
    assert query("v2") == (
        "v2=4aacadcf964129c5017e2464955399941858180b630f636211421811b63d18ad"
    )
    assert query("token") == (
        "token=4aacadcf964129c5017e2464955399941858180b630f636211421811b63d18ad"
    )
    assert query("v3", 1767225600) == (
        "v3=98f8168cdeea539acb58ae74b60627038bed7d1d9b226d26a3b675ed38bbd81b"
        "&expires=1767225600"
    )


def test_signed_query_refuses_an_expiry_that_does_not_fit_the_scheme() -> None:
    with pytest.raises(ValueError):
        signed_query(b"s", "v3", path="a/b", size=1, content_type=None, expires=None)

    with pytest.raises(ValueError):
        signed_query(b"s", "v1", path="a/b", size=1, content_type=None, expires=5)


def test_a_negative_size_cannot_be_signed() -> None:
    with pytest.raises(ValueError):
        sign_v1(b"s", "a/b", -1)


def test_verdicts_say_whether_and_why() -> None:
    assert (Verdict.OK.ok, Verdict.OK.reason) == (True, "ok")
    assert (Verdict.BAD_SIGNATURE.ok, Verdict.BAD_SIGNATURE.reason) == (
        False,
        "bad signature",
    )
    assert (Verdict.EXPIRED.ok, Verdict.EXPIRED.reason) == (False, "signature expired")
