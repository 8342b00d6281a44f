"""Tiny builders for the pure core's inputs: the bookinfo ``reviews`` plan, a rollout state in
each phase, observations and metrics samples.

Everything is built from the dataclasses directly (no YAML), with keyword overrides, so a test
reads as "the usual situation, except ...". Defaults describe one coherent world:

* helm history: revisions 1-3 superseded, revision 3 is the base (canary = stable), revision 4
  deployed by CI with the canary image;
* the stable Deployment runs template ``"s" * 64``, the canary ``"c" * 64``;
* the rollout of that canary is ``cccccccccc-1``.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from canary.core.model import (
    ALL_STABLE,
    Command,
    CommandName,
    LastOutcome,
    MetricsSample,
    MetricValue,
    Observation,
    Outcome,
    PauseKind,
    Phase,
    ReleaseInfo,
    Revision,
    RevisionStatus,
    RollbackJob,
    RollbackProgress,
    RolloutState,
    Weights,
    WorkloadStatus,
    rollback_description,
    rollout_id,
)
from canary.core.plan import (
    DEFAULT_METRICS,
    Analysis,
    Destination,
    Metric,
    MetricType,
    Plan,
    ReleaseRef,
    Step,
    VirtualServiceRef,
    WorkloadRefs,
)

#: Every test's "now" starts here; time moves by adding timedeltas, never by sleeping.
T0 = datetime(2024, 6, 3, 9, 0, tzinfo=UTC)
SEC = timedelta(seconds=1)
MIN = timedelta(minutes=1)

STABLE_HASH = "s" * 64
CANARY_HASH = "c" * 64
#: A second canary CI pushed while the first one was still under analysis.
NEW_CANARY_HASH = "d" * 64

BASE_REV = 3  # canary = stable: the rollback target
CANARY_REV = 4  # helm upgrade that brought CANARY_HASH
RID = rollout_id(CANARY_HASH, 1)
NEW_RID = rollout_id(NEW_CANARY_HASH, 1)

PLAN_KEY = "bookinfo/reviews"


# --- plan --------------------------------------------------------------------------------------


def analysis(**overrides: Any) -> Analysis:
    """The default analysis (docs/design.md §2), with overrides."""
    return replace(Analysis(), **overrides)


def plan(*, analysis: Analysis | None = None, **overrides: Any) -> Plan:
    """The bookinfo reviews plan: v1 stable, v3 canary, steps 10/50/100 held 2m each."""
    base = Plan(
        name="reviews",
        namespace="bookinfo",
        release=ReleaseRef(name="reviews", namespace="bookinfo"),
        virtual_service=VirtualServiceRef(
            name="reviews",
            stable=Destination("reviews", "v1"),
            canary=Destination("reviews", "v3"),
        ),
        workloads=WorkloadRefs(stable="reviews-v1", canary="reviews-v3"),
        steps=(Step(10), Step(50), Step(100)),
        analysis=analysis if analysis is not None else Analysis(),
    )
    return replace(base, **overrides)


PLAN = plan()
ERROR_RATE, LATENCY = DEFAULT_METRICS


def custom_metric(**overrides: Any) -> Metric:
    fields: dict[str, Any] = {
        "name": "queue-depth",
        "type": MetricType.CUSTOM,
        "query": 'max(queue_depth{workload="$canary"})',
        "max": 3.0,
    }
    return Metric(**(fields | overrides))


# --- state -------------------------------------------------------------------------------------


def weights(stable: int, canary: int) -> Weights:
    return Weights(stable=stable, canary=canary)


def at_step(step: int, p: Plan = PLAN) -> Weights:
    return Weights.canary_at(p.steps[step].weight)


def idle(**overrides: Any) -> RolloutState:
    """Nothing to analyse; the base revision was recorded while Idle."""
    fields: dict[str, Any] = {
        "plan": PLAN_KEY,
        "phase": Phase.IDLE,
        "base_revision": BASE_REV,
        "stable_hash": STABLE_HASH,
    }
    return RolloutState(**(fields | overrides))


def active(phase: Phase, **overrides: Any) -> RolloutState:
    """A rollout of CANARY_HASH (brought by CANARY_REV, base BASE_REV) in ``phase``."""
    fields: dict[str, Any] = {
        "plan": PLAN_KEY,
        "phase": phase,
        "rollout_id": RID,
        "canary_hash": CANARY_HASH,
        "stable_hash": STABLE_HASH,
        "revision": CANARY_REV,
        "base_revision": BASE_REV,
        "step": 0,
        "weights": ALL_STABLE,
        "step_started_at": T0,
        "attempt": 1,
    }
    return RolloutState(**(fields | overrides))


def pending(**overrides: Any) -> RolloutState:
    return active(Phase.PENDING, **overrides)


def progressing(step: int = 0, **overrides: Any) -> RolloutState:
    return active(Phase.PROGRESSING, **({"step": step, "weights": at_step(step)} | overrides))


def paused(kind: PauseKind = PauseKind.MANUAL, step: int = 0, **overrides: Any) -> RolloutState:
    """Manual pause holds the step's weights; every other pause has traffic on stable."""
    held = at_step(step) if kind is PauseKind.MANUAL else ALL_STABLE
    fields = {"step": step, "weights": held, "paused": kind, "reason": f"paused: {kind.value}"}
    return active(Phase.PAUSED, **(fields | overrides))


def succeeded(**overrides: Any) -> RolloutState:
    last_step = len(PLAN.steps) - 1
    fields = {"step": last_step, "weights": at_step(last_step)}
    return active(Phase.SUCCEEDED, **(fields | overrides))


def last(outcome: Outcome, *, canary_hash: str = CANARY_HASH, reason: str = "") -> LastOutcome:
    return LastOutcome(
        rollout_id=rollout_id(canary_hash, 1),
        canary_hash=canary_hash,
        outcome=outcome,
        reason=reason or outcome.value,
        ended_at=T0,
    )


def finalising(outcome: Outcome = Outcome.SUCCEEDED, **overrides: Any) -> RolloutState:
    last_step = len(PLAN.steps) - 1
    fields = {"step": last_step, "weights": at_step(last_step), "last": last(outcome)}
    return active(Phase.FINALISING, **(fields | overrides))


def rolling_back(
    *, attempts: int = 0, failures: int = 0, started_at: datetime | None = None, **overrides: Any
) -> RolloutState:
    """Weights on stable (written by the breach decision); helm not run yet by default."""
    progress = RollbackProgress(
        attempts=attempts,
        failures=failures,
        limit=PLAN.rollback.retries,
        started_at=started_at,
    )
    fields = {"reason": "2 consecutive failed checks", "rollback": progress}
    return active(Phase.ROLLING_BACK, **(fields | overrides))


#: Revision our own ``helm rollback reviews 3`` creates.
ROLLBACK_REV = 5


def rolled_back(**overrides: Any) -> RolloutState:
    fields = {
        "rollback": RollbackProgress(attempts=1, limit=PLAN.rollback.retries, started_at=T0),
        "rollback_revision": ROLLBACK_REV,
        "last": last(Outcome.ROLLED_BACK),
        "reason": "2 consecutive failed checks",
    }
    return active(Phase.ROLLED_BACK, **(fields | overrides))


def rollback_failed(**overrides: Any) -> RolloutState:
    retries = PLAN.rollback.retries
    fields = {
        "rollback": RollbackProgress(
            attempts=retries, failures=retries, limit=retries, started_at=T0, error="boom"
        ),
        "last": last(Outcome.ROLLBACK_FAILED),
    }
    return active(Phase.ROLLBACK_FAILED, **(fields | overrides))


# --- observations ------------------------------------------------------------------------------


def rev(
    number: int, status: RevisionStatus | str = RevisionStatus.SUPERSEDED, description: str = ""
) -> Revision:
    return Revision(number=number, status=RevisionStatus(status), description=description)


def history(*revisions: Revision) -> ReleaseInfo:
    return ReleaseInfo(revisions=tuple(revisions))


def release_at(deployed: int = CANARY_REV, *extra: Revision) -> ReleaseInfo:
    """Revisions 1..deployed, the last one deployed, then ``extra`` (e.g. a pending one)."""
    revs = [rev(n) for n in range(1, deployed)]
    revs.append(rev(deployed, RevisionStatus.DEPLOYED, "Upgrade complete"))
    return history(*revs, *extra)


def rolled_back_release(base: int = BASE_REV, number: int = ROLLBACK_REV) -> ReleaseInfo:
    """CANARY_REV superseded by our ``helm rollback reviews <base>`` (revision ``number``)."""
    revs = [rev(n) for n in range(1, number)]
    revs.append(rev(number, RevisionStatus.DEPLOYED, rollback_description(base)))
    return history(*revs)


def command(cmd: CommandName | str, rid: str = RID, by: str = "alice") -> Command:
    return Command(cmd=CommandName(cmd), rollout_id=rid, by=by, at=T0)


def observe(
    *,
    canary: str = CANARY_HASH,
    stable: str = STABLE_HASH,
    canary_available: bool = True,
    stable_available: bool = True,
    canary_reason: str = "",
    stable_reason: str = "",
    live: Weights | None = ALL_STABLE,
    release: ReleaseInfo | None = None,
    **overrides: Any,
) -> Observation:
    """What the controller sees this tick. ``canary``/``stable`` are template hashes; by
    default the canary differs (CANARY_HASH) and the release is at CANARY_REV."""
    fields: dict[str, Any] = {
        "stable": _workload("reviews-v1", stable, stable_available, stable_reason),
        "canary": _workload("reviews-v3", canary, canary_available, canary_reason),
        "live_weights": live,
        "release": release if release is not None else release_at(),
    }
    return Observation(**(fields | overrides))


def _workload(name: str, digest: str, available: bool, reason: str) -> WorkloadStatus:
    if not available and not reason:
        reason = "0 of 3 updated replicas are available"
    return WorkloadStatus(name=name, available=available, template_hash=digest, reason=reason)


def job(*, ok: bool = True, running: bool = False, error: str = "") -> RollbackJob:
    return RollbackJob(revision=BASE_REV, running=running, ok=ok, error=error)


# --- metrics -----------------------------------------------------------------------------------


def values(
    *,
    error_rate: float | None = 0.001,
    latency: float | None = 120.0,
    stable_error_rate: float | None = 0.001,
    stable_latency: float | None = 110.0,
    error: str = "",
) -> tuple[MetricValue, ...]:
    """Answers for the default metrics (error-rate, latency-p99): healthy by default."""
    return (
        MetricValue(
            name="error-rate",
            query="error_rate_query",
            value=error_rate,
            stable_query="stable_error_rate_query",
            stable_value=stable_error_rate,
            error=error,
        ),
        MetricValue(
            name="latency-p99",
            query="latency_query",
            value=latency,
            stable_query="stable_latency_query",
            stable_value=stable_latency,
            error=error,
        ),
    )


def sample(
    *,
    rid: str = RID,
    step: int = 0,
    window: timedelta = MIN,
    canary_requests: float | None = 100.0,
    stable_requests: float | None = 900.0,
    metrics: tuple[MetricValue, ...] | None = None,
    error: str = "",
    too_short: bool = False,
    **value_overrides: Any,
) -> MetricsSample:
    """One check's answer for the current rollout and step: good values unless overridden."""
    return MetricsSample(
        rollout_id=rid,
        step=step,
        window=window,
        canary_requests=canary_requests,
        stable_requests=stable_requests,
        metrics=metrics if metrics is not None else values(**value_overrides),
        error=error,
        too_short=too_short,
    )


def passing(step: int = 0, rid: str = RID) -> MetricsSample:
    return sample(step=step, rid=rid)


def failing(step: int = 0, rid: str = RID) -> MetricsSample:
    """error-rate 5 %: above max 1 %."""
    return sample(step=step, rid=rid, error_rate=0.05)


def erroring(step: int = 0, rid: str = RID) -> MetricsSample:
    return sample(step=step, rid=rid, error="connection refused", metrics=())


def inconclusive(step: int = 0, rid: str = RID) -> MetricsSample:
    """Too few canary requests (and too few stable ones, so traffic-not-reaching stays quiet)."""
    return sample(step=step, rid=rid, canary_requests=3.0, stable_requests=10.0)
