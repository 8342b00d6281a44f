"""The building blocks of validation: one document's problems (:class:`Doc`) and a parser per
kind of value. Each parser takes the raw value and its field path, reports what is wrong with
the fix, and returns the parsed value or None; callers collect every problem before giving up.
"""

from __future__ import annotations

import difflib
import enum
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import TypeVar

from canary.core.durations import DURATION_FIX, DurationError, format_duration, parse_duration
from canary.core.errors import Problem
from canary.core.names import NameRule, name_problem
from canary.core.wording import DUPLICATE_KEY_FIX, got, show, suggest_key

_T = TypeVar("_T")


_E = TypeVar("_E", bound=enum.StrEnum)


class Doc:
    """Collects the problems of one document; ``prefix`` tells documents of a stream apart."""

    def __init__(self, source: str, prefix: str = "") -> None:
        self.source = source
        self.prefix = prefix
        self.problems: list[Problem] = []

    def add(self, path: str, message: str, fix: str = "") -> None:
        self.problems.append(Problem(self.source, self.prefix + path, message, fix))

    def mark(self) -> int:
        return len(self.problems)

    def since(self, mark: int) -> bool:
        """Whether a problem was added after ``mark``."""
        return len(self.problems) > mark


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def known_fields(
    doc: Doc,
    value: object,
    path: str,
    known: Sequence[str],
    required: Mapping[str, str] | None = None,
    *,
    what: str = "a mapping",
    fix: str = "",
) -> dict[str, object] | None:
    """The known keys of a mapping; reports a non-mapping, unknown, duplicate and missing keys."""
    if not isinstance(value, Mapping):
        doc.add(path, f"expected {what}, got {got(value)}", fix)
        return None
    duplicates = {key_text(k) for k in getattr(value, "duplicates", ())}
    out: dict[str, object] = {}
    for key, item in value.items():
        text = key_text(key)
        if not isinstance(key, str) or key not in known:
            doc.add(join(path, text), "unknown key", suggest_key(text, known))
            continue
        if text in duplicates:
            doc.add(
                join(path, text),
                "duplicate key",
                DUPLICATE_KEY_FIX,
            )
        out[key] = item
    for key, key_fix in (required or {}).items():
        if key not in value:
            doc.add(join(path, key), "required key is missing", key_fix)
    return out


def key_text(key: object) -> str:
    return key if isinstance(key, str) else show(key)


def text_value(doc: Doc, value: object, path: str, what: str = "a string") -> str | None:
    if not isinstance(value, str):
        fix = f'quote it: "{show(value)}"' if isinstance(value, int | float) else ""
        doc.add(path, f"expected {what}, got {got(value)}", fix)
        return None
    if not value.strip():
        doc.add(path, "empty string", f"give {what}")
        return None
    return value


def name_value(doc: Doc, value: object, path: str, rule: NameRule) -> str | None:
    text = text_value(doc, value, path, f"a {rule.what}")
    if text is None:
        return None
    problem = name_problem(text, rule)
    if problem is not None:
        doc.add(path, *problem)
        return None
    return text


def integer_value(doc: Doc, value: object, path: str, minimum: int) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        doc.add(
            path,
            f"expected a whole number, got {got(value)}",
            f"write a whole number of at least {minimum}, without quotes",
        )
        return None
    if value < minimum:
        doc.add(
            path, f"{value} is less than {minimum}", f"use a whole number of at least {minimum}"
        )
        return None
    return value


def number_value(doc: Doc, value: object, path: str) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        doc.add(path, f"expected a number, got {got(value)}", "write a plain number, e.g. 0.01")
        return None
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        doc.add(path, f"{show(value)} is not a finite number", "use a finite number")
        return None
    return number


def boolean_value(doc: Doc, value: object, path: str) -> bool | None:
    if not isinstance(value, bool):
        doc.add(path, f"expected true or false, got {got(value)}", "write true or false")
        return None
    return value


def choice_value(doc: Doc, value: object, path: str, choices: type[_E], meaning: str) -> _E | None:
    names = [c.value for c in choices]
    if not isinstance(value, str):
        doc.add(path, f"expected one of {', '.join(names)}, got {got(value)}", meaning)
        return None
    try:
        return choices(value)
    except ValueError:
        close = difflib.get_close_matches(value.lower(), names, n=1, cutoff=0.6)
        fix = f"did you mean {close[0]}? " if close else ""
        doc.add(path, f"{show(value)} is not one of {', '.join(names)}", fix + meaning)
        return None


def duration_value(
    doc: Doc, value: object, path: str, default: timedelta, *, allow_zero: bool = False
) -> timedelta | None:
    example = f'e.g. "{format_duration(default)}", the default' if default else 'e.g. "30s"'
    if isinstance(value, int | float) and not isinstance(value, bool):
        shown = show(value)
        if value < 0:
            doc.add(path, f"{shown} is negative", f"durations cannot be negative; {example}")
        else:
            doc.add(path, f"{shown} is a bare number, not a duration", f'write "{shown}s"')
        return None
    if not isinstance(value, str):
        doc.add(path, f'expected a duration such as "30s", got {got(value)}', DURATION_FIX)
        return None
    try:
        td = parse_duration(value)
    except DurationError as err:
        doc.add(path, err.message, err.fix)
        return None
    if td <= timedelta(0) and not allow_zero:
        doc.add(path, f"{show(value)} must be greater than zero", example)
        return None
    return td


def optional_value(
    doc: Doc,
    fields: Mapping[str, object],
    key: str,
    path: str,
    *,
    default: _T,
    parse: Callable[[Doc, object, str], _T | None],
) -> _T | None:
    """``parse(doc, value, path)`` when ``key`` is given, else ``default``."""
    if key not in fields:
        return default
    return parse(doc, fields[key], join(path, key))
