"""One handler per phase (docs/design.md §4's transition table, row by row)."""

from __future__ import annotations

from canary.core import events as ev
from canary.core.decide.flow import (
    advance,
    apply_check,
    begin_rollback,
    finalising,
    on_trouble,
)
from canary.core.decide.rollback import rolling_back
from canary.core.decide.tick import (
    DRIFT_LIMIT,
    FULL_CANARY,
    Tick,
    deployed_number,
    enter_step,
    pin_revisions,
    record_base,
    release_settled,
    start,
)
from canary.core.durations import format_seconds
from canary.core.model import (
    ALL_STABLE,
    PauseKind,
    Phase,
)
from canary.core.plan import OnTrouble


def idle(t: Tick) -> None:
    if not t.obs.canary_differs:
        record_base(t)
        return
    start(t, 1, t.s.base_revision)


def pending(t: Tick) -> None:
    if not release_settled(t):
        t.hold_weights(ALL_STABLE)
        return
    pin_revisions(t)
    if t.obs.canary.available:
        enter_step(t, 0, "canary available")
        return
    started = t.s.step_started_at or t.now
    if t.now - started >= t.plan.progress_deadline:
        why = t.obs.canary.reason or "replicas not available"
        begin_rollback(
            t,
            f"canary {t.plan.workloads.canary} not available within progressDeadline "
            f"{format_seconds(t.plan.progress_deadline)}: {why}",
        )
        return
    t.hold_weights(ALL_STABLE)


def drifted(t: Tick) -> bool:
    """Put back drifted weights. True if this tick's check must not count: the window must not
    reach back into the drift and a new settle begins (design §3); the hold restarts, fails are
    kept (safety). A writer that keeps fighting us pauses the rollout on stable instead."""
    live = t.obs.live_weights
    if live is None or live == t.s.weights:
        return False
    drifts = t.s.drifts + 1
    if drifts >= DRIFT_LIMIT:
        t.update(drifts=drifts)
        t.emit(ev.WEIGHT_DRIFT, warning=True, live=live.to_json(), expected=t.s.weights.to_json())
        on_trouble(
            t,
            OnTrouble.PAUSE,
            PauseKind.WEIGHT_DRIFT,
            f"the weights were changed by someone else {drifts} times in step {t.s.step}; "
            "exclude the managed route's weights from GitOps sync (Argo CD ignoreDifferences) "
            "and `canary resume`",
        )
        return True
    if not t.hold_weights():
        return False
    t.update(step_started_at=t.now, passes=0, drifts=drifts)
    return True


def canary_down(t: Tick) -> bool:
    """A canary that stops being available while it has traffic is rolled back at once: never
    route to an unavailable Deployment (docs/design.md §1), and no check interval is waited for."""
    if t.obs.canary.available or t.s.weights.canary == 0:
        return False
    begin_rollback(
        t,
        f"canary Deployment {t.obs.canary.name} not available with "
        f"{t.s.weights.canary}% of traffic: {t.obs.canary.reason or 'replicas not ready'}",
    )
    return True


def progressing(t: Tick) -> None:
    if canary_down(t) or drifted(t):
        return
    if apply_check(t):
        return
    s = t.s
    step = t.plan.steps[s.step]
    started = s.step_started_at or t.now
    if t.now - started >= step.hold and s.passes >= t.plan.analysis.required_passes:
        advance(t, f"step {s.step} passed {s.passes} checks")


def paused(t: Tick) -> None:
    if t.s.paused is PauseKind.MANUAL:
        if drifted(t):
            return
        # Weights held, checks go on, and a breach still rolls back (docs/design.md §4).
        if not canary_down(t):
            apply_check(t)
    else:
        # Every other pause keeps traffic on stable, also once stable is back after a pause
        # whose write to stable was refused.
        t.hold_weights(ALL_STABLE)


def succeeded(t: Tick) -> None:
    """Traffic stays on the canary until CI promotes it, but never on a canary that is down:
    while it is unavailable, traffic goes to stable (and comes back when it recovers)."""
    if t.obs.canary.available:
        t.hold_weights(FULL_CANARY)
        return
    t.alert_once(
        ev.CANARY_UNAVAILABLE,
        f"canary {t.obs.canary.name} is not available ({t.obs.canary.reason}); "
        "traffic on stable until it recovers",
    )
    t.hold_weights(ALL_STABLE)


def rolled_back(t: Tick) -> None:
    obs, s = t.obs, t.s
    if not obs.canary_differs:
        record_base(t)
        return
    if deployed_number(t) == s.rollback_revision:
        return  # the canary our own rollback left: never a rollout
    if obs.canary.template_hash == s.canary_hash:
        held = f"canary {s.canary_hash[:10]} was rolled back; `canary retry` restarts it"
        if s.reason != held:
            t.update(reason=held)
        return
    start(t, 1, s.base_revision)


def rollback_failed(t: Tick) -> None:
    obs, s = t.obs, t.s
    t.hold_weights()
    if not obs.canary_differs:
        t.update(phase=Phase.IDLE, spec=None, reason="release fixed: canary equals stable")
        t.emit(ev.ROLLOUT_RECOVERED, reason=t.s.reason)
        record_base(t)
        return
    if obs.canary.template_hash != s.canary_hash:
        start(t, 1, s.base_revision)


HANDLERS = {
    Phase.IDLE: idle,
    Phase.PENDING: pending,
    Phase.PROGRESSING: progressing,
    Phase.PAUSED: paused,
    Phase.SUCCEEDED: succeeded,
    Phase.FINALISING: finalising,
    Phase.ROLLING_BACK: rolling_back,
    Phase.ROLLED_BACK: rolled_back,
    Phase.ROLLBACK_FAILED: rollback_failed,
}
