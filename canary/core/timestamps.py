"""ISO 8601 timestamps, one spelling everywhere: UTC with a ``Z`` (``2026-12-03T07:30:00Z``), as
the state annotation, event records, log lines and the CLI's JSON write them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def iso(value: datetime) -> str:
    """``2026-12-03T07:30:00.250000Z``; an aware time in any zone is converted to UTC."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def iso_or_none(value: datetime | None) -> str | None:
    return iso(value) if value is not None else None


def parse_iso(value: Any) -> datetime | None:
    """A time read leniently (log lines, a record someone edited): an aware UTC datetime, or
    None when ``value`` is not one. A time without a zone is taken as UTC."""
    if not isinstance(value, str):
        return None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return at.astimezone(UTC) if at.tzinfo is not None else at.replace(tzinfo=UTC)
    except (ValueError, OverflowError):  # not a time, or one at the very edge of the calendar
        return None


def parse_iso_strict(value: Any) -> datetime | None:
    """A time read strictly (the persisted state): None stays None; anything that is not an
    ISO 8601 string with a zone raises :class:`ValueError`."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"timestamp must be a string, got {value!r}")
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp {value!r} has no timezone")
    return parsed
