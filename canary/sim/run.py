"""Drive the real controller over a :class:`SimWorld`: ``canary simulate``, ``canary demo``
and the scenario tests all run through here, so what the demo shows is what the tests assert.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TextIO

from canary.core import exitcodes
from canary.core.analysis import DEFAULT_SCRAPE_INTERVAL
from canary.core.model import Phase, RolloutState, state_from_json
from canary.core.plan import Plan
from canary.shell.controller import Controller, Ports
from canary.shell.emitter import Emitter, Listener
from canary.sim.scenarios import SCENARIOS, Scenario
from canary.sim.world import SimWorld

#: Simulated time between ticks: a sixth of the default check interval, like a watch-driven
#: controller that also wakes on its interval job.
DEFAULT_TICK = timedelta(seconds=5)
#: Long enough for 3 steps × (hold + checks) plus a rollback, with a wide margin.
DEFAULT_LIMIT = timedelta(hours=2)

__all__ = [
    "DEFAULT_LIMIT",
    "DEFAULT_TICK",
    "SCENARIOS",
    "SimResult",
    "demo",
    "outcome",
    "simulate",
]


@dataclass
class SimResult:
    exit_code: int
    summary: str
    state: RolloutState | None
    world: SimWorld
    events: list[str] = field(default_factory=list)


class _Recorder:
    def __init__(self, listener: Listener | None) -> None:
        self.names: list[str] = []
        self.records: list[Mapping[str, Any]] = []
        self.listener = listener

    def __call__(self, record: Mapping[str, Any]) -> None:
        self.names.append(str(record.get("event")))
        self.records.append(record)
        if self.listener is not None:
            self.listener(record)


def controller_for(world: SimWorld, listener: Listener | None = None) -> Controller:
    """The real controller over the world's ports, judging at the world's scrape interval."""
    ports = Ports(
        router=world.router,
        workloads=world.workloads,
        metrics=world.metrics,
        releases=world.releases,
        clock=world.clock,
    )
    listeners = [listener] if listener is not None else []
    return Controller(
        ports=ports,
        emitter=Emitter(world.events, listeners=listeners),
        plans={world.plan.key: world.plan},
        scrape_interval=world.metrics.scrape_interval,
    )


def current_state(world: SimWorld) -> RolloutState | None:
    raw = world.state_raw()
    return state_from_json(raw) if raw is not None else None


def run_until(
    world: SimWorld,
    ctrl: Controller,
    done: Callable[[RolloutState | None], bool],
    *,
    tick: timedelta = DEFAULT_TICK,
    limit: timedelta = DEFAULT_LIMIT,
) -> bool:
    """Tick and advance simulated time until ``done(state)``; False if ``limit`` passed first."""
    deadline = world.clock.now() + limit
    while True:
        ctrl.tick()
        if done(current_state(world)):
            return True
        if world.clock.now() >= deadline:
            return False
        world.advance(tick)


def simulate(
    plan: Plan,
    scenario: Scenario,
    *,
    listener: Listener | None = None,
    limit: timedelta = DEFAULT_LIMIT,
    tick: timedelta = DEFAULT_TICK,
    scrape_interval: timedelta = DEFAULT_SCRAPE_INTERVAL,
) -> SimResult:
    """Release the scenario's canary and run until the rollout has a verdict (docs/design.md §5)."""
    world = SimWorld.create(plan, scenario, scrape_interval=scrape_interval)
    recorder = _Recorder(listener)
    ctrl = controller_for(world, recorder)
    ctrl.tick()  # Idle: the base revision is recorded
    world.release_canary()
    code: list[int] = []

    def done(state: RolloutState | None) -> bool:
        verdict = exitcodes.verdict_of(state) if state and state.rollout_id else None
        if verdict is not None:
            code.append(verdict)
        return verdict is not None

    finished = run_until(world, ctrl, done, tick=tick, limit=limit)
    state = current_state(world)
    if not finished:
        return SimResult(
            exitcodes.TIMEOUT, f"no verdict within {limit}", state, world, recorder.names
        )
    return SimResult(code[0], outcome(state), state, world, recorder.names)


def outcome(state: RolloutState | None) -> str:
    """``Phase: reason`` of a rollout: the reason of its outcome once it ended, else the
    state's own (why it paused, why it succeeded); just the phase when there is no reason. An
    earlier rollout's outcome (``last`` of another rollout id) is never this one's reason."""
    if state is None:
        return "?"
    last = state.last
    if last is not None and last.rollout_id == state.rollout_id and state.phase is not Phase.PAUSED:
        reason = last.reason
    else:
        reason = state.reason
    return f"{state.phase.value}: {reason}" if reason else state.phase.value


def _verdict_after(previous: str) -> Callable[[RolloutState | None], bool]:
    """done() for :func:`run_until`: a rollout other than ``previous`` has ended (or paused),
    so ``canary wait`` would exit now (``previous``'s own outcome never counts)."""

    def done(state: RolloutState | None) -> bool:
        if state is None or not state.rollout_id or state.rollout_id == previous:
            return False
        return exitcodes.verdict_of(state) is not None

    return done


def demo(
    plan: Plan,
    listener: Listener,
    out: TextIO,
    *,
    scrape_interval: timedelta = DEFAULT_SCRAPE_INTERVAL,
    limit: timedelta = DEFAULT_LIMIT,
) -> int:
    """A good release and then a bad one, back to back, on the simulator (``canary demo``).

    Exit 0 when the good release succeeds, is promoted and finalises, and the bad one is rolled
    back; 1 otherwise, after saying which step went wrong and why (then the rest is skipped).
    """
    good = SCENARIOS["good"]
    bad = SCENARIOS["bad-errors"]
    world = SimWorld.create(plan, good, scrape_interval=scrape_interval)
    good_image = world.canary_image
    bad_image = good_image.rsplit(":", 1)[0] + ":bad"
    world.mesh.behaviours[bad_image] = bad.canary
    recorder = _Recorder(listener)
    ctrl = controller_for(world, recorder)

    def say(text: str) -> None:
        print(f"\n── {text}", file=out, flush=True)

    def run(done: Callable[[RolloutState | None], bool]) -> tuple[bool, RolloutState | None]:
        finished = run_until(world, ctrl, done, limit=limit)
        return finished, current_state(world)

    def ended(finished: bool, state: RolloutState | None) -> str:
        return outcome(state) if finished else f"no verdict within {limit} ({outcome(state)})"

    say(
        f"{plan.key}: release {plan.release.name} installed; all traffic on {plan.workloads.stable}"
    )
    ctrl.tick()

    say(f"CI: helm upgrade {plan.release.name} --set canary.image={good_image}   (a good release)")
    world.release_canary(good_image)
    finished, state = run(_verdict_after(""))
    if not (finished and state is not None and state.phase is Phase.SUCCEEDED):
        code = exitcodes.verdict_of(state) if finished else exitcodes.TIMEOUT
        say(
            f"CI: `canary wait` exited {code} — {ended(finished, state)}: the good release "
            "did not succeed, so no promotion"
        )
        say("summary")
        print(f"   good release: FAILED — {ended(finished, state)}", file=out)
        print("   bad release:  not released", file=out)
        return 1

    good_id = state.rollout_id
    say("CI: `canary wait` exited 0 → promote: helm upgrade giving stable the canary's template")
    world.promote()
    finished, state = run(lambda s: s is not None and s.phase is Phase.IDLE)
    if not finished:
        say("summary")
        print(
            f"   good release: FAILED — promoted, but not back to Idle within {limit} "
            f"({outcome(state)})",
            file=out,
        )
        print("   bad release:  not released", file=out)
        return 1

    say(f"CI: helm upgrade {plan.release.name} --set canary.image={bad_image}   (a bad release)")
    world.release_canary(bad_image)
    first = len(recorder.records)
    finished, state = run(_verdict_after(good_id))
    ok_bad = finished and state is not None and state.phase is Phase.ROLLED_BACK

    bad_records = recorder.records[first:]
    failed_at = next((r.get("at") for r in bad_records if r["event"] == "check.failed"), None)
    safe_at = next(
        (r.get("at") for r in bad_records if r["event"] == "rollback.traffic_reverted"), None
    )
    calls = [f"helm rollback {c.release.name} {c.revision}" for c in world.cluster.helm_calls]
    say("summary")
    print("   good release: Succeeded, promoted, back to Idle", file=out)
    if ok_bad:
        print(f"   bad release:  {outcome(state)}", file=out)
    else:
        print(f"   bad release:  FAILED, not rolled back — {ended(finished, state)}", file=out)
    if failed_at is not None or safe_at is not None:
        print(f"   first failed check {failed_at}, traffic on stable {safe_at}", file=out)
    print(
        f"   helm calls: {', '.join(calls) or 'none'}; base revision "
        f"{state.base_revision if state else '?'}",
        file=out,
    )
    return 0 if ok_bad else 1
