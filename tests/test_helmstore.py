"""Helm's release history from its storage Secrets over the kube API (one list, no helm)."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

import pytest

from canary.adapters.helmstore import SecretHistory, decode_release, encode_release
from canary.core.errors import ConfigError, ForbiddenError, NotFoundError
from canary.core.model import RevisionStatus
from canary.core.plan import ReleaseRef
from tests.support.kubeapi import KubeApiServer

REL = ReleaseRef(name="reviews", namespace="bookinfo")


def helm_secret(name: str, version: int, status: str, description: str) -> dict[str, Any]:
    """A release Secret as helm (storage driver "secret") writes it."""
    release = {
        "name": name,
        "version": version,
        "namespace": "bookinfo",
        "info": {"status": status, "description": description},
        "chart": {"metadata": {"name": "reviews", "version": "0.1.0"}},
    }
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "helm.sh/release.v1",
        "metadata": {
            "name": f"sh.helm.release.v1.{name}.v{version}",
            "namespace": "bookinfo",
            "labels": {"owner": "helm", "name": name, "version": str(version), "status": status},
        },
        "data": {"release": encode_release(release)},
    }


class NoRollback:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def history(self, release: ReleaseRef) -> Any:
        raise AssertionError("history must come from the Secrets")

    def rollback(self, release: ReleaseRef, revision: int, timeout: timedelta) -> None:
        self.calls.append((release.name, revision))


@pytest.fixture
def store(kubeapi: KubeApiServer) -> tuple[SecretHistory, NoRollback]:
    for version, status, description in [
        (1, "superseded", "Install complete"),
        (2, "superseded", "Upgrade complete"),
        (3, "deployed", "Rollback to 1"),
    ]:
        kubeapi.put_object(helm_secret("reviews", version, status, description))
    kubeapi.put_object(helm_secret("ratings", 1, "deployed", "Install complete"))
    delegate = NoRollback()
    return SecretHistory(kubeapi.client(), delegate), delegate


def test_history_comes_from_one_label_selected_list(
    kubeapi: KubeApiServer, store: tuple[SecretHistory, NoRollback]
) -> None:
    history, _ = store
    info = history.history(REL)
    # numbers and statuses from the labels; descriptions decoded for the deployed (and
    # newest) revision only, the one decide reads
    assert [(r.number, r.status, r.description) for r in info.revisions] == [
        (1, RevisionStatus.SUPERSEDED, ""),
        (2, RevisionStatus.SUPERSEDED, ""),
        (3, RevisionStatus.DEPLOYED, "Rollback to 1"),
    ]
    (request,) = kubeapi.requests.filter(resource="secrets")
    assert request.method == "GET" and request.path == "/api/v1/namespaces/bookinfo/secrets"
    assert request.query["labelSelector"] == "owner=helm,name=reviews"


def test_a_pending_revision_is_seen(
    kubeapi: KubeApiServer, store: tuple[SecretHistory, NoRollback]
) -> None:
    history, _ = store
    kubeapi.put_object(helm_secret("reviews", 4, "pending-rollback", "Rollback to 2"))
    info = history.history(REL)
    assert info.pending and info.latest is not None and info.latest.number == 4
    assert info.latest.description == "Rollback to 2"
    assert info.deployed is not None and info.deployed.description == "Rollback to 1"


def test_an_unknown_release_is_not_found(store: tuple[SecretHistory, NoRollback]) -> None:
    history, _ = store
    with pytest.raises(NotFoundError, match="bookinfo/details"):
        history.history(ReleaseRef(name="details", namespace="bookinfo"))


def test_rollback_goes_to_the_helm_binary(store: tuple[SecretHistory, NoRollback]) -> None:
    history, delegate = store
    history.rollback(REL, 2, timedelta(minutes=5))
    assert delegate.calls == [("reviews", 2)]


def test_release_encoding_round_trips() -> None:
    doc = {"info": {"description": "Rollback to 7"}}
    assert decode_release(encode_release(doc)) == doc


def test_a_secret_that_cannot_be_decoded_makes_the_history_unreadable(
    kubeapi: KubeApiServer, store: tuple[SecretHistory, NoRollback]
) -> None:
    """Never a guess: a garbled revision could be our own rollback read as "moved on"."""
    broken = helm_secret("reviews", 3, "deployed", "Rollback to 1")
    broken["data"]["release"] = base64.b64encode(b"not gzip, not json").decode()
    kubeapi.put_object(broken)
    history, _ = store
    with pytest.raises(ConfigError, match=r"sh\.helm\.release\.v1\.reviews\.v3 cannot be decoded"):
        history.history(REL)


def test_a_forbidden_list_names_the_verb_and_the_resource(
    kubeapi: KubeApiServer, store: tuple[SecretHistory, NoRollback]
) -> None:
    kubeapi.deny("list", "", "secrets", namespace="bookinfo")
    history, _ = store
    with pytest.raises(ForbiddenError, match="list") as caught:
        history.history(REL)
    assert "secrets" in str(caught.value)
