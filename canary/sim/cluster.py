"""An in-memory cluster: live objects, Helm 3 releases, pod availability and weight history.

Live objects are plain dicts keyed by (kind, namespace, name). Every write bumps
``metadata.resourceVersion`` (a global counter, as on a real API server) and a Deployment's
``metadata.generation`` when its spec changed.

Helm is modelled as Helm 3 does it: ``install``, ``upgrade`` and ``rollback`` each create a new
revision and update the live objects with a **two-way merge** between the old revision's
manifest and the new one (:mod:`canary.sim.merge`), so a field the chart renders the same in
both (the VirtualService weights, 100/0 in every revision) keeps its LIVE value (docs/design.md §1).

Availability: a Deployment's new pods become available ``ready_after`` (default 20 s) after its
pod template changed; the :class:`~canary.sim.behaviour.Behaviour` of the image (looked up
through :attr:`SimCluster.behaviour_of`, which the mesh installs) can delay that, prevent it
(``never_ready``) or make the pods crash-loop once their track's weight reaches a value.
Until new pods are ready the previous ones keep serving, as in a rolling update.
"""

from __future__ import annotations

import bisect
import copy
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from canary.core import routes
from canary.core.errors import RouteError
from canary.core.model import (
    Weights,
    WorkloadStatus,
)
from canary.core.plan import (
    Plan,
    VirtualServiceRef,
    WorkloadRefs,
)
from canary.core.ports import Clock
from canary.core.templates import template_hash
from canary.core.timestamps import iso
from canary.sim import chart
from canary.sim.behaviour import Behaviour
from canary.sim.helm import (
    HelmCall,
    HelmRelease,
    ObjectKey,
    Renderer,
    SimHelm,
    _Failure,
    _Pending,
    object_key,
)

#: Time from a pod-template change until the new pods are available (image pull + readiness).
DEFAULT_READY_AFTER = timedelta(seconds=20)

VIRTUAL_SERVICE = "VirtualService"
DEPLOYMENT = "Deployment"


def _digest(value: Any) -> str:
    blob = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _first_image(deployment: Mapping[str, Any]) -> str:
    containers = deployment.get("spec", {}).get("template", {}).get("spec", {}).get("containers")
    if isinstance(containers, list) and containers and isinstance(containers[0], Mapping):
        return str(containers[0].get("image", ""))
    return ""


@dataclass(frozen=True)
class PodRevision:
    """One pod template a Deployment has had (what a ReplicaSet is to Kubernetes)."""

    changed_at: datetime
    image: str
    digest: str


@dataclass
class Binding:
    """A plan's managed route and workloads, so the cluster can keep its weight history."""

    plan_key: str
    namespace: str
    ref: VirtualServiceRef
    workloads: WorkloadRefs
    #: (time, weights of the managed route from then on); None: route unreadable or gone.
    history: list[tuple[datetime, Weights | None]] = field(default_factory=list)

    def weights_at(self, at: datetime) -> Weights | None:
        times = [t for t, _ in self.history]
        i = bisect.bisect_right(times, at) - 1
        return self.history[i][1] if i >= 0 else None

    def track_of(self, workload: str) -> str | None:
        if workload == self.workloads.canary:
            return "canary"
        if workload == self.workloads.stable:
            return "stable"
        return None


class SimCluster(SimHelm):
    """Live objects, Helm releases and the availability model of one simulated cluster."""

    def __init__(
        self,
        clock: Clock,
        *,
        render: Renderer = chart.render,
        ready_after: timedelta = DEFAULT_READY_AFTER,
    ) -> None:
        self.clock = clock
        self.render = render
        self.ready_after = ready_after
        #: image → Behaviour (None: defaults). The mesh installs its own lookup here.
        self.behaviour_of: Callable[[str], Behaviour | None] = lambda image: None
        #: Every ``helm rollback`` call, in order.
        self.helm_calls: list[HelmCall] = []
        self._objects: dict[ObjectKey, dict[str, Any]] = {}
        self._rv = 0
        self._uid = 0
        self._pods: dict[tuple[str, str], list[PodRevision]] = {}
        self._bindings: dict[str, Binding] = {}
        self._releases: dict[tuple[str, str], HelmRelease] = {}
        self._failures: list[_Failure] = []
        self._leave_pending: list[str | None] = []
        self._pending: list[_Pending] = []

    # --- objects ---------------------------------------------------------------------------

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """A deep copy of the live object, or None."""
        obj = self._objects.get((kind, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def objects(self, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Deep copies of the live objects of one kind, sorted by namespace and name."""
        return [
            copy.deepcopy(obj)
            for (k, ns, _), obj in sorted(self._objects.items())
            if k == kind and (namespace is None or ns == namespace)
        ]

    def resource_version(self, kind: str, namespace: str, name: str) -> str | None:
        obj = self._objects.get((kind, namespace, name))
        return str(obj["metadata"]["resourceVersion"]) if obj is not None else None

    def put(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Create or replace an object (an unconditional write); returns the stored copy."""
        key = object_key(obj)
        if not all(key):
            raise ValueError(f"object needs kind, metadata.namespace and metadata.name: {key}")
        new = copy.deepcopy(dict(obj))
        meta = new.setdefault("metadata", {})
        old = self._objects.get(key)
        if old is None:
            self._uid += 1
            meta["uid"] = f"00000000-0000-4000-8000-{self._uid:012d}"
            meta["creationTimestamp"] = self._ts()
            if key[0] == DEPLOYMENT:
                meta["generation"] = 1
        else:
            old_meta = old["metadata"]
            for server_field in ("uid", "creationTimestamp"):
                meta[server_field] = old_meta[server_field]
            if key[0] == DEPLOYMENT:
                changed = old.get("spec") != new.get("spec")
                meta["generation"] = int(old_meta.get("generation", 1)) + int(changed)
        self._rv += 1
        meta["resourceVersion"] = str(self._rv)
        self._objects[key] = new
        self._after_write(key, new)
        return copy.deepcopy(new)

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        key = (kind, namespace, name)
        if self._objects.pop(key, None) is None:
            return False
        self._after_write(key, None)
        return True

    def _ts(self) -> str:
        return iso(self.clock.now())

    def _after_write(self, key: ObjectKey, obj: dict[str, Any] | None) -> None:
        kind, namespace, name = key
        now = self.clock.now()
        if kind == DEPLOYMENT:
            pods = self._pods.setdefault((namespace, name), [])
            if obj is None:
                pods.clear()
                return
            template = obj.get("spec", {}).get("template", {})
            digest = _digest(template)
            if not pods or pods[-1].digest != digest:
                pods.append(PodRevision(changed_at=now, image=_first_image(obj), digest=digest))
        elif kind == VIRTUAL_SERVICE:
            for binding in self._bindings.values():
                if binding.namespace == namespace and binding.ref.name == name:
                    self._record_weights(binding, obj)

    # --- bindings and weight history -------------------------------------------------------

    def bind(self, plan: Plan) -> Binding:
        """Know ``plan``'s managed route and workloads (weight history, crash model, mesh)."""
        binding = Binding(
            plan_key=plan.key,
            namespace=plan.namespace,
            ref=plan.virtual_service,
            workloads=plan.workloads,
        )
        self._bindings[plan.key] = binding
        vs = self._objects.get((VIRTUAL_SERVICE, plan.namespace, plan.virtual_service.name))
        self._record_weights(binding, vs)
        return binding

    def binding(self, plan_key: str) -> Binding | None:
        return self._bindings.get(plan_key)

    def binding_for_workload(self, namespace: str, workload: str) -> Binding | None:
        for binding in self._bindings.values():
            if binding.namespace == namespace and binding.track_of(workload):
                return binding
        return None

    def binding_for_vs(self, namespace: str, vs_name: str) -> Binding | None:
        for binding in self._bindings.values():
            if binding.namespace == namespace and binding.ref.name == vs_name:
                return binding
        return None

    def _record_weights(self, binding: Binding, vs: Mapping[str, Any] | None) -> None:
        weights: Weights | None = None
        if vs is not None:
            try:
                weights = routes.get_weights(vs, binding.ref)
            except RouteError:
                weights = None
        now = self.clock.now()
        history = binding.history
        if history and history[-1][1] == weights:
            return
        if history and history[-1][0] == now:
            history.pop()  # several writes at one instant: only the last one carries traffic
            if history and history[-1][1] == weights:
                return
        history.append((now, weights))

    def weight_history(self, namespace: str, vs_name: str) -> list[tuple[datetime, Weights | None]]:
        """Every change of the managed route's weights as (time, weights from then on)."""
        binding = self.binding_for_vs(namespace, vs_name)
        return list(binding.history) if binding is not None else []

    # --- availability ------------------------------------------------------------------------

    def pod_revisions(self, namespace: str, name: str) -> list[PodRevision]:
        return list(self._pods.get((namespace, name), []))

    def _behaviour(self, image: str) -> Behaviour | None:
        return self.behaviour_of(image)

    def ready_at(self, rev: PodRevision) -> datetime | None:
        """When the pods of ``rev`` become available; None: never."""
        behaviour = self._behaviour(rev.image)
        if behaviour is not None and behaviour.never_ready:
            return None
        delay = self.ready_after
        if behaviour is not None and behaviour.ready_after is not None:
            delay = behaviour.ready_after
        return rev.changed_at + delay

    def crash_at(self, namespace: str, name: str, rev: PodRevision) -> datetime | None:
        """When the pods of ``rev`` start crash-looping (their track's weight reached the
        image's ``crash_at_weight`` while they served); None: they do not."""
        behaviour = self._behaviour(rev.image)
        ready = self.ready_at(rev)
        if behaviour is None or behaviour.crash_at_weight is None or ready is None:
            return None
        binding = self.binding_for_workload(namespace, name)
        if binding is None:
            return None
        track = binding.track_of(name)
        threshold = behaviour.crash_at_weight

        def share(weights: Weights | None) -> int:
            if weights is None:
                return 0
            return weights.canary if track == "canary" else weights.stable

        if share(binding.weights_at(ready)) >= threshold:
            return ready
        for at, weights in binding.history:
            if at > ready and share(weights) >= threshold:
                return at
        return None

    def serving(self, namespace: str, name: str, at: datetime) -> PodRevision | None:
        """The pod revision whose pods answer requests at ``at``; None: no pod does.

        The newest revision that became ready before a newer one replaced it serves; new pods
        that are not ready yet (or never will be) leave the previous ones serving. Pods that
        crash-loop serve nothing.
        """
        pods = [p for p in self._pods.get((namespace, name), []) if p.changed_at <= at]
        for i in range(len(pods) - 1, -1, -1):
            rev = pods[i]
            ready = self.ready_at(rev)
            if ready is None or ready > at:
                continue
            if i + 1 < len(pods) and pods[i + 1].changed_at < ready:
                continue  # replaced before it ever finished rolling out
            crash = self.crash_at(namespace, name, rev)
            if crash is not None and crash <= at:
                return None
            return rev
        return None

    def change_points(self, namespace: str, name: str) -> list[datetime]:
        """Times at which :meth:`serving` may change for this Deployment."""
        points: list[datetime] = []
        for rev in self._pods.get((namespace, name), []):
            points.append(rev.changed_at)
            ready = self.ready_at(rev)
            if ready is not None:
                points.append(ready)
            crash = self.crash_at(namespace, name, rev)
            if crash is not None:
                points.append(crash)
        return points

    def deployment_status(self, namespace: str, name: str) -> WorkloadStatus:
        """What the Workloads port reports: availability and the normalised template hash."""
        obj = self._objects.get((DEPLOYMENT, namespace, name))
        pods = self._pods.get((namespace, name), [])
        if obj is None or not pods:
            return WorkloadStatus(
                name=name,
                exists=False,
                available=False,
                reason=f"Deployment {namespace}/{name} not found",
            )
        digest = template_hash(obj.get("spec", {}).get("template", {}))
        replicas = int(obj.get("spec", {}).get("replicas", 1))
        now = self.clock.now()
        current = pods[-1]
        ready = self.ready_at(current)
        reason = ""
        if ready is None:
            reason = (
                f"Waiting for rollout to finish: 0 of {replicas} updated replicas are available "
                f"(pods of {current.image} fail their readiness probe)"
            )
        elif ready > now:
            reason = (
                f"Waiting for rollout to finish: 0 of {replicas} updated replicas are available"
            )
        else:
            crash = self.crash_at(namespace, name, current)
            if crash is not None and crash <= now:
                reason = (
                    f"0 of {replicas} updated replicas are available: pods of {current.image} "
                    f"in CrashLoopBackOff"
                )
        return WorkloadStatus(
            name=name, exists=True, available=not reason, template_hash=digest, reason=reason
        )

    # --- helm --------------------------------------------------------------------------------
