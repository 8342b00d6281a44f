"""How the pods of one image behave: what the mesh measures and when the pods are available."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from itertools import pairwise

from canary.core.plan import Metric

#: Latency of a healthy bookinfo ``reviews`` pod, ms per quantile.
HEALTHY_LATENCY_MS: Mapping[float, float] = {0.5: 28.0, 0.9: 65.0, 0.99: 115.0}


def _healthy_latency() -> Mapping[float, float]:
    return dict(HEALTHY_LATENCY_MS)


@dataclass(frozen=True)
class Behaviour:
    """The traits of the pods running one image.

    Metrics (read by :class:`~canary.sim.mesh.SimMesh`):

    - ``error_ratio``: share of requests answered 5xx (0.01 = 1 %).
    - ``latency_ms``: request duration per quantile, e.g. ``{0.5: 30, 0.9: 70, 0.99: 120}``;
      other quantiles are interpolated linearly, and clamped outside the given range.
    - ``custom``: the value of custom metrics, by the plan's metric name. A custom metric not
      named here gets a healthy value, one that passes the metric's bounds (see
      :func:`healthy_custom_value`): 0 when 0 is within them (``max: 0`` included), else the
      midpoint of ``[min, max]``, else twice the one bound (``min: 5`` → 10, ``max: -1`` → -2).
      A name listed here always wins, e.g. ``{"canary-restarts": 3}`` fails ``max: 0``.
    - ``misrouted``: the mesh does not deliver this track's share to these pods (e.g. the
      DestinationRule subset selects none of them); that share lands on the other track.

    Availability (read by :class:`~canary.sim.cluster.SimCluster`):

    - ``ready_after``: time from a template change until the new pods are available
      (None: the cluster's default).
    - ``never_ready``: the new pods never pass their readiness probe; the old ones keep serving.
    - ``crash_at_weight``: the pods crash-loop once their track's weight reaches this value,
      and stay down until their template changes.
    """

    error_ratio: float = 0.001
    latency_ms: Mapping[float, float] = field(default_factory=_healthy_latency)
    custom: Mapping[str, float] = field(default_factory=dict)
    ready_after: timedelta | None = None
    never_ready: bool = False
    crash_at_weight: int | None = None
    misrouted: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.error_ratio <= 1.0:
            raise ValueError(f"error_ratio must be within [0, 1], got {self.error_ratio}")
        for q, ms in self.latency_ms.items():
            if not 0.0 < q <= 1.0 or ms < 0:
                raise ValueError(f"latency_ms needs quantiles in (0, 1] and ms >= 0, got {q}: {ms}")
        if self.ready_after is not None and self.ready_after < timedelta(0):
            raise ValueError(f"ready_after must not be negative, got {self.ready_after}")
        if self.crash_at_weight is not None and not 0 < self.crash_at_weight <= 100:
            raise ValueError(f"crash_at_weight must be within 1..100, got {self.crash_at_weight}")

    def custom_value(self, metric: Metric) -> float:
        """The value of the custom ``metric``: ``custom[metric.name]`` if named, else healthy."""
        value = self.custom.get(metric.name)
        return value if value is not None else healthy_custom_value(metric)

    def latency(self, quantile: float) -> float | None:
        """The request duration at ``quantile`` in ms; None when no latency is modelled."""
        points = sorted(self.latency_ms.items())
        if not points:
            return None
        if quantile <= points[0][0]:
            return points[0][1]
        for (q0, v0), (q1, v1) in pairwise(points):
            if quantile <= q1:
                return v0 + (v1 - v0) * (quantile - q0) / (q1 - q0)
        return points[-1][1]


def healthy_custom_value(metric: Metric) -> float:
    """A value that passes ``metric``'s ``min`` / ``max`` (both inclusive), with a margin so
    relative noise below 50 % keeps it passing: 0 when 0 passes (a count of restarts, errors,
    ...; also every metric without bounds), else the midpoint of ``[min, max]`` when both are
    given, else twice the one bound (above a positive ``min``, below a negative ``max``)."""
    lo, hi = metric.min, metric.max
    if (lo is None or lo <= 0.0) and (hi is None or hi >= 0.0):
        return 0.0
    if lo is not None and hi is not None:
        return (lo + hi) / 2.0
    # One bound, and 0 fails it: lo > 0 (twice is above it) or hi < 0 (twice is below it).
    return 2.0 * (lo if lo is not None else hi or 0.0)
