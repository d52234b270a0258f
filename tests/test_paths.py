"""Which request paths name a file, and where that file lives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hmacfs_core.paths import (
    MAX_PATH_BYTES,
    MAX_SEGMENT_BYTES,
    MAX_SEGMENTS,
    PathRefused,
    UploadPath,
    encode_path,
    parse_upload_path,
    resolve_under,
)
from tests.strategies import path_segments, raw_request_paths, upload_paths

# --- parsing what clients send ------------------------------------------------------


def test_prosody_slot_path_is_decoded_after_the_base_path() -> None:
    path = parse_upload_path(
        b"/upload/f%c3%a4%c3%b6%c3%bc/%f0%9f%98%80%20photo.jpg", "/upload/"
    )

    assert path.segments == ("fäöü", "\U0001f600 photo.jpg")
    assert path.text == "fäöü/\U0001f600 photo.jpg"
    assert str(path) == path.text


def test_root_base_path_keeps_every_segment() -> None:
    path = parse_upload_path(b"/thomas/abc/catmetal.jpg", "/")

    assert path.segments == ("thomas", "abc", "catmetal.jpg")


def test_base_path_is_stripped_exactly_once() -> None:
    path = parse_upload_path(b"/upload/upload/x.jpg", "/upload/")

    assert path.text == "upload/x.jpg"


def test_upper_and_lower_case_escapes_decode_alike() -> None:
    lower = parse_upload_path(b"/a/%c3%a4.txt", "/")
    upper = parse_upload_path(b"/a/%C3%A4.txt", "/")

    assert lower == upper == UploadPath(("a", "ä.txt"))


def test_plus_is_not_form_decoded_to_a_space() -> None:
    path = parse_upload_path(b"/abc/a+b.txt", "/")

    assert path.text == "abc/a+b.txt"


def test_encoded_percent_decodes_once() -> None:
    path = parse_upload_path(b"/abc/100%2541.txt", "/")

    assert path.text == "abc/100%41.txt"


def test_raw_utf8_in_the_request_target_is_accepted() -> None:
    # Some clients send IRIs unencoded; the signed text is the same either way.
    path = parse_upload_path("/abc/fä.txt".encode(), "/")

    assert path.text == "abc/fä.txt"


def test_at_most_the_limits_is_accepted() -> None:
    longest_segment = "é" * (MAX_SEGMENT_BYTES // 2)
    many = parse_upload_path(b"/" + b"/".join([b"a"] * MAX_SEGMENTS), "/")
    long = parse_upload_path(("/" + longest_segment).encode(), "/")

    assert len(many.segments) == MAX_SEGMENTS
    assert long.segments == (longest_segment,)


@pytest.mark.parametrize(
    ("raw_path", "reason"),
    [
        (b"/other/abc/x.jpg", "outside base path"),
        (b"/uploadabc/x.jpg", "outside base path"),
        (b"/upload", "outside base path"),
        (b"upload/abc/x.jpg", "outside base path"),
        (b"/upload/", "empty path"),
        (b"/upload//x.jpg", "empty segment"),
        (b"/upload/abc/", "empty segment"),
        (b"/upload/abc//x.jpg", "empty segment"),
        (b"/upload/./x.jpg", "dot segment"),
        (b"/upload/abc/..", "dot segment"),
        (b"/upload/%2e%2E/x.jpg", "dot segment"),
        (b"/upload/abc/%2e", "dot segment"),
        (b"/upload/abc%2fx.jpg", "encoded slash"),
        (b"/upload/abc%2Fx.jpg", "encoded slash"),
        (b"/upload/abc/x%00.jpg", "control character"),
        (b"/upload/abc/x\x00.jpg", "control character"),
        (b"/upload/abc/x%0a.jpg", "control character"),
        (b"/upload/abc/x%1f.jpg", "control character"),
        (b"/upload/abc/x%7f.jpg", "control character"),
        (b"/upload/abc/x%5cy.jpg", "backslash"),
        (b"/upload/abc\\..\\x.jpg", "backslash"),
        (b"/upload/abc/100%.txt", "bad percent-escape"),
        (b"/upload/abc/%4.txt", "bad percent-escape"),
        (b"/upload/abc/%zz.txt", "bad percent-escape"),
        (b"/upload/abc/%ff.txt", "not UTF-8"),
        (b"/upload/abc/%c3.txt", "not UTF-8"),
        (b"/upload/abc/%ed%a0%80.txt", "not UTF-8"),
        (b"/upload/abc/\xff.txt", "not UTF-8"),
        (b"/upload/" + b"a" * (MAX_SEGMENT_BYTES + 1), "segment too long"),
        (b"/upload/" + b"%c3%a4" * 128, "segment too long"),
        (b"/upload/" + b"/".join([b"a"] * (MAX_SEGMENTS + 1)), "too many segments"),
        (b"/upload/" + b"/".join([b"a" * 200] * 6), "path too long"),
        (b"/upload/" + b"a" * (3 * MAX_PATH_BYTES + 1), "path too long"),
    ],
)
def test_unsafe_paths_are_refused_with_a_reason(raw_path: bytes, reason: str) -> None:
    with pytest.raises(PathRefused) as refusal:
        parse_upload_path(raw_path, "/upload/")

    assert refusal.value.reason == reason
    assert isinstance(refusal.value, ValueError)


@pytest.mark.parametrize("base_path", ["", "upload/", "/upload", "upload"])
def test_a_base_path_that_is_not_normalised_is_a_configuration_error(
    base_path: str,
) -> None:
    with pytest.raises(ValueError) as error:
        parse_upload_path(b"/upload/abc/x.jpg", base_path)

    assert not isinstance(error.value, PathRefused)


def test_refusal_reason_never_echoes_the_path() -> None:
    with pytest.raises(PathRefused) as refusal:
        parse_upload_path(b"/upload/<script>/%2e%2e", "/upload/")

    assert "script" not in refusal.value.reason
    assert "script" not in str(refusal.value)


@given(raw_request_paths)
def test_any_bytes_give_a_refusal_or_a_safe_path(raw_path: bytes) -> None:
    try:
        path = parse_upload_path(raw_path, "/")
    except PathRefused:
        return

    assert path.segments
    assert ".." not in path.segments
    assert "." not in path.segments
    for segment in path.segments:
        assert segment
        assert "/" not in segment
        assert "\\" not in segment
        assert "\0" not in segment
        assert not any(
            ord(character) < 0x20 or character == "\x7f" for character in segment
        )
        assert len(segment.encode("utf-8")) <= MAX_SEGMENT_BYTES
    assert len(path.text.encode("utf-8")) <= MAX_PATH_BYTES


# --- building paths directly --------------------------------------------------------


@pytest.mark.parametrize(
    "segments",
    [(), ("",), ("a", ".."), ("a/b",), ("a\\b",), ("a\0b",), ("x" * 256,)],
)
def test_an_unsafe_upload_path_cannot_be_constructed(
    segments: tuple[str, ...],
) -> None:
    with pytest.raises(PathRefused):
        UploadPath(segments)


def test_upload_path_from_text_splits_on_slashes() -> None:
    assert UploadPath.from_text("abc/photo 1.jpg") == UploadPath(("abc", "photo 1.jpg"))

    with pytest.raises(PathRefused):
        UploadPath.from_text("/abc/photo.jpg")


# --- encoding as Prosody does --------------------------------------------------------


def test_encode_path_escapes_like_prosody() -> None:
    # Captured from Prosody 0.12 mod_http_upload_external, util.http.urlencode.
    encoded = encode_path("fäöü/\U0001f600 photo.jpg")

    assert encoded == "f%c3%a4%c3%b6%c3%bc/%f0%9f%98%80%20photo.jpg"


def test_encode_path_escapes_reserved_characters_and_keeps_unreserved_ones() -> None:
    encoded = encode_path("Zq3xR8vK/a+b & c=d;e#f?g.txt")
    unreserved = encode_path("AZaz09-_.~")

    assert encoded == "Zq3xR8vK/a%2bb%20%26%20c%3dd%3be%23f%3fg.txt"
    assert unreserved == "AZaz09-_.~"


@given(upload_paths)
def test_encode_then_parse_round_trips_every_valid_path(path: UploadPath) -> None:
    raw_path = ("/upload/" + encode_path(path.text)).encode("ascii")

    assert parse_upload_path(raw_path, "/upload/") == path


@given(path_segments)
def test_encoded_segment_is_plain_ascii_without_separators(segment: str) -> None:
    encoded = encode_path(segment)

    assert encoded.isascii()
    assert not set(encoded) & set("/?#+&=; \\")


# --- where files live ----------------------------------------------------------------


@given(path=upload_paths)
def test_resolve_under_always_stays_under_root(
    tmp_path_factory: pytest.TempPathFactory, path: UploadPath
) -> None:
    root = tmp_path_factory.getbasetemp() / "store"
    root.mkdir(exist_ok=True)

    location = resolve_under(root, path)

    assert location.is_relative_to(root)
    assert Path(os.path.normpath(location)).is_relative_to(root)
    assert location.relative_to(root).parts == path.segments


def test_existing_directories_are_walked_through(tmp_path: Path) -> None:
    (tmp_path / "abc").mkdir()
    (tmp_path / "abc" / "photo.jpg").write_bytes(b"jpeg")

    location = resolve_under(tmp_path, UploadPath(("abc", "photo.jpg")))

    assert location == tmp_path / "abc" / "photo.jpg"


def test_a_path_below_an_existing_file_resolves_without_error(tmp_path: Path) -> None:
    (tmp_path / "abc").write_bytes(b"a file, not a directory")

    location = resolve_under(tmp_path, UploadPath(("abc", "photo.jpg")))

    assert location == tmp_path / "abc" / "photo.jpg"


def test_symlinked_directory_under_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "store"
    elsewhere = tmp_path / "elsewhere"
    root.mkdir()
    elsewhere.mkdir()
    (root / "abc").symlink_to(elsewhere, target_is_directory=True)

    with pytest.raises(PathRefused) as refusal:
        resolve_under(root, UploadPath(("abc", "photo.jpg")))

    assert refusal.value.reason == "symbolic link in store"


def test_symlinked_file_under_root_is_refused_even_pointing_inside(
    tmp_path: Path,
) -> None:
    (tmp_path / "abc").mkdir()
    (tmp_path / "abc" / "real.jpg").write_bytes(b"jpeg")
    (tmp_path / "abc" / "link.jpg").symlink_to(tmp_path / "abc" / "real.jpg")

    with pytest.raises(PathRefused):
        resolve_under(tmp_path, UploadPath(("abc", "link.jpg")))


def test_dangling_symlink_under_root_is_refused(tmp_path: Path) -> None:
    (tmp_path / "abc").symlink_to(tmp_path / "nowhere")

    with pytest.raises(PathRefused):
        resolve_under(tmp_path, UploadPath(("abc",)))


def test_root_itself_may_be_a_symlink(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    (disk / "abc").mkdir()
    root = tmp_path / "store"
    root.symlink_to(disk, target_is_directory=True)

    location = resolve_under(root, UploadPath(("abc", "photo.jpg")))

    assert location == root / "abc" / "photo.jpg"


@given(st.data())
def test_symlink_at_any_depth_is_refused(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    root = tmp_path_factory.mktemp("store")
    segments = data.draw(
        st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=5)
    )
    depth = data.draw(st.integers(min_value=0, max_value=len(segments) - 1))

    parent = root.joinpath(*segments[:depth])
    parent.mkdir(parents=True, exist_ok=True)
    (parent / segments[depth]).symlink_to(root, target_is_directory=True)

    with pytest.raises(PathRefused):
        resolve_under(root, UploadPath(tuple(segments)))
