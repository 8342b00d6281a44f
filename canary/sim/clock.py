"""A clock that moves only when told to: simulated rollouts are instant and repeatable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from canary.core.timestamps import iso


class FakeClock:
    """Implements :class:`canary.core.ports.Clock`; ``advance`` is the only way time passes."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError(f"FakeClock needs an aware datetime, got {start!r}")
        self._now = start.astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        """Move time forward by ``delta`` (never backwards) and return the new time."""
        if delta < timedelta(0):
            raise ValueError(f"time does not go backwards (advance by {delta})")
        self._now += delta
        return self._now

    def __repr__(self) -> str:
        return f"FakeClock({iso(self._now)})"
