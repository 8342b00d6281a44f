"""canary.core.decide: the phase machine of design §4, one named row per transition, then the rules.

Every test is ``decide(plan, state, observation, now)`` on values from tests/support/builders.py
and asserts outcomes only: the phase, the weights written (``Decision.weights``) and recorded
(``state.weights``), whether helm starts, whether the command is consumed, the exact sequence of
event names and the counters. A hypothesis test at the end drives random sequences of
observations through decide and checks the invariants that make it safe to run unattended.

The row "any | lease lost | stop acting at once" belongs to the daemon, not to decide.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from canary.core import events as ev
from canary.core.analysis import check_window
from canary.core.decide import (
    DRIFT_LIMIT,
    HELM_RECORD_GRACE,
    ROLLBACK_PENDING_GRACE,
    decide,
    plan_in_force,
    wants_check,
)
from canary.core.model import (
    ALL_STABLE,
    CommandName,
    Decision,
    MetricsSample,
    MetricValue,
    Observation,
    Outcome,
    PauseKind,
    Phase,
    RevisionStatus,
    RollbackJob,
    RollbackProgress,
    RolloutState,
    Weights,
    rollback_description,
    rollout_id,
)
from canary.core.plan import OnTrouble, Plan, Step
from canary.core.snapshot import plan_hash, plan_to_spec
from tests.support.builders import (
    BASE_REV,
    CANARY_HASH,
    CANARY_REV,
    ERROR_RATE,
    LATENCY,
    MIN,
    NEW_CANARY_HASH,
    NEW_RID,
    PLAN,
    RID,
    ROLLBACK_REV,
    SEC,
    STABLE_HASH,
    T0,
    analysis,
    at_step,
    command,
    erroring,
    failing,
    finalising,
    history,
    idle,
    inconclusive,
    job,
    last,
    observe,
    passing,
    paused,
    pending,
    plan,
    progressing,
    release_at,
    rev,
    rollback_failed,
    rolled_back,
    rolled_back_release,
    rolling_back,
    sample,
    succeeded,
    weights,
)

ZERO = timedelta(0)
SCRAPE = 15 * SEC
AT_10, AT_50, AT_100 = at_step(0), at_step(1), at_step(2)
CRITICAL_PLAN = plan(analysis=analysis(metrics=(replace(ERROR_RATE, critical=True), LATENCY)))
ON_ERROR_ROLLBACK = plan(analysis=analysis(on_error=OnTrouble.ROLLBACK))
ON_INCONCLUSIVE_ROLLBACK = plan(analysis=analysis(on_inconclusive=OnTrouble.ROLLBACK))
#: After CI's promotion (revision 5) stable runs the canary's template: canary = stable.
PROMOTED: dict[str, Any] = {"canary": CANARY_HASH, "stable": CANARY_HASH, "release": release_at(5)}
#: CI pushed another canary (revision 5) while the first one was under way.
NEW_CANARY: dict[str, Any] = {"canary": NEW_CANARY_HASH, "release": release_at(5)}
#: After our rollback, a newer upgrade (revision 6) brought another canary.
AFTER_ROLLBACK_NEW = history(
    *(rev(n) for n in range(1, 5)),
    rev(5, RevisionStatus.SUPERSEDED, "Rollback to 3"),
    rev(6, RevisionStatus.DEPLOYED, "Upgrade complete"),
)


def names(decision: Decision) -> tuple[str, ...]:
    return tuple(e.name for e in decision.events)


def run(
    state: RolloutState | None,
    obs: Observation,
    after: timedelta = ZERO,
    p: Plan = PLAN,
) -> Decision:
    return decide(p, state, obs, T0 + after)


def again(p: Plan, d: Decision, obs: Observation, now: datetime) -> Decision:
    """The next tick in an unchanged world: our write landed, the command is gone."""
    live = d.weights if d.weights is not None else obs.live_weights
    return decide(p, d.state, replace(obs, live_weights=live, command=None, metrics=None), now)


# =================================================================================================
# The transition table (docs/design.md §4), one row each
# =================================================================================================


@dataclass(frozen=True)
class Row:
    state: RolloutState | None
    obs: Observation
    phase: Phase
    events: tuple[str, ...]
    after: timedelta = ZERO
    plan: Plan = PLAN
    weights: Weights | None = None  # Decision.weights: what this tick writes
    state_weights: Weights | None = None  # state.weights afterwards (default: unchanged/written)
    start_rollback: int | None = None
    consume: bool = False
    fields: dict[str, Any] = field(default_factory=dict)  # more state fields to compare


def row(
    id: str, state: RolloutState | None, obs: Observation, phase: Phase, *events: str, **kw: Any
) -> Any:
    return pytest.param(Row(state, obs, phase, events, **kw), id=id)


TRANSITIONS = [
    row(
        "idle--canary-differs--pending",
        idle(),
        observe(),
        Phase.PENDING,
        ev.ROLLOUT_STARTED,
        state_weights=ALL_STABLE,
        fields={
            "rollout_id": RID,
            "canary_hash": CANARY_HASH,
            "revision": CANARY_REV,
            "base_revision": BASE_REV,
            "step_started_at": T0,
        },
    ),
    row(
        "pending--canary-available--progressing-step-0",
        pending(),
        observe(),
        Phase.PROGRESSING,
        ev.STEP_STARTED,
        ev.WEIGHT_SET,
        weights=AT_10,
        fields={"step": 0, "step_started_at": T0 + MIN},
        after=MIN,
    ),
    row(
        "pending--canary-not-yet-available--waits",
        pending(),
        observe(canary_available=False),
        Phase.PENDING,
        after=9 * MIN,
    ),
    row(
        "pending--progress-deadline--rolling-back",
        pending(),
        observe(canary_available=False),
        Phase.ROLLING_BACK,
        ev.ROLLBACK_STARTED,
        ev.ROLLBACK_HELM_STARTED,
        after=10 * MIN,
        state_weights=ALL_STABLE,
        start_rollback=BASE_REV,
    ),
    row(
        "progressing--hold-elapsed-and-passes--next-step",
        progressing(0, passes=2),
        observe(live=AT_10),
        Phase.PROGRESSING,
        ev.STEP_STARTED,
        ev.WEIGHT_SET,
        after=2 * MIN,
        weights=AT_50,
        fields={"step": 1, "passes": 0, "step_started_at": T0 + 2 * MIN},
    ),
    row(
        "progressing--last-step-passes--succeeded",
        progressing(2, passes=2),
        observe(live=AT_100),
        Phase.SUCCEEDED,
        ev.ROLLOUT_SUCCEEDED,
        after=2 * MIN,
        state_weights=AT_100,
    ),
    row(
        "progressing--failure-limit--rolling-back",
        progressing(0, fails=1),
        observe(live=AT_10, metrics=failing()),
        Phase.ROLLING_BACK,
        ev.CHECK_FAILED,
        ev.ROLLBACK_STARTED,
        ev.WEIGHT_SET,
        ev.ROLLBACK_TRAFFIC_REVERTED,
        ev.ROLLBACK_HELM_STARTED,
        after=MIN,
        weights=ALL_STABLE,
        start_rollback=BASE_REV,
        fields={"fails": 2},
    ),
    row(
        "progressing--critical-fail--rolling-back",
        progressing(0),
        observe(live=AT_10, metrics=failing()),
        Phase.ROLLING_BACK,
        ev.CHECK_FAILED,
        ev.ROLLBACK_STARTED,
        ev.WEIGHT_SET,
        ev.ROLLBACK_TRAFFIC_REVERTED,
        ev.ROLLBACK_HELM_STARTED,
        after=MIN,
        plan=CRITICAL_PLAN,
        weights=ALL_STABLE,
        start_rollback=BASE_REV,
        fields={"fails": 1},
    ),
    row(
        "progressing--abort--rolling-back",
        progressing(1),
        observe(live=AT_50, command=command("abort")),
        Phase.ROLLING_BACK,
        ev.COMMAND_ACCEPTED,
        ev.ROLLBACK_STARTED,
        ev.WEIGHT_SET,
        ev.ROLLBACK_TRAFFIC_REVERTED,
        ev.ROLLBACK_HELM_STARTED,
        weights=ALL_STABLE,
        start_rollback=BASE_REV,
        consume=True,
    ),
    row(
        "progressing--error-limit--paused-on-stable",
        progressing(1, errors=4),
        observe(live=AT_50, metrics=erroring(1)),
        Phase.PAUSED,
        ev.CHECK_ERROR,
        ev.ROLLOUT_PAUSED,
        ev.WEIGHT_SET,
        after=MIN,
        weights=ALL_STABLE,
        fields={"paused": PauseKind.ERRORS, "errors": 5, "step": 1},
    ),
    row(
        "progressing--error-limit-on-error-rollback--rolling-back",
        progressing(1, errors=4),
        observe(live=AT_50, metrics=erroring(1)),
        Phase.ROLLING_BACK,
        ev.CHECK_ERROR,
        ev.ROLLBACK_STARTED,
        ev.WEIGHT_SET,
        ev.ROLLBACK_TRAFFIC_REVERTED,
        ev.ROLLBACK_HELM_STARTED,
        after=MIN,
        plan=ON_ERROR_ROLLBACK,
        weights=ALL_STABLE,
        start_rollback=BASE_REV,
    ),
    row(
        "progressing--inconclusive-timeout--paused-on-stable",
        progressing(0, inconclusive_since=T0),
        observe(live=AT_10, metrics=inconclusive()),
        Phase.PAUSED,
        ev.CHECK_INCONCLUSIVE,
        ev.ROLLOUT_PAUSED,
        ev.WEIGHT_SET,
        after=10 * MIN,
        weights=ALL_STABLE,
        fields={"paused": PauseKind.INCONCLUSIVE},
    ),
    row(
        "progressing--inconclusive-timeout-on-inconclusive-rollback--rolling-back",
        progressing(0, inconclusive_since=T0),
        observe(live=AT_10, metrics=inconclusive()),
        Phase.ROLLING_BACK,
        ev.CHECK_INCONCLUSIVE,
        ev.ROLLBACK_STARTED,
        ev.WEIGHT_SET,
        ev.ROLLBACK_TRAFFIC_REVERTED,
        ev.ROLLBACK_HELM_STARTED,
        after=10 * MIN,
        plan=ON_INCONCLUSIVE_ROLLBACK,
        weights=ALL_STABLE,
        start_rollback=BASE_REV,
    ),
    row(
        "progressing--pause--paused-weights-held",
        progressing(1),
        observe(live=AT_50, command=command("pause")),
        Phase.PAUSED,
        ev.COMMAND_ACCEPTED,
        ev.ROLLOUT_PAUSED,
        state_weights=AT_50,
        consume=True,
        fields={"paused": PauseKind.MANUAL, "step": 1},
    ),
    row(
        "progressing--promote--next-step-now",
        progressing(0),
        observe(live=AT_10, command=command("promote")),
        Phase.PROGRESSING,
        ev.COMMAND_ACCEPTED,
        ev.ROLLOUT_PROMOTED,
        ev.STEP_STARTED,
        ev.WEIGHT_SET,
        weights=AT_50,
        consume=True,
        fields={"step": 1},
    ),
    row(
        "progressing--promote-full--succeeded-at-100",
        progressing(0),
        observe(live=AT_10, command=command("promote-full")),
        Phase.SUCCEEDED,
        ev.COMMAND_ACCEPTED,
        ev.ROLLOUT_PROMOTED,
        ev.WEIGHT_SET,
        ev.ROLLOUT_SUCCEEDED,
        weights=AT_100,
        consume=True,
        fields={"step": 2},
    ),
    row(
        "paused--resume--progressing-same-step-hold-restarts",
        paused(PauseKind.MANUAL, step=1, passes=1),
        observe(live=AT_50, command=command("resume")),
        Phase.PROGRESSING,
        ev.COMMAND_ACCEPTED,
        ev.ROLLOUT_RESUMED,
        ev.STEP_STARTED,
        after=5 * MIN,
        state_weights=AT_50,
        consume=True,
        fields={"step": 1, "passes": 0, "step_started_at": T0 + 5 * MIN, "paused": None},
    ),
    row(
        "paused-on-errors--resume--progressing-step-weight-rewritten",
        paused(PauseKind.ERRORS, step=1, errors=5),
        observe(command=command("resume")),
        Phase.PROGRESSING,
        ev.COMMAND_ACCEPTED,
        ev.ROLLOUT_RESUMED,
        ev.STEP_STARTED,
        ev.WEIGHT_SET,
        after=5 * MIN,
        weights=AT_50,
        consume=True,
        fields={"step": 1, "errors": 0, "paused": None},
    ),
    *(
        row(
            f"{name}--canary-changes--pending-same-base",
            state,
            observe(live=state.weights, **NEW_CANARY),
            Phase.PENDING,
            ev.ROLLOUT_SUPERSEDED,
            ev.ROLLOUT_STARTED,
            *((ev.WEIGHT_SET,) if state.weights != ALL_STABLE else ()),
            after=MIN,
            weights=None if state.weights == ALL_STABLE else ALL_STABLE,
            state_weights=ALL_STABLE,
            fields={
                "rollout_id": NEW_RID,
                "canary_hash": NEW_CANARY_HASH,
                "revision": 5,
                "base_revision": BASE_REV,
                "step": 0,
            },
        )
        for name, state in [
            ("pending", pending()),
            ("progressing", progressing(1, passes=1, fails=1)),
            ("paused", paused(PauseKind.MANUAL, step=1)),
            ("paused-on-errors", paused(PauseKind.ERRORS, step=1)),
            ("succeeded", succeeded()),
        ]
    ),
    row(
        "succeeded--canary-equals-stable--finalising",
        succeeded(),
        observe(live=AT_100, stable_available=False, **PROMOTED),
        Phase.FINALISING,
        ev.ROLLOUT_FINALISING,
        ev.BASE_RECORDED,
        state_weights=AT_100,
        fields={"base_revision": 5},
    ),
    *(
        row(
            f"{name}--canary-equals-stable--finalising-bypassed",
            state,
            observe(live=state.weights, stable_available=False, **PROMOTED),
            Phase.FINALISING,
            ev.ROLLOUT_BYPASSED,
            ev.ROLLOUT_FINALISING,
            ev.BASE_RECORDED,
            state_weights=state.weights,
        )
        for name, state in [
            ("progressing", progressing(1)),
            ("paused", paused(PauseKind.MANUAL, step=1)),
        ]
    ),
    row(
        "finalising--stable-available--idle",
        finalising(),
        observe(live=AT_100, **PROMOTED),
        Phase.IDLE,
        ev.WEIGHT_SET,
        ev.ROLLOUT_FINALISED,
        ev.BASE_RECORDED,
        after=MIN,
        weights=ALL_STABLE,
        fields={"base_revision": 5},
    ),
    row(
        "finalising--finalise-timeout--stays-stalled",
        finalising(),
        observe(live=AT_100, stable_available=False, **PROMOTED),
        Phase.FINALISING,
        ev.ROLLOUT_FINALISE_STALLED,
        after=10 * MIN,
        state_weights=AT_100,
    ),
    row(
        "rolling-back--weights-stable-helm-confirmed--rolled-back",
        rolling_back(attempts=1, started_at=T0),
        observe(canary=STABLE_HASH, release=rolled_back_release(), rollback_job=job()),
        Phase.ROLLED_BACK,
        ev.ROLLBACK_HELM_SUCCEEDED,
        ev.ROLLOUT_ROLLED_BACK,
        after=MIN,
        fields={"rollback_revision": ROLLBACK_REV},
    ),
    row(
        "rolling-back--helm-fails-retries-times--rollback-failed",
        rolling_back(attempts=3, failures=2, started_at=T0),
        observe(rollback_job=job(ok=False, error="Error: timed out waiting for the condition")),
        Phase.ROLLBACK_FAILED,
        ev.ROLLBACK_HELM_FAILED,
        ev.ROLLOUT_ROLLBACK_FAILED,
        after=5 * MIN,
        state_weights=ALL_STABLE,
    ),
    row(
        "rolling-back--release-moved-on--superseded-new-canary-pending",
        rolling_back(),
        observe(**NEW_CANARY),
        Phase.PENDING,
        ev.ROLLOUT_SUPERSEDED,
        ev.ROLLOUT_STARTED,
        fields={"rollout_id": NEW_RID, "base_revision": BASE_REV, "revision": 5},
    ),
    row(
        "rolled-back--different-canary--pending",
        rolled_back(),
        observe(canary=NEW_CANARY_HASH, release=AFTER_ROLLBACK_NEW),
        Phase.PENDING,
        ev.ROLLOUT_STARTED,
        fields={"rollout_id": NEW_RID, "base_revision": BASE_REV, "revision": 6},
    ),
    row(
        "rolled-back--failed-canary-again--held-until-retry",
        rolled_back(),
        observe(canary=CANARY_HASH, release=AFTER_ROLLBACK_NEW),
        Phase.ROLLED_BACK,
        fields={"rollout_id": RID},
    ),
    row(
        "rolled-back--retry--pending-next-attempt",
        rolled_back(),
        observe(canary=CANARY_HASH, release=AFTER_ROLLBACK_NEW, command=command("retry")),
        Phase.PENDING,
        ev.COMMAND_ACCEPTED,
        ev.ROLLOUT_STARTED,
        consume=True,
        fields={"rollout_id": rollout_id(CANARY_HASH, 2), "attempt": 2, "revision": 6},
    ),
    row(
        "rollback-failed--abort--rolling-back-one-more-attempt",
        rollback_failed(),
        observe(command=command("abort")),
        Phase.ROLLING_BACK,
        ev.COMMAND_ACCEPTED,
        ev.ROLLBACK_STARTED,
        ev.ROLLBACK_HELM_STARTED,
        consume=True,
        start_rollback=BASE_REV,
        fields={
            "rollback": RollbackProgress(
                attempts=4, failures=3, limit=4, started_at=T0, error="boom"
            )
        },
    ),
    row(
        "rollback-failed--canary-equals-stable--idle-last-outcome-kept",
        rollback_failed(),
        observe(canary=STABLE_HASH, release=release_at(6)),
        Phase.IDLE,
        ev.ROLLOUT_RECOVERED,
        ev.BASE_RECORDED,
        fields={"base_revision": 6},
    ),
]


@pytest.mark.parametrize("r", TRANSITIONS)
def test_transition(r: Row) -> None:
    d = run(r.state, r.obs, r.after, r.plan)
    assert names(d) == r.events
    assert d.state.phase is r.phase
    assert d.weights == r.weights
    expected_weights = r.state_weights or r.weights or (r.state.weights if r.state else None)
    if expected_weights is not None:
        assert d.state.weights == expected_weights
    assert d.start_rollback == r.start_rollback
    assert d.consume_command is r.consume
    for key, value in r.fields.items():
        assert getattr(d.state, key) == value, key
    # changed exactly when something is to be written: state, weights or the command's removal
    before = r.state.updated_at if r.state else None
    state_changed = r.state is None or replace(d.state, updated_at=before) != r.state
    assert d.changed is (state_changed or d.weights is not None or r.consume)
    assert d.changed is (d.state.updated_at != before)  # a write stamps the state


def test_supersede_records_the_outcome_of_the_old_rollout() -> None:
    d = run(progressing(1), observe(live=AT_50, **NEW_CANARY), MIN)
    assert d.state.last is not None
    assert (d.state.last.rollout_id, d.state.last.outcome) == (RID, Outcome.SUPERSEDED)


@pytest.mark.parametrize(
    ("state", "outcome"),
    [
        pytest.param(succeeded(), Outcome.SUCCEEDED, id="succeeded"),
        pytest.param(progressing(2), Outcome.BYPASSED, id="progressing-bypassed"),
        pytest.param(pending(), Outcome.BYPASSED, id="pending-bypassed"),
    ],
)
def test_canary_equals_stable_finalises_then_idle_once_stable_is_available(
    state: RolloutState, outcome: Outcome
) -> None:
    stalled = run(state, observe(live=state.weights, stable_available=False, **PROMOTED), MIN)
    assert stalled.state.phase is Phase.FINALISING
    assert stalled.weights is None  # never raise the share of an unavailable Deployment
    assert stalled.state.last is not None
    assert stalled.state.last.outcome is outcome
    done = again(PLAN, stalled, observe(live=state.weights, **PROMOTED), T0 + 2 * MIN)
    assert done.state.phase is Phase.IDLE
    assert done.state.weights == ALL_STABLE
    assert done.state.last == stalled.state.last
    assert ev.ROLLOUT_FINALISED in names(done)


def test_finalise_stalled_is_raised_once_not_every_tick() -> None:
    obs = observe(live=AT_100, stable_available=False, **PROMOTED)
    first = run(finalising(), obs, 10 * MIN)
    assert names(first) == (ev.ROLLOUT_FINALISE_STALLED,)
    assert first.events[0].warning
    for minutes in (11, 15, 60):
        later = again(PLAN, first, obs, T0 + minutes * MIN)
        assert names(later) == ()
        assert not later.changed


def test_finalise_stalled_is_raised_once_while_stable_rolls() -> None:
    """Regression: the stall alert is keyed on the condition, not on its wording, so a stable
    reason that changes (0 of 3 → 1 of 3 ready) does not raise it again (docs/design.md §4)."""
    obs = observe(live=AT_100, stable_available=False, **PROMOTED)
    first = run(
        finalising(), replace(obs, stable=replace(obs.stable, reason="0 of 3 ready")), 10 * MIN
    )
    later = again(
        PLAN, first, replace(obs, stable=replace(obs.stable, reason="1 of 3 ready")), T0 + 11 * MIN
    )
    assert names(later) == ()


# =================================================================================================
# Base revision (docs/design.md §1)
# =================================================================================================


def test_base_is_recorded_while_idle_when_the_deployed_revision_changes() -> None:
    obs = observe(canary=STABLE_HASH, release=release_at(7))
    d = run(idle(), obs)
    assert names(d) == (ev.BASE_RECORDED,)
    assert d.state.base_revision == 7
    assert d.state.phase is Phase.IDLE
    assert d.weights is None
    steady = again(PLAN, d, obs, T0 + MIN)
    assert not steady.changed
    assert names(steady) == ()


def test_base_is_not_recorded_from_a_revision_whose_canary_differs() -> None:
    d = run(idle(), observe(release=release_at(4)))
    assert d.state.base_revision == BASE_REV


def test_base_is_kept_when_the_canary_changes_mid_rollout() -> None:
    first = run(idle(), observe())
    step0 = again(PLAN, first, observe(), T0 + MIN)
    assert step0.state.phase is Phase.PROGRESSING
    newer = run(step0.state, observe(live=AT_10, **NEW_CANARY), 2 * MIN)
    assert newer.state.phase is Phase.PENDING
    assert newer.state.base_revision == BASE_REV
    assert newer.state.revision == 5


def test_unknown_base_falls_back_to_newest_earlier_revision_not_failed_with_a_warning() -> None:
    mid_rollout = history(
        rev(1),
        rev(2),
        rev(3, RevisionStatus.FAILED, "Upgrade failed"),
        rev(4, RevisionStatus.DEPLOYED, "Upgrade complete"),
    )
    d = run(idle(base_revision=None), observe(release=mid_rollout))
    assert names(d) == (ev.BASE_FALLBACK, ev.ROLLOUT_STARTED)
    assert d.events[0].warning
    assert d.events[0].fields["baseRevision"] == 2
    assert d.state.base_revision == 2
    assert d.state.phase is Phase.PENDING


def test_no_state_while_the_canary_differs_is_state_lost_then_pending() -> None:
    """Controller installed mid-rollout or the annotation stripped while traffic is on stable:
    the same without memory, and both restart the analysis, so both say state.lost."""
    d = run(None, observe())
    assert names(d) == (ev.STATE_LOST, ev.BASE_FALLBACK, ev.ROLLOUT_STARTED)
    assert d.state.phase is Phase.PENDING
    assert d.state.base_revision == BASE_REV
    assert d.changed


# =================================================================================================
# Checks: counters, hold, limits (docs/design.md §3)
# =================================================================================================


def counters(s: RolloutState) -> tuple[int, int, int, bool]:
    return (s.passes, s.fails, s.errors, s.inconclusive_since is not None)


@pytest.mark.parametrize(
    ("before", "metrics", "after"),
    [
        pytest.param((1, 0, 0, False), passing(), (2, 0, 0, False), id="pass--increments-passes"),
        pytest.param((0, 1, 0, False), passing(), (1, 0, 0, False), id="pass--resets-fails"),
        pytest.param((0, 0, 2, True), passing(), (1, 0, 0, False), id="pass--resets-error-runs"),
        pytest.param((1, 0, 0, False), failing(), (0, 1, 0, False), id="fail--resets-passes"),
        pytest.param((1, 0, 0, False), erroring(), (1, 0, 1, False), id="error--keeps-passes"),
        pytest.param((0, 1, 0, False), erroring(), (0, 1, 1, False), id="error--keeps-fails"),
        pytest.param((0, 0, 1, True), erroring(), (0, 0, 2, True), id="error--keeps-inconclusive"),
        pytest.param(
            (1, 0, 0, False), inconclusive(), (1, 0, 0, True), id="inconclusive--keeps-passes"
        ),
        pytest.param(
            (0, 1, 0, False), inconclusive(), (0, 1, 0, True), id="inconclusive--keeps-fails"
        ),
        pytest.param(
            (1, 0, 0, False),
            sample(too_short=True, metrics=()),
            (1, 0, 0, True),
            id="too-short-window--inconclusive",
        ),
    ],
)
def test_check_counters(
    before: tuple[int, int, int, bool], metrics: Any, after: tuple[int, int, int, bool]
) -> None:
    passes, fails, errors, inc = before
    state = progressing(
        0, passes=passes, fails=fails, errors=errors, inconclusive_since=T0 if inc else None
    )
    d = run(state, observe(live=AT_10, metrics=metrics), MIN)
    assert d.state.phase is Phase.PROGRESSING
    assert counters(d.state) == after
    assert d.state.last_check_at == T0 + MIN
    assert d.weights is None


@pytest.mark.parametrize(
    ("metrics", "event"),
    [
        pytest.param(passing(), ev.CHECK_PASSED, id="pass"),
        pytest.param(failing(), ev.CHECK_FAILED, id="fail"),
        pytest.param(erroring(), ev.CHECK_ERROR, id="error"),
        pytest.param(inconclusive(), ev.CHECK_INCONCLUSIVE, id="inconclusive"),
    ],
)
def test_every_check_emits_one_event_with_its_numbers(metrics: Any, event: str) -> None:
    d = run(progressing(0), observe(live=AT_10, metrics=metrics), MIN)
    assert names(d) == (event,)
    fields = d.events[0].fields
    assert fields["rolloutId"] == RID
    assert fields["step"] == 0
    assert fields["weight"] == 10
    assert {"passes", "fails", "errors", "verdict", "metrics", "canary_requests"} <= set(fields)
    assert d.events[0].warning is (event != ev.CHECK_PASSED)


@pytest.mark.parametrize(
    ("passes", "after", "metrics", "step"),
    [
        pytest.param(2, 2 * MIN - SEC, None, 0, id="passes-but-hold-not-elapsed"),
        pytest.param(1, 3 * MIN, None, 0, id="hold-elapsed-but-one-pass"),
        pytest.param(1, 2 * MIN, passing(), 1, id="second-pass-at-hold--advances-same-tick"),
        pytest.param(5, 2 * MIN, erroring(), 1, id="error-does-not-block-an-earned-advance"),
        pytest.param(2, 2 * MIN, failing(), 0, id="fail-resets-passes--stays"),
    ],
)
def test_required_passes_and_hold(passes: int, after: timedelta, metrics: Any, step: int) -> None:
    d = run(progressing(0, passes=passes), observe(live=AT_10, metrics=metrics), after)
    assert d.state.phase is Phase.PROGRESSING
    assert d.state.step == step


def test_one_fail_below_failure_limit_keeps_the_step() -> None:
    d = run(progressing(1), observe(live=AT_50, metrics=failing(1)), MIN)
    assert names(d) == (ev.CHECK_FAILED,)
    assert d.state.phase is Phase.PROGRESSING
    assert d.state.fails == 1
    assert d.weights is None


def test_fails_need_to_be_consecutive() -> None:
    obs = observe(live=AT_10)
    d1 = run(progressing(0), replace(obs, metrics=failing()), MIN)
    d2 = run(d1.state, replace(obs, metrics=passing()), 2 * MIN)
    d3 = run(d2.state, replace(obs, metrics=failing()), 3 * MIN)
    assert d3.state.phase is Phase.PROGRESSING
    assert d3.state.fails == 1


def test_errors_and_inconclusive_between_fails_do_not_break_the_run() -> None:
    obs = observe(live=AT_10)
    d = run(progressing(0), replace(obs, metrics=failing()), MIN)
    d = run(d.state, replace(obs, metrics=erroring()), 2 * MIN)
    d = run(d.state, replace(obs, metrics=inconclusive()), 3 * MIN)
    d = run(d.state, replace(obs, metrics=failing()), 4 * MIN)
    assert d.state.phase is Phase.ROLLING_BACK


def test_error_limit_not_yet_reached() -> None:
    d = run(progressing(0, errors=3), observe(live=AT_10, metrics=erroring()), MIN)
    assert d.state.phase is Phase.PROGRESSING
    assert d.state.errors == 4
    assert d.weights is None


def test_inconclusive_timeout_not_yet_reached() -> None:
    state = progressing(0, inconclusive_since=T0)
    d = run(state, observe(live=AT_10, metrics=inconclusive()), 10 * MIN - SEC)
    assert d.state.phase is Phase.PROGRESSING
    assert d.state.inconclusive_since == T0


def test_inconclusive_timeout_counts_from_the_first_inconclusive_check() -> None:
    d = run(progressing(0), observe(live=AT_10, metrics=inconclusive()), MIN)
    assert d.state.inconclusive_since == T0 + MIN
    d = run(d.state, observe(live=AT_10, metrics=inconclusive()), 10 * MIN)
    assert d.state.phase is Phase.PROGRESSING
    d = run(d.state, observe(live=AT_10, metrics=inconclusive()), 11 * MIN)
    assert d.state.phase is Phase.PAUSED
    assert d.state.paused is PauseKind.INCONCLUSIVE


@pytest.mark.parametrize(
    "metrics",
    [
        pytest.param(failing(step=0), id="earlier-step"),
        pytest.param(failing(step=1, rid=NEW_RID), id="another-rollout"),
        pytest.param(failing(step=1, rid=rollout_id(CANARY_HASH, 2)), id="another-attempt"),
    ],
)
def test_a_sample_for_another_rollout_or_step_is_ignored(metrics: Any) -> None:
    state = progressing(1, fails=1)
    d = run(state, observe(live=AT_50, metrics=metrics), MIN)
    assert names(d) == ()
    assert not d.changed
    assert d.state == state


def test_critical_fail_rolls_back_at_once_even_after_passes() -> None:
    d = run(progressing(2, passes=1), observe(live=AT_100, metrics=failing(2)), MIN, CRITICAL_PLAN)
    assert d.state.phase is Phase.ROLLING_BACK
    assert d.weights == ALL_STABLE
    assert d.start_rollback == BASE_REV


def test_a_canary_that_becomes_unavailable_with_traffic_is_rolled_back_at_once() -> None:
    state = progressing(1)  # no failed check so far
    d = run(state, observe(live=AT_50, canary_available=False, metrics=passing(1)), MIN)
    assert names(d)[:2] == (ev.ROLLBACK_STARTED, ev.WEIGHT_SET)
    assert d.weights == ALL_STABLE and d.start_rollback == BASE_REV
    assert d.weights == ALL_STABLE


@pytest.mark.parametrize(
    ("state", "live"),
    [
        pytest.param(paused(PauseKind.MANUAL, step=1), AT_50, id="manual"),
        pytest.param(paused(PauseKind.ERRORS, step=1), ALL_STABLE, id="errors"),
    ],
)
def test_promote_from_paused_goes_to_the_next_step(state: RolloutState, live: Weights) -> None:
    d = run(state, observe(live=live, command=command("promote")), MIN)
    assert d.state.phase is Phase.PROGRESSING
    assert d.state.step == 2
    assert d.weights == AT_100
    assert d.consume_command


# =================================================================================================
# Manual pause (docs/design.md §4: weights held, checks go on, a breach still rolls back)
# =================================================================================================


def test_manual_pause_keeps_checking_but_does_not_advance() -> None:
    state = paused(PauseKind.MANUAL, step=0, passes=1)
    d = run(state, observe(live=AT_10, metrics=passing()), 5 * MIN)
    assert names(d) == (ev.CHECK_PASSED,)
    assert d.state.phase is Phase.PAUSED
    assert d.state.passes == 2
    assert d.state.step == 0
    assert d.weights is None


def test_manual_pause_still_rolls_back_on_a_breach() -> None:
    state = paused(PauseKind.MANUAL, step=1, fails=1)
    d = run(state, observe(live=AT_50, metrics=failing(1)), MIN)
    assert names(d) == (
        ev.CHECK_FAILED,
        ev.ROLLBACK_STARTED,
        ev.WEIGHT_SET,
        ev.ROLLBACK_TRAFFIC_REVERTED,
        ev.ROLLBACK_HELM_STARTED,
    )
    assert d.state.phase is Phase.ROLLING_BACK
    assert d.weights == ALL_STABLE
    assert d.start_rollback == BASE_REV


def test_pause_on_errors_does_not_check() -> None:
    state = paused(PauseKind.ERRORS, step=1)
    assert not wants_check(state)
    assert wants_check(paused(PauseKind.MANUAL))
    assert wants_check(progressing(0))
    d = run(state, observe(metrics=failing(1)), MIN)
    assert names(d) == ()
    assert d.state.phase is Phase.PAUSED


def test_resume_then_pause_round_trip_keeps_the_step() -> None:
    d = run(progressing(1, passes=1), observe(live=AT_50, command=command("pause")), MIN)
    d = run(d.state, observe(live=AT_50, command=command("resume")), 4 * MIN)
    assert d.state.phase is Phase.PROGRESSING
    assert d.state.step == 1
    assert d.state.passes == 0
    assert d.state.step_started_at == T0 + 4 * MIN
    # the hold restarted: 2 passes right after the resume are not enough before 2 minutes
    d = run(d.state, observe(live=AT_50, metrics=passing(1)), 5 * MIN)
    d = run(d.state, observe(live=AT_50, metrics=passing(1)), 5 * MIN + 30 * SEC)
    assert d.state.step == 1
    d = run(d.state, observe(live=AT_50), 6 * MIN)
    assert d.state.step == 2


# =================================================================================================
# Commands (docs/design.md §4)
# =================================================================================================


@pytest.mark.parametrize(
    ("state", "cmd"),
    [
        pytest.param(idle(), command("abort"), id="idle--abort"),
        pytest.param(progressing(1), command("abort", rid="ffffffffff-1"), id="progressing--other"),
        pytest.param(
            progressing(1), command("promote", rid=rollout_id(CANARY_HASH, 2)), id="other-attempt"
        ),
        pytest.param(
            rolled_back(base_revision=ROLLBACK_REV),
            command("retry", rid=NEW_RID),
            id="rolled-back--other",
        ),
    ],
)
def test_command_for_another_rollout_is_dropped_and_consumed(state: RolloutState, cmd: Any) -> None:
    obs = observe(live=state.weights, command=cmd)
    if state.phase is Phase.IDLE:
        obs = observe(canary=STABLE_HASH, release=release_at(BASE_REV), command=cmd)
    elif state.phase is Phase.ROLLED_BACK:
        obs = replace(
            obs,
            canary=replace(obs.canary, template_hash=STABLE_HASH),
            release=rolled_back_release(),
        )
    d = run(state, obs, MIN)
    assert names(d) == (ev.COMMAND_DROPPED,)
    assert d.events[0].warning
    assert d.consume_command
    assert d.changed
    assert d.state.phase is state.phase
    assert d.weights is None


@pytest.mark.parametrize(
    ("state", "cmd"),
    [
        pytest.param(pending(), "pause", id="pending--pause"),
        pytest.param(paused(PauseKind.MANUAL), "pause", id="paused--pause"),
        pytest.param(progressing(0), "resume", id="progressing--resume"),
        pytest.param(succeeded(), "promote", id="succeeded--promote"),
        pytest.param(pending(), "promote-full", id="pending--promote-full"),
        pytest.param(progressing(0), "retry", id="progressing--retry"),
        pytest.param(rolling_back(), "abort", id="rolling-back--abort"),
        pytest.param(rolled_back(base_revision=ROLLBACK_REV), "abort", id="rolled-back--abort"),
    ],
)
def test_command_that_does_not_apply_to_the_phase_is_dropped(state: RolloutState, cmd: str) -> None:
    # the canary is down only where it has no traffic (else it is rolled back at once)
    down = state.weights.canary == 0
    obs = observe(live=state.weights, command=command(cmd), canary_available=not down)
    if state.phase is Phase.ROLLED_BACK:
        obs = replace(
            obs,
            canary=replace(obs.canary, template_hash=STABLE_HASH),
            release=rolled_back_release(),
        )
    if state.phase is Phase.ROLLING_BACK:
        obs = replace(obs, rollback_job=job(running=True))
    d = run(state, obs)
    assert names(d)[0] == ev.COMMAND_DROPPED
    assert d.consume_command
    assert d.state.phase is state.phase


def test_unreadable_command_is_dropped_and_consumed() -> None:
    d = run(
        progressing(1),
        observe(live=AT_50, command_error="canary.dev/command is unreadable: unknown cmd 'stop'"),
    )
    assert names(d) == (ev.COMMAND_DROPPED,)
    assert "unknown cmd" in d.events[0].fields["reason"]
    assert d.consume_command
    assert d.state.phase is Phase.PROGRESSING


@pytest.mark.parametrize(
    ("cmd", "phase"),
    [
        pytest.param("resume", Phase.PAUSED, id="resume"),
        pytest.param("promote", Phase.PAUSED, id="promote"),
    ],
)
def test_command_needing_an_available_canary_is_dropped(cmd: str, phase: Phase) -> None:
    state = paused(PauseKind.ERRORS, step=0)
    d = run(state, observe(canary_available=False, command=command(cmd)), MIN)
    assert names(d) == (ev.COMMAND_DROPPED,)
    assert d.state.phase is phase
    assert d.weights is None


def test_retry_without_the_failed_canary_deployed_is_dropped() -> None:
    obs = observe(canary=STABLE_HASH, release=rolled_back_release(), command=command("retry"))
    d = run(rolled_back(base_revision=ROLLBACK_REV), obs)
    assert names(d) == (ev.COMMAND_DROPPED,)
    assert d.state.phase is Phase.ROLLED_BACK


@pytest.mark.parametrize(
    ("state", "live"),
    [
        pytest.param(pending(), ALL_STABLE, id="pending"),
        pytest.param(paused(PauseKind.MANUAL, step=1), AT_50, id="paused"),
        pytest.param(succeeded(), AT_100, id="succeeded"),
    ],
)
def test_abort_in_any_active_phase_rolls_back(state: RolloutState, live: Weights) -> None:
    d = run(state, observe(live=live, command=command("abort")))
    assert d.state.phase is Phase.ROLLING_BACK
    assert d.state.weights == ALL_STABLE
    assert d.start_rollback == BASE_REV
    assert d.consume_command


def test_abort_in_rollback_failed_gives_exactly_one_more_helm_attempt() -> None:
    aborted = run(rollback_failed(), observe(command=command("abort")), MIN)
    assert aborted.state.phase is Phase.ROLLING_BACK
    assert aborted.start_rollback == BASE_REV  # traffic is on stable already: helm at once
    assert aborted.state.rollback is not None
    assert aborted.state.rollback.attempts == 4
    idle_tick = again(PLAN, aborted, observe(rollback_job=job(running=True)), T0 + 2 * MIN)
    assert idle_tick.start_rollback is None
    failed = run(aborted.state, observe(rollback_job=job(ok=False, error="boom")), 7 * MIN)
    assert names(failed) == (ev.ROLLBACK_HELM_FAILED, ev.ROLLOUT_ROLLBACK_FAILED)
    assert failed.state.phase is Phase.ROLLBACK_FAILED
    assert failed.start_rollback is None


# =================================================================================================
# Weights: drift, ownership, stable unavailable (docs/design.md §1)
# =================================================================================================


@pytest.mark.parametrize(
    ("state", "live"),
    [
        pytest.param(progressing(0), weights(50, 50), id="progressing"),
        pytest.param(progressing(1), ALL_STABLE, id="progressing-self-heal-to-chart-default"),
        pytest.param(pending(), weights(50, 50), id="pending"),
        pytest.param(paused(PauseKind.MANUAL, step=1), ALL_STABLE, id="paused-manual"),
        pytest.param(paused(PauseKind.ERRORS, step=1), AT_50, id="paused-on-stable"),
        pytest.param(succeeded(), AT_50, id="succeeded"),
        pytest.param(rollback_failed(), AT_10, id="rollback-failed"),
    ],
)
def test_weight_drift_is_reported_and_rewritten(state: RolloutState, live: Weights) -> None:
    obs = observe(live=live, canary_available=state.phase is not Phase.PENDING)
    if state.phase is Phase.ROLLBACK_FAILED:
        obs = replace(obs, rollback_job=job(ok=False))
    d = run(state, obs, 10 * SEC)
    assert names(d) == (ev.WEIGHT_DRIFT, ev.WEIGHT_SET)
    assert d.events[0].warning
    assert d.events[0].fields["live"] == live.to_json()
    assert d.weights == state.weights
    assert d.state.phase is state.phase
    assert d.state.step == state.step


def test_drift_together_with_a_new_canary_starts_over_instead() -> None:
    d = run(progressing(1), observe(live=weights(70, 30), **NEW_CANARY), MIN)
    assert ev.WEIGHT_DRIFT not in names(d)
    assert d.state.phase is Phase.PENDING
    assert d.weights == ALL_STABLE


def test_a_check_over_drifted_weights_is_not_counted() -> None:
    """Regression: a weight.drift rewrite starts a new window: the sample taken over the drifted
    weights is not counted and the next check waits for settle (docs/design.md §3)."""
    drifted = sample(canary_requests=0.0, stable_requests=900.0, error_rate=None, latency=None)
    d = run(progressing(0, passes=1), observe(live=ALL_STABLE, metrics=drifted), 90 * SEC)
    assert names(d) == (ev.WEIGHT_DRIFT, ev.WEIGHT_SET)
    assert d.state.fails == 0
    # and the next check, 35 s later, must not look back before the rewrite
    assert d.state.step_started_at is not None
    later = T0 + 125 * SEC
    nxt = check_window(PLAN.analysis, d.state.step_started_at, d.state.last_check_at, later, SCRAPE)
    assert not nxt.due or nxt.window is None or nxt.window <= 35 * SEC


def test_rollout_never_raises_the_share_of_an_unavailable_canary() -> None:
    # drifted to all-stable while the canary is down: the step weight is not put back, and
    # the canary that went down with traffic is rolled back at once
    d = run(progressing(1), observe(live=ALL_STABLE, canary_available=False), MIN)
    assert d.weights is None
    assert d.state.phase is Phase.ROLLING_BACK
    assert d.start_rollback == BASE_REV


@pytest.mark.parametrize("live", [ALL_STABLE, AT_10], ids=["all-stable", "partly"])
@pytest.mark.parametrize("step", [1, 2])
def test_a_manual_pause_never_puts_drifted_weight_back_on_a_canary_that_is_down(
    step: int, live: Weights
) -> None:
    """Paused by hand at a step, the weights moved towards stable (a human, a failover) while
    the canary went down: the step's canary share is not written back; the canary that is
    down with traffic held for it is rolled back, its traffic already on stable."""
    state = paused(PauseKind.MANUAL, step=step)
    assert state.weights.canary > live.canary
    d = run(state, observe(live=live, canary_available=False), MIN)
    assert d.weights is None or d.weights.canary <= live.canary, d.weights
    assert ev.WEIGHT_SET not in names(d) or d.weights == ALL_STABLE
    assert d.state.phase is Phase.ROLLING_BACK


def test_refused_drift_rewrite_is_not_reported_every_tick() -> None:
    """Regression: a drift that cannot be rewritten (stable unavailable, in a pause on stable)
    is reported once, not on every tick with nothing changed."""
    obs = observe(live=AT_50, stable_available=False)
    state = paused(PauseKind.ERRORS, step=1, weights=ALL_STABLE)
    first = run(state, obs, MIN)
    assert names(first) == (ev.WEIGHT_DRIFT,)
    second = again(PLAN, first, obs, T0 + 2 * MIN)
    assert not second.changed
    assert names(second) == ()


def test_breach_with_stable_unavailable_holds_weights_and_alerts() -> None:
    state = progressing(1, fails=1)
    d = run(state, observe(live=AT_50, stable_available=False, metrics=failing(1)), MIN)
    assert names(d) == (ev.CHECK_FAILED, ev.ROLLBACK_STARTED, ev.STABLE_UNAVAILABLE)
    assert d.events[-1].warning
    assert d.state.phase is Phase.ROLLING_BACK
    assert d.weights is None
    assert d.state.weights == AT_50
    assert d.start_rollback is None


def test_rolling_back_with_stable_unavailable_waits_without_helm_and_alerts_once() -> None:
    state = rolling_back(weights=AT_50)
    obs = observe(live=AT_50, stable_available=False)
    d = run(state, obs, MIN)
    assert names(d) == (ev.STABLE_UNAVAILABLE,)
    assert (d.weights, d.start_rollback) == (None, None)
    d2 = again(PLAN, d, obs, T0 + 2 * MIN)
    assert names(d2) == ()
    assert (d2.weights, d2.start_rollback) == (None, None)
    # stable is back: weights first, helm in the same decision, after the write
    d3 = again(PLAN, d2, observe(live=AT_50), T0 + 3 * MIN)
    assert names(d3) == (
        ev.WEIGHT_SET,
        ev.ROLLBACK_TRAFFIC_REVERTED,
        ev.ROLLBACK_HELM_STARTED,
    )
    assert d3.weights == ALL_STABLE
    assert d3.start_rollback == BASE_REV


def test_pending_retries_weights_to_stable_once_stable_is_back() -> None:
    """Regression: a Pending rollout that inherited canary traffic (stable was down when the new
    canary superseded the old one) sends it to stable as soon as stable is available
    (docs/design.md §4 any active | canary changes again | weights to stable)."""
    # supersede while stable was down (test_supersede_with_stable_unavailable_holds_weights)
    held = run(progressing(1), observe(live=AT_50, stable_available=False, **NEW_CANARY), MIN)
    assert held.state.phase is Phase.PENDING
    assert held.state.weights == AT_50
    # stable is back, the new canary is still rolling out
    d = run(held.state, observe(live=AT_50, canary_available=False, **NEW_CANARY), 2 * MIN)
    assert d.weights == ALL_STABLE


def test_supersede_with_stable_unavailable_holds_weights() -> None:
    d = run(progressing(1), observe(live=AT_50, stable_available=False, **NEW_CANARY), MIN)
    assert d.state.phase is Phase.PENDING
    assert d.weights is None
    assert ev.STABLE_UNAVAILABLE in names(d)


# =================================================================================================
# RollingBack: weights first, then helm; confirmation; failures; waiting (docs/design.md §1, §4, §7)
# =================================================================================================


def test_breach_writes_weights_and_starts_helm_after_them_in_one_decision() -> None:
    breach = run(progressing(1, fails=1), observe(live=AT_50, metrics=failing(1)), MIN)
    assert (breach.weights, breach.start_rollback) == (ALL_STABLE, BASE_REV)
    order = names(breach)
    assert order.index(ev.WEIGHT_SET) < order.index(ev.ROLLBACK_HELM_STARTED)
    assert breach.state.rollback is not None
    assert (breach.state.rollback.attempts, breach.state.rollback.started_at) == (1, T0 + MIN)
    # the next tick, helm still running: nothing new
    busy = again(PLAN, breach, observe(live=AT_50, rollback_job=job(running=True)), T0 + 2 * MIN)
    assert busy.start_rollback is None
    assert names(busy) == (ev.ROLLBACK_WAITING,)


def test_rolling_back_writes_weights_and_starts_helm_in_one_decision() -> None:
    d = run(rolling_back(weights=AT_50), observe(live=AT_50), MIN)
    assert names(d) == (ev.WEIGHT_SET, ev.ROLLBACK_TRAFFIC_REVERTED, ev.ROLLBACK_HELM_STARTED)
    assert d.weights == ALL_STABLE
    assert d.start_rollback == BASE_REV


@pytest.mark.parametrize(
    ("obs", "events"),
    [
        pytest.param(
            observe(
                canary=STABLE_HASH, release=rolled_back_release(), rollback_job=job(running=True)
            ),
            (ev.ROLLBACK_WAITING,),
            id="job-still-running",
        ),
        pytest.param(
            observe(
                release=release_at(4, rev(5, RevisionStatus.PENDING_ROLLBACK, "Rollback to 3"))
            ),
            (ev.ROLLBACK_WAITING,),
            id="release-pending-rollback",
        ),
        pytest.param(
            observe(release=release_at(4, rev(5, RevisionStatus.PENDING_UPGRADE))),
            (ev.ROLLBACK_WAITING,),
            id="release-pending-upgrade",
        ),
    ],
)
def test_rolling_back_waits_for_helm_to_settle(obs: Observation, events: tuple[str, ...]) -> None:
    state = rolling_back(attempts=1, started_at=T0)
    d = run(state, obs, MIN)
    assert names(d) == events
    assert d.state.phase is Phase.ROLLING_BACK
    assert d.start_rollback is None
    assert d.state.rollback == state.rollback  # no failure counted while helm is busy
    d2 = again(PLAN, d, obs, T0 + 2 * MIN)
    assert names(d2) == ()
    assert not d2.changed


def test_a_new_leader_waits_for_a_pending_release_before_the_first_attempt() -> None:
    obs = observe(release=release_at(4, rev(5, RevisionStatus.PENDING_UPGRADE)))
    d = run(rolling_back(), obs, MIN)
    assert d.start_rollback is None


def test_confirmation_needs_a_deployed_rollback_revision_newer_than_the_canary() -> None:
    # helm exited 0, but history still shows the canary's revision deployed: not confirmed,
    # and not repeated either while the history may lag (one breach, one rollback)
    state = rolling_back(attempts=1, started_at=T0)
    d = run(state, observe(rollback_job=job(ok=True)), MIN)
    assert d.state.phase is Phase.ROLLING_BACK
    assert names(d) == (ev.ROLLBACK_WAITING,)
    assert d.start_rollback is None
    # still not there after the rollback timeout: the attempt counts as failed
    late = run(d.state, observe(rollback_job=job(ok=True)), PLAN.rollback.timeout)
    assert names(late) == (ev.ROLLBACK_HELM_FAILED,)
    assert "Rollback to 3" in late.events[0].fields["error"]
    retry = run(late.state, observe(), PLAN.rollback.timeout + 10 * SEC)  # backoff from failure
    assert names(retry) == (ev.ROLLBACK_HELM_STARTED,)


def test_confirmation_from_history_alone_after_a_restart() -> None:
    state = rolling_back(attempts=1, started_at=T0)
    d = run(state, observe(canary=STABLE_HASH, release=rolled_back_release()), MIN)
    assert names(d) == (ev.ROLLBACK_HELM_SUCCEEDED, ev.ROLLOUT_ROLLED_BACK)
    assert d.state.last is not None
    assert d.state.last.outcome is Outcome.ROLLED_BACK
    assert d.start_rollback is None


def test_an_attempt_that_left_no_trace_is_run_again_at_once_after_a_restart() -> None:
    """The controller stopped between persisting helm_started and helm recording anything: the
    new process has no job and the history shows neither a pending nor a rollback revision.
    That attempt never ran: it runs now, with no backoff, and is no failure."""
    state = rolling_back(attempts=1, started_at=T0)
    d = run(state, observe(release=release_at()), MIN)
    assert names(d) == (ev.ROLLBACK_HELM_STARTED,)
    assert "left no trace" in d.events[0].fields["resumed"]
    assert d.start_rollback == BASE_REV
    assert d.state.rollback is not None
    assert (d.state.rollback.attempts, d.state.rollback.failures) == (1, 0)


def test_an_attempt_of_another_process_gets_time_to_show_up_in_the_history() -> None:
    """Right after a restart (or while the old leader's helm is starting), no trace is not yet
    proof that helm never ran: wait HELM_RECORD_GRACE before running it again."""
    state = rolling_back(attempts=1, started_at=T0)
    d = run(state, observe(release=release_at()), 5 * SEC)
    assert names(d) == (ev.ROLLBACK_WAITING,)
    assert d.start_rollback is None
    assert d.state.rollback is not None and d.state.rollback.attempts == 1
    later = run(d.state, observe(release=release_at()), HELM_RECORD_GRACE)
    assert later.start_rollback == BASE_REV


def test_interrupted_attempts_do_not_use_up_the_retries() -> None:
    """With `retries: 1`, a crash before helm ran must not end in RollbackFailed with helm
    never run."""
    state = rolling_back(rollback=RollbackProgress(attempts=1, limit=1, started_at=T0))
    d = run(state, observe(release=release_at()), MIN)
    assert d.state.phase is Phase.ROLLING_BACK
    assert d.start_rollback == BASE_REV


def test_an_earlier_attempts_failure_is_not_charged_to_the_current_one() -> None:
    """The lease moved between a write and helm: the job left from attempt 1 says nothing
    about attempt 2, which never ran here."""
    state = rolling_back(attempts=2, failures=1, started_at=T0)
    stale = RollbackJob(revision=BASE_REV, error="boom", attempt=1)
    d = run(state, observe(release=release_at(), rollback_job=stale), MIN)
    assert names(d) == (ev.ROLLBACK_HELM_STARTED,)
    assert d.state.rollback is not None
    assert (d.state.rollback.attempts, d.state.rollback.failures) == (2, 1)


def test_our_rollback_stuck_pending_ends_in_rollback_failed() -> None:
    """helm died mid-rollback (or a hook failed): its revision stays pending-rollback forever.
    Past the timeout and the grace no helm of ours can be running: a human must settle it."""
    pending_rev = rev(CANARY_REV + 1, "pending-rollback", rollback_description(BASE_REV))
    stuck = release_at(CANARY_REV, pending_rev)
    state = rolling_back(attempts=1, started_at=T0)
    waiting = run(state, observe(release=stuck), PLAN.rollback.timeout)
    assert waiting.state.phase is Phase.ROLLING_BACK
    assert waiting.start_rollback is None
    d = run(state, observe(release=stuck), PLAN.rollback.timeout + ROLLBACK_PENDING_GRACE + MIN)
    assert d.state.phase is Phase.ROLLBACK_FAILED
    assert d.state.last is not None and "pending-rollback" in d.state.last.reason
    assert d.start_rollback is None


def test_a_history_that_cannot_be_read_never_freezes_a_breach() -> None:
    """helm history forbidden or down: the breach still takes traffic to stable; helm waits."""
    state = progressing(0, fails=1)
    unreadable = Observation(
        **{
            **observe(live=AT_10, metrics=failing()).__dict__,
            "release": None,
            "release_error": "forbidden: list secrets",
        }
    )
    d = run(state, unreadable, MIN)
    assert d.state.phase is Phase.ROLLING_BACK
    assert d.weights == weights(100, 0)
    assert d.start_rollback is None
    assert ev.RELEASE_UNREADABLE in names(d)


def test_a_rollback_to_another_revision_is_not_ours() -> None:
    moved = history(
        *(rev(n) for n in range(1, 5)), rev(5, RevisionStatus.DEPLOYED, "Rollback to 2")
    )
    d = run(
        rolling_back(attempts=1, started_at=T0), observe(canary=STABLE_HASH, release=moved), MIN
    )
    assert names(d)[0] == ev.ROLLOUT_SUPERSEDED
    assert d.state.phase is Phase.IDLE
    assert d.state.last is not None
    assert d.state.last.outcome is Outcome.SUPERSEDED
    assert d.start_rollback is None


def test_rollback_is_not_confirmed_while_the_canary_still_differs() -> None:
    """design §4: confirmed once the live canary equals stable again. The Deployment gets up to
    the rollback timeout to get there; after that the rollback did not do what it is for (the
    base's canary is not stable's): RollbackFailed, traffic on stable, a human decides."""
    state = rolling_back(attempts=1, started_at=T0)
    differs = observe(canary=CANARY_HASH, release=rolled_back_release(), rollback_job=job())
    d = run(state, differs, MIN)
    assert d.state.phase is Phase.ROLLING_BACK
    assert names(d) == (ev.ROLLBACK_WAITING,)
    assert d.start_rollback is None
    still = run(d.state, differs, 2 * MIN)
    assert names(still) == () and not still.changed
    late = run(d.state, differs, PLAN.rollback.timeout)
    assert late.state.phase is Phase.ROLLBACK_FAILED
    assert names(late) == (ev.ROLLOUT_ROLLBACK_FAILED,)
    assert late.state.last is not None and "still differs" in late.state.last.reason
    assert late.state.last.outcome is Outcome.ROLLBACK_FAILED


def test_rollback_of_a_rollout_with_unknown_revision_is_confirmed() -> None:
    """Regression: with the canary's revision unknown (history unreadable when the rollout
    started), a deployed 'Rollback to <base>' newer than the base still confirms the rollback
    instead of being retried `retries` times."""
    state = rolling_back(attempts=1, started_at=T0, revision=None)
    d = run(
        state, observe(canary=STABLE_HASH, release=rolled_back_release(), rollback_job=job()), MIN
    )
    assert d.state.phase is Phase.ROLLED_BACK


def test_helm_failure_backs_off_then_retries_then_gives_up() -> None:
    fail = job(ok=False, error="Error: UPGRADE FAILED: timed out")
    state = rolling_back(attempts=1, started_at=T0)
    early = run(state, observe(rollback_job=fail), 5 * SEC)
    assert names(early) == (ev.ROLLBACK_HELM_FAILED,)
    assert early.events[0].fields["error"] == fail.error
    assert early.start_rollback is None
    assert early.state.rollback is not None
    assert (early.state.rollback.attempts, early.state.rollback.failures) == (1, 1)
    # the backoff runs from when the failure was seen (5 s), not from the attempt's start:
    # with a 5 min helm timeout the latter would always have passed already
    assert names(run(early.state, observe(rollback_job=fail), 14 * SEC)) == ()
    second = run(early.state, observe(rollback_job=fail), 15 * SEC)
    assert names(second) == (ev.ROLLBACK_HELM_STARTED,)
    assert second.start_rollback == BASE_REV
    # attempt 2 fails (seen at 20 s); its retry waits 20 s more
    third = run(second.state, observe(rollback_job=fail), 20 * SEC)
    assert names(third) == (ev.ROLLBACK_HELM_FAILED,)
    assert names(run(third.state, observe(rollback_job=fail), 39 * SEC)) == ()
    fourth = run(third.state, observe(rollback_job=fail), 40 * SEC)
    assert fourth.start_rollback == BASE_REV
    gave_up = run(fourth.state, observe(rollback_job=fail), MIN)
    assert names(gave_up) == (ev.ROLLBACK_HELM_FAILED, ev.ROLLOUT_ROLLBACK_FAILED)
    assert gave_up.state.phase is Phase.ROLLBACK_FAILED
    assert gave_up.state.last is not None
    assert gave_up.state.last.outcome is Outcome.ROLLBACK_FAILED
    assert gave_up.state.weights == ALL_STABLE
    assert gave_up.start_rollback is None


def test_rolling_back_without_a_base_revision_fails_without_helm() -> None:
    d = run(rolling_back(base_revision=None), observe(), MIN)
    assert d.state.phase is Phase.ROLLBACK_FAILED
    assert d.start_rollback is None
    assert names(d) == (ev.ROLLOUT_ROLLBACK_FAILED,)


def test_rolled_back_outcome_keeps_the_breach_reason() -> None:
    state = rolling_back(attempts=1, started_at=T0, reason="2 consecutive failed checks: 5 %")
    busy = observe(release=release_at(4, rev(5, RevisionStatus.PENDING_ROLLBACK, "Rollback to 3")))
    waited = run(state, busy, MIN)
    done = run(waited.state, observe(canary=STABLE_HASH, release=rolled_back_release()), 2 * MIN)
    assert done.state.last is not None
    assert done.state.last.reason.startswith("2 consecutive failed checks")


# =================================================================================================
# After a rollback (docs/design.md §4)
# =================================================================================================


def test_our_own_rollback_never_starts_a_rollout() -> None:
    # the base revision had a canary of its own ("e"*64): our rollback put it back
    other = "e" * 64
    d = run(rolled_back(), observe(canary=other, release=rolled_back_release()), MIN)
    assert names(d) == ()
    assert d.state.phase is Phase.ROLLED_BACK
    assert not d.changed


def test_rolled_back_records_the_base_once_canary_equals_stable() -> None:
    d = run(rolled_back(), observe(canary=STABLE_HASH, release=rolled_back_release()), MIN)
    assert names(d) == (ev.BASE_RECORDED,)
    assert d.state.base_revision == ROLLBACK_REV
    assert d.state.phase is Phase.ROLLED_BACK
    steady = again(
        PLAN, d, observe(canary=STABLE_HASH, release=rolled_back_release()), T0 + 2 * MIN
    )
    assert not steady.changed


def test_the_failed_hash_restarts_only_with_retry() -> None:
    obs = observe(canary=CANARY_HASH, release=AFTER_ROLLBACK_NEW)
    held = run(rolled_back(), obs, MIN)
    assert held.state.phase is Phase.ROLLED_BACK
    for minutes in (2, 30, 600):
        later = again(PLAN, held, obs, T0 + minutes * MIN)
        assert later.state.phase is Phase.ROLLED_BACK
        assert not later.changed
    retried = run(held.state, replace(obs, command=command("retry")), 31 * MIN)
    assert retried.state.phase is Phase.PENDING
    assert retried.state.rollout_id == rollout_id(CANARY_HASH, 2)
    assert retried.state.base_revision == BASE_REV


def test_rollback_failed_keeps_traffic_on_stable_and_a_new_canary_starts_over() -> None:
    d = run(rollback_failed(), observe(canary=NEW_CANARY_HASH, release=release_at(5)), MIN)
    assert d.state.phase is Phase.PENDING
    assert d.state.rollout_id == NEW_RID
    assert d.state.last is not None
    assert d.state.last.outcome is Outcome.ROLLBACK_FAILED


def test_rollback_failed_waits_for_a_human() -> None:
    d = run(rollback_failed(), observe(), 60 * MIN)
    assert names(d) == ()
    assert not d.changed


# =================================================================================================
# Lost state, deleted and invalid plans, broken routes (docs/design.md §2, §3, §4)
# =================================================================================================


def test_lost_state_sends_traffic_to_stable_and_starts_over_from_pending() -> None:
    obs = observe(live=AT_50, state_lost="canary.dev/state is corrupt: Expecting value")
    d = run(None, obs, MIN)
    assert names(d) == (ev.STATE_LOST, ev.WEIGHT_SET, ev.BASE_FALLBACK, ev.ROLLOUT_STARTED)
    assert d.events[0].warning
    assert d.weights == ALL_STABLE
    assert d.state.phase is Phase.PENDING
    assert d.state.weights == ALL_STABLE
    assert d.state.rollout_id == RID


def test_missing_state_with_weights_off_stable_is_lost_state() -> None:
    d = run(None, observe(live=AT_10), MIN)
    assert names(d)[0] == ev.STATE_LOST
    assert d.weights == ALL_STABLE
    assert d.state.phase is Phase.PENDING


def test_lost_state_with_canary_equal_to_stable_goes_idle_on_stable() -> None:
    obs = observe(canary=STABLE_HASH, live=AT_50, state_lost="annotation stripped")
    d = run(None, obs, MIN)
    assert names(d)[:2] == (ev.STATE_LOST, ev.WEIGHT_SET)
    assert d.state.phase is Phase.IDLE
    assert d.weights == ALL_STABLE


def test_lost_state_with_stable_unavailable_holds_the_weights() -> None:
    obs = observe(live=AT_50, stable_available=False, state_lost="annotation stripped")
    d = run(None, obs, MIN)
    assert names(d)[:2] == (ev.STATE_LOST, ev.STABLE_UNAVAILABLE)
    assert d.weights is None


def test_deleted_plan_sends_traffic_to_stable() -> None:
    d = run(progressing(1), observe(live=AT_50, plan_deleted=True), MIN)
    assert names(d) == (ev.PLAN_DELETED, ev.WEIGHT_SET)
    assert d.weights == ALL_STABLE
    assert d.state.phase is Phase.IDLE
    steady = again(PLAN, d, observe(live=AT_50, plan_deleted=True), T0 + 2 * MIN)
    assert names(steady) == ()
    assert not steady.changed


def test_deleted_plan_while_idle_does_nothing() -> None:
    d = run(idle(), observe(canary=STABLE_HASH, plan_deleted=True))
    assert names(d) == ()
    assert not d.changed


def test_deleted_plan_with_stable_unavailable_is_reported_once() -> None:
    """Regression: plan.deleted is raised once while its traffic cannot go to stable, not on every
    tick with nothing changed."""
    obs = observe(live=AT_50, stable_available=False, plan_deleted=True)
    first = run(progressing(1), obs, MIN)
    assert first.weights is None
    second = again(PLAN, first, obs, T0 + 2 * MIN)
    assert names(second) == ()


def test_invalid_plan_pauses_on_stable_and_resume_waits_for_a_fix() -> None:
    error = "spec.steps[2].weight: 40 is not greater than the previous step (50)"
    d = run(progressing(1), observe(live=AT_50, plan_error=error), MIN)
    assert names(d) == (ev.PLAN_INVALID, ev.ROLLOUT_PAUSED, ev.WEIGHT_SET)
    assert d.state.phase is Phase.PAUSED
    assert d.state.paused is PauseKind.INVALID_PLAN
    assert d.weights == ALL_STABLE
    steady = again(PLAN, d, observe(live=AT_50, plan_error=error), T0 + 2 * MIN)
    assert names(steady) == ()
    assert not steady.changed
    still = run(d.state, observe(plan_error=error, command=command("resume")), 3 * MIN)
    assert names(still) == (ev.COMMAND_DROPPED,)
    assert still.state.phase is Phase.PAUSED
    fixed = run(d.state, observe(command=command("resume")), 4 * MIN)
    assert fixed.state.phase is Phase.PROGRESSING
    assert fixed.weights == AT_50


def test_promote_is_refused_while_the_plan_is_invalid() -> None:
    """Regression: like resume, promote is refused while the plan is invalid: its rollout stays
    paused with traffic on stable (docs/design.md §3)."""
    error = "spec.analysis.window: 10s is shorter than the interval (30s)"
    state = paused(PauseKind.INVALID_PLAN, step=0, reason=error)
    d = run(state, observe(plan_error=error, command=command("promote")), MIN)
    assert names(d) == (ev.COMMAND_DROPPED,)
    assert d.weights is None


def test_invalid_plan_does_not_stop_a_rollback() -> None:
    d = run(rolling_back(), observe(plan_error="bad"), MIN)
    assert d.state.phase is Phase.ROLLING_BACK
    assert d.start_rollback == BASE_REV


def test_route_error_is_reported_once_and_nothing_is_written() -> None:
    obs = observe(live=None, route_error="http[1] routes to reviews/v2, not the plan's stable")
    d = run(progressing(1), obs, MIN)
    assert names(d) == (ev.ROUTE_INVALID,)
    assert d.events[0].warning
    assert d.weights is None
    assert d.start_rollback is None
    steady = again(PLAN, d, obs, T0 + 2 * MIN)
    assert names(steady) == ()
    assert not steady.changed


def test_route_error_is_reported_again_after_the_route_was_fixed() -> None:
    """Regression: an alert is raised once per occurrence of its condition: a route that breaks,
    is fixed and breaks again is reported twice."""
    error = "http[1] routes to reviews/v2, not the plan's stable"
    broken = run(progressing(1), observe(live=None, route_error=error), MIN)
    fixed = run(broken.state, observe(live=AT_50), 2 * MIN)
    assert names(fixed) == ()
    again_broken = run(fixed.state, observe(live=None, route_error=error), 3 * MIN)
    assert names(again_broken) == (ev.ROUTE_INVALID,)


# =================================================================================================
# No change, no write (docs/architecture.md: it writes only when something changed)
# =================================================================================================


@pytest.mark.parametrize(
    ("state", "obs"),
    [
        pytest.param(idle(), observe(canary=STABLE_HASH, release=release_at(BASE_REV)), id="idle"),
        pytest.param(pending(), observe(canary_available=False), id="pending"),
        pytest.param(progressing(1), observe(live=AT_50), id="progressing"),
        pytest.param(paused(PauseKind.MANUAL, step=1), observe(live=AT_50), id="paused-manual"),
        pytest.param(paused(PauseKind.ERRORS, step=1), observe(), id="paused-on-errors"),
        pytest.param(succeeded(), observe(live=AT_100), id="succeeded"),
        pytest.param(
            rolled_back(),
            observe(canary=STABLE_HASH, release=rolled_back_release()),
            id="rolled-back",
        ),
        pytest.param(rollback_failed(), observe(), id="rollback-failed"),
    ],
)
def test_nothing_to_do_changes_nothing(state: RolloutState, obs: Observation) -> None:
    if state.phase is Phase.ROLLED_BACK:
        state = replace(state, base_revision=ROLLBACK_REV)
    d = run(state, obs, 30 * SEC)
    assert not d.changed
    assert names(d) == ()
    assert d.weights is None
    assert d.start_rollback is None
    assert not d.consume_command
    assert d.state == state


@pytest.mark.parametrize(
    ("state", "obs", "after"),
    [
        pytest.param(idle(), observe(canary_available=False), ZERO, id="rollout-started"),
        pytest.param(pending(), observe(), MIN, id="step-entered"),
        pytest.param(
            progressing(0, errors=4),
            observe(live=AT_10, metrics=erroring()),
            MIN,
            id="paused-on-errors",
        ),
        pytest.param(progressing(2, passes=2), observe(live=AT_100), 2 * MIN, id="succeeded"),
        pytest.param(finalising(), observe(live=AT_100, **PROMOTED), MIN, id="finalised"),
        pytest.param(
            rolling_back(attempts=3, failures=2, started_at=T0),
            observe(rollback_job=job(ok=False)),
            MIN,
            id="rollback-failed",
        ),
        pytest.param(
            progressing(1),
            observe(live=AT_50, command=command("pause")),
            MIN,
            id="paused-by-command",
        ),
        pytest.param(progressing(1), observe(live=AT_50, plan_error="bad"), MIN, id="invalid-plan"),
    ],
)
def test_deciding_twice_writes_once(
    state: RolloutState, obs: Observation, after: timedelta
) -> None:
    first = run(state, obs, after)
    assert first.changed
    second = again(PLAN, first, obs, T0 + after)
    assert not second.changed, names(second)
    assert names(second) == ()
    assert second.weights is None
    assert second.state == first.state


def test_changed_state_is_stamped() -> None:
    d = run(idle(), observe(), MIN)
    assert d.state.updated_at == T0 + MIN
    steady = run(progressing(1), observe(live=AT_50), MIN)
    assert steady.state.updated_at is None


# =================================================================================================
# Properties over random sequences of observations
# =================================================================================================

#: closes an outstanding helm attempt: it failed, succeeded, or the rollout ended otherwise
_ATTEMPT_CLOSED = {
    ev.ROLLBACK_HELM_FAILED,
    ev.ROLLBACK_HELM_SUCCEEDED,
    ev.ROLLOUT_SUPERSEDED,
    ev.STATE_LOST,  # the record of the attempt is gone; helm's own state guards (below)
}
_CANARIES = ["c" * 64, "d" * 64, "e" * 64]


@dataclass
class World:
    """A tiny cluster: helm history with the templates each revision renders, two
    Deployments' availability, the live weights, and a helm rollback job."""

    revisions: list[tuple[int, RevisionStatus, str, str, str]]  # n, status, desc, stable, canary
    stable_ok: bool = True
    canary_ok: bool = True
    live: Weights = ALL_STABLE
    job_state: Any = None

    @classmethod
    def fresh(cls) -> World:
        return cls(
            revisions=[
                (1, RevisionStatus.SUPERSEDED, "Install complete", STABLE_HASH, STABLE_HASH),
                (2, RevisionStatus.SUPERSEDED, "Upgrade complete", STABLE_HASH, STABLE_HASH),
                (3, RevisionStatus.SUPERSEDED, "Upgrade complete", STABLE_HASH, STABLE_HASH),
                (4, RevisionStatus.DEPLOYED, "Upgrade complete", STABLE_HASH, CANARY_HASH),
            ]
        )

    def deployed(self) -> tuple[int, RevisionStatus, str, str, str]:
        return next(r for r in reversed(self.revisions) if r[1] is RevisionStatus.DEPLOYED)

    def add(self, status: RevisionStatus, desc: str, stable: str, canary: str) -> None:
        n = self.revisions[-1][0] + 1
        if status is RevisionStatus.DEPLOYED:
            self.revisions = [
                (
                    r[0],
                    RevisionStatus.SUPERSEDED if r[1] is RevisionStatus.DEPLOYED else r[1],
                    *r[2:],
                )
                for r in self.revisions
            ]
        self.revisions.append((n, status, desc, stable, canary))

    def observation(self, **extra: Any) -> Observation:
        _, _, _, stable, canary = self.deployed()
        return observe(
            canary=canary,
            stable=stable,
            canary_available=self.canary_ok,
            stable_available=self.stable_ok,
            live=self.live,
            release=history(*(rev(n, s, d) for n, s, d, _, _ in self.revisions)),
            rollback_job=self.job_state,
            **extra,
        )


_WAIT = st.tuples(st.just("wait"), st.integers(1, 400))
_CHECK = st.tuples(st.just("check"), st.sampled_from(["pass", "fail", "error", "inconclusive"]))
_COMMAND = st.tuples(st.just("command"), st.sampled_from([c.value for c in CommandName]))
#: one_of picks a branch uniformly: repeat the common ones (time passing, checks, commands)
actions = st.one_of(
    _WAIT,
    _WAIT,
    _WAIT,
    _CHECK,
    _CHECK,
    _CHECK,
    _CHECK,
    _COMMAND,
    _COMMAND,
    st.tuples(st.just("upgrade"), st.sampled_from(_CANARIES)),
    st.tuples(st.just("promote"), st.none()),
    st.tuples(st.just("stable_ok"), st.booleans()),
    st.tuples(st.just("canary_ok"), st.booleans()),
    st.tuples(st.just("drift"), st.integers(0, 100)),
    # the canary goes down and the weights move in the same tick (a failover shifting traffic
    # off it): the only way a held canary share meets an unavailable canary
    st.tuples(st.just("outage"), st.integers(0, 100)),
    st.tuples(st.just("foreign_command"), st.sampled_from([c.value for c in CommandName])),
    st.tuples(st.just("helm"), st.sampled_from(["ok", "fail", "running"])),
    st.tuples(st.just("lose_state"), st.none()),
)

_SAMPLES = {"pass": passing, "fail": failing, "error": erroring, "inconclusive": inconclusive}


#: Where a sequence starts. From Idle alone, random actions seldom reach the phases that hold
#: a canary share (a manual pause at step 2 needs passes, holds and a pause command in order),
#: and the guards of those phases went untested: start some sequences there.
_STARTS: dict[str, Callable[[], RolloutState]] = {
    "idle": idle,
    "progressing-0": lambda: progressing(0),
    "progressing-1": lambda: progressing(1),
    "paused-manual-1": lambda: paused(PauseKind.MANUAL, step=1),
    "paused-manual-2": lambda: paused(PauseKind.MANUAL, step=2),
    "paused-errors": lambda: paused(PauseKind.ERRORS, step=1),
    "succeeded": succeeded,
}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(actions, min_size=1, max_size=60),
    st.sampled_from(["pause", "rollback"]),
    st.sampled_from(sorted(_STARTS)),
)
def test_invariants_over_random_sequences(
    steps: list[tuple[str, Any]], on_trouble: str, start: str
) -> None:
    p = plan(
        analysis=analysis(
            on_error=OnTrouble(on_trouble), on_inconclusive=OnTrouble(on_trouble), error_limit=2
        )
    )
    world = World.fresh()
    # CI has just pushed revision 4: a canary to analyse, or one under analysis already
    state: RolloutState | None = _STARTS[start]()
    world.live = state.weights if state.phase is not Phase.IDLE else ALL_STABLE
    now = T0
    helm_mode = "ok"
    outstanding = False  # a helm rollback started and not yet known to have failed/succeeded
    for action, arg in steps:
        extra: dict[str, Any] = {}
        now += SEC  # a tick takes time: no two decisions at the same instant
        if action == "wait":
            now += arg * SEC
        elif action == "upgrade":
            world.add(RevisionStatus.DEPLOYED, "Upgrade complete", world.deployed()[3], arg)
        elif action == "promote":
            canary = world.deployed()[4]
            world.add(RevisionStatus.DEPLOYED, "Upgrade complete", canary, canary)
        elif action == "check" and state is not None and wants_check(state):
            extra["metrics"] = _SAMPLES[arg](state.step, state.rollout_id)
        elif action == "stable_ok":
            world.stable_ok = arg
        elif action == "canary_ok":
            world.canary_ok = arg
        elif action == "drift":
            world.live = Weights.canary_at(arg)
        elif action == "outage":
            world.canary_ok = False
            world.live = Weights.canary_at(world.live.canary * arg // 101)  # below what it was
        elif action in ("command", "foreign_command") and state is not None:
            rid = state.rollout_id if action == "command" else "ffffffffff-9"
            extra["command"] = command(arg, rid=rid or "ffffffffff-9")
        elif action == "helm":
            helm_mode = arg
        elif action == "lose_state":
            state = None
            extra["state_lost"] = "canary.dev/state is corrupt"

        obs = world.observation(**extra)
        d = decide(p, state, obs, now)

        # --- invariants ---------------------------------------------------------------------
        assert all(e.name in ev.CATALOG for e in d.events)
        result = d.weights if d.weights is not None else obs.live_weights
        assert result is not None
        assert result.stable + result.canary == 100
        assert d.state.weights.stable + d.state.weights.canary == 100
        if d.weights is not None:
            live = obs.live_weights
            assert live is not None
            assert d.weights != live
            if d.weights.stable > live.stable:
                assert obs.stable.available, "raised the share of an unavailable stable"
            if d.weights.canary > live.canary:
                assert obs.canary.available, "raised the share of an unavailable canary"
        if not d.changed:
            assert d.weights is None
            assert d.start_rollback is None
            assert not d.consume_command
            assert d.events == (), "events without a change"
        on_stable = d.state.phase is Phase.PENDING or (
            d.state.phase is Phase.PAUSED and d.state.paused is not PauseKind.MANUAL
        )
        if on_stable and obs.stable.available:
            assert result == ALL_STABLE, f"{d.state.phase} with traffic off an available stable"
        assert (d.start_rollback is not None) == (ev.ROLLBACK_HELM_STARTED in names(d))
        if d.start_rollback is not None:
            assert result == ALL_STABLE, "helm rollback started while traffic is off stable"
            assert not (obs.rollback_job and obs.rollback_job.running)
            assert obs.release is not None
            assert not obs.release.pending
        for name in names(d):
            if name in _ATTEMPT_CLOSED:
                outstanding = False
            elif name == ev.ROLLBACK_HELM_STARTED:
                assert not outstanding, "two helm rollbacks without a failure or confirmation"
                outstanding = True

        # --- the world reacts ----------------------------------------------------------------
        state = d.state
        world.live = result
        if world.job_state is not None and world.job_state.running:
            world.job_state = job(ok=True)
            world.add(RevisionStatus.DEPLOYED, f"Rollback to {BASE_REV}", STABLE_HASH, STABLE_HASH)
        if d.start_rollback is not None:
            base = next(r for r in world.revisions if r[0] == d.start_rollback)
            if helm_mode == "ok":
                world.job_state = job(ok=True)
                world.add(RevisionStatus.DEPLOYED, f"Rollback to {base[0]}", base[3], base[4])
            elif helm_mode == "fail":
                world.job_state = job(ok=False, error="boom")
                world.add(RevisionStatus.FAILED, f"Rollback to {base[0]}", base[3], base[4])
            else:
                world.job_state = job(running=True)
        elif state.phase is not Phase.ROLLING_BACK:
            world.job_state = None


# =================================================================================================
# Alerts and helm history edge cases
# =================================================================================================


def test_stable_unavailable_is_raised_again_for_a_second_episode_in_one_rollout() -> None:
    # episode 1: a new canary supersedes the rollout while stable is down
    d = run(progressing(1), observe(live=AT_50, stable_available=False, **NEW_CANARY), MIN)
    assert ev.STABLE_UNAVAILABLE in names(d)
    new: dict[str, Any] = {"canary": NEW_CANARY_HASH, "release": release_at(5)}
    d = run(
        d.state, observe(live=AT_50, stable_available=False, canary_available=False, **new), 2 * MIN
    )
    assert names(d) == ()
    # stable is back: traffic to stable, then the new canary's step 0
    d = run(d.state, observe(live=AT_50, canary_available=False, **new), 3 * MIN)
    assert d.weights == ALL_STABLE
    d = run(d.state, observe(**new), 4 * MIN)
    assert d.state.phase is Phase.PROGRESSING
    # episode 2: abort while stable is down again
    abort = command("abort", rid=NEW_RID)
    d = run(d.state, observe(live=AT_10, stable_available=False, command=abort, **new), 5 * MIN)
    assert names(d) == (ev.COMMAND_ACCEPTED, ev.ROLLBACK_STARTED, ev.STABLE_UNAVAILABLE)
    assert d.start_rollback is None


def test_release_moved_on_is_never_rolled_back_over_even_with_unknown_canary_revision() -> None:
    # the canary's revision is unknown (history unreadable when the rollout started); CI has
    # since deployed revision 5 with another canary: helm must not roll back over it
    state = rolling_back(revision=None)
    d = run(state, observe(**NEW_CANARY), MIN)
    assert d.start_rollback is None
    assert d.state.phase is Phase.PENDING
    assert d.state.rollout_id == NEW_RID


# =================================================================================================
# The plan snapshot (docs/design.md §3: edits apply to the next rollout)
# =================================================================================================

#: The team loosened the plan after a rollback: two steps, 20 % then 100 %.
EDITED = plan(steps=(Step(20), Step(100)))


def test_a_rollout_under_way_keeps_its_snapshot() -> None:
    state = progressing(1, spec=plan_to_spec(PLAN), plan_hash=plan_hash(PLAN))
    assert plan_in_force(EDITED, state) == PLAN


def test_decide_keeps_the_snapshot_for_the_rollout_under_way() -> None:
    """The configured plan now has steps 20/100; the rollout under way keeps 10/50/100."""
    state = progressing(0, spec=plan_to_spec(PLAN), plan_hash=plan_hash(PLAN), passes=2)
    d = decide(EDITED, state, observe(live=AT_10), T0 + 3 * MIN)
    assert d.weights == AT_50
    assert d.state.plan_hash == plan_hash(PLAN)


def test_idle_uses_the_current_plan() -> None:
    assert plan_in_force(EDITED, idle()) == EDITED
    assert plan_in_force(EDITED, None) == EDITED


def test_a_new_rollout_from_idle_snapshots_the_current_plan() -> None:
    p = plan_in_force(EDITED, idle())
    assert p is not None
    d = decide(p, idle(), observe(), T0)
    assert d.state.plan_hash == plan_hash(EDITED)
    assert d.state.spec == plan_to_spec(EDITED)


@pytest.mark.parametrize(
    ("state", "obs"),
    [
        pytest.param(
            rolled_back(spec=plan_to_spec(PLAN), plan_hash=plan_hash(PLAN)),
            observe(canary=NEW_CANARY_HASH, release=AFTER_ROLLBACK_NEW),
            id="rolled-back--next-canary",
        ),
        pytest.param(
            progressing(1, spec=plan_to_spec(PLAN), plan_hash=plan_hash(PLAN)),
            observe(live=AT_50, **NEW_CANARY),
            id="progressing--superseded",
        ),
        pytest.param(
            rollback_failed(spec=plan_to_spec(PLAN), plan_hash=plan_hash(PLAN)),
            observe(**NEW_CANARY),
            id="rollback-failed--next-canary",
        ),
    ],
)
def test_the_next_rollout_after_a_rollback_or_supersede_uses_the_edited_plan(
    state: RolloutState, obs: Observation
) -> None:
    """decide takes the plan as configured now; the new rollout snapshots it."""
    d = decide(EDITED, state, obs, T0 + MIN)
    assert d.state.phase is Phase.PENDING
    assert d.state.plan_hash == plan_hash(EDITED)


# =================================================================================================
# Rules added after review: drift fights, deleted plans mid-rollback, invalid plans at start
# =================================================================================================


def test_a_writer_that_keeps_fighting_the_weights_pauses_the_rollout_on_stable() -> None:
    state = progressing(0)  # weights written: 90/10
    seen: list[str] = []
    for n in range(1, DRIFT_LIMIT + 1):
        d = run(state, observe(live=ALL_STABLE), n * MIN)  # GitOps put 100/0 back again
        seen += names(d)
        state = d.state
    assert state.phase is Phase.PAUSED and state.paused is PauseKind.WEIGHT_DRIFT
    assert state.weights == ALL_STABLE
    assert seen.count(ev.WEIGHT_DRIFT) == DRIFT_LIMIT
    assert seen[-1] == ev.ROLLOUT_PAUSED and "ignoreDifferences" in state.reason


def test_drifts_are_counted_per_step() -> None:
    state = progressing(0, drifts=DRIFT_LIMIT - 1, passes=2)
    d = run(state, observe(live=AT_10), 3 * MIN)  # hold elapsed, passes enough: next step
    assert d.state.step == 1 and d.state.drifts == 0


def test_a_deleted_plan_lets_a_rollback_under_way_finish() -> None:
    d = run(rolling_back(), observe(plan_deleted=True), MIN)
    assert d.start_rollback == BASE_REV
    assert d.state.phase is Phase.ROLLING_BACK


def test_a_plan_deleted_mid_rollout_ends_it_abandoned_on_stable() -> None:
    d = run(progressing(1), observe(live=AT_50, plan_deleted=True), MIN)
    assert names(d) == (ev.PLAN_DELETED, ev.WEIGHT_SET)
    assert d.weights == ALL_STABLE and d.state.phase is Phase.IDLE
    assert d.state.last is not None and d.state.last.outcome is Outcome.ABANDONED


def test_a_rollout_started_under_an_invalid_plan_pauses_at_once() -> None:
    d = run(idle(), observe(plan_error="spec.steps: bad"), MIN)
    assert names(d) == (ev.ROLLOUT_STARTED, ev.PLAN_INVALID, ev.ROLLOUT_PAUSED)
    assert d.state.phase is Phase.PAUSED and d.state.paused is PauseKind.INVALID_PLAN
    assert d.weights is None and d.state.weights == ALL_STABLE


@pytest.mark.parametrize(
    ("state", "window", "after"),
    [
        pytest.param(progressing(1, step_started_at=T0), MIN, 5 * SEC, id="during-settle"),
        pytest.param(progressing(1, step_started_at=T0), 2 * MIN, MIN, id="window-before-step"),
        pytest.param(
            progressing(1, step_started_at=T0, last_check_at=T0 + MIN),
            MIN,
            MIN + SEC,
            id="interval-not-elapsed",
        ),
    ],
)
def test_decide_never_counts_a_check_outside_the_step(
    state: RolloutState, window: timedelta, after: timedelta
) -> None:
    """docs/design.md §3 is enforced by decide itself, not only by the controller's scheduling."""
    bad = sample(step=1, window=window, error_rate=0.5)
    d = run(state, observe(live=AT_50, metrics=bad), after)
    assert names(d) == ()
    assert d.state.fails == 0 and not d.changed


def test_a_breach_in_the_same_conditions_but_due_is_counted() -> None:
    state = progressing(1, step_started_at=T0)
    d = run(state, observe(live=AT_50, metrics=sample(step=1, error_rate=0.5)), MIN)
    assert names(d) == (ev.CHECK_FAILED,) and d.state.fails == 1


@pytest.mark.parametrize("step", [7, -1])
def test_a_state_with_an_impossible_step_is_treated_as_lost(step: int) -> None:
    d = run(replace(progressing(1), step=step), observe(live=AT_50), MIN)
    assert names(d)[:2] == (ev.STATE_LOST, ev.WEIGHT_SET)
    assert d.weights == ALL_STABLE
    assert d.state.phase is Phase.PENDING and d.state.step == 0


# =================================================================================================
# Regressions found in review
# =================================================================================================


def test_a_pause_refused_by_an_unavailable_stable_reaches_stable_once_it_is_back() -> None:
    state = progressing(1, errors=PLAN.analysis.error_limit - 1)
    paused_ = run(state, observe(live=AT_50, stable_available=False, metrics=erroring(1)), MIN)
    assert paused_.state.phase is Phase.PAUSED and paused_.weights is None
    back = again(PLAN, paused_, observe(live=AT_50), T0 + 2 * MIN)
    assert back.weights == ALL_STABLE


def test_never_succeeded_on_an_unavailable_canary() -> None:
    state = progressing(2, passes=2)
    d = run(state, observe(live=at_step(2), canary_available=False), 3 * MIN)
    assert d.state.phase is not Phase.SUCCEEDED


def test_promote_from_a_pause_on_stable_at_the_last_step_writes_100() -> None:
    state = paused(PauseKind.ERRORS, step=2, weights=ALL_STABLE)
    d = run(state, observe(live=ALL_STABLE, command=command("promote")), MIN)
    assert d.state.phase is Phase.SUCCEEDED
    assert d.weights == Weights.canary_at(100)


def test_a_succeeded_canary_that_goes_down_gets_no_traffic_until_it_recovers() -> None:
    full = Weights.canary_at(100)
    down = run(succeeded(weights=full), observe(live=full, canary_available=False), MIN)
    assert names(down) == (ev.CANARY_UNAVAILABLE, ev.WEIGHT_SET)
    assert down.weights == ALL_STABLE and down.state.phase is Phase.SUCCEEDED
    up = again(PLAN, down, observe(live=ALL_STABLE), T0 + 2 * MIN)
    assert up.weights == full


def test_no_rollout_leaves_pending_while_the_release_is_pending() -> None:
    busy = release_at(BASE_REV, rev(CANARY_REV, RevisionStatus.PENDING_ROLLBACK, "Rollback to 3"))
    d = run(None, observe(live=AT_10, release=busy, state_lost="stripped"), MIN)
    assert d.state.phase is Phase.PENDING and d.weights == ALL_STABLE
    assert d.state.revision is None and ev.RELEASE_PENDING in names(d)
    still = again(PLAN, d, observe(release=busy), T0 + 2 * MIN)
    assert still.state.phase is Phase.PENDING and not still.changed


def test_a_misconfigured_query_pauses_on_stable_instead_of_counting_errors() -> None:
    """A bad custom query (HTTP 400) is the plan's fault: never errorLimit → onError rollback."""
    bad = MetricsSample(
        rollout_id=RID,
        step=1,
        window=MIN,
        canary_requests=100.0,
        stable_requests=900.0,
        metrics=(MetricValue("broken", error="HTTP 400: parse error", misconfigured=True),),
    )
    state = progressing(1, errors=0)
    d = run(state, observe(live=AT_50, metrics=bad), MIN)
    assert d.state.phase is Phase.PAUSED and d.state.paused is PauseKind.INVALID_PLAN
    assert d.weights == ALL_STABLE and d.start_rollback is None
    assert names(d) == (ev.CHECK_ERROR, ev.PLAN_INVALID, ev.ROLLOUT_PAUSED, ev.WEIGHT_SET)
    assert "broken" in d.state.reason and PLAN.key in d.state.reason


def test_the_same_canary_started_again_gets_a_new_rollout_id() -> None:
    """A rollout id names one rollout: a canary redeployed after its rollout ended (here a
    RollbackFailed a human fixed) gets the next attempt, so `wait` never mistakes the old
    rollout's outcome for the new one's."""
    state = idle(rollout_id=RID, canary_hash=CANARY_HASH, last=last(Outcome.ROLLBACK_FAILED))
    d = run(state, observe())
    assert d.state.phase is Phase.PENDING
    assert d.state.rollout_id == rollout_id(CANARY_HASH, 2) != RID
    other = run(idle(last=last(Outcome.SUCCEEDED, canary_hash=NEW_CANARY_HASH)), observe())
    assert other.state.rollout_id == RID  # another canary starts at attempt 1
