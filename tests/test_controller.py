"""The controller over the simulator's ports: one write per change, conflicts, batching,
isolation between rollouts, lost state, commands."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from canary.core.errors import ConflictError
from canary.core.model import ALL_STABLE, Phase, Weights
from canary.core.plan import Destination, Plan, ReleaseRef, VirtualServiceRef, WorkloadRefs
from canary.core.ports import RouteView
from canary.shell.controller import Controller
from canary.sim import chart
from canary.sim.run import controller_for, current_state, run_until
from canary.sim.world import SimWorld
from tests.support.builders import plan as make_plan


def reviews() -> Plan:
    return make_plan()


def twin(base: Plan, app: str) -> Plan:
    """The same plan for another app in the same namespace."""
    return replace(
        base,
        name=app,
        release=ReleaseRef(name=app, namespace=base.namespace),
        virtual_service=VirtualServiceRef(
            name=app,
            stable=Destination(host=app, subset="v1"),
            canary=Destination(host=app, subset="v3"),
        ),
        workloads=WorkloadRefs(stable=f"{app}-v1", canary=f"{app}-v3"),
    )


def two_rollouts() -> tuple[SimWorld, Plan, Controller]:
    """reviews and its twin details in one world, one controller, both canaries released."""
    world = SimWorld.create(reviews(), "good")
    other = twin(world.plan, "details")
    world.cluster.bind(other)
    world.cluster.install(
        other.release.name,
        other.namespace,
        chart.values_for_plan(other, stable_image=world.scenario.stable_image),
    )
    ctrl = controller_for(world)
    ctrl.plans[other.key] = other
    ctrl.tick()
    world.release_canary()
    world.cluster.deploy_canary(
        world.scenario.canary_image, release=other.release.name, namespace=other.namespace
    )
    return world, other, ctrl


def progressing(world: SimWorld) -> None:
    ctrl = controller_for(world)
    ctrl.tick()
    world.release_canary()
    assert run_until(world, ctrl, lambda s: s is not None and s.phase is Phase.PROGRESSING)


def test_a_steady_tick_writes_nothing() -> None:
    world = SimWorld.create(reviews(), "good")
    ctrl = controller_for(world)
    ctrl.tick()
    writes = world.router.write_count
    for _ in range(5):
        world.advance(timedelta(seconds=10))
        decisions = ctrl.tick()
        assert not decisions[world.plan.key].changed
    assert world.router.write_count == writes
    assert world.events.names() == ["base.recorded"]


def test_a_conflict_rereads_and_decides_again_emitting_once() -> None:
    world = SimWorld.create(reviews(), "good")
    ctrl = controller_for(world)
    ctrl.tick()
    world.release_canary()
    real_write = world.router.write
    raced = []

    def racing_write(plan: Plan, view: RouteView, *args: object) -> RouteView:
        if not raced:  # someone else writes between our read and our write
            raced.append(True)
            world.router.set_annotation(plan.namespace, plan.virtual_service.name, "x", "y")
        return real_write(plan, view, *args)  # type: ignore[arg-type]

    world.router.write = racing_write  # type: ignore[method-assign]
    ctrl.tick()
    assert raced
    state = current_state(world)
    assert state is not None and state.phase is Phase.PENDING
    assert world.events.names().count("rollout.started") == 1


def test_conflicts_every_time_give_up_for_this_tick_without_events() -> None:
    world = SimWorld.create(reviews(), "good")
    ctrl = controller_for(world)
    ctrl.tick()
    world.release_canary()

    def always_conflict(*_: object) -> RouteView:
        raise ConflictError("resourceVersion changed")

    world.router.write = always_conflict  # type: ignore[method-assign]
    before = list(world.events.names())
    ctrl.tick()
    assert world.events.names() == before  # nothing happened, nothing said
    state = current_state(world)
    assert state is not None and state.phase is Phase.IDLE


def test_one_broken_plan_does_not_stop_the_others() -> None:
    world = SimWorld.create(reviews(), "good")
    ghost = twin(world.plan, "ghost")  # its VirtualService does not exist
    ctrl = controller_for(world)
    ctrl.plans[ghost.key] = ghost
    ctrl.tick()
    world.release_canary()
    ctrl.tick()
    state = current_state(world)
    assert state is not None and state.phase is Phase.PENDING
    failed = [(p, e.fields) for _, p, e in world.events.posted if e.name == "tick.failed"]
    assert failed and all(p == "ghost" for p, _ in failed)
    assert "ghost" in str(failed[0][1]["error"])


def test_checks_of_many_rollouts_cost_one_metrics_call_per_tick() -> None:
    world, _, ctrl = two_rollouts()
    seen_both = 0
    for _ in range(60):
        world.advance(timedelta(seconds=5))
        before = world.mesh.calls
        decisions = ctrl.tick()
        checked = [
            k for k, d in decisions.items() if any(e.name.startswith("check.") for e in d.events)
        ]
        assert world.mesh.calls - before == (1 if checked else 0)
        if len(checked) == 2:
            seen_both += 1
    assert seen_both >= 3


def test_lost_state_mid_rollout_sends_traffic_to_stable_and_starts_over() -> None:
    world = SimWorld.create(reviews(), "good")
    progressing(world)
    ctrl = controller_for(world)
    assert world.router.read(world.plan).weights == Weights(stable=90, canary=10)
    world.router.strip_state(world.plan.namespace, world.plan.virtual_service.name)
    world.events.clear()
    ctrl.tick()
    assert world.events.names() == ["state.lost", "weight.set", "base.fallback", "rollout.started"]
    assert world.router.read(world.plan).weights == ALL_STABLE
    state = current_state(world)
    assert state is not None and state.phase is Phase.PENDING
    assert state.base_revision == 1  # the fallback: newest earlier revision not failed


def test_a_command_is_consumed_in_the_same_write_as_its_effect() -> None:
    world = SimWorld.create(reviews(), "good")
    progressing(world)
    ctrl = controller_for(world)
    state = current_state(world)
    assert state is not None
    ns, vs = world.plan.namespace, world.plan.virtual_service.name
    world.router.set_command(ns, vs, f'{{"cmd":"pause","rolloutId":"{state.rollout_id}"}}')
    writes = world.router.write_count
    ctrl.tick()
    assert world.router.write_count == writes + 1
    assert world.router.read(world.plan).command_raw is None
    state = current_state(world)
    assert state is not None and state.phase is Phase.PAUSED


def test_helm_runs_in_a_worker_and_never_blocks_a_tick() -> None:
    """With a runner, a slow helm rollback leaves ticks free; decide sees it running, then
    confirms it once it returned (a worker that never blocks other ticks)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from canary.sim import SCENARIOS

    world = SimWorld.create(reviews(), SCENARIOS["bad-errors"])
    release = threading.Event()
    order: list[str] = []
    real = world.releases.rollback

    def slow_rollback(*args: object, **kwargs: object) -> None:
        release.wait(timeout=10)
        order.append("helm returned")
        real(*args, **kwargs)  # type: ignore[arg-type]

    world.releases.rollback = slow_rollback  # type: ignore[method-assign]
    with ThreadPoolExecutor(max_workers=2) as pool:
        ctrl = controller_for(world)
        ctrl.runner = pool
        ctrl.tick()
        world.release_canary()
        assert run_until(world, ctrl, lambda s: s is not None and s.phase is Phase.ROLLING_BACK)
        order.append("tick returned")
        assert world.router.read(world.plan).weights == ALL_STABLE  # safe before helm ends
        world.advance(timedelta(seconds=5))
        ctrl.tick()  # helm still running: wait, do not start another
        assert world.events.names().count("rollback.helm_started") == 1
        assert "rollback.waiting" in world.events.names()
        release.set()
        pool.shutdown(wait=True)  # the worker has returned and recorded its job
        world.advance(timedelta(seconds=5))
        ctrl.tick()
    assert order == ["tick returned", "helm returned"]
    state = current_state(world)
    assert state is not None and state.phase is Phase.ROLLED_BACK
    assert len(world.cluster.helm_calls) == 1


def test_a_history_that_cannot_be_read_still_lets_a_breach_go_to_stable() -> None:
    """helm history (its Secrets) forbidden: checks, the breach and the move to stable go on;
    only helm waits, with one `release.unreadable` alert."""
    from canary.core.errors import ForbiddenError
    from canary.sim import SCENARIOS

    world = SimWorld.create(reviews(), SCENARIOS["bad-errors"])
    ctrl = controller_for(world)
    ctrl.tick()
    world.release_canary()
    assert run_until(world, ctrl, lambda s: s is not None and s.phase is Phase.PROGRESSING)
    real = world.releases.history

    def forbidden(release: ReleaseRef) -> object:
        raise ForbiddenError("secrets is forbidden: cannot list resource secrets")

    world.releases.history = forbidden  # type: ignore[assignment,method-assign]
    assert run_until(world, ctrl, lambda s: s is not None and s.phase is Phase.ROLLING_BACK)
    assert world.router.read(world.plan).weights == ALL_STABLE
    assert world.cluster.helm_calls == []
    names = world.events.names()
    assert names.count("release.unreadable") == 1
    assert "tick.failed" not in names
    world.releases.history = real  # type: ignore[method-assign]
    assert run_until(world, ctrl, lambda s: s is not None and s.phase is Phase.ROLLED_BACK)
    assert len(world.cluster.helm_calls) == 1


def test_a_runner_that_cannot_start_helm_is_a_failed_attempt_not_a_hang() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from canary.sim import SCENARIOS

    world = SimWorld.create(reviews(), SCENARIOS["bad-errors"])
    pool = ThreadPoolExecutor(max_workers=1)
    pool.shutdown()  # submit raises RuntimeError from now on
    ctrl = controller_for(world)
    ctrl.runner = pool
    ctrl.tick()
    world.release_canary()
    assert run_until(world, ctrl, lambda s: s is not None and s.phase is Phase.ROLLING_BACK)
    world.advance(timedelta(seconds=5))
    ctrl.tick()
    failed = [e for e in world.events.posted if e[2].name == "rollback.helm_failed"]
    assert failed and "could not start helm" in failed[0][2].fields["error"]
    state = current_state(world)
    assert state is not None and state.rollback is not None and state.rollback.failures == 1


def test_plans_with_no_check_due_are_acted_on_before_the_metrics_are_asked_for() -> None:
    """A slow Prometheus delays only the checks: here the other rollout's move to stable (its
    plan was deleted) is written before the metrics call of the same tick even starts."""
    world, other, ctrl = two_rollouts()
    for _ in range(12):  # both progressing, checks due every interval
        world.advance(timedelta(seconds=5))
        ctrl.tick()
    assert world.router.read(other).weights != ALL_STABLE
    seen_at_sample: list[Weights | None] = []
    real = world.metrics.sample

    def slow_sample(requests: object, at: object) -> object:
        seen_at_sample.append(world.router.read(other).weights)
        return real(requests, at)  # type: ignore[arg-type]

    world.metrics.sample = slow_sample  # type: ignore[method-assign,assignment]
    ctrl.deleted[other.key] = ctrl.plans.pop(other.key)  # details' plan is deleted
    for _ in range(8):
        world.advance(timedelta(seconds=5))
        decisions = ctrl.tick()
        if seen_at_sample and decisions.get(world.plan.key) is not None:
            break
    assert seen_at_sample, "no check was due for reviews"
    assert seen_at_sample[0] == ALL_STABLE  # details was already safe when the query began


def test_every_write_is_reported_with_its_resource_version() -> None:
    """The daemon's watch skips the event of our own write by this version."""
    world = SimWorld.create(reviews(), "good")
    ctrl = controller_for(world)
    seen: list[tuple[str, str]] = []
    ctrl.on_write = lambda plan, version: seen.append((plan.key, version))
    ctrl.tick()
    world.release_canary()
    ctrl.tick()
    assert seen and all(key == world.plan.key for key, _ in seen)
    assert seen[-1][1] == world.router.read(world.plan).version
    assert len({v for _, v in seen}) == len(seen)  # one new version per write


# --- leadership lost in the middle of a tick -----------------------------------------------


class Lease:
    """``leader()`` that holds for the first ``grant`` questions of each tick, then is lost:
    1 = at the tick's start only (lost before the write), 2 = for the write too (lost before
    helm). ``grant=None``: always leader."""

    def __init__(self) -> None:
        self.grant: int | None = None
        self.asked = 0

    def __call__(self) -> bool:
        self.asked += 1
        return self.grant is None or self.asked <= self.grant

    def tick(self, ctrl: Controller, grant: int | None) -> None:
        self.grant, self.asked = grant, 0
        ctrl.tick()
        self.grant = None


def progressing_bad_canary() -> tuple[SimWorld, Controller, Lease]:
    world = SimWorld.create(reviews(), "bad-errors")
    ctrl = controller_for(world)
    lease = Lease()
    ctrl.leader = lease
    ctrl.tick()
    world.release_canary()
    assert run_until(world, ctrl, lambda s: s is not None and s.phase is Phase.PROGRESSING)
    return world, ctrl, lease


def test_a_lease_lost_between_observe_and_write_writes_nothing() -> None:
    world, ctrl, lease = progressing_bad_canary()
    writes, state = world.router.write_count, current_state(world)
    for _ in range(60):  # 5 min of a failing canary: a breach is decided many times over
        world.advance(timedelta(seconds=5))
        lease.tick(ctrl, grant=1)
    assert world.router.write_count == writes
    assert current_state(world) == state
    assert world.cluster.helm_calls == []
    # the lease back: the failing canary is judged and rolled back as usual
    assert run_until(world, ctrl, lambda s: s is not None and s.phase is Phase.ROLLED_BACK)
    assert len(world.cluster.helm_calls) == 1


def test_a_lease_lost_between_the_write_and_helm_starts_no_helm() -> None:
    world, ctrl, lease = progressing_bad_canary()
    for _ in range(60):
        world.advance(timedelta(seconds=5))
        lease.tick(ctrl, grant=2)
        state = current_state(world)
        if state is not None and state.phase is Phase.ROLLING_BACK:
            break
    assert state is not None and state.phase is Phase.ROLLING_BACK
    assert state.weights == ALL_STABLE  # the write went through, with the lease
    assert world.cluster.helm_calls == []  # helm did not: the lease was gone by then
    # the next leader's tick (here: ours, the lease back) runs helm, once
    assert run_until(world, ctrl, lambda s: s is not None and s.phase is Phase.ROLLED_BACK)
    assert len(world.cluster.helm_calls) == 1
