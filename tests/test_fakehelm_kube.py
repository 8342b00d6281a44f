"""The fake ``helm`` applying a rollback to the Kubernetes double: both revisions are
rendered by Helm's own engine (helm-python-sdk) from tests/fixtures/charts/reviews and the
difference is applied as helm 3 does, a two-way merge between the two revisions' manifests, so
live VirtualService weights the chart never changed stay as they are."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from canary.adapters.helm import HelmReleases
from canary.adapters.helmstore import SecretHistory
from canary.core.plan import ReleaseRef
from tests.support.bookinfo import available
from tests.support.fakehelm import FakeHelm
from tests.support.kubeapi import STRATEGIC_MERGE_PATCH, KubeApiServer

pytest.importorskip("helm_python")
from helm_python.chart import Chart, lint

CHART = Path(__file__).parent / "fixtures" / "charts" / "reviews"
NS = "bookinfo"
IMAGE = "docker.io/istio/examples-bookinfo-reviews-v3"
STABLE_TAG = "1.20.1"
CANARY_TAG = "1.20.2"
ROLLBACK = ["rollback", "reviews", "1", "--namespace", NS, "--wait", "--timeout", "5m0s"]


def values(canary_tag: str) -> dict[str, Any]:
    return {"stable": {"tag": STABLE_TAG}, "canary": {"tag": canary_tag}}


def weights(kubeapi: KubeApiServer) -> list[int]:
    vs = kubeapi.get_object("networking.istio.io", "v1", "virtualservices", NS, "reviews")
    assert vs is not None
    return [d["weight"] for d in vs["spec"]["http"][0]["route"]]


def canary_image(kubeapi: KubeApiServer) -> str:
    dep = kubeapi.get_object("apps", "v1", "deployments", NS, "reviews-v3")
    assert dep is not None
    image: str = dep["spec"]["template"]["spec"]["containers"][0]["image"]
    return image


@pytest.fixture
def helm(tmp_path: Path, kubeapi: KubeApiServer) -> FakeHelm:
    """Revision 1 (canary = stable image) installed and in the double; revision 2 (a new canary
    image) upgraded onto it; then canary moved the live weights to 90/10."""
    with Chart.load(CHART) as chart:
        rendered = chart.render(values(STABLE_TAG), name="reviews", namespace=NS)
    for text in rendered.values():
        for obj in yaml.safe_load_all(text):
            kubeapi.put_object(obj)
            if obj["kind"] == "Deployment":
                kubeapi.edit("apps", "v1", "deployments", NS, obj["metadata"]["name"], available)
    fake = FakeHelm(tmp_path / "helm-state.json", kube_url=kubeapi.url)
    fake.install("reviews", NS, values=values(STABLE_TAG), chart_dir=CHART)
    fake.upgrade("reviews", NS, values=values(CANARY_TAG))
    assert canary_image(kubeapi) == f"{IMAGE}:{CANARY_TAG}"

    def canary_weights(vs: dict[str, Any]) -> None:
        route = vs["spec"]["http"][0]["route"]
        route[0]["weight"], route[1]["weight"] = 90, 10

    kubeapi.edit("networking.istio.io", "v1", "virtualservices", NS, "reviews", canary_weights)
    kubeapi.requests.clear()
    return fake


def test_the_chart_passes_helm_lint() -> None:
    report = lint(CHART)
    assert report["errors"] == []
    assert all(m["severity"] < 2 for m in report["messages"]), report["messages"]


def test_a_rollback_patches_only_what_the_chart_changed(
    helm: FakeHelm, kubeapi: KubeApiServer
) -> None:
    done = subprocess.run(
        [str(helm.binary), *ROLLBACK],
        capture_output=True,
        text=True,
        timeout=60,
        env=helm.full_env(),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert canary_image(kubeapi) == f"{IMAGE}:{STABLE_TAG}"
    assert weights(kubeapi) == [90, 10]  # the chart never changed them: left as they are
    # helm's order: the pending record, the Kubernetes update, then both records settled
    assert [(r.method, r.resource, r.name) for r in kubeapi.requests.writes()] == [
        ("POST", "secrets", ""),
        ("PATCH", "deployments", "reviews-v3"),
        ("PUT", "secrets", "sh.helm.release.v1.reviews.v2"),
        ("PUT", "secrets", "sh.helm.release.v1.reviews.v3"),
    ]
    writes = kubeapi.requests.writes(resource="deployments")
    assert writes[0].content_type == STRATEGIC_MERGE_PATCH  # a built-in type, as helm 3
    assert writes[0].status == 200
    assert writes[0].body == {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "reviews",
                            "image": f"{IMAGE}:{STABLE_TAG}",
                            "ports": [{"containerPort": 9080}],
                        }
                    ]
                }
            }
        }
    }
    assert [r["status"] for r in helm.history("reviews", NS)] == [
        "superseded",
        "superseded",
        "deployed",
    ]


def test_a_rollback_the_api_refuses_fails_the_revision(
    helm: FakeHelm, kubeapi: KubeApiServer
) -> None:
    kubeapi.deny("patch", "apps", "deployments", namespace=NS)
    done = subprocess.run(
        [str(helm.binary), "rollback", "reviews", "1", "--namespace", NS],
        capture_output=True,
        text=True,
        timeout=60,
        env=helm.full_env(FAKEHELM_KUBE_URL=kubeapi.url),
        check=False,
    )
    assert done.returncode == 1
    assert "forbidden" in done.stderr
    assert canary_image(kubeapi) == f"{IMAGE}:{CANARY_TAG}"
    last = helm.history("reviews", NS)[-1]
    assert last["status"] == "failed"
    assert last["description"].startswith('Rollback "reviews" failed: cannot patch')


def _both_histories(helm: FakeHelm, kubeapi: KubeApiServer) -> tuple[Any, Any]:
    """What decide reads of each history: every revision's number and status, and the
    deployed and newest revisions' descriptions (SecretHistory decodes only those)."""
    release = ReleaseRef(name="reviews", namespace=NS)
    binary = HelmReleases(str(helm.binary), env=helm.env, history_ttl=timedelta(0))
    from_secrets = SecretHistory(kubeapi.client(), binary)

    def seen(info: Any) -> Any:
        return (
            [(r.number, r.status) for r in info.revisions],
            info.deployed,
            info.latest,
        )

    return seen(from_secrets.history(release)), seen(binary.history(release))


def test_the_storage_secrets_and_helm_history_agree_through_a_rollback(
    helm: FakeHelm, kubeapi: KubeApiServer
) -> None:
    secrets, binary = _both_histories(helm, kubeapi)
    assert secrets == binary
    assert [status.value for _, status in secrets[0]] == ["superseded", "deployed"]
    done = helm.run(*ROLLBACK)
    assert done.returncode == 0, done.stderr
    secrets, binary = _both_histories(helm, kubeapi)
    assert secrets == binary
    deployed = secrets[1]
    assert (deployed.number, deployed.description) == (3, "Rollback to 1")
    labels = [
        s["metadata"]["labels"]
        for s in kubeapi.objects("", "secrets", NS)
        if s["metadata"]["name"].startswith("sh.helm.release.v1.reviews.")
    ]
    assert sorted((x["version"], x["status"], x["owner"]) for x in labels) == [
        ("1", "superseded", "helm"),
        ("2", "superseded", "helm"),
        ("3", "deployed", "helm"),
    ]


def test_a_helm_that_died_mid_rollback_leaves_a_pending_secret(
    helm: FakeHelm, kubeapi: KubeApiServer
) -> None:
    helm.set(leave_pending=True)
    done = helm.run(*ROLLBACK)
    assert done.returncode == 1
    secrets, binary = _both_histories(helm, kubeapi)
    assert secrets == binary
    latest = secrets[2]
    assert (latest.status.value, latest.description) == ("pending-rollback", "Rollback to 1")
    helm.settle("reviews", NS)
    secrets, binary = _both_histories(helm, kubeapi)
    assert secrets == binary
    assert secrets[1].number == 3 and secrets[2].status.value == "deployed"
