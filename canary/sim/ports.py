"""The ports of :mod:`canary.core.ports`, implemented over a simulated cluster
(:class:`~canary.sim.cluster.SimCluster`).

They behave like the real adapters at the boundary: a missing VirtualService is a ConfigError,
a write with a stale resourceVersion is a ConflictError (the API server's 409), a failed helm
call is a HelmError with helm's stderr tail.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from canary.core import routes
from canary.core.errors import ConfigError, ConflictError, RouteError
from canary.core.model import (
    COMMAND_ANNOTATION,
    STATE_ANNOTATION,
    Event,
    ReleaseInfo,
    Weights,
    WorkloadStatus,
)
from canary.core.plan import Plan, ReleaseRef, VirtualServiceRef
from canary.core.ports import RouteView
from canary.sim.cluster import VIRTUAL_SERVICE, SimCluster


def _annotations(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata") or {}
    return meta.get("annotations") or {}


class SimRouter:
    """TrafficRouter: the managed route's weights and the state annotation, one request each."""

    def __init__(self, cluster: SimCluster) -> None:
        self.cluster = cluster
        #: Successful write() calls, for "writes only when something changed" assertions.
        self.write_count = 0

    def _live(self, namespace: str, name: str) -> dict[str, Any]:
        vs = self.cluster.get(VIRTUAL_SERVICE, namespace, name)
        if vs is None:
            raise ConfigError(
                f"VirtualService {namespace}/{name} not found; create it (the chart renders it) "
                f"or fix spec.virtualService.name in the plan"
            )
        return vs

    @staticmethod
    def _view(vs: Mapping[str, Any], ref: VirtualServiceRef) -> RouteView:
        annotations = _annotations(vs)
        weights: Weights | None = None
        route_error = ""
        try:
            weights = routes.get_weights(vs, ref)
        except RouteError as exc:
            route_error = str(exc)
        state = annotations.get(STATE_ANNOTATION)
        command = annotations.get(COMMAND_ANNOTATION)
        return RouteView(
            version=str(vs["metadata"]["resourceVersion"]),
            weights=weights,
            route_error=route_error,
            state_raw=str(state) if state is not None else None,
            command_raw=str(command) if command is not None else None,
        )

    def read(self, plan: Plan) -> RouteView:
        vs = self._live(plan.namespace, plan.virtual_service.name)
        return self._view(vs, plan.virtual_service)

    def write(
        self,
        plan: Plan,
        view: RouteView,
        weights: Weights | None,
        state_json: str,
        drop_command: bool,
    ) -> RouteView:
        ref = plan.virtual_service
        vs = self._live(plan.namespace, ref.name)
        live_version = str(vs["metadata"]["resourceVersion"])
        if live_version != view.version:
            raise ConflictError(
                f"VirtualService {plan.namespace}/{ref.name} changed since it was read "
                f"(resourceVersion {view.version} → {live_version}); re-read and decide again"
            )
        if weights is not None:
            vs = routes.set_weights(vs, ref, weights)
        annotations = vs.setdefault("metadata", {}).setdefault("annotations", {})
        annotations[STATE_ANNOTATION] = state_json
        if drop_command:
            annotations.pop(COMMAND_ANNOTATION, None)
        stored = self.cluster.put(vs)
        self.write_count += 1
        return self._view(stored, ref)

    # --- what humans and other tools do (tests, demo) ---------------------------------------

    def set_annotation(self, namespace: str, vs_name: str, key: str, value: str | None) -> str:
        """Set (or with None remove) one annotation; returns the new resourceVersion."""
        vs = self._live(namespace, vs_name)
        annotations = vs.setdefault("metadata", {}).setdefault("annotations", {})
        if value is None:
            annotations.pop(key, None)
        else:
            annotations[key] = value
        return str(self.cluster.put(vs)["metadata"]["resourceVersion"])

    def set_command(self, namespace: str, vs_name: str, json_str: str) -> str:
        """What ``canary abort|pause|...`` writes: the ``canary.dev/command`` annotation."""
        return self.set_annotation(namespace, vs_name, COMMAND_ANNOTATION, json_str)

    def strip_state(self, namespace: str, vs_name: str) -> str:
        """Lose the state annotation (someone re-applied the VirtualService without it)."""
        return self.set_annotation(namespace, vs_name, STATE_ANNOTATION, None)

    def edit_weights(
        self,
        namespace: str,
        vs_name: str,
        weights: Weights,
        ref: VirtualServiceRef | None = None,
    ) -> str:
        """A human or GitOps changes the managed route's weights (drift)."""
        if ref is None:
            binding = self.cluster.binding_for_vs(namespace, vs_name)
            if binding is None:
                raise ValueError(f"no plan manages VirtualService {namespace}/{vs_name}: pass ref")
            ref = binding.ref
        vs = routes.set_weights(self._live(namespace, vs_name), ref, weights)
        return str(self.cluster.put(vs)["metadata"]["resourceVersion"])


class SimStateStore:
    """StateStore: the raw state annotations of every VirtualService, keyed by plan."""

    def __init__(self, cluster: SimCluster) -> None:
        self.cluster = cluster

    def states(self, namespaces: Sequence[str] | None = None) -> Mapping[str, str]:
        out: dict[str, str] = {}
        for vs in self.cluster.objects(VIRTUAL_SERVICE):
            meta = vs["metadata"]
            namespace, name = str(meta["namespace"]), str(meta["name"])
            if namespaces is not None and namespace not in namespaces:
                continue
            raw = _annotations(vs).get(STATE_ANNOTATION)
            if raw is None:
                continue
            out[self._plan_key(namespace, name, str(raw))] = str(raw)
        return out

    def _plan_key(self, namespace: str, vs_name: str, raw: str) -> str:
        binding = self.cluster.binding_for_vs(namespace, vs_name)
        if binding is not None:
            return binding.plan_key
        try:
            plan = json.loads(raw).get("plan")
        except (ValueError, AttributeError):
            plan = None
        if isinstance(plan, str) and plan:
            return plan if "/" in plan else f"{namespace}/{plan}"
        return f"{namespace}/{vs_name}"


class SimWorkloads:
    """Workloads: availability and normalised template hash of a Deployment."""

    def __init__(self, cluster: SimCluster) -> None:
        self.cluster = cluster

    def status(self, namespace: str, name: str) -> WorkloadStatus:
        return self.cluster.deployment_status(namespace, name)


class SimReleases:
    """ReleaseManager: ``helm history`` and ``helm rollback`` against the simulated store."""

    def __init__(self, cluster: SimCluster) -> None:
        self.cluster = cluster

    def history(self, release: ReleaseRef) -> ReleaseInfo:
        return self.cluster.history(release.name, release.namespace)

    def rollback(self, release: ReleaseRef, revision: int, timeout: timedelta) -> None:
        self.cluster.rollback(release.name, revision, namespace=release.namespace, timeout=timeout)


class SimEventSink:
    """EventSink: records every posted event as (namespace, plan, Event)."""

    def __init__(self) -> None:
        self.posted: list[tuple[str, str, Event]] = []

    def post(self, namespace: str, plan: str, event: Event) -> None:
        self.posted.append((namespace, plan, event))

    def names(self, plan: str | None = None) -> list[str]:
        """Event names in order, optionally for one plan (its name as posted)."""
        return [e.name for _, p, e in self.posted if plan is None or p == plan]

    def clear(self) -> None:
        self.posted.clear()
