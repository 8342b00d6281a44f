"""``canary run`` end to end (issue 6): the daemon as a subprocess against the Kubernetes API
double (through a kubeconfig, as in a cluster), the session's real Prometheus scraping the
Istio exporter whose traffic split follows the live weights, and the fake ``helm`` that applies
rollbacks to the double with Helm's engine. Assertions are on what the cluster ends up with
(weights, images, helm calls, history) and on the daemon's own log events."""

from __future__ import annotations

import itertools
import signal
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from canary import events as ev
from canary.model import Outcome, Phase
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

    def canary(self, name: str = "canary") -> CanaryProcess:
        process = CanaryProcess(
            self.workdir,
            kube_url=self.kubeapi.url,
            prometheus_url=self.prometheus.url,
            plans=self.plans,
            helm=self.app.helm,
            name=name,
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


def ready(process: CanaryProcess) -> dict[str, Any]:
    import json

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


def test_a_bad_release_is_reverted_and_rolled_back_to_the_base(cluster: Cluster) -> None:
    cluster.traffic.fault(error_ratio=0.3)
    daemon = cluster.canary()
    daemon.wait_event(ev.BASE_RECORDED, plan=cluster.key)
    cluster.app.upgrade(BAD_TAG)
    daemon.wait_event(ev.ROLLOUT_ROLLED_BACK, plan=cluster.key)
    assert cluster.phase() is Phase.ROLLED_BACK
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
