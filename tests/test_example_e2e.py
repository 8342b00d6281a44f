"""One rollout on the example service's own objects: `deploy/examples/podinfo`'s chart
rendered by Helm's engine into the Kubernetes API double, installed in the fake helm, and the
controller over its real Kubernetes adapters taking a good release to Idle and a bad one back.
Metrics and time are stand-ins here (Prometheus has its own end-to-end tests)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from canary.adapters.helm import HelmReleases
from canary.adapters.helmstore import SecretHistory
from canary.adapters.istio import IstioRouter
from canary.adapters.kube import KubeWorkloads
from canary.core.model import Outcome, Phase, RolloutState, state_from_json
from canary.plans.files import load_plan_text
from canary.shell.controller import Controller, Ports
from canary.shell.emitter import Emitter
from tests.support.bookinfo import DeploymentController
from tests.support.fakehelm import FakeHelm
from tests.support.istio_schema import spec_validator
from tests.support.kubeapi import KubeApiServer
from tests.support.stubs import Clock, Metrics

pytest.importorskip("helm_python")

EXAMPLE = Path(__file__).resolve().parents[1] / "deploy" / "examples" / "podinfo"
NS, RELEASE = "demo", "podinfo"
#: Kinds the example renders that the API double serves; its Service is not on canary's path
#: (and the double serves no Services).
SEEDED = {"Deployment", "DestinationRule", "VirtualService"}


def values(stable: str, canary: str) -> dict[str, Any]:
    return {"stable": {"image": {"tag": stable}}, "canary": {"image": {"tag": canary}}}


class Example:
    def __init__(self, kubeapi: KubeApiServer, tmp_path: Path) -> None:
        from helm_python.chart import Chart

        self.kubeapi = kubeapi
        with Chart.load(EXAMPLE / "chart") as chart:
            rendered = chart.render(values("6.7.0", "6.7.0"), name=RELEASE, namespace=NS)
        for text in rendered.values():
            for obj in yaml.safe_load_all(text):
                if obj and obj["kind"] in SEEDED:
                    kubeapi.put_object(obj)
        self.helm = FakeHelm(tmp_path / "helm.json", kube_url=kubeapi.url)
        self.helm.install(RELEASE, NS, values=values("6.7.0", "6.7.0"), chart_dir=EXAMPLE / "chart")
        self.deployments = DeploymentController(kubeapi, NS)
        (self.plan,) = load_plan_text((EXAMPLE / "plan.yaml").read_text())
        self.metrics = Metrics()
        self.clock = Clock()
        api = kubeapi.client()
        self.controller = Controller(
            ports=Ports(
                router=IstioRouter(api),
                workloads=KubeWorkloads(api),
                metrics=self.metrics,
                releases=SecretHistory(api, HelmReleases(str(self.helm.binary), env=self.helm.env)),
                clock=self.clock,
            ),
            emitter=Emitter(),
            plans={self.plan.key: self.plan},
            scrape_interval=timedelta(seconds=15),
        )

    def state(self) -> RolloutState | None:
        vs = self.kubeapi.get_object("networking.istio.io", "v1", "virtualservices", NS, RELEASE)
        assert vs is not None
        raw = (vs["metadata"].get("annotations") or {}).get("canary.dev/state")
        return state_from_json(raw) if raw else None

    def weights(self) -> list[int]:
        vs = self.kubeapi.get_object("networking.istio.io", "v1", "virtualservices", NS, RELEASE)
        assert vs is not None
        (route,) = [r for r in vs["spec"]["http"] if r["name"] == "primary"]
        return [d["weight"] for d in route["route"]]

    def image(self, track: str) -> str:
        dep = self.kubeapi.get_object("apps", "v1", "deployments", NS, f"podinfo-{track}")
        assert dep is not None
        image: str = dep["spec"]["template"]["spec"]["containers"][0]["image"]
        return image

    def until(self, phase: Phase, limit: int = 200) -> None:
        for _ in range(limit):
            self.deployments._reconcile()  # the Deployment controller, synchronously
            self.clock.now_ += timedelta(seconds=15)
            self.controller.tick()
            state = self.state()
            if state is not None and state.phase is phase:
                return
        raise AssertionError(f"never {phase}: {self.state()}")


@pytest.fixture
def example(kubeapi: KubeApiServer, tmp_path: Path) -> Iterator[Example]:
    yield Example(kubeapi, tmp_path)


def test_a_good_release_of_the_example_goes_to_100_and_home_after_the_promotion(
    example: Example,
) -> None:
    example.until(Phase.IDLE)
    example.helm.upgrade(RELEASE, NS, values=values("6.7.0", "6.7.1"))  # CI's canary release
    example.until(Phase.SUCCEEDED)
    assert example.weights() == [0, 100]
    example.helm.upgrade(RELEASE, NS, values=values("6.7.1", "6.7.1"))  # CI's promotion
    example.until(Phase.IDLE)
    assert example.weights() == [100, 0]
    state = example.state()
    assert state is not None and state.last is not None
    assert state.last.outcome is Outcome.SUCCEEDED
    assert example.image("stable").endswith(":6.7.1")
    assert example.helm.calls("rollback") == []


def test_a_bad_release_of_the_example_is_rolled_back_to_its_base(example: Example) -> None:
    example.until(Phase.IDLE)
    example.metrics.error_rate = 0.3
    example.helm.upgrade(RELEASE, NS, values=values("6.7.0", "6.7.1"))
    example.until(Phase.ROLLED_BACK)
    assert example.helm.calls("rollback") == [
        ["rollback", RELEASE, "1", "--namespace", NS, "--wait", "--timeout", "5m0s"]
    ]
    assert example.weights() == [100, 0]
    assert example.image("canary").endswith(":6.7.0")


def test_the_examples_istio_objects_are_valid_for_istio_before_and_during_a_rollout(
    example: Example,
) -> None:
    """The chart's VirtualService and DestinationRule against Istio's own schemas, and the
    VirtualService again as canary left it mid-rollout (weights 90/10 written by us)."""
    checks = {
        ("VirtualService", "virtualservices"): spec_validator("virtualservice_v1.json"),
        ("DestinationRule", "destinationrules"): spec_validator("destinationrule_v1.json"),
    }
    example.until(Phase.IDLE)
    example.helm.upgrade(RELEASE, NS, values=values("6.7.0", "6.7.1"))
    example.until(Phase.PROGRESSING)
    assert example.weights() == [90, 10]
    for (kind, plural), validator in checks.items():
        obj = example.kubeapi.get_object("networking.istio.io", "v1", plural, NS, RELEASE)
        assert obj is not None and obj["kind"] == kind
        errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(obj["spec"])]
        assert errors == []
