"""The Watcher through the real ``kubernetes`` client against the API server double:
a new canary or a weight drift is noticed within a second, resync as a safety net.

Every wait polls for its condition with a deadline. "Nothing happened" is shown with a marker:
events of one stream arrive in order, so once the callback for a later, related change has come,
an earlier unrelated event has been seen and dropped.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog.testing
from kubernetes import client

from canary.adapters.istio import IstioRouter
from canary.adapters.watch import Interest, Watcher, interests_of
from canary.core import events as ev
from canary.core.model import Weights
from tests.support.bookinfo import available
from tests.support.kubeapi import KubeApiServer
from tests.test_kube_adapters import NS, plan, seed, set_image

PLAN = plan().key  # bookinfo/reviews
FAST = {"backoff": (0.05, 0.2), "resync_interval": 60.0}


class Calls:
    """The callback: records (when, plan keys, reason), thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.items: list[tuple[float, frozenset[str], str]] = []

    def __call__(self, keys: set[str], reason: str) -> None:
        with self._lock:
            self.items.append((time.monotonic(), frozenset(keys), reason))

    def all(self) -> list[tuple[float, frozenset[str], str]]:
        with self._lock:
            return list(self.items)

    def changes(self) -> list[tuple[float, frozenset[str], str]]:
        return [c for c in self.all() if c[2] != "resync"]

    def wait_for(
        self, match: Callable[[frozenset[str], str], bool], timeout: float = 1.0, after: int = 0
    ) -> tuple[float, frozenset[str], str]:
        """The first call (from index ``after``) matching, waiting up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            for item in self.all()[after:]:
                if match(item[1], item[2]):
                    return item
            if time.monotonic() >= deadline:
                raise AssertionError(f"no matching callback within {timeout}s: {self.all()}")
            time.sleep(0.005)


def wait_until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


def about(name: str) -> Callable[[frozenset[str], str], bool]:
    return lambda keys, reason: keys == {PLAN} and name in reason


@pytest.fixture
def cluster(kubeapi: KubeApiServer) -> KubeApiServer:
    seed(kubeapi)
    return kubeapi


@pytest.fixture
def watching(cluster: KubeApiServer) -> Iterator[Callable[..., tuple[Watcher, Calls]]]:
    """Factory: a started Watcher on the bookinfo reviews plan (stopped afterwards)."""
    started: list[Watcher] = []

    def start(**options: Any) -> tuple[Watcher, Calls]:
        calls = Calls()
        interests = options.pop("interests", interests_of([plan()]))
        watcher = Watcher(cluster.client(), calls, interests, **{**FAST, **options})
        started.append(watcher)
        watcher.start()
        # every stream listed (events after the list are delivered, from its resourceVersion)
        wait_until(lambda: watcher.stats.watches >= len(watcher.scopes))
        return watcher, calls

    yield start
    for watcher in started:
        watcher.stop()


def set_weights(kubeapi: KubeApiServer, stable: int, canary: int) -> None:
    """Someone else changes the default route's weights (the jason route is left alone)."""

    def change(vs: dict[str, Any]) -> None:
        route = next(r for r in vs["spec"]["http"] if r.get("name") == "default")
        route["route"][0]["weight"], route["route"][1]["weight"] = stable, canary

    kubeapi.edit("networking.istio.io", "v1", "virtualservices", NS, "reviews", change)


def add_deployment(kubeapi: KubeApiServer, name: str, namespace: str = NS) -> None:
    dep = copy.deepcopy(kubeapi.get_object("apps", "v1", "deployments", NS, "reviews-v1"))
    assert dep is not None
    dep["metadata"] = {"name": name, "namespace": namespace, "labels": {"app": name}}
    dep["spec"]["selector"] = {"matchLabels": {"app": name}}
    dep["spec"]["template"]["metadata"]["labels"] = {"app": name}
    dep.pop("status", None)
    kubeapi.put_object(dep)


# --- noticing changes ----------------------------------------------------------------------------


def test_a_canary_image_change_calls_back_within_a_second(
    cluster: KubeApiServer, watching: Callable[..., tuple[Watcher, Calls]]
) -> None:
    _, calls = watching()
    t0 = time.monotonic()
    set_image(cluster, "reviews-v3", "docker.io/istio/examples-bookinfo-reviews-v3:1.21.0")
    when, keys, reason = calls.wait_for(about("reviews-v3"))
    assert when - t0 < 1.0
    assert keys == {PLAN}
    # set_image writes the spec, then the status: two events, one debounced callback
    assert reason == f"deployment {NS}/reviews-v3 modified"


def test_a_status_only_update_still_calls_back(
    cluster: KubeApiServer, watching: Callable[..., tuple[Watcher, Calls]]
) -> None:
    """Availability lives in the status: a status-only update is not filtered out."""
    _, calls = watching()

    def degrade(dep: dict[str, Any]) -> None:
        dep["status"]["availableReplicas"] = 0

    cluster.edit("apps", "v1", "deployments", NS, "reviews-v3", degrade)
    calls.wait_for(about("reviews-v3"))


def test_a_weight_change_on_the_virtual_service_calls_back_within_a_second(
    cluster: KubeApiServer, watching: Callable[..., tuple[Watcher, Calls]]
) -> None:
    _, calls = watching()
    t0 = time.monotonic()
    set_weights(cluster, 100, 0)
    set_weights(cluster, 50, 50)
    when, _, reason = calls.wait_for(about("virtualservice"))
    assert when - t0 < 1.0
    assert reason == f"virtualservice {NS}/reviews modified"
    assert len(calls.changes()) == 1  # two writes within the debounce window: one callback


def test_unrelated_deployments_do_not_call_back(
    cluster: KubeApiServer, watching: Callable[..., tuple[Watcher, Calls]]
) -> None:
    _, calls = watching()
    add_deployment(cluster, "ratings-v1")
    cluster.edit("apps", "v1", "deployments", NS, "ratings-v1", available)
    set_image(cluster, "reviews-v1", "marker:1")  # same stream, after the unrelated events
    calls.wait_for(about("reviews-v1"))
    assert all("ratings" not in reason for _, _, reason in calls.all())
    assert [keys for _, keys, _ in calls.changes()] == [{PLAN}]


def test_each_plan_hears_only_about_its_own_objects(
    cluster: KubeApiServer, watching: Callable[..., tuple[Watcher, Calls]]
) -> None:
    add_deployment(cluster, "ratings-v1")
    add_deployment(cluster, "ratings-v2")
    ratings = Interest(
        plan=f"{NS}/ratings",
        namespace=NS,
        deployments=frozenset({"ratings-v1", "ratings-v2"}),
        virtual_services=frozenset({"ratings"}),
    )
    _, calls = watching(interests=[*interests_of([plan()]), ratings])
    cluster.edit("apps", "v1", "deployments", NS, "ratings-v2", available)
    calls.wait_for(lambda keys, reason: keys == {f"{NS}/ratings"} and "ratings-v2" in reason)
    set_image(cluster, "reviews-v3", "marker:2")
    calls.wait_for(about("reviews-v3"))
    assert sorted(sorted(keys) for _, keys, _ in calls.changes()) == [[f"{NS}/ratings"], [PLAN]]


def test_own_writes_noted_are_skipped(
    cluster: KubeApiServer, watching: Callable[..., tuple[Watcher, Calls]]
) -> None:
    watcher, calls = watching()
    router = IstioRouter(cluster.client())
    view = router.read(plan())
    written = router.write(plan(), view, Weights(90, 10), '{"v": 1}', drop_command=False)
    watcher.note_own_write(NS, "reviews", written.version)
    set_image(cluster, "reviews-v1", "marker:3")  # the VirtualService event came before this one
    calls.wait_for(about("reviews-v1"))
    wait_until(lambda: watcher.stats.own_writes_skipped == 1)
    assert all("virtualservice" not in reason for _, _, reason in calls.all())
    # someone else's write right after ours is still reported
    set_weights(cluster, 100, 0)
    calls.wait_for(about("virtualservice"))


def test_plans_added_and_removed_later_start_and_end_their_watches(
    cluster: KubeApiServer, watching: Callable[..., tuple[Watcher, Calls]]
) -> None:
    add_deployment(cluster, "x", namespace="other")
    other = Interest(plan="other/x", namespace="other", deployments=frozenset({"x"}))
    watcher, calls = watching(interests=[other])
    watcher.set_interests([other, *interests_of([plan()])])
    wait_until(lambda: len(cluster.requests.filter(verb="watch", namespace=NS)) == 3)
    set_image(cluster, "reviews-v3", "marker:4")
    calls.wait_for(about("reviews-v3"))
    watcher.set_interests([other])

    def bookinfo_threads() -> list[str]:
        return [t.name for t in threading.enumerate() if t.name.endswith(f":{NS}")]

    wait_until(lambda: bookinfo_threads() == [])
    set_image(cluster, "reviews-v3", "marker:5")
    cluster.edit("apps", "v1", "deployments", "other", "x", available)  # a marker
    calls.wait_for(lambda keys, reason: keys == {"other/x"})
    assert [sorted(keys) for _, keys, _ in calls.changes()] == [[PLAN], ["other/x"]]


def test_an_older_istio_version_is_discovered(kubeapi: KubeApiServer) -> None:
    kubeapi.serve("networking.istio.io", "v1beta1")
    seed(kubeapi)
    calls = Calls()
    with Watcher(kubeapi.client(), calls, interests_of([plan()]), **FAST) as watcher:
        wait_until(lambda: watcher.stats.watches >= 2)
        assert watcher.virtual_service_version() == "v1beta1"
        kubeapi.edit(
            "networking.istio.io",
            "v1beta1",
            "virtualservices",
            NS,
            "reviews",
            {"spec": {"hosts": ["reviews", "reviews.bookinfo.svc.cluster.local"]}},
        )
        calls.wait_for(about("virtualservice"))
    watch = kubeapi.requests.filter(verb="watch", resource="virtualservices")
    assert [r.version for r in watch] == ["v1beta1"]


# --- failures: 410 Expired, server errors, RBAC ---------------------------------------------------


def test_an_expired_watch_relists_reports_what_it_missed_and_keeps_working(
    cluster: KubeApiServer, watching: Callable[..., tuple[Watcher, Calls]]
) -> None:
    # The Deployments watch is held back by the server while the canary changes and history
    # is compacted: it then starts from a resourceVersion that is gone → 410 Expired.
    hold = cluster.hang(1.0, verb="watch", resource="deployments")
    watcher, calls = watching()
    wait_until(lambda: hold.hits == 1)
    set_image(cluster, "reviews-v3", "missed:1")
    cluster.compact()
    _, _, reason = calls.wait_for(about("reviews-v3"), timeout=2.0)
    assert reason == f"deployment {NS}/reviews-v3 changed (re-list)"
    # (the VirtualServices watch may have started after the compaction too: it re-lists as well)
    assert watcher.stats.expired == watcher.stats.relists >= 1
    lists = cluster.requests.filter(verb="list", resource="deployments")
    assert len(lists) == 2  # the first list and the re-list
    # and the watch goes on from the re-list's resourceVersion
    seen = len(calls.all())
    set_image(cluster, "reviews-v3", "after:1")
    _, _, reason = calls.wait_for(about("reviews-v3"), after=seen)
    assert reason == f"deployment {NS}/reviews-v3 modified"


def test_server_errors_are_retried_and_the_watcher_recovers(cluster: KubeApiServer) -> None:
    failing_list = cluster.fail(500, times=2, verb="list", resource="deployments")
    failing_watch = cluster.fail(503, times=2, verb="watch", resource="virtualservices")
    calls = Calls()
    with (
        structlog.testing.capture_logs() as logged,
        Watcher(cluster.client(), calls, interests_of([plan()]), **FAST) as watcher,
    ):
        wait_until(lambda: failing_list.exhausted and failing_watch.exhausted)
        # both streams watching again: a watch of each kind answered 200
        for kind in ("deployments", "virtualservices"):
            wait_until(lambda k=kind: cluster.requests.filter(verb="watch", resource=k, status=200))
        set_image(cluster, "reviews-v3", "recovered:1")
        calls.wait_for(about("reviews-v3"))
        set_weights(cluster, 50, 50)
        calls.wait_for(about("virtualservice"))
        assert watcher.stats.errors == 4
    messages = [e["error"] for e in logged if e["event"] == ev.WATCH_RETRYING]
    assert any(
        "API server answered 500 to list deployments.apps in bookinfo" in m for m in messages
    )
    assert any("answered 503 to watch virtualservices.networking.istio.io" in m for m in messages)


def test_a_dropped_watch_connection_is_resumed(
    cluster: KubeApiServer, watching: Callable[..., tuple[Watcher, Calls]]
) -> None:
    dropped = cluster.drop(verb="watch", resource="deployments")
    watcher, calls = watching()
    wait_until(lambda: dropped.hits == 1)
    set_image(cluster, "reviews-v3", "resumed:1")
    calls.wait_for(about("reviews-v3"))
    assert watcher.stats.relists == 0  # resumed from its resourceVersion, no re-list needed


def test_forbidden_is_logged_with_verb_and_resource_and_retried(cluster: KubeApiServer) -> None:
    denial = cluster.deny("list", "apps", "deployments", namespace=NS)
    calls = Calls()
    with (
        structlog.testing.capture_logs() as logged,
        Watcher(cluster.client(), calls, interests_of([plan()]), **FAST) as watcher,
    ):
        wait_until(lambda: watcher.stats.errors >= 1)
        assert any(
            "cannot list deployments.apps in bookinfo" in e["error"]
            for e in logged
            if e["event"] == ev.WATCH_RETRYING
        )
        cluster.allow(denial)
        wait_until(lambda: cluster.requests.filter(verb="watch", resource="deployments"))
        set_image(cluster, "reviews-v3", "granted:1")
        calls.wait_for(about("reviews-v3"))


def test_a_failing_callback_does_not_stop_the_watcher(
    cluster: KubeApiServer, watching: Callable[..., tuple[Watcher, Calls]]
) -> None:
    calls = Calls()

    def flaky(keys: set[str], reason: str) -> None:
        calls(keys, reason)
        if len(calls.all()) == 1:
            raise RuntimeError("the controller had a bad moment")

    watcher, _ = watching()
    watcher.on_change = flaky
    set_image(cluster, "reviews-v3", "boom:1")
    calls.wait_for(about("reviews-v3"))
    set_weights(cluster, 50, 50)
    calls.wait_for(about("virtualservice"))
    assert watcher.stats.callback_errors == 1


# --- resync and stop -----------------------------------------------------------------------------


def test_resync_calls_back_for_every_plan_on_its_period(
    cluster: KubeApiServer, watching: Callable[..., tuple[Watcher, Calls]]
) -> None:
    other = Interest(plan="reviews2/reviews", namespace="reviews2")
    _, calls = watching(interests=[*interests_of([plan()]), other], resync_interval=0.2)
    first = calls.wait_for(lambda _, reason: reason == "resync")
    second = calls.wait_for(
        lambda _, reason: reason == "resync", after=calls.all().index(first) + 1
    )
    assert first[1] == second[1] == {PLAN, "reviews2/reviews"}
    assert 0.15 < second[0] - first[0] < 0.5


def test_stop_returns_promptly_with_watches_open(
    cluster: KubeApiServer, watching: Callable[..., tuple[Watcher, Calls]]
) -> None:
    watcher, _ = watching(watch_timeout=60)
    t0 = time.monotonic()
    watcher.stop()
    assert time.monotonic() - t0 < 1.0
    alive = [t.name for t in threading.enumerate() if t.name.startswith("canary-watch")]
    assert alive == []


def test_no_callback_after_stop(
    cluster: KubeApiServer, watching: Callable[..., tuple[Watcher, Calls]]
) -> None:
    watcher, calls = watching(debounce=0.3)
    set_image(cluster, "reviews-v3", "late:1")
    wait_until(lambda: watcher.stats.events >= 1)
    watcher.stop()
    assert calls.all() == []


def test_the_real_client_types_are_what_the_watcher_gets(cluster: KubeApiServer) -> None:
    """Guards the assumption the Watcher rests on: ``Watch(return_type="object")`` hands out
    the raw JSON (no model built) and a 410 arrives as ``ApiException(status=410)`` once
    ``timeout_seconds`` is given (the client's own single 410 retry is then off)."""
    from kubernetes import watch
    from kubernetes.client.exceptions import ApiException

    apps = client.AppsV1Api(cluster.client())
    w = watch.Watch(return_type="object")
    set_image(cluster, "reviews-v3", "raw:1")
    for event in w.stream(apps.list_namespaced_deployment, NS, timeout_seconds=5):
        assert type(event["object"]) is dict
        break
    cluster.compact()
    set_image(cluster, "reviews-v3", "raw:2")
    with pytest.raises(ApiException) as info:
        list(w.stream(apps.list_namespaced_deployment, NS, resource_version="1", timeout_seconds=1))
    assert info.value.status == 410
