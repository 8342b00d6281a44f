"""``canary run`` end to end: the daemon as a subprocess against the Kubernetes API
double (through a kubeconfig, as in a cluster), the session's real Prometheus scraping the
Istio exporter whose traffic split follows the live weights, and the fake ``helm`` that applies
rollbacks to the double with Helm's engine. Assertions are on what the cluster ends up with
(weights, images, helm calls, history) and on the daemon's own log events."""

from __future__ import annotations

import itertools
import json
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from canary.core import events as ev
from canary.core import exitcodes
from canary.core.model import Outcome, Phase, RolloutState, state_from_json
from tests.support.bookinfo import (
    CANARY,
    RELEASE,
    STABLE,
    STABLE_TAG,
    Bookinfo,
    TrafficFollower,
    fast_plan,
)
from tests.support.daemon import CanaryProcess
from tests.support.istio_exporter import IstioExporter
from tests.support.kubeapi import KubeApiServer
from tests.support.prometheus import PrometheusServer

pytest.importorskip("helm_python")

_namespaces = itertools.count(1)
GOOD_TAG, BAD_TAG = "1.20.2", "1.20.3"


@dataclass
class Cluster:
    app: Bookinfo
    traffic: TrafficFollower
    kubeapi: KubeApiServer
    prometheus: PrometheusServer
    workdir: Path
    plans: Path
    processes: list[CanaryProcess] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.app.namespace}/reviews"

    def canary(self, name: str = "canary", *extra: str, session: bool = False) -> CanaryProcess:
        process = CanaryProcess(
            self.workdir,
            kube_url=self.kubeapi.url,
            prometheus_url=self.prometheus.url,
            plans=self.plans,
            helm=self.app.helm,
            name=name,
            extra=extra,
            session=session,
        )
        self.processes.append(process)
        return process.start()

    def phase(self) -> Phase | None:
        state = self.app.state()
        return state.phase if state is not None else None

    def wait_phase(self, process: CanaryProcess, *phases: Phase, limit: float = 60) -> None:
        process.wait_for(lambda _: self.phase() in phases, limit=limit)


@pytest.fixture
def cluster(
    kubeapi: KubeApiServer,
    istio_mesh: IstioExporter,
    prometheus: PrometheusServer,
    tmp_path: Path,
) -> Iterator[Cluster]:
    namespace = f"e2e-run-{next(_namespaces)}"
    app = Bookinfo(kubeapi, tmp_path / "helm.json", namespace)
    traffic = TrafficFollower(kubeapi, istio_mesh, namespace)
    traffic.start()
    plans = tmp_path / "plans"
    plans.mkdir()
    (plans / "reviews.yaml").write_text(fast_plan(namespace))
    c = Cluster(app, traffic, kubeapi, prometheus, tmp_path, plans)
    try:
        yield c
    finally:
        for process in c.processes:
            process.stop()
        traffic.stop()
        app.close()


def role(process: CanaryProcess) -> str | None:
    """leader / standby as /readyz says; None while the server is not up yet."""
    try:
        return str(ready(process)["checks"]["role"])
    except OSError:  # URLError included: not listening yet
        return None


def ready(process: CanaryProcess) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{process.port}/readyz", timeout=5) as answer:
        body: dict[str, Any] = json.load(answer)
        return body


def test_a_good_release_goes_10_50_100_then_the_promotion_brings_it_home(
    cluster: Cluster,
) -> None:
    daemon = cluster.canary()
    daemon.wait_event(ev.BASE_RECORDED, plan=cluster.key)
    assert cluster.app.upgrade(GOOD_TAG) == 2
    cluster.wait_phase(daemon, Phase.SUCCEEDED, limit=90)
    steps = [r["weight"] for r in daemon.records() if r.get("event") == ev.STEP_STARTED]
    assert steps == [10, 50, 100]
    assert cluster.traffic.changes[-1][1] == (0, 100)
    assert ev.CHECK_FAILED not in daemon.events(cluster.key)
    cluster.app.promote(GOOD_TAG)
    cluster.wait_phase(daemon, Phase.IDLE)
    assert cluster.app.weights() == (100, 0)
    state = cluster.app.state()
    assert state is not None and state.last is not None
    assert state.last.outcome is Outcome.SUCCEEDED
    assert cluster.app.rollbacks() == []
    assert cluster.app.image(STABLE).endswith(f":{GOOD_TAG}")
    body = ready(daemon)
    assert body["ready"] is True and body["checks"]["role"] == "leader"


class Receiver:
    """A webhook receiver on 127.0.0.1: every POSTed JSON body, in order."""

    def __init__(self) -> None:
        bodies: list[dict[str, Any]] = []
        self.bodies = bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def metrics(process: CanaryProcess) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{process.port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_a_bad_release_is_reverted_and_rolled_back_to_the_base(cluster: Cluster) -> None:
    cluster.traffic.fault(error_ratio=0.3)
    receiver = Receiver()
    hook = cluster.workdir / "webhook-url"
    hook.write_text(receiver.url + "\n")
    daemon = cluster.canary("canary", "--webhook-file", str(hook))
    daemon.wait_event(ev.BASE_RECORDED, plan=cluster.key)
    cluster.app.upgrade(BAD_TAG)
    # CI's next step, started right after its helm upgrade
    waiter = subprocess.Popen(
        [sys.executable, "-m", "canary.cli", "wait", str(cluster.plans / "reviews.yaml"),
         "--timeout", "2m", "--kubeconfig", str(cluster.workdir / "kubeconfig")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    daemon.wait_event(ev.ROLLOUT_ROLLED_BACK, plan=cluster.key)
    assert cluster.phase() is Phase.ROLLED_BACK
    waited, _ = waiter.communicate(timeout=60)
    assert waiter.returncode == exitcodes.ROLLED_BACK, waited
    assert "rolled back (exit 1)" in waited
    assert cluster.app.rollbacks() == [
        [
            "rollback",
            RELEASE,
            "1",
            "--namespace",
            cluster.app.namespace,
            "--wait",
            "--timeout",
            "20s",
            "--kubeconfig",  # the daemon's own, passed through to helm
            str(cluster.workdir / "kubeconfig"),
        ]
    ]
    assert cluster.app.weights() == (100, 0)
    assert cluster.app.image(CANARY).endswith(f":{STABLE_TAG}")
    names = daemon.events(cluster.key)
    assert names.index(ev.ROLLBACK_TRAFFIC_REVERTED) < names.index(ev.ROLLBACK_HELM_STARTED)
    assert names.count(ev.ROLLOUT_ROLLED_BACK) == 1
    # /metrics tells the same story
    plan = ("plan", cluster.key)
    got = metrics(daemon)
    assert got[("canary_rollbacks_total", frozenset({plan, ("result", "succeeded")}))] == 1
    assert got[("canary_checks_total", frozenset({plan, ("verdict", "FAIL")}))] >= 2
    assert got[("canary_time_to_safe_seconds_count", frozenset())] == 1
    assert got[("canary_rollout_phase", frozenset({plan, ("phase", "RolledBack")}))] == 1
    # and the webhook: the start and the rollback, with the reason
    daemon.wait_for(lambda _: len(receiver.bodies) >= 2)
    receiver.close()
    assert [b["event"] for b in receiver.bodies] == [ev.ROLLOUT_STARTED, ev.ROLLOUT_ROLLED_BACK]
    assert "error-rate" in receiver.bodies[1]["reason"]
    assert receiver.url not in daemon.log_path.read_text()  # a webhook URL is a secret
    # and the on-call view of the same log: `kubectl logs deploy/canary | canary timeline`
    story = subprocess.run(
        [sys.executable, "-m", "canary.cli", "timeline", str(daemon.log_path)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert story.returncode == 0, story.stderr
    assert "step.started" in story.stdout and "check.failed" in story.stdout
    assert "time to safe" in story.stdout and "attempt 1 succeeded" in story.stdout
    assert "RolledBack" in story.stdout


def test_a_canary_whose_pods_fail_at_50_percent_is_rolled_back(cluster: Cluster) -> None:
    daemon = cluster.canary()
    daemon.wait_event(ev.BASE_RECORDED, plan=cluster.key)
    cluster.app.upgrade(BAD_TAG)
    daemon.wait_for(lambda _: cluster.app.weights() == (50, 50))
    cluster.app.deployments.broken.add(CANARY)
    cluster.wait_phase(daemon, Phase.ROLLED_BACK)
    assert len(cluster.app.rollbacks()) == 1
    assert cluster.app.weights() == (100, 0)
    reverted = daemon.wait_event(ev.ROLLBACK_STARTED, plan=cluster.key)
    assert "available" in reverted["reason"]


def test_at_rest_the_ticks_read_memory_and_the_api_server_sees_only_watches_and_the_lease(
    cluster: Cluster,
) -> None:
    daemon = cluster.canary()
    daemon.wait_event(ev.BASE_RECORDED, plan=cluster.key)
    daemon.wait_event(ev.LEADER_ACQUIRED)
    # start-up's two lists of VirtualServices are done: the watch's and the new leader's one
    # look for orphaned rollouts
    daemon.wait_for(
        lambda _: len(cluster.kubeapi.requests.filter(verb="list", resource="virtualservices")) >= 2
    )

    def ticks() -> float:
        return metrics(daemon)[("canary_plan_ticks_total", frozenset())]

    def reads() -> float:
        return metrics(daemon)[("canary_cache_reads_total", frozenset({("result", "hit")}))]

    daemon.wait_for(lambda _: ticks() >= 1)
    start, ticked, hits = len(cluster.kubeapi.requests.all()), ticks(), reads()
    # changes that concern the plan but change nothing it decides on: each wakes its tick
    for n in range(5):
        cluster.kubeapi.edit(
            "apps", "v1", "deployments", cluster.app.namespace, STABLE,
            lambda d, n=n: d["metadata"].setdefault("annotations", {}).update(touched=str(n)),
        )  # fmt: skip
        daemon.wait_for(lambda _, n=n: ticks() >= ticked + n + 1)
    assert reads() >= hits + 5 * 3  # VirtualService, two Deployments per tick, at least
    calls = {
        (r.verb, r.resource)
        for r in cluster.kubeapi.requests.all()[start:]
        if r.resource  # discovery aside
    }
    watches = {("watch", kind) for kind in ("virtualservices", "deployments", "secrets")}
    assert calls <= watches | {("get", "leases"), ("update", "leases")}, calls
    assert cluster.phase() is Phase.IDLE


def test_sigterm_exits_cleanly_and_releases_the_lease(cluster: Cluster) -> None:
    daemon = cluster.canary()
    daemon.wait_event("leader.acquired")
    daemon.wait_event(ev.BASE_RECORDED, plan=cluster.key)
    started = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert daemon.process is not None
    assert daemon.process.wait(timeout=10) == 0
    took = time.monotonic() - started
    names = daemon.events()
    assert "daemon.stopped" in names
    lease = cluster.kubeapi.get_object(
        "coordination.k8s.io", "v1", "leases", "canary-system", "canary-leader"
    )
    assert lease is not None
    assert not lease["spec"].get("holderIdentity")  # released, the next replica need not wait
    print(f"\nSIGTERM → exit {took:.2f} s")


def test_a_tight_api_budget_goes_to_the_ticks_alone_the_lease_and_watches_have_their_own(
    cluster: Cluster,
) -> None:
    """--kube-api-qps 1 --kube-api-burst 2: the ticks' writes fit in it; the Lease renewals
    (every 0.5 s here) and the watches go through clients of their own, so they neither eat
    that budget nor wait behind it: the leader keeps its Lease and the rollback happens."""
    cluster.traffic.fault(error_ratio=0.3)
    daemon = cluster.canary("canary", "--kube-api-qps", "1", "--kube-api-burst", "2")
    daemon.wait_event(ev.BASE_RECORDED, plan=cluster.key)
    cluster.app.upgrade(BAD_TAG)
    daemon.wait_event(ev.ROLLOUT_ROLLED_BACK, plan=cluster.key, limit=60)
    names = daemon.events()
    assert ev.LEADER_LOST not in names and names.count(ev.LEADER_ACQUIRED) == 1
    assert cluster.app.weights() == (100, 0)
    assert len(cluster.app.rollbacks()) == 1


def lease_holder(cluster: Cluster) -> str:
    lease = cluster.kubeapi.get_object(
        "coordination.k8s.io", "v1", "leases", "canary-system", "canary-leader"
    )
    return str(((lease or {}).get("spec") or {}).get("holderIdentity") or "")


@pytest.mark.parametrize("to", ["the process", "its process group"])
def test_sigterm_while_helm_runs_keeps_the_lease_until_helm_finished_by_itself(
    cluster: Cluster, to: str
) -> None:
    """SIGTERM during a helm rollback: the lease is held while helm runs (no standby may act),
    helm is not signalled (not even by a signal to the daemon's whole process group) and
    settles the release; then the lease is released and the daemon exits 0."""
    cluster.traffic.fault(error_ratio=0.3)
    cluster.app.helm.set(slow_seconds={"rollback": 4})  # helm's --wait takes 4 s
    daemon = cluster.canary(session=to != "the process")
    daemon.wait_event(ev.BASE_RECORDED, plan=cluster.key)
    holder = lease_holder(cluster)
    assert holder
    cluster.app.upgrade(BAD_TAG)
    daemon.wait_event(ev.ROLLBACK_HELM_STARTED, plan=cluster.key)
    if to == "the process":
        daemon.signal(signal.SIGTERM)
    else:
        daemon.signal_group(signal.SIGTERM)
    assert daemon.process is not None
    held_while_helm_ran: list[str] = []
    while daemon.process.poll() is None:
        history = cluster.app.helm.history(RELEASE, cluster.app.namespace)
        if history[-1]["status"] == "pending-rollback":
            held_while_helm_ran.append(lease_holder(cluster))
        time.sleep(0.05)
    assert daemon.process.returncode == 0
    assert held_while_helm_ran and set(held_while_helm_ran) == {holder}
    last = cluster.app.helm.history(RELEASE, cluster.app.namespace)[-1]
    assert (last["status"], last["description"]) == ("deployed", "Rollback to 1")
    assert len(cluster.app.rollbacks()) == 1
    assert lease_holder(cluster) == ""  # released once helm was done
    names = daemon.events()
    assert names.index(ev.DAEMON_WAITING_FOR_HELM) < names.index(ev.DAEMON_STOPPED)


# --- crashes, restarts and two replicas ------------------------------------------------------


def persisted(cluster: Cluster) -> list[RolloutState]:
    """Every state the daemons persisted, in order, from the successful VirtualService writes
    the API double recorded (a state reaches the cluster only with its weights)."""
    out: list[RolloutState] = []
    for r in cluster.kubeapi.requests.writes(resource="virtualservices"):
        if r.status != 200 or not isinstance(r.body, list):
            continue
        for op in r.body:
            path = op.get("path", "")
            if path == "/metadata/annotations/canary.dev~1state":
                out.append(state_from_json(op["value"]))
            elif path == "/metadata/annotations" and isinstance(op.get("value"), dict):
                raw = op["value"].get("canary.dev/state")
                if raw:
                    out.append(state_from_json(raw))
    return out


def assert_every_step_once_and_judged(cluster: Cluster, last_step: int) -> None:
    """No step repeated or skipped, and none left before its checks passed: in the persisted
    states, the last state of a step shows requiredPasses - 1 passes (the last pass and the
    step change are one write) and the next step starts at least its hold later."""
    states = [s for s in persisted(cluster) if s.phase in (Phase.PROGRESSING, Phase.SUCCEEDED)]
    steps = [s.step for s in states]
    entered = [steps[0], *(b for a, b in itertools.pairwise(steps) if b != a)]
    assert entered == list(range(last_step + 1)), steps
    for before, after in itertools.pairwise(states):
        if after.step != before.step or after.phase is not before.phase:
            assert before.passes >= 1, (before, after)
            assert before.step_started_at is not None and after.step_started_at is not None
            if after.step != before.step:
                assert after.step_started_at - before.step_started_at >= timedelta(seconds=2)
    canary_weights = [w for _, (_, w) in cluster.traffic.changes]
    assert canary_weights == [0, 10, 50, 100][: last_step + 2], canary_weights


def test_sigkill_at_a_weight_write_then_restart_repeats_and_skips_nothing(
    cluster: Cluster,
) -> None:
    first = cluster.canary("first")
    first.wait_event(ev.BASE_RECORDED, plan=cluster.key)
    cluster.app.upgrade(GOOD_TAG)
    first.wait_for(
        lambda rs: any(r.get("event") == ev.WEIGHT_SET and r.get("canary") == 50 for r in rs)
    )
    first.kill()  # right after the write that moved traffic to 50 %
    second = cluster.canary("second")
    cluster.wait_phase(second, Phase.SUCCEEDED, limit=90)
    assert_every_step_once_and_judged(cluster, last_step=2)
    assert cluster.app.rollbacks() == []


@pytest.mark.parametrize(
    "point", [ev.ROLLBACK_TRAFFIC_REVERTED, ev.ROLLBACK_HELM_STARTED, "helm-returned"]
)
def test_sigkill_during_a_rollback_then_restart_rolls_back_exactly_once(
    cluster: Cluster, point: str
) -> None:
    """Killed right after the weights went to stable, right after helm started (helm, in its
    own session, carries on as an orphan would until the pod is gone), or right after helm
    returned (its revision is deployed) and before the state write that records it."""
    cluster.traffic.fault(error_ratio=0.3)
    cluster.app.helm.set(slow_seconds={"rollback": 1})
    first = cluster.canary("first")
    first.wait_event(ev.BASE_RECORDED, plan=cluster.key)
    cluster.app.upgrade(BAD_TAG)
    if point == "helm-returned":
        first.wait_for(lambda _: cluster.app.helm.deployed(RELEASE, cluster.app.namespace) == 3)
    else:
        first.wait_event(point, plan=cluster.key)
    first.kill()
    assert cluster.app.weights() == (100, 0)  # safe before helm, whatever happens next
    second = cluster.canary("second")
    second.wait_for(lambda _: cluster.phase() is Phase.ROLLED_BACK, limit=60)
    assert len(cluster.app.rollbacks()) == 1
    assert cluster.app.helm.deployed(RELEASE, cluster.app.namespace) == 3
    assert cluster.app.image(CANARY).endswith(f":{STABLE_TAG}")
    assert cluster.app.weights() == (100, 0)


def test_sigkill_at_random_moments_never_repeats_a_rollback(cluster: Cluster) -> None:
    """Three kills at seeded random moments of a bad release; each time a new process takes
    over. Whatever the moments, one helm rollback, to the base, and RolledBack."""
    rng = random.Random(20261122)
    cluster.traffic.fault(error_ratio=0.3)
    cluster.app.helm.set(slow_seconds={"rollback": 1})
    daemon = cluster.canary("run-0")
    daemon.wait_event(ev.BASE_RECORDED, plan=cluster.key)
    cluster.app.upgrade(BAD_TAG)
    for n in range(1, 4):
        if n > 1:
            daemon.wait_event("leader.acquired")  # kill a leader, not a standby still waiting
        time.sleep(rng.uniform(0.2, 2.5))  # the kill lands wherever the daemon is by then
        daemon.kill()
        daemon = cluster.canary(f"run-{n}")
    daemon.wait_for(lambda _: cluster.phase() is Phase.ROLLED_BACK, limit=90)
    calls = cluster.app.rollbacks()
    assert len(calls) == 1 and calls[0][:3] == ["rollback", RELEASE, "1"]
    assert cluster.app.weights() == (100, 0)


def test_two_replicas_only_the_leader_acts_and_the_other_takes_over(cluster: Cluster) -> None:
    a = cluster.canary("a")
    a.wait_event("leader.acquired")
    b = cluster.canary("b")
    b.wait_for(lambda _: role(b) == "standby")
    cluster.app.upgrade(GOOD_TAG)
    a.wait_for(
        lambda rs: any(r.get("event") == ev.WEIGHT_SET and r.get("canary") == 10 for r in rs)
    )
    acting = {ev.ROLLOUT_STARTED, ev.STEP_STARTED, ev.WEIGHT_SET, ev.BASE_RECORDED}
    assert not acting & set(b.events())  # the standby never acted
    a.kill()
    b.wait_event("leader.acquired", limit=30)
    cluster.wait_phase(b, Phase.SUCCEEDED, limit=90)
    assert_every_step_once_and_judged(cluster, last_step=2)
    assert ready(b)["checks"]["role"] == "leader"


def test_plans_reload_a_bad_plan_is_reported_and_a_deleted_one_goes_to_stable(
    cluster: Cluster,
) -> None:
    daemon = cluster.canary()
    daemon.wait_event(ev.BASE_RECORDED, plan=cluster.key)
    broken = fast_plan(cluster.app.namespace).replace("name: reviews\n", "name: ratings\n", 1)
    broken = broken.replace("steps:", "stepz:", 1)
    (cluster.plans / "ratings.yaml").write_text(broken)
    invalid = daemon.wait_event(ev.PLAN_INVALID, plan=f"{cluster.app.namespace}/ratings")
    assert "spec.stepz" in invalid["error"]
    cluster.app.upgrade(GOOD_TAG)  # the good plan keeps serving
    daemon.wait_for(lambda _: cluster.app.weights() == (90, 10))
    (cluster.plans / "reviews.yaml").unlink()
    daemon.wait_event(ev.PLAN_DELETED, plan=cluster.key)
    daemon.wait_event("plan.released")
    assert cluster.app.weights() == (100, 0)
    state = cluster.app.state()
    assert state is not None and state.phase is Phase.IDLE
    assert state.last is not None and state.last.outcome is Outcome.ABANDONED


def test_sigterm_during_a_check_on_a_hung_prometheus_still_exits_within_10_s(
    cluster: Cluster,
) -> None:
    """The tick in flight waits on a Prometheus that accepts connections and never answers:
    shutdown must not hang on it (nor on the scheduler's lock), and must release the lease."""
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(64)  # the kernel accepts; nobody ever answers
    try:
        daemon = CanaryProcess(
            cluster.workdir,
            kube_url=cluster.kubeapi.url,
            prometheus_url=f"http://127.0.0.1:{hung.getsockname()[1]}",
            plans=cluster.plans,
            helm=cluster.app.helm,
        )
        cluster.processes.append(daemon)
        daemon.start()
        daemon.wait_event(ev.BASE_RECORDED, plan=cluster.key)
        cluster.app.upgrade(GOOD_TAG)
        daemon.wait_for(lambda _: cluster.app.weights() == (90, 10))
        time.sleep(3.0)  # settle (2 s) has passed: the first check is waiting on Prometheus
        started = time.monotonic()
        daemon.signal(signal.SIGTERM)
        assert daemon.process is not None
        assert daemon.process.wait(timeout=10) == 0
        print(f"\nSIGTERM with a check in flight → exit {time.monotonic() - started:.2f} s")
        lease = cluster.kubeapi.get_object(
            "coordination.k8s.io", "v1", "leases", "canary-system", "canary-leader"
        )
        assert lease is not None and not lease["spec"].get("holderIdentity")
        assert cluster.app.weights() == (90, 10)  # nothing half-written: the step stands
    finally:
        hung.close()


def test_a_bad_plan_at_startup_is_reported_and_a_configmap_swap_fixes_it(
    cluster: Cluster,
) -> None:
    """The plans directory laid out as the kubelet mounts a ConfigMap; the fix arrives as the
    kubelet delivers it: a new generation directory and an atomic swap of ``..data``."""
    mount = cluster.workdir / "mounted-plans"
    mount.mkdir()

    def generation(name: str, files: dict[str, str]) -> None:
        gen = mount / name
        gen.mkdir()
        for file, text in files.items():
            (gen / file).write_text(text)
        tmp = mount / "..data_tmp"
        tmp.symlink_to(name)
        tmp.replace(mount / "..data")  # atomic, as the kubelet does
        for file in files:
            link = mount / file
            if not link.is_symlink():
                link.symlink_to(f"..data/{file}")

    good = fast_plan(cluster.app.namespace)
    broken = good.replace("steps:", "stepz:", 1).replace("name: reviews\n", "name: ratings\n", 1)
    generation("..2026_11_22_10_00_00.1", {"reviews.yaml": good, "ratings.yaml": broken})
    daemon = CanaryProcess(
        cluster.workdir,
        kube_url=cluster.kubeapi.url,
        prometheus_url=cluster.prometheus.url,
        plans=mount,
        helm=cluster.app.helm,
    )
    cluster.processes.append(daemon)
    daemon.start()
    ratings = f"{cluster.app.namespace}/ratings"
    invalid = daemon.wait_event(ev.PLAN_INVALID, plan=ratings)  # present at startup: reported
    assert "spec.stepz" in invalid["error"]
    daemon.wait_event(ev.BASE_RECORDED, plan=cluster.key)  # the good plan is served
    edited = good.replace("failureLimit: 2", "failureLimit: 3", 1)
    assert edited != good
    generation("..2026_11_22_10_05_00.2", {"reviews.yaml": edited})
    (mount / "ratings.yaml").unlink()  # the kubelet drops the key's link with the swap
    loaded = daemon.wait_for(
        lambda rs: next(
            (r for r in rs if r.get("event") == "plans.loaded" and r.get("changed")), None
        )
    )
    assert loaded["changed"] == [cluster.key]  # the new generation was read, whole
