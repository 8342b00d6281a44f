"""The decision under construction (:class:`Tick`) and the steps of a rollout's life that every
phase handler builds on: start, end, enter a step, record the base revision."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from canary.core import events as ev
from canary.core.durations import format_seconds
from canary.core.model import (
    ALL_STABLE,
    Decision,
    Event,
    LastOutcome,
    Observation,
    Outcome,
    Phase,
    RolloutState,
    Weights,
    rollout_id,
)
from canary.core.plan import Plan
from canary.core.snapshot import plan_hash, plan_to_spec

#: First retry of a failed helm rollback after 10 s: long enough for an API-server blip to pass.
ROLLBACK_BACKOFF = timedelta(seconds=10)
#: Backoff doubles per failure up to 2 min, so a broken release reaches RollbackFailed quickly.
ROLLBACK_BACKOFF_MAX = timedelta(minutes=2)

#: Three rewrites in one step mean a writer that fights us (GitOps self-heal without
#: ignoreDifferences): the step can never be judged, so pause on stable and tell a human.
DRIFT_LIMIT = 3

#: The weights of a Succeeded rollout (the last step is always 100).
FULL_CANARY = Weights.canary_at(100)

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


class Tick:
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
        Deployment that is not available (docs/design.md §1)."""
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


# -- rollout lifecycle ---------------------------------------------------------------------


def deployed_number(t: Tick) -> int | None:
    rel = t.obs.release
    dep = rel.deployed if rel else None
    return dep.number if dep else None


def record_base(t: Tick) -> None:
    """While canary equals stable, the deployed revision is the rollback target (design §1)."""
    number = deployed_number(t)
    if number is not None and number != t.s.base_revision and not t.obs.canary_differs:
        t.update(base_revision=number)
        t.emit(ev.BASE_RECORDED, baseRevision=number)


def release_settled(t: Tick) -> bool:
    """design §7: while the release is pending-* (a helm upgrade or rollback still running) we
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


def pin_revisions(t: Tick) -> None:
    """Record the revision that brought the canary, and the base if it is unknown (design §1:
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


def start(t: Tick, attempt: int, base: int | None) -> None:
    """A rollout of the live canary begins: Pending, traffic on stable. It runs under the plan
    as configured now (edits apply to the next rollout, docs/design.md §3)."""
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
    settled = release_settled(t)
    if settled:
        pin_revisions(t)
    t.emit(
        ev.ROLLOUT_STARTED,
        canaryHash=chash,
        revision=t.s.revision,
        baseRevision=t.s.base_revision,
        steps=[s.weight for s in t.plan.steps],
        canary=t.plan.workloads.canary,
    )
    t.write(ALL_STABLE, "rollout starts with all traffic on stable")


def end(t: Tick, outcome: Outcome, reason: str) -> LastOutcome:
    return LastOutcome(
        rollout_id=t.s.rollout_id,
        canary_hash=t.s.canary_hash,
        outcome=outcome,
        reason=reason,
        ended_at=t.now,
    )


def supersede(t: Tick, reason: str) -> None:
    t.update(last=end(t, Outcome.SUPERSEDED, reason))
    t.emit(ev.ROLLOUT_SUPERSEDED, reason=reason)


def enter_step(t: Tick, index: int, why: str = "") -> bool:
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
    t.emit(ev.STEP_STARTED, step=index, weight=step.weight, hold=format_seconds(step.hold), why=why)
    return t.write(Weights.canary_at(step.weight), f"step {index}")
