"""``decide(plan, state, observation, now) -> Decision``: the phase machine of DESIGN §4.

Pure: no I/O, no clock, no memory between calls. One call judges one plan on one tick. The
transition table of DESIGN §4 maps onto the handlers below, one per phase, after the rules that
apply in every phase (route broken, plan deleted or invalid, lost state, the canary changing).

Where DESIGN §4 is silent we chose, and docs/decisions.md records why:

* ``abort`` works in every active phase, and in RollbackFailed (one more helm attempt);
  ``promote``/``promote --full`` also work from a Paused rollout (a human decided).
* A weight write never raises the share of a Deployment that is not available: if stable is
  unavailable when traffic should go back to it, the weights are held and ``stable.unavailable``
  is raised (DESIGN §1, "hold and alert").
* A canary deployed while RollbackFailed starts a new rollout with the same base revision.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from canary.core import events as ev
from canary.core.analysis import CheckResult, evaluate, inadmissible
from canary.core.errors import PlanError
from canary.core.model import (
    ACTIVE_PHASES,
    ALL_STABLE,
    CommandName,
    Decision,
    Event,
    LastOutcome,
    Observation,
    Outcome,
    PauseKind,
    Phase,
    RollbackProgress,
    RolloutState,
    Verdict,
    Weights,
    rollback_description,
    rollout_id,
)
from canary.core.plan import OnTrouble, Plan
from canary.core.spec import plan_from_spec, plan_hash, plan_to_spec

#: First retry of a failed helm rollback after 10 s: long enough for an API-server blip to pass.
ROLLBACK_BACKOFF = timedelta(seconds=10)
#: Backoff doubles per failure up to 2 min, so a broken release reaches RollbackFailed quickly.
ROLLBACK_BACKOFF_MAX = timedelta(minutes=2)

#: Three rewrites in one step mean a writer that fights us (GitOps self-heal without
#: ignoreDifferences): the step can never be judged, so pause on stable and tell a human.
DRIFT_LIMIT = 3

#: The weights of a Succeeded rollout (the last step is always 100).
FULL_CANARY = Weights.canary_at(100)

#: Phases in which the canary has a rollout of its own that a new canary supersedes.
_SUPERSEDABLE = ACTIVE_PHASES - {Phase.ROLLING_BACK}


#: How long after an attempt started by another process (before a restart or a lease move)
#: we wait for helm to record it before running it again: helm records its pending revision
#: within a second or two of starting, and a new leader cannot act sooner than a lease
#: duration (15 s) after the old one stopped anyway.
HELM_RECORD_GRACE = timedelta(seconds=15)
#: How long past ``rollback.timeout`` our rollback's revision may stay ``pending-*`` before we
#: stop waiting for helm to settle it: the helm adapter waits for helm for timeout + 60 s, so
#: after this no helm of ours can still be running.
ROLLBACK_PENDING_GRACE = timedelta(minutes=2)


def rollback_backoff(attempts: int) -> timedelta:
    """Delay before helm attempt ``attempts + 1``."""
    return min(ROLLBACK_BACKOFF * (1 << max(attempts - 1, 0)), ROLLBACK_BACKOFF_MAX)


class _Tick:
    """The decision under construction: the evolving state, events, weights and actions."""

    def __init__(
        self, plan: Plan, state: RolloutState, obs: Observation, now: datetime, current: Plan
    ) -> None:
        self.plan = plan  # the plan in force for the rollout under way (its snapshot)
        self.current = current  # the plan as configured now: the next rollout snapshots it
        self.obs = obs
        self.now = now
        self.s = state
        self.events: list[Event] = []
        self.target: Weights | None = None
        self.consume = False
        self.rollback_rev: int | None = None
        self.active_before = frozenset(state.notices)
        self.raised: list[str] = []

    # -- building blocks ------------------------------------------------------------------

    def emit(self, name: str, *, warning: bool = False, **fields: Any) -> None:
        if self.s.rollout_id and "rolloutId" not in fields:
            fields = {"rolloutId": self.s.rollout_id, **fields}
        self.events.append(Event(name=name, fields=fields, warning=warning))

    def update(self, **changes: Any) -> None:
        self.s = replace(self.s, **changes)

    def alert_once(self, name: str, reason: str, key: str = "", **fields: Any) -> None:
        """A warning repeated every tick would flood logs and Events: it is emitted when its
        condition starts (``key``, default the event name, however its wording changes) and
        again only after a tick on which the condition did not hold."""
        notice = key or name
        if notice not in self.raised:
            self.raised.append(notice)
            if notice not in self.active_before:
                self.emit(name, warning=True, reason=reason, **fields)

    @property
    def live(self) -> Weights | None:
        return self.target if self.target is not None else self.obs.live_weights

    def blocked(self, weights: Weights) -> str:
        """Why ``weights`` may not be written now ("" if they may): never raise the share of a
        Deployment that is not available (DESIGN §1)."""
        live = self.live
        if weights == live:
            return ""
        if weights.stable > (live.stable if live else 0) and not self.obs.stable.available:
            return (
                f"stable Deployment {self.obs.stable.name} is not available "
                f"({self.obs.stable.reason or 'replicas not ready'}); weights held at {live}"
            )
        if weights.canary > (live.canary if live else 0) and not self.obs.canary.available:
            return (
                f"canary Deployment {self.obs.canary.name} is not available "
                f"({self.obs.canary.reason or 'replicas not ready'}); weights held at {live}"
            )
        return ""

    def write(self, weights: Weights, why: str) -> bool:
        """Set the weights, unless that raises the share of an unavailable Deployment."""
        live = self.live
        if weights == live:
            self.update(weights=weights)
            return True
        refused = self.blocked(weights)
        if refused:
            if weights.stable > (live.stable if live else 0):
                self.alert_once(ev.STABLE_UNAVAILABLE, refused, wanted=weights.to_json())
            return False
        self.target = weights
        self.update(weights=weights)
        self.emit(
            ev.WEIGHT_SET,
            stable=weights.stable,
            canary=weights.canary,
            previous=live.to_json() if live else None,
            why=why,
        )
        return True

    def hold_weights(self, target: Weights | None = None) -> bool:
        """We own the weights during a rollout: put back ``target`` (default: what we last
        wrote). A rewrite of weights we had written is a ``weight.drift``; one refused
        (a Deployment is unavailable) is reported once, not every tick. True if rewritten."""
        want = target or self.s.weights
        live = self.obs.live_weights
        if live is None or live == want:
            return False
        drift = self.s.weights == want
        refused = self.blocked(want)
        if refused:
            name = ev.WEIGHT_DRIFT if drift else ev.STABLE_UNAVAILABLE
            self.alert_once(name, f"cannot restore {want}: {refused}", expected=want.to_json())
            return False
        if drift:
            self.emit(ev.WEIGHT_DRIFT, warning=True, live=live.to_json(), expected=want.to_json())
        return self.write(want, "drift" if drift else "traffic to stable")

    def decision(self, original: RolloutState | None) -> Decision:
        self.s = replace(self.s, notices=tuple(sorted(self.raised)))
        changed = (
            original is None
            or self.s != original
            or self.target is not None
            or self.consume
            or self.rollback_rev is not None
        )
        state = replace(self.s, updated_at=self.now) if changed else self.s
        weights = self.target
        if weights is not None and weights == self.obs.live_weights:
            weights = None
        return Decision(
            state=state,
            weights=weights,
            events=tuple(self.events),
            consume_command=self.consume,
            start_rollback=self.rollback_rev,
            changed=changed,
        )


# -- rollout lifecycle -------------------------------------------------------------------------


def _deployed_number(t: _Tick) -> int | None:
    rel = t.obs.release
    dep = rel.deployed if rel else None
    return dep.number if dep else None


def _record_base(t: _Tick) -> None:
    """While canary equals stable, the deployed revision is the rollback target (DESIGN §1)."""
    number = _deployed_number(t)
    if number is not None and number != t.s.base_revision and not t.obs.canary_differs:
        t.update(base_revision=number)
        t.emit(ev.BASE_RECORDED, baseRevision=number)


def _release_settled(t: _Tick) -> bool:
    """DESIGN §7: while the release is pending-* (a helm upgrade or rollback still running) we
    do not act on it; the canary's revision is not known until helm has finished."""
    rel = t.obs.release
    if rel is None or not rel.pending:
        return True
    status = rel.latest.status.value if rel.latest else "pending"
    t.alert_once(
        ev.RELEASE_PENDING,
        f"release {t.plan.release.name} is {status}; waiting for helm to finish",
    )
    return False


def _pin_revisions(t: _Tick) -> None:
    """Record the revision that brought the canary, and the base if it is unknown (DESIGN §1:
    the newest earlier revision that is not failed, with a warning)."""
    rel = t.obs.release
    if rel is None or rel.pending or rel.latest is None or t.s.revision is not None:
        return
    revision = rel.latest.number
    t.update(revision=revision)
    if t.s.base_revision is None:
        base = rel.fallback_base(revision)
        t.update(base_revision=base)
        t.emit(
            ev.BASE_FALLBACK,
            warning=True,
            baseRevision=base,
            reason="base revision unknown (controller installed mid-rollout or state lost); "
            "using the newest earlier revision that is not failed",
        )


def _start(t: _Tick, attempt: int, base: int | None) -> None:
    """A rollout of the live canary begins: Pending, traffic on stable. It runs under the plan
    as configured now (edits apply to the next rollout, DESIGN §3)."""
    t.plan = t.current
    chash = t.obs.canary.template_hash
    # A rollout id names one rollout: the same canary started again (redeployed after it ended,
    # or after a human fixed a failed rollback) gets the next attempt, never a reused id.
    prefix = rollout_id(chash, 0).rpartition("-")[0]
    earlier = [t.s.rollout_id, t.s.last.rollout_id if t.s.last else ""]
    used = [
        int(n) for p, _, n in (r.rpartition("-") for r in earlier) if p == prefix and n.isdigit()
    ]
    attempt = max([attempt, *(n + 1 for n in used)])
    t.s = RolloutState(
        plan=t.plan.key,
        phase=Phase.PENDING,
        rollout_id=rollout_id(chash, attempt),
        canary_hash=chash,
        stable_hash=t.obs.stable.template_hash,
        base_revision=base,
        step=0,
        weights=t.s.weights,
        step_started_at=t.now,
        plan_hash=plan_hash(t.plan),
        last=t.s.last,
        attempt=attempt,
        spec=plan_to_spec(t.plan),
    )
    settled = _release_settled(t)
    if settled:
        _pin_revisions(t)
    t.emit(
        ev.ROLLOUT_STARTED,
        canaryHash=chash,
        revision=t.s.revision,
        baseRevision=t.s.base_revision,
        steps=[s.weight for s in t.plan.steps],
        canary=t.plan.workloads.canary,
    )
    t.write(ALL_STABLE, "rollout starts with all traffic on stable")


def _end(t: _Tick, outcome: Outcome, reason: str) -> LastOutcome:
    return LastOutcome(
        rollout_id=t.s.rollout_id,
        canary_hash=t.s.canary_hash,
        outcome=outcome,
        reason=reason,
        ended_at=t.now,
    )


def _supersede(t: _Tick, reason: str) -> None:
    t.update(last=_end(t, Outcome.SUPERSEDED, reason))
    t.emit(ev.ROLLOUT_SUPERSEDED, reason=reason)


def _enter_step(t: _Tick, index: int, why: str = "") -> bool:
    """Progressing at step ``index``: write its weight; the hold and the counters restart."""
    if not t.obs.canary.available:
        return False
    step = t.plan.steps[index]
    t.update(
        phase=Phase.PROGRESSING,
        step=index,
        step_started_at=t.now,
        passes=0,
        fails=0,
        errors=0,
        inconclusive_since=None,
        first_fail_at=None,
        drifts=0,
        paused=None,
        reason="",
    )
    t.emit(ev.STEP_STARTED, step=index, weight=step.weight, hold=_secs(step.hold), why=why)
    return t.write(Weights.canary_at(step.weight), f"step {index}")


def _advance(t: _Tick, why: str) -> None:
    nxt = t.s.step + 1
    if nxt < len(t.plan.steps):
        _enter_step(t, nxt, why)
        return
    # Succeeded means the canary carries all traffic and is available (never a verdict for a
    # canary that is down, nor for one a pause left with no traffic).
    if not t.obs.canary.available or not t.write(FULL_CANARY, why):
        return
    t.update(phase=Phase.SUCCEEDED, paused=None, reason=why)
    t.emit(ev.ROLLOUT_SUCCEEDED, reason=why, weights=t.s.weights.to_json())


def _begin_rollback(t: _Tick, reason: str) -> None:
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
    _rolling_back(t)


def _traffic_reverted(t: _Tick) -> None:
    """All traffic is on stable again; say how long that took after the first failed check."""
    first = t.s.first_fail_at
    t.emit(
        ev.ROLLBACK_TRAFFIC_REVERTED,
        firstFailAt=_iso(first),
        secondsSinceFirstFail=(t.now - first).total_seconds() if first else None,
    )


def _on_trouble(t: _Tick, policy: OnTrouble, kind: PauseKind, reason: str) -> None:
    """errorLimit / inconclusiveTimeout: pause with traffic on stable, or roll back."""
    if policy is OnTrouble.ROLLBACK:
        _begin_rollback(t, reason)
        return
    t.update(phase=Phase.PAUSED, paused=kind, reason=reason)
    t.emit(ev.ROLLOUT_PAUSED, warning=True, reason=reason, kind=kind.value)
    t.write(ALL_STABLE, f"paused: {kind.value}")


def _enter_finalising(t: _Tick) -> None:
    """Canary equals stable again (CI promoted, or reverted): traffic belongs to stable."""
    if t.s.phase is Phase.SUCCEEDED:
        last = _end(t, Outcome.SUCCEEDED, "promoted")
    else:
        reason = f"canary equals stable again while {t.s.phase.value}: analysis did not finish"
        last = _end(t, Outcome.BYPASSED, reason)
        t.emit(ev.ROLLOUT_BYPASSED, warning=True, reason=reason)
    t.update(phase=Phase.FINALISING, last=last, step_started_at=t.now, paused=None, reason="")
    t.emit(ev.ROLLOUT_FINALISING, outcome=last.outcome.value)
    _record_base(t)
    _finalising(t)


# -- checks ------------------------------------------------------------------------------------


def _apply_check(t: _Tick) -> bool:
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
        _emit_check(t, result)
        t.update(last_check_at=t.now)
        _pause_invalid(t, f"a query of plan {t.plan.key} is wrong: {result.misconfigured}")
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
    _emit_check(t, result)
    s = t.s
    if v is Verdict.FAIL and (result.critical or s.fails >= a.failure_limit):
        why = (
            "critical metric failed" if result.critical else f"{s.fails} consecutive failed checks"
        )
        _begin_rollback(t, f"{why}: {result.reason}")
        return True
    if v is Verdict.ERROR and s.errors >= a.error_limit:
        _on_trouble(
            t, a.on_error, PauseKind.ERRORS, f"{s.errors} consecutive check errors: {result.reason}"
        )
        return True
    if (
        v is Verdict.INCONCLUSIVE
        and s.inconclusive_since is not None
        and t.now - s.inconclusive_since >= a.inconclusive_timeout
    ):
        _on_trouble(
            t,
            a.on_inconclusive,
            PauseKind.INCONCLUSIVE,
            f"inconclusive for {_secs(t.now - s.inconclusive_since)}: {result.reason}",
        )
        return True
    return False


_CHECK_EVENTS = {
    Verdict.PASS: ev.CHECK_PASSED,
    Verdict.FAIL: ev.CHECK_FAILED,
    Verdict.ERROR: ev.CHECK_ERROR,
    Verdict.INCONCLUSIVE: ev.CHECK_INCONCLUSIVE,
}


def _emit_check(t: _Tick, result: CheckResult) -> None:
    t.emit(
        _CHECK_EVENTS[result.verdict],
        warning=result.verdict is not Verdict.PASS,
        step=t.s.step,
        weight=t.s.weights.canary,
        passes=t.s.passes,
        fails=t.s.fails,
        errors=t.s.errors,
        **result.to_fields(),
    )


# -- commands ----------------------------------------------------------------------------------


def _command(t: _Tick) -> bool:
    """Apply ``canary.dev/command``; consumed in the same write. True if the phase changed."""
    obs, s = t.obs, t.s
    if obs.command_error:
        t.consume = True
        t.emit(ev.COMMAND_DROPPED, warning=True, reason=obs.command_error)
        return False
    cmd = obs.command
    if cmd is None:
        return False
    t.consume = True
    if cmd.rollout_id != s.rollout_id:
        current = s.rollout_id or "none"
        t.emit(
            ev.COMMAND_DROPPED,
            warning=True,
            cmd=cmd.cmd.value,
            by=cmd.by,
            reason=f"command for rollout {cmd.rollout_id}, but the current rollout is {current}",
        )
        return False

    def drop(reason: str) -> bool:
        t.emit(ev.COMMAND_DROPPED, warning=True, cmd=cmd.cmd.value, by=cmd.by, reason=reason)
        return False

    def accept() -> None:
        t.emit(ev.COMMAND_ACCEPTED, cmd=cmd.cmd.value, by=cmd.by, phase=s.phase.value)

    name, phase = cmd.cmd, s.phase
    by = cmd.by or "unknown"
    if name is CommandName.ABORT:
        if phase in _SUPERSEDABLE:
            accept()
            _begin_rollback(t, f"aborted by {by}")
            return True
        if phase is Phase.ROLLBACK_FAILED:
            accept()
            rb = s.rollback or RollbackProgress()
            t.update(
                phase=Phase.ROLLING_BACK,
                rollback=replace(rb, limit=rb.attempts + 1, failed_at=None),
                reason=f"abort by {by}: one more helm rollback attempt",
            )
            t.emit(ev.ROLLBACK_STARTED, warning=True, reason=t.s.reason)
            _rolling_back(t)  # the weights are on stable already: helm starts now
            return True
        return drop(f"nothing to abort in phase {phase.value}")
    if name is CommandName.PAUSE:
        if phase is not Phase.PROGRESSING:
            return drop(f"pause needs a Progressing rollout, this one is {phase.value}")
        accept()
        t.update(phase=Phase.PAUSED, paused=PauseKind.MANUAL, reason=f"paused by {by}")
        t.emit(ev.ROLLOUT_PAUSED, reason=t.s.reason, kind=PauseKind.MANUAL.value)
        return True
    if name is CommandName.RESUME:
        if phase is not Phase.PAUSED:
            return drop(f"resume needs a Paused rollout, this one is {phase.value}")
        if s.paused is PauseKind.INVALID_PLAN and obs.plan_error:
            return drop(f"the plan is still invalid: {obs.plan_error}")
        if not obs.canary.available:
            return drop("the canary Deployment is not available; traffic stays on stable")
        accept()
        t.emit(ev.ROLLOUT_RESUMED, step=s.step, by=by)
        _enter_step(t, s.step, f"resumed by {by}")
        return True
    if name in (CommandName.PROMOTE, CommandName.PROMOTE_FULL):
        if phase not in (Phase.PROGRESSING, Phase.PAUSED):
            return drop(f"promote needs a Progressing or Paused rollout, this one is {phase.value}")
        if obs.plan_error:
            return drop(f"the plan is invalid: {obs.plan_error}")
        if not obs.canary.available:
            return drop("the canary Deployment is not available")
        accept()
        full = name is CommandName.PROMOTE_FULL
        t.emit(ev.ROLLOUT_PROMOTED, by=by, full=full, step=s.step)
        if full:
            t.update(step=len(t.plan.steps) - 1)
            _advance(t, f"promoted to 100 % by {by}")
        else:
            _advance(t, f"promoted by {by}")
        return True
    # retry
    if phase is not Phase.ROLLED_BACK:
        return drop(f"retry needs a RolledBack rollout, this one is {phase.value}")
    if obs.canary.template_hash != s.canary_hash:
        return drop(
            "the rolled-back canary is not deployed; run the helm upgrade with it again, then retry"
        )
    accept()
    _start(t, s.attempt + 1, s.base_revision)
    return True


# -- phases ------------------------------------------------------------------------------------


def _idle(t: _Tick) -> None:
    if not t.obs.canary_differs:
        _record_base(t)
        return
    _start(t, 1, t.s.base_revision)


def _pending(t: _Tick) -> None:
    if not _release_settled(t):
        t.hold_weights(ALL_STABLE)
        return
    _pin_revisions(t)
    if t.obs.canary.available:
        _enter_step(t, 0, "canary available")
        return
    started = t.s.step_started_at or t.now
    if t.now - started >= t.plan.progress_deadline:
        why = t.obs.canary.reason or "replicas not available"
        _begin_rollback(
            t,
            f"canary {t.plan.workloads.canary} not available within progressDeadline "
            f"{_secs(t.plan.progress_deadline)}: {why}",
        )
        return
    t.hold_weights(ALL_STABLE)


def _drifted(t: _Tick) -> bool:
    """Put back drifted weights. True if this tick's check must not count: the window must not
    reach back into the drift and a new settle begins (DESIGN §3); the hold restarts, fails are
    kept (safety). A writer that keeps fighting us pauses the rollout on stable instead."""
    live = t.obs.live_weights
    if live is None or live == t.s.weights:
        return False
    drifts = t.s.drifts + 1
    if drifts >= DRIFT_LIMIT:
        t.update(drifts=drifts)
        t.emit(ev.WEIGHT_DRIFT, warning=True, live=live.to_json(), expected=t.s.weights.to_json())
        _on_trouble(
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


def _canary_down(t: _Tick) -> bool:
    """A canary that stops being available while it has traffic is rolled back at once: never
    route to an unavailable Deployment (DESIGN §1), and no check interval is waited for."""
    if t.obs.canary.available or t.s.weights.canary == 0:
        return False
    _begin_rollback(
        t,
        f"canary Deployment {t.obs.canary.name} not available with "
        f"{t.s.weights.canary}% of traffic: {t.obs.canary.reason or 'replicas not ready'}",
    )
    return True


def _progressing(t: _Tick) -> None:
    if _canary_down(t) or _drifted(t):
        return
    if _apply_check(t):
        return
    s = t.s
    step = t.plan.steps[s.step]
    started = s.step_started_at or t.now
    if t.now - started >= step.hold and s.passes >= t.plan.analysis.required_passes:
        _advance(t, f"step {s.step} passed {s.passes} checks")


def _paused(t: _Tick) -> None:
    if t.s.paused is PauseKind.MANUAL:
        if _drifted(t):
            return
        # Weights held, checks go on, and a breach still rolls back (DESIGN §4).
        if not _canary_down(t):
            _apply_check(t)
    else:
        # Every other pause keeps traffic on stable, also once stable is back after a pause
        # whose write to stable was refused.
        t.hold_weights(ALL_STABLE)


def _succeeded(t: _Tick) -> None:
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


def _finalising(t: _Tick) -> None:
    if t.obs.stable.available and t.write(
        ALL_STABLE, "finalise: stable carries the promoted version"
    ):
        t.update(phase=Phase.IDLE, spec=None, reason="", step=0)
        t.emit(ev.ROLLOUT_FINALISED, outcome=t.s.last.outcome.value if t.s.last else None)
        _record_base(t)
        return
    started = t.s.step_started_at or t.now
    if t.now - started >= t.plan.finalise_timeout:
        t.alert_once(
            ev.ROLLOUT_FINALISE_STALLED,
            f"stable {t.plan.workloads.stable} not available "
            f"{_secs(t.plan.finalise_timeout)} after promotion: {t.obs.stable.reason}",
        )


def _rolling_back(t: _Tick) -> None:
    obs, s = t.obs, t.s
    if t.live != ALL_STABLE:
        if not t.write(ALL_STABLE, "rollback"):
            return  # stable unavailable: hold and alert, no helm
        _traffic_reverted(t)
    rel = obs.release
    if rel is None:
        return
    rb = s.rollback or RollbackProgress(limit=t.plan.rollback.retries)
    job = obs.rollback_job
    if job is not None and not job.running and job.attempt and job.attempt != rb.attempts:
        job = None  # an earlier attempt's outcome says nothing about this one
    base = s.base_revision
    deployed = rel.deployed
    # Revisions after the one that brought the canary (after the base, if that is unknown).
    floor = s.revision if s.revision is not None else base
    newer = deployed is not None and floor is not None and deployed.number > floor
    ours = (
        newer
        and deployed is not None
        and base is not None
        and deployed.description == rollback_description(base)
    )
    # A newer revision that is not our rollback: CI moved on. Without the canary's revision,
    # a newer canary (neither ours nor stable) is what tells it apart from the canary's own.
    new_canary = obs.canary_differs and obs.canary.template_hash != s.canary_hash
    moved_on = newer and (s.revision is not None or new_canary)
    if ours and deployed is not None and not rel.pending and not (job and job.running):
        since = rb.started_at or s.step_started_at or t.now
        if obs.canary_differs:
            # DESIGN §4: confirmed once the live canary equals stable again. The Deployment
            # gets up to the rollback timeout to get there; after that the rollback did not do
            # what it is for (the base's canary is not stable's): a human decides.
            if t.now - since < t.plan.rollback.timeout:
                t.alert_once(
                    ev.ROLLBACK_WAITING,
                    f"revision {deployed.number} is deployed; waiting for the canary "
                    "Deployment to equal stable again",
                    key="rollback.canary",
                )
                return
            reason = (
                f"helm rolled back to {base} (revision {deployed.number}) but the canary "
                f"Deployment still differs from stable {_secs(t.plan.rollback.timeout)} later; "
                "traffic stays on stable"
            )
            t.update(
                phase=Phase.ROLLBACK_FAILED,
                rollback_revision=deployed.number,
                last=_end(t, Outcome.ROLLBACK_FAILED, reason),
            )
            t.emit(ev.ROLLOUT_ROLLBACK_FAILED, warning=True, reason=reason)
            return
        t.emit(
            ev.ROLLBACK_HELM_SUCCEEDED,
            revision=deployed.number,
            baseRevision=base,
            confirmedFrom="helm exit 0 and history" if job and job.ok else "history",
        )
        reason = s.reason
        t.update(
            phase=Phase.ROLLED_BACK,
            rollback_revision=deployed.number,
            last=_end(t, Outcome.ROLLED_BACK, reason),
        )
        t.emit(ev.ROLLOUT_ROLLED_BACK, reason=reason, revision=deployed.number, baseRevision=base)
        return
    if moved_on and not ours and not rel.pending and deployed is not None:
        _supersede(t, f"release moved on to revision {deployed.number}; no rollback over it")
        if obs.canary_differs:
            _start(t, 1, base)
        else:
            t.update(phase=Phase.IDLE, spec=None, reason="")
            _record_base(t)
        return
    latest = rel.latest
    running = job is not None and job.running
    if (
        rel.pending
        and not running
        and base is not None
        and latest is not None
        and latest.description == rollback_description(base)
        and rb.started_at is not None
        and t.now - rb.started_at > t.plan.rollback.timeout + ROLLBACK_PENDING_GRACE
    ):
        # Our rollback's revision is still pending long after any helm could be running: helm
        # died with its controller, or a hook failed. Helm will not settle it by itself.
        reason = (
            f"release {t.plan.release.name} revision {latest.number} is still "
            f"{latest.status.value} {_secs(t.plan.rollback.timeout + ROLLBACK_PENDING_GRACE)} "
            f"after the rollback started; settle it (e.g. helm rollback "
            f"{t.plan.release.name} {base}), then `canary abort` retries"
        )
        t.update(phase=Phase.ROLLBACK_FAILED, last=_end(t, Outcome.ROLLBACK_FAILED, reason))
        t.emit(ev.ROLLOUT_ROLLBACK_FAILED, warning=True, reason=reason)
        return
    if rel.pending or running:
        busy = (
            f"release {t.plan.release.name} is {rel.latest.status.value if rel.latest else 'busy'}"
            if rel.pending
            else f"helm rollback {t.plan.release.name} {job.revision if job else ''} is running"
        )
        t.alert_once(
            ev.ROLLBACK_WAITING,
            f"{busy}; waiting for helm to settle",
        )
        return
    if base is None:
        t.update(phase=Phase.ROLLBACK_FAILED, last=_end(t, Outcome.ROLLBACK_FAILED, "no base"))
        t.emit(ev.ROLLOUT_ROLLBACK_FAILED, warning=True, reason="no base revision to roll back to")
        return
    resumed = False
    if rb.attempts > rb.failures:
        started = rb.started_at or t.now
        if job is not None and job.ok and t.now - started < t.plan.rollback.timeout:
            # helm exited 0 but the history we read does not show it yet (a cached read):
            # wait for it rather than run a second rollback for one breach.
            t.alert_once(
                ev.ROLLBACK_WAITING,
                f"helm rollback exited 0; waiting for the history to show "
                f"'{rollback_description(base)}'",
                key="rollback.history",
            )
            return
        if job is None:
            # Not this process's attempt (it restarted, or the lease moved) and the history
            # shows no trace of it. A helm that was just started records its pending revision
            # within seconds: give it HELM_RECORD_GRACE, then that attempt never happened and
            # runs again (no backoff; it does not count as a failure).
            if t.now - started < HELM_RECORD_GRACE:
                t.alert_once(
                    ev.ROLLBACK_WAITING,
                    f"attempt {rb.attempts} was started by a previous controller and shows no "
                    f"trace in the release history yet; waiting up to "
                    f"{_secs(HELM_RECORD_GRACE)} for helm to record it",
                    key="rollback.trace",
                )
                return
            resumed = True
            rb = replace(rb, attempts=rb.attempts - 1)
        else:
            if not job.ok:
                error = job.error or "helm rollback failed"
            else:
                error = (
                    f"no deployed revision described '{rollback_description(base)}' "
                    "after the attempt"
                )
            rb = replace(rb, failures=rb.attempts, error=error, failed_at=t.now)
            t.update(rollback=rb)
            t.emit(ev.ROLLBACK_HELM_FAILED, warning=True, attempt=rb.attempts, error=error)
            if rb.failures >= rb.limit:
                reason = f"helm rollback to {base} failed {rb.failures} times: {error}"
                t.update(phase=Phase.ROLLBACK_FAILED, last=_end(t, Outcome.ROLLBACK_FAILED, reason))
                t.emit(ev.ROLLOUT_ROLLBACK_FAILED, warning=True, reason=reason)
                return
    if resumed or rb.failed_at is None or t.now >= rb.failed_at + rollback_backoff(rb.attempts):
        rb = replace(rb, attempts=rb.attempts + 1, started_at=t.now)
        t.update(rollback=rb)
        t.rollback_rev = base
        fields: dict[str, Any] = {
            "release": t.plan.release.name,
            "revision": base,
            "attempt": rb.attempts,
            "timeout": _secs(t.plan.rollback.timeout),
        }
        if resumed:
            fields["resumed"] = (
                "the previous attempt left no trace in the release history (the controller "
                "stopped before helm recorded it)"
            )
        t.emit(ev.ROLLBACK_HELM_STARTED, **fields)


def _rolled_back(t: _Tick) -> None:
    obs, s = t.obs, t.s
    if not obs.canary_differs:
        _record_base(t)
        return
    if _deployed_number(t) == s.rollback_revision:
        return  # the canary our own rollback left: never a rollout
    if obs.canary.template_hash == s.canary_hash:
        held = f"canary {s.canary_hash[:10]} was rolled back; `canary retry` restarts it"
        if s.reason != held:
            t.update(reason=held)
        return
    _start(t, 1, s.base_revision)


def _rollback_failed(t: _Tick) -> None:
    obs, s = t.obs, t.s
    t.hold_weights()
    if not obs.canary_differs:
        t.update(phase=Phase.IDLE, spec=None, reason="release fixed: canary equals stable")
        t.emit(ev.ROLLOUT_RECOVERED, reason=t.s.reason)
        _record_base(t)
        return
    if obs.canary.template_hash != s.canary_hash:
        _start(t, 1, s.base_revision)


_HANDLERS = {
    Phase.IDLE: _idle,
    Phase.PENDING: _pending,
    Phase.PROGRESSING: _progressing,
    Phase.PAUSED: _paused,
    Phase.SUCCEEDED: _succeeded,
    Phase.FINALISING: _finalising,
    Phase.ROLLING_BACK: _rolling_back,
    Phase.ROLLED_BACK: _rolled_back,
    Phase.ROLLBACK_FAILED: _rollback_failed,
}


# -- entry point -------------------------------------------------------------------------------


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
        # treat it as lost, the safe recovery of DESIGN §4, never a crash every tick.
        lost = f"canary.dev/state names step {state.step}, the plan has {len(running.steps)}"
        obs = replace(obs, state_lost=lost)
        state, running = None, plan
    t = _Tick(running, state or RolloutState(plan=plan.key), obs, now, current=plan)
    _run(t, state is None)
    return t.decision(original)


def _lost(t: _Tick) -> None:
    """No readable state. DESIGN §4: ``state.lost``, weights to stable, start over from
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


def _deleted(t: _Tick) -> bool:
    """A deleted plan sends its traffic to stable (DESIGN §3). A rollback under way finishes
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
    if t.s.phase in _SUPERSEDABLE:
        t.update(last=_end(t, Outcome.ABANDONED, "plan deleted: traffic on stable"))
    t.update(phase=Phase.IDLE, spec=None, paused=None, reason="plan deleted: traffic on stable")
    return True


def _invalid(t: _Tick) -> bool:
    """An invalid plan's rollout is paused with traffic on stable (DESIGN §3)."""
    s = t.s
    if not t.obs.plan_error or s.phase not in _SUPERSEDABLE or s.paused is PauseKind.INVALID_PLAN:
        return False
    _pause_invalid(t, t.obs.plan_error)
    return True


def _pause_invalid(t: _Tick, reason: str) -> None:
    """The plan (its definition, or one of its queries) is wrong: pause with traffic on
    stable until a human fixes it and resumes."""
    t.emit(ev.PLAN_INVALID, warning=True, reason=reason)
    t.update(phase=Phase.PAUSED, paused=PauseKind.INVALID_PLAN, reason=reason)
    t.emit(ev.ROLLOUT_PAUSED, warning=True, reason=reason, kind=PauseKind.INVALID_PLAN.value)
    t.write(ALL_STABLE, "plan invalid")


def _run(t: _Tick, no_state: bool) -> None:
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
    if phase in _SUPERSEDABLE or phase is Phase.FINALISING:
        chash = obs.canary.template_hash
        if obs.canary_differs and chash != s.canary_hash:
            if phase is not Phase.FINALISING:
                _supersede(t, f"canary changed to {chash[:10]}")
            _start(t, 1, s.base_revision)
            _invalid(t)  # a rollout started under an invalid plan pauses at once
            return
        if not obs.canary_differs and phase is not Phase.FINALISING:
            _enter_finalising(t)
            return
    if _command(t):
        return
    _HANDLERS[t.s.phase](t)
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


def _secs(delta: timedelta) -> str:
    total = int(delta.total_seconds())
    minutes, secs = divmod(total, 60)
    if minutes and secs:
        return f"{minutes}m{secs}s"
    return f"{minutes}m" if minutes else f"{secs}s"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
