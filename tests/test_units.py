"""Sizes and durations as operators write them in the configuration."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hmacfs_core.units import (
    GiB,
    KiB,
    MiB,
    TiB,
    format_duration,
    format_size,
    parse_duration,
    parse_size,
)

#: A run of ASCII digits as an operator types it, leading zeros included.
digit_texts = st.from_regex(r"[0-9]+", fullmatch=True)

#: Any number of bytes a configuration could hold, up to well past a disk's size.
byte_counts = st.integers(min_value=0, max_value=2**64)

#: Durations as floats, from none at all to far longer than any timeout.
durations = st.floats(min_value=0, max_value=1e12, allow_nan=False)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("0", 0),
        ("512", 512),
        ("512B", 512),
        ("512b", 512),
        ("1k", KiB),
        ("1K", KiB),
        ("64KB", 64 * KiB),
        ("64kb", 64 * KiB),
        ("64KiB", 64 * KiB),
        ("64 KiB", 64 * KiB),
        ("64kib", 64 * KiB),
        ("2M", 2 * MiB),
        ("10MB", 10 * MiB),
        ("10MiB", 10 * MiB),
        ("2G", 2 * GiB),
        ("2GB", 2 * GiB),
        ("1.5GiB", 3 * GiB // 2),
        ("3t", 3 * TiB),
        ("3TB", 3 * TiB),
        ("3TiB", 3 * TiB),
        ("  7 mb ", 7 * MiB),
    ],
)
def test_every_unit_form_is_read(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_an_integer_is_a_number_of_bytes() -> None:
    assert parse_size(1000) == 1000


def test_kilobyte_and_kibibyte_both_mean_1024_bytes() -> None:
    """The Go server read "10MB" as 10 MiB; configs brought over keep their limits."""
    assert parse_size("1KB") == parse_size("1KiB") == 1024
    assert parse_size("1MB") == parse_size("1MiB") == 1024 * 1024


def test_a_fraction_that_comes_to_whole_bytes_is_accepted() -> None:
    assert parse_size("1.5KiB") == 1536
    assert parse_size("0.5k") == 512


@pytest.mark.parametrize("text", ["1.5B", "1.5", "0.3K", "1.0001KiB"])
def test_a_fraction_of_a_byte_is_refused_rather_than_rounded(text: str) -> None:
    with pytest.raises(ValueError, match="not a whole number of bytes"):
        parse_size(text)


@pytest.mark.parametrize("value", [True, False])
def test_a_boolean_is_not_a_size(value: bool) -> None:
    with pytest.raises(TypeError):
        parse_size(value)


@pytest.mark.parametrize("value", [1.5, None, [1]])
def test_only_int_and_str_are_sizes(value: object) -> None:
    with pytest.raises(TypeError):
        parse_size(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [-1, "-1", "-64KB"])
def test_a_negative_size_is_refused(value: int | str) -> None:
    with pytest.raises(ValueError, match="negative"):
        parse_size(value)


@pytest.mark.parametrize(
    "text",
    ["", "ten MB", "10 XB", "10 KBB", "1.5.5K", "1e3", "0x10", "1,5K", ".5K", "\u0661"],
)
def test_a_string_that_is_not_a_size_is_refused_naming_the_accepted_forms(
    text: str,
) -> None:
    with pytest.raises(ValueError, match=r"e\.g\. '64KB', '10MB', '1\.5GiB'"):
        parse_size(text)


@given(byte_counts)
def test_a_formatted_size_reads_back_as_the_same_number(n: int) -> None:
    assert parse_size(format_size(n)) == n


@given(digit_texts)
def test_a_number_of_kibibytes_is_that_many_times_1024(digits: str) -> None:
    assert parse_size(f"{digits}KiB") == int(digits) * 1024


@given(digit_texts, st.sampled_from(["M", "MB", "MiB", "m", "mb", "mib", " MiB"]))
def test_megabytes_are_read_in_any_spelling(digits: str, unit: str) -> None:
    assert parse_size(f"{digits}{unit}") == int(digits) * MiB


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0B"),
        (1000, "1000B"),
        (1025, "1025B"),
        (KiB, "1KiB"),
        (64 * KiB, "64KiB"),
        (1536, "1.5KiB"),
        (100 * MiB, "100MiB"),
        (3 * GiB // 2, "1.5GiB"),
        (2 * TiB, "2TiB"),
    ],
)
def test_sizes_are_formatted_in_the_largest_unit_that_stays_short(
    size: int, text: str
) -> None:
    assert format_size(size) == text


def test_a_negative_size_cannot_be_formatted() -> None:
    with pytest.raises(ValueError):
        format_size(-1)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90.0),
        ("1.5", 1.5),
        ("30s", 30.0),
        ("500ms", 0.5),
        ("2m", 120.0),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        ("1.5h", 5400.0),
        ("1d", 86400.0),
        ("1d2h3m4s5ms", 93784.005),
        ("1H30M", 5400.0),
        (" 10s ", 10.0),
    ],
)
def test_every_duration_form_is_read(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("value", "seconds"), [(30, 30.0), (2.5, 2.5), (0, 0.0)])
def test_a_number_is_seconds(value: float, seconds: float) -> None:
    result = parse_duration(value)

    assert result == seconds
    assert isinstance(result, float)


@pytest.mark.parametrize("value", [True, False])
def test_a_boolean_is_not_a_duration(value: bool) -> None:
    with pytest.raises(TypeError):
        parse_duration(value)


@pytest.mark.parametrize("value", [-1, -0.5, "-5s", "-1h30m"])
def test_a_negative_duration_is_refused(value: float | str) -> None:
    with pytest.raises(ValueError, match="negative"):
        parse_duration(value)


@pytest.mark.parametrize("value", [math.inf, math.nan])
def test_an_endless_duration_is_refused(value: float) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


def test_a_duration_too_long_for_a_float_is_refused() -> None:
    with pytest.raises(ValueError, match="too long"):
        parse_duration("1" + "0" * 400 + "d")


@pytest.mark.parametrize("text", ["30m1h", "1m1m", "1s1m", "500ms1s"])
def test_duration_units_must_go_from_largest_to_smallest(text: str) -> None:
    with pytest.raises(ValueError, match="largest unit first"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["", "s", "ms", "5x", "1h30", "h1", "1w", "1.h"])
def test_a_string_that_is_not_a_duration_is_refused_naming_the_accepted_forms(
    text: str,
) -> None:
    with pytest.raises(ValueError, match=r"e\.g\. '500ms', '30s', '1h30m'"):
        parse_duration(text)


@given(
    st.integers(min_value=0, max_value=1000),
    st.integers(min_value=0, max_value=59),
    st.integers(min_value=0, max_value=59),
    st.sets(st.sampled_from("hms"), min_size=1),
)
def test_hours_minutes_and_seconds_add_up(
    hours: int, minutes: int, seconds: int, written: set[str]
) -> None:
    amounts = {"h": hours, "m": minutes, "s": seconds}
    text = "".join(f"{amounts[unit]}{unit}" for unit in "hms" if unit in written)
    expected = sum(
        amounts[unit] * length
        for unit, length in (("h", 3600), ("m", 60), ("s", 1))
        if unit in written
    )

    assert parse_duration(text) == expected


@given(durations)
def test_a_formatted_duration_reads_back_as_the_same_float(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.integers(min_value=0, max_value=10**9))
def test_whole_seconds_are_formatted_without_milliseconds(seconds: int) -> None:
    assert "ms" not in format_duration(seconds)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.1, "100ms"),
        (0.5, "500ms"),
        (1.25, "1s250ms"),
        (90, "1m30s"),
        (5400, "1h30m"),
        (86400, "1d"),
        (93784.005, "1d2h3m4s5ms"),
    ],
)
def test_durations_are_formatted_largest_unit_first(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [-1, math.inf, math.nan])
def test_a_negative_or_endless_duration_cannot_be_formatted(seconds: float) -> None:
    with pytest.raises(ValueError):
        format_duration(seconds)
