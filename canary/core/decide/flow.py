"""Moves between phases that several handlers share: the next step, a breach, a pause, the
promotion that ends a rollout, and the counting of one check against the plan's limits."""

from __future__ import annotations

from canary.core import events as ev
from canary.core.analysis import CheckResult, evaluate, inadmissible
from canary.core.decide.rollback import rolling_back
from canary.core.decide.tick import FULL_CANARY, Tick, end, enter_step, record_base
from canary.core.durations import format_seconds
from canary.core.model import (
    ALL_STABLE,
    Outcome,
    PauseKind,
    Phase,
    RollbackProgress,
    Verdict,
)
from canary.core.plan import OnTrouble


def advance(t: Tick, why: str) -> None:
    nxt = t.s.step + 1
    if nxt < len(t.plan.steps):
        enter_step(t, nxt, why)
        return
    # Succeeded means the canary carries all traffic and is available (never a verdict for a
    # canary that is down, nor for one a pause left with no traffic).
    if not t.obs.canary.available or not t.write(FULL_CANARY, why):
        return
    t.update(phase=Phase.SUCCEEDED, paused=None, reason=why)
    t.emit(ev.ROLLOUT_SUCCEEDED, reason=why, weights=t.s.weights.to_json())


def begin_rollback(t: Tick, reason: str) -> None:
    """Breach: traffic to stable first (if stable can take it), helm afterwards."""
    t.update(
        phase=Phase.ROLLING_BACK,
        reason=reason,
        paused=None,
        step_started_at=t.now,
        rollback=RollbackProgress(limit=t.plan.rollback.retries),
    )
    t.emit(ev.ROLLBACK_STARTED, warning=True, reason=reason, baseRevision=t.s.base_revision)
    # Same decision: the weights write goes first, helm starts once it has succeeded.
    rolling_back(t)


def on_trouble(t: Tick, policy: OnTrouble, kind: PauseKind, reason: str) -> None:
    """errorLimit / inconclusiveTimeout: pause with traffic on stable, or roll back."""
    if policy is OnTrouble.ROLLBACK:
        begin_rollback(t, reason)
        return
    t.update(phase=Phase.PAUSED, paused=kind, reason=reason)
    t.emit(ev.ROLLOUT_PAUSED, warning=True, reason=reason, kind=kind.value)
    t.write(ALL_STABLE, f"paused: {kind.value}")


def enter_finalising(t: Tick) -> None:
    """Canary equals stable again (CI promoted, or reverted): traffic belongs to stable."""
    if t.s.phase is Phase.SUCCEEDED:
        last = end(t, Outcome.SUCCEEDED, "promoted")
    else:
        reason = f"canary equals stable again while {t.s.phase.value}: analysis did not finish"
        last = end(t, Outcome.BYPASSED, reason)
        t.emit(ev.ROLLOUT_BYPASSED, warning=True, reason=reason)
    t.update(phase=Phase.FINALISING, last=last, step_started_at=t.now, paused=None, reason="")
    t.emit(ev.ROLLOUT_FINALISING, outcome=last.outcome.value)
    record_base(t)
    finalising(t)


def finalising(t: Tick) -> None:
    if t.obs.stable.available and t.write(
        ALL_STABLE, "finalise: stable carries the promoted version"
    ):
        t.update(phase=Phase.IDLE, spec=None, reason="", step=0)
        t.emit(ev.ROLLOUT_FINALISED, outcome=t.s.last.outcome.value if t.s.last else None)
        record_base(t)
        return
    started = t.s.step_started_at or t.now
    if t.now - started >= t.plan.finalise_timeout:
        t.alert_once(
            ev.ROLLOUT_FINALISE_STALLED,
            f"stable {t.plan.workloads.stable} not available "
            f"{format_seconds(t.plan.finalise_timeout)} after promotion: {t.obs.stable.reason}",
        )


def pause_invalid(t: Tick, reason: str) -> None:
    """The plan (its definition, or one of its queries) is wrong: pause with traffic on
    stable until a human fixes it and resumes."""
    t.emit(ev.PLAN_INVALID, warning=True, reason=reason)
    t.update(phase=Phase.PAUSED, paused=PauseKind.INVALID_PLAN, reason=reason)
    t.emit(ev.ROLLOUT_PAUSED, warning=True, reason=reason, kind=PauseKind.INVALID_PLAN.value)
    t.write(ALL_STABLE, "plan invalid")


def apply_check(t: Tick) -> bool:
    """Count this tick's check (if any) and act on the limits. True if the phase changed."""
    sample = t.obs.metrics
    s = t.s
    a = t.plan.analysis
    if sample is None or sample.rollout_id != s.rollout_id or sample.step != s.step:
        return False
    if inadmissible(a, sample.window, s.step_started_at or t.now, s.last_check_at, t.now):
        return False  # a sample that would judge the step outside its own time never counts
    result = evaluate(
        a,
        sample,
        canary_available=t.obs.canary.available,
        canary_unavailable_reason=t.obs.canary.reason,
        weights=s.weights,
    )
    if result.misconfigured:
        emit_check(t, result)
        t.update(last_check_at=t.now)
        pause_invalid(t, f"a query of plan {t.plan.key} is wrong: {result.misconfigured}")
        return True
    v = result.verdict
    if v is Verdict.PASS:
        t.update(
            passes=s.passes + 1, fails=0, errors=0, inconclusive_since=None, first_fail_at=None
        )
    elif v is Verdict.FAIL:
        t.update(
            fails=s.fails + 1,
            passes=0,
            errors=0,
            inconclusive_since=None,
            first_fail_at=s.first_fail_at or t.now,
        )
    elif v is Verdict.ERROR:
        t.update(errors=s.errors + 1)
    else:
        t.update(inconclusive_since=s.inconclusive_since or t.now, errors=0)
    t.update(last_check_at=t.now)
    emit_check(t, result)
    s = t.s
    if v is Verdict.FAIL and (result.critical or s.fails >= a.failure_limit):
        why = (
            "critical metric failed" if result.critical else f"{s.fails} consecutive failed checks"
        )
        begin_rollback(t, f"{why}: {result.reason}")
        return True
    if v is Verdict.ERROR and s.errors >= a.error_limit:
        on_trouble(
            t, a.on_error, PauseKind.ERRORS, f"{s.errors} consecutive check errors: {result.reason}"
        )
        return True
    if (
        v is Verdict.INCONCLUSIVE
        and s.inconclusive_since is not None
        and t.now - s.inconclusive_since >= a.inconclusive_timeout
    ):
        on_trouble(
            t,
            a.on_inconclusive,
            PauseKind.INCONCLUSIVE,
            f"inconclusive for {format_seconds(t.now - s.inconclusive_since)}: {result.reason}",
        )
        return True
    return False


CHECK_EVENTS = {
    Verdict.PASS: ev.CHECK_PASSED,
    Verdict.FAIL: ev.CHECK_FAILED,
    Verdict.ERROR: ev.CHECK_ERROR,
    Verdict.INCONCLUSIVE: ev.CHECK_INCONCLUSIVE,
}


def emit_check(t: Tick, result: CheckResult) -> None:
    t.emit(
        CHECK_EVENTS[result.verdict],
        warning=result.verdict is not Verdict.PASS,
        step=t.s.step,
        weight=t.s.weights.canary,
        passes=t.s.passes,
        fails=t.s.fails,
        errors=t.s.errors,
        **result.to_fields(),
    )
