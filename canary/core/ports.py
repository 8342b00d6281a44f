"""The controller's view of the outside world: one small Protocol per external system.

Each port has a real implementation in ``canary/adapters/`` and an in-memory one in
``canary/sim/``. The controller depends on these Protocols only.

State is persisted through :class:`TrafficRouter` because docs/design.md §4 requires the state
annotation to be written in the same request as the weights; :class:`StateStore` is the
read side used by ``canary status`` and ``canary wait``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from canary.core.model import Event, MetricsSample, ReleaseInfo, Weights, WorkloadStatus
from canary.core.plan import Metric, Plan, ReleaseRef


@dataclass(frozen=True)
class RouteView:
    """The managed route of a plan's VirtualService as read on this tick."""

    version: str  # resourceVersion; the write is conditional on it
    weights: Weights | None  # None when route_error is set
    route_error: str = ""
    state_raw: str | None = None  # the canary.dev/state annotation, verbatim
    command_raw: str | None = None  # the canary.dev/command annotation, verbatim
    #: the object as read, for adapters that derive their write from it (JSON Patch paths)
    obj: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)


class TrafficRouter(Protocol):
    def read(self, plan: Plan) -> RouteView:
        """Read the VirtualService; raises ConfigError if it does not exist."""
        ...

    def write(
        self,
        plan: Plan,
        view: RouteView,
        weights: Weights | None,
        state_json: str,
        drop_command: bool,
    ) -> RouteView:
        """Write weights (if given), the state and the command removal in one request,
        conditional on ``view.version``; raises ConflictError if it changed."""
        ...


class StateStore(Protocol):
    def states(self, namespaces: Sequence[str] | None = None) -> Mapping[str, str]:
        """Raw ``canary.dev/state`` annotations by plan key, across the given namespaces."""
        ...


class Workloads(Protocol):
    def status(self, namespace: str, name: str) -> WorkloadStatus:
        """Availability and normalised template hash of one Deployment."""
        ...


@dataclass(frozen=True)
class CheckRequest:
    """One rollout's check: what to query and for which window (docs/design.md §3)."""

    plan: str  # plan key
    rollout_id: str
    step: int
    namespace: str
    stable: str  # workload names
    canary: str
    service: str  # the canary destination host
    window: timedelta
    metrics: tuple[Metric, ...]

    @classmethod
    def for_plan(cls, plan: Plan, rollout_id: str, step: int, window: timedelta) -> CheckRequest:
        """The check of ``plan``'s canary (and stable) over ``window``."""
        return cls(
            plan=plan.key,
            rollout_id=rollout_id,
            step=step,
            namespace=plan.namespace,
            stable=plan.workloads.stable,
            canary=plan.workloads.canary,
            service=plan.virtual_service.canary.host,
            window=window,
            metrics=plan.analysis.metrics,
        )


class MetricsSource(Protocol):
    def sample(self, requests: Sequence[CheckRequest], at: datetime) -> Mapping[str, MetricsSample]:
        """Answer many checks at once (batched per metric type and window), keyed by plan."""
        ...


class ReleaseManager(Protocol):
    def history(self, release: ReleaseRef) -> ReleaseInfo:
        """The release's revisions, oldest first (cheap: no helm process per tick)."""
        ...

    def rollback(self, release: ReleaseRef, revision: int, timeout: timedelta) -> None:
        """`helm rollback REL REV --namespace NS --wait --timeout T`; raises HelmError."""
        ...


class EventSink(Protocol):
    def post(self, namespace: str, plan: str, event: Event) -> None:
        """Post a Kubernetes Event (reason = event name). Must never raise."""
        ...


class Clock(Protocol):
    def now(self) -> datetime:
        """Aware UTC time."""
        ...


class SystemClock:
    """The wall clock (UTC) for the daemon; the simulator and tests pass a FakeClock."""

    def now(self) -> datetime:
        return datetime.now(UTC)
