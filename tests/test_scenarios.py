"""Scenario tests: the real controller over the simulator; assert the sequence of event names."""

from __future__ import annotations

from datetime import timedelta
from itertools import groupby

import pytest

from canary.core import exitcodes
from canary.core.model import ALL_STABLE, Outcome, Phase, Weights
from canary.plans.files import load_plan_files
from canary.sim import SCENARIOS
from canary.sim.run import controller_for, current_state, run_until, simulate
from canary.sim.world import SimWorld

PLAN = load_plan_files(["config/plans/reviews.yaml"])[0]


def collapsed(names: list[str]) -> list[str]:
    """Consecutive repeats merged: the shape of a run, whatever the number of checks per step."""
    return [name for name, _ in groupby(names)]


STEP = ["step.started", "weight.set", "check.passed"]
ROLLBACK = [
    "rollback.started",
    "weight.set",
    "rollback.traffic_reverted",
    "rollback.helm_started",
    "rollback.helm_succeeded",
    "rollout.rolled_back",
]

EXPECTED = {
    "good": ["base.recorded", "rollout.started", *STEP * 3, "rollout.succeeded"],
    "bad-errors": [
        "base.recorded",
        "rollout.started",
        "step.started",
        "weight.set",
        "check.failed",
        *ROLLBACK,
    ],
    "bad-latency": [
        "base.recorded",
        "rollout.started",
        "step.started",
        "weight.set",
        "check.failed",
        *ROLLBACK,
    ],
    # pods crash once the canary takes 50 %: rolled back on the next tick, no check waited for
    "crashloop": [
        "base.recorded",
        "rollout.started",
        *STEP,
        "step.started",
        "weight.set",
        *ROLLBACK,
    ],
    # weights never left stable: no traffic to revert
    "slow-canary": [
        "base.recorded",
        "rollout.started",
        "rollback.started",
        "rollback.helm_started",
        "rollback.helm_succeeded",
        "rollout.rolled_back",
    ],
    "low-traffic": [
        "base.recorded",
        "rollout.started",
        "step.started",
        "weight.set",
        "check.inconclusive",
        "rollout.paused",
        "weight.set",
    ],
    "no-traffic-to-canary": [
        "base.recorded",
        "rollout.started",
        "step.started",
        "weight.set",
        "check.failed",
        *ROLLBACK,
    ],
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_event_sequence_and_exit_code(name: str) -> None:
    scenario = SCENARIOS[name]
    result = simulate(PLAN, scenario)
    assert collapsed(result.events) == EXPECTED[name]
    assert result.exit_code == scenario.expected_exit


def test_good_release_passes_every_check_of_every_step() -> None:
    """Each step lasts its hold (2m) at one check per interval (30s) after settle (30s):
    exactly four passing checks per step, never fewer than requiredPasses."""
    names = simulate(PLAN, SCENARIOS["good"]).events
    steps = " ".join(names).split("step.started")[1:]
    assert [chunk.split().count("check.passed") for chunk in steps] == [4, 4, 4]
    assert PLAN.analysis.required_passes <= 4


def test_every_design_scenario_exists_with_its_exit_code() -> None:
    design = {
        "good": 0,
        "bad-errors": 1,
        "bad-latency": 1,
        "crashloop": 1,
        "slow-canary": 1,
        "low-traffic": 6,
    }
    assert {n: SCENARIOS[n].expected_exit for n in design} == design


def test_bad_release_reverts_traffic_then_rolls_back_to_the_base_revision() -> None:
    result = simulate(PLAN, SCENARIOS["bad-errors"])
    world = result.world
    state = result.state
    assert state is not None and state.phase is Phase.ROLLED_BACK
    assert state.last is not None and state.last.outcome is Outcome.ROLLED_BACK
    # the base was revision 1 (install); the canary came with 2; our rollback made 3
    assert [(c.release.name, c.revision) for c in world.cluster.helm_calls] == [("reviews", 1)]
    assert state.base_revision == 1 and state.revision == 2 and state.rollback_revision == 3
    history = world.releases.history(PLAN.release)
    assert history.deployed is not None and history.deployed.description == "Rollback to 1"
    assert world.router.read(PLAN).weights == ALL_STABLE
    # the canary Deployment is back to the stable template
    assert not _canary_differs(world)
    # the weights reached stable before helm was called
    names = result.events
    assert names.index("rollback.traffic_reverted") < names.index("rollback.helm_started")


def test_good_release_ends_on_canary_then_promotion_finalises_to_idle() -> None:
    result = simulate(PLAN, SCENARIOS["good"])
    world = result.world
    assert world.router.read(PLAN).weights == Weights(stable=0, canary=100)
    assert world.cluster.helm_calls == []
    ctrl = controller_for(world)
    world.promote()
    assert run_until(world, ctrl, lambda s: s is not None and s.phase is Phase.IDLE)
    state = current_state(world)
    assert state is not None and state.last is not None
    assert state.last.outcome is Outcome.SUCCEEDED
    assert world.router.read(PLAN).weights == ALL_STABLE
    assert state.base_revision == 3  # the promotion revision is the next rollback target


def test_our_own_rollback_never_starts_a_rollout() -> None:
    result = simulate(PLAN, SCENARIOS["bad-errors"])
    world = result.world
    ctrl = controller_for(world)
    for _ in range(30):
        ctrl.tick()
        world.advance(timedelta(seconds=10))
    state = current_state(world)
    assert state is not None and state.phase is Phase.ROLLED_BACK
    assert "rollout.started" not in world.events.names()[len(result.events) :]


def test_the_failed_canary_redeployed_waits_for_retry() -> None:
    result = simulate(PLAN, SCENARIOS["bad-errors"])
    world = result.world
    ctrl = controller_for(world)
    failed = result.state
    assert failed is not None
    world.release_canary()  # CI re-runs the same bad upgrade
    ctrl.tick()
    state = current_state(world)
    assert state is not None and state.phase is Phase.ROLLED_BACK
    assert "retry" in state.reason
    world.router.set_command(
        PLAN.namespace,
        PLAN.virtual_service.name,
        f'{{"cmd":"retry","rolloutId":"{failed.rollout_id}","by":"oncall"}}',
    )
    ctrl.tick()
    state = current_state(world)
    assert state is not None and state.phase is Phase.PENDING
    assert state.rollout_id == failed.canary_hash[:10] + "-2"


def test_simulate_exit_code_contract_matches_exitcodes_module() -> None:
    assert (
        exitcodes.SUCCEEDED,
        exitcodes.ROLLED_BACK,
        exitcodes.USAGE,
        exitcodes.TIMEOUT,
        exitcodes.ROLLBACK_FAILED,
        exitcodes.SUPERSEDED,
        exitcodes.PAUSED,
    ) == (0, 1, 2, 3, 4, 5, 6)


def _canary_differs(world: SimWorld) -> bool:
    ns = PLAN.namespace
    stable = world.workloads.status(ns, PLAN.workloads.stable)
    canary = world.workloads.status(ns, PLAN.workloads.canary)
    return stable.template_hash != canary.template_hash
