"""``decide(plan, state, observation, now) -> Decision``: the phase machine of docs/design.md §4.

Pure: no I/O, no clock, no memory between calls. One call judges one plan on one tick. The
transition table of design §4 maps onto the handlers below, one per phase, after the rules that
apply in every phase (route broken, plan deleted or invalid, lost state, the canary changing).

Where docs/design.md §4 is silent we chose, and docs/decisions.md records why:

* ``abort`` works in every active phase, and in RollbackFailed (one more helm attempt);
  ``promote``/``promote --full`` also work from a Paused rollout (a human decided).
* A weight write never raises the share of a Deployment that is not available: if stable is
  unavailable when traffic should go back to it, the weights are held and ``stable.unavailable``
  is raised (docs/design.md §1, "hold and alert").
* A canary deployed while RollbackFailed starts a new rollout with the same base revision.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from canary.core import events as ev
from canary.core.decide.commands import command
from canary.core.decide.flow import enter_finalising, pause_invalid
from canary.core.decide.phases import HANDLERS
from canary.core.decide.tick import (
    DRIFT_LIMIT,
    HELM_RECORD_GRACE,
    ROLLBACK_BACKOFF,
    ROLLBACK_BACKOFF_MAX,
    ROLLBACK_PENDING_GRACE,
    Tick,
    end,
    rollback_backoff,
    start,
    supersede,
)
from canary.core.errors import PlanError
from canary.core.model import (
    ALL_STABLE,
    SUPERSEDABLE_PHASES,
    Decision,
    Observation,
    Outcome,
    PauseKind,
    Phase,
    RolloutState,
)
from canary.core.plan import Plan
from canary.core.snapshot import plan_from_spec, plan_hash

__all__ = [
    "DRIFT_LIMIT",
    "HELM_RECORD_GRACE",
    "ROLLBACK_BACKOFF",
    "ROLLBACK_BACKOFF_MAX",
    "ROLLBACK_PENDING_GRACE",
    "decide",
    "plan_in_force",
    "rollback_backoff",
    "wants_check",
]


def decide(plan: Plan, state: RolloutState | None, obs: Observation, now: datetime) -> Decision:
    """One tick for one plan.

    ``plan`` is the plan as configured now (for a deleted plan: its last definition). The
    rollout under way keeps running under the snapshot in its state (:func:`plan_in_force`);
    a rollout that starts on this tick snapshots ``plan``. ``state`` is None when the
    annotation is missing or unreadable (``obs.state_lost`` says which).
    """
    original = state
    running = plan_in_force(plan, state) or plan
    if state is not None and not 0 <= state.step < len(running.steps):
        # A state that parses but cannot be true (hand-edited, or a snapshot of another plan):
        # treat it as lost, the safe recovery of docs/design.md §4, never a crash every tick.
        lost = f"canary.dev/state names step {state.step}, the plan has {len(running.steps)}"
        obs = replace(obs, state_lost=lost)
        state, running = None, plan
    t = Tick(running, state or RolloutState(plan=plan.key), obs, now, current=plan)
    _run(t, state is None)
    return t.decision(original)


def _lost(t: Tick) -> None:
    """No readable state. docs/design.md §4: ``state.lost``, weights to stable, start over from
    Pending. Without memory a stripped annotation and a controller installed mid-rollout look
    the same; both are reported, since both restart the analysis."""
    obs = t.obs
    stripped = obs.live_weights is not None and obs.live_weights != ALL_STABLE
    if obs.state_lost or stripped or obs.canary_differs:
        reason = obs.state_lost or (
            f"{t.plan.key}: no canary.dev/state annotation while "
            + (
                f"the weights are {obs.live_weights}"
                if stripped
                else "the canary differs from stable (annotation removed, or canary installed "
                "mid-rollout)"
            )
            + ": starting over from Pending with traffic on stable"
        )
        t.emit(ev.STATE_LOST, warning=True, reason=reason)
        t.update(weights=obs.live_weights or ALL_STABLE)
        t.write(ALL_STABLE, "state lost")


def _deleted(t: Tick) -> bool:
    """A deleted plan sends its traffic to stable (docs/design.md §3). A rollback under way finishes
    first (the release must end consistent); then the state rests Idle. True if handled."""
    obs = t.obs
    if t.s.phase is Phase.ROLLING_BACK:
        return False
    t.consume = obs.command is not None or bool(obs.command_error)
    if t.s.phase is Phase.IDLE and t.live == ALL_STABLE:
        return True
    refused = t.blocked(ALL_STABLE)
    if refused:
        t.alert_once(ev.PLAN_DELETED, f"plan deleted, but {refused}")
        return True
    t.emit(ev.PLAN_DELETED, warning=True, phase=t.s.phase.value)
    t.write(ALL_STABLE, "plan deleted")
    if t.s.phase in SUPERSEDABLE_PHASES:
        t.update(last=end(t, Outcome.ABANDONED, "plan deleted: traffic on stable"))
    t.update(phase=Phase.IDLE, spec=None, paused=None, reason="plan deleted: traffic on stable")
    return True


def _invalid(t: Tick) -> bool:
    """An invalid plan's rollout is paused with traffic on stable (docs/design.md §3)."""
    s = t.s
    if (
        not t.obs.plan_error
        or s.phase not in SUPERSEDABLE_PHASES
        or s.paused is PauseKind.INVALID_PLAN
    ):
        return False
    pause_invalid(t, t.obs.plan_error)
    return True


def _run(t: Tick, no_state: bool) -> None:
    obs = t.obs
    if no_state:
        _lost(t)
    if obs.route_error:
        t.alert_once(ev.ROUTE_INVALID, obs.route_error, key=f"route:{obs.route_error}")
        return
    if obs.release_error:
        t.alert_once(ev.RELEASE_UNREADABLE, obs.release_error, key="release.unreadable")
    if obs.plan_deleted and _deleted(t):
        return
    if _invalid(t):
        return
    s = t.s
    phase = s.phase
    if phase in SUPERSEDABLE_PHASES or phase is Phase.FINALISING:
        chash = obs.canary.template_hash
        if obs.canary_differs and chash != s.canary_hash:
            if phase is not Phase.FINALISING:
                supersede(t, f"canary changed to {chash[:10]}")
            start(t, 1, s.base_revision)
            _invalid(t)  # a rollout started under an invalid plan pauses at once
            return
        if not obs.canary_differs and phase is not Phase.FINALISING:
            enter_finalising(t)
            return
    if command(t):
        return
    HANDLERS[t.s.phase](t)
    _invalid(t)


def wants_check(state: RolloutState | None) -> bool:
    """Whether this tick should query metrics for the rollout (checks go on in a manual pause)."""
    if state is None:
        return False
    return state.phase is Phase.PROGRESSING or (
        state.phase is Phase.PAUSED and state.paused is PauseKind.MANUAL
    )


def plan_in_force(current: Plan | None, state: RolloutState | None) -> Plan | None:
    """The plan a tick uses: the snapshot taken when the rollout started, while one is under
    way (edits apply to the next rollout); else the current plan."""
    if state is not None and state.spec is not None and state.phase is not Phase.IDLE:
        if current is not None and state.plan_hash == plan_hash(current):
            return current  # not edited since the rollout started: no need to parse the snapshot
        ns, _, name = state.plan.partition("/")
        try:
            return plan_from_spec(dict(state.spec), name=name, namespace=ns)
        except PlanError:  # a snapshot that no longer validates: fall back to the current plan
            return current
    return current
