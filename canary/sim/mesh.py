"""A simulated Istio mesh + Prometheus: the MetricsSource port.

For a check over ``[at - window, at]`` the mesh integrates, piece by piece, the service's request
rate × each track's share from the weight history of the plan's managed route, and attributes
each piece to the pods that served it (the Deployment's serving pod revision at that time, see
:meth:`SimCluster.serving`). What those requests measured follows the
:class:`~canary.sim.behaviour.Behaviour` of the image the pods run. Values are exact (a
request-weighted mix when the window spans several images), deterministic, and noisy only with
a seeded ``noise``.

Like Istio with ``reporter="destination"``, requests that reach no pod (no ready endpoints, a
crash-looping Deployment) are not seen by the destination workload at all.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise

from canary.core import queries
from canary.core.analysis import DEFAULT_SCRAPE_INTERVAL
from canary.core.model import MetricsSample, MetricValue
from canary.core.plan import DEFAULT_LATENCY_QUANTILE, Metric, MetricType
from canary.core.ports import CheckRequest, Clock
from canary.sim.behaviour import Behaviour
from canary.sim.cluster import SimCluster

DEFAULT_RPS = 50.0
PROMETHEUS_DOWN = (
    'connection refused: Post "http://prometheus.istio-system:9090/api/v1/query": '
    "dial tcp 10.96.12.7:9090: connect: connection refused"
)
_BEGINNING = datetime.min.replace(tzinfo=UTC)


@dataclass
class _Track:
    """Requests one workload served in the window, by the Behaviour that served them."""

    parts: list[tuple[Behaviour, float]] = field(default_factory=list)

    def add(self, behaviour: Behaviour, requests: float) -> None:
        self.parts.append((behaviour, requests))

    @property
    def requests(self) -> float:
        return sum(n for _, n in self.parts)

    def _mix(self, values: Sequence[tuple[float | None, float]]) -> float | None:
        known = [(v, n) for v, n in values if v is not None and n > 0]
        total = sum(n for _, n in known)
        if total <= 0:
            return None
        return sum(v * n for v, n in known) / total

    def value(self, metric: Metric) -> float | None:
        if self.requests <= 0:
            return None  # rate() over no requests: NaN in Prometheus
        if metric.type is MetricType.ERROR_RATE:
            return self._mix([(b.error_ratio, n) for b, n in self.parts])
        if metric.type is MetricType.LATENCY:
            q = metric.quantile if metric.quantile is not None else DEFAULT_LATENCY_QUANTILE
            return self._mix([(b.latency(q), n) for b, n in self.parts])
        return self._mix([(b.custom_value(metric), n) for b, n in self.parts])


class SimMesh:
    """MetricsSource over the simulated cluster; also tells the cluster how pods behave."""

    def __init__(
        self,
        cluster: SimCluster,
        clock: Clock,
        behaviours: Mapping[str, Behaviour] | None = None,
        *,
        default: Behaviour | None = None,
        rps: float = DEFAULT_RPS,
        scrape_interval: timedelta = DEFAULT_SCRAPE_INTERVAL,
        noise: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.cluster = cluster
        self.clock = clock
        #: image → how its pods behave; images not listed behave like ``default``.
        self.behaviours: dict[str, Behaviour] = dict(behaviours or {})
        self.default = default or Behaviour()
        self.scrape_interval = scrape_interval
        #: Prometheus unreachable: every sample is an error.
        self.down = False
        #: metric name → error message: that query fails (e.g. a 422 for a bad custom query).
        self.query_errors: dict[str, str] = {}
        #: Relative noise on metric values (0.05 = ±5 %), from a generator seeded with ``seed``.
        self.noise = noise
        self._rng = random.Random(seed)
        #: sample() calls answered, for batching assertions.
        self.calls = 0
        self._rps: dict[str, list[tuple[datetime, float]]] = {"": [(_BEGINNING, rps)]}
        cluster.behaviour_of = self.behaviour

    # --- configuration -----------------------------------------------------------------------

    def behaviour(self, image: str) -> Behaviour:
        return self.behaviours.get(image, self.default)

    def set_rps(self, rps: float, service: str | None = None) -> None:
        """From now on the service (default: every service) receives ``rps`` requests/s."""
        if rps < 0:
            raise ValueError(f"rps must not be negative, got {rps}")
        history = self._rps.setdefault(service or "", [])
        now = self.clock.now()
        while history and history[-1][0] >= now:
            history.pop()
        history.append((now, rps))

    def rps_at(self, service: str, at: datetime) -> float:
        history = self._rps.get(service) or self._rps[""]
        i = bisect.bisect_right([t for t, _ in history], at) - 1
        return history[i][1] if i >= 0 else 0.0

    # --- MetricsSource -----------------------------------------------------------------------

    def sample(self, requests: Sequence[CheckRequest], at: datetime) -> Mapping[str, MetricsSample]:
        self.calls += 1
        out: dict[str, MetricsSample] = {}
        for req in requests:
            if self.down:
                out[req.plan] = MetricsSample(
                    rollout_id=req.rollout_id,
                    step=req.step,
                    window=req.window,
                    error=PROMETHEUS_DOWN,
                )
            elif req.window < 2 * self.scrape_interval:
                out[req.plan] = MetricsSample(
                    rollout_id=req.rollout_id, step=req.step, window=req.window, too_short=True
                )
            else:
                out[req.plan] = self._sample(req, at)
        return out

    def traffic(self, req: CheckRequest, at: datetime) -> tuple[float, float]:
        """(stable requests, canary requests) the destinations saw in the window."""
        stable, canary = self._traffic(req, at)
        return stable.requests, canary.requests

    def _traffic(self, req: CheckRequest, at: datetime) -> tuple[_Track, _Track]:
        stable, canary = _Track(), _Track()
        cluster = self.cluster
        binding = cluster.binding(req.plan) or cluster.binding_for_workload(
            req.namespace, req.canary
        )
        if binding is None:
            return stable, canary
        start = at - req.window
        ns = req.namespace
        points = {start, at}
        candidates = [t for t, _ in binding.history]
        candidates += cluster.change_points(ns, req.stable)
        candidates += cluster.change_points(ns, req.canary)
        candidates += [t for t, _ in self._rps.get(req.service) or self._rps[""]]
        points.update(t for t in candidates if start < t < at)
        for seg_start, seg_end in pairwise(sorted(points)):
            seconds = (seg_end - seg_start).total_seconds()
            weights = binding.weights_at(seg_start)
            if seconds <= 0 or weights is None:
                continue
            rps = self.rps_at(req.service, seg_start)
            stable_rev = cluster.serving(ns, req.stable, seg_start)
            canary_rev = cluster.serving(ns, req.canary, seg_start)
            stable_b = self.behaviour(stable_rev.image) if stable_rev else None
            canary_b = self.behaviour(canary_rev.image) if canary_rev else None
            for share, own_b, own, other_b, other in (
                (weights.stable, stable_b, stable, canary_b, canary),
                (weights.canary, canary_b, canary, stable_b, stable),
            ):
                n = rps * share / 100.0 * seconds
                if n <= 0 or own_b is None:
                    continue  # no pod serves it: the source sees 503s, the destination nothing
                if not own_b.misrouted:
                    own.add(own_b, n)
                elif other_b is not None:
                    other.add(other_b, n)
        return stable, canary

    def _noisy(self, value: float | None) -> float | None:
        if value is None or self.noise <= 0:
            return value
        return value * (1.0 + self._rng.uniform(-self.noise, self.noise))

    def _sample(self, req: CheckRequest, at: datetime) -> MetricsSample:
        stable, canary = self._traffic(req, at)
        values: list[MetricValue] = []
        for metric in req.metrics:
            query, stable_query = queries.render_tracks(
                metric,
                namespace=req.namespace,
                stable=req.stable,
                canary=req.canary,
                window=req.window,
                service=req.service,
            )
            error = self.query_errors.get(metric.name)
            if error is not None:
                values.append(
                    MetricValue(
                        name=metric.name, query=query, stable_query=stable_query, error=error
                    )
                )
                continue
            values.append(
                MetricValue(
                    name=metric.name,
                    query=query,
                    value=self._noisy(canary.value(metric)),
                    stable_query=stable_query,
                    stable_value=self._noisy(stable.value(metric)) if metric.relative else None,
                )
            )
        return MetricsSample(
            rollout_id=req.rollout_id,
            step=req.step,
            window=req.window,
            canary_requests=canary.requests,
            stable_requests=stable.requests,
            metrics=tuple(values),
        )
