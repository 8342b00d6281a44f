"""The Kubernetes adapters through the real ``kubernetes`` client over HTTP (README: test doubles).

The API server is tests/support/kubeapi.py. Helm and Prometheus are not what these tests are
about: releases come from :class:`StaticReleases` (a fixed helm history) and checks from
``tests.support.stubs.Metrics`` (every sample good) — both named in the README's doubles.
Tests assert the recorded requests (method, path, content type, body) and the objects.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from canary.adapters.istio import IstioRouter
from canary.adapters.kube import KubeEventSink, KubeWorkloads, call, workload_status
from canary.core.errors import ConflictError, ForbiddenError, NotFoundError, UnavailableError
from canary.core.model import (
    ALL_STABLE,
    STATE_ANNOTATION,
    Event,
    Phase,
    ReleaseInfo,
    Revision,
    RevisionStatus,
    Weights,
    state_from_json,
)
from canary.core.plan import Plan, ReleaseRef
from canary.plans.files import load_plan_text
from canary.shell.controller import Controller, Ports
from canary.shell.emitter import Emitter
from canary.sim import chart
from canary.sim.clock import FakeClock
from tests.support.bookinfo import available
from tests.support.kubeapi import KubeApiServer
from tests.support.stubs import Metrics

FIXTURES = Path(__file__).parent / "fixtures" / "virtualservices"
NS = "bookinfo"
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

PLAN_YAML = """
apiVersion: canary.dev/v1
kind: RolloutPlan
metadata: {name: reviews, namespace: bookinfo}
spec:
  release: reviews
  virtualService:
    name: reviews
    route: default
    stable: {host: reviews, subset: v1}
    canary: {host: reviews, subset: v3}
  workloads: {stable: reviews-v1, canary: reviews-v3}
  steps: [10, 50, 100]
"""


def plan() -> Plan:
    return load_plan_text(PLAN_YAML, source="<test>")[0]


# --- doubles for what this file is not about ------------------------------------------------


class StaticReleases:
    """A helm history that says what the test sets."""

    def __init__(self, *revisions: Revision) -> None:
        self.info = ReleaseInfo(revisions)

    def history(self, release: ReleaseRef) -> ReleaseInfo:
        return self.info

    def rollback(self, release: ReleaseRef, revision: int, timeout: timedelta) -> None:
        raise AssertionError("no rollback expected in these tests")


# --- a bookinfo cluster in the double --------------------------------------------------------


def seed(kubeapi: KubeApiServer, canary_image: str | None = None) -> None:
    """The reviews Deployments rendered by the two-track chart, and bookinfo's VirtualService
    with the jason header route ahead of the default route (v1 100 / v3 0)."""
    values = chart.values_for_plan(
        plan(), stable_image=chart.STABLE_IMAGE, canary_image=canary_image
    )
    for obj in chart.render("reviews", NS, values):
        if obj["kind"] == "Deployment":
            kubeapi.put_object(obj)
            kubeapi.edit("apps", "v1", "deployments", NS, obj["metadata"]["name"], available)
    vs = yaml.safe_load((FIXTURES / "reviews-jason-header.yaml").read_text())
    kubeapi.put_object(vs)


def the_vs(kubeapi: KubeApiServer) -> dict[str, Any]:
    vs = kubeapi.get_object("networking.istio.io", "v1", "virtualservices", NS, "reviews")
    assert vs is not None
    return vs


def set_image(kubeapi: KubeApiServer, name: str, image: str) -> None:
    def change(dep: dict[str, Any]) -> None:
        dep["spec"]["template"]["spec"]["containers"][0]["image"] = image

    kubeapi.edit("apps", "v1", "deployments", NS, name, change)
    kubeapi.edit("apps", "v1", "deployments", NS, name, available)


@pytest.fixture
def cluster(kubeapi: KubeApiServer) -> KubeApiServer:
    seed(kubeapi)
    return kubeapi


class Rig:
    """The controller over the real adapters, a fake clock and the static doubles."""

    def __init__(self, kubeapi: KubeApiServer, *plans: Plan) -> None:
        api = kubeapi.client()
        self.kubeapi = kubeapi
        self.clock = FakeClock(T0)
        self.router = IstioRouter(api)
        self.sink = KubeEventSink(api, clock=lambda: self.clock.now().timestamp())
        self.names: list[str] = []
        self.records: list[Mapping[str, Any]] = []
        emitter = Emitter(self.sink, listeners=[self._listen])
        self.releases = StaticReleases(
            Revision(1, RevisionStatus.SUPERSEDED, "Install complete"),
            Revision(2, RevisionStatus.DEPLOYED, "Upgrade complete"),
        )
        self.ctrl = Controller(
            ports=Ports(
                router=self.router,
                workloads=KubeWorkloads(api),
                metrics=Metrics(),
                releases=self.releases,
                clock=self.clock,
            ),
            emitter=emitter,
            plans={p.key: p for p in plans or (plan(),)},
        )

    def _listen(self, record: Mapping[str, Any]) -> None:
        self.names.append(str(record["event"]))
        self.records.append(record)

    def tick(self, advance: timedelta = timedelta(seconds=5)) -> None:
        self.ctrl.tick()
        self.clock.advance(advance)

    def state(self) -> Any:
        raw = (the_vs(self.kubeapi)["metadata"].get("annotations") or {}).get(STATE_ANNOTATION)
        return state_from_json(raw) if raw else None


# --- the router -------------------------------------------------------------------------------


def test_a_write_patches_only_the_weights_and_our_annotation(cluster: KubeApiServer) -> None:
    router = IstioRouter(cluster.client())
    before = copy.deepcopy(the_vs(cluster))
    view = router.read(plan())
    assert view.weights == ALL_STABLE and view.state_raw is None
    after_view = router.write(plan(), view, Weights.canary_at(10), '{"v":1}', drop_command=False)
    assert after_view.weights == Weights.canary_at(10)
    request = cluster.requests.last(method="PATCH")
    assert request.path == f"/apis/networking.istio.io/v1/namespaces/{NS}/virtualservices/reviews"
    assert request.content_type == "application/json-patch+json"
    assert request.query.get("fieldManager") == "canary"  # named in managedFields
    assert request.body[0] == {
        "op": "test",
        "path": "/metadata/resourceVersion",
        "value": view.version,
    }
    assert [op["path"] for op in request.body[1:]] == [
        "/metadata/annotations",
        "/spec/http/1/route/0/weight",
        "/spec/http/1/route/1/weight",
    ]
    after = the_vs(cluster)
    assert after["spec"]["http"][0] == before["spec"]["http"][0]  # jason's header route intact
    assert [d["weight"] for d in after["spec"]["http"][1]["route"]] == [90, 10]
    assert after["metadata"]["annotations"][STATE_ANNOTATION] == '{"v":1}'
    assert {k: v for k, v in after["spec"].items() if k != "http"} == {
        k: v for k, v in before["spec"].items() if k != "http"
    }


def test_a_write_after_someone_else_wrote_is_a_conflict(cluster: KubeApiServer) -> None:
    router = IstioRouter(cluster.client())
    view = router.read(plan())
    cluster.edit(
        "networking.istio.io", "v1", "virtualservices", NS, "reviews",
        {"metadata": {"labels": {"team": "x"}}},
    )  # fmt: skip
    with pytest.raises(ConflictError):
        router.write(plan(), view, Weights.canary_at(10), "{}", drop_command=False)
    assert cluster.requests.last(method="PATCH").status == 422  # the failed test op
    assert [d["weight"] for d in the_vs(cluster)["spec"]["http"][1]["route"]] == [100, 0]


def test_the_newest_served_version_is_used(kubeapi: KubeApiServer) -> None:
    kubeapi.serve("networking.istio.io", "v1beta1")
    vs = yaml.safe_load((FIXTURES / "reviews-jason-header.yaml").read_text())
    vs["apiVersion"] = "networking.istio.io/v1beta1"
    kubeapi.put_object(vs)
    router = IstioRouter(kubeapi.client())
    assert router.read(plan()).weights == ALL_STABLE
    assert router.version == "v1beta1"
    assert kubeapi.requests.last(method="GET", resource="virtualservices").path.startswith(
        "/apis/networking.istio.io/v1beta1/"
    )


def test_a_missing_virtual_service_names_itself(kubeapi: KubeApiServer) -> None:
    with pytest.raises(NotFoundError, match=r"virtualservices\.networking\.istio\.io bookinfo/"):
        IstioRouter(kubeapi.client()).read(plan())


def test_forbidden_names_the_verb_and_the_resource(cluster: KubeApiServer) -> None:
    cluster.deny("patch", "networking.istio.io", "virtualservices", namespace=NS)
    router = IstioRouter(cluster.client())
    view = router.read(plan())
    with pytest.raises(ForbiddenError) as info:
        router.write(plan(), view, Weights.canary_at(10), "{}", drop_command=False)
    text = str(info.value)
    assert 'cannot patch resource "virtualservices"' in text
    assert 'in API group "networking.istio.io"' in text and "'patch' verb" in text


def test_server_errors_and_timeouts_are_transient(cluster: KubeApiServer) -> None:
    router = IstioRouter(cluster.client(retries=False))
    router.read(plan())  # discovery done
    cluster.fail(503, resource="virtualservices")
    with pytest.raises(UnavailableError, match="503"):
        router.read(plan())


def test_states_lists_every_state_by_plan(cluster: KubeApiServer) -> None:
    router = IstioRouter(cluster.client())
    view = router.read(plan())
    router.write(plan(), view, None, json.dumps({"v": 1, "plan": "bookinfo/reviews"}), False)
    assert set(router.states()) == {"bookinfo/reviews"}
    assert set(router.states([NS])) == {"bookinfo/reviews"}
    assert router.states(["elsewhere"]) == {}


# --- workloads --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "generation", "available", "reason"),
    [
        pytest.param(
            {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3,
             "availableReplicas": 3}, 2, True, "", id="available"),
        pytest.param(
            {"observedGeneration": 1, "replicas": 3, "updatedReplicas": 3,
             "availableReplicas": 3}, 2, False, "observed", id="spec-not-observed"),
        pytest.param(
            {"observedGeneration": 2, "replicas": 4, "updatedReplicas": 2,
             "availableReplicas": 3}, 2, False, "2 of 3 updated", id="rolling"),
        pytest.param(
            {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3,
             "availableReplicas": 1}, 2, False, "1 of 3 updated replicas are available",
            id="not-ready"),
        pytest.param(
            {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3,
             "conditions": [{"type": "Progressing", "status": "False",
                             "reason": "ProgressDeadlineExceeded", "message": "timed out"}]},
            2, False, "progress deadline exceeded", id="deadline"),
    ],
)  # fmt: skip
def test_availability_follows_rollout_status(
    status: dict[str, Any], generation: int, available: bool, reason: str
) -> None:
    dep = {"metadata": {"generation": generation}, "spec": {"replicas": 3, "template": {}},
           "status": status}  # fmt: skip
    got = workload_status("reviews-v3", dep)
    assert got.available is available and reason in got.reason


def test_workloads_over_http(cluster: KubeApiServer) -> None:
    workloads = KubeWorkloads(cluster.client())
    stable, canary = workloads.status(NS, "reviews-v1"), workloads.status(NS, "reviews-v3")
    assert stable.available and canary.available
    assert stable.template_hash == canary.template_hash  # canary = stable at install
    missing = workloads.status(NS, "reviews-v9")
    assert not missing.exists and not missing.available
    set_image(cluster, "reviews-v3", chart.CANARY_IMAGE)
    assert workloads.status(NS, "reviews-v3").template_hash != stable.template_hash


def test_errors_are_translated_at_the_boundary(cluster: KubeApiServer) -> None:
    from kubernetes import client

    apps = client.AppsV1Api(cluster.client(retries=False))
    cluster.fail(500, resource="deployments")
    with pytest.raises(UnavailableError, match="500"):
        call(lambda: apps.read_namespaced_deployment("reviews-v1", NS), verb="get", what="x")


# --- the controller over the real adapters ----------------------------------------------------


def test_a_canary_image_change_starts_a_rollout_and_steps_to_10(cluster: KubeApiServer) -> None:
    rig = Rig(cluster)
    rig.tick()
    assert rig.state().phase is Phase.IDLE
    set_image(cluster, "reviews-v3", chart.CANARY_IMAGE)
    rig.names.clear()
    rig.tick()
    # canary and stable both available at once: Pending → step 0 in two ticks
    assert rig.names == ["rollout.started"]
    rig.tick()
    assert rig.names == ["rollout.started", "step.started", "weight.set"]
    state = rig.state()
    assert state.phase is Phase.PROGRESSING and state.weights == Weights.canary_at(10)
    assert [d["weight"] for d in the_vs(cluster)["spec"]["http"][1]["route"]] == [90, 10]


def test_an_env_only_change_starts_a_rollout_too(cluster: KubeApiServer) -> None:
    rig = Rig(cluster)
    rig.tick()

    def env(dep: dict[str, Any]) -> None:
        dep["spec"]["template"]["spec"]["containers"][0]["env"] = [
            {"name": "LOG_DIR", "value": "/var/log"}
        ]

    cluster.edit("apps", "v1", "deployments", NS, "reviews-v3", env)
    cluster.edit("apps", "v1", "deployments", NS, "reviews-v3", available)
    rig.tick()
    assert "rollout.started" in rig.names


def progressing_rig(cluster: KubeApiServer) -> Rig:
    rig = Rig(cluster)
    rig.tick()
    set_image(cluster, "reviews-v3", chart.CANARY_IMAGE)
    for _ in range(3):
        rig.tick()
    assert rig.state().phase is Phase.PROGRESSING
    return rig


def test_someone_resets_the_weights_drift_is_put_back(cluster: KubeApiServer) -> None:
    rig = progressing_rig(cluster)

    def reset(vs: dict[str, Any]) -> None:
        vs["spec"]["http"][1]["route"][0]["weight"] = 100
        vs["spec"]["http"][1]["route"][1]["weight"] = 0

    cluster.edit("networking.istio.io", "v1", "virtualservices", NS, "reviews", reset)
    rig.names.clear()
    rig.tick()
    assert rig.names[:2] == ["weight.drift", "weight.set"]
    assert [d["weight"] for d in the_vs(cluster)["spec"]["http"][1]["route"]] == [90, 10]


def test_a_concurrent_writer_converges_on_the_right_weights(cluster: KubeApiServer) -> None:
    rig = progressing_rig(cluster)
    # someone edits the object between our read and our write, once
    cluster.fail(409, times=1, method="PATCH", resource="virtualservices")
    rig.names.clear()
    for _ in range(30):
        rig.tick(timedelta(seconds=10))
    state = rig.state()
    assert state.step >= 1
    weights = [d["weight"] for d in the_vs(cluster)["spec"]["http"][1]["route"]]
    assert weights == [state.weights.stable, state.weights.canary]
    assert len([r for r in cluster.requests.filter(method="PATCH") if r.status == 409]) == 1


def test_the_state_stripped_is_state_lost_and_traffic_to_stable(cluster: KubeApiServer) -> None:
    rig = progressing_rig(cluster)

    def strip(vs: dict[str, Any]) -> None:
        del vs["metadata"]["annotations"][STATE_ANNOTATION]

    cluster.edit("networking.istio.io", "v1", "virtualservices", NS, "reviews", strip)
    rig.names.clear()
    rig.tick()
    assert rig.names[:2] == ["state.lost", "weight.set"]
    assert [d["weight"] for d in the_vs(cluster)["spec"]["http"][1]["route"]] == [100, 0]
    assert rig.state().phase is Phase.PENDING


def test_a_missing_virtual_service_does_not_stop_the_other_plans(cluster: KubeApiServer) -> None:
    ghost = load_plan_text(
        PLAN_YAML.replace("name: reviews, namespace", "name: ghost, namespace")
        .replace("release: reviews", "release: ghost")
        .replace("    name: reviews\n", "    name: ghost\n")
        .replace("reviews-v1, canary: reviews-v3", "ghost-v1, canary: ghost-v3"),
        source="<ghost>",
    )[0]
    rig = Rig(cluster, plan(), ghost)
    rig.tick()
    set_image(cluster, "reviews-v3", chart.CANARY_IMAGE)
    rig.tick()
    failed = [r for r in rig.records if r["event"] == "tick.failed"]
    assert failed and all(r["plan"] == "bookinfo/ghost" for r in failed)
    assert "virtualservices.networking.istio.io bookinfo/ghost not found" in failed[0]["error"]
    assert "rollout.started" in rig.names


def test_rbac_denial_is_reported_with_verb_and_resource(cluster: KubeApiServer) -> None:
    rig = Rig(cluster)
    cluster.deny("patch", "networking.istio.io", "virtualservices", namespace=NS)
    rig.tick()
    failed = [r for r in rig.records if r["event"] == "tick.failed"]
    assert failed and 'cannot patch resource "virtualservices"' in failed[0]["error"]


def test_a_stale_command_is_dropped_and_consumed(cluster: KubeApiServer) -> None:
    rig = progressing_rig(cluster)
    command = json.dumps({"cmd": "pause", "rolloutId": "0000000000-9", "by": "bob"})
    cluster.edit(
        "networking.istio.io", "v1", "virtualservices", NS, "reviews",
        {"metadata": {"annotations": {"canary.dev/command": command}}},
    )  # fmt: skip
    rig.names.clear()
    rig.tick()
    assert "command.dropped" in rig.names
    assert "canary.dev/command" not in the_vs(cluster)["metadata"]["annotations"]
    assert rig.state().phase is Phase.PROGRESSING
    patch = cluster.requests.last(method="PATCH", resource="virtualservices")
    assert {"op": "remove", "path": "/metadata/annotations/canary.dev~1command"} in patch.body


# --- Kubernetes Events ------------------------------------------------------------------------


@pytest.fixture
def sink(cluster: KubeApiServer) -> Iterator[tuple[KubeEventSink, list[float]]]:
    now = [1000.0]
    yield KubeEventSink(cluster.client(), clock=lambda: now[0]), now


def events(kubeapi: KubeApiServer) -> list[dict[str, Any]]:
    return list(kubeapi.objects("", "events", NS))


def test_an_event_is_posted_with_the_event_name_as_reason(
    cluster: KubeApiServer, sink: tuple[KubeEventSink, list[float]]
) -> None:
    s, _ = sink
    s.register(NS, "reviews", "reviews", "networking.istio.io/v1")
    s.post(NS, "reviews", Event("rollback.started", {"reason": "2 failed checks"}, warning=True))
    (posted,) = events(cluster)
    assert posted["reason"] == "rollback.started" and posted["type"] == "Warning"
    assert posted["involvedObject"]["kind"] == "VirtualService"
    assert posted["involvedObject"]["name"] == "reviews"
    assert posted["message"] == "2 failed checks" and posted["count"] == 1


def test_repeated_events_are_aggregated_and_a_flood_is_dropped(
    cluster: KubeApiServer, sink: tuple[KubeEventSink, list[float]]
) -> None:
    s, now = sink
    same = Event("check.inconclusive", {"reason": "too few requests"})
    for _ in range(5):  # one POST, then four count bumps: 5 of the 10 tokens
        s.post(NS, "reviews", same)
    (posted,) = events(cluster)
    assert posted["count"] == 5 and s.aggregated == 4
    bump = cluster.requests.last(method="PATCH", resource="events")
    assert bump.content_type == "application/merge-patch+json"
    assert bump.body["count"] == 5 and "lastTimestamp" in bump.body
    for i in range(30):  # a flapping rollout: 30 different messages at once
        s.post(NS, "reviews", Event("weight.drift", {"live": [100 - i, i], "expected": [90, 10]}))
    assert len(events(cluster)) == 6  # the 5 tokens left, then dropped
    assert s.dropped == 25
    now[0] += 60  # a minute later: 10 more tokens
    s.post(NS, "reviews", Event("weight.drift", {"reason": "later"}))
    assert len(events(cluster)) == 7


def test_a_flood_of_one_repeated_event_is_rate_limited_too(
    cluster: KubeApiServer, sink: tuple[KubeEventSink, list[float]]
) -> None:
    s, now = sink
    same = Event("check.inconclusive", {"reason": "too few requests"})
    for _ in range(100):
        s.post(NS, "reviews", same)
    writes = cluster.requests.filter(resource="events", writes=True)
    assert len(writes) == 10  # the burst: 1 POST + 9 PATCH, the other 90 only counted
    now[0] += 6  # one token later the next bump carries every repeat counted meanwhile
    s.post(NS, "reviews", same)
    (posted,) = events(cluster)
    assert posted["count"] == 101


def test_a_failing_event_post_never_raises(cluster: KubeApiServer) -> None:
    s = KubeEventSink(cluster.client(retries=False))
    cluster.fail(500, times=None, resource="events")
    s.post(NS, "reviews", Event("rollout.started", {}))
    assert s.failed == 1


def test_two_controllers_only_the_leader_writes_and_the_standby_takes_over(
    cluster: KubeApiServer,
) -> None:
    from canary.adapters.lease import LeaderElector

    a, b = Rig(cluster), Rig(cluster)
    now = [0.0]

    def candidate(identity: str) -> LeaderElector:
        return LeaderElector(
            cluster.client(), name="canary", namespace="canary-system", identity=identity,
            clock=lambda: now[0],
        )  # fmt: skip

    lead_a, lead_b = candidate("a"), candidate("b")
    a.ctrl.leader = lambda: lead_a.is_leader
    b.ctrl.leader = lambda: lead_b.is_leader
    assert lead_a.step() and not lead_b.step()
    a.tick()
    set_image(cluster, "reviews-v3", chart.CANARY_IMAGE)
    writes = len(cluster.requests.filter(method="PATCH", resource="virtualservices"))
    b.tick()  # the standby sees the new canary but must not act
    assert len(cluster.requests.filter(method="PATCH", resource="virtualservices")) == writes
    assert b.names == []
    a.tick()
    assert a.state().phase is Phase.PENDING
    # a dies: it neither renews nor ticks; b takes the lease after a full lease duration
    for _ in range(8):
        now[0] += 2
        lead_b.step()
    assert lead_b.is_leader and not lead_a.is_leader
    b.tick()
    b.tick()
    assert b.state().phase is Phase.PROGRESSING  # b continued a's rollout from its state
    assert "rollout.started" not in b.names


# --- connection ---------------------------------------------------------------------------------


def test_requests_wait_for_the_rate_limiter(cluster: KubeApiServer) -> None:
    from kubernetes import client

    from canary.adapters.kube import RateLimitedApiClient

    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    api = RateLimitedApiClient(
        cluster.configuration(), qps=5, burst=10, clock=lambda: now[0], sleep=sleep
    )
    apps = client.AppsV1Api(api)
    for _ in range(12):
        apps.read_namespaced_deployment("reviews-v1", NS)
    # the burst of 10 goes at once; the 11th and 12th wait 1/5 s each
    assert slept == pytest.approx([0.2, 0.2])


def test_connect_reads_a_kubeconfig_context(tmp_path: Path, cluster: KubeApiServer) -> None:
    from canary.adapters.kube import connect
    from canary.core.errors import ConfigError

    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "other", "cluster": {"server": "http://127.0.0.1:1"}},
                    {"name": "double", "cluster": {"server": cluster.url}},
                ],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [
                    {"name": "a", "context": {"cluster": "other", "user": "u"}},
                    {"name": "b", "context": {"cluster": "double", "user": "u"}},
                ],
                "current-context": "a",
            }
        )
    )
    api = connect(str(kubeconfig), "b")
    assert api.configuration.host == cluster.url
    assert KubeWorkloads(api).status(NS, "reviews-v1").available
    with pytest.raises(ConfigError, match="context nope"):
        connect(str(kubeconfig), "nope")


def _kubeconfig_at(path: Path, server: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "ctx",
            }
        )
    )
    return path


@pytest.mark.parametrize(
    ("flag", "env", "in_pod", "expected"),
    [
        # a kubeconfig named by flag or by $KUBECONFIG wins over the pod's service account
        ("flag", None, True, "https://flag.example:6443"),
        (None, "env", True, "https://env.example:6443"),
        ("flag", "env", False, "https://flag.example:6443"),
        # nothing named: in-cluster inside a pod, else ~/.kube/config
        (None, None, True, "in-cluster"),
        (None, None, False, "https://home.example:6443"),
    ],
)
def test_connect_finds_its_cluster_the_way_kubectl_does(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    flag: str | None,
    env: str | None,
    in_pod: bool,
    expected: str,
) -> None:
    from kubernetes import client
    from kubernetes import config as kube_config

    from canary.adapters.kube import connect

    home = tmp_path / "home"
    (home / ".kube").mkdir(parents=True)
    _kubeconfig_at(home / ".kube" / "config", "https://home.example:6443")
    monkeypatch.setenv("HOME", str(home))
    # the client reads ~/.kube/config through a module constant fixed at import
    monkeypatch.setattr(
        "kubernetes.config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION", str(home / ".kube/config")
    )
    files = {
        name: str(_kubeconfig_at(tmp_path / name, f"https://{name}.example:6443"))
        for name in ("flag", "env")
    }
    if env:
        monkeypatch.setenv("KUBECONFIG", files[env])
    else:
        monkeypatch.delenv("KUBECONFIG", raising=False)
    if in_pod:
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    else:
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)

    def in_cluster(client_configuration: client.Configuration) -> None:
        client_configuration.host = "in-cluster"

    monkeypatch.setattr(kube_config, "load_incluster_config", in_cluster)
    api = connect(files[flag] if flag else None)
    assert api.configuration.host == expected


def test_a_kubeconfig_that_cannot_load_names_the_file_it_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from canary.adapters.kube import connect
    from canary.core.errors import ConfigError

    missing = tmp_path / "nowhere.yaml"
    monkeypatch.setenv("KUBECONFIG", str(missing))
    with pytest.raises(ConfigError, match=rf"{missing} \(from \$KUBECONFIG\)"):
        connect()


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The client takes a proxy from the environment; these tests need a direct connection."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)


def closed_port() -> int:
    """A loopback port nothing listens on (bound once, then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.usefixtures("no_proxy")
def test_a_refused_connection_names_the_api_server() -> None:
    from kubernetes import client

    from canary.adapters.kube import connect, recent_events

    server = f"http://127.0.0.1:{closed_port()}"
    expected = (
        f"API server {server} refused the connection (list events in {NS}): is it running, and "
        "is that its port?"
    )
    with pytest.raises(UnavailableError) as info:
        recent_events(connect(host=server), NS, "reviews")
    assert str(info.value) == expected
    # the configuration's host as given, a path prefix too (a kubeconfig behind a proxy)
    with pytest.raises(UnavailableError) as info:
        recent_events(connect(host=f"{server}/k8s/clusters/c-1"), NS, "reviews")
    assert str(info.value).startswith(f"API server {server}/k8s/clusters/c-1 refused")
    # a plain ApiClient (not connect()'s): the server is read off urllib3's connection pool
    with pytest.raises(UnavailableError) as info:
        recent_events(client.ApiClient(client.Configuration(host=server)), NS, "reviews")
    assert str(info.value) == expected


@pytest.mark.usefixtures("no_proxy")
def test_an_api_server_that_never_answers_is_a_timeout_naming_it() -> None:
    import socket

    from kubernetes import client

    from canary.adapters.kube import connect

    with socket.socket() as sock:  # the kernel completes the handshake; nobody answers
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        server = f"http://127.0.0.1:{sock.getsockname()[1]}"
        apps = client.AppsV1Api(connect(host=server))
        with pytest.raises(UnavailableError) as info:
            call(
                lambda: apps.read_namespaced_deployment(
                    "reviews-v1", NS, _request_timeout=(1.0, 0.5)
                ),
                verb="get",
                what=f"deployments.apps {NS}/reviews-v1",
            )
    assert str(info.value) == (
        f"API server {server} did not answer within 500ms (get deployments.apps {NS}/reviews-v1)"
    )


@pytest.mark.usefixtures("no_proxy")
def test_an_api_server_host_that_does_not_resolve_says_so() -> None:
    import time

    from kubernetes import client

    from canary.adapters.kube import connect

    # .invalid never resolves (RFC 6761); without network access the lookup fails at once
    apps = client.AppsV1Api(connect(host="https://kube.invalid:6443"))
    began = time.monotonic()
    with pytest.raises(UnavailableError) as info:
        call(
            lambda: apps.read_namespaced_deployment("reviews-v1", NS, _request_timeout=1),
            verb="get",
            what=f"deployments.apps {NS}/reviews-v1",
        )
    assert time.monotonic() - began < 5
    assert str(info.value) == (
        "API server https://kube.invalid:6443 unreachable: cannot resolve host kube.invalid "
        f"(get deployments.apps {NS}/reviews-v1)"
    )


# --- more cases found in review -------------------------------------------------------


def test_a_resources_only_change_starts_a_rollout(cluster: KubeApiServer) -> None:
    rig = Rig(cluster)
    rig.tick()

    def resources(dep: dict[str, Any]) -> None:
        dep["spec"]["template"]["spec"]["containers"][0]["resources"] = {
            "limits": {"memory": "512Mi"}
        }

    cluster.edit("apps", "v1", "deployments", NS, "reviews-v3", resources)
    cluster.edit("apps", "v1", "deployments", NS, "reviews-v3", available)
    rig.names.clear()
    rig.tick()
    assert rig.names == ["rollout.started"]


@pytest.mark.parametrize("deployment", ["reviews-v3", "reviews-v1"])
def test_kubectl_rollout_restart_of_either_track_starts_no_rollout(
    cluster: KubeApiServer, deployment: str
) -> None:
    """`kubectl rollout restart` stamps kubectl.kubernetes.io/restartedAt on the pod template:
    new pods, the same version. Neither a restarted canary nor a restarted stable is a
    rollout; a real change after a restart still is."""
    rig = Rig(cluster)
    rig.tick()

    def restart(dep: dict[str, Any]) -> None:
        meta = dep["spec"]["template"].setdefault("metadata", {})
        meta.setdefault("annotations", {})["kubectl.kubernetes.io/restartedAt"] = (
            "2026-12-03T07:30:00Z"
        )

    cluster.edit("apps", "v1", "deployments", NS, deployment, restart)
    cluster.edit("apps", "v1", "deployments", NS, deployment, available)
    rig.names.clear()
    for _ in range(3):
        rig.tick()
    assert "rollout.started" not in rig.names
    assert rig.state().phase is Phase.IDLE
    set_image(cluster, "reviews-v3", chart.CANARY_IMAGE)
    rig.tick()
    assert "rollout.started" in rig.names


def test_steady_ticks_over_http_write_nothing(cluster: KubeApiServer) -> None:
    rig = Rig(cluster)
    rig.tick()  # Idle: records the base revision once
    writes = len(cluster.requests.filter(writes=True))
    for _ in range(5):
        rig.tick()
    assert len(cluster.requests.filter(writes=True)) == writes


def test_a_real_concurrent_write_is_retried_and_both_writes_survive(
    cluster: KubeApiServer,
) -> None:
    rig = progressing_rig(cluster)
    real_write = rig.router.write
    raced: list[bool] = []

    def racing(*args: Any, **kwargs: Any) -> Any:
        if not raced:  # another writer (a human adding a label) between our read and write
            raced.append(True)
            cluster.edit(
                "networking.istio.io", "v1", "virtualservices", NS, "reviews",
                {"metadata": {"labels": {"owner": "team-a"}}},
            )  # fmt: skip
        return real_write(*args, **kwargs)

    rig.router.write = racing  # type: ignore[method-assign]
    before = rig.state().step
    rig.names.clear()
    for _ in range(40):
        rig.tick(timedelta(seconds=10))
        if rig.state().step > before:
            break
    assert raced and rig.state().step == before + 1
    failed = [r for r in cluster.requests.filter(method="PATCH", resource="virtualservices")
              if r.status == 422]  # fmt: skip
    assert len(failed) == 1  # the failed test op, then a re-read and a fresh decision
    vs = the_vs(cluster)
    assert vs["metadata"]["labels"]["owner"] == "team-a"  # their write survived ours
    assert [d["weight"] for d in vs["spec"]["http"][1]["route"]] == [50, 50]
    assert rig.names.count("step.started") == 1  # nothing said twice


def test_state_stripped_while_traffic_is_on_stable_is_state_lost(cluster: KubeApiServer) -> None:
    rig = Rig(cluster)
    rig.tick()
    cluster.edit("apps", "v1", "deployments", NS, "reviews-v3",
                 lambda d: d["status"].update(availableReplicas=0))  # fmt: skip
    set_image(cluster, "reviews-v3", chart.CANARY_IMAGE)
    cluster.edit("apps", "v1", "deployments", NS, "reviews-v3",
                 lambda d: d["status"].update(availableReplicas=0))  # fmt: skip
    rig.tick()
    assert rig.state().phase is Phase.PENDING

    def strip(vs: dict[str, Any]) -> None:
        del vs["metadata"]["annotations"][STATE_ANNOTATION]

    cluster.edit("networking.istio.io", "v1", "virtualservices", NS, "reviews", strip)
    rig.names.clear()
    rig.tick()
    assert rig.names[0] == "state.lost"


def test_the_watcher_drives_the_controller_within_a_second(cluster: KubeApiServer) -> None:
    import threading
    import time

    from canary.adapters.watch import Watcher, interests_of

    rig = Rig(cluster)
    rig.tick()
    lock = threading.Lock()

    def on_change(keys: set[str], reason: str) -> None:
        with lock:
            rig.ctrl.tick(sorted(keys))

    with Watcher(cluster.client(), on_change, interests_of([plan()]), resync_interval=3600):
        time.sleep(0.2)  # let the watches open (their first list reports nothing)
        began = time.monotonic()
        set_image(cluster, "reviews-v3", chart.CANARY_IMAGE)
        while "rollout.started" not in rig.names and time.monotonic() - began < 5:
            time.sleep(0.02)
        assert "rollout.started" in rig.names
        assert time.monotonic() - began < 1.0
