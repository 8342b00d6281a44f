"""Bookinfo's ``reviews`` release living in the test doubles, for end-to-end runs.

What a real cluster would do around canary, played by small parts that use only the doubles'
public faces:

* :class:`Bookinfo` installs the two-track chart ``tests/fixtures/charts/reviews`` into the
  Kubernetes API double (objects rendered by Helm's own engine) and into the fake helm (whose
  storage Secrets land in the same API), and runs CI's ``helm upgrade`` / promotion the way helm
  3 applies them (a two-way merge between the revisions' manifests);
* :class:`DeploymentController` plays kube-controller-manager: a Deployment whose spec changed
  is rolled out (its status catches up with its generation) unless the test broke it;
* :class:`TrafficFollower` plays the mesh: it reads the live VirtualService weights and makes
  the Istio exporter's request rates follow them, so the real Prometheus sees the canary's
  share of traffic change when canary writes weights, and the canary's fault once it has some.

Each part polls at :data:`POLL` (it is a double of an asynchronous controller, not a test
waiting for a condition) and stops by itself when its ``stop`` is called.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from canary.core.model import RolloutState, state_from_json
from tests.support.fakehelm import FakeHelm
from tests.support.istio_exporter import IstioExporter
from tests.support.kubeapi import KubeApiServer

CHART = Path(__file__).resolve().parents[1] / "fixtures" / "charts" / "reviews"
IMAGE = "docker.io/istio/examples-bookinfo-reviews-v3"
STABLE_TAG = "1.20.1"
RELEASE = "reviews"
STABLE, CANARY = "reviews-v1", "reviews-v3"
#: How often the stand-in controllers look at the API (a real Deployment controller reacts
#: within a second; this keeps their share of a 2-core machine small).
POLL = 0.05
#: Requests per second the service gets in total; the tracks share it by the live weights.
TOTAL_RPS = 40.0
STATE_ANNOTATION = "canary.dev/state"


def values(canary_tag: str, stable_tag: str = STABLE_TAG) -> dict[str, Any]:
    return {"stable": {"tag": stable_tag}, "canary": {"tag": canary_tag}}


def fast_plan(namespace: str, rollback_timeout: str = "20s", **analysis: Any) -> str:
    """The reviews plan with timings for a 1 s-scrape Prometheus: a whole rollout in ~30 s."""
    settings = {
        "interval": "1s",
        "window": "4s",
        "settle": "2s",
        "minRequests": 5,
        "requiredPasses": 2,
        "failureLimit": 2,
        "metrics": [
            {"name": "error-rate", "type": "istio-error-rate", "max": 0.05},
            {"name": "latency-p99", "type": "istio-latency", "quantile": 0.99, "max": 500},
        ],
        **analysis,
    }
    doc = {
        "apiVersion": "canary.dev/v1",
        "kind": "RolloutPlan",
        "metadata": {"name": "reviews", "namespace": namespace},
        "spec": {
            "release": RELEASE,
            "virtualService": {
                "name": "reviews",
                "stable": {"host": "reviews", "subset": "v1"},
                "canary": {"host": "reviews", "subset": "v3"},
            },
            "workloads": {"stable": STABLE, "canary": CANARY},
            "steps": [{"weight": w, "hold": "2s"} for w in (10, 50, 100)],
            "progressDeadline": "20s",
            "finaliseTimeout": "20s",
            "analysis": settings,
            "rollback": {"timeout": rollback_timeout, "retries": 3},
        },
    }
    return yaml.safe_dump(doc, sort_keys=False)


def rolled_out(dep: dict[str, Any], broken: bool = False) -> dict[str, Any]:
    """What kube-controller-manager leaves in a Deployment's status once it rolled out: all
    replicas available (none, if ``broken``)."""
    replicas = dep["spec"].get("replicas", 1)
    ready = 0 if broken else replicas
    dep["status"] = {
        "observedGeneration": dep["metadata"].get("generation", 1),
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": ready,
        "availableReplicas": ready,
        "unavailableReplicas": replicas - ready,
        "conditions": [
            {
                "type": "Available",
                "status": "False" if broken else "True",
                "reason": "MinimumReplicasUnavailable" if broken else "MinimumReplicasAvailable",
            }
        ],
    }
    return dep


def available(dep: dict[str, Any]) -> dict[str, Any]:
    """An ``edit`` callback: the Deployment rolled out, every replica available."""
    return rolled_out(dep)


class _Loop:
    """A daemon thread calling ``step`` every :data:`POLL` until stopped."""

    def __init__(self, name: str, step: Callable[[], None]) -> None:
        self._step = step
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.errors: list[BaseException] = []

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except Exception as exc:  # surfaced by stop(): a broken double must fail the test
                self.errors.append(exc)
            self._stop.wait(POLL)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if self.errors:
            raise self.errors[0]


class DeploymentController(_Loop):
    """Rolls out every Deployment of ``namespace`` whose status lags its spec; the names in
    :attr:`broken` roll out with no available pods (a crashlooping canary)."""

    def __init__(self, kubeapi: KubeApiServer, namespace: str) -> None:
        super().__init__(f"deployments-{namespace}", self._reconcile)
        self.kubeapi = kubeapi
        self.namespace = namespace
        self.broken: set[str] = set()

    def _reconcile(self) -> None:
        for dep in self.kubeapi.objects("apps", "deployments", self.namespace):
            name = dep["metadata"]["name"]
            broken = name in self.broken
            status = dep.get("status") or {}
            lagging = status.get("observedGeneration") != dep["metadata"].get("generation")
            if lagging or (status.get("availableReplicas", 0) == 0) != broken:
                self.kubeapi.edit(
                    "apps",
                    "v1",
                    "deployments",
                    self.namespace,
                    name,
                    lambda d, b=broken: rolled_out(d, b),  # type: ignore[misc]
                )


@dataclass
class TrafficFollower(_Loop):
    """Makes the exporter's per-track request rates follow the live VirtualService weights."""

    kubeapi: KubeApiServer
    exporter: IstioExporter
    namespace: str
    #: the canary's error ratio and latency (its fault); stable is healthy
    canary_error_ratio: float = 0.0
    canary_latency_ms: float = 20.0
    #: (wall-clock time, (stable, canary)) every time the weights changed
    changes: list[tuple[float, tuple[int, int]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(f"traffic-{self.namespace}", self._follow)
        self._applied: tuple[int, int, float, float] | None = None
        self.exporter.set(self.namespace, STABLE, rps=0, latency_ms=20)
        self.exporter.set(self.namespace, CANARY, rps=0, latency_ms=20)

    def fault(self, error_ratio: float | None = None, latency_ms: float | None = None) -> None:
        if error_ratio is not None:
            self.canary_error_ratio = error_ratio
        if latency_ms is not None:
            self.canary_latency_ms = latency_ms

    def _follow(self) -> None:
        vs = self.kubeapi.get_object(
            "networking.istio.io", "v1", "virtualservices", self.namespace, "reviews"
        )
        if vs is None:
            return
        route = vs["spec"]["http"][0]["route"]
        stable, canary = int(route[0].get("weight", 0)), int(route[1].get("weight", 0))
        now = (stable, canary, self.canary_error_ratio, self.canary_latency_ms)
        if now == self._applied:
            return
        if self._applied is None or self._applied[:2] != (stable, canary):
            self.changes.append((time.time(), (stable, canary)))
        self.exporter.set(self.namespace, STABLE, rps=TOTAL_RPS * stable / 100)
        self.exporter.set(
            self.namespace,
            CANARY,
            rps=TOTAL_RPS * canary / 100,
            error_ratio=self.canary_error_ratio,
            latency_ms=self.canary_latency_ms,
        )
        self._applied = now


class Bookinfo:
    """The reviews release in the doubles: chart objects in the API, history in the fake helm."""

    def __init__(self, kubeapi: KubeApiServer, helm_state: Path, namespace: str) -> None:
        from helm_python.chart import Chart  # only end-to-end tests need it

        self.kubeapi = kubeapi
        self.namespace = namespace
        self.helm = FakeHelm(helm_state, kube_url=kubeapi.url)
        self.deployments = DeploymentController(kubeapi, namespace)
        with Chart.load(CHART) as chart:
            rendered = chart.render(values(STABLE_TAG), name=RELEASE, namespace=namespace)
        for text in rendered.values():
            for obj in yaml.safe_load_all(text):
                if obj:
                    kubeapi.put_object(obj)
        self.helm.install(RELEASE, namespace, values=values(STABLE_TAG), chart_dir=CHART)
        self.deployments.start()

    def close(self) -> None:
        self.deployments.stop()

    # -- what CI does ------------------------------------------------------------------------

    def upgrade(self, canary_tag: str) -> int:
        """``helm upgrade reviews --set canary.tag=...``: a new canary. Returns its revision."""
        return self.helm.upgrade(RELEASE, self.namespace, values=values(canary_tag))

    def promote(self, tag: str) -> int:
        """The promotion ``helm upgrade``: stable gets the canary's tag too."""
        return self.helm.upgrade(RELEASE, self.namespace, values=values(tag, stable_tag=tag))

    # -- what a test looks at ----------------------------------------------------------------

    def virtual_service(self) -> dict[str, Any]:
        vs = self.kubeapi.get_object(
            "networking.istio.io", "v1", "virtualservices", self.namespace, "reviews"
        )
        assert vs is not None
        return vs

    def weights(self) -> tuple[int, int]:
        route = self.virtual_service()["spec"]["http"][0]["route"]
        return int(route[0].get("weight", 0)), int(route[1].get("weight", 0))

    def state(self) -> RolloutState | None:
        raw = (self.virtual_service()["metadata"].get("annotations") or {}).get(STATE_ANNOTATION)
        return state_from_json(raw) if raw else None

    def image(self, deployment: str) -> str:
        dep = self.kubeapi.get_object("apps", "v1", "deployments", self.namespace, deployment)
        assert dep is not None
        image: str = dep["spec"]["template"]["spec"]["containers"][0]["image"]
        return image

    def rollbacks(self) -> list[list[str]]:
        """Every ``helm rollback`` argv the fake received."""
        return self.helm.calls("rollback")
