"""
Sizes and durations as operators write them: ``"64KB"``, ``"1.5GiB"``, ``"1h30m"``.

The configuration accepts both plain numbers (bytes, seconds) and these strings, so
that a limit reads the way an operator thinks of it. This module speaks Python: it
parses and formats values and knows nothing of TOML or of where a value came from.
"""

import math
import re
from decimal import Decimal
from fractions import Fraction

__all__ = [
    "GiB",
    "KiB",
    "MiB",
    "TiB",
    "format_duration",
    "format_size",
    "parse_duration",
    "parse_size",
]

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
TiB = 1024 * GiB

# Decimal and binary spellings share one multiplier: the Go server that hmacfs
# replaces reads "10MB" as 10 * 1024 * 1024, and its config files come over as-is.
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": KiB,
    "kb": KiB,
    "kib": KiB,
    "m": MiB,
    "mb": MiB,
    "mib": MiB,
    "g": GiB,
    "gb": GiB,
    "gib": GiB,
    "t": TiB,
    "tb": TiB,
    "tib": TiB,
}

# Largest first: format_size picks the largest unit that gives a short number.
_SIZE_NAMES = (("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB))

_SIZE_FORMS = "use a number of bytes or e.g. '64KB', '10MB', '1.5GiB'"

# ASCII digits only: re's \d also matches digits of other scripts.
_SIZE = re.compile(r"(?P<number>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>[a-z]*)", re.I)

# Largest first, which is also the only order the components may appear in.
_DURATION_UNITS = (
    ("d", Fraction(86400)),
    ("h", Fraction(3600)),
    ("m", Fraction(60)),
    ("s", Fraction(1)),
    ("ms", Fraction(1, 1000)),
)

_DURATION_FORMS = "use a number of seconds or e.g. '500ms', '30s', '1h30m', '1.5h'"

# "ms" is tried before "m" so that "500ms" is not read as 500 minutes and an "s".
_DURATION_COMPONENT = re.compile(
    r"\s*(?P<number>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>ms|s|m|h|d)", re.I
)

_PLAIN_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def parse_size(value: int | str) -> int:
    """
    Read a size in bytes as an operator writes it.

    An ``int`` is a number of bytes. A string is a number, optionally with a
    fraction, followed by an optional unit: ``B``, ``K``/``KB``/``KiB``,
    ``M``/``MB``/``MiB``, ``G``/``GB``/``GiB`` or ``T``/``TB``/``TiB``, in any case,
    with or without a space (``"512"``, ``"64 KiB"``, ``"1.5GiB"``, ``"2g"``).

    ``KB`` and ``KiB`` both mean 1024 bytes (and likewise for the larger units), as
    in the Go server hmacfs replaces: operators bring its config files over, and
    ``"10MB"`` must keep meaning the limit it meant there.

    A fraction is allowed only when it comes to a whole number of bytes
    (``"1.5KiB"`` is 1536), because a size that is silently rounded is not the size
    that was written.

    :param value: the size as found in the configuration.
    :return: the size in bytes, never negative.
    :raises TypeError: for anything but an ``int`` or a ``str``, including
        ``bool``, which Python counts as an ``int``.
    :raises ValueError: for a string that is not a size, a negative size or a
        fraction of a byte; the message names the accepted forms.
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"expected an int or a str, got {type(value).__name__}")

    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"invalid size {value}: a size cannot be negative")
        return value

    match = _SIZE.fullmatch(value.strip())
    if match is None or match["unit"].lower() not in _SIZE_UNITS:
        if value.strip().startswith("-"):
            raise ValueError(f"invalid size {value!r}: a size cannot be negative")
        raise ValueError(f"invalid size {value!r} ({_SIZE_FORMS})")

    size = Fraction(match["number"]) * _SIZE_UNITS[match["unit"].lower()]
    if size.denominator != 1:
        raise ValueError(f"invalid size {value!r}: not a whole number of bytes")
    return int(size)


def format_size(n: int) -> str:
    """
    Write a number of bytes the way the documentation and the CLI show sizes.

    The unit is the largest binary one that keeps the number short: at most three
    decimals (``"64KiB"``, ``"1.5GiB"``, ``"1000B"``). The result always reads back
    to the same number through :func:`parse_size`.

    :param n: a number of bytes, not negative.
    :raises ValueError: if ``n`` is negative.
    """
    if n < 0:
        raise ValueError(f"a size cannot be negative, got {n}")

    for name, multiplier in _SIZE_NAMES:
        amount = Fraction(n, multiplier)
        if amount >= 1 and (amount * 1000).denominator == 1:
            return f"{_decimal_text(amount)}{name}"
    return f"{n}B"


def parse_duration(value: int | float | str) -> float:
    """
    Read a duration in seconds as an operator writes it.

    A number is seconds. A string is either a plain number of seconds (``"90"``) or
    one or more components, each a number with a unit, largest unit first, each
    unit at most once: ``ms``, ``s``, ``m``, ``h``, ``d`` (``"500ms"``, ``"1h30m"``,
    ``"1.5h"``, ``"1d"``). Components add up.

    Requiring the largest unit first rejects ``"30m1h"``, which is more likely a
    mistake than a way of writing 90 minutes.

    :param value: the duration as found in the configuration.
    :return: the duration in seconds, finite and never negative.
    :raises TypeError: for anything but a number or a ``str``, including ``bool``.
    :raises ValueError: for a string that is not a duration, or a negative or
        infinite one; the message names the accepted forms.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(f"expected a number or a str, got {type(value).__name__}")

    exact = _duration_from_text(value) if isinstance(value, str) else value
    try:
        seconds = float(exact)
    except OverflowError:
        raise ValueError(f"invalid duration {value!r}: too long") from None

    if seconds < 0 or not math.isfinite(seconds):
        raise ValueError(
            f"invalid duration {value!r}: use a finite number of seconds, not negative"
        )
    return seconds


def format_duration(s: float) -> str:
    """
    Write a number of seconds the way the documentation and the CLI show durations.

    The duration is split into days, hours, minutes, seconds and milliseconds, and
    the zero components are left out (``"1h30m"``, ``"500ms"``, ``"1d"``, ``"0s"``).
    The result always reads back to the same float through :func:`parse_duration`.

    :param s: a number of seconds, finite and not negative.
    :raises ValueError: if ``s`` is negative or not finite.
    """
    if s < 0 or not math.isfinite(s):
        raise ValueError(f"a duration must be finite and not negative, got {s}")

    # The shortest decimal that reads back as the same float, so that 0.1 is
    # written "100ms" and not as the binary fraction the float really holds.
    remaining = Fraction(Decimal(repr(float(s))))

    parts = []
    for unit, length in _DURATION_UNITS[:-1]:
        amount, remaining = divmod(remaining, length)
        if amount:
            parts.append(f"{amount}{unit}")

    # What is left is under a second and is written in (fractional) milliseconds.
    milliseconds = remaining * 1000
    if milliseconds:
        parts.append(f"{_decimal_text(milliseconds)}ms")
    return "".join(parts) or "0s"


def _duration_from_text(value: str) -> Fraction:
    """
    Read a duration written as text, such as ``"90"`` or ``"1h30m"``, exactly.

    :return: the total in seconds.
    :raises ValueError: if ``value`` is not a plain number nor a sequence of
        components, or if its units are not in decreasing order.
    """
    text = value.strip()
    if _PLAIN_NUMBER.fullmatch(text):
        return Fraction(text)
    if text.startswith("-"):
        raise ValueError(f"invalid duration {value!r}: a duration cannot be negative")

    units = [unit for unit, _ in _DURATION_UNITS]
    lengths = dict(_DURATION_UNITS)
    total = Fraction(0)
    position = 0
    previous_rank = -1

    while position < len(text) or previous_rank < 0:
        match = _DURATION_COMPONENT.match(text, position)
        if match is None:
            raise ValueError(f"invalid duration {value!r} ({_DURATION_FORMS})")

        unit = match["unit"].lower()
        rank = units.index(unit)
        if rank <= previous_rank:
            raise ValueError(
                f"invalid duration {value!r}: write the largest unit first and each "
                "unit once, e.g. '1h30m'"
            )

        total += Fraction(match["number"]) * lengths[unit]
        previous_rank = rank
        position = match.end()

    return total


def _decimal_text(amount: Fraction) -> str:
    """
    Write an exact fraction whose denominator divides a power of ten as a decimal.

    Every value this module formats is such a fraction (a float, or bytes over a
    power of two), so the text is exact and never in scientific notation.
    """
    whole, rest = divmod(amount.numerator, amount.denominator)
    if not rest:
        return str(whole)

    digits = []
    while rest:
        rest *= 10
        digit, rest = divmod(rest, amount.denominator)
        digits.append(str(digit))
    return f"{whole}.{''.join(digits)}"
