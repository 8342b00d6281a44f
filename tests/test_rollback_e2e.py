"""Rollback end to end with the real adapters (docs/design.md §1, §4, §7).

The controller runs in this process over its production adapters: IstioRouter, KubeWorkloads
and SecretHistory speak HTTP through the real ``kubernetes`` client to the API server double,
PrometheusSource queries the session's real Prometheus (scraping the Istio exporter, whose
traffic split follows the live weights), and HelmReleases runs the fake ``helm`` executable,
which applies the rollback to the API double with Helm's own engine and keeps helm's storage
Secrets there. Time is the wall clock (plus an offset a test may push forward to skip a
rollback backoff rather than sleep through it).

A "crash" is a controller that stops at a chosen point (:class:`Killed` escapes its tick, the
way SIGKILL ends a process between two statements) and a fresh controller, with no memory, that
takes over. Whatever the point, the breach is answered by exactly one ``helm rollback``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from canary.adapters.helm import HelmReleases
from canary.adapters.helmstore import SecretHistory
from canary.adapters.istio import IstioRouter
from canary.adapters.kube import KubeWorkloads
from canary.adapters.prometheus import PrometheusConfig, PrometheusSource
from canary.core import events as ev
from canary.core.decide import HELM_RECORD_GRACE, rollback_backoff
from canary.core.model import Outcome, Phase, RolloutState, Weights, state_from_json
from canary.core.plan import Plan
from canary.core.ports import RouteView
from canary.plans.files import load_plan_text
from canary.shell.controller import Controller, Ports
from canary.shell.emitter import Emitter
from tests.support.bookinfo import CANARY, RELEASE, STABLE_TAG, Bookinfo, TrafficFollower, fast_plan
from tests.support.istio_exporter import IstioExporter
from tests.support.kubeapi import KubeApiServer
from tests.support.prometheus import PrometheusServer

pytest.importorskip("helm_python")

#: Each test gets its own namespace: Prometheus is shared by the session and keeps old series.
_namespaces = itertools.count(1)
SCRAPE = timedelta(seconds=1)
#: How often the test ticks the controller (the daemon's interval job does the same).
TICK = 0.2
BAD_TAG = "1.20.2"


class Killed(BaseException):
    """The process died here (not an Exception: the controller's isolation must not catch it)."""


class ShiftedClock:
    """The wall clock plus an offset the test can push forward (never back)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


@dataclass
class Record:
    event: str
    wall: float
    fields: Mapping[str, Any]


@dataclass
class World:
    app: Bookinfo
    traffic: TrafficFollower
    plan: Plan
    kubeapi: KubeApiServer
    prometheus: PrometheusServer
    clock: ShiftedClock = field(default_factory=ShiftedClock)
    records: list[Record] = field(default_factory=list)
    pools: list[ThreadPoolExecutor] = field(default_factory=list)

    def controller(
        self,
        *,
        kill_on_event: str | None = None,
        kill_write: Callable[[RolloutState], bool] | None = None,
        kill_before_write: Callable[[RolloutState], bool] | None = None,
    ) -> Controller:
        """A fresh controller (a restarted process) over the real adapters."""
        api = self.kubeapi.client()
        router = IstioRouter(api)
        if kill_write is not None or kill_before_write is not None:
            router = _DyingRouter(api, after=kill_write, before=kill_before_write)
        binary = HelmReleases(str(self.app.helm.binary), env=self.app.helm.env)
        ports = Ports(
            router=router,
            workloads=KubeWorkloads(api),
            metrics=PrometheusSource(PrometheusConfig(url=self.prometheus.url)),
            releases=SecretHistory(api, binary),
            clock=self.clock,
        )

        def listen(record: Mapping[str, Any]) -> None:
            self.records.append(Record(record["event"], time.time(), dict(record)))
            if record["event"] == kill_on_event:
                raise Killed(record["event"])

        pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="helm")
        self.pools.append(pool)
        return Controller(
            ports=ports,
            emitter=Emitter(listeners=[listen]),
            plans={self.plan.key: self.plan},
            scrape_interval=SCRAPE,
            runner=pool,
        )

    def names(self) -> list[str]:
        return [r.event for r in self.records]

    def first(self, name: str) -> Record:
        return next(r for r in self.records if r.event == name)

    def state(self) -> RolloutState:
        state = self.app.state()
        assert state is not None
        return state


class _DyingRouter(IstioRouter):
    """IstioRouter that dies right after (``after``) or right before (``before``) the write
    of a state the predicate picks."""

    def __init__(
        self,
        api: Any,
        *,
        after: Callable[[RolloutState], bool] | None,
        before: Callable[[RolloutState], bool] | None,
    ) -> None:
        super().__init__(api)
        self._after, self._before = after, before

    def write(
        self,
        plan: Plan,
        view: RouteView,
        weights: Weights | None,
        state_json: str,
        consume_command: bool,
    ) -> None:
        state = state_from_json(state_json)
        if self._before is not None and self._before(state):
            raise Killed("before the state write")
        super().write(plan, view, weights, state_json, consume_command)
        if self._after is not None and self._after(state):
            raise Killed("after the write")


def run_until(
    world: World, ctrl: Controller, done: Callable[[World], bool], *, limit: float = 60
) -> None:
    """Tick like the daemon does until ``done``; fail with the event trail after ``limit``."""
    deadline = time.monotonic() + limit
    while not done(world):
        if time.monotonic() > deadline:
            raise AssertionError(f"not done after {limit} s; events: {world.names()}")
        ctrl.tick()
        time.sleep(TICK)


def run_until_killed(world: World, ctrl: Controller, *, limit: float = 60) -> str:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            ctrl.tick()
        except Killed as exc:
            return str(exc)
        time.sleep(TICK)
    raise AssertionError(f"never killed; events: {world.names()}")


def phase(p: Phase) -> Callable[[World], bool]:
    return lambda w: w.app.state() is not None and w.state().phase is p


@pytest.fixture
def world(
    kubeapi: KubeApiServer,
    istio_mesh: IstioExporter,
    prometheus: PrometheusServer,
    tmp_path: Path,
) -> Iterator[World]:
    """Revision 1 installed (canary = stable), traffic flowing, a faulty canary ready to be
    upgraded in: its requests fail 30 % of the time from the moment it gets any."""
    namespace = f"e2e-rollback-{next(_namespaces)}"
    app = Bookinfo(kubeapi, tmp_path / "helm.json", namespace)
    traffic = TrafficFollower(kubeapi, istio_mesh, namespace, canary_error_ratio=0.3)
    traffic.start()
    (plan,) = load_plan_text(fast_plan(namespace))
    w = World(app=app, traffic=traffic, plan=plan, kubeapi=kubeapi, prometheus=prometheus)
    try:
        yield w
    finally:
        traffic.stop()
        app.close()
        for pool in w.pools:
            pool.shutdown(wait=True)


def idle_with_base(world: World, ctrl: Controller) -> None:
    """The controller has seen the release at rest and recorded revision 1 as the base."""
    run_until(world, ctrl, lambda w: w.app.state() is not None and w.state().base_revision == 1)
    assert world.state().phase is Phase.IDLE


def assert_rolled_back_once(world: World) -> None:
    state = world.state()
    assert state.phase is Phase.ROLLED_BACK
    assert state.last is not None and state.last.outcome is Outcome.ROLLED_BACK
    assert world.app.rollbacks() == [
        ["rollback", RELEASE, "1", "--namespace", world.app.namespace, "--wait", "--timeout", "20s"]
    ]
    assert world.app.weights() == (100, 0)
    assert world.app.image(CANARY).endswith(f":{STABLE_TAG}")
    deployed = world.app.helm.deployed(RELEASE, world.app.namespace)
    assert deployed == 3
    assert world.app.helm.history(RELEASE, world.app.namespace)[-1]["description"] == (
        "Rollback to 1"
    )
    assert world.names().count(ev.ROLLOUT_ROLLED_BACK) == 1


def skip_backoff(world: World) -> Callable[[World], bool]:
    """A ``done`` wrapper's helper: push the clock past a failed attempt's backoff instead of
    sleeping through it (10 s, then 20 s)."""

    def push(w: World) -> bool:
        state = w.app.state()
        rb = state.rollback if state is not None else None
        if state is not None and state.phase is Phase.ROLLING_BACK and rb and rb.failed_at:
            due = rb.failed_at + rollback_backoff(rb.attempts)
            if w.clock.now() < due:
                w.clock.offset += due - w.clock.now()
        return state is not None and state.phase is Phase.ROLLED_BACK

    return push


def test_a_breach_reverts_traffic_first_then_rolls_back_to_the_base(world: World) -> None:
    ctrl = world.controller()
    idle_with_base(world, ctrl)
    assert world.app.upgrade(BAD_TAG) == 2
    world.kubeapi.requests.clear()

    def reverts_to_stable(req: Any) -> bool:
        return any(
            op.get("path", "").endswith("/route/1/weight") and op.get("value") == 0
            for op in (req.body if isinstance(req.body, list) else [])
        )

    # The API server takes 1.5 s to acknowledge the revert: helm must not start before it has.
    held = world.kubeapi.hang(
        1.5, method="PATCH", resource="virtualservices", when=reverts_to_stable
    )
    run_until(world, ctrl, phase(Phase.ROLLED_BACK))
    assert held.exhausted
    assert_rolled_back_once(world)
    [revert] = [r for r in world.kubeapi.requests.writes() if reverts_to_stable(r)]
    [helm_started] = [
        c["at"] for c in world.app.helm.state()["calls"] if c["argv"][0] == "rollback"
    ]
    assert helm_started > revert.at, f"helm started {revert.at - helm_started:.3f} s before the ack"
    names = world.names()
    order = [
        ev.ROLLOUT_STARTED,
        ev.STEP_STARTED,
        ev.CHECK_FAILED,
        ev.ROLLBACK_STARTED,
        ev.ROLLBACK_TRAFFIC_REVERTED,
        ev.ROLLBACK_HELM_STARTED,
        ev.ROLLBACK_HELM_SUCCEEDED,
        ev.ROLLOUT_ROLLED_BACK,
    ]
    positions = [names.index(n) for n in order]
    assert positions == sorted(positions), names
    assert ev.CHECK_PASSED not in names  # 30 % errors never pass a 5 % bound
    failed = world.first(ev.CHECK_FAILED).fields
    assert "istio_requests_total" in str(failed)
    # Traffic first: the write putting stable back to 100 reached the API before helm recorded
    # its pending revision (the first write helm makes) and before it touched the Deployment.
    recorded = world.kubeapi.requests.writes()
    writes = [(r.method, r.resource) for r in recorded]
    canary_weights = [
        (i, op["value"])
        for i, r in enumerate(recorded)
        if r.resource == "virtualservices"
        for op in r.body
        if op.get("path", "").endswith("/route/1/weight")
    ]
    assert [w for _, w in canary_weights] == [10, 0]  # step 0, then the revert
    reverted = canary_weights[-1][0]
    assert writes.index(("POST", "secrets")) > reverted
    assert writes.index(("PATCH", "deployments")) > reverted
    # The numbers the docs report: fault onset (the canary's first traffic) → safe → helm done.
    onset = next(t for t, (_, canary) in world.traffic.changes if canary > 0)
    safe = world.first(ev.ROLLBACK_TRAFFIC_REVERTED).wall
    done = world.first(ev.ROLLOUT_ROLLED_BACK).wall
    assert onset < safe < done
    print(f"\nrollback: onset→stable {safe - onset:.2f} s, onset→helm done {done - onset:.2f} s")


def test_killed_right_after_the_weight_write(world: World) -> None:
    first = world.controller(kill_write=lambda s: s.phase is Phase.ROLLING_BACK)
    idle_with_base(world, first)
    world.app.upgrade(BAD_TAG)
    run_until_killed(world, first)
    assert world.app.weights() == (100, 0)  # the service is safe before any helm call
    assert world.app.rollbacks() == []
    assert world.state().phase is Phase.ROLLING_BACK
    restarted = world.controller()
    restarted.tick()  # no trace of helm yet: it may still be starting; wait for it
    assert world.app.rollbacks() == []
    world.clock.offset += HELM_RECORD_GRACE  # rather than sleep through the grace
    run_until(world, restarted, phase(Phase.ROLLED_BACK))
    assert_rolled_back_once(world)
    assert ev.ROLLBACK_HELM_FAILED not in world.names()  # it never ran: not a failure
    started = [r.fields for r in world.records if r.event == ev.ROLLBACK_HELM_STARTED]
    assert "left no trace" in started[-1]["resumed"]
    assert world.state().rollback.attempts == 1  # type: ignore[union-attr]


def test_killed_right_after_helm_started_while_helm_carries_on(world: World) -> None:
    """The process is gone once helm is under way; helm finishes on its own (it records the
    release as it goes). The new process waits while the release is pending, then confirms."""
    world.app.helm.set(slow_seconds={"rollback": 2})
    first = world.controller()
    idle_with_base(world, first)
    world.app.upgrade(BAD_TAG)
    run_until(world, first, lambda w: ev.ROLLBACK_HELM_STARTED in w.names())
    # `first` is never ticked again: its memory (the running job) is lost with it
    restarted = world.controller()
    run_until(world, restarted, phase(Phase.ROLLED_BACK))
    assert_rolled_back_once(world)
    assert ev.ROLLBACK_WAITING in world.names()
    assert world.first(ev.ROLLBACK_HELM_SUCCEEDED).fields["confirmedFrom"] == "history"


def test_a_helm_that_died_mid_rollback_is_waited_for_never_repeated(world: World) -> None:
    """helm recorded pending-rollback and died with the process: the new leader waits for the
    release to settle (docs/design.md §7) and never starts a second rollback over it."""
    world.app.helm.set(leave_pending=True)
    first = world.controller(kill_on_event=ev.ROLLBACK_HELM_FAILED)
    idle_with_base(world, first)
    world.app.upgrade(BAD_TAG)
    run_until(
        world,
        first,
        lambda w: any(
            r["status"] == "pending-rollback" for r in w.app.helm.history(RELEASE, w.app.namespace)
        ),
    )
    restarted = world.controller()
    for _ in range(10):
        restarted.tick()
        time.sleep(TICK)
    assert world.state().phase is Phase.ROLLING_BACK
    assert len(world.app.rollbacks()) == 1
    assert ev.ROLLBACK_WAITING in world.names()
    world.app.helm.settle(RELEASE, world.app.namespace)  # whoever fixes a stuck release
    run_until(world, restarted, phase(Phase.ROLLED_BACK))
    assert_rolled_back_once(world)


def test_killed_after_helm_returned_but_before_the_state_write(world: World) -> None:
    first = world.controller(kill_before_write=lambda s: s.phase is Phase.ROLLED_BACK)
    idle_with_base(world, first)
    world.app.upgrade(BAD_TAG)
    run_until_killed(world, first)
    assert world.state().phase is Phase.ROLLING_BACK
    assert world.app.helm.deployed(RELEASE, world.app.namespace) == 3  # helm had finished
    restarted = world.controller()
    run_until(world, restarted, phase(Phase.ROLLED_BACK))
    assert_rolled_back_once(world)
    confirmations = [r.fields for r in world.records if r.event == ev.ROLLBACK_HELM_SUCCEEDED]
    assert confirmations[-1]["confirmedFrom"] == "history"


def test_helm_fails_twice_then_succeeds(world: World) -> None:
    world.app.helm.fail_next(2)
    ctrl = world.controller()
    idle_with_base(world, ctrl)
    world.app.upgrade(BAD_TAG)
    run_until(world, ctrl, skip_backoff(world))
    calls = world.app.rollbacks()
    assert len(calls) == 3 and all(c[:3] == ["rollback", RELEASE, "1"] for c in calls)
    assert world.names().count(ev.ROLLBACK_HELM_FAILED) == 2
    assert "cluster unreachable" in world.first(ev.ROLLBACK_HELM_FAILED).fields["error"]
    state = world.state()
    assert state.phase is Phase.ROLLED_BACK
    assert state.rollback is not None and state.rollback.attempts == 3
    assert world.app.weights() == (100, 0)


def test_helm_hanging_past_its_timeout_is_retried_never_killed(world: World) -> None:
    (world.plan,) = load_plan_text(fast_plan(world.app.namespace, rollback_timeout="2s"))
    world.app.helm.set(hang_seconds={"rollback": 60})
    ctrl = world.controller()
    idle_with_base(world, ctrl)
    world.app.upgrade(BAD_TAG)
    run_until(world, ctrl, lambda w: len(w.app.rollbacks()) == 1)
    world.app.helm.set(hang_seconds=0)  # the cluster recovers for the next attempt
    run_until(world, ctrl, skip_backoff(world))
    calls = world.app.rollbacks()
    assert [c[-1] for c in calls] == ["2s", "2s"]
    error = world.first(ev.ROLLBACK_HELM_FAILED).fields["error"]
    assert "timed out waiting for the condition" in error
    statuses = [r["status"] for r in world.app.helm.history(RELEASE, world.app.namespace)]
    assert statuses == ["superseded", "superseded", "failed", "deployed"]


def test_the_release_moved_on_is_never_rolled_back_over(world: World) -> None:
    """CI deployed a newer revision while the rollback was failing: no rollback over it; the
    outcome is Superseded and the newer canary starts its own rollout."""
    world.app.helm.fail_next(1)
    ctrl = world.controller()
    idle_with_base(world, ctrl)
    world.app.upgrade(BAD_TAG)
    run_until(world, ctrl, lambda w: ev.ROLLBACK_HELM_FAILED in w.names())
    assert world.app.upgrade("1.20.3") == 3
    run_until(world, ctrl, lambda w: ev.ROLLOUT_SUPERSEDED in w.names())
    run_until(world, ctrl, lambda w: w.state().phase is not Phase.ROLLING_BACK)
    state = world.state()
    assert state.last is not None and state.last.outcome is Outcome.SUPERSEDED
    assert state.phase in (Phase.PENDING, Phase.PROGRESSING)
    assert state.revision == 3
    assert len(world.app.rollbacks()) == 1  # only the attempt that failed
    assert world.app.image(CANARY).endswith(":1.20.3")


def test_a_canary_changed_twice_rolls_back_to_the_first_base(world: World) -> None:
    """Two more upgrades land before the first canary's verdict: each new canary supersedes
    the last and starts over, and the rollback target stays the revision recorded before
    the first (never a revision that brought a canary)."""
    ctrl = world.controller()
    idle_with_base(world, ctrl)
    world.app.upgrade(BAD_TAG)
    for tag in ("1.20.3", "1.20.4"):
        run_until(world, ctrl, phase(Phase.PROGRESSING))
        previous = world.state().rollout_id
        world.app.upgrade(tag)  # before that canary's verdict
        run_until(world, ctrl, lambda w, p=previous: w.state().rollout_id != p)
    assert world.state().base_revision == 1
    run_until(world, ctrl, phase(Phase.ROLLED_BACK))
    assert world.names().count(ev.ROLLOUT_SUPERSEDED) == 2
    recorded = [r.fields["baseRevision"] for r in world.records if r.event == ev.BASE_RECORDED]
    assert recorded == [1]
    assert ev.BASE_FALLBACK not in world.names()
    assert_rolled_back_once_to(world, revision=5)


def assert_rolled_back_once_to(world: World, *, revision: int) -> None:
    assert world.app.rollbacks() == [
        ["rollback", RELEASE, "1", "--namespace", world.app.namespace, "--wait", "--timeout", "20s"]
    ]
    assert world.app.helm.deployed(RELEASE, world.app.namespace) == revision
    assert world.app.image(CANARY).endswith(f":{STABLE_TAG}")
    assert world.app.weights() == (100, 0)
