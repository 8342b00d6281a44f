"""The simulator: Helm 3 semantics, optimistic concurrency, traffic integration, scenarios."""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from canary.core import routes
from canary.core.errors import ConfigError, ConflictError, HelmError
from canary.core.model import (
    COMMAND_ANNOTATION,
    STATE_ANNOTATION,
    Event,
    MetricsSample,
    RevisionStatus,
    RolloutState,
    Weights,
    rollback_description,
    state_from_json,
    state_to_json,
)
from canary.core.plan import (
    DEFAULT_METRICS,
    Destination,
    Metric,
    MetricType,
    Plan,
    ReleaseRef,
    VirtualServiceRef,
    WorkloadRefs,
)
from canary.core.ports import CheckRequest
from canary.plans.files import load_plan_files
from canary.sim import SCENARIOS, Behaviour, FakeClock, SimWorld, demo_plan, get_scenario
from canary.sim.chart import CANARY_IMAGE, STABLE_IMAGE, render, values_for_plan
from canary.sim.cluster import DEPLOYMENT, VIRTUAL_SERVICE
from canary.sim.merge import apply_merge_patch, create_merge_patch

START = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
ERROR_RATE, LATENCY_P99 = DEFAULT_METRICS
PLANS = Path(__file__).resolve().parents[1] / "config" / "plans"
RATINGS = load_plan_files([str(PLANS / "ratings.yaml")])[0]


# --- helpers -------------------------------------------------------------------------------


def container_image(w: SimWorld, workload: str) -> str:
    dep = w.cluster.get(DEPLOYMENT, w.plan.namespace, workload)
    assert dep is not None
    return str(dep["spec"]["template"]["spec"]["containers"][0]["image"])


def world(scenario: str = "good", plan: Plan | None = None) -> SimWorld:
    return SimWorld.create(plan or demo_plan(), get_scenario(scenario), START)


def write_weights(w: SimWorld, canary: int, *, phase_state: str = "") -> None:
    """What the controller does: weights + state in one conditional write."""
    view = w.router.read(w.plan)
    state = RolloutState(plan=w.plan.key, reason=phase_state, weights=Weights.canary_at(canary))
    w.router.write(w.plan, view, Weights.canary_at(canary), state_to_json(state), False)


def request(
    w: SimWorld,
    window: timedelta = MINUTE,
    metrics: tuple[Metric, ...] = DEFAULT_METRICS,
) -> CheckRequest:
    p = w.plan
    return CheckRequest(
        plan=p.key,
        rollout_id="abcdef0123-1",
        step=0,
        namespace=p.namespace,
        stable=p.workloads.stable,
        canary=p.workloads.canary,
        service=p.virtual_service.canary.host,
        window=window,
        metrics=metrics,
    )


def sample(
    w: SimWorld, window: timedelta = MINUTE, metrics: tuple[Metric, ...] = DEFAULT_METRICS
) -> MetricsSample:
    return w.metrics.sample([request(w, window, metrics)], w.clock.now())[w.plan.key]


def canary_hash(w: SimWorld) -> str:
    return w.workloads.status(w.plan.namespace, w.plan.workloads.canary).template_hash


def stable_hash(w: SimWorld) -> str:
    return w.workloads.status(w.plan.namespace, w.plan.workloads.stable).template_hash


def live_weights(w: SimWorld) -> Weights | None:
    return w.router.read(w.plan).weights


def started_canary(scenario: str = "good", plan: Plan | None = None) -> SimWorld:
    """A world whose canary was released and is available, traffic still all on stable."""
    w = world(scenario, plan)
    w.release_canary()
    w.advance(timedelta(seconds=30))
    return w


# --- clock and chart -----------------------------------------------------------------------


def test_fake_clock_moves_only_forward() -> None:
    clock = FakeClock(START)
    assert clock.now() == START and clock.now().tzinfo is not None
    assert clock.advance(timedelta(seconds=5)) == START + timedelta(seconds=5)
    with pytest.raises(ValueError):
        clock.advance(timedelta(seconds=-1))
    with pytest.raises(ValueError):
        FakeClock(datetime(2025, 1, 1))  # naive


def test_chart_renders_two_tracks_and_100_0_route() -> None:
    objects = render("reviews", "bookinfo", {})
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert kinds == {
        ("Service", "reviews"),
        ("Deployment", "reviews-v1"),
        ("Deployment", "reviews-v3"),
        ("DestinationRule", "reviews"),
        ("VirtualService", "reviews"),
    }
    assert all(o["metadata"]["namespace"] == "bookinfo" for o in objects)
    vs = next(o for o in objects if o["kind"] == "VirtualService")
    assert vs["apiVersion"] == "networking.istio.io/v1"
    assert routes.get_weights(vs, demo_plan().virtual_service) == Weights(100, 0)
    deps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    v1, v3 = deps["reviews-v1"], deps["reviews-v3"]
    assert v1["spec"]["template"]["metadata"]["labels"] == {"app": "reviews", "version": "v1"}
    image = v3["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == STABLE_IMAGE  # canary = stable at install
    dr = next(o for o in objects if o["kind"] == "DestinationRule")
    assert [s["name"] for s in dr["spec"]["subsets"]] == ["v1", "v3"]


def test_chart_follows_the_plan_route_by_name_and_index() -> None:
    base = demo_plan()
    for route in ("primary", 2):
        ref = VirtualServiceRef(
            name="reviews-vs",
            stable=base.virtual_service.stable,
            canary=base.virtual_service.canary,
            route=route,
        )
        plan = Plan(
            name="r",
            namespace="shop",
            release=ReleaseRef("rel", "shop"),
            virtual_service=ref,
            workloads=WorkloadRefs("reviews-stable", "reviews-canary"),
        )
        objects = render("rel", "other-ns", values_for_plan(plan, STABLE_IMAGE))
        vs = next(o for o in objects if o["kind"] == "VirtualService")
        assert vs["metadata"] == vs["metadata"] | {"name": "reviews-vs", "namespace": "shop"}
        index = routes.find_route(vs, ref)
        assert index == (0 if route == "primary" else 2)
        assert routes.get_weights(vs, ref) == Weights(100, 0)
        names = {o["metadata"]["name"] for o in objects if o["kind"] == "Deployment"}
        assert names == {"reviews-stable", "reviews-canary"}


def test_chart_without_subsets_renders_one_service_per_track() -> None:
    ref = VirtualServiceRef(
        name="api", stable=Destination("api-stable"), canary=Destination("api-canary")
    )
    plan = Plan(
        name="api",
        namespace="shop",
        release=ReleaseRef("api", "shop"),
        virtual_service=ref,
        workloads=WorkloadRefs("api-stable", "api-canary"),
    )
    objects = render("api", "shop", values_for_plan(plan, "example/api:1"))
    services = {o["metadata"]["name"] for o in objects if o["kind"] == "Service"}
    assert services == {"api-stable", "api-canary"}
    assert not [o for o in objects if o["kind"] == "DestinationRule"]
    vs = next(o for o in objects if o["kind"] == "VirtualService")
    assert routes.get_weights(vs, ref) == Weights(100, 0)


def test_merge_patch_rfc7386() -> None:
    old = {"a": 1, "b": {"c": 2, "d": 3}, "l": [1, 2]}
    new = {"a": 1, "b": {"c": 5}, "l": [1], "e": "x"}
    patch = create_merge_patch(old, new)
    assert patch == {"b": {"c": 5, "d": None}, "l": [1], "e": "x"}
    assert apply_merge_patch(old, patch) == new
    live = {"a": 9, "b": {"c": 2, "d": 3, "z": 0}, "l": [1, 2]}
    assert apply_merge_patch(live, patch) == {"a": 9, "b": {"c": 5, "z": 0}, "l": [1], "e": "x"}
    assert create_merge_patch(old, copy.deepcopy(old)) == {}


def test_images_follow_the_plans_workloads_bookinfo_style() -> None:
    assert STABLE_IMAGE == "docker.io/istio/examples-bookinfo-reviews-v1:1.20.1"
    assert CANARY_IMAGE == "docker.io/istio/examples-bookinfo-reviews-v3:1.20.1"
    reviews = world()
    assert (reviews.stable_image, reviews.canary_image) == (STABLE_IMAGE, CANARY_IMAGE)
    assert reviews.scenario.canary_image == CANARY_IMAGE
    w = world("good", RATINGS)
    stable = "docker.io/istio/examples-bookinfo-ratings-v1:1.20.1"
    canary = "docker.io/istio/examples-bookinfo-ratings-v2:1.20.1"
    assert (w.stable_image, w.canary_image) == (stable, canary)
    assert (w.scenario.stable_image, w.scenario.canary_image) == (stable, canary)
    assert container_image(w, "ratings-v1") == container_image(w, "ratings-v2") == stable
    w.release_canary()
    assert container_image(w, "ratings-v2") == canary
    assert w.mesh.behaviour(canary) is SCENARIOS["good"].canary


def test_a_scenario_that_sets_its_own_images_keeps_them() -> None:
    own = replace(
        SCENARIOS["bad-errors"], stable_image="registry/app:1", canary_image="registry/app:2"
    )
    w = SimWorld.create(RATINGS, own, START)
    assert (w.stable_image, w.canary_image) == ("registry/app:1", "registry/app:2")
    assert container_image(w, "ratings-v2") == "registry/app:1"
    w.release_canary()
    assert container_image(w, "ratings-v2") == "registry/app:2"
    assert w.mesh.behaviour("registry/app:2") is own.canary
    only_canary = replace(SCENARIOS["good"], canary_image="registry/app:2")
    w = SimWorld.create(RATINGS, only_canary, START)
    assert w.stable_image == "docker.io/istio/examples-bookinfo-ratings-v1:1.20.1"
    assert w.canary_image == "registry/app:2"


# --- install, canary release, availability -------------------------------------------------


def test_install_gives_canary_equal_to_stable_and_everything_available() -> None:
    w = world()
    assert w.clock.now() == START
    info = w.releases.history(w.plan.release)
    assert [(r.number, r.status, r.description) for r in info.revisions] == [
        (1, RevisionStatus.DEPLOYED, "Install complete")
    ]
    stable = w.workloads.status("bookinfo", "reviews-v1")
    canary = w.workloads.status("bookinfo", "reviews-v3")
    assert stable.exists and stable.available and canary.available
    assert stable.template_hash == canary.template_hash != ""
    assert live_weights(w) == Weights(100, 0)
    missing = w.workloads.status("bookinfo", "nope")
    assert not missing.exists and not missing.available


def test_deploy_canary_changes_the_hash_and_is_available_after_ready_after() -> None:
    w = world()
    before = canary_hash(w)
    assert w.release_canary() == 2
    assert canary_hash(w) != before and stable_hash(w) == before
    dep = w.cluster.get(DEPLOYMENT, "bookinfo", "reviews-v3")
    assert dep is not None and dep["metadata"]["generation"] == 2
    status = w.workloads.status("bookinfo", "reviews-v3")
    assert not status.available and "updated replicas" in status.reason
    w.advance(timedelta(seconds=19))
    assert not w.workloads.status("bookinfo", "reviews-v3").available
    w.advance(timedelta(seconds=1))
    assert w.workloads.status("bookinfo", "reviews-v3").available
    info = w.releases.history(w.plan.release)
    assert [(r.status, r.description) for r in info.revisions] == [
        (RevisionStatus.SUPERSEDED, "Install complete"),
        (RevisionStatus.DEPLOYED, "Upgrade complete"),
    ]


def test_promote_gives_stable_the_canary_template() -> None:
    w = started_canary()
    canary = canary_hash(w)
    assert w.promote() == 3
    assert stable_hash(w) == canary == canary_hash(w)
    assert not w.workloads.status("bookinfo", "reviews-v1").available
    w.advance(timedelta(seconds=20))
    assert w.workloads.status("bookinfo", "reviews-v1").available


# --- helm two-way merge ----------------------------------------------------------------------


def test_rollback_restores_canary_template_but_keeps_live_weights() -> None:
    w = started_canary()
    write_weights(w, 10)
    assert live_weights(w) == Weights(90, 10)
    assert canary_hash(w) != stable_hash(w)

    w.releases.rollback(w.plan.release, 1, timedelta(minutes=5))

    info = w.releases.history(w.plan.release)
    assert [(r.number, r.status, r.description) for r in info.revisions] == [
        (1, RevisionStatus.SUPERSEDED, "Install complete"),
        (2, RevisionStatus.SUPERSEDED, "Upgrade complete"),
        (3, RevisionStatus.DEPLOYED, rollback_description(1)),
    ]
    assert info.revisions[-1].description == "Rollback to 1"
    assert canary_hash(w) == stable_hash(w)
    # Helm 3 merges old manifest → new manifest: both render 100/0, so the live 90/10 survives.
    assert live_weights(w) == Weights(90, 10)
    assert w.router.read(w.plan).state_raw is not None  # our annotation survives too
    call = w.cluster.helm_calls[-1]
    assert (call.release, call.revision, call.timeout) == (w.plan.release, 1, timedelta(minutes=5))
    assert call.outcome == "deployed"


def test_upgrade_does_not_reset_live_weights() -> None:
    w = started_canary()
    write_weights(w, 50)
    w.release_canary("docker.io/istio/examples-bookinfo-reviews-v3:1.20.2")
    assert live_weights(w) == Weights(50, 50)
    w.promote()
    assert live_weights(w) == Weights(50, 50)


def test_chart_change_to_the_route_does_reach_the_live_object() -> None:
    """The merge is generic: what the chart does change between revisions is applied."""
    w = started_canary()
    write_weights(w, 10)
    values = w.cluster.release_values()
    values["virtualService"] = {"hosts": ["reviews", "reviews.example.com"]}
    w.cluster.upgrade("reviews", "bookinfo", values)
    vs = w.cluster.get(VIRTUAL_SERVICE, "bookinfo", "reviews")
    assert vs is not None and vs["spec"]["hosts"] == ["reviews", "reviews.example.com"]
    assert live_weights(w) == Weights(90, 10)


# --- router: optimistic concurrency, commands, drift -------------------------------------------


def test_write_is_conditional_on_resource_version() -> None:
    w = world()
    view = w.router.read(w.plan)
    state = state_to_json(RolloutState(plan=w.plan.key))
    after = w.router.write(w.plan, view, Weights(90, 10), state, False)
    assert int(after.version) > int(view.version)
    assert after.weights == Weights(90, 10) and after.state_raw == state
    with pytest.raises(ConflictError):
        w.router.write(w.plan, view, Weights(50, 50), state, False)  # stale view
    assert live_weights(w) == Weights(90, 10)
    # any other writer bumps the version too
    w.router.set_command("bookinfo", "reviews", '{"cmd":"pause","rolloutId":"x"}')
    with pytest.raises(ConflictError):
        w.router.write(w.plan, after, None, state, False)


def test_write_state_only_and_drop_command() -> None:
    w = world()
    w.router.set_command("bookinfo", "reviews", '{"cmd":"abort","rolloutId":"r-1"}')
    view = w.router.read(w.plan)
    assert view.command_raw == '{"cmd":"abort","rolloutId":"r-1"}'
    state = state_to_json(RolloutState(plan=w.plan.key, reason="x"))
    after = w.router.write(w.plan, view, None, state, True)
    assert after.command_raw is None and after.weights == Weights(100, 0)
    assert state_from_json(after.state_raw or "").reason == "x"
    vs = w.cluster.get(VIRTUAL_SERVICE, "bookinfo", "reviews")
    assert vs is not None and COMMAND_ANNOTATION not in vs["metadata"]["annotations"]
    assert w.router.write_count == 1


def test_strip_state_edit_weights_and_states_store() -> None:
    w = world()
    write_weights(w, 10)
    w.advance(MINUTE)
    assert list(w.states.states()) == ["bookinfo/reviews"]
    assert w.states.states(["other"]) == {}
    w.router.strip_state("bookinfo", "reviews")
    assert w.router.read(w.plan).state_raw is None and w.states.states() == {}
    w.router.edit_weights("bookinfo", "reviews", Weights(100, 0))
    assert live_weights(w) == Weights(100, 0)
    history = w.cluster.weight_history("bookinfo", "reviews")
    assert [h[1] for h in history] == [Weights(100, 0), Weights(90, 10), Weights(100, 0)]
    assert history[-1][0] - history[-2][0] == MINUTE
    # several writes at one instant: only the last one carries traffic
    write_weights(w, 50)
    write_weights(w, 0)
    assert [h[1] for h in w.cluster.weight_history("bookinfo", "reviews")][-1] == Weights(100, 0)
    assert len(w.cluster.weight_history("bookinfo", "reviews")) == 3


def test_missing_virtual_service_and_broken_route() -> None:
    w = world()
    vs = w.cluster.get(VIRTUAL_SERVICE, "bookinfo", "reviews")
    assert vs is not None
    vs["spec"]["http"][0]["route"][1]["destination"]["subset"] = "v2"
    w.cluster.put(vs)
    view = w.router.read(w.plan)
    assert view.weights is None and "v3" in view.route_error
    w.cluster.delete(VIRTUAL_SERVICE, "bookinfo", "reviews")
    with pytest.raises(ConfigError):
        w.router.read(w.plan)


# --- traffic integration and metrics ---------------------------------------------------------


def test_weight_history_integrates_to_the_request_split() -> None:
    w = started_canary()
    write_weights(w, 10)
    w.advance(MINUTE)
    s = sample(w)
    assert s.canary_requests == pytest.approx(300.0)  # 50 rps × 10 % × 60 s
    assert s.stable_requests == pytest.approx(2700.0)
    assert (s.rollout_id, s.step, s.window, s.error) == ("abcdef0123-1", 0, MINUTE, "")
    # half the window at 10 %, half at 50 %
    write_weights(w, 50)
    w.advance(timedelta(seconds=30))
    s = sample(w)
    assert s.canary_requests == pytest.approx(50 * (0.1 * 30 + 0.5 * 30))
    assert s.stable_requests == pytest.approx(50 * (0.9 * 30 + 0.5 * 30))


def test_good_scenario_metrics() -> None:
    w = started_canary("good")
    write_weights(w, 10)
    w.advance(MINUTE)
    s = sample(w)
    err, lat = s.metrics
    assert err.name == "error-rate" and err.value == pytest.approx(0.002)
    assert err.stable_value == pytest.approx(0.001)
    assert lat.value == pytest.approx(120.0) and lat.stable_value == pytest.approx(115.0)
    assert 'destination_workload="reviews-v3"' in err.query
    assert 'destination_workload="reviews-v1"' in err.stable_query
    assert "histogram_quantile(0.99" in lat.query


@pytest.mark.parametrize(
    ("scenario", "error_rate", "p99"),
    [("bad-errors", 0.08, 120.0), ("bad-latency", 0.002, 1200.0)],
)
def test_bad_scenarios_breach_the_default_bounds(
    scenario: str, error_rate: float, p99: float
) -> None:
    w = started_canary(scenario)
    write_weights(w, 10)
    w.advance(MINUTE)
    err, lat = sample(w).metrics
    assert err.value == pytest.approx(error_rate)
    assert lat.value == pytest.approx(p99)
    p50 = Metric(name="p50", type=MetricType.LATENCY, quantile=0.5, max=500)
    (median,) = sample(w, metrics=(p50,)).metrics
    assert median.value is not None and median.value < 50  # p50 fine
    assert median.stable_value is None and median.stable_query == ""  # no relative bound


def test_latency_quantiles_interpolate() -> None:
    b = Behaviour(latency_ms={0.5: 10.0, 0.9: 50.0, 0.99: 140.0})
    assert b.latency(0.5) == 10.0
    assert b.latency(0.7) == pytest.approx(30.0)
    assert b.latency(0.995) == 140.0 and b.latency(0.1) == 10.0
    assert Behaviour(latency_ms={}).latency(0.99) is None


def test_zero_share_gives_no_data() -> None:
    w = started_canary()
    w.advance(MINUTE)
    s = sample(w)
    assert s.canary_requests == 0.0 and s.stable_requests == pytest.approx(3000.0)
    assert all(m.value is None for m in s.metrics)
    assert all(m.stable_value is not None for m in s.metrics)
    write_weights(w, 100)
    w.advance(MINUTE)
    s = sample(w)
    assert s.stable_requests == 0.0 and all(m.stable_value is None for m in s.metrics)


def test_custom_metric_and_query_errors() -> None:
    w = started_canary()
    w.metrics.behaviours[w.scenario.canary_image] = Behaviour(custom={"queue": 2.5})
    custom = Metric(
        name="queue", type=MetricType.CUSTOM, query='max(queue{workload="$canary"}[$window])', max=3
    )
    write_weights(w, 10)
    w.advance(MINUTE)
    (m,) = sample(w, metrics=(custom,)).metrics
    assert m.value == 2.5 and m.query == 'max(queue{workload="reviews-v3"}[60s])'
    w.metrics.query_errors["queue"] = "bad_data: parse error"
    (m,) = sample(w, metrics=(custom,)).metrics
    assert m.value is None and m.error == "bad_data: parse error"


@pytest.mark.parametrize(
    ("bounds", "expected"),
    [
        ({"max": 0.0}, 0.0),  # ratings.yaml's canary-restarts
        ({"max": 3.0}, 0.0),
        ({"max": -1.0}, -2.0),
        ({"min": 0.0}, 0.0),
        ({"min": 0.95}, 1.9),
        ({"min": 1.0, "max": 3.0}, 2.0),
        ({"min": -5.0, "max": 5.0}, 0.0),
        ({}, 0.0),
    ],
)
def test_an_unnamed_custom_metric_gets_a_value_that_passes_its_bounds(
    bounds: dict[str, float], expected: float
) -> None:
    w = started_canary()
    metric = Metric(name="restarts", type=MetricType.CUSTOM, query="q", **bounds)
    write_weights(w, 10)
    w.advance(MINUTE)
    (m,) = sample(w, metrics=(metric,)).metrics
    assert m.value == pytest.approx(expected)
    assert metric.max is None or m.value <= metric.max
    assert metric.min is None or m.value >= metric.min


def test_a_named_custom_metric_overrides_the_healthy_value() -> None:
    w = started_canary("good", RATINGS)
    (restarts,) = (m for m in RATINGS.analysis.metrics if m.type is MetricType.CUSTOM)
    write_weights(w, 10)
    w.advance(MINUTE)
    (m,) = sample(w, metrics=(restarts,)).metrics
    assert m.value == 0.0  # passes ratings.yaml's `max: 0`
    w.metrics.behaviours[w.canary_image] = Behaviour(custom={"canary-restarts": 3.0})
    (m,) = sample(w, metrics=(restarts,)).metrics
    assert m.value == 3.0
    assert Behaviour(custom={"canary-restarts": 3.0}).custom_value(restarts) == 3.0
    assert Behaviour().custom_value(restarts) == 0.0


def test_prometheus_down_is_an_error_sample() -> None:
    w = started_canary()
    write_weights(w, 10)
    w.advance(MINUTE)
    w.metrics.down = True
    s = sample(w)
    assert "connection refused" in s.error and s.metrics == () and s.canary_requests is None
    w.metrics.down = False
    assert sample(w).error == ""


def test_short_window_is_not_queried() -> None:
    w = started_canary()
    s = sample(w, window=timedelta(seconds=20))
    assert s.too_short and s.metrics == ()


def test_batched_sample_answers_every_plan_once() -> None:
    w = started_canary()
    other = request(w)
    other = CheckRequest(**{**other.__dict__, "plan": "bookinfo/unknown", "canary": "x"})
    out = w.metrics.sample([request(w), other], w.clock.now())
    assert set(out) == {"bookinfo/reviews", "bookinfo/unknown"} and w.metrics.calls == 1
    assert out["bookinfo/unknown"].canary_requests == 0.0


def test_noise_is_seeded() -> None:
    def values(seed: int) -> list[float | None]:
        w = SimWorld.create(demo_plan(), "good", START, noise=0.1, seed=seed)
        w.release_canary()
        w.advance(timedelta(seconds=30))
        write_weights(w, 10)
        w.advance(MINUTE)
        return [m.value for m in sample(w).metrics]

    assert values(7) == values(7) != values(8)


# --- scenario traits --------------------------------------------------------------------------


def test_crashloop_canary_dies_once_its_weight_reaches_50() -> None:
    w = started_canary("crashloop")
    write_weights(w, 10)
    w.advance(MINUTE)
    assert w.workloads.status("bookinfo", "reviews-v3").available
    assert sample(w).canary_requests == pytest.approx(300.0)
    write_weights(w, 50)
    status = w.workloads.status("bookinfo", "reviews-v3")
    assert not status.available and "CrashLoopBackOff" in status.reason
    w.advance(MINUTE)
    assert sample(w, window=timedelta(seconds=30)).canary_requests == 0.0
    # back to stable: still crashed until its template changes
    write_weights(w, 0)
    assert not w.workloads.status("bookinfo", "reviews-v3").available
    w.releases.rollback(w.plan.release, 1, timedelta(minutes=5))
    w.advance(timedelta(seconds=20))
    assert w.workloads.status("bookinfo", "reviews-v3").available


def test_slow_canary_never_becomes_available_but_old_pods_serve() -> None:
    w = world("slow-canary")
    w.release_canary()
    w.advance(timedelta(minutes=15))
    status = w.workloads.status("bookinfo", "reviews-v3")
    assert status.exists and not status.available and "readiness" in status.reason
    write_weights(w, 10)  # (the controller would not) the old pods still answer, as stable
    w.advance(MINUTE)
    err, _ = sample(w).metrics
    assert err.value == pytest.approx(0.001)


def test_no_traffic_to_canary_is_misrouted_to_stable() -> None:
    w = started_canary("no-traffic-to-canary")
    write_weights(w, 10)
    w.advance(MINUTE)
    s = sample(w)
    assert s.canary_requests == 0.0 and s.stable_requests == pytest.approx(3000.0)


def test_low_traffic_stays_below_min_requests() -> None:
    w = started_canary("low-traffic")
    write_weights(w, 10)
    w.advance(MINUTE)
    s = sample(w)
    assert s.canary_requests is not None and 0 < s.canary_requests < 20
    assert s.stable_requests is not None and s.stable_requests * 10 / 90 < 20


def test_scenario_table() -> None:
    expected = {
        "good": 0,
        "bad-errors": 1,
        "bad-latency": 1,
        "crashloop": 1,
        "slow-canary": 1,
        "low-traffic": 6,
        "no-traffic-to-canary": 1,
    }
    assert {n: s.expected_exit for n, s in SCENARIOS.items()} == expected
    assert all(s.description for s in SCENARIOS.values())
    with pytest.raises(ConfigError, match="bad-errors"):
        get_scenario("nope")


# --- helm failures and pending ------------------------------------------------------------------


def test_helm_fail_next_then_success() -> None:
    w = started_canary()
    w.cluster.helm_fail_next(2, "Kubernetes cluster unreachable")
    for _ in range(2):
        with pytest.raises(HelmError) as exc:
            w.releases.rollback(w.plan.release, 1, timedelta(minutes=5))
        assert "cluster unreachable" in exc.value.stderr_tail
    assert len(w.releases.history(w.plan.release).revisions) == 2  # nothing recorded
    w.releases.rollback(w.plan.release, 1, timedelta(minutes=5))
    assert [c.outcome.split(":")[0] for c in w.cluster.helm_calls] == [
        "failed",
        "failed",
        "deployed",
    ]
    assert canary_hash(w) == stable_hash(w)


def test_helm_failure_while_updating_records_a_failed_revision() -> None:
    w = started_canary()
    w.cluster.helm_fail_next(1, stage="update")
    with pytest.raises(HelmError):
        w.releases.rollback(w.plan.release, 1, timedelta(minutes=5))
    info = w.releases.history(w.plan.release)
    assert info.latest is not None and info.latest.status == RevisionStatus.FAILED
    assert info.latest.description.startswith('Rollback "reviews" failed')
    assert info.deployed is None  # Helm 3 marks the previous one superseded
    assert canary_hash(w) != stable_hash(w)  # nothing applied
    w.releases.rollback(w.plan.release, 1, timedelta(minutes=5))
    assert w.releases.history(w.plan.release).latest == w.releases.history(w.plan.release).deployed


def test_helm_wait_timeout_applies_but_fails() -> None:
    w = started_canary()
    w.cluster.helm_fail_next(1, stage="wait")
    with pytest.raises(HelmError, match="deadline"):
        w.releases.rollback(w.plan.release, 1, timedelta(minutes=5))
    info = w.releases.history(w.plan.release)
    assert info.latest is not None and info.latest.status == RevisionStatus.FAILED
    assert info.deployed is not None and info.deployed.number == 2
    assert canary_hash(w) == stable_hash(w)


def test_pending_rollback_until_settled() -> None:
    w = started_canary()
    write_weights(w, 10)
    w.cluster.helm_leave_pending()
    w.releases.rollback(w.plan.release, 1, timedelta(minutes=5))
    info = w.releases.history(w.plan.release)
    assert info.pending and info.latest is not None
    assert info.latest.status == RevisionStatus.PENDING_ROLLBACK
    assert info.latest.description == "Rollback to 1"
    assert canary_hash(w) != stable_hash(w)  # not applied yet
    with pytest.raises(HelmError, match="another operation"):
        w.releases.rollback(w.plan.release, 1, timedelta(minutes=5))
    assert w.cluster.helm_settle() == 1
    info = w.releases.history(w.plan.release)
    assert not info.pending and info.deployed == info.latest
    assert canary_hash(w) == stable_hash(w)
    assert live_weights(w) == Weights(90, 10)
    assert [c.outcome.split(":")[0] for c in w.cluster.helm_calls] == ["pending", "failed"]


def test_rollback_to_unknown_revision_fails() -> None:
    w = world()
    with pytest.raises(HelmError, match="not found"):
        w.releases.rollback(w.plan.release, 9, timedelta(minutes=5))
    with pytest.raises(HelmError, match="not found"):
        w.releases.history(ReleaseRef("nope", "bookinfo"))


# --- events, determinism, speed ------------------------------------------------------------------


def test_event_sink_records() -> None:
    w = world()
    w.events.post("bookinfo", "reviews", Event("rollout.started"))
    assert w.events.posted == [("bookinfo", "reviews", Event("rollout.started"))]
    assert w.events.names("reviews") == ["rollout.started"] and w.events.names("x") == []


def test_state_annotation_survives_helm_and_round_trips() -> None:
    w = started_canary()
    write_weights(w, 10, phase_state="step 0")
    w.release_canary("docker.io/istio/examples-bookinfo-reviews-v3:1.20.3")
    raw = w.state_raw()
    assert raw is not None and state_from_json(raw).reason == "step 0"
    vs = w.cluster.get(VIRTUAL_SERVICE, "bookinfo", "reviews")
    assert vs is not None and STATE_ANNOTATION in vs["metadata"]["annotations"]


def test_the_simulator_imports_no_io_or_wall_clock() -> None:
    import ast
    from pathlib import Path

    import canary.sim

    forbidden = {"kubernetes", "prometheus_api_client", "subprocess", "threading", "time"}
    for path in Path(canary.sim.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        roots = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {
            node.module.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
        }
        assert not roots & forbidden, f"{path.name} imports {sorted(roots & forbidden)}"
