"""Rollout plans as frozen dataclasses, with every default (docs/design.md §2).

A plan is parsed from YAML (:mod:`canary.plans`), validated in full (:mod:`canary.core.spec`),
and frozen. Everything downstream (analysis,
decide, the adapters) receives these dataclasses and never the raw YAML, so a field that reaches
a PromQL selector or a helm argv has already been checked here. Every default is a named
constant with the reason for its value.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import timedelta

API_VERSION = "canary.dev/v1"
KIND = "RolloutPlan"

# --- defaults (design §2: "defaults are the values shown") ----------------------------------------

#: 10 % catches a bad canary while exposing few users; 50 % gives both tracks equal traffic to
#: compare; 100 % proves the canary alone carries the load before it is promoted.
DEFAULT_STEPS: tuple[int, ...] = (10, 50, 100)
#: Long enough for two 30 s checks to pass with room for one inconclusive check in between.
DEFAULT_HOLD = timedelta(minutes=2)
#: Typical time for new pods to pull an image and pass readiness; longer means something is wrong.
DEFAULT_PROGRESS_DEADLINE = timedelta(minutes=10)
#: Same reasoning as the progress deadline, applied to stable after CI promoted it.
DEFAULT_FINALISE_TIMEOUT = timedelta(minutes=10)
#: Two Prometheus scrapes at Istio's usual 15 s: each check sees fresh samples.
DEFAULT_INTERVAL = timedelta(seconds=30)
#: rate() needs at least two samples per series; a minute holds four at 15 s scrapes.
DEFAULT_WINDOW = timedelta(minutes=1)
#: Two scrapes after a weight write, so the first check sees traffic under the new weights.
DEFAULT_SETTLE = timedelta(seconds=30)
#: Below ~20 requests one error moves the error rate by 5 %: too noisy to judge.
DEFAULT_MIN_REQUESTS = 20
#: One good check can be luck; two in a row are a trend.
DEFAULT_REQUIRED_PASSES = 2
#: One bad check can be a blip (a cold cache); two in a row are a regression.
DEFAULT_FAILURE_LIMIT = 2
#: Five checks (2.5 min at the default interval) survives a Prometheus restart, not an outage.
DEFAULT_ERROR_LIMIT = 5
#: Ten minutes without enough traffic means the plan cannot judge this service at this hour.
DEFAULT_INCONCLUSIVE_TIMEOUT = timedelta(minutes=10)
#: Helm's own default --timeout for rollback is 5m0s.
DEFAULT_ROLLBACK_TIMEOUT = timedelta(minutes=5)
#: Three helm attempts ride out an API-server blip; more would hide a real failure.
DEFAULT_ROLLBACK_RETRIES = 3
#: Istio's sidecar on the canary itself sees every request that reached it.
DEFAULT_REPORTER = "destination"
#: The tail users feel; p50 hides regressions that hit one request in a hundred.
DEFAULT_LATENCY_QUANTILE = 0.99


class MetricType(enum.StrEnum):
    ERROR_RATE = "istio-error-rate"
    LATENCY = "istio-latency"
    CUSTOM = "custom"


class Reporter(enum.StrEnum):
    DESTINATION = "destination"
    SOURCE = "source"


class OnTrouble(enum.StrEnum):
    """What to do when checks cannot judge (errorLimit / inconclusiveTimeout reached)."""

    PAUSE = "pause"  # weights to stable, no helm: a human decides
    ROLLBACK = "rollback"


@dataclass(frozen=True)
class Destination:
    host: str
    subset: str | None = None

    def __str__(self) -> str:
        return f"{self.host}/{self.subset}" if self.subset else self.host


@dataclass(frozen=True)
class VirtualServiceRef:
    name: str
    stable: Destination
    canary: Destination
    #: http route by name (str) or index (int); None: the VirtualService must have one http route.
    route: str | int | None = None


@dataclass(frozen=True)
class WorkloadRefs:
    stable: str
    canary: str


@dataclass(frozen=True)
class ReleaseRef:
    name: str
    namespace: str


@dataclass(frozen=True)
class Step:
    weight: int
    hold: timedelta = DEFAULT_HOLD


@dataclass(frozen=True)
class Metric:
    name: str
    type: MetricType
    max: float | None = None
    min: float | None = None
    max_above_stable: float | None = None
    max_ratio_to_stable: float | None = None
    quantile: float | None = None  # istio-latency only
    query: str | None = None  # custom only
    critical: bool = False
    reporter: Reporter = Reporter.DESTINATION

    @property
    def relative(self) -> bool:
        return self.max_above_stable is not None or self.max_ratio_to_stable is not None


DEFAULT_METRICS: tuple[Metric, ...] = (
    Metric(name="error-rate", type=MetricType.ERROR_RATE, max=0.01, max_above_stable=0.005),
    Metric(
        name="latency-p99",
        type=MetricType.LATENCY,
        quantile=DEFAULT_LATENCY_QUANTILE,
        max=500.0,
        max_ratio_to_stable=1.5,
    ),
)


@dataclass(frozen=True)
class Analysis:
    interval: timedelta = DEFAULT_INTERVAL
    window: timedelta = DEFAULT_WINDOW
    settle: timedelta = DEFAULT_SETTLE
    min_requests: int = DEFAULT_MIN_REQUESTS
    required_passes: int = DEFAULT_REQUIRED_PASSES
    failure_limit: int = DEFAULT_FAILURE_LIMIT
    error_limit: int = DEFAULT_ERROR_LIMIT
    on_error: OnTrouble = OnTrouble.PAUSE
    inconclusive_timeout: timedelta = DEFAULT_INCONCLUSIVE_TIMEOUT
    on_inconclusive: OnTrouble = OnTrouble.PAUSE
    metrics: tuple[Metric, ...] = DEFAULT_METRICS


@dataclass(frozen=True)
class RollbackPolicy:
    timeout: timedelta = DEFAULT_ROLLBACK_TIMEOUT
    retries: int = DEFAULT_ROLLBACK_RETRIES


@dataclass(frozen=True)
class Plan:
    name: str
    namespace: str
    release: ReleaseRef
    virtual_service: VirtualServiceRef
    workloads: WorkloadRefs
    steps: tuple[Step, ...] = tuple(Step(w) for w in DEFAULT_STEPS)
    progress_deadline: timedelta = DEFAULT_PROGRESS_DEADLINE
    finalise_timeout: timedelta = DEFAULT_FINALISE_TIMEOUT
    analysis: Analysis = field(default_factory=Analysis)
    rollback: RollbackPolicy = field(default_factory=RollbackPolicy)
    #: Where the plan came from (file path or ConfigMap key), for error messages.
    source: str = ""

    @property
    def key(self) -> str:
        """``namespace/name``: how CLI arguments, state and logs name a plan."""
        return f"{self.namespace}/{self.name}"


#: Variables a custom query may use; the analysis substitutes them before querying.
QUERY_VARIABLES: tuple[str, ...] = ("namespace", "canary", "stable", "window", "service")
