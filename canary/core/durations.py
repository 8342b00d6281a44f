"""Durations, one rule everywhere: Go's spelling (``500ms``, ``30s``, ``2m``, ``1m30s``), as plans,
the controller config, every CLI flag and helm's ``--timeout`` write them.
"""

from __future__ import annotations

import re
from datetime import timedelta
from fractions import Fraction

from canary.core.wording import got, show

#: Microseconds per unit; Go's units (time.ParseDuration). A timedelta holds microseconds.
_UNIT_US: dict[str, Fraction] = {
    "ns": Fraction(1, 1000),
    "us": Fraction(1),
    "µs": Fraction(1),  # U+00B5 MICRO SIGN, as Go prints it
    "μs": Fraction(1),  # U+03BC GREEK SMALL LETTER MU
    "ms": Fraction(1000),
    "s": Fraction(1_000_000),
    "m": Fraction(60_000_000),
    "h": Fraction(3_600_000_000),
}


_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"


_BARE_NUMBER = re.compile(_NUMBER)


_COMPONENT = re.compile(rf"({_NUMBER})([^\d.]*)")


DURATION_FIX = 'write a number and a unit, one of ms, s, m, h: e.g. "30s", "2m" or "1m30s"'


class DurationError(ValueError):
    def __init__(self, message: str, fix: str = DURATION_FIX) -> None:
        self.message = message
        self.fix = fix
        super().__init__(f"{message} ({fix})")


def parse_duration(text: str) -> timedelta:
    """Parse a Go-style duration (``500ms``, ``30s``, ``2m``, ``1m30s``, ``1.5h``).

    Bare numbers, negative values, unknown units and values finer than a microsecond raise
    :class:`ValueError` whose text says how to write the value instead.
    """
    if not isinstance(text, str):
        raise DurationError(f'expected a duration such as "30s", got {got(text)}')
    if text == "":
        raise DurationError("empty duration")
    if text.startswith("-"):
        raise DurationError(
            f"{show(text)} is negative", 'durations cannot be negative; write e.g. "30s"'
        )
    if _BARE_NUMBER.fullmatch(text):
        raise DurationError(f"{text} is a bare number, not a duration", f'write "{text}s"')
    total = Fraction(0)
    pos = 0
    while pos < len(text):
        match = _COMPONENT.match(text, pos)
        if match is None:
            raise DurationError(f"{show(text)} is not a duration")
        number, unit = match.groups()
        if unit == "":
            raise DurationError(f"{show(text)} is not a duration: {number} has no unit")
        if unit not in _UNIT_US:
            fix = DURATION_FIX
            if unit == "d":
                fix = 'the largest unit is h: write e.g. "24h" for a day'
            raise DurationError(f"{show(text)} has an unknown unit {show(unit)}", fix)
        total += Fraction(number) * _UNIT_US[unit]
        pos = match.end()
    if total.denominator != 1:
        raise DurationError(
            f"{show(text)} is finer than a microsecond", "round it to whole microseconds"
        )
    try:
        return timedelta(microseconds=int(total))
    except OverflowError:
        raise DurationError(f"{show(text)} is too large", 'write e.g. "10m"') from None


def _fraction_text(value: int, unit: int) -> str:
    whole, part = divmod(value, unit)
    if part == 0:
        return str(whole)
    digits = str(part).rjust(len(str(unit)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}"


def format_duration(td: timedelta) -> str:
    """Format a duration the way Go writes it, minus zero components: ``30s``, ``2m``, ``1m30s``.

    ``parse_duration(format_duration(td)) == td`` for every non-negative timedelta.
    """
    us = td // timedelta(microseconds=1)
    if us < 0:
        raise ValueError(f"negative duration {td!r} has no plan representation")
    if us == 0:
        return "0s"
    if us < 1000:
        return f"{us}µs"
    if us < 1_000_000:
        return f"{_fraction_text(us, 1000)}ms"
    hours, rest = divmod(us, 3_600_000_000)
    minutes, rest = divmod(rest, 60_000_000)
    out = ""
    if hours:
        out += f"{hours}h"
    if minutes:
        out += f"{minutes}m"
    if rest:
        out += f"{_fraction_text(rest, 1_000_000)}s"
    return out


def go_duration(delta: timedelta) -> str:
    """``timedelta(minutes=5)`` → ``5m0s``: how Go's ``time.Duration`` prints itself, and so
    how helm shows ``--timeout`` (whole seconds; helm parses both spellings)."""
    total = int(delta.total_seconds())
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{seconds}s"
    if minutes:
        return f"{minutes}m{seconds}s"
    return f"{seconds}s"


def format_seconds(delta: timedelta) -> str:
    """:func:`format_duration` of the whole seconds in ``delta`` (what messages show of a wait
    measured on a clock): ``2m30s``, never ``2m30.0417s``."""
    return format_duration(timedelta(seconds=max(0, int(delta.total_seconds()))))
