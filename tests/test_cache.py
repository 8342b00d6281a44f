"""The watch-fed cache the ticks read (canary/adapters/cache.py) through the real ``kubernetes``
client against the API server double: answers equal to the API server's, no request once
listed, never an answer it cannot vouch for (not listed, watch failing, after a conflict),
never older than our own write.

Each wait polls for its condition with a deadline; "no request" is shown on the double's
request log between two points.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from canary.adapters.cache import (
    DEPLOYMENTS,
    SECRETS,
    VIRTUAL_SERVICES,
    CachedHistory,
    CachedRouter,
    CachedWorkloads,
    ClusterCache,
)
from canary.adapters.helmstore import SecretHistory
from canary.adapters.istio import IstioRouter
from canary.adapters.kube import KubeWorkloads
from canary.adapters.watch import Watcher, interests_of
from canary.core.errors import ConfigError, ConflictError, NotFoundError
from canary.core.model import STATE_ANNOTATION, Phase, Weights
from canary.core.plan import ReleaseRef
from tests.support.kubeapi import KubeApiServer
from tests.test_helmstore import NoRollback, helm_secret
from tests.test_kube_adapters import NS, plan, seed, set_image, the_vs

PLAN = plan()
REL = ReleaseRef(name="reviews", namespace=NS)
FAST = {"backoff": (0.05, 0.2), "resync_interval": 60.0}


def wait_until(condition: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def helm_history(kubeapi: KubeApiServer, *revisions: tuple[int, str, str]) -> None:
    for number, status, description in revisions:
        kubeapi.put_object(helm_secret("reviews", number, status, description))


class Cached:
    """The three cached ports over one cache, and the watcher feeding it."""

    def __init__(self, kubeapi: KubeApiServer, **watch: Any) -> None:
        api = kubeapi.client()
        self.kubeapi = kubeapi
        self.cache = ClusterCache()
        self.router = CachedRouter(api, self.cache)
        self.workloads = CachedWorkloads(api, self.cache)
        self.history = CachedHistory(api, NoRollback(), self.cache)
        self.calls: list[tuple[set[str], str, Any]] = []
        self.watcher = Watcher(
            kubeapi.client(),
            self._changed,
            interests_of([PLAN]),
            cache=self.cache,
            **(FAST | watch),
        )

    def _changed(self, keys: set[str], reason: str) -> None:
        # what a tick triggered by this change would read
        self.calls.append((keys, reason, self.workloads.status(NS, "reviews-v3")))

    def start(self) -> None:
        self.watcher.start()
        for kind in (DEPLOYMENTS, VIRTUAL_SERVICES, SECRETS):
            wait_until(lambda k=kind: self.cache.synced(k, NS))

    def _reads(self) -> list[Any]:
        """Resource requests other than the watches' own (discovery is not a read either)."""
        return [r for r in self.kubeapi.requests.all() if r.resource and r.verb != "watch"]

    def reads(self) -> int:
        return len(self._reads())

    def reads_since(self, count: int) -> list[tuple[str, str]]:
        return [(r.verb, r.resource) for r in self._reads()[count:]]


@pytest.fixture
def cached(kubeapi: KubeApiServer) -> Iterator[Cached]:
    seed(kubeapi)
    helm_history(
        kubeapi,
        (1, "superseded", "Install complete"),
        (2, "superseded", "Upgrade complete"),
        (3, "deployed", "Upgrade complete"),
    )
    c = Cached(kubeapi)
    try:
        yield c
    finally:
        c.watcher.stop()


def test_once_listed_the_reads_equal_the_api_servers_and_send_no_request(
    cached: Cached,
) -> None:
    api = cached.kubeapi.client()
    direct_router, direct_workloads = IstioRouter(api), KubeWorkloads(api)
    direct_history = SecretHistory(api, NoRollback())
    cached.start()
    before = cached.reads()
    for _ in range(3):
        view = cached.router.read(PLAN)
        stable = cached.workloads.status(NS, "reviews-v1")
        canary = cached.workloads.status(NS, "reviews-v3")
        missing = cached.workloads.status(NS, "reviews-v9")
        history = cached.history.history(REL)
    assert cached.reads() == before, cached.kubeapi.requests.summary()[-5:]
    assert cached.cache.stats.hits >= 15
    assert view == direct_router.read(PLAN)
    assert view.weights == Weights(100, 0)
    assert stable == direct_workloads.status(NS, "reviews-v1") and stable.available
    assert canary == direct_workloads.status(NS, "reviews-v3")
    assert missing == direct_workloads.status(NS, "reviews-v9") and not missing.exists
    assert history == direct_history.history(REL)
    assert [r.description for r in history.revisions] == ["", "", "Upgrade complete"]


def test_before_the_first_list_every_read_goes_to_the_api_server(cached: Cached) -> None:
    # the watcher is not started: nothing is listed, nothing may be answered from memory
    before = cached.reads()
    assert cached.router.read(PLAN).weights == Weights(100, 0)
    assert cached.workloads.status(NS, "reviews-v1").available
    assert cached.history.history(REL).deployed is not None
    assert cached.reads_since(before) == [
        ("get", "virtualservices"),
        ("get", "deployments"),
        ("list", "secrets"),
    ]
    assert cached.cache.stats.hits == 0


class SlowCache(ClusterCache):
    """A cache that takes its time to take an event in: were the tick told before the cache
    had the change, it would read the old object."""

    def event(self, kind: str, etype: str, obj: Any) -> None:
        time.sleep(0.3)
        super().event(kind, etype, obj)


def test_a_change_is_in_the_cache_before_the_tick_it_triggers_reads_it(
    kubeapi: KubeApiServer,
) -> None:
    seed(kubeapi)
    cached = Cached(kubeapi, debounce=0.0)  # the tick is called back at once
    cached.cache = SlowCache()
    cached.workloads.cache = cached.cache
    cached.watcher.cache = cached.cache
    cached.start()
    old = cached.workloads.status(NS, "reviews-v3").template_hash
    set_image(cached.kubeapi, "reviews-v3", "docker.io/istio/examples-bookinfo-reviews-v3:9")
    wait_until(lambda: any("reviews-v3" in reason for _, reason, _ in cached.calls))
    seen = next(status for _, reason, status in cached.calls if "reviews-v3" in reason)
    # the first event (the new template, not rolled out yet) is what the first tick read
    assert seen.template_hash != old
    assert (
        seen.template_hash == KubeWorkloads(kubeapi.client()).status(NS, "reviews-v3").template_hash
    )
    assert not seen.available
    cached.watcher.stop()


def test_a_failing_watch_sends_reads_to_the_api_server_until_it_is_current_again(
    kubeapi: KubeApiServer,
) -> None:
    seed(kubeapi)
    cached = Cached(kubeapi, watch_timeout=1)  # each watch request ends after 1 s
    cached.start()
    # the next Deployment watch cannot be opened, for a while: memory may be stale
    refused = cached.kubeapi.fail(500, times=None, verb="watch", resource="deployments")
    wait_until(lambda: not cached.cache.synced(DEPLOYMENTS, NS))
    set_image(cached.kubeapi, "reviews-v3", "docker.io/istio/examples-bookinfo-reviews-v3:8")
    before = cached.reads()
    status = cached.workloads.status(NS, "reviews-v3")
    assert cached.reads_since(before) == [("get", "deployments")]
    assert status == KubeWorkloads(cached.kubeapi.client()).status(NS, "reviews-v3")
    cached.kubeapi.clear_faults()
    assert refused.hits >= 1
    wait_until(lambda: cached.cache.synced(DEPLOYMENTS, NS))
    wait_until(lambda: cached.workloads.status(NS, "reviews-v3") == status)
    cached.watcher.stop()


def test_our_own_write_is_never_replaced_by_an_older_object(cached: Cached) -> None:
    cached.start()
    view = cached.router.read(PLAN)
    stale_event = copy.deepcopy(view.obj)
    written = cached.router.write(
        PLAN, view, Weights(90, 10), '{"plan": "bookinfo/reviews"}', False
    )
    assert int(written.version) > int(view.version)
    # read at once, before the watch can have delivered the event of the write
    assert cached.router.read(PLAN).version == written.version
    assert cached.router.read(PLAN).weights == Weights(90, 10)
    # a late event carrying the object as it was before the write changes nothing
    assert stale_event is not None
    cached.cache.event(VIRTUAL_SERVICES, "MODIFIED", stale_event)
    assert cached.router.read(PLAN).version == written.version


def test_a_conflict_makes_the_next_read_a_get_of_the_fresh_object(cached: Cached) -> None:
    cached.start()
    view = cached.router.read(PLAN)
    # someone else writes, and the watch has not told us yet (its event is held back)
    cached.watcher.stop()

    def theirs(vs: dict[str, Any]) -> None:
        vs["metadata"].setdefault("annotations", {})["team"] = "theirs"

    cached.kubeapi.edit("networking.istio.io", "v1", "virtualservices", NS, "reviews", theirs)
    with pytest.raises(ConflictError):
        cached.router.write(PLAN, view, Weights(90, 10), '{"plan": "bookinfo/reviews"}', False)
    before = cached.reads()
    fresh = cached.router.read(PLAN)
    assert cached.reads_since(before) == [("get", "virtualservices")]
    assert fresh.version == the_vs(cached.kubeapi)["metadata"]["resourceVersion"]
    assert fresh.obj is not None and fresh.obj["metadata"]["annotations"]["team"] == "theirs"
    assert cached.cache.stats.invalidations == 1
    # and the fresh object is what memory holds from then on
    before = cached.reads()
    assert cached.router.read(PLAN).version == fresh.version
    assert cached.reads() == before


def test_deleted_objects_are_gone_from_the_cache(cached: Cached) -> None:
    cached.start()
    cached.kubeapi.delete_object("apps", "v1", "deployments", NS, "reviews-v3")
    cached.kubeapi.delete_object("networking.istio.io", "v1", "virtualservices", NS, "reviews")
    wait_until(lambda: not cached.workloads.status(NS, "reviews-v3").exists)
    wait_until(lambda: cached.cache.size()[VIRTUAL_SERVICES] == 0)
    with pytest.raises(NotFoundError):
        cached.router.read(PLAN)


def test_only_the_revisions_decide_reads_are_decoded_and_the_history_follows_helm(
    cached: Cached,
) -> None:
    cached.start()
    assert cached.cache.stats.decoded == 1  # revision 3: newest and deployed
    direct = SecretHistory(cached.kubeapi.client(), NoRollback())
    # helm rollback to 2: revision 4 deployed "Rollback to 2", revision 3 superseded
    cached.kubeapi.edit(
        "", "v1", "secrets", NS, "sh.helm.release.v1.reviews.v3",
        lambda s: s["metadata"]["labels"].update(status="superseded"),
    )  # fmt: skip
    helm_history(cached.kubeapi, (4, "deployed", "Rollback to 2"))
    wait_until(lambda: len(cached.history.history(REL).revisions) == 4)
    assert cached.history.history(REL) == direct.history(REL)
    assert cached.history.history(REL).deployed.description == "Rollback to 2"  # type: ignore[union-attr]
    # the newest, pending-upgrade, arrives too: both it and the deployed one are described
    helm_history(cached.kubeapi, (5, "pending-upgrade", "Preparing upgrade"))
    wait_until(lambda: len(cached.history.history(REL).revisions) == 5)
    assert cached.history.history(REL) == direct.history(REL)


def test_an_undecodable_release_secret_is_an_unreadable_history_as_without_the_cache(
    cached: Cached,
) -> None:
    cached.start()
    broken = helm_secret("reviews", 4, "deployed", "Upgrade complete")
    broken["data"]["release"] = "bm90IGd6aXA="  # base64 of "not gzip", not helm's encoding
    cached.kubeapi.put_object(broken)
    wait_until(lambda: cached.cache.size()[SECRETS] == 4)
    with pytest.raises(ConfigError, match=r"sh\.helm\.release\.v1\.reviews\.v4 cannot be decoded"):
        cached.history.history(REL)
    with pytest.raises(ConfigError, match="cannot be decoded"):
        SecretHistory(cached.kubeapi.client(), NoRollback()).history(REL)


def test_a_state_written_by_us_is_read_back_from_memory(cached: Cached) -> None:
    cached.start()
    view = cached.router.read(PLAN)
    state = '{"plan": "bookinfo/reviews", "phase": "Idle"}'
    cached.router.write(PLAN, view, None, state, False)
    before = cached.reads()
    assert cached.router.read(PLAN).state_raw == state
    assert cached.reads() == before
    assert the_vs(cached.kubeapi)["metadata"]["annotations"][STATE_ANNOTATION] == state


# --- the controller over the cache: a race whose fresh object changes the decision ---------


class RecordingReleases:
    """The fixed history of the rig, and every rollback asked for."""

    def __init__(self, history: Any) -> None:
        self.info = history
        self.rollbacks: list[int] = []

    def history(self, release: ReleaseRef) -> Any:
        return self.info

    def rollback(self, release: ReleaseRef, revision: int, timeout: Any) -> None:
        self.rollbacks.append(revision)


def prime(cache: ClusterCache, kubeapi: KubeApiServer) -> None:
    """The cache as a list would fill it, with no watch after it: it learns only what we
    write ourselves, so someone else's write is unknown to it until it reads again."""
    cache.listed(
        VIRTUAL_SERVICES, NS, kubeapi.objects("networking.istio.io", "virtualservices", NS)
    )
    cache.listed(DEPLOYMENTS, NS, kubeapi.objects("apps", "deployments", NS))


def test_a_conflict_decides_again_on_the_fresh_object_and_an_abort_in_between_wins(
    kubeapi: KubeApiServer,
) -> None:
    from tests.test_kube_adapters import progressing_rig

    seed(kubeapi)
    rig = progressing_rig(kubeapi)
    cache = ClusterCache()
    prime(cache, kubeapi)
    router = CachedRouter(kubeapi.client(), cache)
    releases = RecordingReleases(rig.releases.info)
    rig.ctrl.ports.router = router
    rig.ctrl.ports.workloads = CachedWorkloads(kubeapi.client(), cache)
    rig.ctrl.ports.releases = releases
    rollout = rig.state().rollout_id
    real_write = router.write
    raced: list[Weights] = []

    def racing(plan: Any, view: Any, weights: Weights | None, *rest: Any) -> Any:
        if weights == Weights(50, 50) and not raced:
            # `canary abort` lands between our read and our write of the next step
            raced.append(weights)
            abort = json.dumps({"cmd": "abort", "rolloutId": rollout, "by": "oncall"})
            kubeapi.edit(
                "networking.istio.io", "v1", "virtualservices", NS, "reviews",
                {"metadata": {"annotations": {"canary.dev/command": abort}}},
            )  # fmt: skip
        return real_write(plan, view, weights, *rest)

    router.write = racing  # type: ignore[method-assign]
    rig.names.clear()
    for _ in range(40):
        rig.tick(timedelta(seconds=10))
        if raced:
            break
    assert raced, "the step to 50 % was never decided"
    # the same tick: the conflict, a GET of the fresh object, and a decision on it
    assert rig.state().phase is Phase.ROLLING_BACK
    assert releases.rollbacks == [rig.state().base_revision]
    route = the_vs(kubeapi)["spec"]["http"][1]["route"]
    assert [d["weight"] for d in route] == [100, 0]
    assert "command.accepted" in rig.names and "step.started" not in rig.names
    patches = kubeapi.requests.filter(method="PATCH", resource="virtualservices")
    applied = [p for p in patches if p.status == 200]
    assert not any(
        op.get("value") == 50 for p in applied for op in p.body if op["path"].endswith("/weight")
    ), "the canary got 50 % after it was aborted"
    assert cache.stats.invalidations == 1
    assert "canary.dev/command" not in the_vs(kubeapi)["metadata"]["annotations"]
