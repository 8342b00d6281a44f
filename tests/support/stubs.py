"""Small stand-ins for tests that drive the controller over the real Kubernetes adapters but
are not about Prometheus or time (those have their own real-I/O tests)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from canary.core.model import MetricsSample, MetricValue
from canary.core.ports import CheckRequest


class Metrics:
    """Every check passes, or (``error_rate`` above a plan's bound) fails."""

    def __init__(self) -> None:
        self.error_rate = 0.0

    def sample(self, requests: Sequence[CheckRequest], at: datetime) -> Mapping[str, MetricsSample]:
        return {
            r.plan: MetricsSample(
                rollout_id=r.rollout_id,
                step=r.step,
                window=r.window,
                canary_requests=500.0,
                stable_requests=4500.0,
                metrics=tuple(self._value(m.name) for m in r.metrics),
            )
            for r in requests
        }

    def _value(self, name: str) -> MetricValue:
        """Canary and stable alike (relative bounds pass), unless the canary's errors rose."""
        healthy = 0.0 if "error" in name else 10.0
        value = self.error_rate if "error" in name else healthy
        return MetricValue(name, value=value, stable_value=healthy)


class Clock:
    """A clock the test moves (``now_``), starting at the wall clock."""

    def __init__(self) -> None:
        self.now_ = datetime.now(UTC)

    def now(self) -> datetime:
        return self.now_

    def seconds(self) -> float:
        """Read as ``time.monotonic`` is: seconds, moving only when the test moves them."""
        return self.now_.timestamp()
