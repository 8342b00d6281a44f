"""The Kubernetes API server double (tests/support/kubeapi.py) spoken to by the REAL client.

Every test goes through ``kubernetes`` 37 over HTTP and asserts three things: what the client
sent (method, path, content type, body from the request log), what the server answered
(status and the ``metav1.Status`` body a real kube-apiserver writes) and what the cluster now
holds.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import urllib3
import yaml
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from tests.support.kubeapi import (
    DEFAULT_USER,
    KubeApiServer,
    apply_json_patch,
    apply_strategic_merge_patch,
    parse_label_selector,
)

ISTIO = "networking.istio.io"
VS = "virtualservices"
NS = "bookinfo"
VS_PATH = f"/apis/{ISTIO}/v1/namespaces/{NS}/{VS}"
DEP_PATH = f"/apis/apps/v1/namespaces/{NS}/deployments"
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
FIXTURES = Path(__file__).parent / "fixtures" / "virtualservices"
RFC3339_S = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
RFC3339_US = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def reviews_vs() -> dict[str, Any]:
    """Bookinfo's reviews VirtualService: a header-match route for jason, then v1/v3."""
    return yaml.safe_load((FIXTURES / "reviews-jason-header.yaml").read_text())


def reviews_deployment(version: str = "v1", image_tag: str = "1.20.2") -> client.V1Deployment:
    labels = {"app": "reviews", "version": version}
    return client.V1Deployment(
        api_version="apps/v1",
        kind="Deployment",
        metadata=client.V1ObjectMeta(name=f"reviews-{version}", namespace=NS, labels=labels),
        spec=client.V1DeploymentSpec(
            replicas=2,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(
                    containers=[
                        client.V1Container(
                            name="reviews",
                            image=f"docker.io/istio/examples-bookinfo-reviews-{version}:{image_tag}",
                            ports=[client.V1ContainerPort(container_port=9080)],
                            env=[client.V1EnvVar(name="LOG_DIR", value="/tmp/logs")],
                        )
                    ]
                ),
            ),
        ),
    )


def body_of(exc: ApiException) -> dict[str, Any]:
    return json.loads(exc.body)


def weights(vs: dict[str, Any], route: int = 1) -> list[int]:
    return [d.get("weight") for d in vs["spec"]["http"][route]["route"]]


@pytest.fixture
def api(kubeapi: KubeApiServer) -> client.ApiClient:
    return kubeapi.client()


@pytest.fixture
def custom(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


@pytest.fixture
def apps(api: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(api)


@pytest.fixture
def seeded(kubeapi: KubeApiServer) -> dict[str, Any]:
    """The reviews VirtualService, stored directly (no HTTP)."""
    return kubeapi.put_object(reviews_vs())


# --- VirtualServices: get, list, create ----------------------------------------------------------


def test_get_and_list_virtual_service(
    kubeapi: KubeApiServer, custom: client.CustomObjectsApi, seeded: dict[str, Any]
) -> None:
    got = custom.get_namespaced_custom_object(ISTIO, "v1", NS, VS, "reviews")
    assert got == seeded
    assert got["metadata"]["resourceVersion"] == str(kubeapi.resource_version)
    assert got["metadata"]["generation"] == 1
    assert RFC3339_S.match(got["metadata"]["creationTimestamp"])

    # the same object at an older served version: only apiVersion differs
    beta = custom.get_namespaced_custom_object(ISTIO, "v1beta1", NS, VS, "reviews")
    assert beta["apiVersion"] == f"{ISTIO}/v1beta1"
    assert {**beta, "apiVersion": got["apiVersion"]} == got

    listed = custom.list_namespaced_custom_object(ISTIO, "v1", NS, VS)
    assert listed["kind"] == "VirtualServiceList"
    assert listed["metadata"]["resourceVersion"] == str(kubeapi.resource_version)
    assert [i["metadata"]["name"] for i in listed["items"]] == ["reviews"]
    assert listed["items"][0]["kind"] == "VirtualService"  # custom resources keep kind in lists
    everywhere = custom.list_cluster_custom_object(ISTIO, "v1", VS)
    assert [i["metadata"]["namespace"] for i in everywhere["items"]] == [NS]
    assert custom.list_namespaced_custom_object(ISTIO, "v1", "elsewhere", VS)["items"] == []

    get = kubeapi.requests.filter(verb="get")[0]
    assert (get.method, get.path, get.status, get.content_type) == (
        "GET",
        f"{VS_PATH}/reviews",
        200,
        None,
    )
    assert [r.path for r in kubeapi.requests.filter(verb="list")] == [
        VS_PATH,
        f"/apis/{ISTIO}/v1/{VS}",
        f"/apis/{ISTIO}/v1/namespaces/elsewhere/{VS}",
    ]
    assert kubeapi.requests.writes() == []


def test_get_missing_virtual_service_is_404_not_found(
    kubeapi: KubeApiServer, custom: client.CustomObjectsApi
) -> None:
    with pytest.raises(ApiException) as caught:
        custom.get_namespaced_custom_object(ISTIO, "v1", NS, VS, "ratings")
    assert caught.value.status == 404
    assert body_of(caught.value) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'virtualservices.networking.istio.io "ratings" not found',
        "reason": "NotFound",
        "details": {"name": "ratings", "group": ISTIO, "kind": VS},
        "code": 404,
    }
    assert kubeapi.requests.last().status == 404


def test_create_virtual_service_then_409_already_exists(
    kubeapi: KubeApiServer, custom: client.CustomObjectsApi
) -> None:
    sent = reviews_vs()
    created = custom.create_namespaced_custom_object(ISTIO, "v1", NS, VS, sent)
    meta = created["metadata"]
    assert meta["resourceVersion"] == "1"
    assert meta["generation"] == 1
    assert re.fullmatch(r"[0-9a-f-]{36}", meta["uid"])
    assert RFC3339_S.match(meta["creationTimestamp"])
    assert created["spec"] == sent["spec"]

    post = kubeapi.requests.last(method="POST")
    assert (post.path, post.status, post.verb) == (VS_PATH, 201, "create")
    assert post.content_type is None  # kubernetes 37 sends no Content-Type on POST/PUT
    assert post.body == sent
    assert kubeapi.get_object(ISTIO, "v1", VS, NS, "reviews") == created

    with pytest.raises(ApiException) as caught:
        custom.create_namespaced_custom_object(ISTIO, "v1", NS, VS, sent)
    assert caught.value.status == 409
    status = body_of(caught.value)
    assert status["reason"] == "AlreadyExists"
    assert status["message"] == 'virtualservices.networking.istio.io "reviews" already exists'
    assert status["details"] == {"name": "reviews", "group": ISTIO, "kind": VS}
    assert kubeapi.resource_version == 1


# --- JSON Patch with a `test` on the resourceVersion ---------------------------------------------


def weight_ops(version: str, stable: int, canary: int) -> list[dict[str, Any]]:
    return [
        {"op": "test", "path": "/metadata/resourceVersion", "value": version},
        {"op": "replace", "path": "/spec/http/1/route/0/weight", "value": stable},
        {"op": "replace", "path": "/spec/http/1/route/1/weight", "value": canary},
        {"op": "add", "path": "/metadata/annotations", "value": {"canary.dev/state": "{}"}},
    ]


def test_json_patch_with_fresh_resource_version_applies(
    kubeapi: KubeApiServer, custom: client.CustomObjectsApi, seeded: dict[str, Any]
) -> None:
    version = seeded["metadata"]["resourceVersion"]
    ops = weight_ops(version, 90, 10)
    patched = custom.patch_namespaced_custom_object(
        ISTIO, "v1", NS, VS, "reviews", ops, _content_type=JSON_PATCH
    )
    assert weights(patched) == [90, 10]
    assert patched["spec"]["http"][0] == seeded["spec"]["http"][0]  # jason's route untouched
    assert patched["metadata"]["annotations"] == {"canary.dev/state": "{}"}
    assert int(patched["metadata"]["resourceVersion"]) == int(version) + 1
    assert patched["metadata"]["generation"] == 2  # spec changed

    req = kubeapi.requests.last(verb="patch")
    assert (req.method, req.path, req.content_type, req.status) == (
        "PATCH",
        f"{VS_PATH}/reviews",
        JSON_PATCH,
        200,
    )
    assert req.body == ops
    assert kubeapi.get_object(ISTIO, "v1", VS, NS, "reviews") == patched


def test_json_patch_with_stale_resource_version_is_422_and_changes_nothing(
    kubeapi: KubeApiServer, custom: client.CustomObjectsApi, seeded: dict[str, Any]
) -> None:
    read = seeded["metadata"]["resourceVersion"]
    # someone else writes in between
    kubeapi.edit(ISTIO, "v1", VS, NS, "reviews", {"metadata": {"labels": {"touched": "yes"}}})
    before = kubeapi.get_object(ISTIO, "v1", VS, NS, "reviews")

    with pytest.raises(ApiException) as caught:
        custom.patch_namespaced_custom_object(
            ISTIO, "v1", NS, VS, "reviews", weight_ops(read, 50, 50), _content_type=JSON_PATCH
        )
    assert caught.value.status == 422
    # exactly what kube-apiserver answers (NewGenericServerResponse): no word of the `test` op
    assert body_of(caught.value) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "the server rejected our request due to an error in our request",
        "reason": "Invalid",
        "details": {},
        "code": 422,
    }
    req = kubeapi.requests.last(verb="patch")
    assert req.status == 422
    assert req.detail == "testing value /metadata/resourceVersion failed: test failed"
    assert kubeapi.get_object(ISTIO, "v1", VS, NS, "reviews") == before


@pytest.mark.parametrize(
    ("op", "detail"),
    [
        (
            {"op": "replace", "path": "/spec/http/7/route", "value": []},
            "replace operation does not apply: doc is missing path: /spec/http/7/route: "
            "missing value",
        ),
        (
            {"op": "remove", "path": "/metadata/annotations/canary.dev~1command"},
            'remove operation does not apply: doc is missing path: "/metadata/annotations/'
            'canary.dev~1command": missing value',
        ),
    ],
)
def test_json_patch_with_a_path_that_does_not_exist_is_422(
    kubeapi: KubeApiServer,
    custom: client.CustomObjectsApi,
    seeded: dict[str, Any],
    op: dict[str, Any],
    detail: str,
) -> None:
    with pytest.raises(ApiException) as caught:
        custom.patch_namespaced_custom_object(
            ISTIO, "v1", NS, VS, "reviews", [op], _content_type=JSON_PATCH
        )
    assert caught.value.status == 422
    assert body_of(caught.value)["reason"] == "Invalid"
    assert kubeapi.get_object(ISTIO, "v1", VS, NS, "reviews") == seeded
    assert kubeapi.requests.last().detail == detail


def test_json_patch_evanphx_semantics() -> None:
    doc = {"a": {"b": [1, 2]}, "n": 1}
    # replace of a missing *object key* adds it in json-patch.v4 (what kube runs)
    assert apply_json_patch(doc, [{"op": "replace", "path": "/a/c", "value": 3}])["a"]["c"] == 3
    assert apply_json_patch(doc, [{"op": "add", "path": "/a/b/-", "value": 3}])["a"]["b"] == [
        1,
        2,
        3,
    ]
    moved = apply_json_patch(doc, [{"op": "move", "from": "/n", "path": "/a/n"}])
    assert moved == {"a": {"b": [1, 2], "n": 1}}
    assert doc == {"a": {"b": [1, 2]}, "n": 1}  # never mutated
    with pytest.raises(Exception, match="test failed"):
        apply_json_patch(doc, [{"op": "test", "path": "/n", "value": True}])  # 1 is not true
    with pytest.raises(Exception, match="doc is missing key: /a/b/5"):
        apply_json_patch(doc, [{"op": "replace", "path": "/a/b/5", "value": 0}])
    with pytest.raises(Exception, match="Unable to access invalid index: 5"):
        apply_json_patch(doc, [{"op": "add", "path": "/a/b/5", "value": 0}])


# --- merge patch, strategic merge patch, content types -------------------------------------------


def test_merge_patch_is_the_default_and_409_on_a_stale_resource_version(
    kubeapi: KubeApiServer, custom: client.CustomObjectsApi, seeded: dict[str, Any]
) -> None:
    fresh = seeded["metadata"]["resourceVersion"]
    patch = {"metadata": {"resourceVersion": fresh, "labels": {"a": "1"}}}
    out = custom.patch_namespaced_custom_object(ISTIO, "v1", NS, VS, "reviews", patch)
    assert out["metadata"]["labels"] == {"a": "1"}
    assert out["metadata"]["generation"] == 1  # metadata only
    req = kubeapi.requests.last(verb="patch")
    assert (req.content_type, req.body, req.status) == (MERGE_PATCH, patch, 200)

    with pytest.raises(ApiException) as caught:  # `fresh` is stale now
        custom.patch_namespaced_custom_object(
            ISTIO, "v1", NS, VS, "reviews", {"metadata": {"resourceVersion": fresh}}
        )
    assert caught.value.status == 409
    assert body_of(caught.value) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Operation cannot be fulfilled on virtualservices.networking.istio.io "
        '"reviews": the object has been modified; please apply your changes to the latest '
        "version and try again",
        "reason": "Conflict",
        "details": {"name": "reviews", "group": ISTIO, "kind": VS},
        "code": 409,
    }


def test_json_patch_list_sent_without_content_type_goes_as_merge_patch_and_fails(
    kubeapi: KubeApiServer, custom: client.CustomObjectsApi, seeded: dict[str, Any]
) -> None:
    """The client's pitfall: patch_namespaced_custom_object sends merge-patch+json for a list."""
    ops = weight_ops(seeded["metadata"]["resourceVersion"], 0, 100)
    with pytest.raises(ApiException) as caught:
        custom.patch_namespaced_custom_object(ISTIO, "v1", NS, VS, "reviews", ops)
    assert caught.value.status == 422
    assert kubeapi.requests.last().content_type == MERGE_PATCH
    assert kubeapi.get_object(ISTIO, "v1", VS, NS, "reviews") == seeded


@pytest.mark.parametrize("content_type", ["application/json", STRATEGIC])
def test_unsupported_patch_content_type_is_415(
    kubeapi: KubeApiServer,
    custom: client.CustomObjectsApi,
    seeded: dict[str, Any],
    content_type: str,
) -> None:
    with pytest.raises(ApiException) as caught:
        custom.patch_namespaced_custom_object(
            ISTIO, "v1", NS, VS, "reviews", {"spec": {}}, _content_type=content_type
        )
    assert caught.value.status == 415
    assert body_of(caught.value) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "the body of the request was in an unknown format - accepted media types "
        "include: application/json-patch+json, application/merge-patch+json, "
        "application/apply-patch+yaml",
        "reason": "UnsupportedMediaType",
        "code": 415,
    }
    assert kubeapi.requests.last().content_type == content_type
    assert kubeapi.get_object(ISTIO, "v1", VS, NS, "reviews") == seeded


# --- PUT -----------------------------------------------------------------------------------------


def test_replace_virtual_service_conflicts_and_requires_resource_version(
    kubeapi: KubeApiServer, custom: client.CustomObjectsApi, seeded: dict[str, Any]
) -> None:
    mine = copy.deepcopy(seeded)
    mine["spec"]["http"][1]["route"][0]["weight"] = 80
    mine["spec"]["http"][1]["route"][1]["weight"] = 20
    replaced = custom.replace_namespaced_custom_object(ISTIO, "v1", NS, VS, "reviews", mine)
    assert weights(replaced) == [80, 20]
    assert replaced["metadata"]["generation"] == 2
    assert replaced["metadata"]["uid"] == seeded["metadata"]["uid"]
    put = kubeapi.requests.last(method="PUT")
    assert (put.path, put.verb, put.status, put.body) == (f"{VS_PATH}/reviews", "update", 200, mine)

    with pytest.raises(ApiException) as stale:  # `mine` carries the old resourceVersion
        custom.replace_namespaced_custom_object(ISTIO, "v1", NS, VS, "reviews", mine)
    assert stale.value.status == 409
    assert body_of(stale.value)["reason"] == "Conflict"

    unconditional = copy.deepcopy(mine)
    del unconditional["metadata"]["resourceVersion"]
    with pytest.raises(ApiException) as caught:  # custom resources: no unconditional update
        custom.replace_namespaced_custom_object(ISTIO, "v1", NS, VS, "reviews", unconditional)
    assert caught.value.status == 422
    assert body_of(caught.value)["message"] == (
        'VirtualService.networking.istio.io "reviews" is invalid: metadata.resourceVersion: '
        "Invalid value: 0x0: must be specified for an update"
    )

    missing = copy.deepcopy(mine)
    missing["metadata"]["name"] = "ratings"
    with pytest.raises(ApiException) as gone:
        custom.replace_namespaced_custom_object(ISTIO, "v1", NS, VS, "ratings", missing)
    assert gone.value.status == 404
    assert body_of(gone.value)["reason"] == "NotFound"
    assert weights(kubeapi.get_object(ISTIO, "v1", VS, NS, "reviews")) == [80, 20]


def test_generation_bumps_only_when_spec_changes_and_no_op_writes_nothing(
    kubeapi: KubeApiServer, custom: client.CustomObjectsApi, seeded: dict[str, Any]
) -> None:
    def patch(body: dict[str, Any]) -> dict[str, Any]:
        return custom.patch_namespaced_custom_object(ISTIO, "v1", NS, VS, "reviews", body)

    labelled = patch({"metadata": {"labels": {"x": "1"}, "annotations": {"y": "2"}}})
    assert labelled["metadata"]["generation"] == 1
    assert int(labelled["metadata"]["resourceVersion"]) > int(seeded["metadata"]["resourceVersion"])

    status = custom.patch_namespaced_custom_object_status(
        ISTIO, "v1", NS, VS, "reviews", {"status": {"observedGeneration": 1}}
    )
    assert status["status"] == {"observedGeneration": 1}
    assert status["metadata"]["generation"] == 1
    assert kubeapi.requests.last().path == f"{VS_PATH}/reviews/status"

    ignored = patch({"status": {"observedGeneration": 7}})  # main resource: status is kept
    assert ignored["status"] == {"observedGeneration": 1}

    respec = patch({"spec": {"gateways": ["mesh"]}})
    assert respec["metadata"]["generation"] == 2

    rv = kubeapi.resource_version
    same = patch({"spec": {"gateways": ["mesh"]}})  # changes nothing
    assert same["metadata"]["resourceVersion"] == str(rv) == respec["metadata"]["resourceVersion"]
    assert kubeapi.resource_version == rv


# --- Deployments ---------------------------------------------------------------------------------


def test_deployment_create_defaults_generation_status_and_strategic_merge(
    kubeapi: KubeApiServer, apps: client.AppsV1Api, api: client.ApiClient
) -> None:
    created = apps.create_namespaced_deployment(NS, reviews_deployment())
    assert created.metadata.generation == 1
    assert created.spec.strategy.type == "RollingUpdate"
    assert created.spec.progress_deadline_seconds == 600
    container = created.spec.template.spec.containers[0]
    assert (container.image_pull_policy, container.ports[0].protocol) == ("IfNotPresent", "TCP")
    post = kubeapi.requests.last(method="POST")
    assert (post.path, post.status, post.content_type) == (DEP_PATH, 201, None)
    assert post.body == api.sanitize_for_serialization(reviews_deployment())

    # a dict body: the client turns its default json-patch+json into strategic-merge-patch+json
    image = "docker.io/istio/examples-bookinfo-reviews-v1:1.21.0"
    patched = apps.patch_namespaced_deployment(
        "reviews-v1",
        NS,
        {"spec": {"template": {"spec": {"containers": [{"name": "reviews", "image": image}]}}}},
    )
    assert kubeapi.requests.last(verb="patch").content_type == STRATEGIC
    merged = patched.spec.template.spec.containers
    assert [(c.name, c.image, c.env[0].name) for c in merged] == [("reviews", image, "LOG_DIR")]
    assert patched.metadata.generation == 2

    labelled = apps.patch_namespaced_deployment(
        "reviews-v1", NS, {"metadata": {"labels": {"a": "b"}}}
    )
    assert labelled.metadata.generation == 2  # labels are metadata
    annotated = apps.patch_namespaced_deployment(
        "reviews-v1", NS, {"metadata": {"annotations": {"a": "b"}}}
    )
    assert annotated.metadata.generation == 3  # Deployments: annotations bump it too (real)

    status = {
        "observedGeneration": 3,
        "replicas": 2,
        "updatedReplicas": 2,
        "readyReplicas": 2,
        "availableReplicas": 2,
        "conditions": [
            {
                "type": "Available",
                "status": "True",
                "reason": "MinimumReplicasAvailable",
                "lastUpdateTime": "2025-01-01T00:00:00+00:00",
                "lastTransitionTime": "2025-01-01T00:00:00+00:00",
            }
        ],
    }
    apps.patch_namespaced_deployment_status("reviews-v1", NS, {"status": status})
    dep = apps.read_namespaced_deployment("reviews-v1", NS)
    assert (dep.status.observed_generation, dep.status.available_replicas) == (3, 2)
    assert dep.metadata.generation == 3
    stored = kubeapi.get_object("apps", "v1", "deployments", NS, "reviews-v1")
    assert stored["status"]["conditions"][0]["lastUpdateTime"] == "2025-01-01T00:00:00Z"

    apps.patch_namespaced_deployment("reviews-v1", NS, {"status": {"replicas": 9}})
    assert apps.read_namespaced_deployment("reviews-v1", NS).status.replicas == 2  # ignored


def test_deployment_replace_json_patch_list_and_delete(
    kubeapi: KubeApiServer, apps: client.AppsV1Api
) -> None:
    apps.create_namespaced_deployment(NS, reviews_deployment())
    current = apps.read_namespaced_deployment("reviews-v1", NS)
    current.spec.replicas = 3
    replaced = apps.replace_namespaced_deployment("reviews-v1", NS, current)
    assert (replaced.spec.replicas, replaced.metadata.generation) == (3, 2)
    assert kubeapi.requests.last(method="PUT").path == f"{DEP_PATH}/reviews-v1"
    with pytest.raises(ApiException) as caught:  # `current` is stale now
        apps.replace_namespaced_deployment("reviews-v1", NS, current)
    assert caught.value.status == 409
    assert body_of(caught.value)["message"].startswith(
        'Operation cannot be fulfilled on deployments.apps "reviews-v1": '
    )

    ops = [{"op": "replace", "path": "/spec/replicas", "value": 1}]
    assert apps.patch_namespaced_deployment("reviews-v1", NS, ops).spec.replicas == 1
    assert kubeapi.requests.last(verb="patch").content_type == JSON_PATCH  # a list stays JSON Patch

    with pytest.raises(ApiException) as invalid:
        bad = reviews_deployment("v2")
        bad.spec.template.metadata.labels = {"app": "other"}
        apps.create_namespaced_deployment(NS, bad)
    assert invalid.value.status == 422
    assert body_of(invalid.value)["message"].startswith(
        'Deployment.apps "reviews-v2" is invalid: spec.template.metadata.labels: Invalid value: '
    )

    uid = kubeapi.get_object("apps", "v1", "deployments", NS, "reviews-v1")["metadata"]["uid"]
    status = apps.delete_namespaced_deployment("reviews-v1", NS)  # kubernetes 37: a plain dict
    assert status == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": "reviews-v1", "group": "apps", "kind": "deployments", "uid": uid},
    }
    assert kubeapi.get_object("apps", "v1", "deployments", NS, "reviews-v1") is None


def test_cluster_wide_deployment_list_with_label_selector(
    kubeapi: KubeApiServer, apps: client.AppsV1Api, api: client.ApiClient
) -> None:
    for version in ("v1", "v3"):
        kubeapi.put_object(api.sanitize_for_serialization(reviews_deployment(version)))
    other = api.sanitize_for_serialization(reviews_deployment("v2"))
    other["metadata"]["namespace"] = "staging"
    kubeapi.put_object(other)

    every = apps.list_deployment_for_all_namespaces()
    assert [d.metadata.name for d in every.items] == ["reviews-v1", "reviews-v3", "reviews-v2"]
    assert kubeapi.requests.last().path == "/apis/apps/v1/deployments"
    raw = kubeapi.requests.last().response
    assert raw["kind"] == "DeploymentList"
    assert "kind" not in raw["items"][0]  # built-in list items carry no kind on the wire

    picked = apps.list_deployment_for_all_namespaces(
        label_selector="app=reviews,version in (v2,v3)"
    )
    assert sorted(d.metadata.name for d in picked.items) == ["reviews-v2", "reviews-v3"]
    assert kubeapi.requests.last().query["labelSelector"] == "app=reviews,version in (v2,v3)"
    ns_only = apps.list_namespaced_deployment(NS, label_selector="version!=v1")
    assert [d.metadata.name for d in ns_only.items] == ["reviews-v3"]


def test_strategic_merge_patch_directives() -> None:
    containers = [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]
    doc = {"spec": {"containers": containers, "finalizers": ["x"]}}
    out = apply_strategic_merge_patch(
        doc,
        {
            "spec": {
                "containers": [{"name": "b", "$patch": "delete"}, {"name": "c", "image": "c:1"}],
                "finalizers": ["y"],
                "$setElementOrder/containers": [{"name": "a"}, {"name": "c"}],
            }
        },
    )
    assert out == {
        "spec": {
            "containers": [{"name": "a", "image": "a:1"}, {"name": "c", "image": "c:1"}],
            "finalizers": ["x", "y"],
        }
    }


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("", True),
        ("app", True),
        ("!app", False),
        ("!track", True),
        ("app=reviews,version==v3", True),
        ("version!=v3", False),
        ("version notin (v1, v2)", True),
        ("version in (v1,v2)", False),
    ],
)
def test_label_selectors(selector: str, expected: bool) -> None:
    assert parse_label_selector(selector)({"app": "reviews", "version": "v3"}) is expected


# --- watch ---------------------------------------------------------------------------------------


def test_watch_streams_modified_quickly_and_ends_at_timeout_seconds(
    kubeapi: KubeApiServer, custom: client.CustomObjectsApi, seeded: dict[str, Any]
) -> None:
    since = seeded["metadata"]["resourceVersion"]
    timer = threading.Timer(
        0.2,
        kubeapi.edit,
        (ISTIO, "v1", VS, NS, "reviews", {"spec": {"http": [{"route": []}]}}),
    )
    start = time.monotonic()
    timer.start()
    events: list[tuple[str, float, dict[str, Any]]] = []
    try:
        for event in watch.Watch().stream(
            custom.list_namespaced_custom_object,
            ISTIO,
            "v1",
            NS,
            VS,
            resource_version=since,
            timeout_seconds=1,
        ):
            events.append((event["type"], time.monotonic() - start, event["object"]))
    finally:
        timer.cancel()
    elapsed = time.monotonic() - start

    assert [e[0] for e in events] == ["MODIFIED"]
    assert events[0][1] < 0.6  # delivered as it happens, not at the end
    assert events[0][2]["spec"]["http"] == [{"route": []}]
    assert events[0][2]["metadata"]["resourceVersion"] == str(kubeapi.resource_version)
    assert 0.95 <= elapsed < 2.0  # the server ended the stream after timeoutSeconds
    req = kubeapi.requests.last(verb="watch")
    assert (req.path, req.status) == (VS_PATH, 200)
    assert req.query["watch"] == "true"
    assert (req.query["resourceVersion"], req.query["timeoutSeconds"]) == (since, "1")


def test_watch_typed_deployments_initial_state_selector_and_delete(
    kubeapi: KubeApiServer, apps: client.AppsV1Api, api: client.ApiClient
) -> None:
    kubeapi.put_object(api.sanitize_for_serialization(reviews_deployment("v1")))
    kubeapi.put_object(api.sanitize_for_serialization(reviews_deployment("v3")))

    def later() -> None:
        time.sleep(0.1)
        kubeapi.edit("apps", "v1", "deployments", NS, "reviews-v3", {"spec": {"replicas": 5}})
        # leaves the selector: a watcher of version=v3 sees DELETED
        kubeapi.edit(
            "apps",
            "v1",
            "deployments",
            NS,
            "reviews-v3",
            {"metadata": {"labels": {"version": "x"}}},
        )

    threading.Thread(target=later, daemon=True).start()
    seen = [
        (e["type"], e["object"].metadata.name, e["object"].spec.replicas)
        for e in watch.Watch().stream(
            apps.list_namespaced_deployment, NS, label_selector="version=v3", timeout_seconds=1
        )
    ]
    # no resourceVersion: the current state first (ADDED), then the changes
    assert seen == [
        ("ADDED", "reviews-v3", 2),
        ("MODIFIED", "reviews-v3", 5),
        ("DELETED", "reviews-v3", 5),
    ]


def test_watch_from_a_compacted_resource_version_is_410(
    kubeapi: KubeApiServer, custom: client.CustomObjectsApi, seeded: dict[str, Any]
) -> None:
    kubeapi.edit(ISTIO, "v1", VS, NS, "reviews", {"metadata": {"labels": {"a": "b"}}})
    kubeapi.compact()
    with pytest.raises(ApiException) as caught:
        list(
            watch.Watch().stream(
                custom.list_namespaced_custom_object,
                ISTIO,
                "v1",
                NS,
                VS,
                resource_version=seeded["metadata"]["resourceVersion"],
                timeout_seconds=1,
            )
        )
    assert caught.value.status == 410
    assert "Expired: too old resource version" in caught.value.reason


# --- discovery -----------------------------------------------------------------------------------


def test_discovery_lists_only_served_versions(
    kubeapi: KubeApiServer, api: client.ApiClient
) -> None:
    kubeapi.serve(ISTIO, "v1beta1")
    groups = {g.name: g for g in client.ApisApi(api).get_api_versions().groups}
    assert [v.version for v in groups[ISTIO].versions] == ["v1beta1"]
    assert groups[ISTIO].preferred_version.version == "v1beta1"
    assert {"apps", "coordination.k8s.io", "events.k8s.io"} <= set(groups)

    custom = client.CustomObjectsApi(api)
    resources = custom.get_api_resources(ISTIO, "v1beta1")
    assert {r.name for r in resources.resources} == {
        "virtualservices",
        "virtualservices/status",
        "destinationrules",
        "destinationrules/status",
    }
    with pytest.raises(ApiException) as caught:
        custom.get_api_resources(ISTIO, "v1")
    assert caught.value.status == 404
    kubeapi.put_object(reviews_vs())
    with pytest.raises(ApiException) as unserved:
        custom.get_namespaced_custom_object(ISTIO, "v1", NS, VS, "reviews")
    assert unserved.value.status == 404
    assert body_of(unserved.value) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "the server could not find the requested resource",
        "reason": "NotFound",
        "details": {},
        "code": 404,
    }
    vs = custom.get_namespaced_custom_object(ISTIO, "v1beta1", NS, VS, "reviews")
    assert vs["apiVersion"] == f"{ISTIO}/v1beta1"

    core = client.CoreV1Api(api).get_api_resources()
    assert "events" in {r.name for r in core.resources}
    assert client.CoreApi(api).get_api_versions().versions == ["v1"]
    assert client.VersionApi(api).get_code().git_version.startswith("v1.")


def test_served_versions_at_construction() -> None:
    with KubeApiServer(served={ISTIO: ["v1alpha3", "v1beta1"]}) as kube:
        api = kube.client()
        group = client.ApisApi(api).get_api_versions().groups
        istio = next(g for g in group if g.name == ISTIO)
        assert [v.version for v in istio.versions] == ["v1beta1", "v1alpha3"]  # priority order


# --- RBAC ----------------------------------------------------------------------------------------


def test_denied_verb_is_403_with_the_real_message(
    kubeapi: KubeApiServer, custom: client.CustomObjectsApi, seeded: dict[str, Any]
) -> None:
    kubeapi.deny("patch", ISTIO, VS, namespace=NS)
    with pytest.raises(ApiException) as caught:
        custom.patch_namespaced_custom_object(ISTIO, "v1", NS, VS, "reviews", {"spec": {}})
    assert caught.value.status == 403
    assert body_of(caught.value) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'virtualservices.networking.istio.io "reviews" is forbidden: User '
        '"system:serviceaccount:canary:canary" cannot patch resource "virtualservices" in API '
        'group "networking.istio.io" in the namespace "bookinfo"',
        "reason": "Forbidden",
        "details": {"name": "reviews", "group": ISTIO, "kind": VS},
        "code": 403,
    }
    assert DEFAULT_USER == "system:serviceaccount:canary:canary"
    assert custom.get_namespaced_custom_object(ISTIO, "v1", NS, VS, "reviews") == seeded

    kubeapi.deny("list", ISTIO, VS)
    with pytest.raises(ApiException) as listing:
        custom.list_cluster_custom_object(ISTIO, "v1", VS)
    assert body_of(listing.value)["message"] == (
        'virtualservices.networking.istio.io is forbidden: User "system:serviceaccount:canary:'
        'canary" cannot list resource "virtualservices" in API group "networking.istio.io" at '
        "the cluster scope"
    )
    kubeapi.allow()
    assert custom.list_cluster_custom_object(ISTIO, "v1", VS)["items"]


# --- Leases and Events ---------------------------------------------------------------------------


def test_lease_create_renew_and_409_on_stale(kubeapi: KubeApiServer, api: client.ApiClient) -> None:
    leases = client.CoordinationV1Api(api)
    now = datetime.now(UTC)
    lease = client.V1Lease(
        metadata=client.V1ObjectMeta(name="canary-leader", namespace="canary"),
        spec=client.V1LeaseSpec(
            holder_identity="pod-a",
            lease_duration_seconds=15,
            acquire_time=now,
            renew_time=now,
            lease_transitions=0,
        ),
    )
    created = leases.create_namespaced_lease("canary", lease)
    assert created.spec.holder_identity == "pod-a"
    assert created.metadata.generation is None  # Leases have none
    stored = kubeapi.get_object("coordination.k8s.io", "v1", "leases", "canary", "canary-leader")
    assert RFC3339_US.match(stored["spec"]["renewTime"])  # MicroTime as Go renders it
    post = kubeapi.requests.last(method="POST")
    assert post.path == "/apis/coordination.k8s.io/v1/namespaces/canary/leases"
    assert post.body["spec"]["holderIdentity"] == "pod-a"

    renewed = leases.read_namespaced_lease("canary-leader", "canary")
    renewed.spec.renew_time = datetime.now(UTC)
    after = leases.replace_namespaced_lease("canary-leader", "canary", renewed)
    assert int(after.metadata.resource_version) > int(created.metadata.resource_version)

    # pod-b read the lease before pod-a renewed: its takeover must fail
    created.spec.holder_identity = "pod-b"
    with pytest.raises(ApiException) as caught:
        leases.replace_namespaced_lease("canary-leader", "canary", created)
    assert caught.value.status == 409
    assert body_of(caught.value)["details"] == {
        "name": "canary-leader",
        "group": "coordination.k8s.io",
        "kind": "leases",
    }
    assert leases.read_namespaced_lease("canary-leader", "canary").spec.holder_identity == "pod-a"
    put = kubeapi.requests.last(method="PUT")
    assert (put.path, put.status) == (
        "/apis/coordination.k8s.io/v1/namespaces/canary/leases/canary-leader",
        409,
    )


def test_post_core_and_events_k8s_io_events(kubeapi: KubeApiServer, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    stamp = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    event = client.CoreV1Event(
        metadata=client.V1ObjectMeta(generate_name="reviews.", namespace=NS),
        involved_object=client.V1ObjectReference(
            api_version=f"{ISTIO}/v1", kind="VirtualService", name="reviews", namespace=NS
        ),
        reason="step.passed",
        message="step 1 passed",
        type="Normal",
        count=1,
        first_timestamp=stamp,
        last_timestamp=stamp,
        source=client.V1EventSource(component="canary"),
    )
    created = core.create_namespaced_event(NS, event)
    assert created.metadata.name.startswith("reviews.")
    assert len(created.metadata.name) == len("reviews.") + 5
    post = kubeapi.requests.last(method="POST")
    assert (post.path, post.status) == (f"/api/v1/namespaces/{NS}/events", 201)
    assert post.body["reason"] == "step.passed"
    assert post.body["firstTimestamp"] == "2025-03-01T12:00:00.123456+00:00"  # as the client sends
    stored = kubeapi.get_object("", "v1", "events", NS, created.metadata.name)
    assert stored["firstTimestamp"] == "2025-03-01T12:00:00Z"  # metav1.Time: whole seconds

    bumped = core.patch_namespaced_event(
        created.metadata.name, NS, {"count": 2}, _content_type=MERGE_PATCH
    )
    assert bumped.count == 2
    found = core.list_namespaced_event(NS, field_selector="involvedObject.name=reviews")
    assert [e.count for e in found.items] == [2]

    events_v1 = client.EventsV1Api(api)
    modern = events_v1.create_namespaced_event(
        NS,
        client.EventsV1Event(
            metadata=client.V1ObjectMeta(name="reviews.rollback", namespace=NS),
            event_time=stamp,
            reason="rollback.started",
            action="Rollback",
            note="helm rollback reviews 3",
            type="Warning",
            reporting_controller="canary.dev/controller",
            reporting_instance="canary-0",
            regarding=client.V1ObjectReference(kind="VirtualService", name="reviews", namespace=NS),
        ),
    )
    assert modern.event_time == stamp
    assert (
        kubeapi.requests.last(method="POST").path
        == f"/apis/events.k8s.io/v1/namespaces/{NS}/events"
    )
    raw = kubeapi.get_object("events.k8s.io", "v1", "events", NS, "reviews.rollback")
    assert raw["eventTime"] == "2025-03-01T12:00:00.123456Z"


# --- faults --------------------------------------------------------------------------------------


def test_injected_errors_hangs_and_dropped_connections(
    kubeapi: KubeApiServer, seeded: dict[str, Any]
) -> None:
    custom = client.CustomObjectsApi(kubeapi.client(retries=False))

    fault = kubeapi.fail(503, times=1, verb="get")
    with pytest.raises(ApiException) as caught:
        custom.get_namespaced_custom_object(ISTIO, "v1", NS, VS, "reviews")
    assert caught.value.status == 503
    assert body_of(caught.value)["reason"] == "ServiceUnavailable"
    assert custom.get_namespaced_custom_object(ISTIO, "v1", NS, VS, "reviews") == seeded
    assert fault.hits == 1

    kubeapi.fail(500, times=None, verb="patch")
    for _ in range(2):
        with pytest.raises(ApiException) as internal:
            custom.patch_namespaced_custom_object(ISTIO, "v1", NS, VS, "reviews", {"spec": {}})
        assert body_of(internal.value)["reason"] == "InternalError"
    kubeapi.clear_faults()

    kubeapi.hang(0.5, verb="get")
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        custom.get_namespaced_custom_object(ISTIO, "v1", NS, VS, "reviews", _request_timeout=0.1)

    kubeapi.drop(verb="list")
    with pytest.raises(urllib3.exceptions.ProtocolError):
        custom.list_namespaced_custom_object(ISTIO, "v1", NS, VS)
    assert [r.status for r in kubeapi.requests.filter(verb="list")] == [0]


def test_default_client_retries_a_dropped_get(
    kubeapi: KubeApiServer, custom: client.CustomObjectsApi, seeded: dict[str, Any]
) -> None:
    """urllib3's default Retry(3) resends idempotent requests on a dropped connection."""
    kubeapi.drop(verb="get")
    assert custom.get_namespaced_custom_object(ISTIO, "v1", NS, VS, "reviews") == seeded
    assert [r.status for r in kubeapi.requests.filter(verb="get")] == [0, 200]


# --- direct access -------------------------------------------------------------------------------


def test_direct_edit_bumps_resource_version_and_notifies(
    kubeapi: KubeApiServer, seeded: dict[str, Any]
) -> None:
    rv = kubeapi.resource_version

    def reset(vs: dict[str, Any]) -> None:
        vs["spec"]["http"][1]["route"][0]["weight"] = 100

    unchanged = kubeapi.edit(ISTIO, "v1", VS, NS, "reviews", reset)  # already 100: a no-op
    assert unchanged == seeded
    assert kubeapi.resource_version == rv

    edited = kubeapi.edit(ISTIO, "v1beta1", VS, NS, "reviews", {"spec": {"hosts": ["r"]}})
    assert edited["apiVersion"] == f"{ISTIO}/v1beta1"
    assert edited["metadata"]["resourceVersion"] == str(rv + 1)
    assert edited["metadata"]["generation"] == 2
    assert kubeapi.objects(ISTIO, VS)[0]["spec"]["hosts"] == ["r"]
    assert kubeapi.requests.all() == []  # no HTTP involved
    with pytest.raises(KeyError):
        kubeapi.edit(ISTIO, "v1", VS, NS, "ratings", {"spec": {}})
    assert kubeapi.delete_object(ISTIO, "v1", VS, NS, "reviews")
    assert kubeapi.get_object(ISTIO, "v1", VS, NS, "reviews") is None


@pytest.fixture
def two_servers() -> Iterator[tuple[KubeApiServer, KubeApiServer]]:
    with KubeApiServer() as a, KubeApiServer() as b:
        yield a, b


def test_servers_are_independent_and_stop_fast(
    two_servers: tuple[KubeApiServer, KubeApiServer],
) -> None:
    a, b = two_servers
    assert a.port != b.port
    a.put_object(reviews_vs())
    assert b.objects(ISTIO, VS) == []
    start = time.monotonic()
    a.stop()
    assert time.monotonic() - start < 1.0
