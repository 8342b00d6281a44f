"""RollingBack, one named row per situation (canary/core/decide/rollback.py): the classifier
names the situation from the state and the observation alone, and that situation's handler
does what docs/design.md §4 says, seen through ``decide`` (weights, events, phase, helm)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import pytest

from canary.core import events as ev
from canary.core.decide import HELM_RECORD_GRACE, ROLLBACK_PENDING_GRACE, decide
from canary.core.decide.rollback import HANDLERS, Situation, classify
from canary.core.decide.tick import Tick
from canary.core.model import (
    ALL_STABLE,
    Observation,
    Phase,
    RevisionStatus,
    RolloutState,
    rollback_description,
)
from tests.support.builders import (
    BASE_REV,
    CANARY_REV,
    PLAN,
    ROLLBACK_REV,
    SEC,
    STABLE_HASH,
    T0,
    history,
    job,
    observe,
    release_at,
    rev,
    rolled_back_release,
    rolling_back,
)

TIMEOUT = PLAN.rollback.timeout
OURS_PENDING = release_at(
    CANARY_REV, rev(5, RevisionStatus.PENDING_ROLLBACK, rollback_description(BASE_REV))
)


@dataclass(frozen=True)
class Row:
    """One situation: the state and observation that put the rollback there, and what the
    tick must do about it."""

    situation: Situation
    state: RolloutState
    obs: Observation
    now: datetime = T0 + SEC
    phase: Phase = Phase.ROLLING_BACK
    events: tuple[str, ...] = ()
    helm: int | None = None  # the revision helm is started for, or None
    state_changes: dict[str, Any] = field(default_factory=dict)


ROWS = [
    Row(
        Situation.RELEASE_LOST,
        rolling_back(attempts=1, started_at=T0, step_started_at=T0),
        replace(observe(), release=None, release_error="helm release bookinfo/reviews not found"),
        now=T0 + TIMEOUT,
        phase=Phase.ROLLBACK_FAILED,
        events=(ev.RELEASE_UNREADABLE, ev.ROLLOUT_ROLLBACK_FAILED),
    ),
    Row(
        Situation.RELEASE_UNREAD,
        rolling_back(attempts=1, started_at=T0, step_started_at=T0),
        replace(observe(), release=None, release_error="helm release bookinfo/reviews not found"),
        now=T0 + TIMEOUT - SEC,  # not yet: the history may come back
        events=(ev.RELEASE_UNREADABLE,),
    ),
    Row(
        Situation.RELEASE_UNREAD,
        rolling_back(attempts=1, started_at=T0, step_started_at=T0),
        replace(
            observe(),
            release=None,
            release_error="secrets is forbidden",
            rollback_job=job(running=True),
        ),
        now=T0 + 2 * TIMEOUT,  # our helm still runs: it may yet settle the release
        events=(ev.RELEASE_UNREADABLE,),
    ),
    Row(
        Situation.RELEASE_UNREAD,
        rolling_back(attempts=1, started_at=T0),
        replace(observe(), release=None, release_error="secrets is forbidden"),
        events=(ev.RELEASE_UNREADABLE,),
    ),
    Row(
        Situation.CONFIRMED,
        rolling_back(attempts=1, started_at=T0),
        observe(canary=STABLE_HASH, release=rolled_back_release(), rollback_job=job(ok=True)),
        phase=Phase.ROLLED_BACK,
        events=(ev.ROLLBACK_HELM_SUCCEEDED, ev.ROLLOUT_ROLLED_BACK),
    ),
    Row(
        Situation.CANARY_CATCHING_UP,
        rolling_back(attempts=1, started_at=T0),
        observe(release=rolled_back_release()),
        now=T0 + TIMEOUT - SEC,
        events=(ev.ROLLBACK_WAITING,),
    ),
    Row(
        Situation.CANARY_STILL_DIFFERS,
        rolling_back(attempts=1, started_at=T0),
        observe(release=rolled_back_release()),
        now=T0 + TIMEOUT,
        phase=Phase.ROLLBACK_FAILED,
        events=(ev.ROLLOUT_ROLLBACK_FAILED,),
    ),
    Row(
        Situation.MOVED_ON,
        rolling_back(),
        observe(canary="e" * 64, release=release_at(CANARY_REV + 1)),
        phase=Phase.PENDING,
        events=(ev.ROLLOUT_SUPERSEDED, ev.ROLLOUT_STARTED),
    ),
    Row(
        Situation.STUCK_PENDING,
        rolling_back(attempts=1, started_at=T0),
        observe(release=OURS_PENDING),
        now=T0 + TIMEOUT + ROLLBACK_PENDING_GRACE + SEC,
        phase=Phase.ROLLBACK_FAILED,
        events=(ev.ROLLOUT_ROLLBACK_FAILED,),
    ),
    Row(
        Situation.HELM_BUSY,
        rolling_back(attempts=1, started_at=T0),
        observe(release=OURS_PENDING),
        events=(ev.ROLLBACK_WAITING,),
    ),
    Row(
        Situation.HELM_BUSY,
        rolling_back(attempts=1, started_at=T0),
        observe(rollback_job=job(running=True)),
        events=(ev.ROLLBACK_WAITING,),
    ),
    Row(
        Situation.NO_BASE,
        rolling_back(base_revision=None, revision=None),
        observe(release=history(rev(1, RevisionStatus.DEPLOYED))),
        phase=Phase.ROLLBACK_FAILED,
        events=(ev.ROLLOUT_ROLLBACK_FAILED,),
    ),
    Row(
        Situation.HISTORY_LAGS,
        rolling_back(attempts=1, started_at=T0),
        observe(rollback_job=job(ok=True)),
        events=(ev.ROLLBACK_WAITING,),
    ),
    Row(
        Situation.AWAITING_TRACE,
        rolling_back(attempts=1, started_at=T0),
        observe(),
        now=T0 + HELM_RECORD_GRACE - SEC,
        events=(ev.ROLLBACK_WAITING,),
    ),
    Row(
        Situation.LOST_ATTEMPT,
        rolling_back(attempts=1, started_at=T0),
        observe(),
        now=T0 + HELM_RECORD_GRACE,
        events=(ev.ROLLBACK_HELM_STARTED,),
        helm=BASE_REV,
        state_changes={"attempts": 1, "failures": 0},
    ),
    Row(
        Situation.ATTEMPT_FAILED,
        rolling_back(attempts=1, started_at=T0),
        observe(rollback_job=job(ok=False, error="Error: timed out waiting for the condition")),
        events=(ev.ROLLBACK_HELM_FAILED,),
        state_changes={"attempts": 1, "failures": 1},
    ),
    Row(
        Situation.ATTEMPT_FAILED,
        rolling_back(attempts=3, failures=2, started_at=T0),
        observe(rollback_job=job(ok=False, error="Error: cluster unreachable")),
        phase=Phase.ROLLBACK_FAILED,
        events=(ev.ROLLBACK_HELM_FAILED, ev.ROLLOUT_ROLLBACK_FAILED),
    ),
    Row(
        Situation.BACKING_OFF,
        rolling_back(attempts=1, failures=1, started_at=T0),
        observe(),
        now=T0 + 5 * SEC,
    ),
    Row(
        Situation.START,
        rolling_back(),
        observe(),
        events=(ev.ROLLBACK_HELM_STARTED,),
        helm=BASE_REV,
        state_changes={"attempts": 1, "failures": 0},
    ),
]


def _failed_at(row: Row) -> RolloutState:
    """BACKING_OFF needs the failure's time: a state written after a failed attempt."""
    rb = row.state.rollback
    if row.situation is Situation.BACKING_OFF and rb is not None:
        return replace(row.state, rollback=replace(rb, failed_at=T0))
    return row.state


@pytest.mark.parametrize("row", ROWS, ids=[f"{r.situation.value}-{i}" for i, r in enumerate(ROWS)])
def test_each_situation_is_named_and_handled(row: Row) -> None:
    state = _failed_at(row)
    tick = Tick(PLAN, state, row.obs, row.now, current=PLAN)
    assert classify(tick)[0] is row.situation
    d = decide(PLAN, state, row.obs, row.now)
    names = tuple(e.name for e in d.events)
    assert names == row.events, names
    assert d.state.phase is row.phase
    assert d.start_rollback == row.helm
    if row.phase is not Phase.PENDING:  # a superseding rollout starts on stable too
        assert d.weights is None, "traffic was on stable already: nothing to write"
    rb = d.state.rollback
    for key, value in row.state_changes.items():
        assert rb is not None and getattr(rb, key) == value, (key, rb)


def test_every_situation_has_a_row_and_a_handler() -> None:
    assert {r.situation for r in ROWS} == set(Situation)
    assert set(HANDLERS) == set(Situation)


def test_traffic_goes_to_stable_before_any_situation_is_looked_at() -> None:
    """Whatever the release says, a RollingBack tick with traffic on the canary writes
    stable 100 first (and starts helm only in the same decision, after that write)."""
    state = rolling_back(weights=ALL_STABLE)
    obs = observe(live=ALL_STABLE.canary_at(10))
    d = decide(PLAN, state, obs, T0 + SEC)
    assert d.weights == ALL_STABLE
    assert [e.name for e in d.events][:2] == [ev.WEIGHT_SET, ev.ROLLBACK_TRAFFIC_REVERTED]
    assert d.start_rollback == BASE_REV


def test_with_stable_unavailable_nothing_is_classified_and_no_helm_runs() -> None:
    state = rolling_back()
    obs = observe(live=ALL_STABLE.canary_at(10), stable_available=False)
    d = decide(PLAN, state, obs, T0 + SEC)
    assert d.weights is None and d.start_rollback is None
    assert [e.name for e in d.events] == [ev.STABLE_UNAVAILABLE]


def test_the_confirmed_rollback_names_the_revision_and_how_it_was_confirmed() -> None:
    state = rolling_back(attempts=1, started_at=T0)
    obs = observe(canary=STABLE_HASH, release=rolled_back_release())
    d = decide(PLAN, state, obs, T0 + timedelta(seconds=30))
    succeeded = next(e for e in d.events if e.name == ev.ROLLBACK_HELM_SUCCEEDED)
    assert succeeded.fields["revision"] == ROLLBACK_REV
    assert succeeded.fields["confirmedFrom"] == "history"  # not this process's helm
    assert d.state.rollback_revision == ROLLBACK_REV


def test_a_history_lost_for_the_rollback_timeout_fails_naming_the_error() -> None:
    state = rolling_back(attempts=1, started_at=T0, step_started_at=T0)
    obs = replace(observe(), release=None, release_error="helm release bookinfo/reviews not found")
    d = decide(PLAN, state, obs, T0 + TIMEOUT)
    assert d.state.phase is Phase.ROLLBACK_FAILED
    assert (
        d.state.last is not None
        and "helm release bookinfo/reviews not found" in d.state.last.reason
    )
    assert "traffic is on stable" in d.state.last.reason and "canary abort" in d.state.last.reason
    assert d.start_rollback is None and d.weights is None
