"""A tiny two-track chart (docs/design.md §1), rendered in Python instead of Go templates.

``render`` returns what ``helm template`` would: two Deployments of one app (stable and canary),
the Service(s), a DestinationRule with one subset per track, and a VirtualService whose managed
route sends stable 100 / canary 0 in **every** revision. Values are merged over
:data:`DEFAULT_VALUES` the way Helm merges user values over a chart's ``values.yaml``; the
defaults model Istio's bookinfo ``reviews`` service.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from canary.core.plan import Plan

CHART_NAME = "twotrack"
CHART_VERSION = "0.1.0"

#: Bookinfo publishes one image per workload: ``examples-bookinfo-<workload>`` at one tag.
BOOKINFO_IMAGE = "docker.io/istio/examples-bookinfo-{workload}:1.20.1"


def image_for(workload: str) -> str:
    """The image a simulated Deployment called ``workload`` runs, named the way bookinfo
    names its own (``reviews-v3`` → ``docker.io/istio/examples-bookinfo-reviews-v3:1.20.1``)."""
    return BOOKINFO_IMAGE.format(workload=workload)


def images_for_plan(plan: Plan) -> tuple[str, str]:
    """(stable image, canary image) for ``plan``, after its workloads (:func:`image_for`):
    distinct, since a plan's two workloads are distinct Deployments."""
    return image_for(plan.workloads.stable), image_for(plan.workloads.canary)


STABLE_IMAGE = image_for("reviews-v1")
CANARY_IMAGE = image_for("reviews-v3")

#: Track values that end up in the pod template: ``promote`` copies them from canary to stable.
TEMPLATE_KEYS: tuple[str, ...] = ("image", "env", "resources")

DEFAULT_VALUES: Mapping[str, Any] = {
    "app": "reviews",
    "namespace": None,  # None: the release namespace
    "port": 9080,
    "serviceAccount": "bookinfo-reviews",
    "virtualService": {
        "name": "reviews",
        "hosts": ["reviews"],
        "routeName": None,  # name of the managed http route (None: unnamed)
        "routeIndex": 0,  # number of pinned routes rendered before the managed one
    },
    "stable": {
        "name": "reviews-v1",
        "version": "v1",
        "host": "reviews",
        "subset": "v1",  # None: one Service per track, named after the host
        "image": STABLE_IMAGE,
        "env": {"LOG_DIR": "/tmp/logs"},
        "resources": None,
        "replicas": 1,
    },
    "canary": {
        "name": "reviews-v3",
        "version": "v3",
        "host": "reviews",
        "subset": "v3",
        # canary = stable at install: nothing to analyse until CI sets another image
        "image": STABLE_IMAGE,
        "env": {"LOG_DIR": "/tmp/logs"},
        "resources": None,
        "replicas": 1,
    },
}

TRACKS: tuple[str, ...] = ("stable", "canary")


def merge_values(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Helm's coalescing: maps merge key by key, anything else in ``override`` replaces."""
    out: dict[str, Any] = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_values(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _service_name(host: str) -> str:
    return host.split(".", maxsplit=1)[0]


def _metadata(name: str, namespace: str, release: str, labels: Mapping[str, str]) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": namespace,
        "labels": {
            **labels,
            "app.kubernetes.io/managed-by": "Helm",
            "helm.sh/chart": f"{CHART_NAME}-{CHART_VERSION}",
        },
        "annotations": {
            "meta.helm.sh/release-name": release,
            "meta.helm.sh/release-namespace": namespace,
        },
    }


def _deployment(
    release: str, namespace: str, values: Mapping[str, Any], track: Mapping[str, Any]
) -> dict[str, Any]:
    app = str(values["app"])
    labels = {"app": app, "version": str(track["version"])}
    container: dict[str, Any] = {
        "name": app,
        "image": str(track["image"]),
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"containerPort": int(values["port"])}],
    }
    env = track.get("env") or {}
    if env:
        container["env"] = [{"name": str(k), "value": str(v)} for k, v in env.items()]
    if track.get("resources"):
        container["resources"] = copy.deepcopy(track["resources"])
    pod_spec: dict[str, Any] = {"containers": [container]}
    if values.get("serviceAccount"):
        pod_spec["serviceAccountName"] = str(values["serviceAccount"])
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(str(track["name"]), namespace, release, labels),
        "spec": {
            "replicas": int(track.get("replicas", 1)),
            "selector": {"matchLabels": dict(labels)},
            "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
        },
    }


def _service(
    release: str, namespace: str, values: Mapping[str, Any], host: str, selector: dict[str, str]
) -> dict[str, Any]:
    name = _service_name(host)
    port = int(values["port"])
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(
            name, namespace, release, {"app": str(values["app"]), "service": name}
        ),
        "spec": {"selector": selector, "ports": [{"name": "http", "port": port}]},
    }


def _destination(track: Mapping[str, Any]) -> dict[str, Any]:
    dest: dict[str, Any] = {"host": str(track["host"])}
    if track.get("subset"):
        dest["subset"] = str(track["subset"])
    return dest


def render(release_name: str, namespace: str, values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The manifest of one revision: Kubernetes objects as plain dicts, in apply order."""
    v = merge_values(DEFAULT_VALUES, values)
    ns = str(v.get("namespace") or namespace)
    app = str(v["app"])
    tracks = [v[t] for t in TRACKS]
    objects: list[dict[str, Any]] = []

    # Services: one per host; per track when the tracks are told apart by host, not subset.
    by_subset = all(t.get("subset") for t in tracks)
    hosts: dict[str, dict[str, str]] = {}
    for t in tracks:
        selector = {"app": app} if by_subset else {"app": app, "version": str(t["version"])}
        hosts.setdefault(str(t["host"]), selector)
    objects.extend(_service(release_name, ns, v, h, sel) for h, sel in hosts.items())
    objects.extend(_deployment(release_name, ns, v, t) for t in tracks)

    # DestinationRules: the subsets of each host.
    subsets: dict[str, list[dict[str, Any]]] = {}
    for t in tracks:
        if t.get("subset"):
            subsets.setdefault(str(t["host"]), []).append(
                {"name": str(t["subset"]), "labels": {"version": str(t["version"])}}
            )
    for host, subs in subsets.items():
        objects.append(
            {
                "apiVersion": "networking.istio.io/v1",
                "kind": "DestinationRule",
                "metadata": _metadata(_service_name(host), ns, release_name, {"app": app}),
                "spec": {"host": host, "subsets": subs},
            }
        )

    vs = v["virtualService"]
    stable, canary = (_destination(t) for t in tracks)
    http: list[dict[str, Any]] = [
        {
            "name": f"pinned-{i}",
            "match": [{"headers": {"end-user": {"exact": f"tester-{i}"}}}],
            "route": [{"destination": dict(stable)}],
        }
        for i in range(int(vs.get("routeIndex") or 0))
    ]
    managed: dict[str, Any] = {}
    if vs.get("routeName"):
        managed["name"] = str(vs["routeName"])
    # The chart renders stable 100 / canary 0 in every revision (docs/design.md §1).
    managed["route"] = [
        {"destination": stable, "weight": 100},
        {"destination": canary, "weight": 0},
    ]
    http.append(managed)
    objects.append(
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": _metadata(str(vs["name"]), ns, release_name, {"app": app}),
            "spec": {"hosts": [str(h) for h in vs["hosts"]], "http": http},
        }
    )
    return objects


def values_for_plan(
    plan: Plan, stable_image: str, canary_image: str | None = None
) -> dict[str, Any]:
    """Values that render the objects ``plan`` names: workloads, VirtualService, hosts, subsets.

    The canary runs ``canary_image`` (default: the stable image, so canary = stable).
    """
    ref = plan.virtual_service
    route = ref.route
    stable_name, canary_name = plan.workloads.stable, plan.workloads.canary

    def version(subset: str | None, workload: str, fallback: str) -> str:
        if subset:
            return subset
        tail = workload.rsplit("-", 1)[-1]
        return tail if tail != workload else fallback

    return {
        "app": ref.stable.host.split(".")[0],
        "namespace": plan.namespace,
        "virtualService": {
            "name": ref.name,
            "hosts": [ref.stable.host],
            "routeName": route if isinstance(route, str) else None,
            "routeIndex": route if isinstance(route, int) else 0,
        },
        "stable": {
            "name": stable_name,
            "version": version(ref.stable.subset, stable_name, "stable"),
            "host": ref.stable.host,
            "subset": ref.stable.subset,
            "image": stable_image,
        },
        "canary": {
            "name": canary_name,
            "version": version(ref.canary.subset, canary_name, "canary"),
            "host": ref.canary.host,
            "subset": ref.canary.subset,
            "image": canary_image or stable_image,
        },
    }
