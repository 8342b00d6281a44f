"""The persisted state and command annotations: exact round trips, and corrupt input → StateError
(treated as lost state by decide), never a crash."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from canary.core.model import (
    Command,
    CommandName,
    LastOutcome,
    Outcome,
    PauseKind,
    Phase,
    RollbackProgress,
    RolloutState,
    StateError,
    Weights,
    command_from_json,
    command_to_json,
    state_from_json,
    state_to_json,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

times = st.one_of(
    st.none(),
    st.integers(0, 10**8).map(lambda s: T0 + timedelta(seconds=s)),
)
counters = st.integers(0, 1000)


@st.composite
def states(draw: st.DrawFn) -> RolloutState:
    canary = draw(st.integers(0, 100))
    last = draw(
        st.one_of(
            st.none(),
            st.builds(
                LastOutcome,
                rollout_id=st.text(max_size=12),
                canary_hash=st.text(max_size=64),
                outcome=st.sampled_from(Outcome),
                reason=st.text(max_size=40),
                ended_at=times.filter(lambda t: t is not None),
            ),
        )
    )
    rollback = draw(
        st.one_of(
            st.none(),
            st.builds(
                RollbackProgress,
                attempts=counters,
                failures=counters,
                limit=counters,
                started_at=times,
                failed_at=times,
                error=st.text(max_size=40),
            ),
        )
    )
    return RolloutState(
        plan="bookinfo/reviews",
        phase=draw(st.sampled_from(Phase)),
        rollout_id=draw(st.text(max_size=12)),
        canary_hash=draw(st.text(max_size=64)),
        revision=draw(st.one_of(st.none(), counters)),
        base_revision=draw(st.one_of(st.none(), counters)),
        step=draw(counters),
        weights=Weights.canary_at(canary),
        step_started_at=draw(times),
        passes=draw(counters),
        fails=draw(counters),
        errors=draw(counters),
        drifts=draw(counters),
        inconclusive_since=draw(times),
        reason=draw(st.text(max_size=40)),
        last=last,
        updated_at=draw(times),
        paused=draw(st.one_of(st.none(), st.sampled_from(PauseKind))),
        last_check_at=draw(times),
        first_fail_at=draw(times),
        rollback=rollback,
        rollback_revision=draw(st.one_of(st.none(), counters)),
        attempt=draw(counters),
        notices=tuple(draw(st.lists(st.text(max_size=10), max_size=3))),
        spec=draw(st.one_of(st.none(), st.just({"steps": [10, 100]}))),
    )


@given(states())
def test_state_round_trips_exactly(state: RolloutState) -> None:
    assert state_from_json(state_to_json(state)) == state


def test_state_json_has_the_design_keys() -> None:
    doc = json.loads(state_to_json(RolloutState(plan="ns/p", updated_at=T0)))
    design = {
        "v",
        "plan",
        "phase",
        "rolloutId",
        "canaryHash",
        "stableHash",
        "revision",
        "baseRevision",
        "step",
        "weights",
        "stepStartedAt",
        "passes",
        "fails",
        "errors",
        "inconclusiveSince",
        "reason",
        "planHash",
        "last",
        "updatedAt",
    }
    assert design <= set(doc)
    assert doc["v"] == 1 and doc["updatedAt"] == "2026-01-01T12:00:00Z"


GOOD = json.loads(state_to_json(RolloutState(plan="ns/p", phase=Phase.PROGRESSING)))


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        pytest.param("{", "corrupt", id="not-json"),
        pytest.param("[]", "not a JSON object", id="not-an-object"),
        pytest.param(json.dumps(GOOD | {"v": 2}), "unknown state version 2", id="version"),
        pytest.param(json.dumps(GOOD | {"phase": "Flying"}), "Flying", id="phase"),
        pytest.param(json.dumps(GOOD | {"weights": [90, 20]}), "sum to 100", id="weights-sum"),
        pytest.param(json.dumps(GOOD | {"weights": "90/10"}), "weights", id="weights-type"),
        pytest.param(json.dumps(GOOD | {"passes": -1}), "non-negative", id="negative-counter"),
        pytest.param(json.dumps(GOOD | {"step": True}), "integer", id="bool-step"),
        pytest.param(json.dumps(GOOD | {"notices": "abc"}), "list of strings", id="notices"),
        pytest.param(
            json.dumps(GOOD | {"stepStartedAt": "2026-01-01T12:00:00"}), "timezone", id="naive-time"
        ),
        pytest.param(
            json.dumps({k: v for k, v in GOOD.items() if k != "plan"}), "plan", id="no-plan"
        ),
    ],
)
def test_corrupt_state_is_a_state_error(raw: str, fragment: str) -> None:
    with pytest.raises(StateError, match=r"canary\.dev/state is corrupt") as info:
        state_from_json(raw)
    assert fragment in str(info.value)


def test_command_round_trip_and_errors() -> None:
    cmd = Command(CommandName.PROMOTE_FULL, "abc-1", by="alice", at=T0)
    assert command_from_json(command_to_json(cmd)) == cmd
    with pytest.raises(ValueError, match="unknown cmd 'stop'; use one of abort, pause"):
        command_from_json('{"cmd": "stop", "rolloutId": "x"}')
    with pytest.raises(ValueError, match="rolloutId is missing"):
        command_from_json('{"cmd": "pause"}')
