"""A whole simulated world for one plan: clock, cluster, Helm, mesh and every port, wired."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from canary.core.analysis import DEFAULT_SCRAPE_INTERVAL
from canary.core.model import STATE_ANNOTATION
from canary.core.plan import Destination, Plan, ReleaseRef, VirtualServiceRef, WorkloadRefs
from canary.sim import chart
from canary.sim.clock import FakeClock
from canary.sim.cluster import DEFAULT_READY_AFTER, VIRTUAL_SERVICE, SimCluster
from canary.sim.mesh import SimMesh
from canary.sim.ports import SimEventSink, SimReleases, SimRouter, SimStateStore, SimWorkloads
from canary.sim.scenarios import Scenario, get_scenario

#: Simulated time starts here unless told otherwise (a Monday morning; any fixed value works).
DEFAULT_START = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
#: The release was installed this long before the start: every pod is up, and there is history.
INSTALL_AGE = timedelta(hours=1)


def demo_plan() -> Plan:
    """The plan of docs/design.md §2 with every default: bookinfo ``reviews``, v1 → v3."""
    return Plan(
        name="reviews",
        namespace="bookinfo",
        release=ReleaseRef(name="reviews", namespace="bookinfo"),
        virtual_service=VirtualServiceRef(
            name="reviews",
            stable=Destination(host="reviews", subset="v1"),
            canary=Destination(host="reviews", subset="v3"),
            route=None,
        ),
        workloads=WorkloadRefs(stable="reviews-v1", canary="reviews-v3"),
        source="<demo>",
    )


class SimWorld:
    """Everything the controller talks to, simulated, for one plan and one scenario.

    Attributes are the ports (``router``, ``states``, ``workloads``, ``releases``, ``metrics``,
    ``events``) plus ``clock``, ``cluster``, ``plan`` and ``scenario`` (with both images set:
    see :meth:`Scenario.for_plan`), and the images ``stable_image`` and ``canary_image``.
    ``release_canary`` and ``promote`` are what CI does.
    """

    def __init__(
        self, plan: Plan, scenario: Scenario, clock: FakeClock, cluster: SimCluster, mesh: SimMesh
    ) -> None:
        self.plan = plan
        self.stable_image, self.canary_image = scenario.images(plan)
        self.scenario = scenario.for_plan(plan)
        self.clock = clock
        self.cluster = cluster
        self.metrics = mesh
        self.router = SimRouter(cluster)
        self.states = SimStateStore(cluster)
        self.workloads = SimWorkloads(cluster)
        self.releases = SimReleases(cluster)
        self.events = SimEventSink()

    @classmethod
    def create(
        cls,
        plan: Plan,
        scenario: Scenario | str,
        start: datetime | None = None,
        *,
        ready_after: timedelta = DEFAULT_READY_AFTER,
        scrape_interval: timedelta = DEFAULT_SCRAPE_INTERVAL,
        noise: float = 0.0,
        seed: int = 0,
    ) -> SimWorld:
        """Install the plan's release (canary = stable) and let it run for an hour, so at
        ``start`` every pod is available and all traffic is on stable.

        The tracks run the scenario's images; a scenario that leaves them unset (every named
        one) gets the plan's, after its workloads (:func:`canary.sim.chart.images_for_plan`).
        """
        if isinstance(scenario, str):
            scenario = get_scenario(scenario)
        stable_image, canary_image = scenario.images(plan)
        begin = (start or DEFAULT_START).astimezone(UTC)
        clock = FakeClock(begin - INSTALL_AGE)
        cluster = SimCluster(clock, ready_after=ready_after)
        mesh = SimMesh(
            cluster,
            clock,
            {stable_image: scenario.stable, canary_image: scenario.canary},
            default=scenario.stable,
            rps=scenario.rps,
            scrape_interval=scrape_interval,
            noise=noise,
            seed=seed,
        )
        cluster.bind(plan)
        values = chart.values_for_plan(plan, stable_image=stable_image)
        cluster.install(plan.release.name, plan.release.namespace, values)
        clock.advance(INSTALL_AGE)
        return cls(plan, scenario, clock, cluster, mesh)

    @property
    def mesh(self) -> SimMesh:
        """The same object as ``metrics``."""
        return self.metrics

    def release_canary(self, image: str | None = None) -> int:
        """CI's ``helm upgrade`` setting the canary image (default: :attr:`canary_image`);
        returns the new revision."""
        return self.cluster.deploy_canary(
            image or self.canary_image,
            release=self.plan.release.name,
            namespace=self.plan.release.namespace,
        )

    def promote(self) -> int:
        """CI's ``helm upgrade`` that gives stable the canary's template; returns the revision."""
        return self.cluster.promote(
            release=self.plan.release.name, namespace=self.plan.release.namespace
        )

    def advance(self, delta: timedelta) -> datetime:
        return self.clock.advance(delta)

    def state_raw(self) -> str | None:
        """The plan's ``canary.dev/state`` annotation, verbatim (None: none written)."""
        vs = self.cluster.get(VIRTUAL_SERVICE, self.plan.namespace, self.plan.virtual_service.name)
        if vs is None:
            return None
        annotations = (vs.get("metadata") or {}).get("annotations") or {}
        raw = annotations.get(STATE_ANNOTATION)
        return str(raw) if raw is not None else None
